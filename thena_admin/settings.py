"""Settings for thena-admin, read from the environment only (see .env.example)."""

import os
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.core.management.utils import get_random_secret_key
from django.utils.csp import CSP

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    """Strict: only true/false (or 1/0) are accepted, so a typo never flips a switch."""
    value = os.getenv(name, "").strip().lower()
    if not value:
        return default
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}.")


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.getenv(name, "")
    items = [item.strip() for item in value.split(",") if item.strip()]
    return items or default


def env_float(name: str, default: float) -> float:
    value = os.getenv(name, "").strip()
    try:
        return float(value) if value else default
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {value!r}.") from None


DEBUG = env_bool("DJANGO_DEBUG", False)


def _secret_key() -> str:
    key = os.getenv("DJANGO_SECRET_KEY", "").strip()
    if key:
        return key
    if DEBUG:
        # The demo keeps one generated key on disk so sessions survive runserver reloads.
        path = BASE_DIR / ".demo-secret-key"
        if not path.exists():
            path.write_text(get_random_secret_key())
            path.chmod(0o600)
        return path.read_text().strip()
    raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off.")


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "axes",
    "django_tasks_db",
    "tickets",
]

MIDDLEWARE = [
    "tickets.observability.RequestIdMiddleware",  # first: every answer carries the id
    "tickets.middleware.HealthCheckMiddleware",  # before anything reads the Host header
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "tickets.middleware.SessionIdleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # After authentication, so its request_started line knows the user.
    "django_structlog.middlewares.RequestMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "tickets.middleware.TimezoneMiddleware",
    "tickets.middleware.RequestBudgetMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "thena_admin.urls"
WSGI_APPLICATION = "thena_admin.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.tz",
            ],
        },
    },
]

# Django's widget templates, the common ones rendered in Python (same markup, a fraction
# of the CPU: tickets/widgets.py).
FORM_RENDERER = "tickets.widgets.FastTemplates"

DATABASES = {
    "default": dj_database_url.parse(
        os.getenv("DATABASE_URL", "") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=60,
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers and the single writer overlap; IMMEDIATE avoids upgrade deadlocks.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }

# The cache (Thena lookups, tickets' teams, audit chart counts) is shared by every process:
# the database by default (its table is made by a migration), Redis with
# CACHE_URL=redis://host:6379/0 (rediss:// for TLS; needs redis-py installed, which the
# lock file leaves out).
CACHE_TABLE = "thena_admin_cache"  # made by the tickets migration 0006_cache_table


def cache_backend(url: str) -> dict:
    """The default cache for CACHE_URL `url`: empty is the database, redis:// or
    rediss:// is Redis; anything else is refused."""
    url = url.strip()
    if not url:
        return {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": CACHE_TABLE}
    if url.split("://", 1)[0].lower() in ("redis", "rediss") and "://" in url:
        return {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url}
    raise ImproperlyConfigured(
        "CACHE_URL must be empty (the database cache) or a redis:// or rediss:// URL."
    )


CACHES = {"default": {**cache_backend(os.getenv("CACHE_URL", "")), "TIMEOUT": 300}}

# Background work (tickets/tasks.py) is queued in the database, so every instance on one
# database shares one durable queue; `manage.py db_worker` runs it (tests too: they run
# the worker's loop in-process).
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
# Minutes between two sweeps that settle pending and unknown audit entries
# (tickets.tasks.reconcile_sweep; started by `manage.py schedule_reconcile`).
AUDIT_RECONCILE_MINUTES = env_float("AUDIT_RECONCILE_MINUTES", 5.0)
if not 0 < AUDIT_RECONCILE_MINUTES <= 24 * 60:
    raise ImproperlyConfigured("AUDIT_RECONCILE_MINUTES must be more than 0, at most 1440.")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # refuses logins while locked out
    "tickets.backends.ModelBackend",
]
# Login throttling (tickets/lockouts.py), over the last 15 minutes: 5 failures for one
# username from one IP lock that pair; 30 failures from one IP, any usernames, lock the IP.
# Behind a reverse proxy REMOTE_ADDR is the proxy: set DJANGO_PROXY_COUNT (below).
AXES_HANDLER = "tickets.lockouts.LockoutHandler"  # a success forgives its own pair only
AXES_FAILURE_LIMIT = "tickets.lockouts.failure_limit"  # 5 for the pair, 30 for the IP
AXES_COOLOFF_TIME = timedelta(minutes=15)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"], ["ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False
# Behind N reverse proxies, the client address is the Nth from the right in X-Forwarded-For.
PROXY_COUNT = int(env_float("DJANGO_PROXY_COUNT", 0))
AXES_CLIENT_IP_CALLABLE = "tickets.audit.client_ip"

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/tickets/"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Large audit exports are written here by the task worker (tickets/audit/jobs.py): a
# directory by default, shared by every instance (a volume), or any Django storage, e.g.
# an S3-compatible bucket with django-storages installed:
# EXPORT_STORAGE_BACKEND=storages.backends.s3.S3Storage and its AWS_* variables.
EXPORT_DIR = Path(os.getenv("EXPORT_DIR", "") or BASE_DIR / "var" / "exports")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
    "exports": (
        {"BACKEND": os.environ["EXPORT_STORAGE_BACKEND"]}
        if os.getenv("EXPORT_STORAGE_BACKEND")
        else {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": EXPORT_DIR, "directory_permissions_mode": 0o700},
        }
    ),
}
# An export of more entries than this runs in the background; its file is kept (and its
# link works) for EXPORT_RETENTION_HOURS.
EXPORT_BACKGROUND_ROWS = int(env_float("EXPORT_BACKGROUND_ROWS", 50_000))
EXPORT_RETENTION_HOURS = env_float("EXPORT_RETENTION_HOURS", 24)
if EXPORT_BACKGROUND_ROWS < 1 or EXPORT_RETENTION_HOURS <= 0:
    raise ImproperlyConfigured(
        "EXPORT_BACKGROUND_ROWS must be at least 1 and EXPORT_RETENTION_HOURS above 0."
    )

