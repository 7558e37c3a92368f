"""A ticket identifier (SUP-12) in place of the id opens the ticket, within the user's
teams; "Open in Thena" links to THENA_WEB_URL with the ticket's values quoted."""

import os
import runpy
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from pytest_django.asserts import assertContains, assertNotContains

from tests.conftest import _client_for, _user
from tickets import views
from tickets.models import TeamScope
from tickets.thena.errors import ThenaUnavailable

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("thena")]

ROOT = Path(__file__).resolve().parent.parent


def _searches(sandbox) -> list:
    return [r for r in sandbox.requests if r.path.startswith("/v1/search/")]


def _team(sandbox, identifier: str) -> dict:
    return next(t for t in sandbox.teams() if t["identifier"] == identifier)


def _scoped_client(django_user_model, team_id: str):
    user = _user(django_user_model, "scoped", "Support managers")
    TeamScope.objects.create(user=user, team_ids=[team_id])
    return _client_for(user)


# -- identifier URLs -----------------------------------------------------------------------


def test_identifier_redirects_to_the_id_url_which_shows_the_ticket(manager_client, ticket):
    response = manager_client.get(f"/tickets/{ticket['ticketIdentifier']}/")
    assert response.status_code == 302
    assert response["Location"] == f"/tickets/{ticket['id']}/"
    page = manager_client.get(response["Location"])
    assertContains(page, ticket["title"])
    assertContains(page, ticket["ticketIdentifier"])


def test_identifier_of_a_prefix_of_others_resolves_exactly(manager_client, sandbox):
    # Search for SUP-1 also finds SUP-10..SUP-19 and more: only the exact identifier counts.
    sup_1 = next(t for t in sandbox.tickets() if t["ticketIdentifier"] == "SUP-1")
    response = manager_client.get("/tickets/SUP-1/")
    assert response["Location"] == f"/tickets/{sup_1['id']}/"


def test_lower_case_identifier_works(manager_client, ticket, sandbox):
    response = manager_client.get(f"/tickets/{ticket['ticketIdentifier'].lower()}/")
    assert response.status_code == 302
    assert response["Location"] == f"/tickets/{ticket['id']}/"
    search = _searches(sandbox)[-1]
    assert search.query["query_by"] == "ticketIdentifier"


def test_the_mapping_is_cached(manager_client, ticket, sandbox):
    url = f"/tickets/{ticket['ticketIdentifier']}/"
    assert manager_client.get(url).status_code == 302
    assert manager_client.get(url.lower()).status_code == 302
    assert len(_searches(sandbox)) == 1


@pytest.mark.parametrize("value", ["SUP-99999", "NOPE-1", "NOSUCHTICKET", "sup-"])
def test_unknown_identifier_or_id_is_404(manager_client, value):
    assert manager_client.get(f"/tickets/{value}/").status_code == 404


def test_identifier_outside_the_users_teams_is_404(django_user_model, manager_client, sandbox):
    support, billing = _team(sandbox, "SUP"), _team(sandbox, "BIL")
    theirs = next(t for t in sandbox.tickets() if t["teamId"] == billing["id"])
    mine = next(t for t in sandbox.tickets() if t["teamId"] == support["id"])
    client = _scoped_client(django_user_model, support["id"])
    theirs_url = f"/tickets/{theirs['ticketIdentifier']}/"
    assert client.get(theirs_url).status_code == 404
    # The same once an unscoped user's lookup has cached the identifier's id.
    assert manager_client.get(theirs_url).status_code == 302
    assert client.get(theirs_url).status_code == 404
    assert client.get(theirs_url.lower()).status_code == 404
    assert client.get(f"/tickets/{mine['ticketIdentifier']}/")["Location"] == (
        f"/tickets/{mine['id']}/"
    )


def test_a_real_id_costs_no_search(manager_client, url, sandbox):
    assert manager_client.get(url).status_code == 200
    assert _searches(sandbox) == []


def test_a_real_id_that_looks_like_an_identifier_still_opens(manager_client, sandbox, ticket):
    # A ticket whose id is SUP-1, which is also another ticket's identifier.
    sandbox._world.tickets["SUP-1"] = {**sandbox.ticket(ticket["id"]), "id": "SUP-1"}
    response = manager_client.get("/tickets/SUP-1/")
    assert response.status_code == 200
    assert response.context["ticket"]["id"] == "SUP-1"
    assert _searches(sandbox) == []


