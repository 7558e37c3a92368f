"""Contract tests of the sandbox: the fake Thena API the client and the browser tests use."""

import re
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tickets.thena.documented import TICKET_KEYS, WRITE_ONLY
from tickets.thena.sandbox import (
    DEMO_API_KEY,
    ApiError,
    SandboxApp,
    SandboxConfig,
    SandboxConnectionDropped,
    default_sandbox,
)
from tickets.thena.sandbox.server import make_server

ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
RATE_HEADERS = [
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "X-RateLimit-IP",
    "X-RateLimit-UserID",
    "X-RateLimit-OrgID",
    "X-RateLimit-Path",
]


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2025, 6, 15, 12, 0, 0, 500_000, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def app(clock):
    return SandboxApp(clock=clock)


def make_client(app, headers=None):
    return httpx.Client(
        transport=httpx.WSGITransport(app=app),
        base_url="http://sandbox",
        headers={"x-api-key": DEMO_API_KEY} if headers is None else headers,
    )


@pytest.fixture
def client(app):
    with make_client(app) as client:
        yield client


def data(response):
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] is True
    assert body["message"] == "Success"
    assert ISO_MS.match(body["timestamp"])
    return body["data"]


def parent_teams(app):
    return [t for t in app.teams() if not t["parentTeamId"]]


def all_tickets(client, **params):
    tickets, page = [], 0
    while True:
        rows = data(client.get("/v1/tickets", params={**params, "page": page, "limit": 100}))
        tickets += rows
        if len(rows) < 100:
            return tickets
        page += 1


def ticket_of(app, identifier="SUP"):
    return next(t for t in app.tickets() if t["teamIdentifier"] == identifier)


def patch(client, ticket_id, body):
    return client.patch(f"/v1/tickets/{ticket_id}", json=body)


# Seed data


def test_seed_has_teams_with_sub_teams_and_200_tickets(app):
    parents = parent_teams(app)
    assert [t["identifier"] for t in parents] == ["SUP", "BIL", "ENG"]
    for team in parents:
        assert re.fullmatch(r"T[A-Z0-9]{9}", team["id"])
        assert 1 <= len([t for t in app.teams() if t["parentTeamId"] == team["id"]]) <= 2
    tickets = app.tickets()
    assert len(tickets) >= 200
    assert {t["teamId"] for t in tickets} == {t["id"] for t in parents}
    for ticket in tickets:
        assert re.fullmatch(r"[A-Z0-9]{29}", ticket["id"])
        assert ticket["ticketIdentifier"] == f"{ticket['teamIdentifier']}-{ticket['ticketId']}"
        assert ISO_MS.match(ticket["createdAt"]) and ticket["createdAt"] <= ticket["updatedAt"]
    assert any(t["customFieldValues"] for t in tickets)
    assert any(t["subTeamId"] for t in tickets)


def test_same_seed_gives_the_same_data_and_another_seed_differs(clock):
    first, second = SandboxApp(clock=clock), SandboxApp(clock=clock)
    assert first.tickets() == second.tickets()
    assert first.teams() == second.teams()
    other = SandboxApp(SandboxConfig(seed=2), clock=clock)
    assert {t["id"] for t in other.tickets()}.isdisjoint({t["id"] for t in first.tickets()})


def test_reset_restores_the_seed_and_forgets_requests(app, client):
    ticket = ticket_of(app)
    data(patch(client, ticket["id"], {"title": "Changed"}))
    app.reset()
    assert app.ticket(ticket["id"]) == ticket
    assert app.requests == []


def test_default_sandbox_is_one_per_process():
    assert default_sandbox() is default_sandbox()


# Reads


def test_health_needs_no_key(app):
    with make_client(app, {"x-api-key": "wrong"}) as client:
        response = client.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_ticket_list_is_newest_first_in_pages_of_limit(app, client):
    first = data(client.get("/v1/tickets", params={"limit": 50}))
    second = data(client.get("/v1/tickets", params={"page": 1, "limit": 50}))
    assert len(first) == len(second) == 50
    stamps = [t["updatedAt"] for t in first + second]
    assert stamps == sorted(stamps, reverse=True)
    assert len(data(client.get("/v1/tickets"))) == 20
    last_page = data(client.get("/v1/tickets", params={"page": 2, "limit": 100}))
    assert len(last_page) == len(app.tickets()) - 200


def test_ticket_list_filters_by_team(app, client):
    team = parent_teams(app)[1]
    tickets = data(client.get("/v1/tickets", params={"teamId": team["id"], "limit": 100}))
    assert tickets
    assert {t["teamId"] for t in tickets} == {team["id"]}


