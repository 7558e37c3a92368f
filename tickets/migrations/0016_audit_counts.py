"""AuditCount (issue 15): entries and field rows per 15-minute UTC bucket, team, action
and current outcome, kept by triggers in the transaction of every insert into the audit
tables, so the chart sums a few rows per bucket instead of counting index entries.

Triggers rather than Python in chain.py: they see every insert whoever makes it
(record_attempt, append_many's bulk_create, seed_audit's COPY, a raw import), in the
same transaction, so the counts cannot drift from the rows. Writers already queue on the
chain lock, so the counters add no contention. On PostgreSQL they are statement-level
with transition tables: a COPY of 20,000 rows updates each count once.

Each trigger keeps the invariant "a count is the number of rows of its key as the table
holds them now":
- an entry adds itself (and any field rows it already has) under its current outcome;
- a field row adds itself under its entry's current outcome (nothing when the entry is
  not there yet: a deferred foreign key; the entry's own insert counts it then);
- an outcome row moves its entry and the entry's field rows from the current outcome
  before the statement to the current one after it.
Each row is also counted under outcome "" (any outcome), which outcome rows never move:
a chart without an outcome filter reads a third of the rows. A count that reaches 0 is
deleted (settled pending entries would otherwise leave a row per bucket behind).

The table is the index: WITHOUT ROWID on SQLite, its primary key covering `n` on
PostgreSQL, so a chart reads one index range; (field, outcome, bucket, ...) because a
chart always names both, and its buckets then lie together. Created here in SQL
(state: the model) as the triggers are: a later migration that makes Django rebuild an
audit table on SQLite drops the triggers on it and must call create_triggers again
(see 0002).
"""

from django.db import migrations, models

CHAIN_LOCK_ID = 0x7468656E61  # tickets/audit/chain.py, frozen here
KEY = "field, outcome, bucket, team_id, action"  # the primary key's order
COLUMNS = "field, bucket, team_id, action, outcome"  # as the SELECTs below give them
ORIGIN = "TIMESTAMPTZ '2000-01-01 00:00:00+00'"


# Each row once under its outcome (total 0), once under "" (total 1).
TWICE = "(SELECT 0 AS total UNION ALL SELECT 1)"


def _bucket(vendor: str, column: str) -> str:
    if vendor == "postgresql":
        return f"date_bin('15 minutes', {column}, {ORIGIN})"
    # Django stores SQLite datetimes as UTC text 'YYYY-MM-DD HH:MM:SS[.ffffff]'.
    return (
        f"substr({column}, 1, 14) || "
        f"printf('%02d:00', CAST(substr({column}, 15, 2) AS INTEGER) / 15 * 15)"
    )


def _current(entry_id: str, written: str) -> str:
    """The entry's current outcome: its latest outcome row's, else its own."""
    return (
        "COALESCE((SELECT o.outcome FROM tickets_auditoutcome o "
        f"WHERE o.entry_id = {entry_id} ORDER BY o.id DESC LIMIT 1), {written})"
    )


def _fields(entry_id: str) -> str:
    """The entry itself ("") and each field it changed."""
    return (
        "(SELECT '' AS field UNION ALL "
        f"SELECT f.field FROM tickets_auditfield f WHERE f.entry_id = {entry_id})"
    )


def _backfill(vendor: str) -> str:
    bucket = _bucket(vendor, "e.created_at")
    current = _current("e.id", "e.outcome")
    return f"""
        INSERT INTO tickets_auditcount ({COLUMNS}, n)
        SELECT k.field, k.bucket, k.team_id, k.action,
            CASE WHEN t.total = 1 THEN '' ELSE k.outcome END, COUNT(*)
        FROM (
            SELECT '' AS field, {bucket} AS bucket, e.team_id, e.action, {current} AS outcome
            FROM tickets_auditentry e
            UNION ALL
            SELECT f.field, {bucket}, e.team_id, e.action, {current}
            FROM tickets_auditfield f JOIN tickets_auditentry e ON e.id = f.entry_id
        ) k
        JOIN {TWICE} t ON true
        GROUP BY 1, 2, 3, 4, 5
    """


UPSERT = f"ON CONFLICT ({KEY}) DO UPDATE SET n = tickets_auditcount.n + excluded.n"


