"""Database triggers that refuse UPDATE and DELETE (and TRUNCATE) on the audit tables.

The SQL lives here, frozen with the migration; tests import create_triggers and
drop_triggers to tamper with the log behind the triggers' back.

On SQLite, a later migration that alters an audit table makes Django rebuild the table
(create, copy, drop, rename), which silently drops its triggers: such a migration must
call drop_triggers/create_triggers around the change. The trigger tests catch a miss.
"""

from django.db import migrations

AUDIT_TABLES = ("tickets_auditentry", "tickets_auditoutcome", "tickets_auditfield")
MESSAGE = "audit log is insert-only"

# TRUNCATE of an empty table removes nothing, and Django's test flush truncates every
# table after each transactional test, so only a non-empty truncate is refused.
POSTGRES_FUNCTION = f"""
CREATE OR REPLACE FUNCTION tickets_audit_insert_only() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    has_rows boolean;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I.%I)', TG_TABLE_SCHEMA, TG_TABLE_NAME)
            INTO has_rows;
        IF NOT has_rows THEN
            RETURN NULL;
        END IF;
    END IF;
    RAISE EXCEPTION '{MESSAGE} (% on %)', TG_OP, TG_TABLE_NAME;
END;
$$;
"""


def _statements(vendor: str) -> tuple[list[str], list[str]]:
    create, drop = [], []
    if vendor == "postgresql":
        create.append(POSTGRES_FUNCTION)
        for table in AUDIT_TABLES:
            create += [
                f"CREATE TRIGGER {table}_insert_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION tickets_audit_insert_only()",
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION tickets_audit_insert_only()",
            ]
            drop += [
                f"DROP TRIGGER IF EXISTS {table}_insert_only ON {table}",
                f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}",
            ]
        drop.append("DROP FUNCTION IF EXISTS tickets_audit_insert_only()")
    elif vendor == "sqlite":
        for table in AUDIT_TABLES:
            for event in ("UPDATE", "DELETE"):
                name = f"{table}_no_{event.lower()}"
                create.append(
                    f"CREATE TRIGGER {name} BEFORE {event} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END"
                )
                drop.append(f"DROP TRIGGER IF EXISTS {name}")
    else:
        raise NotImplementedError(f"No insert-only triggers for {vendor}.")
    return create, drop


def create_triggers(connection) -> None:
    _execute(connection, _statements(connection.vendor)[0])


def drop_triggers(connection) -> None:
    _execute(connection, _statements(connection.vendor)[1])


def _execute(connection, statements: list[str]) -> None:
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def forwards(apps, schema_editor):
    create_triggers(schema_editor.connection)


def backwards(apps, schema_editor):
    drop_triggers(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [("tickets", "0001_initial")]

    operations = [
        migrations.RunPython(forwards, backwards),
    ]
