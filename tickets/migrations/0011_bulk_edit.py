"""Bulk edits (issue 13): batches and their items, the `bulk_edit` permission for
"Support managers", and each audit entry's batch.

`batch_id` on the audit entry is nullable without a default: a plain ALTER TABLE ADD
COLUMN on SQLite (no table rebuild), so the insert-only triggers of 0002 stay; it is an
optional chain field, so older rows hash without it and still verify.
"""

import uuid

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def grant_bulk_edit(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    content_type, _ = ContentType.objects.get_or_create(app_label="tickets", model="ticket")
    permission, _ = Permission.objects.get_or_create(
        content_type=content_type,
        codename="bulk_edit",
        defaults={"name": "Can edit Thena tickets in bulk"},
    )
    for group in Group.objects.filter(name="Support managers"):
        group.permissions.add(permission)


class Migration(migrations.Migration):
    dependencies = [
        ("tickets", "0010_audit_list_indexes"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="ticket",
            options={
                "default_permissions": (),
                "managed": False,
                "permissions": [
                    ("edit_ticket", "Can edit Thena tickets"),
                    ("bulk_edit", "Can edit Thena tickets in bulk"),
                ],
            },
        ),
        migrations.AddField(
            model_name="auditentry",
            name="batch_id",
            field=models.CharField(blank=True, max_length=36, null=True),
        ),
        migrations.AddIndex(
            model_name="auditentry",
            index=models.Index(
                condition=models.Q(batch_id__isnull=False),
                fields=["batch_id", "created_at", "id"],
                name="audit_entry_batch",
            ),
        ),
        migrations.CreateModel(
            name="Batch",
            fields=[
                (
                    "id",
                    models.UUIDField(
                        default=uuid.uuid4, editable=False, primary_key=True, serialize=False
                    ),
                ),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("team_id", models.CharField(max_length=64)),
                ("team_name", models.CharField(blank=True, max_length=200)),
                ("values", models.JSONField(default=dict)),
                ("value_labels", models.JSONField(default=dict)),
                ("reason", models.TextField(blank=True)),
                ("excluded", models.JSONField(default=dict)),
                (
                    "state",
                    models.CharField(
                        choices=[
                            ("draft", "Preview"),
                            ("queued", "Queued"),
                            ("running", "Running"),
                            ("done", "Done"),
                            ("cancelled", "Cancelled"),
                        ],
                        default="draft",
                        max_length=16,
                    ),
                ),
                ("request_id", models.CharField(blank=True, max_length=64)),
                ("client_ip", models.GenericIPAddressField(blank=True, null=True)),
                ("user_agent", models.CharField(blank=True, max_length=500)),
                ("confirmed_at", models.DateTimeField(blank=True, null=True)),
                ("cancel_requested_at", models.DateTimeField(blank=True, null=True)),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
                ("runner", models.CharField(blank=True, max_length=32)),
                ("heartbeat_at", models.DateTimeField(blank=True, null=True)),
                (
                    "created_by",
                    models.ForeignKey(
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "indexes": [models.Index(fields=["state", "heartbeat_at"], name="batch_state")]
            },
        ),
        migrations.CreateModel(
            name="BatchItem",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("position", models.PositiveIntegerField()),
                ("ticket_id", models.CharField(max_length=64)),
                ("ticket_identifier", models.CharField(blank=True, max_length=64)),
                ("ticket_title", models.TextField(blank=True)),
                ("before", models.JSONField(default=dict)),
                ("before_labels", models.JSONField(default=dict)),
                (
                    "state",
                    models.CharField(
                        choices=[("queued", "Queued"), ("sending", "Sending"), ("done", "Done")],
                        default="queued",
                        max_length=16,
                    ),
                ),
                (
                    "outcome",
                    models.CharField(
                        blank=True,
                        choices=[
                            ("succeeded", "Changed"),
                            ("no_change", "No change"),
                            ("skipped", "Skipped"),
                            ("failed", "Failed"),
                            ("unknown", "Unknown"),
                            ("cancelled", "Not sent (cancelled)"),
                        ],
                        max_length=16,
                    ),
                ),
                ("message", models.TextField(blank=True)),
                ("attempts", models.PositiveSmallIntegerField(default=0)),
                (
                    "batch",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="items",
                        to="tickets.batch",
                    ),
                ),
                (
                    "entry",
                    models.ForeignKey(
                        db_constraint=False,
                        null=True,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+",
                        to="tickets.auditentry",
                    ),
                ),
            ],
            options={
                "indexes": [
                    models.Index(fields=["batch", "state", "position"], name="batch_item_state"),
                    models.Index(fields=["batch", "position"], name="batch_item_position"),
                ],
                "constraints": [
                    models.UniqueConstraint(fields=("batch", "ticket_id"), name="batch_item_ticket")
                ],
            },
        ),
        migrations.RunPython(grant_bulk_edit, migrations.RunPython.noop),
    ]