def test_post_to_an_identifier_is_not_redirected(manager_client, ticket, sandbox):
    response = manager_client.post(f"/tickets/{ticket['ticketIdentifier']}/", {"title": "x"})
    assert response.status_code == 404
    assert [r for r in sandbox.requests if r.method == "PATCH"] == []


def test_thena_down_during_the_lookup_is_a_message(manager_client, thena, monkeypatch):
    def down(*args, **kwargs):
        raise ThenaUnavailable()

    monkeypatch.setattr(thena, "search_tickets", down)
    response = manager_client.get("/tickets/SUP-1/")
    assert response.status_code == 502
    assertContains(response, ThenaUnavailable().user_message, status_code=502)


# -- "Open in Thena" -----------------------------------------------------------------------


def test_open_in_thena_link_when_set(manager_client, viewer_client, url, ticket, settings):
    settings.THENA_WEB_URL = "https://app.thena.ai/t/{identifier}?id={id}"
    expected = f"https://app.thena.ai/t/{ticket['ticketIdentifier']}?id={ticket['id']}"
    for client in (manager_client, viewer_client):
        response = client.get(url)
        assertContains(response, f'href="{expected}" target="_blank" rel="noopener noreferrer"')
        assertContains(response, "Open in Thena")


def test_no_link_when_unset(manager_client, url, settings):
    settings.THENA_WEB_URL = ""
    assertNotContains(manager_client.get(url), "Open in Thena")


def test_hostile_values_are_quoted_in_the_link(manager_client, url, ticket, sandbox, settings):
    settings.THENA_WEB_URL = "https://app.thena.ai/tickets/{identifier}"
    sandbox.put_ticket(ticket["id"], ticketIdentifier='SUP-1"><script>x</script>/../?a=b#c')
    response = manager_client.get(url)
    assertContains(
        response,
        'href="https://app.thena.ai/tickets/'
        'SUP-1%22%3E%3Cscript%3Ex%3C%2Fscript%3E%2F..%2F%3Fa%3Db%23c"',
    )
    assertNotContains(response, "<script>x</script>")


def test_hostile_id_is_quoted_and_missing_values_hide_the_link(settings):
    settings.THENA_WEB_URL = "https://app.thena.ai/x/{id}/{identifier}"
    ticket = {"id": "a/b c?{identifier}", "ticketIdentifier": "SUP-1"}
    assert (
        views._thena_web_url(ticket) == "https://app.thena.ai/x/a%2Fb%20c%3F%7Bidentifier%7D/SUP-1"
    )
    assert views._thena_web_url({"id": "abc"}) == ""
    assert views._thena_web_url({"id": "abc", "ticketIdentifier": None}) == ""


# -- the setting ---------------------------------------------------------------------------


def _settings(monkeypatch, **env: str) -> dict:
    for name in list(os.environ):
        if name.startswith(("DJANGO_", "THENA_", "AUDIT_")) or name == "DATABASE_URL":
            monkeypatch.delenv(name)
    env = {"DJANGO_SECRET_KEY": "s" * 50, "AUDIT_HMAC_KEY": "a" * 50, **env}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(ROOT / "thena_admin" / "settings.py"))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", ""),
        ("  ", ""),
        (
            " https://app.thena.ai/tickets/{identifier} ",
            "https://app.thena.ai/tickets/{identifier}",
        ),
        (
            "http://thena.local:8080/t/{id}?i={identifier}",
            "http://thena.local:8080/t/{id}?i={identifier}",
        ),
    ],
)
def test_thena_web_url_setting_accepts_templates(monkeypatch, raw, expected):
    assert _settings(monkeypatch, THENA_WEB_URL=raw)["THENA_WEB_URL"] == expected


@pytest.mark.parametrize(
    "raw",
    [
        "javascript:alert(1)//{id}",
        "ftp://thena.example/{id}",
        "https://app.thena.ai/tickets/",  # no placeholder: every ticket the same page
        "https://app.thena.ai/tickets/{title}",
        "https://app.thena.ai/tickets/{id}/{0}",
        "https://app.thena.ai/tickets/{{id}}",
        "https://app.thena.ai/tickets/{id",
        "https:///tickets/{id}",
        "https://{identifier}.thena.ai/tickets/{id}",
        "/tickets/{id}",
        "https://app.thena.ai/tickets/ {id}",
    ],
)
def test_thena_web_url_setting_refuses_a_bad_template(monkeypatch, raw):
    with pytest.raises(ImproperlyConfigured, match="THENA_WEB_URL must be"):
        _settings(monkeypatch, THENA_WEB_URL=raw)
