import contextlib
import time
import zoneinfo
from urllib.parse import unquote

from django.conf import settings
from django.urls import Resolver404, resolve
from django.utils import timezone

from .thena.client import request_budget

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


class SessionIdleMiddleware:
    """Sessions end after SESSION_COOKIE_AGE without a request. Instead of saving the
    session on every request, renew its expiry at most every few minutes."""

    RENEW_EVERY = 300  # seconds

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        session = getattr(request, "session", None)
        if session is not None and session.session_key:
            now = int(time.time())
            if now - session.get("_renewed", 0) > self.RENEW_EVERY:
                session["_renewed"] = now  # marks it modified, so it is saved and renewed
        return self.get_response(request)


class RequestBudgetMiddleware:
    """One deadline for all Thena calls of a request, retries included, so a slow Thena
    ends in a clear message before the worker timeout (THENA_REQUEST_BUDGET_SECONDS)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        seconds = settings.THENA_REQUEST_BUDGET_SECONDS
        if not seconds or seconds <= 0:
            return self.get_response(request)
        with request_budget(seconds):
            return self.get_response(request)


class HealthCheckMiddleware:
    """Serves /healthz and /healthz/live before any middleware that reads the Host header
    (SecurityMiddleware's HTTPS redirect, CommonMiddleware, CSRF): a load balancer probes
    by IP address, which ALLOWED_HOSTS would answer with 400, and over plain HTTP, which
    DJANGO_HTTPS would redirect. No session, login or messages either. In MIDDLEWARE right
    after RequestIdMiddleware, which reads no host."""

    PATHS = frozenset({"/healthz", "/healthz/live"})

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path_info not in self.PATHS:
            return self.get_response(request)
        try:
            match = resolve(request.path_info)
        except Resolver404:
            return self.get_response(request)
        request.resolver_match = match  # the metrics label requests by route name
        return match.func(request, *match.args, **match.kwargs)
