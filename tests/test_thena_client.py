import json
import logging
import time
from datetime import UTC, datetime

import httpx
import pytest

from tests.util import PassingTime
from tickets.thena.client import (
    SANDBOX_BASE_URL,
    SearchPage,
    ThenaClient,
    budget_remaining,
    get_client,
    request_budget,
    sandbox_transport,
    set_client,
)
from tickets.thena.errors import (
    ThenaAuthError,
    ThenaError,
    ThenaNotFound,
    ThenaRateLimited,
    ThenaTimeout,
    ThenaUnavailable,
    ThenaValidationError,
)
from tickets.thena.sandbox import SandboxConfig

KEY = "sk-test-5ecret-api-key-0123456789"
TICKET = {"id": "CT4NVX0K10YJQ3X0185THN9R6H9M3", "title": "Printer on fire", "teamId": "T1"}


# --- A scripted fake Thena for exact failures: any unexpected request fails the test ---


class Script:
    """Answers each request with the next step; a step is (method, path, answer) where the
    answer is an httpx.Response or an httpx exception class to raise."""

    def __init__(self, *steps):
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if not self.steps:
            pytest.fail(f"unexpected request: {request.method} {request.url}")
        method, path, answer = self.steps.pop(0)
        if (request.method, request.url.path) != (method, path):
            pytest.fail(f"expected {method} {path}, got {request.method} {request.url.path}")
        if isinstance(answer, type) and issubclass(answer, Exception):
            raise answer("scripted failure", request=request)
        return answer


def envelope(data, status=200, headers=None) -> httpx.Response:
    body = {"status": True, "message": "Success", "timestamp": "2025-01-01T00:00:00.000Z"}
    return httpx.Response(status, json={**body, "data": data}, headers=headers)


def nest_error(status: int, message, error: str = "Error", headers=None) -> httpx.Response:
    body = {"statusCode": status, "message": message, "error": error}
    return httpx.Response(status, json=body, headers=headers)


def scripted(script: Script, **options) -> tuple[ThenaClient, list[float]]:
    sleeps: list[float] = []
    client = ThenaClient(
        "https://thena.test",
        KEY,
        transport=httpx.MockTransport(script),
        sleep=sleeps.append,
        **options,
    )
    return client, sleeps


def reset_in(seconds: float) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": "100",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": str(time.time() + seconds),
    }


TICKET_PATH = f"/v1/tickets/{TICKET['id']}"


# --- Requests, unwrapping, shapes ----------------------------------------------------


def test_requests_carry_the_key_json_accept_and_user_agent():
    script = Script(("GET", TICKET_PATH, envelope(TICKET)))
    client, _ = scripted(script)

    assert client.get_ticket(TICKET["id"]) == TICKET
    headers = script.requests[0].headers
    assert headers["x-api-key"] == KEY
    assert headers["accept"] == "application/json"
    assert headers["user-agent"] == "thena-admin/0.1"


def test_path_ids_are_url_quoted():
    script = Script(("GET", "/v1/tickets/a/b c", envelope(TICKET)))
    client, _ = scripted(script)

    client.get_ticket("a/b c")

    assert script.requests[0].url.raw_path == b"/v1/tickets/a%2Fb%20c"


def test_bare_objects_and_search_results_are_unwrapped():
    account = {"id": "A1", "name": "Acme"}
    search = {"result": {"found": 7, "hits": [{"document": TICKET}], "page": 2}}
    script = Script(
        ("GET", "/v1/accounts/A1", httpx.Response(200, json=account)),
        ("GET", "/v1/search/tickets", httpx.Response(200, json=search)),
    )
    client, _ = scripted(script)

    assert client.account("A1") == account
    assert client.search_tickets("fire", team_id="T1", page=2) == SearchPage(7, [TICKET], 2)
    params = script.requests[1].url.params
    assert params["filter_by"] == "teamId:=T1"
    assert params["query_by"] == "title,ticketIdentifier,description"
    assert (params["page"], params["per_page"]) == ("2", "25")


def test_list_params_leave_out_what_is_not_given():
    script = Script(("GET", "/v1/tickets", envelope([TICKET])))
    client, _ = scripted(script)

    assert client.list_tickets(page=3, limit=10) == [TICKET]
    assert dict(script.requests[0].url.params) == {"page": "3", "limit": "10"}


