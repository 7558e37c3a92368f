"""Single sign-on's settings (thena_admin/settings.py, "Single sign-on"): what the OIDC_*
variables and LOCAL_LOGIN make, and the start refused with a clear message when they do
not fit together."""

import os
import re
import runpy
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from thena_admin.settings import oidc_group_map, oidc_issuer

ROOT = Path(__file__).resolve().parent.parent
ISSUER = "https://login.example.com/realms/staff"
PREFIXES = ("DJANGO_", "THENA_", "AUDIT_", "OIDC_", "LOCAL_LOGIN")


def _settings(monkeypatch, **env: str) -> dict:
    """Our settings module as it comes out of `env` alone (run afresh, not the test's)."""
    for name in list(os.environ):
        if name.startswith(PREFIXES) or name == "DATABASE_URL":
            monkeypatch.delenv(name)
    env = {"DJANGO_SECRET_KEY": "s" * 50, "AUDIT_HMAC_KEY": "a" * 50, **env}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(ROOT / "thena_admin" / "settings.py"))


def _sso(monkeypatch, **env: str) -> dict:
    return _settings(
        monkeypatch,
        OIDC_ISSUER=ISSUER,
        OIDC_CLIENT_ID="thena-admin",
        OIDC_CLIENT_SECRET="s3cret",
        **env,
    )


def test_without_an_issuer_single_sign_on_is_off(monkeypatch):
    config = _settings(monkeypatch)
    assert config["OIDC_ISSUER"] == ""
    assert config["LOCAL_LOGIN"] is True
    assert config["AUTHENTICATION_BACKENDS"] == [
        "axes.backends.AxesStandaloneBackend",
        "tickets.backends.ModelBackend",
    ]
    assert config["SECURE_CSP"]["form-action"] == ["'self'"]
    assert "tickets.sso" in config["INSTALLED_APPS"]


