import os
import runpy
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from thena_admin.settings import env_bool, env_list
from tickets import lockouts

ROOT = Path(__file__).resolve().parent.parent


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    prefixes = ("DJANGO_", "THENA_", "AUDIT_")
    base = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
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
        AUDIT_HMAC_KEY="audit-mac-" + "Qw8Er4Ty6Ui2Op0As5Df7Gh" * 2,
        DJANGO_HTTPS="true",
        DJANGO_ALLOWED_HOSTS="admin.example.com",
        DJANGO_CSRF_TRUSTED_ORIGINS="https://admin.example.com",
        THENA_API_BASE_URL="https://platform.thena.ai",
        DATABASE_URL="postgres://thena:secret@db.invalid:5432/thena_admin",  # not connected
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
        AUDIT_HMAC_KEY="audit-mac-" + "Qw8Er4Ty6Ui2Op0As5Df7Gh" * 2,
    )
    assert "security.W004" in result.stderr + result.stdout  # no HSTS


def _settings(monkeypatch, **env: str) -> dict:
    """Our settings module as it comes out of `env` alone (run afresh, not the test's)."""
    for name in list(os.environ):
        if name.startswith(("DJANGO_", "THENA_", "AUDIT_")) or name == "DATABASE_URL":
            monkeypatch.delenv(name)
    env = {"DJANGO_SECRET_KEY": "s" * 50, "AUDIT_HMAC_KEY": "a" * 50, **env}
    for name, value in env.items():
        if value is not None:  # None: leave it unset
            monkeypatch.setenv(name, value)
    return runpy.run_path(str(ROOT / "thena_admin" / "settings.py"))


def test_database_url_postgresql_gets_pooling_and_no_sqlite_options(monkeypatch):
    database = _settings(monkeypatch, DATABASE_URL="postgres://u:p@db.example:5432/thena")[
        "DATABASES"
    ]["default"]
    assert database["ENGINE"] == "django.db.backends.postgresql"
    assert (database["HOST"], database["NAME"]) == ("db.example", "thena")
    assert (database["CONN_MAX_AGE"], database["CONN_HEALTH_CHECKS"]) == (60, True)
    assert "transaction_mode" not in database.get("OPTIONS", {})


@pytest.mark.parametrize("url", ["", "sqlite:////tmp/other.sqlite3"])
def test_sqlite_writes_begin_immediate_in_wal_mode(monkeypatch, url):
    database = _settings(monkeypatch, DATABASE_URL=url)["DATABASES"]["default"]
    assert database["ENGINE"] == "django.db.backends.sqlite3"
    assert str(database["NAME"]) == (url[len("sqlite:///") :] or str(ROOT / "db.sqlite3"))
    assert database["OPTIONS"]["transaction_mode"] == "IMMEDIATE"
    assert "journal_mode=WAL" in database["OPTIONS"]["init_command"]


def test_thena_defaults_mean_the_sandbox(monkeypatch):
    values = _settings(monkeypatch)
    assert values["THENA_API_BASE_URL"] == ""  # empty: the in-process sandbox
    assert values["THENA_API_KEY"] == ""
    assert values["THENA_TIMEOUT_SECONDS"] == 10.0
    assert values["THENA_REQUEST_BUDGET_SECONDS"] == 20.0
    assert values["THENA_AUTO_LINK_FIELD"] == "autoLinkSlackChannel"
    assert values["PROXY_COUNT"] == 0


def test_thena_values_are_trimmed(monkeypatch):
    values = _settings(
        monkeypatch,
        THENA_API_BASE_URL=" https://platform.thena.ai/ ",
        THENA_API_KEY=" key ",
        THENA_AUTO_LINK_FIELD="  ",
        THENA_TIMEOUT_SECONDS="2.5",
        DJANGO_PROXY_COUNT="2",
    )
    assert values["THENA_API_BASE_URL"] == "https://platform.thena.ai"
    assert values["THENA_API_KEY"] == "key"
    assert values["THENA_AUTO_LINK_FIELD"] == "autoLinkSlackChannel"  # blank: the default
    assert values["THENA_TIMEOUT_SECONDS"] == 2.5
    assert values["PROXY_COUNT"] == 2


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"THENA_TIMEOUT_SECONDS": "ten"}, "THENA_TIMEOUT_SECONDS must be a number, not 'ten'."),
        ({"THENA_REQUEST_BUDGET_SECONDS": "20s"}, "THENA_REQUEST_BUDGET_SECONDS must be a number"),
        ({"DJANGO_PROXY_COUNT": "one"}, "DJANGO_PROXY_COUNT must be a number, not 'one'."),
        ({"DJANGO_HTTPS": "yes"}, "DJANGO_HTTPS must be true or false, not 'yes'."),
        (
            {"THENA_API_KEY": "a", "THENA_API_KEY_FILE": "/run/secrets/thena"},
            "Set THENA_API_KEY or THENA_API_KEY_FILE, not both.",
        ),
        (
            {"THENA_API_KEY_FILE": "/nonexistent/thena-key"},
            "THENA_API_KEY_FILE names a file that cannot be read (No such file or directory).",
        ),
    ],
)
def test_bad_values_are_refused_with_a_message_naming_them(monkeypatch, env, message):
    with pytest.raises(ImproperlyConfigured) as refused:
        _settings(monkeypatch, **env)
    assert message in str(refused.value)


def test_secret_key_fallbacks_come_from_the_variable_or_its_file(monkeypatch, tmp_path):
    assert _settings(monkeypatch)["SECRET_KEY_FALLBACKS"] == []
    values = _settings(monkeypatch, DJANGO_SECRET_KEY_FALLBACKS=" older-key , old-key,")
    assert values["SECRET_KEY_FALLBACKS"] == ["older-key", "old-key"]
    path = tmp_path / "fallbacks"
    path.write_text("older-key\nold-key\n")
    values = _settings(monkeypatch, DJANGO_SECRET_KEY_FALLBACKS_FILE=str(path))
    assert values["SECRET_KEY_FALLBACKS"] == ["older-key", "old-key"]
    with pytest.raises(ImproperlyConfigured, match="DJANGO_SECRET_KEY_FALLBACKS_FILE, not both"):
        _settings(
            monkeypatch,
            DJANGO_SECRET_KEY_FALLBACKS="old-key",
            DJANGO_SECRET_KEY_FALLBACKS_FILE=str(path),
        )


def test_login_lockouts_count_the_pair_and_the_address(settings):
    assert settings.AXES_LOCKOUT_PARAMETERS == [["username", "ip_address"], ["ip_address"]]
    assert settings.AXES_FAILURE_LIMIT == "tickets.lockouts.failure_limit"
    assert settings.AXES_HANDLER == "tickets.lockouts.LockoutHandler"
    assert timedelta(minutes=15) == settings.AXES_COOLOFF_TIME
    assert (lockouts.PAIR_LIMIT, lockouts.ADDRESS_LIMIT) == (5, 30)  # tests/test_abuse.py