def test_update_sends_the_body_as_given():
    body = {"statusId": "S2", "dueDate": "2025-02-01T10:00:00Z", "metadata": {"a": [1]}}
    script = Script(("PATCH", TICKET_PATH, envelope({**TICKET, **body})))
    client, _ = scripted(script)

    assert client.update_ticket(TICKET["id"], body)["statusId"] == "S2"
    assert json.loads(script.requests[0].content) == body
    assert script.requests[0].headers["content-type"] == "application/json"


def test_sentiments_are_empty_when_the_guessed_endpoint_is_missing():
    script = Script(("GET", "/v1/tickets/sentiment", nest_error(404, "Cannot GET", "Not Found")))
    client, _ = scripted(script)

    assert client.sentiments("T1") == []


def test_lookup_lists_are_read_page_by_page_until_a_short_page():
    full = [{"id": f"F{n}"} for n in range(100)]
    script = Script(
        ("GET", "/v1/forms", envelope(full)),
        ("GET", "/v1/forms", envelope([{"id": "last"}])),
    )
    client, _ = scripted(script)

    assert len(client.forms("T1")) == 101
    assert [r.url.params["page"] for r in script.requests] == ["0", "1"]


def test_an_unexpected_shape_is_unavailable():
    script = Script(("GET", "/v1/teams", envelope({"not": "a list"})))
    client, _ = scripted(script)

    with pytest.raises(ThenaUnavailable):
        client.teams()


def test_rate_limit_headers_are_exposed():
    headers = {
        "X-RateLimit-Limit": "100",
        "X-RateLimit-Remaining": "42",
        "X-RateLimit-Reset": "1767225600",
        "X-RateLimit-Path": "/v1/teams",
        "X-RateLimit-OrgID": "EYYYXCC853",
    }
    script = Script(("GET", "/v1/teams", envelope([], headers=headers)))
    client, _ = scripted(script)

    client.teams()

    limit = client.rate_limit
    assert (limit.limit, limit.remaining) == (100, 42)
    assert limit.reset_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert (limit.path, limit.org_id) == ("/v1/teams", "EYYYXCC853")


# --- Error mapping -----------------------------------------------------------------------


def test_validation_errors_are_mapped_to_the_named_properties():
    messages = [
        "dueDate must be a valid ISO 8601 date string",
        "property teamId should not exist",
        "customFieldValues.0.value must be a string",
        "something else went wrong",
    ]
    script = Script(("PATCH", TICKET_PATH, nest_error(400, messages, "Bad Request")))
    client, _ = scripted(script)

    with pytest.raises(ThenaValidationError) as caught:
        client.update_ticket(TICKET["id"], {"dueDate": "soon"})

    error = caught.value
    assert error.status_code == 400
    assert error.field_errors == {
        "dueDate": ["dueDate must be a valid ISO 8601 date string"],
        "customFieldValues": ["customFieldValues.0.value must be a string"],
    }
    assert error.non_field == ["property teamId should not exist", "something else went wrong"]
    assert "dueDate must be a valid ISO 8601 date string" in error.user_message
    assert not error.outcome_unknown


def test_forbidden_and_unauthorized_say_different_things():
    script = Script(
        ("GET", "/v1/teams", nest_error(401, "Unauthorized")),
        ("GET", "/v1/teams", nest_error(403, "Forbidden resource")),
    )
    client, _ = scripted(script)

    with pytest.raises(ThenaAuthError) as unauthorized:
        client.teams()
    with pytest.raises(ThenaAuthError) as forbidden:
        client.teams()

    assert "THENA_API_KEY" in unauthorized.value.user_message
    assert unauthorized.value.user_message != forbidden.value.user_message
    assert (unauthorized.value.status_code, forbidden.value.status_code) == (401, 403)
    assert forbidden.value.detail == "Forbidden resource"


def test_unknown_ticket_is_not_found_without_retry():
    script = Script(("GET", "/v1/tickets/nope", nest_error(404, "Ticket not found")))
    client, sleeps = scripted(script)

    with pytest.raises(ThenaNotFound) as caught:
        client.get_ticket("nope")

    assert caught.value.detail == "Ticket not found"
    assert sleeps == []


