"""Prometheus metrics and the /metrics view.

With PROMETHEUS_MULTIPROC_DIR set (gunicorn with several workers) every process writes
its samples to files there and a scrape adds them up; the directory must be emptied
before the server starts, or counters carry over from the last run. prometheus_client
reads the variable when it is imported, so it comes from the environment, not settings.

Labels are kept few and bounded: route names, not paths; Thena path templates, not ids.
"""

import hmac
import ipaddress
import os
import threading
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, HttpResponseNotFound
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# Up to the request budget (20 s) and gunicorn's timeout (30 s).
BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30)

HTTP_REQUEST_SECONDS = Histogram(
    "thena_admin_http_request_duration_seconds",
    "Time to answer a request to this app, by route name.",
    ["method", "route", "status"],
    buckets=BUCKETS,
)
THENA_CALL_SECONDS = Histogram(
    "thena_admin_thena_request_duration_seconds",
    "Time of one HTTP request to Thena (one attempt).",
    ["method", "path", "status"],
    buckets=BUCKETS,
)
THENA_CALLS = Counter(
    "thena_admin_thena_requests",
    "HTTP requests to Thena (attempts); status is the code or the transport error.",
    ["method", "path", "status"],
)
THENA_RETRIES = Counter(
    "thena_admin_thena_retries", "Requests to Thena sent again.", ["method", "path"]
)
THENA_RATE_LIMITED = Counter(
    "thena_admin_thena_rate_limited", "Answers 429 from Thena.", ["method", "path"]
)
AUDIT_OUTCOMES = Counter(
    "thena_admin_audit_outcomes",
    "Audit outcomes recorded (final outcomes of entries and settlements).",
    ["action", "outcome"],
)

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def observe_http_request(request: HttpRequest, status: int, seconds: float) -> None:
    match = getattr(request, "resolver_match", None)
    route = (match.view_name if match else "") or "unmatched"
    method = request.method if request.method in HTTP_METHODS else "other"
    HTTP_REQUEST_SECONDS.labels(method, route, str(status)).observe(seconds)


# The oldest unsettled edit, computed at scrape time


class UnsettledCollector:
    """Age of the oldest ticket edit still pending or unknown (reconcile_audit settles
    them). Exports are left out: nothing settles a crashed one, so it would alarm forever.

    Finding the oldest pending entry means walking every edit written as pending (about a
    second at a million rows). An entry that was settled never becomes unsettled again,
    so each scrape starts where the previous one found the oldest, less a margin for
    transactions that committed late."""

    MARGIN = timedelta(minutes=5)

    def __init__(self) -> None:
        self._since: datetime | None = None
        self._lock = threading.Lock()

    def collect(self):
        from .models import Action, AuditEntry, AuditOutcome, Outcome

        with self._lock:
            now = timezone.now()
            edits = AuditEntry.objects.filter(action=Action.TICKET_UPDATE)
            unknown = AuditOutcome.objects.current().filter(
                outcome=Outcome.UNKNOWN, entry__action=Action.TICKET_UPDATE
            )
            if self._since is not None:
                edits = edits.filter(created_at__gte=self._since)
                unknown = unknown.filter(entry_created_at__gte=self._since)
            found = [
                edits.for_outcome(Outcome.PENDING).order_by("created_at", "id").first(),
                unknown.order_by("entry_created_at", "entry").first(),
            ]
            times = [
                row.created_at if isinstance(row, AuditEntry) else row.entry_created_at
                for row in found
                if row is not None
            ]
            oldest = min(times, default=None)
            self._since = min(oldest or now, now - self.MARGIN)
        gauge = GaugeMetricFamily(
            "thena_admin_audit_oldest_unsettled_age_seconds",
            "Age of the oldest ticket edit still pending or unknown (0 when none).",
        )
        gauge.add_metric([], (now - oldest).total_seconds() if oldest else 0.0)
        yield gauge


unsettled = UnsettledCollector()


class _ThisProcess:
    """The default registry (this process's metrics), as one collector."""

    def collect(self):
        return REGISTRY.collect()


def registry() -> CollectorRegistry:
    """What a scrape reports: every worker's metrics in multiprocess mode, else this
    process's, and the values computed from the database."""
    scraped = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(scraped)
    else:
        scraped.register(_ThisProcess())
    scraped.register(unsettled)
    return scraped


# /metrics


def _allowed(request: HttpRequest) -> bool:
    """With METRICS_TOKEN set: `Authorization: Bearer <token>`. Without it: only a direct
    request from this host, so a bare deployment shows nothing to the world. A request
    through a proxy (X-Forwarded-For or Forwarded set) is not direct, even when the proxy
    itself connects from loopback."""
    token = settings.METRICS_TOKEN
    if token:
        sent = request.headers.get("Authorization", "")
        return hmac.compare_digest(sent.encode(), f"Bearer {token}".encode())
    if "X-Forwarded-For" in request.headers or "Forwarded" in request.headers:
        return False
    try:
        return ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")).is_loopback
    except ValueError:
        return False


# /metrics
@never_cache
@login_not_required
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    if not _allowed(request):
        return HttpResponseNotFound("Not found.", content_type="text/plain")
    return HttpResponse(generate_latest(registry()), content_type=CONTENT_TYPE_LATEST)
