"""Entries keep the team's name as it was when they were written (issue 12: names, not
ids, wherever a person reads).

Nullable, without a default: on SQLite that is a plain ALTER TABLE ADD COLUMN (no table
rebuild), so the insert-only triggers of 0002 stay in place. It is an optional chain
field: rows before it (NULL) hash without it, so nothing is rewritten and they still
verify. Older entries have no name and show their team id.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("tickets", "0008_audit_reason_revert_number")]

    operations = [
        migrations.AddField(
            model_name="auditentry",
            name="team_name",
            field=models.CharField(blank=True, max_length=200, null=True),
        ),
    ]