def test_a_non_json_502_is_unavailable_with_a_readable_message():
    html = httpx.Response(502, html="<html><body><h1>502 Bad Gateway</h1></body></html>")
    text = httpx.Response(502, text="upstream connect error   or disconnect")
    script = Script(("GET", "/v1/teams", html), ("GET", "/v1/teams", text))
    client, _ = scripted(script, max_retries=0)

    with pytest.raises(ThenaUnavailable) as from_html:
        client.teams()
    with pytest.raises(ThenaUnavailable) as from_text:
        client.teams()

    assert from_html.value.detail == "HTTP 502 Bad Gateway"
    assert from_text.value.detail == "upstream connect error or disconnect"
    assert "<" not in from_html.value.user_message
    assert from_html.value.status_code == 502


def test_an_undecodable_success_after_a_patch_leaves_the_outcome_unknown():
    script = Script(("PATCH", TICKET_PATH, httpx.Response(200, text="not json")))
    client, _ = scripted(script)

    with pytest.raises(ThenaUnavailable) as caught:
        client.update_ticket(TICKET["id"], {"title": "x"})

    assert caught.value.outcome_unknown


# --- Retries -----------------------------------------------------------------------------


def test_get_is_retried_on_server_errors_then_succeeds():
    script = Script(
        ("GET", TICKET_PATH, nest_error(500, "Internal server error")),
        ("GET", TICKET_PATH, httpx.Response(502, text="bad gateway")),
        ("GET", TICKET_PATH, nest_error(503, "Service Unavailable")),
        ("GET", TICKET_PATH, envelope(TICKET)),
    )
    client, sleeps = scripted(script)

    assert client.get_ticket(TICKET["id"]) == TICKET
    assert sleeps == [0.5, 1.0, 2.0]


def test_get_gives_up_after_max_retries():
    script = Script(*[("GET", "/v1/teams", nest_error(503, "Service Unavailable"))] * 3)
    client, sleeps = scripted(script, max_retries=2)

    with pytest.raises(ThenaUnavailable) as caught:
        client.teams()

    assert caught.value.status_code == 503
    assert not caught.value.outcome_unknown
    assert len(script.requests) == 3
    assert len(sleeps) == 2


@pytest.mark.parametrize("failure", [httpx.ConnectError, httpx.ConnectTimeout, httpx.ReadTimeout])
def test_get_is_retried_after_connection_failures_and_timeouts(failure):
    script = Script(("GET", "/v1/teams", failure), ("GET", "/v1/teams", envelope([])))
    client, sleeps = scripted(script)

    assert client.teams() == []
    assert sleeps == [0.5]


def test_backoff_delays_grow_and_are_bounded():
    script = Script(*[("GET", "/v1/teams", httpx.ConnectError)] * 8)
    client, sleeps = scripted(script, max_retries=7, backoff=1.0)

    with pytest.raises(ThenaUnavailable):
        client.teams()

    assert sleeps == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0]


def test_ping_does_not_retry():
    script = Script(("GET", "/v1/teams", nest_error(503, "Service Unavailable")))
    client, sleeps = scripted(script)

    with pytest.raises(ThenaUnavailable):
        client.ping()

    assert sleeps == []


def test_patch_is_sent_once_more_after_a_refused_connection():
    body = {"title": "New title"}
    script = Script(
        ("PATCH", TICKET_PATH, httpx.ConnectError),
        ("PATCH", TICKET_PATH, envelope({**TICKET, **body})),
    )
    client, sleeps = scripted(script)

    assert client.update_ticket(TICKET["id"], body)["title"] == "New title"
    assert [json.loads(r.content) for r in script.requests] == [body, body]
    assert sleeps == [0.5]


def test_patch_connect_timeout_is_a_timeout_with_a_known_outcome():
    script = Script(("PATCH", TICKET_PATH, httpx.ConnectTimeout))
    client, _ = scripted(script, max_retries=0)

    with pytest.raises(ThenaTimeout) as caught:
        client.update_ticket(TICKET["id"], {"title": "x"})

    assert not caught.value.outcome_unknown


def test_patch_is_retried_after_429_until_the_reset():
    script = Script(
        ("PATCH", TICKET_PATH, nest_error(429, "ThrottlerException", headers=reset_in(2))),
        ("PATCH", TICKET_PATH, envelope(TICKET)),
    )
    client, sleeps = scripted(script)

    assert client.update_ticket(TICKET["id"], {"title": "x"}) == TICKET
    assert len(sleeps) == 1
    assert 1.0 < sleeps[0] <= 2.0


