"""A cold ticket page: the lists of choices are asked for at the same time, and a list
Thena does not send leaves the form working with what is known (services.team_choices_load).

Timing targets live in bench/cold_page.py; here concurrency is checked by how many
requests the sandbox serves at once."""

import threading
import time

import httpx
import pytest

from tests.browser import form_data, replace, to_urlencoded
from tests.util import sandbox_over_http, served_over_http
from tickets import services
from tickets.thena import client as thena_client
from tickets.thena.client import SANDBOX_BASE_URL, ThenaClient, sandbox_transport, set_client
from tickets.thena.sandbox import DEMO_API_KEY, SandboxApp, SandboxConfig

pytestmark = pytest.mark.django_db

FORM = "application/x-www-form-urlencoded"
NOTE = "Thena did not send the list of"
TITLE = "Saved while a list was missing"
# The path each list comes from, its name on the page, and the input it offers choices for.
LISTS = [
    ("/v1/tickets/status", "statuses", "statusId"),
    ("/v1/tickets/priority", "priorities", "priorityId"),
    ("/v1/tickets/type", "types", "typeId"),
    ("/v1/tickets/sentiment", "sentiments", "sentimentId"),
    ("/members", "assignees", "assignedAgentId"),
    ("/v1/accounts", "accounts", "accountId"),
    ("/sub-teams", "sub-teams", "subTeamId"),
    ("/v1/forms", "forms", "formId"),
    ("/v1/custom-field", "custom fields", None),
]


def _ticket(app: SandboxApp) -> dict:
    """A support ticket with every id field set, so each has a current value to keep."""
    ids = [field for _, _, field in LISTS if field]
    return next(
        t for t in app.tickets() if t["teamIdentifier"] == "SUP" and all(t.get(f) for f in ids)
    )


def _url(ticket: dict) -> str:
    return f"/tickets/{ticket['id']}/"


class InFlight:
    """The sandbox as a WSGI app, counting the requests it serves at the same time."""

    def __init__(self, app: SandboxApp):
        self.app, self.now, self.most = app, 0, 0
        self._lock = threading.Lock()

    def __call__(self, environ, start_response):
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            return self.app(environ, start_response)  # the latency is slept in here
        finally:
            with self._lock:
                self.now -= 1


def counted_over_http(config: SandboxConfig):
    """As tests.util.sandbox_over_http, with the requests in flight counted."""
    return served_over_http(InFlight(SandboxApp(config)))


class FailPath(httpx.BaseTransport):
    """The in-process sandbox, except that GETs of a path ending in one of `suffixes`
    answer `status` while `on`."""

    def __init__(self, sandbox: SandboxApp, *suffixes: str, status: int = 500):
        self.inner, self.suffixes, self.status = sandbox_transport(sandbox), suffixes, status
        self.on = True

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.on and request.method == "GET" and request.url.path.endswith(self.suffixes):
            body = {"statusCode": self.status, "message": "nope", "error": "Error"}
            return httpx.Response(self.status, json=body, request=request)
        return self.inner.handle_request(request)


class IgnoresPage(httpx.BaseTransport):
    """The in-process sandbox, behind a server that drops the `page` parameter: every
    page is the first one."""

    def __init__(self, sandbox: SandboxApp):
        self.inner = sandbox_transport(sandbox)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_remove_param("page")
        return self.inner.handle_request(request)


def _install(transport: httpx.BaseTransport) -> ThenaClient:
    client = ThenaClient(SANDBOX_BASE_URL, DEMO_API_KEY, transport=transport, sleep=lambda s: 0)
    set_client(client)  # conftest puts the default back after the test
    return client


def test_a_cold_page_asks_for_its_lists_at_the_same_time(manager_client):
    with counted_over_http(SandboxConfig(latency_ms=150)) as counter:
        ticket = _ticket(counter.app)
        response = manager_client.get(_url(ticket))

    assert response.status_code == 200
    assert response.context["edit"].choices.missing == ()
    assert NOTE not in response.content.decode()
    lookups = [r for r in counter.app.requests if r.path != f"/v1/tickets/{ticket['id']}"]
    assert len(lookups) >= len(LISTS)
    # One after the other, never more than one would be in flight.
    assert counter.most >= len(LISTS) // 2


