"""Entries by id with their created_at and username (issue 15): the probes from rows
that point at an entry read this index alone instead of the entry's row, which on
SQLite is two lookups (the id's own index, then the table by rowid: "bigint PRIMARY
KEY" is no rowid alias) and on PostgreSQL a heap page. At 1,000,000 entries: the chart of
a field and an actor filter that matches most people (each field row of the month
probing its entry) went from ~25 to ~7 ms on SQLite, and the reverted entries' dates
(each revert probing the entry it reverts) from ~9 to ~5 ms on PostgreSQL.

Plain CREATE INDEX on both databases (no table rebuild on SQLite, so the insert-only
triggers stay); it blocks writes to the table while it builds, about two seconds per
million entries.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("tickets", "0017_audit_reason_index_postgresql")]

    operations = [
        migrations.AddIndex(
            model_name="auditentry",
            index=models.Index(
                fields=["id", "created_at", "actor_username"], name="audit_entry_by_id"
            ),
        ),
    ]