def test_patch_is_not_retried_after_a_read_timeout():
    script = Script(("PATCH", TICKET_PATH, httpx.ReadTimeout))
    client, sleeps = scripted(script)

    with pytest.raises(ThenaTimeout) as caught:
        client.update_ticket(TICKET["id"], {"title": "x"})

    assert caught.value.outcome_unknown
    assert "reload the ticket" in caught.value.user_message
    assert len(script.requests) == 1
    assert sleeps == []


def test_patch_is_not_retried_after_a_server_error():
    script = Script(("PATCH", TICKET_PATH, nest_error(500, "Internal server error")))
    client, _ = scripted(script)

    with pytest.raises(ThenaUnavailable) as caught:
        client.update_ticket(TICKET["id"], {"title": "x"})

    assert caught.value.outcome_unknown
    assert caught.value.status_code == 500
    assert len(script.requests) == 1


@pytest.mark.parametrize("failure", [httpx.RemoteProtocolError, httpx.ReadError])
def test_patch_is_not_retried_after_a_dropped_connection(failure):
    script = Script(("PATCH", TICKET_PATH, failure))
    client, sleeps = scripted(script)

    with pytest.raises(ThenaUnavailable) as caught:
        client.update_ticket(TICKET["id"], {"title": "x"})

    assert caught.value.outcome_unknown
    assert len(script.requests) == 1
    assert sleeps == []


def test_429_without_a_reset_backs_off_exponentially():
    script = Script(
        ("GET", "/v1/teams", nest_error(429, "ThrottlerException")),
        ("GET", "/v1/teams", nest_error(429, "ThrottlerException")),
        ("GET", "/v1/teams", envelope([])),
    )
    client, sleeps = scripted(script)

    assert client.teams() == []
    assert sleeps == [0.5, 1.0]


def test_429_with_a_distant_reset_raises_with_the_retry_time():
    script = Script(
        ("GET", "/v1/teams", nest_error(429, "ThrottlerException", headers=reset_in(45)))
    )
    client, sleeps = scripted(script, max_rate_limit_wait=10)

    with pytest.raises(ThenaRateLimited) as caught:
        client.teams()

    error = caught.value
    assert error.status_code == 429
    assert 40 <= (error.retry_at - datetime.now(UTC)).total_seconds() <= 45
    assert 40 <= error.retry_after_seconds <= 45
    assert "UTC" in error.user_message
    assert sleeps == []


def test_429_after_max_retries_raises_rate_limited():
    script = Script(*[("GET", "/v1/teams", nest_error(429, "ThrottlerException"))] * 2)
    client, _ = scripted(script, max_retries=1)

    with pytest.raises(ThenaRateLimited) as caught:
        client.teams()

    assert caught.value.retry_at is not None


# --- The API key stays secret ------------------------------------------------------------


def test_the_api_key_never_appears_in_repr_errors_or_logs(caplog):
    for name in (None, "tickets.thena", "httpx"):
        caplog.set_level(logging.DEBUG, logger=name)
    echo = f"invalid key {KEY}"
    failures = [
        nest_error(400, [f"title must be a string, got {KEY}"]),
        nest_error(401, echo),
        nest_error(403, echo),
        nest_error(404, echo),
        nest_error(409, echo),
        httpx.Response(500, text=echo),
        httpx.Response(200, text=echo),
        httpx.ReadTimeout,
        httpx.ConnectError,
        httpx.RemoteProtocolError,
        nest_error(429, echo, headers=reset_in(3600)),  # last: it pauses all requests
    ]
    script = Script(*[("PATCH", TICKET_PATH, failure) for failure in failures])
    client, _ = scripted(script, max_retries=0)

    raised = []
    for _ in failures:
        with pytest.raises(ThenaError) as caught:
            client.update_ticket(TICKET["id"], {"title": "x"})
        raised.append(caught.value)

    assert {type(error) for error in raised} == {
        ThenaValidationError, ThenaAuthError, ThenaNotFound, ThenaError, ThenaRateLimited,
        ThenaUnavailable, ThenaTimeout,
    }  # fmt: skip
    assert KEY not in repr(client)
    for error in raised:
        assert KEY not in str(error)
        assert KEY not in repr(error)
        assert KEY not in repr(error.args)
        assert KEY not in error.detail
        assert KEY not in repr(vars(error))
    assert any(record.levelno == logging.DEBUG for record in caplog.records)
    for record in caplog.records:
        assert KEY not in record.getMessage()


# --- The process-wide client -------------------------------------------------------------


