"""Thena's ticket events: the receiver (/webhooks/thena/), and what processing makes of
them. Events come from the sandbox, which emits them after every change it applies."""

import base64
import hashlib
import hmac
import json
import random
import threading

import pytest
from django.db import connection
from django.tasks import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from tests.browser import form_data, replace, to_urlencoded
from tickets import events
from tickets.audit import verify_chain
from tickets.audit.reconcile import audit_reconcile
from tickets.models import AuditEntry, ThenaEvent, TicketFieldSeen

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("thena")]

SECRET = "a-long-shared-secret-0123456789"
URL = "/webhooks/thena/"
FORM = "application/x-www-form-urlencoded"


@pytest.fixture(autouse=True)
def _secret(settings):
    settings.THENA_WEBHOOK_SECRET = SECRET


def _signed(body: bytes, secret: str = SECRET) -> dict:
    mac = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Thena-Signature": f"sha256={mac}"}


def _deliver(client, event, *, headers=None, raw: bytes | None = None):
    body = raw if raw is not None else json.dumps(event).encode()
    return client.post(
        URL,
        body,
        content_type="application/json",
        headers=_signed(body) if headers is None else headers,
    )


def _deliver_all(client, evts):
    for event in evts:
        response = _deliver(client, event)
        assert response.status_code in (200, 202), response.content


def _external():
    return AuditEntry.objects.filter(action="ticket.external").order_by("id")


def _edit(client, ticket, **fields) -> AuditEntry:
    """Save the ticket's form as Chromium submits it, with `fields` typed in."""
    url = f"/tickets/{ticket['id']}/"
    data = form_data(client.get(url).content.decode())
    for name, value in fields.items():
        data = replace(data, name, value)
    client.post(url, to_urlencoded(data), content_type=FORM)
    return AuditEntry.objects.with_current_outcome().filter(action="ticket.update").latest("id")


# -- the receiver --------------------------------------------------------------------------


def test_a_delivery_is_stored_once_and_processed_in_the_background(client, sandbox, ticket):
    sandbox.touch_ticket(ticket["id"], title="Renamed in Thena")
    (event, *_) = sandbox.events

    first = _deliver(client, event)
    again = _deliver(client, event)

    assert (first.status_code, again.status_code) == (202, 200)
    assert json.loads(again.content)["new"] is False
    stored = ThenaEvent.objects.get()
    assert (stored.event_id, stored.state) == (event["eventId"], "received")
    assert not _external().exists()  # nothing is processed in the request
    queued = DBTaskResult.objects.filter(status=TaskResultStatus.READY)
    assert [t.task_path for t in queued] == ["tickets.tasks.events_process"]

    assert events.events_process() == 1
    entry = _external().get()
    assert entry.ticket_id == ticket["id"] and entry.outcome == "succeeded"
    assert entry.changes["title"] == {"before": ticket["title"], "after": "Renamed in Thena"}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Thena-Signature": "sha256=" + "0" * 64},
        {"X-Thena-Webhook-Secret": "wrong"},
        {"Authorization": "Bearer " + SECRET[:-1]},
        {"X-Thena-Webhook-Secret": ""},
    ],
)
def test_a_bad_secret_or_signature_is_401_and_nothing_is_kept(client, sandbox, ticket, headers):
    sandbox.touch_ticket(ticket["id"], title="x")
    response = _deliver(client, sandbox.events[0], headers=headers)
    assert response.status_code == 401
    assert not ThenaEvent.objects.exists()


def test_every_documented_way_of_carrying_the_secret_is_accepted(client, sandbox, ticket):
    sandbox.touch_ticket(ticket["id"], title="x")
    sandbox.touch_ticket(ticket["id"], title="y")
    sandbox.touch_ticket(ticket["id"], title="z")
    sandbox.touch_ticket(ticket["id"], title="w")
    bodies = [json.dumps(e).encode() for e in sandbox.events[:4]]
    mac = hmac.new(SECRET.encode(), bodies[3], hashlib.sha256).digest()
    ways = [
        {"X-Thena-Webhook-Secret": SECRET},
        {"Authorization": f"Bearer {SECRET}"},
        {"X-Thena-Signature": hmac.new(SECRET.encode(), bodies[2], hashlib.sha256).hexdigest()},
        {"X-Thena-Signature": base64.b64encode(mac).decode()},
    ]
    for body, headers in zip(bodies, ways, strict=True):
        assert _deliver(client, None, raw=body, headers=headers).status_code == 202
    assert ThenaEvent.objects.count() == 4


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"{not json", 400),
        (b"[]", 400),
        (b'"text"', 400),
        (b'{"eventType": "ticket:updated"}', 400),  # no eventId
        (b'{"eventId": ""}', 400),
        (json.dumps({"eventId": "x" * 201}).encode(), 400),
        (b"[" * 100_000 + b"]" * 100_000, 400),
        (b"\xff\xfe", 400),
        (json.dumps({"eventId": "e1", "pad": "x" * 1_000_001}).encode(), 413),
    ],
)
def test_what_is_no_event_is_refused_whole(client, raw, status):
    response = _deliver(client, None, raw=raw)
    assert response.status_code == status
    assert not ThenaEvent.objects.exists()