# HTTPS hardening: DJANGO_HTTPS=true when served over TLS (secure cookies, HSTS, redirect).
# Behind a TLS-terminating proxy, the proxy must set X-Forwarded-Proto.
HTTPS = env_bool("DJANGO_HTTPS", False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = HTTPS
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = 60 * 60 * 24 * 365 if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
# Sessions end after 8 hours without a request (tickets.middleware.SessionIdleMiddleware).
SESSION_COOKIE_AGE = 8 * 60 * 60
SESSION_ENGINE = "tickets.sessions"  # Django's database sessions, read with plain SQL
# No inline scripts or styles anywhere: htmx is configured not to inject its own styles
# (base.html's htmx-config) and every script is a static file.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "object-src": [CSP.NONE],
}

# Thena. An empty base URL means the in-process sandbox (tickets/thena/sandbox).
THENA_API_BASE_URL = os.getenv("THENA_API_BASE_URL", "").strip().rstrip("/")


def _thena_api_key() -> str:
    """From THENA_API_KEY, or from the file THENA_API_KEY_FILE names (a secrets mount)."""
    key = os.getenv("THENA_API_KEY", "").strip()
    path = os.getenv("THENA_API_KEY_FILE", "").strip()
    if key and path:
        raise ImproperlyConfigured("Set THENA_API_KEY or THENA_API_KEY_FILE, not both.")
    if not path:
        return key
    try:
        return Path(path).read_text().strip()
    except OSError as error:
        raise ImproperlyConfigured(
            f"THENA_API_KEY_FILE names a file that cannot be read ({error.strerror})."
        ) from None


THENA_API_KEY = _thena_api_key()
THENA_TIMEOUT_SECONDS = env_float("THENA_TIMEOUT_SECONDS", 10.0)
# All Thena calls of one HTTP request, retries included; well under gunicorn's --timeout 30.
THENA_REQUEST_BUDGET_SECONDS = env_float("THENA_REQUEST_BUDGET_SECONDS", 20.0)
# The docs lost the name of this PATCH key (thena-api.md §2.2); this spelling is a guess,
# so it is a setting. Confirm it against GET /swagger-json of your organisation.
THENA_AUTO_LINK_FIELD = os.getenv("THENA_AUTO_LINK_FIELD", "").strip() or "autoLinkSlackChannel"
# "Open in Thena" on the ticket page: the address of a ticket in Thena's web app, as a
# template with {id} and/or {identifier} (e.g. https://app.thena.ai/tickets/{identifier}).
# Thena does not document that address, so it is a setting; empty hides the link.
THENA_WEB_URL_PLACEHOLDERS = ("{id}", "{identifier}")