def _sqlite() -> tuple[list[str], list[str]]:
    new_bucket = _bucket("sqlite", "NEW.created_at")
    entry_bucket = _bucket("sqlite", "e.created_at")
    before = (
        "COALESCE((SELECT o.outcome FROM tickets_auditoutcome o WHERE o.entry_id = NEW.entry_id "
        "AND o.id <> NEW.id ORDER BY o.id DESC LIMIT 1), e.outcome)"
    )
    after = _current("NEW.entry_id", "e.outcome")
    create = [
        f"""CREATE TABLE tickets_auditcount (
            field varchar(64) NOT NULL, bucket datetime NOT NULL, team_id varchar(64) NOT NULL,
            action varchar(64) NOT NULL, outcome varchar(16) NOT NULL, n bigint NOT NULL,
            PRIMARY KEY ({KEY})) WITHOUT ROWID""",
        f"""CREATE TRIGGER tickets_auditentry_count AFTER INSERT ON tickets_auditentry BEGIN
            INSERT INTO tickets_auditcount ({COLUMNS}, n)
            SELECT k.field, {new_bucket}, NEW.team_id, NEW.action,
                CASE WHEN t.total THEN '' ELSE {_current("NEW.id", "NEW.outcome")} END, 1
            FROM {_fields("NEW.id")} k JOIN {TWICE} t
            WHERE true {UPSERT};
        END""",
        f"""CREATE TRIGGER tickets_auditfield_count AFTER INSERT ON tickets_auditfield BEGIN
            INSERT INTO tickets_auditcount ({COLUMNS}, n)
            SELECT NEW.field, {entry_bucket}, e.team_id, e.action,
                CASE WHEN t.total THEN '' ELSE {_current("e.id", "e.outcome")} END, 1
            FROM tickets_auditentry e JOIN {TWICE} t
            WHERE e.id = NEW.entry_id {UPSERT};
        END""",
        f"""CREATE TRIGGER tickets_auditoutcome_count AFTER INSERT ON tickets_auditoutcome BEGIN
            INSERT INTO tickets_auditcount ({COLUMNS}, n)
            SELECT k.field, m.bucket, m.team_id, m.action,
                CASE WHEN d.n < 0 THEN m.old ELSE m.new END, d.n
            FROM (SELECT {entry_bucket} AS bucket, e.team_id, e.action, {before} AS old,
                    {after} AS new
                  FROM tickets_auditentry e WHERE e.id = NEW.entry_id) m
            JOIN (SELECT -1 AS n UNION ALL SELECT 1) d
            JOIN {_fields("NEW.entry_id")} k
            WHERE m.old IS NOT m.new {UPSERT};
        END""",
        """CREATE TRIGGER tickets_auditcount_zero AFTER UPDATE OF n ON tickets_auditcount
            WHEN NEW.n = 0 BEGIN
            DELETE FROM tickets_auditcount WHERE field = NEW.field AND bucket = NEW.bucket
                AND team_id = NEW.team_id AND action = NEW.action AND outcome = NEW.outcome;
        END""",
    ]
    drop = [
        "DROP TRIGGER IF EXISTS tickets_auditentry_count",
        "DROP TRIGGER IF EXISTS tickets_auditfield_count",
        "DROP TRIGGER IF EXISTS tickets_auditoutcome_count",
        "DROP TABLE IF EXISTS tickets_auditcount",
    ]
    return create, drop


