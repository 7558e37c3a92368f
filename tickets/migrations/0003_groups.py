"""The groups "Support managers" (edit tickets, read the audit log) and "Auditors"."""

from django.db import migrations

GROUPS = {
    "Support managers": [("ticket", "edit_ticket"), ("auditentry", "view_auditentry")],
    "Auditors": [("auditentry", "view_auditentry")],
}
# post_migrate creates permissions only after all migrations, so make them here.
PERMISSION_NAMES = {
    "edit_ticket": "Can edit Thena tickets",
    "view_auditentry": "Can view audit entry",
}


def create_groups(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for group_name, permissions in GROUPS.items():
        group, _ = Group.objects.get_or_create(name=group_name)
        for model, codename in permissions:
            content_type, _ = ContentType.objects.get_or_create(app_label="tickets", model=model)
            permission, _ = Permission.objects.get_or_create(
                content_type=content_type,
                codename=codename,
                defaults={"name": PERMISSION_NAMES[codename]},
            )
            group.permissions.add(permission)


def delete_groups(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=GROUPS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("tickets", "0002_audit_insert_only_triggers"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_groups, delete_groups)]
