"""A change made in Thena itself reaches the ticket's history: the sandbox delivers its
event over HTTP to the live server's /webhooks/thena/, the worker's processing records it,
and the page shows it beside the dashboard's own edits."""

import time

import pytest
from playwright.sync_api import expect

from tickets import events
from tickets.models import ThenaEvent
from tickets.thena.sandbox.events import Delivery, Outbox

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("thena")]

PASSWORD = "correct horse battery"
SECRET = "e2e-webhook-secret-0123456789"


def _processed(count: int, timeout: float = 10) -> None:
    """Run the worker's processing until `count` events are stored and processed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events.events_process()
        done = ThenaEvent.objects.exclude(state=ThenaEvent.State.RECEIVED).count()
        if done >= count:
            return
        time.sleep(0.1)
    raise AssertionError(f"{ThenaEvent.objects.count()} events stored, {count} expected")


def test_a_change_made_in_thena_appears_in_the_history_panel(
    page, live_server, manager, login, sandbox, settings, shot
):
    settings.THENA_WEBHOOK_SECRET = SECRET
    sandbox.outbox = Outbox(
        Delivery(url=f"{live_server.url}/webhooks/thena/", secret=SECRET, duplicate_rate=1.0)
    )
    ticket = next(t for t in sandbox.tickets() if t["teamIdentifier"] == "SUP")
    login(manager.username, PASSWORD)
    page.goto(f"{live_server.url}/tickets/{ticket['id']}/")
    panel = page.locator("#history-panel")
    expect(panel).to_contain_text("No changes recorded here yet.")

    sandbox.touch_ticket(ticket["id"], title="Renamed by a colleague in Thena")
    _processed(1)
    assert ThenaEvent.objects.count() == 1  # delivered twice, kept once

    page.reload()
    entry = panel.locator("article.history-entry.external")
    expect(entry).to_contain_text("In Thena")
    expect(entry).to_contain_text(f"Title: {ticket['title']} → Renamed by a colleague in Thena")
    expect(entry).to_contain_text(sandbox.events[0]["actor"]["email"])
    shot("history-external-change")
