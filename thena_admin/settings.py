"""Settings for thena-admin, read from the environment only (see .env.example)."""

import os
from datetime import timedelta
from pathlib import Path

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
# pytest (8.2+) sets PYTEST_VERSION for the whole session.
TESTING = "PYTEST_VERSION" in os.environ


def _secret_key() -> str:
    key = os.getenv("DJANGO_SECRET_KEY", "").strip()
    if key:
        return key
    if TESTING:
        return get_random_secret_key()
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
    "tickets",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "tickets.middleware.SessionIdleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
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

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "TIMEOUT": 300,
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
if TESTING:
    # PBKDF2 at full strength makes every test login slow; tests need no strong hashes.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # refuses logins while locked out
    "django.contrib.auth.backends.ModelBackend",
]
# Login throttling: 5 failures for one username from one IP lock that pair for 15 minutes.
# Behind a reverse proxy REMOTE_ADDR is the proxy: set DJANGO_PROXY_COUNT (below).
AXES_FAILURE_LIMIT = 5
AXES_COOLOFF_TIME = timedelta(minutes=15)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
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
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG or TESTING
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

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

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "{asctime} {levelname} {name}: {message}", "style": "{"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "tickets": {"level": os.getenv("DJANGO_LOG_LEVEL", "INFO")},
        "httpx": {"level": "WARNING"},
    },
}
