"""The ticket list as a triage tool: filters, sort, count and paging through one search
call, and saved views. Every expectation is computed from the sandbox's own tickets."""

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.cache import cache
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pytest_django.asserts import assertContains, assertNotContains

from tests.util import listed
from tickets.listing import PAGE_SIZE
from tickets.models import SavedView, TeamScope

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("thena")]


def _listed(response) -> list[dict]:
    assert response.status_code == 200, response.content[:500]
    return listed(response).tickets


def _full(sandbox, listed: list[dict]) -> list[dict]:
    """The listed tickets as Thena has them: a hit carries only what a row shows."""
    tickets = {t["id"]: t for t in sandbox.tickets()}
    return [tickets[t["id"]] for t in listed]


def _searches(sandbox) -> list:
    return [r for r in sandbox.requests if r.path == "/v1/search/tickets"]


def _in_team(sandbox, team_id=None) -> list[dict]:
    return [t for t in sandbox.tickets() if team_id is None or t["teamId"] == team_id]


def _team(sandbox) -> dict:
    return next(t for t in sandbox.teams() if not t.get("parentTeamId"))


def test_text_search_covers_the_assignee_and_the_requester(viewer_client, sandbox):
    """ "Knuth" found nothing when only the title and identifier were searched."""
    knuth = [t for t in sandbox.tickets() if "Knuth" in (t["assignedAgent"] or "")]
    assert knuth
    found = _listed(viewer_client.get("/tickets/", {"q": "knuth"}))
    assert {t["id"] for t in found} == {t["id"] for t in knuth[:PAGE_SIZE]} or len(found) == 25
    assert all("Knuth" in (t["assignedAgent"] or "") for t in found)
    requester = sandbox.tickets()[3]["requestorEmail"]
    found = _full(sandbox, _listed(viewer_client.get("/tickets/", {"q": requester})))
    assert found and all(t["requestorEmail"] == requester for t in found)


@pytest.mark.parametrize(
    "param, key", [("status", "status"), ("priority", "priority"), ("type", "type")]
)
def test_a_named_filter_lists_exactly_the_tickets_with_that_value(
    viewer_client, sandbox, param, key
):
    team = _team(sandbox)
    tickets = _in_team(sandbox, team["id"])
    value = tickets[0][key]
    expected = [t for t in tickets if t[key] == value]
    response = viewer_client.get("/tickets/", {"team": team["id"], param: value})
    found = _listed(response)
    assert {t["id"] for t in found} <= {t["id"] for t in expected}
    assert len(found) == min(len(expected), PAGE_SIZE)
    assert listed(response).found == len(expected)
    assertContains(response, f"{len(expected)} ticket")
    # Names match in any case, as people type them in a URL.
    again = viewer_client.get("/tickets/", {"team": team["id"], param: value.upper()})
    assert listed(again).found == len(expected)


def test_a_status_of_the_same_name_matches_in_every_team(viewer_client, sandbox):
    """With "All teams", a name stands for each team's own status of that name."""
    name = sandbox.tickets()[0]["status"]
    expected = [t for t in sandbox.tickets() if t["status"] == name]
    assert len({t["teamId"] for t in expected}) > 1
    response = viewer_client.get("/tickets/", {"status": name})
    assert listed(response).found == len(expected)


def test_an_unknown_name_says_so_and_asks_nothing_of_thena(viewer_client, sandbox):
    viewer_client.get("/tickets/")  # the teams and their choices are cached now
    sandbox.requests.clear()
    response = viewer_client.get("/tickets/", {"priority": "Catastrophic"})
    assertContains(response, "No priority is called “Catastrophic” here")
    assert _listed(response) == []
    assert _searches(sandbox) == []


