"""The table of the database cache (settings.CACHES without CACHE_URL), made here so that
every database that is migrated has it: `make demo`, `make test`, `make test-postgres`,
CI and production, with no `createcachetable` step to forget. The same table as
`manage.py createcachetable` makes (its own code), and nothing when it already exists."""

from django.core.management.commands.createcachetable import Command
from django.db import migrations

CACHE_TABLE = "thena_admin_cache"  # settings.CACHE_TABLE


def create_cache_table(apps, schema_editor):
    command = Command()
    command.verbosity = 0
    command.create_table(schema_editor.connection.alias, CACHE_TABLE, dry_run=False)


def drop_cache_table(apps, schema_editor):
    quote = schema_editor.connection.ops.quote_name
    schema_editor.execute(f"DROP TABLE IF EXISTS {quote(CACHE_TABLE)}")


class Migration(migrations.Migration):
    dependencies = [
        ("tickets", "0005_edit_lock_and_base_updated_at"),
    ]

    operations = [
        migrations.RunPython(create_cache_table, drop_cache_table, elidable=False),
    ]
