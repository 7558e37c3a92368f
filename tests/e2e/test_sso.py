"""Single sign-on in Chromium against a real OpenID Connect provider (tests/oidc_provider,
its own process): sign-in, group mapping, team scope, refused tokens, logout."""

import importlib
import re

import pytest
from django.apps import apps
from django.contrib.auth.models import User
from playwright.sync_api import expect

from tests.oidc_provider.harness import PASSWORD, app_configure, person, provider_running
from tickets.sso import provider as provider_client

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("thena")]


@pytest.fixture(scope="module")
def idp(live_server, tmp_path_factory):
    with provider_running(tmp_path_factory.mktemp("idp"), app_urls=[live_server.url]) as p:
        yield p


@pytest.fixture
def sso(settings, idp):
    # A transactional test's flush removes what the data migration made; make it again.
    importlib.import_module("tickets.migrations.0003_groups").create_groups(apps, None)
    app_configure(settings, idp)
    yield idp
    provider_client.provider_reset()


@pytest.fixture
def sso_sign_in(page, live_server):
    """From our login page through the provider's, as a person does."""

    def do(username: str) -> None:
        page.goto(f"{live_server.url}/accounts/login/")
        page.get_by_role("link", name="Sign in with Test IdP").click()
        page.get_by_label("IdP username").fill(username)
        page.get_by_label("IdP password").fill(PASSWORD)
        page.get_by_role("button", name="Continue").click()

    return do


def _groups(username: str) -> set[str]:
    return set(User.objects.get(username=username).groups.values_list("name", flat=True))


def test_sign_in_maps_groups_and_enforces_the_team_scope(
    page, live_server, sso, sso_sign_in, sandbox, shot
):
    support = next(t for t in sandbox.teams() if t["name"] == "Support")
    sso.people_set(ada=person("ada", groups=["support-leads"], teams=[support["id"]]))
    page.goto(f"{live_server.url}/accounts/login/")
    shot("sso-login")

    sso_sign_in("ada")

    expect(page.get_by_role("heading", name="Tickets")).to_be_visible()
    expect(page.locator(".whoami")).to_contain_text("ada@corp.example")
    expect(page.get_by_role("link", name="Audit log")).to_be_visible()  # Support managers
    assert _groups("ada@corp.example") == {"Support managers"}
    shown = set(re.findall(r"\b([A-Z]+)-\d+\b", page.locator("table.tickets").inner_text()))
    assert shown == {"SUP"}
    other = next(t for t in sandbox.tickets() if t["teamIdentifier"] == "ENG")
    # With the browser's session; a 404 page would be a console error.
    assert page.request.get(f"{live_server.url}/tickets/{other['id']}/").status == 404
    mine = next(t for t in sandbox.tickets() if t["teamIdentifier"] == "SUP")
    assert page.request.get(f"{live_server.url}/tickets/{mine['id']}/").status == 200


def test_logout_ends_the_session_here_and_at_the_provider(page, live_server, sso, sso_sign_in):
    sso.people_set(ada=person("ada", groups=["audit"]))
    sso_sign_in("ada")
    expect(page.get_by_role("heading", name="Tickets")).to_be_visible()

    page.get_by_role("button", name="Log out").click()

    expect(page).to_have_url(f"{live_server.url}/accounts/login/")
    page.goto(f"{live_server.url}/tickets/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/tickets/$"))
    # The provider's session is over too: it asks for the password again.
    page.get_by_role("link", name="Sign in with Test IdP").click()
    expect(page.get_by_label("IdP password")).to_be_visible()


def test_groups_lost_at_the_provider_are_lost_here(page, live_server, sso, sso_sign_in, shot):
    sso.people_set(ada=person("ada", groups=["support-leads", "audit"]))
    sso_sign_in("ada")
    expect(page.get_by_role("heading", name="Tickets")).to_be_visible()
    assert _groups("ada@corp.example") == {"Support managers", "Auditors"}
    page.get_by_role("button", name="Log out").click()

    sso.people_set(ada=person("ada", groups=["audit"]))
    sso_sign_in("ada")
    expect(page.get_by_role("heading", name="Tickets")).to_be_visible()
    assert _groups("ada@corp.example") == {"Auditors"}
    page.get_by_role("button", name="Log out").click()

    sso.people_set(ada=person("ada", groups=[]))
    sso_sign_in("ada")
    expect(page).to_have_url(f"{live_server.url}/accounts/login/")
    expect(page.get_by_role("status")).to_contain_text(
        "Your account is in none of the groups that may use thena-admin."
    )
    assert _groups("ada@corp.example") == set()
    shot("sso-refused")


@pytest.mark.parametrize("quirk", ["tampered", "wrong_audience", "expired"])
def test_a_bad_id_token_signs_no_one_in(page, live_server, sso, sso_sign_in, quirk):
    sso.people_set(mallory=person("mallory", groups=["support-leads"], quirk=quirk))
    sso_sign_in("mallory")
    expect(page).to_have_url(f"{live_server.url}/accounts/login/")
    expect(page.get_by_role("status")).to_contain_text("The sign-in could not be verified.")
    page.goto(f"{live_server.url}/tickets/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/tickets/$"))
    assert not User.objects.exists()
