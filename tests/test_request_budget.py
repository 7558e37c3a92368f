"""One deadline per request: a slow Thena ends in a clear answer within the request's
budget (THENA_REQUEST_BUDGET_SECONDS), never in a hung worker, and the audit log tells
exactly what was sent.

The sandbox is served over real HTTP so the timeouts are real socket timeouts; the client
keeps its default timeout (10 s), so only the budget can cut the calls short."""

import contextlib
import time

import pytest

from tests.browser import form_data, replace, to_urlencoded
from tests.util import sandbox_over_http
from tickets.models import AuditEntry
from tickets.thena.sandbox import SandboxApp, SandboxConfig

pytestmark = pytest.mark.django_db

BUDGET = 1.0
SLACK = 1.0  # rendering the answer, the test client, a loaded machine
FORM = "application/x-www-form-urlencoded"
TYPED = "Typed while Thena was slow"


@pytest.fixture
def slow_thena(settings):
    """A sandbox 3 s slow per request, over HTTP, with the default client timeout, and a
    1 s budget per request."""
    settings.THENA_REQUEST_BUDGET_SECONDS = BUDGET
    with sandbox_over_http(SandboxConfig(latency_ms=3000)) as app:
        yield app


@contextlib.contextmanager
def latency(app: SandboxApp, milliseconds: float):
    saved = app.config.latency_ms
    app.config.latency_ms = milliseconds
    try:
        yield
    finally:
        app.config.latency_ms = saved


@pytest.fixture
def ticket(slow_thena) -> dict:
    return next(t for t in slow_thena.tickets() if t["teamIdentifier"] == "SUP")


@pytest.fixture
def url(ticket) -> str:
    return f"/tickets/{ticket['id']}/"


@pytest.fixture
def typed(manager_client, slow_thena, url) -> str:
    """The edit form as a browser submits it with a new title, loaded while Thena was
    still fast (which also warms the cached choices, as any earlier page view would)."""
    with latency(slow_thena, 0):
        response = manager_client.get(url)
    assert response.status_code == 200
    slow_thena.requests.clear()
    return to_urlencoded(replace(form_data(response.content.decode()), "title", TYPED))


def _timed(call):
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def _requests(app: SandboxApp, method: str):
    return [r for r in app.requests if r.method == method]


def _entry(ticket) -> AuditEntry:
    (entry,) = AuditEntry.objects.filter(ticket_id=ticket["id"]).with_current_outcome()
    return entry


def test_save_when_thena_is_slower_than_the_budget_answers_in_time_and_sends_nothing(
    manager_client, slow_thena, url, ticket, typed
):
    response, elapsed = _timed(lambda: manager_client.post(url, typed, content_type=FORM))

    assert elapsed < BUDGET + SLACK
    assert response.status_code == 200
    page = response.content.decode()
    assert dict(form_data(page))["title"] == TYPED  # the user's input is kept
    assert "Nothing was saved. Thena did not answer in time." in page
    # The re-read before the PATCH was cut by the deadline: nothing was sent...
    assert [r.path for r in _requests(slow_thena, "GET")] == [f"/v1/tickets/{ticket['id']}"]
    assert _requests(slow_thena, "PATCH") == []
    assert slow_thena.ticket(ticket["id"])["title"] == ticket["title"]
    # ...and the audit log says so.
    entry = _entry(ticket)
    assert entry.current_outcome == "failed"
    assert entry.message.startswith("Nothing was sent: could not re-read the ticket first")
    assert entry.request_body == {}
    assert entry.changes == {"title": {"before": ticket["title"], "after": TYPED}}


def test_save_whose_patch_is_cut_by_the_deadline_is_unknown_and_then_lands(
    manager_client, slow_thena, url, ticket, typed
):
    """0.7 s per request, 1 s budget: the re-read answers, the PATCH leaves with ~0.3 s
    left and is cut by the deadline while Thena is still working on it."""
    with latency(slow_thena, 700):
        response, elapsed = _timed(lambda: manager_client.post(url, typed, content_type=FORM))

        assert elapsed < BUDGET + SLACK
        assert response.status_code == 200
        page = response.content.decode()
        assert dict(form_data(page))["title"] == TYPED
        patches = _requests(slow_thena, "PATCH")
        entry = _entry(ticket)
        # The sandbox's record tells whether the PATCH left; the outcome must agree.
        assert patches, "expected the PATCH to leave before the deadline (re-read ~0.7 s)"
        assert [p.json for p in patches] == [{"title": TYPED}]
        assert entry.current_outcome == "unknown"
        assert entry.request_body == {"title": TYPED}
        assert "Thena did not confirm this save" in page
        assert "could not be read back" in page  # the budget was spent on the PATCH
        assert "“unknown”" in page
        assert "Nothing was saved" not in page

        # "unknown" was the truth, not "failed": Thena finishes the PATCH after all.
        deadline = time.monotonic() + 3
        while patches[0].status is None and time.monotonic() < deadline:
            time.sleep(0.02)
    assert patches[0].status == 200
    assert slow_thena.ticket(ticket["id"])["title"] == TYPED


def test_ticket_page_when_thena_is_slower_than_the_budget_is_a_clear_502(
    manager_client, slow_thena, url
):
    response, elapsed = _timed(lambda: manager_client.get(url))

    assert elapsed < BUDGET + SLACK
    assert response.status_code == 502
    assert "Thena did not answer in time." in response.content.decode()
    assert len(_requests(slow_thena, "GET")) == 1  # no retry past the deadline