def test_ticket_list_filters_by_calendar_date_range(client, clock):
    counts = {}
    for date_range, since in [("1d", "2025-06-14"), ("1w", "2025-06-08"), ("3m", "2025-03-15")]:
        tickets = all_tickets(client, dateRange=date_range)
        assert all(t["createdAt"] >= f"{since}T00:00:00.000Z" for t in tickets)
        counts[date_range] = len(tickets)
    assert 0 < counts["1d"] < counts["1w"] < counts["3m"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"page": "-1"}, "page must not be less than 0"),
        ({"page": "abc"}, "page must be a number conforming to the specified constraints"),
        ({"limit": "0"}, "limit must not be less than 1"),
        ({"limit": "101"}, "limit must not be greater than 100"),
        ({"dateRange": "5d"}, "dateRange must be one of the following values: 1d, 2d"),
    ],
)
def test_ticket_list_rejects_invalid_params(client, params, message):
    response = client.get("/v1/tickets", params=params)
    assert response.status_code == 400
    body = response.json()
    assert body["statusCode"] == 400 and body["error"] == "Bad Request"
    assert body["message"][0].startswith(message)


def test_ticket_list_with_unknown_team_is_404(client):
    assert client.get("/v1/tickets", params={"teamId": "TNOSUCHTEA"}).status_code == 404


def test_get_ticket_carries_ids_and_display_names(app, client):
    stored = next(t for t in app.tickets() if t["subTeamId"] and t["assignedAgentId"])
    ticket = data(client.get(f"/v1/tickets/{stored['id']}"))
    assert ticket == _documented(stored)
    statuses = data(client.get("/v1/tickets/status", params={"teamId": ticket["teamId"]}))
    assert ticket["status"] == next(s["name"] for s in statuses if s["id"] == ticket["statusId"])
    assert ticket["teamName"] and ticket["teamIdentifier"] and ticket["subTeamName"]
    assert ticket["assignedAgent"] and "@" in ticket["assignedAgentEmail"]
    for key in ["priority", "type", "ticketId", "requestorEmail", "customFieldValues", "isPrivate"]:
        assert key in ticket


def test_unknown_ticket_route_and_method_are_404(client):
    missing = client.get("/v1/tickets/NOPE")
    assert missing.status_code == 404
    assert missing.json() == {
        "statusCode": 404,
        "message": "Ticket 'NOPE' not found",
        "error": "Not Found",
    }
    assert client.get("/v1/nothing-here").json()["message"] == "Cannot GET /v1/nothing-here"
    assert client.delete("/v1/teams").status_code == 404


def test_team_configuration_has_the_documented_defaults(app, client):
    team = parent_teams(app)[0]
    params = {"teamId": team["id"]}
    statuses = data(client.get("/v1/tickets/status", params=params))
    parents = [s for s in statuses if s["parentStatusId"] is None]
    assert [s["name"] for s in parents] == ["Open", "In progress", "On hold", "Closed"]
    assert [s["name"] for s in statuses if s["isDefault"]] == ["Open"]
    assert {s["parentStatusId"] for s in statuses} - {None} <= {s["id"] for s in parents}
    assert len(statuses) > 4
    priorities = data(client.get("/v1/tickets/priority", params=params))
    assert [p["name"] for p in priorities] == ["Low", "Medium", "High", "Urgent"]
    assert [p["name"] for p in priorities if p["isDefault"]] == ["Medium"]
    types = data(client.get("/v1/tickets/type", params=params))
    assert {t["name"]: t["color"] for t in types} == {
        "Bug": "#db1f61",
        "Feature Request": "#1f74db",
        "Question": "#1fdb8a",
        "Task": "#db7a1f",
    }
    sentiments = data(client.get("/v1/tickets/sentiment", params=params))
    assert {s["name"] for s in sentiments} == {"Positive", "Neutral", "Negative"}
    assert {s["teamId"] for s in statuses + priorities + types + sentiments} == {team["id"]}


def test_sub_team_uses_its_parent_configuration(app, client):
    sub = next(t for t in app.teams() if t["parentTeamId"])
    own = data(client.get("/v1/tickets/status", params={"teamId": sub["id"]}))
    parent = data(client.get("/v1/tickets/status", params={"teamId": sub["parentTeamId"]}))
    assert own == parent


def test_teams_sub_teams_and_members(app, client):
    teams = data(client.get("/v1/teams"))
    assert [t["id"] for t in teams] == [t["id"] for t in app.teams()]
    team = teams[0]
    assert data(client.get(f"/v1/teams/{team['id']}"))["identifier"] == "SUP"
    subs = data(client.get(f"/v1/teams/{team['id']}/sub-teams"))
    assert subs and {s["parentTeamId"] for s in subs} == {team["id"]}
    members = data(client.get(f"/v1/teams/{team['id']}/members"))
    assert 4 <= len(members) <= 6
    assert {"id", "name", "email", "teamId", "role", "isOwner"} <= set(members[0])
    name = members[1]["name"]
    found = data(client.get(f"/v1/teams/{team['id']}/members", params={"searchQuery": name[:4]}))
    assert name in [m["name"] for m in found]
    assert client.get("/v1/teams/TNOSUCHTEA").status_code == 404