def test_assigned_to_me_matches_my_email(client, django_user_model, sandbox):
    agent = next(t for t in sandbox.tickets() if t["assignedAgentEmail"])
    user = django_user_model.objects.create_user("agent", email=agent["assignedAgentEmail"])
    client.force_login(user)
    expected = [t for t in sandbox.tickets() if t["assignedAgentEmail"] == user.email]
    response = client.get("/tickets/", {"assignee": "me"})
    assert listed(response).found == len(expected)
    assert all(t["assignedAgentEmail"] == user.email for t in _full(sandbox, _listed(response)))


def test_assigned_to_me_without_an_email_explains(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("noemail"))
    response = client.get("/tickets/", {"assignee": "me"})
    assertContains(response, "Your account has no email address")
    assert _listed(response) == []


def test_unassigned_and_one_assignee(viewer_client, sandbox):
    unassigned = [t for t in sandbox.tickets() if not t["assignedAgentId"]]
    assert unassigned
    response = viewer_client.get("/tickets/", {"assignee": "none"})
    assert listed(response).found == len(unassigned)
    assert all(not t["assignedAgentId"] for t in _full(sandbox, _listed(response)))
    agent_id = next(t["assignedAgentId"] for t in sandbox.tickets() if t["assignedAgentId"])
    theirs = [t for t in sandbox.tickets() if t["assignedAgentId"] == agent_id]
    response = viewer_client.get("/tickets/", {"assignee": agent_id})
    assert listed(response).found == len(theirs)


def test_sub_team_and_updated_within(viewer_client, sandbox):
    ticket = next(t for t in sandbox.tickets() if t["subTeamId"])
    in_sub = [t for t in sandbox.tickets() if t["subTeamId"] == ticket["subTeamId"]]
    response = viewer_client.get(
        "/tickets/", {"team": ticket["teamId"], "subteam": ticket["subTeamId"]}
    )
    assert listed(response).found == len(in_sub)

    now = datetime.now(UTC)
    sandbox.touch_ticket(ticket["id"], title="Touched just now")
    recent = [
        t
        for t in sandbox.tickets()
        if datetime.fromisoformat(t["updatedAt"]) >= now - timedelta(hours=1)
    ]
    response = viewer_client.get("/tickets/", {"updated": "1h"})
    assert listed(response).found == len(recent) >= 1
    assert ticket["id"] in {t["id"] for t in _listed(response)}


def test_sorts(viewer_client, sandbox):
    team = _team(sandbox)
    tickets = _in_team(sandbox, team["id"])
    by = {
        "updated": sorted(tickets, key=lambda t: t["updatedAt"], reverse=True),
        "updated_asc": sorted(tickets, key=lambda t: t["updatedAt"]),
        "created": sorted(tickets, key=lambda t: t["createdAt"], reverse=True),
        "created_asc": sorted(tickets, key=lambda t: t["createdAt"]),
    }
    for sort, expected in by.items():
        found = _listed(
            viewer_client.get("/tickets/", {"team": team["id"], "sort": sort}, follow=True)
        )
        assert [t["id"] for t in found] == [t["id"] for t in expected[:PAGE_SIZE]], sort

    ranks = {"Urgent": 4, "High": 3, "Medium": 2, "Low": 1}
    found = _listed(
        viewer_client.get("/tickets/", {"team": team["id"], "sort": "priority"}, follow=True)
    )
    shown = [ranks[t["priority"]] for t in found]
    assert shown == sorted(shown, reverse=True) and shown[0] == 4


def test_sort_by_status_follows_the_teams_order(viewer_client, sandbox):
    team = _team(sandbox)
    response = viewer_client.get(
        "/tickets/", {"team": team["id"], "sort": "status", "page": 1}, follow=True
    )
    order = listed(response).options.statuses
    shown = [t["status"] for t in _listed(response)]
    positions = [next(i for i, label in enumerate(order) if label.endswith(name)) for name in shown]
    assert positions == sorted(positions)


