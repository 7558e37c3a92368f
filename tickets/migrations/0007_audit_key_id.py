"""`key_id` on the chained audit tables: which AUDIT_HMAC_KEY made a row's MAC.

Nullable, without a default: on SQLite that is a plain ALTER TABLE ADD COLUMN (no table
rebuild), so the insert-only triggers of 0002 stay in place. Rows written before it keep
NULL and verify as the legacy (plain SHA-256) part of the chain; nothing is rewritten.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("tickets", "0006_cache_table")]

    operations = [
        migrations.AddField(
            model_name="auditentry",
            name="key_id",
            field=models.CharField(blank=True, max_length=16, null=True),
        ),
        migrations.AddField(
            model_name="auditoutcome",
            name="key_id",
            field=models.CharField(blank=True, max_length=16, null=True),
        ),
    ]
