"""Indexes for the audit list's chart and its revert and reason filters (issue 12).

Plain CREATE INDEX on both databases (no table rebuild on SQLite, so the insert-only
triggers stay). The two partial indexes hold only the entries that revert another or
carry a reason, in keyset order (created_at, id).
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("tickets", "0009_audit_team_name")]

    operations = [
        migrations.AddIndex(
            model_name="auditentry",
            index=models.Index(fields=["action", "created_at", "id"], name="audit_entry_action"),
        ),
        migrations.AddIndex(
            model_name="auditentry",
            index=models.Index(
                fields=["created_at", "id"],
                condition=models.Q(revert_of__isnull=False),
                name="audit_entry_reverts",
            ),
        ),
        migrations.AddIndex(
            model_name="auditentry",
            index=models.Index(
                fields=["created_at", "id"],
                condition=models.Q(reason__isnull=False),
                name="audit_entry_reasons",
            ),
        ),
    ]