def test_get_client_uses_the_configured_base_url_without_calling_it(settings):
    settings.THENA_API_BASE_URL = "https://platform.thena.ai"
    settings.THENA_API_KEY = KEY
    settings.THENA_TIMEOUT_SECONDS = 5.0

    client = get_client()

    assert client.base_url == "https://platform.thena.ai"
    assert get_client() is client
    assert KEY not in repr(client)
    client.close()


def test_set_client_installs_and_resets_the_singleton(settings):
    settings.THENA_API_BASE_URL = "https://platform.thena.ai"
    mine = ThenaClient("https://elsewhere.test", KEY)

    set_client(mine)
    assert get_client() is mine
    set_client(None)
    assert get_client().base_url == "https://platform.thena.ai"
    mine.close()


# --- Against the sandbox -----------------------------------------------------------------


def a_ticket(sandbox) -> dict:
    return sandbox.tickets()[0]


def test_get_client_uses_the_in_process_sandbox_without_a_base_url(settings):
    from tickets.thena.sandbox import default_sandbox

    settings.THENA_API_BASE_URL = ""
    settings.THENA_API_KEY = ""

    client = get_client()
    teams = client.teams()

    assert client.base_url == SANDBOX_BASE_URL
    assert [team["id"] for team in teams] == [team["id"] for team in default_sandbox().teams()]
    assert default_sandbox().requests[-1].path == "/v1/teams"


def test_the_thena_fixture_is_the_process_wide_client(thena):
    assert get_client() is thena


def test_reads_return_the_documented_shapes(thena, sandbox):
    ticket = a_ticket(sandbox)
    team_id = ticket["teamId"]

    assert thena.get_ticket(ticket["id"])["updatedAt"] == ticket["updatedAt"]
    listed = thena.list_tickets(team_id=team_id, limit=5)
    assert len(listed) == 5
    assert all(team_id in (t["teamId"], t["subTeamId"]) for t in listed)
    for choices in (
        thena.statuses(team_id),
        thena.priorities(team_id),
        thena.types(team_id),
        thena.sentiments(team_id),
        thena.team_members(team_id),
        thena.forms(team_id),
    ):
        assert choices
        assert all(isinstance(item["id"], str) for item in choices)
    assert {team["id"] for team in thena.teams()} == {team["id"] for team in sandbox.teams()}
    assert thena.team(team_id)["id"] == team_id
    assert all(sub["parentTeamId"] == team_id for sub in thena.sub_teams(team_id))
    assert all(field["source"] == "ticket" for field in thena.custom_fields(team_id))
    accounts = thena.accounts(limit=3)
    assert len(accounts) == 3
    assert thena.account(accounts[0]["id"])["name"] == accounts[0]["name"]


def test_search_tickets_unwraps_the_result_page(thena, sandbox):
    team_id = a_ticket(sandbox)["teamId"]

    first = thena.search_tickets("*", team_id=team_id, per_page=10)
    second = thena.search_tickets("*", team_id=team_id, page=2, per_page=10)

    assert first.found > 10
    assert (len(first.items), first.page, second.page) == (10, 1, 2)
    assert all(item["teamId"] == team_id for item in first.items + second.items)
    assert not {i["id"] for i in first.items} & {i["id"] for i in second.items}
    assert sandbox.requests[-1].query["filter_by"] == f"teamId:={team_id}"


def test_search_accounts_returns_the_documents(thena):
    name = thena.accounts(limit=1)[0]["name"]

    found = thena.search_accounts(name.split()[0])

    assert name in [account["name"] for account in found]


def test_update_sends_exactly_the_body_given(thena, sandbox):
    ticket = a_ticket(sandbox)
    body = {"title": "Printer on fire", "isPrivate": True, "metadata": {"source": "test"}}

    updated = thena.update_ticket(ticket["id"], body)

    request = sandbox.requests[-1]
    assert (request.method, request.path, request.json) == (
        "PATCH",
        f"/v1/tickets/{ticket['id']}",
        body,
    )
    assert updated["title"] == "Printer on fire"
    assert updated["updatedAt"] > ticket["updatedAt"]
    assert sandbox.ticket(ticket["id"])["isPrivate"] is True


def test_an_invalid_value_is_a_validation_error_on_that_field(thena, sandbox):
    ticket = a_ticket(sandbox)

    with pytest.raises(ThenaValidationError) as caught:
        thena.update_ticket(ticket["id"], {"dueDate": "next tuesday", "title": "ok"})

    assert caught.value.status_code == 400
    assert list(caught.value.field_errors) == ["dueDate"]
    assert sandbox.ticket(ticket["id"])["title"] == ticket["title"]