def test_accounts_are_paged_and_a_single_account_is_bare(client):
    first = data(client.get("/v1/accounts", params={"limit": 20}))
    rest = data(client.get("/v1/accounts", params={"page": 1, "limit": 20}))
    assert len(first) + len(rest) == 30
    account = client.get(f"/v1/accounts/{first[0]['id']}").json()
    assert account == first[0]  # bare, without the envelope
    assert client.get("/v1/accounts/NOPE").status_code == 404


def test_forms_list_team_and_global_forms(app, client):
    team = parent_teams(app)[2]
    forms = data(client.get("/v1/forms", params={"teamId": team["id"]}))
    assert {f["teamId"] for f in forms} == {team["id"], None}
    only = data(client.get("/v1/forms", params={"teamId": team["id"], "onlyTeamForms": "true"}))
    assert {f["teamId"] for f in only} == {team["id"]}
    assert {"id", "name", "fields", "conditions", "default", "channels"} <= set(forms[0])


def test_custom_fields_cover_several_types(app, client):
    team = parent_teams(app)[2]
    fields = data(client.get("/v1/custom-field", params={"teamId": team["id"], "source": "ticket"}))
    assert {f["teamId"] for f in fields} == {team["id"], None}
    assert {f["source"] for f in fields} == {"ticket"}
    every = data(client.get("/v1/custom-field", params={"limit": 100}))
    assert {
        "single_line",
        "multi_line",
        "integer",
        "decimal",
        "date",
        "date_time",
        "single_choice",
        "multi_choice",
        "checkbox",
        "boolean",
        "email",
        "url",
    } <= {f["fieldType"] for f in every}
    assert all(f["uid"] for f in every)
    assert next(f for f in every if f["fieldType"] == "single_choice")["options"]
    assert client.get("/v1/custom-field", params={"source": "nope"}).status_code == 400


# Search


def test_search_match_all_pages_from_one(app, client):
    result = client.get(
        "/v1/search/tickets", params={"q": "*", "query_by": "title", "per_page": 10, "page": 2}
    ).json()["result"]
    assert result["found"] == len(app.tickets())
    assert result["page"] == 2 and len(result["hits"]) == 10
    assert result["facet_counts"] == [] and result["search_cutoff"] is False
    assert result["request_params"]["per_page"] == 10
    assert {"uid", "statusName", "accountName"} <= set(result["hits"][0]["document"])


def test_search_matches_query_by_fields_and_filter_by(app, client):
    target = app.tickets()[7]
    params = {
        "q": target["ticketIdentifier"],
        "query_by": "title,ticketIdentifier",
        "filter_by": f"teamId:={target['teamId']}&&priorityName:={target['priority'].lower()}",
    }
    result = client.get("/v1/search/tickets", params=params).json()["result"]
    documents = [hit["document"] for hit in result["hits"]]
    assert target["id"] in [d["id"] for d in documents]
    assert {d["teamId"] for d in documents} == {target["teamId"]}
    assert {d["priority"] for d in documents} == {target["priority"]}
    assert result["found"] == len(documents)


def test_search_accounts_by_name(client):
    result = client.get("/v1/search/accounts", params={"q": "acme", "query_by": "name"}).json()
    assert [hit["document"]["name"].split()[0] for hit in result["result"]["hits"]] == ["Acme"]


def test_search_needs_q_and_query_by(client):
    response = client.get("/v1/search/tickets", params={"q": "*"})
    assert response.status_code == 400
    assert response.json()["message"] == ["query_by should not be empty"]
    assert client.get("/v1/search/nope", params={"q": "*", "query_by": "x"}).status_code == 404


# Auth and rate limits


@pytest.mark.parametrize("headers", [{}, {"x-api-key": "wrong"}, {"authorization": "Bearer wrong"}])
def test_missing_or_wrong_key_is_401(app, headers):
    with make_client(app, headers) as client:
        response = client.get("/v1/teams")
    assert response.status_code == 401
    assert response.json()["error"] == "Unauthorized"


def test_bearer_token_with_the_key_is_accepted(app):
    headers = {"authorization": f"Bearer {DEMO_API_KEY}", "x-org-id": "ANY"}
    with make_client(app, headers) as client:
        assert client.get("/v1/teams").status_code == 200


def test_every_reply_carries_rate_limit_headers(client):
    for response in [client.get("/v1/teams"), client.get("/nope"), client.get("/health")]:
        assert all(name in response.headers for name in RATE_HEADERS)
    response = client.get("/v1/teams")
    assert response.headers["X-RateLimit-Path"] == "/v1/teams"
    assert int(response.headers["X-RateLimit-Remaining"]) < int(
        response.headers["X-RateLimit-Limit"]
    )


