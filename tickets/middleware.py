import contextlib
import zoneinfo
from urllib.parse import unquote

from django.utils import timezone

COOKIE = "tz"  # set by static/js/app.js from the browser's Intl time zone


class TimezoneMiddleware:
    """Show and read date-times in the user's own time zone (UTC until the browser says)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        timezone.deactivate()
        name = unquote(request.COOKIES.get(COOKIE, ""))[:64]
        if name:
            # A forged or unknown zone leaves the page on UTC.
            with contextlib.suppress(zoneinfo.ZoneInfoNotFoundError, ValueError):
                timezone.activate(zoneinfo.ZoneInfo(name))
        return self.get_response(request)