def test_the_receiver_is_off_without_a_secret_and_https_only_when_served_so(
    client, sandbox, ticket, settings
):
    sandbox.touch_ticket(ticket["id"], title="x")
    sandbox.touch_ticket(ticket["id"], title="y")
    settings.HTTPS = True
    assert _deliver(client, sandbox.events[0]).status_code == 403
    body = json.dumps(sandbox.events[0]).encode()
    secure = client.post(
        URL, body, content_type="application/json", secure=True, headers=_signed(body)
    )
    assert secure.status_code == 202
    settings.THENA_WEBHOOK_SECRET = ""
    assert _deliver(client, sandbox.events[1]).status_code == 404
    assert client.get(URL).status_code == 405


def test_hostile_values_are_stored_and_processed_without_error(client, sandbox, ticket):
    sandbox.touch_ticket(ticket["id"], title="Before")
    event = json.loads(json.dumps(sandbox.events[0]))
    event["eventId"] = "evt-\x00-\ud800"
    event["payload"]["ticket"]["title"] = "nul \x00 and a lone \ud800 surrogate"
    event["payload"]["ticket"]["priorityId"] = ["not", "an", "id"]
    event["actor"] = {"email": "<script>x</script>" * 50, "type": None}
    event["timestamp"] = "9999-99-99"
    raw = json.dumps(event).encode()
    assert _deliver(client, None, raw=raw, headers=_signed(raw)).status_code == 202
    events.events_process()
    assert ThenaEvent.objects.get().state in ("recorded", "ignored")


# -- what the events become ---------------------------------------------------------------


def test_a_change_made_in_thena_is_recorded_with_who_made_it(
    client, auditor_client, sandbox, ticket
):
    other = next(p for p in ("Low", "Medium", "High", "Urgent") if p != ticket["priority"])
    priority_id = next(
        t["priorityId"]
        for t in sandbox.tickets()
        if t["priority"] == other and t["teamId"] == ticket["teamId"]
    )
    sandbox.touch_ticket(ticket["id"], priorityId=priority_id)
    _deliver_all(client, sandbox.events)
    events.events_process()

    entry = _external().get()
    actor = sandbox.events[0]["actor"]
    assert (entry.actor_id, entry.actor_username, entry.actor_email) == (
        None,
        actor["email"],
        actor["email"],
    )
    assert entry.team_id == ticket["teamId"]
    change = entry.changes["priorityId"]
    assert (change["before_label"], change["after_label"]) == (ticket["priority"], other)
    page = auditor_client.get(f"/tickets/{ticket['id']}/history/")
    assert f"Priority: {ticket['priority']} → {other}" in page.content.decode()
    assert actor["email"] in page.content.decode()


def test_our_own_edit_echoed_back_is_linked_not_duplicated(manager_client, client, sandbox, ticket):
    entry = _edit(manager_client, ticket, title="Saved from the dashboard")
    assert entry.current_outcome == "succeeded"
    _deliver_all(client, sandbox.events)
    events.events_process()

    assert not _external().exists()
    echo = ThenaEvent.objects.get(event_type="ticket:updated")
    assert (echo.state, echo.entry_id) == ("echo", entry.pk)


def test_an_event_settles_an_unknown_edit_as_succeeded(manager_client, client, sandbox, ticket):
    sandbox.drop_next(only="PATCH")  # the PATCH never arrives; the read-back cannot tell
    entry = _edit(manager_client, ticket, title="Lost in transit")
    assert entry.current_outcome == "unknown"
    # Someone sets the same value in Thena: the ticket shows what was sent.
    sandbox.touch_ticket(ticket["id"], title="Lost in transit")
    _deliver_all(client, sandbox.events)
    events.events_process()

    entry = AuditEntry.objects.with_current_outcome().get(pk=entry.pk)
    assert entry.current_outcome == "succeeded"
    latest = entry.outcomes.order_by("-id").first()
    assert sandbox.events[0]["eventId"] in latest.message