def test_over_budget_is_429_until_the_window_resets(app, client, clock):
    app.config.rate_limit = 2
    assert client.get("/v1/teams").headers["X-RateLimit-Remaining"] == "1"
    assert client.get("/v1/teams").headers["X-RateLimit-Remaining"] == "0"
    limited = client.get("/v1/teams")
    assert limited.status_code == 429
    assert limited.json()["statusCode"] == 429
    reset = int(limited.headers["X-RateLimit-Reset"])
    assert reset == int(clock.now.timestamp()) + 60
    clock.now = datetime.fromtimestamp(reset, UTC)
    assert client.get("/v1/teams").status_code == 200


# Faults


def test_fail_next_answers_the_status_then_recovers(app, client):
    app.fail_next(2, status=503)
    assert [client.get("/v1/teams").status_code for _ in range(3)] == [503, 503, 200]
    app.fail_next()
    failed = client.get("/v1/teams")
    assert failed.json() == {
        "statusCode": 500,
        "message": "Internal server error",
        "error": "Internal Server Error",
    }


def test_drop_next_raises_without_applying_unless_asked(app, client):
    ticket = ticket_of(app)
    app.drop_next()
    with pytest.raises(SandboxConnectionDropped):
        patch(client, ticket["id"], {"title": "Lost"})
    assert app.ticket(ticket["id"])["title"] == ticket["title"]
    assert app.requests[-1].status is None
    app.drop_next(applied=True)
    with pytest.raises(SandboxConnectionDropped):
        patch(client, ticket["id"], {"title": "Applied, answer lost"})
    assert app.ticket(ticket["id"])["title"] == "Applied, answer lost"
    assert client.get("/v1/teams").status_code == 200


def test_fail_next_applied_makes_the_change_then_answers_the_error(app, client):
    ticket = ticket_of(app)
    app.fail_next(status=502, applied=True)
    failed = patch(client, ticket["id"], {"title": "Applied, then 502"})
    assert failed.status_code == 502
    assert failed.json()["statusCode"] == 502
    assert all(header in failed.headers for header in RATE_HEADERS)
    assert app.ticket(ticket["id"])["title"] == "Applied, then 502"
    assert app.requests[-1].status == 502
    app.fail_next(applied=False)
    assert patch(client, ticket["id"], {"title": "Not applied"}).status_code == 500
    assert app.ticket(ticket["id"])["title"] == "Applied, then 502"


@pytest.mark.parametrize(
    "body", [{"status": True}, {"status": True, "data": None}, [], None, "text", 0]
)
def test_answer_next_applies_and_answers_exactly_the_body(app, client, body):
    ticket = ticket_of(app)
    app.answer_next(body)
    answered = patch(client, ticket["id"], {"title": "Odd answer"})
    assert answered.status_code == 200
    assert answered.json() == body
    assert answered.headers["content-type"].startswith("application/json")
    for header in RATE_HEADERS:
        assert header in answered.headers
    assert app.ticket(ticket["id"])["title"] == "Odd answer"
    assert app.requests[-1].status == 200 and app.requests[-1].json == {"title": "Odd answer"}
    assert data(patch(client, ticket["id"], {"title": "Normal"}))["title"] == "Normal"


def test_answer_next_with_bytes_sends_them_raw_and_can_skip_applying(app, client):
    ticket = ticket_of(app)
    app.answer_next(b"<html>Bad gateway</html>", status=502, applied=False, count=2)
    for title in ("One", "Two"):
        answered = patch(client, ticket["id"], {"title": title})
        assert (answered.status_code, answered.content) == (502, b"<html>Bad gateway</html>")
        assert answered.headers["content-length"] == str(len(answered.content))
    assert app.ticket(ticket["id"])["title"] == ticket["title"]
    assert [r.status for r in app.requests] == [502, 502]
    assert patch(client, ticket["id"], {"title": "Three"}).status_code == 200


def test_answer_next_status_and_unknown_status_is_refused(app, client):
    app.answer_next({"message": "accepted"}, status=202)
    answered = client.get("/v1/teams")
    assert (answered.status_code, answered.json()) == (202, {"message": "accepted"})
    with pytest.raises(ValueError):
        app.answer_next({}, status=299)
    with pytest.raises(TypeError):
        app.answer_next({"not json": object()})
    assert client.get("/v1/teams").status_code == 200


def test_faults_apply_in_order_whatever_the_method(app, client):
    ticket = ticket_of(app)
    app.fail_next(status=503)
    app.answer_next([])
    app.drop_next()
    assert client.get("/v1/teams").status_code == 503
    assert patch(client, ticket["id"], {"title": "Second"}).json() == []
    with pytest.raises(SandboxConnectionDropped):
        client.get(f"/v1/tickets/{ticket['id']}")
    assert client.get("/v1/teams").status_code == 200
    assert app.ticket(ticket["id"])["title"] == "Second"


