"""Request ids and structured logs.

Every request gets one id: the caller's `X-Request-ID` when it is a sane token, else a
new one. It is echoed in the response, sent to Thena with every call, stored in the
audit entry and put on every log line of the request, so one grep follows an edit from
the browser through Thena to the audit log.

Logs are JSON, one object a line, through structlog (stdlib `logging` records too:
the `tickets` loggers, django.request). The logging config loads this module before the
apps are ready, so nothing here imports models at import time.
"""

import functools
import logging
import re
import time
import uuid
from contextvars import ContextVar

import structlog
from django.conf import settings
from django_structlog import signals as structlog_signals

from . import metrics

HEADER = "X-Request-ID"

_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


def current_request_id() -> str | None:
    """The id of the request being served (also in threads started with its context)."""
    return _request_id.get()


def _incoming_id(request) -> str:
    # chain.py owns the rule of the audit column; imported here, not at the top (see above).
    from .audit.chain import REQUEST_ID_RE

    sent = request.headers.get(HEADER, "").strip()
    return sent if REQUEST_ID_RE.match(sent) else uuid.uuid4().hex


def _client_ip(request) -> str | None:
    from .audit.chain import client_ip  # the audit log's reading (DJANGO_PROXY_COUNT)

    return client_ip(request)


class RequestIdMiddleware:
    """First in MIDDLEWARE: sets the request id, echoes it, and times the request for
    the metrics (by route name, known once the URL is resolved)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.monotonic()
        request.request_id = _incoming_id(request)
        token = _request_id.set(request.request_id)
        structlog.contextvars.clear_contextvars()  # nothing left from the thread's last request
        structlog.contextvars.bind_contextvars(
            request_id=request.request_id, ip=_client_ip(request)
        )
        try:
            response = self.get_response(request)
        finally:
            _request_id.reset(token)
            structlog.contextvars.clear_contextvars()  # nor for code run after it
        response[HEADER] = request.request_id
        metrics.observe_http_request(request, response.status_code, time.monotonic() - started)
        return response

    def process_view(self, request, view_func, view_args, view_kwargs):
        ticket_id = view_kwargs.get("ticket_id")
        if ticket_id:
            structlog.contextvars.bind_contextvars(ticket_id=str(ticket_id)[:64])


def _same_request_id(request, **kwargs) -> None:
    """django-structlog binds an id of its own: ours replaces it, so there is one."""
    request_id = getattr(request, "request_id", None)
    if request_id:
        structlog.contextvars.bind_contextvars(request_id=request_id)


structlog_signals.bind_extra_request_metadata.connect(_same_request_id)

# Audit outcomes

audit_log = structlog.stdlib.get_logger("tickets.audit")


def audit_outcome(*, entry, outcome: str, status_code: int | None = None) -> None:
    """One log line and one count per final outcome of an audit entry."""
    metrics.AUDIT_OUTCOMES.labels(entry.action, outcome).inc()
    audit_log.info(
        "audit_outcome",
        entry_id=entry.pk,
        action=entry.action,
        ticket_id=entry.ticket_id or None,
        outcome=outcome,
        status_code=status_code,
    )


# Log format

# Keys whose values are never logged, whatever logs them.
SECRET_KEYS = frozenset(
    {"password", "authorization", "cookie", "csrfmiddlewaretoken", "csrftoken", "sessionid"}
    | {"x-api-key", "api_key", "token", "id_token", "access_token", "code_verifier"}
    | {"x-thena-webhook-secret", "x-thena-signature"}
)
REDACTED = "[redacted]"
_MIN_SECRET = 8  # shorter "secrets" would redact ordinary words


def _secrets_re() -> re.Pattern | None:
    names = (
        "THENA_API_KEY",
        "METRICS_TOKEN",
        "SECRET_KEY",
        "AUDIT_HMAC_KEY",
        "THENA_WEBHOOK_SECRET",
        "OIDC_CLIENT_SECRET",
    )
    values = {getattr(settings, name, "") or "" for name in names}
    return _compile(tuple(sorted((v for v in values if len(v) >= _MIN_SECRET), key=len)))


@functools.lru_cache(maxsize=4)
def _compile(secrets: tuple[str, ...]) -> re.Pattern | None:
    longest_first = reversed(secrets)
    return re.compile("|".join(map(re.escape, longest_first)), re.IGNORECASE) if secrets else None


def redact_secrets(logger, method_name, event_dict):
    """Last line of defence: the configured secrets (any letter case) and values under
    secret-looking keys never reach the output."""
    pattern = _secrets_re()

    def clean(key, value):
        if isinstance(key, str) and key.lower() in SECRET_KEYS:
            return REDACTED
        if isinstance(value, str):
            return pattern.sub(REDACTED, value) if pattern else value
        if isinstance(value, dict):
            return {k: clean(k, v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(None, v) for v in value]
        return value

    return {key: clean(key, value) for key, value in event_dict.items()}


SHARED_PROCESSORS = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_logger_name,
    structlog.stdlib.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def json_formatter() -> logging.Formatter:
    """The formatter of settings.LOGGING. Also configures structlog itself, so that
    structlog loggers and stdlib records end in the same handler and format."""
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *SHARED_PROCESSORS,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*SHARED_PROCESSORS, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            # A plain traceback: no local variables, which may hold secrets.
            structlog.processors.format_exc_info,
            redact_secrets,
            structlog.processors.JSONRenderer(),
        ],
    )