def test_an_event_showing_other_values_settles_nothing(manager_client, client, sandbox, ticket):
    sandbox.drop_next(only="PATCH")
    entry = _edit(manager_client, ticket, title="Lost in transit")
    sandbox.touch_ticket(ticket["id"], title="Something else")
    _deliver_all(client, sandbox.events)
    events.events_process()
    assert AuditEntry.objects.with_current_outcome().get(pk=entry.pk).current_outcome == "unknown"


def test_reconciliation_reads_the_events_before_the_ticket(manager_client, client, sandbox, ticket):
    sandbox.drop_next(only="PATCH")
    entry = _edit(manager_client, ticket, title="Lost in transit")
    sandbox.touch_ticket(ticket["id"], title="Lost in transit")
    for event in sandbox.events:  # stored, not processed yet
        _deliver(client, event)
    sandbox.requests.clear()

    assert audit_reconcile(min_age_seconds=0)["succeeded"] == 1
    assert not [r for r in sandbox.requests if r.path == f"/v1/tickets/{ticket['id']}"]
    latest = entry.outcomes.order_by("-id").first()
    assert latest.message.startswith("Reconciled from Thena event")


def test_a_write_only_value_an_event_shows_is_kept_newest_first(client, sandbox, ticket):
    sandbox.touch_ticket(ticket["id"], dueDate="2027-01-05T10:00:00.000Z")
    sandbox.touch_ticket(ticket["id"], dueDate="2027-02-01T10:00:00.000Z")
    newest_first = [e for e in sandbox.events if e["eventType"] == "ticket:updated"][::-1]
    _deliver_all(client, newest_first)
    events.events_process()

    seen = TicketFieldSeen.objects.get(ticket_id=ticket["id"], field="dueDate")
    assert seen.value == "2027-02-01T10:00:00.000Z"


def test_a_tug_of_war_is_flagged(manager_client, client, sandbox, ticket):
    ours = _edit(manager_client, ticket, title="Ours")
    sandbox.events.clear()
    sandbox.touch_ticket(ticket["id"], title="Theirs")
    _deliver_all(client, sandbox.events)
    events.events_process()
    assert _external().get().drift_of == ours.pk