@pytest.mark.parametrize("only", ["PATCH", "patch"])
def test_only_queues_a_fault_for_one_method(app, client, only):
    ticket = ticket_of(app)
    app.fail_next(status=503, only=only)
    app.answer_next({"status": True}, only=only)
    app.drop_next(applied=True, only=only)
    app.fail_next(status=504)  # any method: the first GET takes it
    assert client.get("/v1/teams").status_code == 504
    assert client.get(f"/v1/tickets/{ticket['id']}").status_code == 200
    assert patch(client, ticket["id"], {"title": "Refused"}).status_code == 503
    assert app.ticket(ticket["id"])["title"] == ticket["title"]
    assert client.get("/v1/teams").status_code == 200
    assert patch(client, ticket["id"], {"title": "Odd"}).json() == {"status": True}
    assert app.ticket(ticket["id"])["title"] == "Odd"
    with pytest.raises(SandboxConnectionDropped):
        patch(client, ticket["id"], {"title": "Lost answer"})
    assert app.ticket(ticket["id"])["title"] == "Lost answer"
    assert patch(client, ticket["id"], {"title": "Fine"}).status_code == 200


def test_fail_next_only_with_applied(app, client):
    ticket = ticket_of(app)
    app.fail_next(2, applied=True, only="PATCH")
    assert client.get("/v1/teams").status_code == 200
    assert patch(client, ticket["id"], {"title": "A"}).status_code == 500
    assert patch(client, ticket["id"], {"title": "B"}).status_code == 500
    assert app.ticket(ticket["id"])["title"] == "B"
    assert patch(client, ticket["id"], {"title": "C"}).status_code == 200


def test_reset_forgets_queued_faults(app, client):
    app.answer_next([], count=3)
    app.fail_next(only="PATCH")
    app.reset()
    assert client.get("/v1/teams").status_code == 200
    assert patch(client, ticket_of(app)["id"], {"title": "Fine"}).status_code == 200


def test_faults_are_taken_once_each_under_concurrency(app):
    app.answer_next({"odd": True}, count=20)

    odd: list[bool] = []

    def worker():
        with make_client(app) as client:
            for _ in range(10):
                odd.append(client.get("/v1/teams").json() == {"odd": True})

    threads = [threading.Thread(target=worker) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(odd) == [False] * 30 + [True] * 20


def test_fail_rate_is_seeded(clock):
    def pattern():
        app = SandboxApp(SandboxConfig(fail_rate=0.5), clock=clock)
        with make_client(app) as client:
            return [client.get("/v1/teams").status_code for _ in range(20)]

    first = pattern()
    assert first == pattern()
    assert set(first) == {200, 500}


def test_latency_delays_each_request(app, client):
    app.config.latency_ms = 30
    started = time.perf_counter()
    client.get("/health")
    assert time.perf_counter() - started >= 0.03


def test_requests_are_recorded_without_the_key(app, client):
    client.get("/v1/tickets", params={"limit": 5})
    patch(client, ticket_of(app)["id"], {"title": "Recorded"})
    listed, patched = app.requests
    assert (listed.method, listed.path, listed.query, listed.json) == (
        "GET",
        "/v1/tickets",
        {"limit": "5"},
        None,
    )
    assert patched.json == {"title": "Recorded"} and patched.status == 200
    assert DEMO_API_KEY not in str(app.requests)
    assert patched.headers["x-api-key"] == "***"


# PATCH


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"title": 5}, "title must be a string"),
        ({"title": "  "}, "title should not be empty"),
        ({"title": None}, "title should not be null"),
        ({"isPrivate": "yes"}, "isPrivate must be a boolean value"),
        ({"metadata": []}, "metadata must be an object"),
        ({"attachmentUrls": "https://x.example"}, "attachmentUrls must be an array"),
        ({"attachmentUrls": [1]}, "each value in attachmentUrls must be a string"),
        ({"customFieldValues": ["x"]}, "each value in customFieldValues must be an object"),
        ({"proactiveChannels": ["sms"]}, "each value in proactiveChannels must be one of"),
        ({"submitterEmail": "not-an-email"}, "submitterEmail must be an email"),
        ({"assignedAgentEmail": "nobody@x"}, "assignedAgentEmail must be an email"),
        ({"dueDate": "tomorrow"}, "dueDate must be a valid ISO 8601 date string"),
        ({"closedAt": "2025-13-45T00:00:00Z"}, "closedAt must be a valid ISO 8601 date string"),
        ({"statusName": "Nonsense"}, "statusName must match one of the team's statuses: Open, "),
        ({"priorityName": "Meh"}, "priorityName must match one of the team's priorities: Low"),
        ({"assignedAgentEmail": "stranger@else.example"}, "assignedAgentEmail must be the email"),
        ({"teamId": "T123456789"}, "property teamId should not exist"),
        ({"autoLink": "yes"}, "property autoLink should not exist"),
    ],
)
def test_patch_rejects_invalid_values_with_400(app, client, body, message):
    ticket = ticket_of(app)
    response = patch(client, ticket["id"], body)
    assert response.status_code == 400
    assert response.json()["error"] == "Bad Request"
    assert response.json()["message"][0].startswith(message)
    assert app.ticket(ticket["id"]) == ticket