def test_a_warm_filtered_page_costs_one_search_call(viewer_client, sandbox):
    team = _team(sandbox)
    params = {"team": team["id"], "priority": "High", "assignee": "none", "sort": "priority"}
    viewer_client.get("/tickets/", params)
    sandbox.requests.clear()
    viewer_client.get("/tickets/", params)
    assert [r.path for r in sandbox.requests] == ["/v1/search/tickets"]
    sent = sandbox.requests[0].query
    assert "priorityId:=[" in sent["filter_by"] and "assignedAgentId:=null" in sent["filter_by"]
    assert sent["sort_by"].startswith("_eval([")
    # Only what a row shows comes back: not the description, requester, custom fields...
    assert "description" not in sent["include_fields"].split(",")
    response = viewer_client.get("/tickets/", params)
    tickets = listed(response).tickets
    assert tickets and all("description" not in t for t in tickets)
    shown = {t["id"]: t for t in sandbox.tickets()}
    for ticket in tickets:
        assertContains(response, f">{shown[ticket['id']]['ticketIdentifier']}</a>")


def test_the_url_holds_the_whole_list_and_the_pager_keeps_it(viewer_client, sandbox):
    team = _team(sandbox)
    response = viewer_client.get(
        "/tickets/", {"team": team["id"], "sort": "created_asc", "q": "a"}, follow=True
    )
    listing = listed(response)
    assert listing.last_page > 1
    nxt = parse_qs(listing.next_query)
    assert nxt == {"team": [team["id"]], "q": ["a"], "sort": ["created_asc"], "page": ["2"]}
    next_link = listing.next_query.replace("&", "&amp;")
    assertContains(response, f'href="/tickets/?{next_link}" rel="next"')
    # The controls show what the URL says.
    assertContains(response, '<option value="created_asc" selected>')
    assertContains(response, 'name="q" value="a"')