def test_a_thousand_deliveries_make_one_entry_per_distinct_change(client, sandbox):
    rng = random.Random(7)
    tickets = sandbox.tickets()[:60]
    for n in range(760):
        ticket = rng.choice(tickets)
        sandbox.touch_ticket(ticket["id"], title=f"Change {n}")
    emitted = list(sandbox.events)
    deliveries = emitted + rng.sample(emitted, len(emitted) // 3)
    rng.shuffle(deliveries)
    assert len(deliveries) >= 1000

    _deliver_all(client, deliveries)
    events.events_process()

    distinct = {e["eventId"] for e in emitted}
    assert ThenaEvent.objects.count() == len(distinct)
    changes = [e for e in emitted if e["eventType"] == "ticket:updated"]
    assert _external().count() == len(changes) == 760
    recorded = set(_external().values_list("request_id", flat=True))
    assert recorded == {e["eventId"][:64] for e in changes}


def test_the_ticket_page_and_the_audit_list_flag_a_tug_of_war(
    manager_client, client, sandbox, ticket
):
    ours = _edit(manager_client, ticket, title="Ours")
    sandbox.events.clear()
    sandbox.touch_ticket(ticket["id"], title="Theirs")
    _deliver_all(client, sandbox.events)
    events.events_process()

    page = manager_client.get(f"/tickets/{ticket['id']}/").content.decode()
    assert "Tug of war." in page and f"#{ours.number}</a>" in page
    assert '<span class="badge source-thena">In Thena</span>' in page
    assert "this undid the dashboard\u2019s edit" in page
    listing = manager_client.get("/audit/").content.decode()
    assert f'undid <a href="/audit/{ours.number}/">#{ours.number}</a>' in listing
    assert "Change in Thena" in listing


def test_a_write_only_value_seen_in_events_is_shown_but_not_prefilled(
    manager_client, client, sandbox, ticket
):
    sandbox.touch_ticket(ticket["id"], dueDate="2027-01-05T10:00:00.000Z")
    _deliver_all(client, sandbox.events)
    events.events_process()

    html = manager_client.get(f"/tickets/{ticket['id']}/").content.decode()
    assert "from Thena&#x27;s events: 5 Jan 2027, 10:00." in html
    assert dict(form_data(html))["dueDate"] == ""  # only what the user types is sent


def test_the_webhook_command_says_what_to_do_and_what_came(client, sandbox, ticket, settings):
    from io import StringIO

    from django.core.management import CommandError, call_command

    out = StringIO()
    call_command(
        "thena_webhook", "register", "--url", "https://admin.example/webhooks/thena/", stdout=out
    )
    assert "POST to https://admin.example/webhooks/thena/" in out.getvalue()
    assert "X-Thena-Signature: sha256=" in out.getvalue()

    sandbox.touch_ticket(ticket["id"], title="x")
    _deliver_all(client, sandbox.events)
    out = StringIO()
    call_command("thena_webhook", "status", stdout=out)
    assert "Events waiting" in out.getvalue() and "Received   1" in out.getvalue()

    settings.THENA_WEBHOOK_SECRET = ""
    with pytest.raises(CommandError, match="Set THENA_WEBHOOK_SECRET"):
        call_command("thena_webhook", "register")


def test_the_history_panel_shows_one_source_or_both(manager_client, client, sandbox, ticket):
    _edit(manager_client, ticket, title="Ours")
    sandbox.events.clear()
    sandbox.touch_ticket(ticket["id"], title="Theirs")
    _deliver_all(client, sandbox.events)
    events.events_process()
    url = f"/tickets/{ticket['id']}/history/"
    htmx = {"HX-Request": "true"}

    def shown(source=""):
        response = manager_client.get(url, {"source": source} if source else {}, headers=htmx)
        return response.content.decode().count('<article class="history-entry')

    assert (shown(), shown("dashboard"), shown("thena"), shown("bogus")) == (2, 1, 1, 2)
    plain = manager_client.get(url, {"source": "thena"})
    assert plain["Location"] == f"/tickets/{ticket['id']}/?history=thena#history-panel"
    page = manager_client.get(f"/tickets/{ticket['id']}/", {"history": "thena"}).content.decode()
    assert page.count('<article class="history-entry') == 1
    assert '<span class="badge source-thena">In Thena</span>' in page


def test_the_audit_list_and_export_filter_by_source(manager_client, client, sandbox, ticket):
    from tests.util import complete_export

    _edit(manager_client, ticket, title="Ours")
    sandbox.events.clear()
    sandbox.touch_ticket(ticket["id"], title="Theirs")
    _deliver_all(client, sandbox.events)
    events.events_process()

    def numbers(source):
        response = manager_client.get("/audit/", {"source": source} if source else {})
        return [row.number for row in response.context["rows"]]

    ours = AuditEntry.objects.get(action="ticket.update").number
    theirs = _external().get().number
    assert numbers("thena") == [theirs]
    assert numbers("dashboard") == [ours]
    assert set(numbers("")) == {ours, theirs}
    # The chart counts both kinds of change, or the one asked for.
    chart = manager_client.get("/audit/", {"source": "thena"}).context["chart"]
    assert chart["total"] == 1
    export = manager_client.get("/audit/export.csv", {"source": "thena"})
    lines = complete_export(b"".join(export.streaming_content)).splitlines()
    assert len(lines) == 2 and lines[1].startswith(f"{theirs},")


@pytest.mark.django_db(transaction=True)
def test_workers_processing_at_once_record_each_change_once(client, sandbox):
    """Three workers drain one flood together (on PostgreSQL each skips the rows another
    holds): every event is processed once, one entry per change, and the chain verifies."""
    rng = random.Random(11)
    tickets = sandbox.tickets()[:20]
    for n in range(300):
        sandbox.touch_ticket(rng.choice(tickets)["id"], title=f"Change {n}")
    emitted = list(sandbox.events)
    deliveries = emitted + rng.sample(emitted, len(emitted) // 4)
    rng.shuffle(deliveries)
    _deliver_all(client, deliveries)

    barrier = threading.Barrier(3)
    done, errors = [], []

    def worker():
        try:
            barrier.wait(timeout=10)
            done.append(events.events_process())
        except BaseException as error:  # reported below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    distinct = {e["eventId"] for e in emitted}
    assert sum(done) == len(distinct)
    assert not ThenaEvent.objects.filter(state=ThenaEvent.State.RECEIVED).exists()
    changes = [e for e in emitted if e["eventType"] == "ticket:updated"]
    assert _external().count() == len(changes) == 300
    recorded = list(_external().values_list("request_id", flat=True))
    assert sorted(recorded) == sorted(e["eventId"][:64] for e in changes)
    assert verify_chain().ok
