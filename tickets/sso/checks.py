"""`check --deploy`: the groups OIDC_GROUP_MAP names exist (the data migration makes
"Support managers" and "Auditors"; others are made in /admin/)."""

from django.conf import settings
from django.core import checks
from django.db import DatabaseError


@checks.register("thena_admin", deploy=True)
def check_group_map(app_configs, **kwargs) -> list[checks.CheckMessage]:
    from django.contrib.auth.models import Group

    names = {name for names in settings.OIDC_GROUP_MAP.values() for name in names}
    if not names:
        return []
    try:
        known = set(Group.objects.filter(name__in=names).values_list("name", flat=True))
    except DatabaseError:
        return []  # no database yet: migrate first
    return [
        checks.Error(
            f"OIDC_GROUP_MAP names the group {name!r}, which does not exist.",
            hint="Make it in /admin/ (Groups), or correct OIDC_GROUP_MAP.",
            id="sso.E001",
        )
        for name in sorted(names - known)
    ]
