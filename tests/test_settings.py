import os
import subprocess
import sys
from pathlib import Path

import dj_database_url
import pytest
from django.core.exceptions import ImproperlyConfigured

from thena_admin.settings import env_bool, env_list

ROOT = Path(__file__).resolve().parent.parent


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "THENA_"))}
    base.pop("PYTEST_VERSION", None)  # behave like a real deployment, not a test run
    base.pop("DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("raw", "expected"), [("true", True), ("FALSE", False), ("1", True), ("0", False), ("", True)]
)
def test_env_bool_accepts_only_true_or_false(monkeypatch, raw, expected):
    monkeypatch.setenv("X_FLAG", raw)
    assert env_bool("X_FLAG", True) is expected


def test_env_bool_refuses_anything_else(monkeypatch):
    monkeypatch.setenv("X_FLAG", "yes please")
    with pytest.raises(ImproperlyConfigured, match="X_FLAG must be true or false"):
        env_bool("X_FLAG", False)


def test_env_list_splits_on_commas(monkeypatch):
    monkeypatch.setenv("X_HOSTS", " a.example , b.example,,")
    assert env_list("X_HOSTS", ["default"]) == ["a.example", "b.example"]
    monkeypatch.setenv("X_HOSTS", "")
    assert env_list("X_HOSTS", ["default"]) == ["default"]


def test_secret_key_is_required_when_debug_is_off():
    result = _manage("check", DJANGO_DEBUG="false")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in result.stderr


def test_check_deploy_is_clean_with_production_settings():
    result = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY="k3v!9wq-production-secret-" + "x7Hq2Lm9Zr4Tt8Pp1Bb6Nn3" * 2,
        DJANGO_HTTPS="true",
        DJANGO_ALLOWED_HOSTS="admin.example.com",
        DJANGO_CSRF_TRUSTED_ORIGINS="https://admin.example.com",
    )
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout
    assert "WARNING" not in result.stderr + result.stdout


def test_check_deploy_warns_without_https():
    result = _manage(
        "check",
        "--deploy",
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY="k3v!9wq-production-secret-" + "x7Hq2Lm9Zr4Tt8Pp1Bb6Nn3" * 2,
    )
    assert "security.W004" in result.stderr + result.stdout  # no HSTS


def test_database_url_selects_postgresql():
    config = dj_database_url.parse("postgres://user:pass@db.example:5432/thena")
    assert config["ENGINE"] == "django.db.backends.postgresql"
    assert config["NAME"] == "thena"


def test_thena_settings_default_to_the_sandbox(settings):
    assert settings.THENA_API_BASE_URL == "" or settings.THENA_API_BASE_URL.startswith("http")
    assert settings.THENA_TIMEOUT_SECONDS > 0
    assert settings.THENA_AUTO_LINK_FIELD
