"""An index for the audit list's actor filter, which matches the recorded username.

AddIndex is a plain CREATE INDEX on SQLite too (no table rebuild), so the insert-only
triggers of 0002 stay in place.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("tickets", "0003_groups")]

    operations = [
        migrations.AddIndex(
            model_name="auditentry",
            index=models.Index(
                fields=["actor_username", "created_at", "id"], name="audit_entry_actor_name"
            ),
        ),
    ]