def test_an_unknown_reference_is_a_validation_error_on_that_field(thena, sandbox):
    with pytest.raises(ThenaValidationError) as caught:
        thena.update_ticket(a_ticket(sandbox)["id"], {"statusId": "NOSUCHSTATUS"})

    assert caught.value.status_code == 404
    assert list(caught.value.field_errors) == ["statusId"]


def test_an_unknown_ticket_is_not_found(thena):
    with pytest.raises(ThenaNotFound):
        thena.get_ticket("NOSUCHTICKET")
    with pytest.raises(ThenaNotFound):
        thena.update_ticket("NOSUCHTICKET", {"title": "x"})


@pytest.mark.parametrize(
    "ticket_id", ["status", "Priority", "TYPE", "sentiment", "bulk", "search-tickets", ".", ".."]
)
def test_an_id_that_names_another_route_is_not_found_and_not_sent(thena, sandbox, ticket_id):
    # GET /v1/tickets/status is Thena's list of statuses; "." would be resolved away.
    with pytest.raises(ThenaNotFound):
        thena.get_ticket(ticket_id)
    with pytest.raises(ThenaNotFound):
        thena.update_ticket(ticket_id, {"title": "x"})
    assert sandbox.requests == []


def test_a_wrong_key_is_an_auth_error(sandbox):
    client = ThenaClient(SANDBOX_BASE_URL, "wrong-key", transport=sandbox_transport(sandbox))

    with pytest.raises(ThenaAuthError) as caught:
        client.ping()

    assert caught.value.status_code == 401
    assert len(sandbox.requests) == 1


def test_ping_proves_the_key_works(thena, sandbox):
    thena.ping()

    assert [r.path for r in sandbox.requests] == ["/v1/teams"]


def test_rate_limit_headers_from_the_sandbox_are_exposed(thena, sandbox):
    thena.teams()

    limit = thena.rate_limit
    assert limit.limit is not None and limit.remaining is not None
    assert limit.reset_at > datetime.now(UTC)
    assert limit.path == "/v1/teams"
    assert limit.org_id


def test_over_budget_waits_until_the_reset_then_succeeds():
    from tickets.thena.sandbox import DEMO_API_KEY, SandboxApp, SandboxConfig

    clock = PassingTime()
    sandbox = SandboxApp(SandboxConfig(rate_limit=2, rate_window_seconds=5), clock=clock.now)
    client = ThenaClient(
        SANDBOX_BASE_URL, DEMO_API_KEY, transport=sandbox_transport(sandbox), sleep=clock.sleep
    )

    for _ in range(3):
        assert client.teams()

    # The second answer says none are left: the third waits for the reset before sending.
    assert [r.status for r in sandbox.requests] == [200, 200, 200]
    assert len(clock.sleeps) == 1
    assert 0 < clock.sleeps[0] <= 5


def test_over_budget_with_a_distant_reset_raises_with_the_retry_time(sandbox, sleeps):
    from tickets.thena.sandbox import DEMO_API_KEY

    sandbox.config.rate_limit = 1
    client = ThenaClient(
        SANDBOX_BASE_URL, DEMO_API_KEY, transport=sandbox_transport(sandbox), sleep=sleeps.append
    )
    client.teams()

    with pytest.raises(ThenaRateLimited) as caught:
        client.teams()

    assert caught.value.retry_at == client.rate_limit.reset_at
    assert 50 <= caught.value.retry_after_seconds <= 60
    assert sleeps == []


def test_sandbox_server_errors_on_get_are_retried(thena, sandbox, sleeps):
    sandbox.fail_next(2, status=503)

    assert thena.teams()
    assert sleeps == [0.5, 1.0]


def test_a_dropped_connection_after_a_patch_leaves_the_outcome_unknown(thena, sandbox, sleeps):
    ticket = a_ticket(sandbox)
    sandbox.drop_next(applied=True)

    with pytest.raises(ThenaUnavailable) as caught:
        thena.update_ticket(ticket["id"], {"title": "Maybe saved"})

    assert caught.value.outcome_unknown
    assert [r.method for r in sandbox.requests] == ["PATCH"]
    assert sandbox.ticket(ticket["id"])["title"] == "Maybe saved"
    assert sleeps == []