def thena_web_url(template: str) -> str:
    """THENA_WEB_URL checked: empty, or an http(s) URL with a host whose only braces are
    the placeholders (at least one of them)."""
    template = template.strip()
    if not template:
        return ""
    rest = template
    for placeholder in THENA_WEB_URL_PLACEHOLDERS:
        rest = rest.replace(placeholder, "")
    parts = urlsplit(template)
    if (
        parts.scheme.lower() not in ("http", "https")
        or not parts.netloc
        or "{" in parts.netloc
        or "{" in rest
        or "}" in rest
        or rest == template
        or any(ord(char) <= 0x20 or ord(char) == 0x7F for char in template)
    ):
        raise ImproperlyConfigured(
            "THENA_WEB_URL must be empty or an http(s) URL with {id} and/or {identifier} as "
            "its only placeholders, e.g. https://app.thena.ai/tickets/{identifier}."
        )
    return template


THENA_WEB_URL = thena_web_url(os.getenv("THENA_WEB_URL", ""))
# A reason (the audit entry's `reason`) is required for every change: edits and reverts.
THENA_REQUIRE_REASON = env_bool("THENA_REQUIRE_REASON", False)
# The in-process sandbox lives in one process: served by several (gunicorn workers, or
# instances sharing a PostgreSQL database) each would have its own Thena, so the server
# refuses to start that way (tickets/checks.py, gunicorn.conf.py) unless this says a
# test or demo knows it.
THENA_ALLOW_IN_PROCESS_SANDBOX = env_bool("THENA_ALLOW_IN_PROCESS_SANDBOX", False)
# Bulk edits (tickets/bulk.py): the most tickets one may change, how many go into one
# PATCH /v1/tickets/bulk (Thena documents no limit), and how long a worker's claim on a
# running batch lasts without being renewed before another worker takes the batch over.
BULK_MAX_TICKETS = int(env_float("BULK_MAX_TICKETS", 1000))
BULK_CHUNK_SIZE = int(env_float("BULK_CHUNK_SIZE", 50))
BULK_LEASE_SECONDS = env_float("BULK_LEASE_SECONDS", 60.0)
if BULK_MAX_TICKETS < 1 or not 1 <= BULK_CHUNK_SIZE <= 500 or BULK_LEASE_SECONDS < 1:
    raise ImproperlyConfigured(
        "BULK_MAX_TICKETS must be at least 1, BULK_CHUNK_SIZE 1 to 500, BULK_LEASE_SECONDS "
        "at least 1."
    )
# `check --deploy` refuses SQLite and the in-process sandbox with DJANGO_DEBUG off, unless
# this says the deployment is a demo.
THENA_DEMO_DEPLOY = env_bool("THENA_DEMO_DEPLOY", False)

# The audit log's MAC key (HMAC-SHA256 over every row, tickets/audit/chain.py), kept outside
# the database so that database access alone cannot forge the chain. Rotation: the new key
# in AUDIT_HMAC_KEY, the previous ones (oldest first) in AUDIT_HMAC_OLD_KEYS so that older
# rows still verify. Each from the variable or from the file *_FILE names (not both).
AUDIT_HMAC_KEY_MIN_LENGTH = 32


def _audit_secret(name: str) -> str:
    value = os.getenv(name, "").strip()
    path = os.getenv(f"{name}_FILE", "").strip()
    if value and path:
        raise ImproperlyConfigured(f"Set {name} or {name}_FILE, not both.")
    if not path:
        return value
    try:
        value = Path(path).read_text().strip()
    except OSError as error:
        raise ImproperlyConfigured(
            f"{name}_FILE names a file that cannot be read ({error.strerror})."
        ) from None
    if not value:
        raise ImproperlyConfigured(f"{name}_FILE names an empty file.")
    return value


