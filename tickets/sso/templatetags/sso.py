from django import template
from django.conf import settings

register = template.Library()


@register.simple_tag
def sso_options() -> dict:
    """What the login page offers: {"enabled", "provider_name", "local_login"}."""
    return {
        "enabled": bool(settings.OIDC_ISSUER),
        "provider_name": settings.OIDC_PROVIDER_NAME,
        "local_login": settings.LOCAL_LOGIN,
    }
