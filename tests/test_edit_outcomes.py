"""What an edit's audit entry and the user are told when Thena misbehaves, end to end.

Every case goes through the real view with what Chromium submits (tests/browser.py), as a
full-page post and as an htmx swap, with one upstream fault on the PATCH. For each one:
the audit entry's current outcome is the true one, the user is told that and nothing
rosier, the sandbox holds what the outcome says, nothing is a 500, and a failure costs no
upstream GET beyond the re-read and (after an answer that proves nothing) one read-back.
Then `audit_reconcile` settles unknown and pending entries by the same evidence.
"""

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from tests.browser import form_data, replace, to_urlencoded
from tests.util import fail_patches
from tickets.audit import RequestMeta, audit_reconcile, record_attempt
from tickets.models import AuditEntry
from tickets.thena.client import SANDBOX_BASE_URL, ThenaClient, sandbox_transport, set_client
from tickets.thena.sandbox import DEMO_API_KEY

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("thena")]

TYPED = "Typed by the manager"  # the title the user enters
THEIRS = "Changed by someone else"
SENT = {"title": TYPED, "isPrivate": True}  # the PATCH body the form makes
HTMX = {"HX-Request": "true"}
FORM = "application/x-www-form-urlencoded"
META = RequestMeta(request_id="req-outcomes", client_ip="192.0.2.7", user_agent="pytest")


# -- faults ------------------------------------------------------------------------------


def _answer(body, *, applied):
    return lambda sandbox, ticket: sandbox.answer_next(body, applied=applied, only="PATCH")


def _fail(status, *, applied=False):
    return lambda sandbox, ticket: sandbox.fail_next(1, status, applied=applied, only="PATCH")


def _drop(*, applied):
    return lambda sandbox, ticket: sandbox.drop_next(applied=applied, only="PATCH")


def _patches_fail(failure):
    return lambda sandbox, ticket: fail_patches(sandbox, failure)


def _other_ticket(sandbox, ticket):
    other = next(t for t in sandbox.tickets() if t["id"] != ticket["id"])
    sandbox.answer_next({"status": True, "data": other}, applied=False, only="PATCH")


def _stale_ticket(sandbox, ticket):
    """The ticket as stored before the change, as if Thena echoed it without applying."""
    before = sandbox.ticket(ticket["id"])
    sandbox.answer_next({"status": True, "data": before}, applied=False, only="PATCH")


def _field_error(sandbox, ticket):
    body = {
        "statusCode": 400,
        "message": ["title must be shorter than or equal to 10 characters"],
        "error": "Bad Request",
    }
    sandbox.answer_next(body, status=400, applied=False, only="PATCH")


def _no_sleep(seconds: float) -> None:
    pass


READ_RETRIES = 3  # ThenaClient's max_retries: a failing read-back is 1 + 3 GETs


def _reads_fail_after_patch(patch_fault):
    """`patch_fault` for the PATCH, then every GET fails with a 500 (retries included),
    so the read-back cannot tell. Queued when the PATCH arrives: the re-read before it
    must pass."""

    def install(sandbox, ticket):
        patch_fault(sandbox, ticket)

        def app(environ, start_response):
            if environ["REQUEST_METHOD"] == "PATCH":
                sandbox.fail_next(READ_RETRIES + 1, 500, only="GET")
            return sandbox(environ, start_response)

        transport = sandbox_transport(app)
        set_client(
            ThenaClient(SANDBOX_BASE_URL, DEMO_API_KEY, transport=transport, sleep=_no_sleep)
        )

    return install


@dataclass(frozen=True)
class Case:
    id: str
    install: Callable  # (sandbox, ticket) -> None, before the POST
    outcome: str  # the audit entry's true current outcome
    applied: bool  # whether Thena really holds the change afterwards
    reads_after_patch: int  # upstream GETs after the PATCH: the read-back and its retries
    says: tuple[str, ...] = ()  # what the re-rendered page must tell (failures only)