@pytest.mark.parametrize(("path", "name", "field"), LISTS)
def test_a_list_thena_does_not_send_leaves_a_working_form(
    manager_client, sandbox, path, name, field
):
    _install(FailPath(sandbox, path))
    ticket = _ticket(sandbox)

    page = manager_client.get(_url(ticket))

    assert page.status_code == 200
    html = page.content.decode()
    assert f"{NOTE} {name};" in html
    assert page.context["edit"].choices.missing == (name,)
    shown = dict(form_data(html))
    assert shown["title"] == ticket["title"]
    if field:
        assert shown[field] == ticket[field]  # the current value stays selected
    else:  # no definitions: no typed custom inputs
        assert not [n for n in shown if n.startswith("cf__")]

    sandbox.requests.clear()
    data = to_urlencoded(replace(form_data(html), "title", TITLE))
    saved = manager_client.post(_url(ticket), data, content_type=FORM)

    assert saved.status_code == 302
    assert [r.json for r in sandbox.requests if r.method == "PATCH"] == [{"title": TITLE}]
    # The submit kept the choices its page showed: no list was asked for again.
    gets = {r.path for r in sandbox.requests if r.method == "GET"}
    assert gets == {f"/v1/tickets/{ticket['id']}"}


def test_a_reload_asks_again_for_the_list_that_failed(manager_client, sandbox):
    failing = FailPath(sandbox, "/v1/tickets/status")
    _install(failing)
    url = _url(_ticket(sandbox))
    assert f"{NOTE} statuses;" in manager_client.get(url).content.decode()

    failing.on = False
    again = manager_client.get(url)

    assert NOTE not in again.content.decode()
    assert again.context["edit"].choices.missing == ()
    assert len(again.context["edit"].choices.statuses) > 1


def test_every_list_failing_still_shows_the_ticket_and_its_form(manager_client, sandbox):
    _install(FailPath(sandbox, *(path for path, _, _ in LISTS)))
    ticket = _ticket(sandbox)

    page = manager_client.get(_url(ticket))

    assert {name for _, name, _ in LISTS} == set(services.LIST_NAMES.values())  # all here
    assert page.status_code == 200
    assert set(page.context["edit"].choices.missing) == {name for _, name, _ in LISTS}
    assert f"{NOTE} statuses, priorities, types, " in page.content.decode()
    assert " forms and custom fields; " in page.content.decode()
    assert dict(form_data(page.content.decode()))["statusId"] == ticket["statusId"]


def test_a_missing_sentiment_list_is_no_failure(manager_client, sandbox):
    # The sentiment path is a guess (thena-api.md §4.4, §10): a 404 means "no list".
    _install(FailPath(sandbox, "/v1/tickets/sentiment", status=404))
    page = manager_client.get(_url(_ticket(sandbox)))

    assert page.status_code == 200
    assert page.context["edit"].choices.missing == ()
    assert page.context["edit"].choices.sentiments == []
    assert NOTE not in page.content.decode()


def test_paged_lists_come_whole_and_once(sandbox, monkeypatch):
    client = _install(sandbox_transport(sandbox))
    team_id = _ticket(sandbox)["teamId"]
    whole = client.forms(team_id), client.custom_fields(team_id)  # one page each
    assert min(len(items) for items in whole) > 2

    monkeypatch.setattr(thena_client, "_LOOKUP_PAGE", 2)
    sandbox.requests.clear()

    assert (client.forms(team_id), client.custom_fields(team_id)) == whole
    assert len(sandbox.requests) > 2 * 2  # paged indeed


