"""Django's ModelBackend, reading the signed-in user and their permissions with plain
statements.

Every request loads the user, and every page asks for a permission (the header's "Audit
log" link): Django's backend builds a QuerySet for the first and two for the second, a
tenth of a light page's CPU. Building a query costs more than running it here.
"""

import functools

from django.contrib.auth import backends, get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
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


@functools.cache
def _user_sql() -> str:
    meta, q = get_user_model()._meta, connection.ops.quote_name
    columns = ", ".join(q(field.column) for field in meta.concrete_fields)
    return f"SELECT {columns} FROM {q(meta.db_table)} WHERE {q(meta.pk.column)} = %s"


class ModelBackend(backends.ModelBackend):
    def get_user(self, user_id):
        model = get_user_model()
        try:
            pk = model._meta.pk.to_python(user_id)
        except ValidationError:
            return None
        user = next(iter(model._default_manager.raw(_user_sql(), [pk])), None)
        return user if user is not None and self.user_can_authenticate(user) else None

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