NOT_SAVED = ("Nothing was saved.",)
ODD_NOT_SAVED = ("Nothing was saved.", "did not expect", "shows it unchanged")
UNKNOWN = ("Thena did not confirm this save", "“unknown”", "Check the ticket")

CASES = [
    # A 2xx whose body does not show the change: the read-back decides.
    Case("envelope-without-data", _answer({"status": True}, applied=False), "failed", False, 1,
         ODD_NOT_SAVED),
    Case("envelope-without-data-applied", _answer({"status": True}, applied=True), "succeeded",
         True, 1),
    Case("data-null-applied", _answer({"status": True, "data": None}, applied=True), "succeeded",
         True, 1),
    Case("data-empty-list-applied", _answer({"status": True, "data": []}, applied=True),
         "succeeded", True, 1),
    Case("data-null", _answer({"status": True, "data": None}, applied=False), "failed", False, 1,
         ODD_NOT_SAVED),
    Case("data-another-ticket", _other_ticket, "failed", False, 1, ODD_NOT_SAVED),
    Case("data-without-the-sent-values", _stale_ticket, "failed", False, 1, ODD_NOT_SAVED),
    Case("non-json-applied", _answer(b"<html>OK</html>", applied=True), "succeeded", True, 1),
    # 5xx: maybe applied; the read-back decides.
    Case("500", _fail(500), "failed", False, 1, ODD_NOT_SAVED),
    Case("500-applied", _fail(500, applied=True), "succeeded", True, 1),
    Case("502-applied", _fail(502, applied=True), "succeeded", True, 1),
    Case("503-applied", _fail(503, applied=True), "succeeded", True, 1),
    # A gateway that gave up waiting says nothing of whether Thena finished the request:
    # an unchanged read-back does not prove the change will not still arrive.
    Case("504", _fail(504), "unknown", False, 1, UNKNOWN),
    # No answer at all: an unchanged read-back proves nothing (it may still arrive).
    Case("dropped", _drop(applied=False), "unknown", False, 1, UNKNOWN),
    Case("dropped-applied", _drop(applied=True), "succeeded", True, 1),
    Case("timeout", _patches_fail("timeout"), "unknown", False, 1, UNKNOWN),
    Case("timeout-after-apply", _patches_fail("timeout-after-apply"), "succeeded", True, 1),
    # Surely not applied: no read-back.
    Case("refused", _patches_fail("refused"), "failed", False, 0,
         ("Nothing was saved.", "not reachable")),
    Case("400-on-a-field", _field_error, "failed", False, 0, ("Thena says", "title must be")),
    Case("401", _fail(401), "failed", False, 0, ("API key",)),
    Case("403", _fail(403), "failed", False, 0, ("administrator",)),
    Case("404", _fail(404), "failed", False, 0, ("could not find",)),
    Case("409", _fail(409), "failed", False, 0, NOT_SAVED),
    Case("422", _fail(422), "failed", False, 0, ("Thena did not accept",)),
    Case("429", _patches_fail(429), "failed", False, 0, ("too many requests",)),
    # The read-back fails too: nobody can tell yet.
    Case("odd-answer-applied-read-back-fails",
         _reads_fail_after_patch(_answer({"status": True}, applied=True)), "unknown", True,
         READ_RETRIES + 1, (*UNKNOWN, "could not be read back to check")),
    Case("500-read-back-fails", _reads_fail_after_patch(_fail(500)), "unknown", False,
         READ_RETRIES + 1, (*UNKNOWN, "could not be read back to check")),
]  # fmt: skip


# -- helpers -----------------------------------------------------------------------------


def _typed_form(client, url) -> str:
    """The edit form as Chromium submits it, with a new title and "Private" ticked."""
    data = form_data(client.get(url).content.decode())
    data = replace(data, "title", TYPED)
    return to_urlencoded(replace(data, "isPrivate", "on"))