# Thena's ticket events (tickets/events.py): the secret /webhooks/thena/ checks (or from
# the file THENA_WEBHOOK_SECRET_FILE names); unset, the receiver answers 404. A change made
# in Thena within THENA_DRIFT_SECONDS of a dashboard edit of the same field is flagged.
THENA_WEBHOOK_SECRET = _audit_secret("THENA_WEBHOOK_SECRET")
if THENA_WEBHOOK_SECRET and len(THENA_WEBHOOK_SECRET) < 16:
    raise ImproperlyConfigured("THENA_WEBHOOK_SECRET must be at least 16 characters long.")
THENA_DRIFT_SECONDS = env_float("THENA_DRIFT_SECONDS", 600.0)
if THENA_DRIFT_SECONDS < 0:
    raise ImproperlyConfigured("THENA_DRIFT_SECONDS cannot be negative.")


def _audit_hmac_key() -> str:
    key = _audit_secret("AUDIT_HMAC_KEY")
    if not key:
        if not DEBUG:
            raise ImproperlyConfigured(
                "AUDIT_HMAC_KEY or AUDIT_HMAC_KEY_FILE must be set when DJANGO_DEBUG is off "
                "(make one with: openssl rand -base64 48)."
            )
        # The demo keeps its generated key on disk: the log must verify after a restart.
        path = BASE_DIR / ".demo-audit-key"
        if not path.exists():
            path.write_text(get_random_secret_key())
            path.chmod(0o600)
        key = path.read_text().strip()
    if len(key) < AUDIT_HMAC_KEY_MIN_LENGTH:
        raise ImproperlyConfigured(
            f"AUDIT_HMAC_KEY must be at least {AUDIT_HMAC_KEY_MIN_LENGTH} characters."
        )
    return key


AUDIT_HMAC_KEY = _audit_hmac_key()
# Comma-separated (in the file: commas or one per line), oldest first.
AUDIT_HMAC_OLD_KEYS = [
    key.strip()
    for key in _audit_secret("AUDIT_HMAC_OLD_KEYS").replace("\n", ",").split(",")
    if key.strip()
]
# Rotating DJANGO_SECRET_KEY: earlier keys here (comma-separated; in the file commas or one
# per line) keep what they signed (sessions, edit forms' snapshots) valid until removed.
SECRET_KEY_FALLBACKS = [
    key.strip()
    for key in _audit_secret("DJANGO_SECRET_KEY_FALLBACKS").replace("\n", ",").split(",")
    if key.strip()
]

# Logs: one JSON object a line on stderr (tickets/observability.py), with timestamp,
# level, logger, event, request_id and user_id. Django's own loggers get the same
# handler instead of its plain-text ones.
LOG_LEVEL = os.getenv("DJANGO_LOG_LEVEL", "").strip().upper() or "INFO"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "tickets.observability.json_formatter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "tickets": {"level": LOG_LEVEL},
        "django_structlog": {"level": LOG_LEVEL},
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "django.server": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "httpx": {"level": "WARNING"},  # its INFO line has the full URL, query included
    },
}
# django-structlog: our request id (its own would be a second one), never the caller's
# X-Correlation-ID, and the IP only as the audit log reads it (behind DJANGO_PROXY_COUNT).
DJANGO_STRUCTLOG_TRUST_UPSTREAM_REQUEST_ID = False
DJANGO_STRUCTLOG_TRUST_UPSTREAM_CORRELATION_ID = False
DJANGO_STRUCTLOG_IP_LOGGING_ENABLED = False

# /metrics (Prometheus): with a token, only `Authorization: Bearer <token>`; without,
# only direct requests from this host (loopback, through no proxy). Anything else is 404.
METRICS_TOKEN = os.getenv("METRICS_TOKEN", "").strip()

# --- Single sign-on ---------------------------------------------------------------------
# OpenID Connect through the company's identity provider (tickets/sso/; README "Single
# sign-on"). Off while OIDC_ISSUER is empty: then only local accounts sign in.


def oidc_issuer(value: str) -> str:
    """OIDC_ISSUER checked: empty, or the provider's https:// URL (http:// only for a
    provider on this host), with no query or fragment."""
    value = value.strip()
    if not value:
        return ""
    parts = urlsplit(value)
    loopback = parts.hostname in ("localhost", "127.0.0.1", "::1")
    if (
        not (parts.scheme == "https" or (parts.scheme == "http" and loopback))
        or not parts.hostname
        or parts.query
        or parts.fragment
        or any(ord(char) <= 0x20 for char in value)
    ):
        raise ImproperlyConfigured(
            "OIDC_ISSUER must be the provider's issuer URL, https:// (http:// only on this "
            "host), without ?query or #fragment, e.g. https://login.example.com/realms/staff."
        )
    return value