def test_a_dropped_connection_on_get_is_retried(thena, sandbox, sleeps):
    sandbox.drop_next()

    assert thena.get_ticket(a_ticket(sandbox)["id"])
    assert len(sandbox.requests) == 2
    assert sleeps == [0.5]


# --- One time budget per HTTP request --------------------------------------------------


@pytest.fixture
def served_sandbox(sandbox):
    """The `sandbox` over real HTTP on a free port, for real socket timeouts."""
    import threading

    from tickets.thena.sandbox.server import make_server

    server = make_server(sandbox, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_budget_remaining_is_none_without_a_budget():
    assert budget_remaining() is None


def test_nested_budgets_keep_the_earlier_deadline_and_restore_the_outer_one():
    with request_budget(5):
        assert 4.5 < budget_remaining() <= 5
        with request_budget(60):
            assert budget_remaining() <= 5
        with request_budget(1):
            assert budget_remaining() <= 1
        with request_budget(None):
            assert 4.5 < budget_remaining() <= 5
        assert 4.5 < budget_remaining() <= 5
    assert budget_remaining() is None


def test_a_get_slower_than_the_budget_times_out_within_it(sandbox, served_sandbox):
    from tickets.thena.sandbox import DEMO_API_KEY

    sandbox.config.latency_ms = 3000
    client = ThenaClient(served_sandbox, DEMO_API_KEY, timeout=10)
    started = time.monotonic()
    with request_budget(0.6), pytest.raises(ThenaTimeout) as caught:
        client.teams()
    elapsed = time.monotonic() - started
    client.close()

    assert elapsed < 0.6 + 0.5
    assert not caught.value.outcome_unknown
    assert len(sandbox.requests) == 1  # no time was left for a retry


def test_retries_stop_at_the_deadline(sandbox):
    from tickets.thena.sandbox import DEMO_API_KEY

    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        time.sleep(seconds)

    sandbox.fail_next(6, status=503)
    client = ThenaClient(
        SANDBOX_BASE_URL,
        DEMO_API_KEY,
        transport=sandbox_transport(sandbox),
        max_retries=5,
        backoff=0.1,
        sleep=sleep,
    )
    budget = 0.5
    started = time.monotonic()
    with request_budget(budget), pytest.raises(ThenaUnavailable) as caught:
        client.teams()
    elapsed = time.monotonic() - started

    assert caught.value.status_code == 503  # the last answer, not a made-up timeout
    assert sleeps == [0.1, 0.2]  # 0.4 more would have passed the deadline
    assert sum(sleeps) <= budget and elapsed < budget
    assert len(sandbox.requests) == 3


def test_a_429_whose_reset_is_past_the_deadline_raises_without_waiting():
    script = Script(("GET", "/v1/teams", nest_error(429, "Too Many", headers=reset_in(5))))
    client, sleeps = scripted(script)

    with request_budget(2), pytest.raises(ThenaRateLimited) as caught:
        client.teams()

    assert sleeps == []
    assert 4 <= caught.value.retry_after_seconds <= 5


@pytest.mark.parametrize("method", ["GET", "PATCH"])
def test_a_spent_budget_sends_nothing(thena, sandbox, sleeps, method):
    ticket = a_ticket(sandbox)
    with request_budget(0.01), pytest.raises(ThenaTimeout) as caught:
        if method == "GET":
            thena.get_ticket(ticket["id"])
        else:
            thena.update_ticket(ticket["id"], {"title": "Never sent"})

    assert caught.value.detail == "the request's time budget for Thena is spent"
    assert not caught.value.outcome_unknown
    assert sandbox.requests == [] and sleeps == []
    assert sandbox.ticket(ticket["id"])["title"] == ticket["title"]


def test_each_attempt_gets_at_most_the_time_left():
    timeouts: list[dict] = []

    def answer(request: httpx.Request) -> httpx.Response:
        timeouts.append(request.extensions["timeout"])
        return envelope([])

    client = ThenaClient("https://thena.test", KEY, transport=httpx.MockTransport(answer))
    client.teams()
    with request_budget(2):
        client.teams()

    assert timeouts[0] == {"connect": 3.0, "read": 10.0, "write": 10.0, "pool": 10.0}
    assert all(0 < value <= 2 for value in timeouts[1].values())


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(200, json={"status": True}),
        httpx.Response(200, json={"status": True, "message": "Success"}),
        envelope(None),
        envelope([]),
        envelope("ok"),
        envelope({"title": "Printer on fire"}),
        envelope({**TICKET, "id": "ANOTHER-TICKET"}),
        httpx.Response(200, json=[]),
        httpx.Response(200, json="ok"),
        httpx.Response(201, content=b"null", headers={"content-type": "application/json"}),
        httpx.Response(200, json={"title": "no id"}),
    ],
    ids=[
        "no-data",
        "no-data-with-message",
        "data-null",
        "data-list",
        "data-string",
        "data-without-id",
        "data-another-id",
        "bare-list",
        "bare-string",
        "bare-null",
        "bare-object-without-id",
    ],
)
def test_an_odd_2xx_to_a_patch_leaves_the_outcome_unknown(answer):
    client, sleeps = scripted(Script(("PATCH", TICKET_PATH, answer)))

    with pytest.raises(ThenaUnavailable) as caught:
        client.update_ticket(TICKET["id"], {"title": "x"})

    assert caught.value.outcome_unknown
    assert caught.value.status_code == answer.status_code
    assert "may or may not have been saved" in caught.value.user_message
    assert caught.value.detail
    assert sleeps == []  # sent once: retrying a write of unknown fate could repeat it