def test_patch_reports_every_invalid_property(app, client):
    response = patch(client, ticket_of(app)["id"], {"title": 1, "isPrivate": 1, "extra": "x"})
    assert response.json()["message"] == [
        "title must be a string",
        "isPrivate must be a boolean value",
        "property extra should not exist",
    ]


@pytest.mark.parametrize("content", [b"", b"{not json", b"[]", b'"title"', b"null"])
def test_patch_body_must_be_a_json_object(app, client, content):
    response = client.patch(
        f"/v1/tickets/{ticket_of(app)['id']}",
        content=content,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["message"] == ["request body must be a JSON object"]


@pytest.mark.parametrize(
    "key",
    [
        "statusId",
        "priorityId",
        "typeId",
        "sentimentId",
        "assignedAgentId",
        "accountId",
        "subTeamId",
        "formId",
        "closedById",
    ],
)
def test_patch_unknown_id_is_404_naming_the_property(app, client, key):
    ticket = ticket_of(app)
    response = patch(client, ticket["id"], {key: "XYZ"})
    assert response.status_code == 404
    assert response.json()["message"] == f"{key} 'XYZ' not found"
    assert app.ticket(ticket["id"]) == ticket


def test_patch_ids_of_another_team_are_404(app, client):
    support, billing, engineering = parent_teams(app)
    ticket = ticket_of(app, "SUP")
    insiders = {m["id"] for m in data(client.get(f"/v1/teams/{support['id']}/members"))}
    others = [
        m["id"]
        for team in (billing, engineering)
        for m in data(client.get(f"/v1/teams/{team['id']}/members"))
    ]
    outsider = next(uid for uid in others if uid not in insiders)
    assert patch(client, ticket["id"], {"assignedAgentId": outsider}).status_code == 404
    billing_sub = next(t for t in app.teams() if t["parentTeamId"] == billing["id"])
    assert patch(client, ticket["id"], {"subTeamId": billing_sub["id"]}).status_code == 404
    billing_status = data(client.get("/v1/tickets/status", params={"teamId": billing["id"]}))[0]
    assert patch(client, ticket["id"], {"statusId": billing_status["id"]}).status_code == 404


def test_patch_unknown_ticket_is_404(client):
    assert patch(client, "NOPE", {"title": "x"}).status_code == 404


def test_patch_id_beats_name(app, client):
    ticket = ticket_of(app)
    statuses = data(client.get("/v1/tickets/status", params={"teamId": ticket["teamId"]}))
    on_hold = next(s for s in statuses if s["name"] == "On hold")
    priorities = data(client.get("/v1/tickets/priority", params={"teamId": ticket["teamId"]}))
    urgent = next(p for p in priorities if p["name"] == "Urgent")
    body = {
        "statusId": on_hold["id"],
        "statusName": "Nonsense",
        "priorityId": urgent["id"],
        "priorityName": "Low",
    }
    updated = data(patch(client, ticket["id"], body))
    assert (updated["statusId"], updated["status"]) == (on_hold["id"], "On hold")
    assert (updated["priorityId"], updated["priority"]) == (urgent["id"], "Urgent")


def test_patch_names_resolve_to_ids(app, client):
    ticket = ticket_of(app)
    updated = data(
        patch(client, ticket["id"], {"statusName": "in progress", "priorityName": "High"})
    )
    assert (updated["status"], updated["priority"]) == ("In progress", "High")
    statuses = data(client.get("/v1/tickets/status", params={"teamId": ticket["teamId"]}))
    assert updated["statusId"] == next(s["id"] for s in statuses if s["name"] == "In progress")


def test_patch_refreshes_display_names(app, client):
    ticket = ticket_of(app, "ENG")
    team_id = ticket["teamId"]
    member = data(client.get(f"/v1/teams/{team_id}/members"))[-1]
    account = data(client.get("/v1/accounts", params={"limit": 1}))[0]
    sub = data(client.get(f"/v1/teams/{team_id}/sub-teams"))[-1]
    kind = data(client.get("/v1/tickets/type", params={"teamId": team_id}))[-1]
    updated = data(
        patch(
            client,
            ticket["id"],
            {
                "assignedAgentEmail": member["email"].upper(),
                "accountId": account["id"],
                "subTeamId": sub["id"],
                "typeId": kind["id"],
            },
        )
    )
    assert updated["assignedAgentId"] == member["id"]
    assert (updated["assignedAgent"], updated["assignedAgentEmail"]) == (
        member["name"],
        member["email"],
    )
    assert updated["account"] == account["name"]
    assert (updated["subTeamName"], updated["subTeamIdentifier"]) == (
        sub["name"],
        sub["identifier"],
    )
    assert updated["type"] == kind["name"]
    assert updated == _documented(app.ticket(ticket["id"]))


def test_patch_null_clears_optional_links(app, client):
    ticket = next(
        t
        for t in app.tickets()
        if t["assignedAgentId"] and t["accountId"] and t["sentimentId"] and t["subTeamId"]
    )
    body = dict.fromkeys(
        ["assignedAgentId", "accountId", "sentimentId", "subTeamId", "dueDate", "description"]
    )
    data(patch(client, ticket["id"], body))
    stored = app.ticket(ticket["id"])
    for key in [*body, "assignedAgent", "assignedAgentEmail", "account", "sentiment"]:
        assert stored[key] is None, key
    assert stored["subTeamName"] is None


def test_patch_bumps_updated_at_strictly_even_within_one_millisecond(app, client, clock):
    ticket = ticket_of(app)
    stamps = [data(patch(client, ticket["id"], {"title": f"T{i}"}))["updatedAt"] for i in range(3)]
    assert all(ISO_MS.match(s) for s in stamps)
    assert ticket["updatedAt"] < stamps[0] < stamps[1] < stamps[2]
    assert stamps[0] == "2025-06-15T12:00:00.500Z"
    clock.now += timedelta(hours=1)
    assert data(patch(client, ticket["id"], {}))["updatedAt"] == "2025-06-15T13:00:00.500Z"


def _documented(stored: dict) -> dict:
    """A stored ticket as the documented answer carries it (custom fields aside)."""
    return {k: stored[k] for k in TICKET_KEYS if k != "customFieldValues"} | {
        "customFieldValues": _strings(stored["customFieldValues"])
    }


def _strings(items: list[dict]) -> list[str]:
    return [d["value"] for item in items for d in item["data"]]


# The ticket object as Thena documents it (thena-api.md §3)


def _tickets_everywhere(app, client) -> list[dict]:
    """One ticket as GET, the list and a PATCH answer carry it."""
    listed = data(client.get("/v1/tickets", params={"limit": 100}))
    ticket = next(t for t in listed if t["customFieldValues"])
    return [
        data(client.get(f"/v1/tickets/{ticket['id']}")),
        next(t for t in listed if t["id"] == ticket["id"]),
        data(patch(client, ticket["id"], {"title": "Renamed"})),
    ]


def test_a_ticket_has_exactly_the_75_documented_keys_in_order(app, client):
    for ticket in _tickets_everywhere(app, client):
        assert list(ticket) == list(TICKET_KEYS)
        assert len(ticket) == 75
        assert all(isinstance(v, str) for v in ticket["customFieldValues"])


def test_write_only_values_are_stored_but_not_returned(app, client):
    ticket = ticket_of(app)
    body = {
        "dueDate": "2025-07-01T10:00:00Z",
        "metadata": {"k": 1},
        "attachmentUrls": ["https://files.example/a.png"],
        "isProactive": True,
        "proactiveChannels": ["email"],
    }
    updated = data(patch(client, ticket["id"], body))
    assert set(WRITE_ONLY) == set(body)
    assert not set(body) & set(updated)
    stored = app.ticket(ticket["id"])
    assert {k: stored[k] for k in body} == body | {"dueDate": "2025-07-01T10:00:00.000Z"}


def test_echo_write_only_and_object_custom_fields_are_configurable(clock):
    app = SandboxApp(SandboxConfig(echo_write_only=True, custom_field_shape="objects"), clock=clock)
    with make_client(app) as client:
        for ticket in _tickets_everywhere(app, client):
            assert list(ticket) == [*TICKET_KEYS, *WRITE_ONLY]
            assert ticket["customFieldValues"] == app.ticket(ticket["id"])["customFieldValues"]
            assert all(isinstance(v, dict) for v in ticket["customFieldValues"])


def test_closed_by_names_the_closer_and_search_documents_carry_uid(app, client):
    ticket = next(t for t in app.tickets() if t["closedById"])
    got = data(client.get(f"/v1/tickets/{ticket['id']}"))
    assert got["closedBy"] and "@" in got["closedByEmail"]
    assert "uid" not in got and "organizationId" not in got
    found = client.get(
        "/v1/search/tickets", params={"q": "*", "query_by": "title", "per_page": 1}
    ).json()["result"]["hits"][0]["document"]
    assert found["uid"] == found["id"] and found["organizationId"]


def test_only_the_configured_auto_link_key_is_accepted(clock):
    app = SandboxApp(SandboxConfig(auto_link_field="linkSlackChannelToAccount"), clock=clock)
    with make_client(app) as client:
        ticket = ticket_of(app)
        refused = patch(client, ticket["id"], {"autoLinkSlackChannel": True})
        assert refused.status_code == 400
        assert refused.json()["message"] == ["property autoLinkSlackChannel should not exist"]
        data(patch(client, ticket["id"], {"linkSlackChannelToAccount": True}))
        assert app.ticket(ticket["id"])["_extraFlags"] == {"linkSlackChannelToAccount": True}


def test_patch_accepts_and_records_the_auto_link_flag(app, client):
    ticket = ticket_of(app)
    account = app.tickets()[5]["accountId"] or data(client.get("/v1/accounts"))[0]["id"]
    body = {"accountId": account, "autoLinkSlackChannel": True}
    updated = data(patch(client, ticket["id"], body))
    assert "autoLinkSlackChannel" not in updated
    assert app.ticket(ticket["id"])["_extraFlags"] == {"autoLinkSlackChannel": True}
    assert app.requests[-1].json == body
    data(patch(client, ticket["id"], {"autoLinkSlackChannel": False}))
    assert app.ticket(ticket["id"])["_extraFlags"] == {"autoLinkSlackChannel": False}


def test_patch_stores_plain_fields_as_sent(app, client):
    ticket = ticket_of(app)
    values = [
        {"customFieldId": "ANY", "data": [{"value": "x"}], "nested": {"k": [1, None]}},
        {"whatever": True},
    ]
    body = {
        "customFieldValues": values,
        "metadata": {"source": "dashboard"},
        "attachmentUrls": ["https://files.example/a.png"],
        "isPrivate": True,
        "proactiveChannels": ["email"],
        "isProactive": True,
        "source": "web",
        "aiGeneratedTitle": "Short",
        "submitterEmail": "someone@customer.example",
    }
    data(patch(client, ticket["id"], body))
    stored = app.ticket(ticket["id"])
    assert {k: stored[k] for k in body} == body


def test_patch_date_times_come_back_in_utc_with_milliseconds(app, client):
    ticket = ticket_of(app)
    updated = data(
        patch(
            client, ticket["id"], {"dueDate": "2025-07-01T10:00:00+02:00", "closedAt": "2025-07-02"}
        )
    )
    assert app.ticket(ticket["id"])["dueDate"] == "2025-07-01T08:00:00.000Z"
    assert updated["closedAt"] == "2025-07-02T00:00:00.000Z"


def test_proactive_channels_follow_the_configured_allow_list(app, client):
    app.config.proactive_channels = ("email", "slack")
    ticket = ticket_of(app)
    data(patch(client, ticket["id"], {"proactiveChannels": ["slack"]}))
    assert app.ticket(ticket["id"])["proactiveChannels"] == ["slack"]


# touch_ticket and concurrency


def test_touch_ticket_changes_upstream_and_bumps_updated_at(app, client):
    ticket = ticket_of(app)
    touched = app.touch_ticket(ticket["id"], title="Edited elsewhere", priorityName="Urgent")
    assert touched["updatedAt"] > ticket["updatedAt"]
    fetched = data(client.get(f"/v1/tickets/{ticket['id']}"))
    assert (fetched["title"], fetched["priority"]) == ("Edited elsewhere", "Urgent")
    assert fetched["updatedAt"] == touched["updatedAt"]
    assert [r.method for r in app.requests] == ["GET"]  # a touch is not a request
    with pytest.raises(ApiError) as error:
        app.touch_ticket(ticket["id"], dueDate="soon")
    assert error.value.status == 400


def test_concurrent_patches_get_distinct_increasing_stamps(app):
    ticket = ticket_of(app)
    stamps: list[str] = []

    def worker(n):
        with make_client(app) as client:
            for i in range(10):
                stamps.append(data(patch(client, ticket["id"], {"title": f"{n}-{i}"}))["updatedAt"])

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(stamps)) == 40
    assert app.ticket(ticket["id"])["updatedAt"] == max(stamps)


# Over HTTP


def test_http_server_serves_the_app_and_drops_connections():
    app = SandboxApp()
    lines: list[str] = []
    server = make_server(app, "127.0.0.1", 0, log=lines.append)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base_url = f"http://127.0.0.1:{server.server_address[1]}"
        with httpx.Client(base_url=base_url, headers={"x-api-key": DEMO_API_KEY}) as client:
            teams = client.get("/v1/teams")
            assert teams.status_code == 200 and teams.http_version == "HTTP/1.1"
            assert teams.headers["X-RateLimit-Path"] == "/v1/teams"
            app.drop_next()
            with pytest.raises(httpx.RemoteProtocolError):
                client.get("/v1/teams")
            assert client.get("/v1/teams").status_code == 200
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert lines == ["GET /v1/teams 200", "GET /v1/teams dropped", "GET /v1/teams 200"]