def _gets(sandbox) -> int:
    return sum(1 for r in sandbox.requests if r.method == "GET")


def _entry() -> AuditEntry:
    return AuditEntry.objects.with_current_outcome().get(action="ticket.update")


def _holds_the_change(sandbox, ticket) -> bool:
    now = sandbox.ticket(ticket["id"])
    if (now["title"], now["isPrivate"]) == (TYPED, True):
        return True
    assert now == ticket, "a ticket without the change must be untouched"
    return False


# -- every fault, full page and htmx -----------------------------------------------------


@pytest.mark.parametrize("htmx", [False, True], ids=["page", "htmx"])
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_edit_outcome_is_the_true_one_and_the_user_is_told(
    manager_client, sandbox, ticket, url, case, htmx
):
    body = _typed_form(manager_client, url)
    case.install(sandbox, ticket)
    gets = _gets(sandbox)

    response = manager_client.post(url, body, content_type=FORM, headers=HTMX if htmx else {})

    # (d) never a 500
    assert response.status_code in (200, 302)
    # (a) the recorded outcome, settled once
    entry = _entry()
    assert (entry.outcome, entry.current_outcome) == ("pending", case.outcome)
    assert entry.request_body == SENT
    assert entry.outcomes.count() == 1
    # (c) Thena holds what the outcome says
    assert _holds_the_change(sandbox, ticket) is case.applied
    # (e) the re-read, then at most the read-back: nothing else upstream
    assert _gets(sandbox) - gets == 1 + case.reads_after_patch

    # (b) what the user is told
    if case.outcome == "succeeded":
        if htmx:
            assert response.status_code == 200
            page = response.content.decode()
        else:
            assert (response.status_code, response["Location"]) == (302, url)
            page = manager_client.get(url).content.decode()
        assert "Saved 2 change(s) to Thena." in page
        assert f'value="{TYPED}"' in page
        return
    page = response.content.decode()
    assert response.status_code == 200
    assert "Saved" not in page
    assert 'class="error-summary"' in page
    assert f'value="{TYPED}"' in page, "the user's input is kept"
    for words in case.says:
        assert words in page
    if case.outcome == "failed":
        assert "did not confirm" not in page
    if case.id == "400-on-a-field":  # next to the field it is about
        assert (
            '<p class="field-error" id="id_title_error">Thena says: title must be shorter' in page
        )
    if htmx:
        assert 'id="ticket-main"' in page
        assert "<html" not in page
        assert "ticket-updated" in response["HX-Trigger"]


@pytest.mark.parametrize("htmx", [False, True], ids=["page", "htmx"])
def test_read_back_showing_someone_elses_change_is_unknown(
    manager_client, sandbox, ticket, url, htmx
):
    """An odd answer, and by the read-back the ticket holds another change: whether ours
    applied first cannot be told."""
    body = _typed_form(manager_client, url)
    sandbox.answer_next({"status": True}, applied=False, only="PATCH")

    def app(environ, start_response):
        answer = sandbox(environ, start_response)
        if environ["REQUEST_METHOD"] == "PATCH":
            sandbox.touch_ticket(ticket["id"], title=THEIRS)
        return answer

    set_client(ThenaClient(SANDBOX_BASE_URL, DEMO_API_KEY, transport=sandbox_transport(app)))
    gets = _gets(sandbox)

    response = manager_client.post(url, body, content_type=FORM, headers=HTMX if htmx else {})

    assert response.status_code == 200
    assert _entry().current_outcome == "unknown"
    assert "not to the values sent" in _entry().outcomes.get().message
    assert sandbox.ticket(ticket["id"])["title"] == THEIRS
    assert _gets(sandbox) - gets == 2  # the re-read and one read-back
    page = response.content.decode()
    assert "Saved" not in page
    assert f'value="{TYPED}"' in page
    for words in UNKNOWN:
        assert words in page


