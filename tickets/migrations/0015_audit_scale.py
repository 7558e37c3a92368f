"""The reason search at scale (issue 15), SQLite only.

On SQLite the partial index of entries that have a reason also holds the reason, so a
reason search (its page and its chart) reads the index alone instead of a table row per
reason: at 1,000,000 entries a page with its 30-day chart went from ~55 to ~20 ms, and a
search that matches nothing, which reads every reason, from ~230 to ~40 ms.

PostgreSQL gets no such index: a B-tree entry must stay under 2,704 bytes and a reason
may be longer (1,000 characters of up to 4 bytes each, more for a revert's), so an
INSERT could fail. It keeps reading the reason from the table (see bench/README.md).

Plain CREATE INDEX, outside the model's Meta (Django's state) like the triggers of 0002,
because it exists on one database only. A later migration that makes Django rebuild
tickets_auditentry on SQLite (create, copy, drop, rename) drops it silently: such a
migration must create it again (REASON_INDEX_SQL).
"""

from django.db import migrations

REASON_INDEX = "audit_entry_reason_text"
REASON_INDEX_SQL = (
    f"CREATE INDEX IF NOT EXISTS {REASON_INDEX} ON tickets_auditentry "
    "(created_at, id, reason) WHERE reason IS NOT NULL"
)


def create_reason_index(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        schema_editor.execute(REASON_INDEX_SQL)


def drop_reason_index(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        schema_editor.execute(f"DROP INDEX IF EXISTS {REASON_INDEX}")


class Migration(migrations.Migration):
    dependencies = [("tickets", "0014_export_jobs")]

    operations = [migrations.RunPython(create_reason_index, drop_reason_index)]
