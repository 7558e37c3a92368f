"""The reason search on PostgreSQL (issue 15): reasons of at most 2,000 bytes get a
partial index of (created_at, id) that also holds the reason, so a search (its page and
its chart) reads the index alone instead of a table row per reason, as SQLite's
audit_entry_reason_text does (0015). A B-tree entry must stay under 2,704 bytes, so the
longer reasons (rare) get a partial index of their own and are read from the table;
queries._reason_parts searches the two parts apart.

Plain CREATE INDEX (it blocks writes to the table while it builds: seconds per million
entries), outside Django's state like 0015, because it exists on one database only.
"""

from django.db import migrations

SHORT_REASON_BYTES = 2000  # queries.SHORT_REASON_BYTES, frozen here
INDEXES = {
    "audit_entry_reason_short": (
        "(created_at, id) INCLUDE (reason) "
        f"WHERE reason IS NOT NULL AND OCTET_LENGTH(reason) <= {SHORT_REASON_BYTES}"
    ),
    "audit_entry_reason_long": (
        f"(created_at, id) WHERE reason IS NOT NULL AND OCTET_LENGTH(reason) > {SHORT_REASON_BYTES}"
    ),
}


def create_indexes(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for name, definition in INDEXES.items():
            schema_editor.execute(
                f"CREATE INDEX IF NOT EXISTS {name} ON tickets_auditentry {definition}"
            )


def drop_indexes(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for name in INDEXES:
            schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("tickets", "0016_audit_counts")]

    operations = [migrations.RunPython(create_indexes, drop_indexes)]