def _postgresql() -> tuple[list[str], list[str]]:
    def function(name: str, body: str) -> str:
        # As the table's owner: the app's role then needs no right to change the counts.
        return (
            f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql "
            "SECURITY DEFINER SET search_path FROM CURRENT AS $$ "
            f"BEGIN {body}; RETURN NULL; END $$"
        )

    # One probe per row of the statement, never a join the planner could turn into a
    # scan of the whole log: each LATERAL with LIMIT 1 runs once per row.
    entries = f"""
        INSERT INTO tickets_auditcount AS c ({COLUMNS}, n)
        SELECT k.field, e.bucket, e.team_id, e.action, o.outcome, COUNT(*)
        FROM (SELECT r.id, {_bucket("postgresql", "r.created_at")} AS bucket, r.team_id,
                r.action, {_current("r.id", "r.outcome")} AS outcome
              FROM new_rows r) e
        CROSS JOIN LATERAL {_fields("e.id")} k
        CROSS JOIN LATERAL (VALUES (e.outcome), ('')) o (outcome)
        GROUP BY 1, 2, 3, 4, 5
        ON CONFLICT ({KEY}) DO UPDATE SET n = c.n + excluded.n"""
    fields = f"""
        INSERT INTO tickets_auditcount AS c ({COLUMNS}, n)
        SELECT r.field, e.bucket, e.team_id, e.action, o.outcome, COUNT(*)
        FROM new_rows r
        CROSS JOIN LATERAL (
            SELECT {_bucket("postgresql", "e.created_at")} AS bucket, e.team_id, e.action,
                {_current("e.id", "e.outcome")} AS outcome
            FROM tickets_auditentry e WHERE e.id = r.entry_id LIMIT 1) e
        CROSS JOIN LATERAL (VALUES (e.outcome), ('')) o (outcome)
        GROUP BY 1, 2, 3, 4, 5
        ON CONFLICT ({KEY}) DO UPDATE SET n = c.n + excluded.n"""
    # Before the statement: the latest outcome row it did not insert, else the entry's own.
    outcomes = f"""
        INSERT INTO tickets_auditcount AS c ({COLUMNS}, n)
        SELECT k.field, m.bucket, m.team_id, m.action, s.outcome, SUM(s.n)
        FROM (
            SELECT t.entry_id AS id, e.bucket, e.team_id, e.action,
                COALESCE((SELECT o.outcome FROM tickets_auditoutcome o
                          WHERE o.entry_id = t.entry_id
                            AND o.id NOT IN (SELECT r.id FROM new_rows r)
                          ORDER BY o.id DESC LIMIT 1), e.outcome) AS old,
                {_current("t.entry_id", "e.outcome")} AS new
            FROM (SELECT DISTINCT entry_id FROM new_rows) t
            CROSS JOIN LATERAL (
                SELECT {_bucket("postgresql", "e.created_at")} AS bucket, e.team_id,
                    e.action, e.outcome
                FROM tickets_auditentry e WHERE e.id = t.entry_id LIMIT 1) e
        ) m
        CROSS JOIN LATERAL (VALUES (m.old, -1), (m.new, 1)) s (outcome, n)
        CROSS JOIN LATERAL {_fields("m.id")} k
        WHERE m.old IS DISTINCT FROM m.new
        GROUP BY 1, 2, 3, 4, 5
        HAVING SUM(s.n) <> 0
        ON CONFLICT ({KEY}) DO UPDATE SET n = c.n + excluded.n"""
    zero = (
        "DELETE FROM tickets_auditcount WHERE field = NEW.field AND bucket = NEW.bucket "
        "AND team_id = NEW.team_id AND action = NEW.action AND outcome = NEW.outcome AND n = 0"
    )
    create = [
        f"""CREATE TABLE tickets_auditcount (
            field varchar(64) NOT NULL, bucket timestamp with time zone NOT NULL,
            team_id varchar(64) NOT NULL, action varchar(64) NOT NULL,
            outcome varchar(16) NOT NULL, n bigint NOT NULL,
            CONSTRAINT tickets_auditcount_pkey PRIMARY KEY ({KEY}) INCLUDE (n))""",
        function("tickets_audit_count_entries", entries),
        function("tickets_audit_count_fields", fields),
        function("tickets_audit_count_outcomes", outcomes),
        function("tickets_audit_count_zero", zero),
    ]
    for table, name in (
        ("tickets_auditentry", "entries"),
        ("tickets_auditfield", "fields"),
        ("tickets_auditoutcome", "outcomes"),
    ):
        create.append(
            f"CREATE TRIGGER {table}_count AFTER INSERT ON {table} "
            "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
            f"EXECUTE FUNCTION tickets_audit_count_{name}()"
        )
    create.append(
        "CREATE TRIGGER tickets_auditcount_zero AFTER UPDATE ON tickets_auditcount "
        "FOR EACH ROW WHEN (NEW.n = 0) EXECUTE FUNCTION tickets_audit_count_zero()"
    )
    drop = [
        "DROP TRIGGER IF EXISTS tickets_auditentry_count ON tickets_auditentry",
        "DROP TRIGGER IF EXISTS tickets_auditfield_count ON tickets_auditfield",
        "DROP TRIGGER IF EXISTS tickets_auditoutcome_count ON tickets_auditoutcome",
        "DROP TABLE IF EXISTS tickets_auditcount",
        *(
            f"DROP FUNCTION IF EXISTS tickets_audit_count_{name}()"
            for name in ("entries", "fields", "outcomes", "zero")
        ),
    ]
    return create, drop


def statements(vendor: str) -> tuple[list[str], list[str]]:
    """(create, drop): the table and its triggers."""
    if vendor == "postgresql":
        return _postgresql()
    if vendor == "sqlite":
        return _sqlite()
    raise NotImplementedError(f"No audit counts for {vendor}.")


def create_triggers(connection) -> None:
    """The triggers alone (the table exists), e.g. after a rebuild of an audit table."""
    create, _ = statements(connection.vendor)
    with connection.cursor() as cursor:
        for statement in create[1:]:
            cursor.execute(statement)


def forwards(apps, schema_editor):
    connection = schema_editor.connection
    create, _ = statements(connection.vendor)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Writers wait on the chain lock, so no row escapes both the backfill and
            # the triggers (SQLite: the migration already holds the write lock).
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CHAIN_LOCK_ID])
        for statement in create:
            cursor.execute(statement)
        cursor.execute(_backfill(connection.vendor))


def backwards(apps, schema_editor):
    _, drop = statements(schema_editor.connection.vendor)
    with schema_editor.connection.cursor() as cursor:
        for statement in drop:
            cursor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("tickets", "0015_audit_scale")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="AuditCount",
                    fields=[
                        (
                            "pk",
                            models.CompositePrimaryKey(
                                "field",
                                "outcome",
                                "bucket",
                                "team_id",
                                "action",
                                blank=True,
                                editable=False,
                                primary_key=True,
                                serialize=False,
                            ),
                        ),
                        ("field", models.CharField(blank=True, max_length=64)),
                        ("bucket", models.DateTimeField()),
                        ("team_id", models.CharField(blank=True, max_length=64)),
                        ("action", models.CharField(max_length=64)),
                        ("outcome", models.CharField(max_length=16)),
                        ("n", models.BigIntegerField()),
                    ],
                ),
            ],
            database_operations=[migrations.RunPython(forwards, backwards)],
        ),
    ]
