"""Entries get a reason, the entry they revert, and a number people see.

`reason` and `revert_of` are nullable, without defaults: on SQLite that is a plain ALTER
TABLE ADD COLUMN (no table rebuild), so the insert-only triggers stay; rows before them
hash without them (optional chain fields).

`number` counts entries alone (ids count outcomes too, so entry ids skip). Like
AuditField it is derived from the chain order and not hashed; verify_audit_log checks it
is exactly 1..N in id order. Existing entries are numbered here, once: the only UPDATE
the audit tables ever see, made with their triggers lifted for this statement alone.
"""

import importlib

from django.db import migrations, models

triggers = importlib.import_module("tickets.migrations.0002_audit_insert_only_triggers")

NUMBER = """
UPDATE tickets_auditentry SET number = ranked.n
FROM (SELECT id, ROW_NUMBER() OVER (ORDER BY id) AS n FROM tickets_auditentry) AS ranked
WHERE tickets_auditentry.id = ranked.id
"""


def number_entries(apps, schema_editor):
    connection = schema_editor.connection
    triggers.drop_triggers(connection)
    with connection.cursor() as cursor:
        cursor.execute(NUMBER)
    triggers.create_triggers(connection)


class Migration(migrations.Migration):
    dependencies = [("tickets", "0007_audit_key_id")]

    operations = [
        migrations.AddField(
            model_name="auditentry",
            name="reason",
            field=models.TextField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="auditentry",
            name="revert_of",
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="auditentry",
            name="number",
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.AddIndex(
            model_name="auditentry",
            index=models.Index(fields=["number"], name="audit_entry_number"),
        ),
        migrations.AddIndex(
            model_name="auditentry",
            index=models.Index(fields=["revert_of"], name="audit_entry_revert_of"),
        ),
        migrations.RunPython(number_entries, migrations.RunPython.noop, elidable=False),
    ]