def test_a_page_past_the_end_redirects_to_the_last_page(viewer_client, sandbox):
    team = _team(sandbox)
    count = len(_in_team(sandbox, team["id"]))
    last = -(-count // PAGE_SIZE)
    response = viewer_client.get("/tickets/", {"team": team["id"], "page": 999})
    assert response.status_code == 302
    assert parse_qs(urlsplit(response["Location"]).query) == {
        "team": [team["id"]],
        "page": [str(last)] if last > 1 else [],
    } or (last == 1 and parse_qs(urlsplit(response["Location"]).query) == {"team": [team["id"]]})
    page = viewer_client.get(response["Location"])
    assert listed(page).page == last
    assertContains(page, f"Page {last} of {last}")
    # Nothing matches: page 1, not a redirect loop.
    response = viewer_client.get("/tickets/", {"q": "zzzz-no-such-words", "page": 5})
    assert response["Location"] == "/tickets/?q=zzzz-no-such-words"
    assertContains(viewer_client.get(response["Location"]), "No tickets match.")


def test_a_plain_form_submit_lands_on_the_clean_url(viewer_client, sandbox):
    """The plain form sends every control, empty ones too: one redirect to the URL the
    list reads, which htmx pushes as well."""
    team = _team(sandbox)
    sent = {"q": "", "team": team["id"], "status": "", "priority": "High", "sort": "updated"}
    response = viewer_client.get("/tickets/", sent)
    assert response["Location"] == f"/tickets/?team={team['id']}&priority=High"
    swap = viewer_client.get("/tickets/", sent, headers={"HX-Request": "true"})
    assert swap["HX-Push-Url"] == response["Location"]
    again = viewer_client.get(
        "/tickets/",
        sent,
        headers={
            "HX-Request": "true",
            "HX-Current-URL": f"http://testserver{response['Location']}",
        },
    )
    assert again["HX-Push-Url"] == "false"  # nothing changed: no new history entry


def test_htmx_swaps_the_table_or_with_a_new_team_the_whole_list(viewer_client, sandbox):
    team = _team(sandbox)
    table = viewer_client.get("/tickets/", {"team": team["id"]}, headers={"HX-Request": "true"})
    html = table.content.decode()
    assert (
        html.lstrip().startswith('<section id="ticket-table"') and '<form id="filters"' not in html
    )
    whole = viewer_client.get(
        "/tickets/",
        {"team": team["id"]},
        headers={"HX-Request": "true", "HX-Target": "ticket-list"},
    )
    html = whole.content.decode()
    assert html.lstrip().startswith('<div id="ticket-list"') and 'id="filters"' in html
    assert "<html" not in html


def test_a_scoped_user_never_sees_another_teams_tickets(client, django_user_model, sandbox):
    mine, other = [t for t in sandbox.teams() if not t.get("parentTeamId")][:2]
    user = django_user_model.objects.create_user("scoped", email="s@example.com")
    TeamScope.objects.create(user=user, team_ids=[mine["id"]])
    client.force_login(user)
    for params in ({}, {"team": other["id"]}, {"team": other["id"], "q": "a", "status": "Open"}):
        response = client.get("/tickets/", params)
        found = _listed(response)
        assert found and {t["teamId"] for t in found} == {mine["id"]}
        assert listed(response).found <= len(_in_team(sandbox, mine["id"]))
        assertNotContains(response, f'<option value="{other["id"]}"')


def test_built_in_views_and_which_one_is_shown(viewer_client, sandbox):
    team = _team(sandbox)
    response = viewer_client.get("/tickets/", {"team": team["id"], "assignee": "none"})
    views = {v.name: v for v in response.context["views"]}
    assert list(views) == ["Mine", "Unassigned", "Urgent"]
    assert views["Unassigned"].current and not views["Mine"].current
    urgent = viewer_client.get(f"/tickets/?{views['Urgent'].query}")
    assert {t["priority"] for t in _listed(urgent)} == {"Urgent"}
    assert listed(urgent).filter.team == team["id"]


def test_a_message_survives_the_redirect_from_a_page_past_the_end(manager_client, sandbox):
    # The page around the table is drawn while Thena searches, and shows the messages
    # before the search says the page is past the end.
    manager_client.post("/tickets/views/", {"name": "Highs", "query": "priority=High"})
    response = manager_client.get("/tickets/", {"priority": "High", "page": 999})
    assert response.status_code == 302
    assertContains(manager_client.get(response["Location"]), "Saved the view “Highs”.")


@pytest.mark.parametrize("target", [None, "ticket-list", "ticket-table"])
def test_the_table_is_drawn_once_where_it_belongs(manager_client, sandbox, target):
    # A view's name that looks like the slot the table fills is only text.
    name = "<!--" + "0" * 32 + "-->"
    manager_client.post("/tickets/views/", {"name": name, "query": "priority=High"})
    headers = {"HX-Request": "true", "HX-Target": target} if target else {}
    response = manager_client.get("/tickets/", {"priority": "High"}, headers=headers)
    page = response.content.decode()
    assert page.count('<section id="ticket-table"') == 1
    assert page.count('<form id="filters"') == (0 if target == "ticket-table" else 1)
    if target != "ticket-table":
        assert page.index('<form id="filters"') < page.index('<section id="ticket-table"')
        assert page.index('<section id="ticket-table"') < page.index('<form id="save-view"')
    assert not re.search(r"<!--[0-9a-f]{32}-->", page)
    assert "&lt;!--" + "0" * 32 + "--&gt;" in page
    assert f"{listed(response).found} ticket" in page


def test_saved_views_are_kept_per_user(client, manager_client, manager, viewer, sandbox):
    team = _team(sandbox)
    query = f"team={team['id']}&priority=High&sort=created&page=3&bogus=1"
    response = manager_client.post("/tickets/views/", {"name": "My highs", "query": query})
    assert response.status_code == 302
    view = SavedView.objects.get(owner=manager)
    # Only the filter is kept: no page, nothing the list does not read.
    assert parse_qs(view.query) == {"team": [team["id"]], "priority": ["High"], "sort": ["created"]}
    assert response["Location"] == f"/tickets/?{view.query}"
    page = manager_client.get(response["Location"])
    assert [v.name for v in page.context["views"] if v.current] == ["My highs"]
    assertContains(page, "Saved the view “My highs”.")

    # The same name replaces; another user neither sees nor deletes it.
    manager_client.post("/tickets/views/", {"name": "My highs", "query": "priority=Low"})
    assert SavedView.objects.get(owner=manager).query == "priority=Low"
    client.force_login(viewer)
    assert "My highs" not in [v.name for v in client.get("/tickets/").context["views"]]
    client.post(f"/tickets/views/{view.pk}/delete/")
    assert SavedView.objects.filter(pk=view.pk).exists()
    response = manager_client.post(
        f"/tickets/views/{view.pk}/delete/", {"back": "q=x\r\nSet-Cookie: a"}
    )
    assert response.status_code == 302 and "\n" not in response["Location"]
    assert not SavedView.objects.exists()


@pytest.mark.parametrize("name", ["", " ", "x" * 61, "bad\x00name"])
def test_a_view_that_cannot_be_saved_keeps_the_name_typed(manager_client, name):
    response = manager_client.post("/tickets/views/", {"name": name, "query": "priority=High"})
    assert response.status_code == 400
    assert not SavedView.objects.exists()
    form = response.context["view_form"]
    assert form.errors["name"]
    assert listed(response).filter.priority == "High"
    if name.strip() and "\x00" not in name:
        assertContains(response, f'value="{name}"', status_code=400)


def test_the_pager_of_a_refused_view_leads_to_the_list(manager_client):
    # The page is the answer to a POST to /tickets/views/: "?page=2" alone would go there.
    response = manager_client.post("/tickets/views/", {"name": "x" * 61, "query": ""})
    assertContains(response, 'href="/tickets/?page=2" rel="next"', status_code=400)


def test_views_are_limited_per_user(manager_client, manager):
    SavedView.objects.bulk_create(
        SavedView(owner=manager, name=f"v{i}", query="") for i in range(50)
    )
    response = manager_client.post("/tickets/views/", {"name": "one more", "query": ""})
    assertContains(response, "at most 50 views", status_code=400)
    assert SavedView.objects.filter(owner=manager).count() == 50


_param = st.sampled_from(
    ["team", "q", "status", "priority", "type", "assignee", "subteam", "updated", "sort", "page"]
)
_value = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        ["`", "[a,b]", "x && teamId:=T1", "null", "me", "none", "-1", "9" * 30, "Urgent", "\x00"]
    ),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(params=st.lists(st.tuples(_param, _value), max_size=6))