def test_a_configured_provider(monkeypatch, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("from-a-file\n")
    config = _settings(
        monkeypatch,
        OIDC_ISSUER=ISSUER,
        OIDC_CLIENT_ID="thena-admin",
        OIDC_CLIENT_SECRET_FILE=str(secret),
        OIDC_SCOPES="openid email profile groups",
        OIDC_PROVIDER_NAME="Okta",
        OIDC_GROUP_MAP="support-leads=Support managers, audit=Auditors,admins=Auditors",
        OIDC_TEAM_SCOPE_CLAIM="thena_teams",
        LOCAL_LOGIN="false",
    )
    assert config["OIDC_CLIENT_SECRET"] == "from-a-file"
    assert config["OIDC_SCOPES"] == ["openid", "email", "profile", "groups"]
    assert config["OIDC_PROVIDER_NAME"] == "Okta"
    assert config["OIDC_GROUPS_CLAIM"] == "groups"
    assert config["OIDC_GROUP_MAP"] == {
        "support-leads": ["Support managers"],
        "audit": ["Auditors"],
        "admins": ["Auditors"],
    }
    assert config["OIDC_TEAM_SCOPE_CLAIM"] == "thena_teams"
    assert config["AUTHENTICATION_BACKENDS"] == [
        "axes.backends.AxesStandaloneBackend",
        "tickets.sso.backends.BreakGlassBackend",
        "tickets.sso.backends.OidcBackend",
    ]
    # Logging out redirects a form's POST to the provider: form-action must allow it.
    assert config["SECURE_CSP"]["form-action"] == ["'self'", "https://login.example.com"]


def test_local_login_stays_on_by_default(monkeypatch):
    config = _sso(monkeypatch)
    assert config["LOCAL_LOGIN"] is True
    assert "tickets.backends.ModelBackend" in config["AUTHENTICATION_BACKENDS"]
    assert config["OIDC_PROVIDER_NAME"] == "single sign-on"
    assert config["OIDC_SCOPES"] == ["openid", "email", "profile"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OIDC_ISSUER": ISSUER}, "set OIDC_CLIENT_ID and OIDC_CLIENT_SECRET"),
        (
            {"OIDC_ISSUER": ISSUER, "OIDC_CLIENT_ID": "x", "OIDC_CLIENT_SECRET_FILE": "/nope"},
            "OIDC_CLIENT_SECRET_FILE names a file that cannot be read",
        ),
        (
            {
                "OIDC_ISSUER": ISSUER,
                "OIDC_CLIENT_ID": "x",
                "OIDC_CLIENT_SECRET": "y",
                "OIDC_CLIENT_SECRET_FILE": "/nope",
            },
            "Set OIDC_CLIENT_SECRET or OIDC_CLIENT_SECRET_FILE, not both",
        ),
        ({"OIDC_CLIENT_ID": "x"}, "need OIDC_ISSUER"),
        ({"OIDC_GROUP_MAP": "a=B"}, "need OIDC_ISSUER"),
        ({"LOCAL_LOGIN": "false"}, "LOCAL_LOGIN=false leaves single sign-on as the only way"),
        ({"LOCAL_LOGIN": "no"}, "LOCAL_LOGIN must be true or false"),
        ({"OIDC_ISSUER": "http://login.example.com"}, "OIDC_ISSUER must be the provider's"),
        (
            {
                "OIDC_ISSUER": ISSUER,
                "OIDC_CLIENT_ID": "x",
                "OIDC_CLIENT_SECRET": "y",
                "OIDC_SCOPES": "email profile",
            },
            "OIDC_SCOPES must include openid",
        ),
        (
            {
                "OIDC_ISSUER": ISSUER,
                "OIDC_CLIENT_ID": "x",
                "OIDC_CLIENT_SECRET": "y",
                "OIDC_GROUP_MAP": "support-leads",
            },
            "OIDC_GROUP_MAP must be provider-group=Group name pairs",
        ),
    ],
)
def test_a_misconfiguration_refuses_to_start(monkeypatch, env, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        _settings(monkeypatch, **env)


@pytest.mark.parametrize(
    "value",
    [
        "https://login.example.com",
        "https://login.example.com/",  # kept as given: discovery must name it exactly
        "https://example.okta.com/oauth2/default",
        "http://127.0.0.1:8080/o",
        "http://localhost:9000/realms/dev",
    ],
)
def test_issuers_accepted(value):
    assert oidc_issuer(f"  {value} ") == value


@pytest.mark.parametrize(
    "value",
    [
        "login.example.com",
        "ftp://login.example.com",
        "http://login.example.com",  # plain HTTP only on this host
        "https://login.example.com/?tenant=1",
        "https://login.example.com/#x",
        "https:///path-only",
        "https://login.example.com/a b",
    ],
)
def test_issuers_refused(value):
    with pytest.raises(ImproperlyConfigured, match="OIDC_ISSUER"):
        oidc_issuer(value)


def test_group_map_pairs():
    assert oidc_group_map("") == {}
    assert oidc_group_map(" a = Support managers ,, a=Auditors, a=Auditors ,b=Auditors") == {
        "a": ["Support managers", "Auditors"],
        "b": ["Auditors"],
    }
    assert oidc_group_map("/staff/support=Support managers") == {
        "/staff/support": ["Support managers"]
    }


@pytest.mark.parametrize("value", ["a", "=Auditors", "a=", "a=b,c"])
def test_group_map_refuses_what_is_not_a_pair(value):
    with pytest.raises(ImproperlyConfigured, match="OIDC_GROUP_MAP"):
        oidc_group_map(value)


@pytest.mark.django_db
def test_check_deploy_names_a_mapped_group_that_does_not_exist(settings):
    from django.contrib.auth.models import Group

    from tickets.sso.checks import check_group_map

    Group.objects.get_or_create(name="Support managers")
    settings.OIDC_GROUP_MAP = {"a": ["Support managers"], "b": ["Nobody made this"]}
    [error] = check_group_map(None)
    assert error.id == "sso.E001"
    assert "'Nobody made this'" in error.msg
    settings.OIDC_GROUP_MAP = {}
    assert check_group_map(None) == []


def test_every_variable_is_documented():
    block = (ROOT / "thena_admin" / "settings.py").read_text().split("# --- Single sign-on")[1]
    names = set(re.findall(r'(?:getenv|env_bool|_audit_secret)\("([A-Z_]+)"', block))
    names |= {f"{name}_FILE" for name in names if name.endswith("_SECRET")}
    assert "OIDC_CLIENT_SECRET_FILE" in names and "LOCAL_LOGIN" in names
    readme = (ROOT / "README.md").read_text().split("## Single sign-on")[1]
    example = (ROOT / ".env.example").read_text()
    for name in names:
        assert f"`{name}`" in readme, name
        assert f"{name}=" in example, name
