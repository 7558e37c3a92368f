"""The test suite's settings: pytest-django loads this module (pyproject.toml), so
thena_admin/settings.py never asks whether it runs under tests."""

import os
import tempfile

from django.core.management.utils import get_random_secret_key

# Secrets for this run only; a deployment must set its own (settings.py refuses to start
# without them when DJANGO_DEBUG is off).
os.environ.setdefault("DJANGO_SECRET_KEY", get_random_secret_key())
os.environ.setdefault("AUDIT_HMAC_KEY", get_random_secret_key())
# Background exports' files: this run's own directory.
os.environ.setdefault("EXPORT_DIR", tempfile.mkdtemp(prefix="thena-exports-"))

from thena_admin.settings import *  # noqa: F403
from thena_admin.settings import CACHES, DATABASES, STORAGES

# A per-process cache unless CACHE_URL names a shared one (conftest clears it around
# every test, also those without a database).
if not os.getenv("CACHE_URL"):
    CACHES = {
        "default": {**CACHES["default"], "BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    }
    CACHES["default"].pop("LOCATION", None)

# PBKDF2 at full strength makes every test login slow; tests need no strong hashes.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Tests render templates without running collectstatic.
STORAGES = {
    **STORAGES,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not Django's shared in-memory test database: a live server's threads then
    # each get their own connection, as in production, instead of interleaving queries on
    # one (sqlite3.InterfaceError when a browser sends two requests at once).
    DATABASES["default"]["TEST"] = {
        "NAME": os.path.join(tempfile.gettempdir(), f"thena-admin-test-{os.getpid()}.sqlite3")
    }