# -- reconciliation ----------------------------------------------------------------------


def _meanwhile(sandbox, ticket, what: str) -> None:
    """What happened to the ticket in Thena after the edit was sent."""
    if what == "landed":  # the lost PATCH arrived after all
        sandbox.touch_ticket(ticket["id"], **SENT)
    elif what == "changed-again":  # someone else changed it to another value
        sandbox.touch_ticket(ticket["id"], title=THEIRS)


@pytest.mark.parametrize(
    ("meanwhile", "outcome", "rows"),
    [("landed", "succeeded", 2), ("untouched", "failed", 2), ("changed-again", "unknown", 1)],
)
def test_reconcile_settles_an_unknown_edit_by_evidence(
    manager_client, sandbox, ticket, url, meanwhile, outcome, rows
):
    body = _typed_form(manager_client, url)
    sandbox.drop_next(only="PATCH")
    manager_client.post(url, body, content_type=FORM)
    assert _entry().current_outcome == "unknown"
    _meanwhile(sandbox, ticket, meanwhile)

    counts = audit_reconcile(min_age_seconds=0)

    entry = _entry()
    assert entry.current_outcome == outcome
    assert counts[outcome] == 1
    assert entry.outcomes.count() == rows  # an entry still unknown gets no new row
    latest = entry.outcomes.order_by("-id").first()
    assert latest.message  # the reason is on record
    if outcome != "unknown":
        assert latest.message.startswith("Reconciled:")
        assert latest.upstream_updated_at == sandbox.ticket(ticket["id"])["updatedAt"]


def test_reconcile_leaves_young_entries_alone(manager_client, sandbox, ticket, url):
    body = _typed_form(manager_client, url)
    sandbox.drop_next(only="PATCH")
    manager_client.post(url, body, content_type=FORM)
    sandbox.touch_ticket(ticket["id"], **SENT)

    audit_reconcile()  # default: entries under a minute old may be in flight

    assert _entry().current_outcome == "unknown"


@pytest.mark.parametrize(
    ("meanwhile", "outcome"),
    [("landed", "succeeded"), ("untouched", "failed"), ("changed-again", "unknown")],
)
def test_reconcile_settles_a_pending_edit_by_the_same_rules(
    manager, sandbox, ticket, meanwhile, outcome
):
    """The worker recorded the intent and died before recording any outcome."""
    record_attempt(
        action="ticket.update",
        actor=manager,
        ticket=ticket,
        changes={"title": {"before": ticket["title"], "after": TYPED}},
        request_body={"title": TYPED},
        meta=META,
        base_updated_at=ticket["updatedAt"],
    )
    _meanwhile(sandbox, ticket, meanwhile)

    counts = audit_reconcile(min_age_seconds=0)

    entry = _entry()
    assert entry.current_outcome == outcome
    assert counts[outcome] == 1
    settled = entry.outcomes.get()  # pending, so the outcome is recorded even if unknown
    assert settled.message.startswith("Reconciled:")


def test_reconcile_settles_an_edit_whose_worker_died_after_sending(
    manager_client, sandbox, thena, ticket, url, monkeypatch
):
    """Through the service path: the PATCH reached Thena, then the process died."""
    body = _typed_form(manager_client, url)
    send = thena.update_ticket

    def send_and_die(ticket_id, patch):
        send(ticket_id, patch)
        raise SystemExit("worker killed")

    monkeypatch.setattr(thena, "update_ticket", send_and_die)
    with pytest.raises(SystemExit):
        manager_client.post(url, body, content_type=FORM)
    monkeypatch.undo()
    entry = _entry()
    assert entry.current_outcome == "pending"
    assert entry.base_updated_at == ticket["updatedAt"]

    assert audit_reconcile(min_age_seconds=0)["succeeded"] == 1
    assert _entry().current_outcome == "succeeded"