@pytest.mark.parametrize("answer", [httpx.Response(204), httpx.Response(200, text="OK")])
def test_a_2xx_without_json_to_a_patch_leaves_the_outcome_unknown(answer):
    client, sleeps = scripted(Script(("PATCH", TICKET_PATH, answer)))

    with pytest.raises(ThenaUnavailable) as caught:
        client.update_ticket(TICKET["id"], {"title": "x"})

    assert caught.value.outcome_unknown
    assert caught.value.status_code == answer.status_code
    assert sleeps == []


def test_an_odd_2xx_to_a_patch_names_the_problem_and_reload_advice():
    script = Script(("PATCH", TICKET_PATH, httpx.Response(200, json={"status": True})))
    client, _ = scripted(script)

    with pytest.raises(ThenaUnavailable) as caught:
        client.update_ticket(TICKET["id"], {"title": "x"})

    assert caught.value.user_message == (
        "Thena answered the change in a way we did not expect, so it may or may not have "
        "been saved: reload the ticket to check before trying again."
    )
    assert caught.value.detail == "an envelope without data"


def test_a_bare_ticket_answer_to_a_patch_is_accepted():
    script = Script(("PATCH", TICKET_PATH, httpx.Response(200, json=TICKET)))
    client, _ = scripted(script)

    assert client.update_ticket(TICKET["id"], {"title": "x"}) == TICKET


def test_a_get_of_an_envelope_without_data_keeps_its_old_reading():
    body = {"status": True, "message": "Success"}
    script = Script(("GET", "/v1/teams/T1", httpx.Response(200, json=body)))
    client, _ = scripted(script)

    assert client.team("T1") == body


def test_the_middleware_sets_a_deadline_the_view_sees(settings, rf):
    from tickets.middleware import RequestBudgetMiddleware

    settings.THENA_REQUEST_BUDGET_SECONDS = 7
    seen: list[float | None] = []

    def view(request):
        seen.append(budget_remaining())
        return "response"

    assert RequestBudgetMiddleware(view)(rf.get("/")) == "response"
    assert 6 < seen[0] <= 7
    assert budget_remaining() is None


@pytest.mark.parametrize("seconds", [0, -1])
def test_the_middleware_sets_no_deadline_when_turned_off(settings, rf, seconds):
    from tickets.middleware import RequestBudgetMiddleware

    settings.THENA_REQUEST_BUDGET_SECONDS = seconds
    seen: list[float | None] = []
    RequestBudgetMiddleware(lambda request: seen.append(budget_remaining()))(rf.get("/"))

    assert seen == [None]


def test_the_middleware_is_installed(settings):
    assert "tickets.middleware.RequestBudgetMiddleware" in settings.MIDDLEWARE


@pytest.mark.parametrize("sandbox_config", [SandboxConfig(echo_write_only=True)], indirect=True)
def test_lone_surrogates_from_thena_become_replacement_characters(thena, sandbox):
    ticket = sandbox.tickets()[0]
    sandbox.put_ticket(ticket["id"], title="bad \ud800 title", metadata={"k\udfff": ["\ud83d"]})
    got = thena.get_ticket(ticket["id"])
    assert got["title"] == "bad \ufffd title"
    assert got["metadata"] == {"k\ufffd": ["\ufffd"]}
    got["title"].encode("utf-8")  # a page can show it
