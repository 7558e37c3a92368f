import pytest
from pytest_django.asserts import assertContains, assertNotContains, assertTemplateUsed

from tests.util import listed

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("thena")]


def test_ticket_list_requires_login(client):
    response = client.get("/tickets/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/tickets/"


def test_home_redirects_to_the_ticket_list(viewer_client):
    response = viewer_client.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/tickets/"


def test_ticket_list_shows_the_newest_tickets_from_thena(viewer_client, sandbox):
    newest = sorted(sandbox.tickets(), key=lambda t: t["updatedAt"], reverse=True)[:25]
    response = viewer_client.get("/tickets/")
    assertTemplateUsed(response, "tickets/ticket_list.html")
    for ticket in newest:
        assertContains(response, f">{ticket['ticketIdentifier']}<")
    assert len(listed(response).tickets) == 25
    assert listed(response).has_next


def test_ticket_list_filters_by_team(viewer_client, sandbox):
    team = sandbox.teams()[0]
    response = viewer_client.get("/tickets/", {"team": team["id"]})
    tickets = listed(response).tickets
    assert tickets
    assert {t["teamId"] for t in tickets} == {team["id"]}
    assertContains(response, f'<option value="{team["id"]}" selected>')


def test_ticket_list_searches_by_identifier(viewer_client, sandbox):
    target = sandbox.tickets()[7]
    response = viewer_client.get("/tickets/", {"q": target["ticketIdentifier"]})
    identifiers = [t["ticketIdentifier"] for t in listed(response).tickets]
    assert target["ticketIdentifier"] in identifiers


def test_ticket_list_pages_forward(viewer_client):
    first = listed(viewer_client.get("/tickets/")).tickets
    second = listed(viewer_client.get("/tickets/", {"page": "2"}))
    assert second.page == 2
    assert {t["id"] for t in first}.isdisjoint({t["id"] for t in second.tickets})
    assertContains(viewer_client.get("/tickets/", {"page": "2"}), 'rel="prev"')


def test_ticket_list_ignores_a_nonsense_page_number(viewer_client):
    response = viewer_client.get("/tickets/", {"page": "abc"})
    assert response["Location"] == "/tickets/"
    assert listed(viewer_client.get(response["Location"])).page == 1


def test_htmx_request_gets_only_the_table_fragment(viewer_client):
    response = viewer_client.get("/tickets/", headers={"HX-Request": "true"})
    assertContains(response, 'id="ticket-table"')
    assertNotContains(response, "<html")


def test_thena_failure_shows_a_message_not_a_500(viewer_client, sandbox):
    sandbox.config.api_key = "something-else"
    response = viewer_client.get("/tickets/")
    assert response.status_code == 200
    assertContains(response, "API key")
    assertContains(response, 'role="alert"')


def test_healthz_is_public_and_reports_database_and_thena(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["database"] == "ok"
    assert response.json()["thena"] == "ok"
    assert response["Cache-Control"].startswith("max-age=0")


def test_healthz_says_degraded_but_answers_200_when_thena_refuses_the_key(client, sandbox):
    sandbox.config.api_key = "something-else"
    response = client.get("/healthz")
    assert response.status_code == 200  # the site is up; a load balancer keeps it
    assert response.json()["ok"] is True
    assert response.json()["status"] == "degraded"
    assert response.json()["thena"].startswith("error:")


@pytest.mark.parametrize("segment", ["status", "priority", "type", "sentiment", "%2e"])
def test_a_ticket_url_that_names_another_route_of_thena_is_a_404(manager_client, sandbox, segment):
    sandbox.requests.clear()
    assert manager_client.get(f"/tickets/{segment}/").status_code == 404
    assert manager_client.post(f"/tickets/{segment}/", {"title": "x"}).status_code == 404
    assert [r for r in sandbox.requests if r.path.startswith("/v1/tickets")] == []