def test_no_list_url_is_a_server_error(viewer_client, params):
    """Filter values go into Typesense's syntax: none can break it, or the page."""
    cache.clear()
    query = [(name, value) for name, value in params]
    response = viewer_client.get("/tickets/", query)
    assert response.status_code in (200, 302)
    if response.status_code == 200:
        assert "Could not parse the filter" not in response.content.decode()


@pytest.mark.parametrize(
    "fault",
    [
        lambda sandbox: sandbox.fail_next(4, status=503),
        lambda sandbox: sandbox.drop_next(4),
        lambda sandbox: sandbox.answer_next(b"<html>Bad gateway</html>"),
    ],
)
def test_a_search_thena_fails_keeps_the_filters_and_says_why(viewer_client, sandbox, fault):
    """When the search fails, the page says so, with the filters as they were (the teams
    and their choices came from the cache), and no ticket."""
    team = _team(sandbox)
    params = {"team": team["id"], "q": "login", "status": "Open"}  # as the URL holds them
    viewer_client.get("/tickets/", params)  # the teams and their choices are cached now
    fault(sandbox)
    response = viewer_client.get("/tickets/", params)
    assert response.status_code == 200
    listing = listed(response)
    assert listing.error and listing.tickets == []
    assertContains(response, 'role="alert"')
    assertContains(response, f'<option value="{team["id"]}" selected>')
    assertContains(response, "<option selected>Open</option>")
    assertContains(response, 'value="login"')
    assertNotContains(response, 'class="row-link"')
