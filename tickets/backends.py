"""Django's ModelBackend, reading a user's permissions in one query.

Every page asks for a permission (the header's "Audit log" link); Django's backend then
builds two ORM queries, the user's own permissions and their groups', a tenth of a
light page's CPU. This one sends a single prepared statement for both.
"""

import functools

from django.contrib.auth import backends, get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection


@functools.cache
def _sql() -> str:
    user_perms = get_user_model().user_permissions.through._meta
    group_perms = Group.permissions.through._meta
    user_groups = get_user_model().groups.through._meta
    q = connection.ops.quote_name
    return (
        f"SELECT ct.{q('app_label')}, p.{q('codename')}"
        f" FROM {q(Permission._meta.db_table)} p"
        f" JOIN {q(ContentType._meta.db_table)} ct ON ct.{q('id')} = p.{q('content_type_id')}"
        f" WHERE p.{q('id')} IN ("
        f"SELECT {q('permission_id')} FROM {q(user_perms.db_table)} WHERE {q('user_id')} = %s"
        f" UNION SELECT gp.{q('permission_id')} FROM {q(group_perms.db_table)} gp"
        f" JOIN {q(user_groups.db_table)} ug ON ug.{q('group_id')} = gp.{q('group_id')}"
        f" WHERE ug.{q('user_id')} = %s)"
    )


class ModelBackend(backends.ModelBackend):
    def get_all_permissions(self, user_obj, obj=None):
        if not user_obj.is_active or user_obj.is_anonymous or obj is not None:
            return set()
        if not hasattr(user_obj, "_perm_cache"):
            if user_obj.is_superuser:
                return super().get_all_permissions(user_obj, obj)
            with connection.cursor() as cursor:
                cursor.execute(_sql(), [user_obj.pk, user_obj.pk])
                user_obj._perm_cache = {f"{app}.{codename}" for app, codename in cursor}
        return user_obj._perm_cache