def oidc_group_map(value: str) -> dict[str, list[str]]:
    """OIDC_GROUP_MAP, `provider group=Group name` pairs separated by commas, as
    {provider group: [group names]}."""
    mapping: dict[str, list[str]] = {}
    for item in value.split(","):
        if not item.strip():
            continue
        provider_group, equals, name = (part.strip() for part in item.partition("="))
        if not equals or not provider_group or not name:
            raise ImproperlyConfigured(
                "OIDC_GROUP_MAP must be provider-group=Group name pairs separated by commas, "
                f"e.g. support-leads=Support managers,audit=Auditors; not {item.strip()!r}."
            )
        names = mapping.setdefault(provider_group, [])
        if name not in names:
            names.append(name)
    return mapping


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


INSTALLED_APPS.append("tickets.sso")  # its table (the users' provider accounts) always exists
OIDC_ISSUER = oidc_issuer(os.getenv("OIDC_ISSUER", ""))
OIDC_CLIENT_ID = os.getenv("OIDC_CLIENT_ID", "").strip()
OIDC_CLIENT_SECRET = _audit_secret("OIDC_CLIENT_SECRET")  # or OIDC_CLIENT_SECRET_FILE
OIDC_SCOPES = os.getenv("OIDC_SCOPES", "").replace(",", " ").split() or [
    "openid",
    "email",
    "profile",
]
OIDC_PROVIDER_NAME = os.getenv("OIDC_PROVIDER_NAME", "").strip() or "single sign-on"
OIDC_GROUPS_CLAIM = os.getenv("OIDC_GROUPS_CLAIM", "").strip() or "groups"
OIDC_GROUP_MAP = oidc_group_map(os.getenv("OIDC_GROUP_MAP", ""))
# Empty: team scopes are not touched by sign-in (set in /admin/ by hand).
OIDC_TEAM_SCOPE_CLAIM = os.getenv("OIDC_TEAM_SCOPE_CLAIM", "").strip()
# false: password sign-in for superusers only (break-glass); everyone else uses the provider.
LOCAL_LOGIN = env_bool("LOCAL_LOGIN", True)
if OIDC_ISSUER and not (OIDC_CLIENT_ID and OIDC_CLIENT_SECRET):
    raise ImproperlyConfigured(
        "OIDC_ISSUER is set: set OIDC_CLIENT_ID and OIDC_CLIENT_SECRET (or "
        "OIDC_CLIENT_SECRET_FILE) too, as registered at the provider."
    )
if not OIDC_ISSUER and (
    OIDC_CLIENT_ID or OIDC_CLIENT_SECRET or OIDC_GROUP_MAP or OIDC_TEAM_SCOPE_CLAIM
):
    raise ImproperlyConfigured(
        "OIDC_CLIENT_ID, OIDC_CLIENT_SECRET, OIDC_GROUP_MAP and OIDC_TEAM_SCOPE_CLAIM need "
        "OIDC_ISSUER, the provider's issuer URL."
    )
if "openid" not in OIDC_SCOPES:
    raise ImproperlyConfigured("OIDC_SCOPES must include openid, e.g. openid email profile.")
if not LOCAL_LOGIN and not OIDC_ISSUER:
    raise ImproperlyConfigured(
        "LOCAL_LOGIN=false leaves single sign-on as the only way in: set OIDC_ISSUER too."
    )
if OIDC_ISSUER:
    AUTHENTICATION_BACKENDS.append("tickets.sso.backends.OidcBackend")
    # Logging out sends the browser on to the provider's end-session endpoint: a redirect
    # after a form, which form-action governs.
    SECURE_CSP["form-action"].append(origin(OIDC_ISSUER))
if not LOCAL_LOGIN:
    AUTHENTICATION_BACKENDS[AUTHENTICATION_BACKENDS.index("tickets.backends.ModelBackend")] = (
        "tickets.sso.backends.BreakGlassBackend"
    )
# --- end of single sign-on --------------------------------------------------------------
