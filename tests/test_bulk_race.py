"""No lost update between a bulk edit and single saves: a batch setting a field runs while
managers save another value of that field on the same tickets, over real HTTP to the live
server, against a sandbox with 20 ms of latency per request. For each ticket exactly one
of the two changes it; the other sees that change: the batch skips the ticket as changed
since its preview, or the save answers with the conflict page. The audit log says which,
and its chain verifies.
"""

import threading
import time
from collections import Counter

import pytest
from django.db import connection

from tests.browser import form_data, replace, to_urlencoded
from tests.util import logged_in, sandbox_over_http
from tickets import bulk
from tickets.audit import RequestMeta, verify_chain
from tickets.models import AuditEntry
from tickets.thena.client import get_client
from tickets.thena.sandbox import SandboxConfig

pytestmark = pytest.mark.django_db(transaction=True)

TICKETS = 4
DELAYS = [0.15, 0.1, 0.05, 0]  # seconds after the start, of each ticket's save
SAVED_ONE = "Saved 1 change(s) to Thena."
CONFLICT = "Someone changed this ticket"
SKIPPED = "Not sent: changed in Thena since the preview: Status"
META = RequestMeta(request_id="req-race", client_ip="192.0.2.9", user_agent="pytest")


@pytest.fixture
def world():
    with sandbox_over_http(SandboxConfig(latency_ms=20)) as app:
        yield app


def _status_ids(team_id: str) -> dict[str, str]:
    return {s["name"]: s["id"] for s in get_client().statuses(team_id)}


def test_a_batch_and_single_saves_of_one_field_never_both_win(
    world, live_server, manager, settings
):
    settings.BULK_CHUNK_SIZE = 1  # ticket by ticket: the run and the saves interleave
    team = next(t for t in world.teams() if t["identifier"] == "SUP")
    status = _status_ids(team["id"])
    resolved, in_progress = status["Resolved"], status["In progress"]
    tickets = [
        t
        for t in world.tickets()
        if t["teamId"] == team["id"]
        and not t["isPrivate"]
        and t["statusId"] not in (resolved, in_progress)
    ][:TICKETS]
    assert len(tickets) == TICKETS
    ids = [t["id"] for t in tickets]
    batch = bulk.batch_preview_create(
        user=manager,
        selection=bulk.Selection(team_id=team["id"], ticket_ids=tuple(ids)),
        values={"statusId": resolved},
        value_labels={"statusId": "Resolved"},
        reason="",
        meta=META,
    )
    bulk.batch_confirm(user=manager, batch=batch)
    browsers = [logged_in(live_server.url, manager.username) for _ in ids]
    bodies = []
    for browser, ticket_id in zip(browsers, ids, strict=True):
        page = browser.get(f"/tickets/{ticket_id}/")
        assert page.status_code == 200
        bodies.append(replace(form_data(page.text), "statusId", in_progress))
    before = len([r for r in world.requests if r.method == "PATCH"])

    barrier = threading.Barrier(len(ids) + 1)
    answers: dict[str, str] = {}
    errors: list[BaseException] = []

    def save(browser, ticket_id, body, delay):
        try:
            barrier.wait(timeout=10)
            time.sleep(delay)
            response = browser.post(
                f"/tickets/{ticket_id}/",
                content=to_urlencoded(body),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                follow_redirects=True,
            )
            assert response.status_code == 200
            answers[ticket_id] = response.text
        except BaseException as error:  # reported below
            errors.append(error)

    def run():
        try:
            barrier.wait(timeout=10)
            assert bulk.batch_run(str(batch.pk)) == "done"
        except BaseException as error:  # reported below
            errors.append(error)
        finally:
            connection.close()

    # The batch goes through the tickets in order: the later a ticket comes in it, the
    # sooner its save, so that some are saved first and some sent by the batch first.
    saves = zip(browsers, ids, bodies, DELAYS, strict=True)
    threads = [threading.Thread(target=run)]
    threads += [threading.Thread(target=save, args=args) for args in saves]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for browser in browsers:
        browser.close()
    assert errors == []

    # What reached Thena: each ticket's status was set once, by one of the two.
    applied: Counter = Counter()
    for request in [r for r in world.requests if r.method == "PATCH"][before:]:
        if request.status != 200:
            continue
        named = (request.json or {}).get("ticketIds") or [request.path.rstrip("/").split("/")[-1]]
        applied.update(named)
    assert applied == Counter(ids)

    items = {item.ticket_id: item for item in batch.items.all()}
    entries = AuditEntry.objects.filter(ticket_id__in=ids).with_current_outcome()
    outcomes = Counter((e.ticket_id, e.batch_id is not None, e.current_outcome) for e in entries)
    for ticket_id in ids:
        final = world.ticket(ticket_id)["statusId"]
        if items[ticket_id].outcome == "succeeded":
            assert final == resolved
            assert CONFLICT in answers[ticket_id] and SAVED_ONE not in answers[ticket_id]
            assert outcomes[ticket_id, True, "succeeded"] == 1
            assert outcomes[ticket_id, False, "conflict"] == 1
        else:
            assert final == in_progress
            assert items[ticket_id].outcome == "skipped"
            assert items[ticket_id].message.startswith(SKIPPED)
            assert SAVED_ONE in answers[ticket_id]
            assert outcomes[ticket_id, False, "succeeded"] == 1
            assert outcomes[ticket_id, True, "conflict"] == 1
    assert sum(outcomes.values()) == 2 * TICKETS  # nothing else, nothing unknown
    assert verify_chain().ok