def test_a_server_that_ignores_page_gives_each_item_once_and_paging_stops(sandbox, monkeypatch):
    monkeypatch.setattr(thena_client, "_LOOKUP_PAGE", 2)
    client = _install(IgnoresPage(sandbox))
    team_id = _ticket(sandbox)["teamId"]

    forms = client.forms(team_id)
    fields = client.custom_fields(team_id)

    assert len(forms) == len({f["id"] for f in forms}) == 2
    assert len(fields) == len({f["uid"] for f in fields}) == 2
    # The first page, then the same again with nothing new: the end.
    for path in ("/v1/forms", "/v1/custom-field"):
        assert len([r for r in sandbox.requests if r.path == path]) == 2


def test_the_request_budget_bounds_lookups_in_worker_threads(manager_client, settings):
    """0.7 s per request, 1 s budget: the ticket is read, and the lists, asked for from
    worker threads with 0.3 s left, are cut at the deadline rather than waiting for the
    client's 10 s timeout."""
    settings.THENA_REQUEST_BUDGET_SECONDS = 1.0
    with sandbox_over_http(SandboxConfig(latency_ms=700)) as app:
        ticket = _ticket(app)
        started = time.monotonic()
        page = manager_client.get(_url(ticket))
        elapsed = time.monotonic() - started
        sent = [r.path for r in app.requests]

    assert elapsed < 1.0 + 1.0  # slack: rendering, a loaded machine
    assert page.status_code == 200
    assert set(page.context["edit"].choices.missing) == {name for _, name, _ in LISTS}
    assert f"{NOTE} statuses, priorities, types, " in page.content.decode()
    assert " forms and custom fields; " in page.content.decode()
    assert NOTE in page.content.decode()
    assert len(sent) == len(set(sent))  # no list was asked for twice: no retry past the deadline


def test_workers_asking_at_once_fetch_a_teams_lists_once():
    """Three workers opening cold pages of one team at the same moment: one asks Thena,
    the others wait for its answer in the shared cache."""
    with counted_over_http(SandboxConfig(latency_ms=150)) as counter:
        team_id = _ticket(counter.app)["teamId"]
        got, start = [], threading.Barrier(3)

        def worker():
            start.wait()
            got.append(services.team_choices_load(team_id))

        threads = [threading.Thread(target=worker) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert len(got) == 3 and got[0] == got[1] == got[2] and not got[0].missing
    statuses = [r for r in counter.app.requests if r.path == "/v1/tickets/status"]
    assert len(statuses) == 1


def test_a_waiter_fetches_for_itself_when_the_filler_never_answers(monkeypatch):
    """A worker that died mid-fetch leaves its claim behind: the others wait FILL_WAIT at
    most, then ask Thena themselves."""
    from django.core.cache import cache

    monkeypatch.setattr(services, "FILL_WAIT", 0.2)
    cache.add("thena:teams:filling", True, 60)  # a claim nobody will release
    started = time.monotonic()
    teams = services.team_list()
    assert teams and 0.2 <= time.monotonic() - started < 2


def test_the_list_reads_every_teams_lists_at_once_and_asks_again_for_an_incomplete_set(
    sandbox,
):
    """services.team_choices_load_many, as the ticket list uses it: complete sets come
    from the cache (one read) and cost Thena nothing; a set with a list missing is
    fetched again, and once whole, kept."""

    failing = FailPath(sandbox, "/v1/tickets/status")
    _install(failing)
    teams = sorted({t["teamId"] for t in sandbox.tickets()})
    first, second = teams[:2]
    assert services.team_choices_load(first).missing == ("statuses",)
    failing.on = False
    assert services.team_choices_load(second).missing == ()

    sandbox.requests.clear()
    got = services.team_choices_load_many([first, second])

    assert [choices.missing for choices in got] == [(), ()]
    assert got[1] == services.team_choices_load(second)
    asked = {r.path for r in sandbox.requests}
    assert "/v1/tickets/status" in asked and not any(second in path for path in asked)
    sandbox.requests.clear()
    assert services.team_choices_load_many([first, second]) == got
    assert sandbox.requests == []
