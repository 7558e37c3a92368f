"""Abuse is bounded: denied edits collapse in the audit log; login guessing is locked out."""

import re
import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.core.cache import cache
from django.db import connection
from django.test import Client

from tests.conftest import PASSWORD, _client_for, _user
from tests.util import submitted
from tickets import services
from tickets.audit import verify_chain
from tickets.models import AuditEntry, TeamScope

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("thena")]

MORE = re.compile(
    r"And (\d+) more denied attempts? between (\d{4}-\d\d-\d\d \d\d:\d\d) and (\d\d:\d\d) UTC\."
)


@pytest.fixture
def clock(monkeypatch):
    """The clock of the denied-entry windows, set by the test."""
    now = [datetime(2025, 3, 4, 10, 3, 5, tzinfo=UTC)]
    monkeypatch.setattr(services, "_denied_now", lambda: now[0])
    return now


@pytest.fixture
def ticket(sandbox):
    return next(t for t in sandbox.tickets() if t["teamIdentifier"] == "SUP")


def _denied():
    return list(AuditEntry.objects.filter(outcome="denied").order_by("id"))


def _attempts(entries) -> int:
    """The exact number of denied attempts the log accounts for (the README's rule)."""
    return sum(1 + sum(int(n) for n, *_ in MORE.findall(e.message)) for e in entries)


# -- denied edits -------------------------------------------------------------------------------


def test_a_flood_of_forged_posts_writes_one_entry_a_minute_with_the_exact_count(
    viewer_client, ticket, sandbox, clock
):
    url = f"/tickets/{ticket['id']}/"
    for _ in range(300):
        assert viewer_client.post(url, {"title": "x"}).status_code == 403
    assert len(_denied()) == 1
    clock[0] += timedelta(seconds=50)  # 10:03:55, same minute
    assert viewer_client.post(url, {"title": "x"}).status_code == 403
    assert len(_denied()) == 1

    clock[0] += timedelta(minutes=7)  # 10:10:55: a later minute
    assert viewer_client.post(url, {"title": "x"}).status_code == 403
    first, second = _denied()
    assert MORE.search(first.message) is None
    assert MORE.search(second.message).groups() == ("300", "2025-03-04 10:03", "10:04")
    assert second.message.startswith(services.NO_PERMISSION)
    assert _attempts(_denied()) == 302
    assert [r for r in sandbox.requests if r.method == "PATCH"] == []
    assert verify_chain().ok


def test_windows_are_per_user_and_per_ticket(viewer_client, auditor_client, sandbox, clock):
    one, two = sandbox.tickets()[:2]
    for _ in range(3):
        for client in (viewer_client, auditor_client):
            for ticket in (one, two):
                client.post(f"/tickets/{ticket['id']}/", {"title": "x"})
    assert len(_denied()) == 4
    clock[0] += timedelta(minutes=1)
    viewer_client.post(f"/tickets/{one['id']}/", {"title": "x"})
    last = _denied()[-1]
    assert (last.actor_username, last.ticket_id) == ("viewer", one["id"])
    assert MORE.search(last.message).group(1) == "2"
    # 13 attempts: the other three pairs' 2 extra each wait in the cache for their next entry.
    assert _attempts(_denied()) == 13 - 3 * 2


def test_a_single_extra_attempt_is_counted_in_the_singular(viewer_client, ticket, clock):
    url = f"/tickets/{ticket['id']}/"
    viewer_client.post(url, {"title": "x"})
    viewer_client.post(url, {"title": "x"})
    clock[0] += timedelta(minutes=1)
    viewer_client.post(url, {"title": "x"})
    assert "And 1 more denied attempt between" in _denied()[-1].message


def test_a_forged_post_takes_the_team_from_the_cache_only(viewer_client, ticket, sandbox):
    viewer_client.post(f"/tickets/{ticket['id']}/", {"title": "x"})
    assert _denied()[-1].team_id == ""
    assert sandbox.requests == []  # the team is never asked of Thena for a denial
    viewer_client.get(f"/tickets/{ticket['id']}/")  # the page caches the ticket's team
    other = next(t for t in sandbox.tickets() if t["id"] != ticket["id"])
    cache.set(f"thena:ticket-team:{other['id']}", other["teamId"])
    viewer_client.post(f"/tickets/{other['id']}/", {"title": "x"})
    assert _denied()[-1].team_id == other["teamId"]


def test_a_denial_in_the_service_carries_the_tickets_team(manager_client, viewer, ticket):
    data = submitted(manager_client.get(f"/tickets/{ticket['id']}/").context["form"], title="C")
    edit = services.ticket_edit_load_submitted(
        user=viewer, ticket_id=ticket["id"], token=data["snapshot"]
    )
    form = edit.form(data)
    assert form.is_valid(), form.errors
    cache.delete(f"thena:ticket-team:{ticket['id']}")  # the team must come from the service
    with pytest.raises(services.PermissionDenied):
        services.ticket_update(
            user=viewer,
            edit=edit,
            form=form,
            meta=services.audit.RequestMeta("r1", "203.0.113.1", "test"),
        )
    assert _denied()[-1].team_id == ticket["teamId"]


def test_a_ticket_moved_out_of_scope_is_denied_with_its_new_team(django_user_model, sandbox, clock):
    billing = next(t for t in sandbox.teams() if t["identifier"] == "BIL")
    support = next(t for t in sandbox.teams() if t["identifier"] == "SUP")
    manager = _user(django_user_model, "scoped", "Support managers")
    TeamScope.objects.create(user=manager, team_ids=[billing["id"]])
    client = _client_for(manager)
    ticket = next(t for t in sandbox.tickets() if t["teamId"] == billing["id"])
    url = f"/tickets/{ticket['id']}/"
    data = submitted(client.get(url).context["form"], title="Too late")
    sandbox.put_ticket(ticket["id"], teamId=support["id"])
    assert client.post(url, data).status_code == 404
    entry = _denied()[-1]
    assert entry.message == services.OUT_OF_SCOPE
    assert entry.team_id == support["id"]


@pytest.mark.parametrize(
    "ticket_id",
    ["X" * 300, "ü" * 100 + "ß", "a b;c'DROP", "-" * 70, ".."],
)
def test_odd_ticket_ids_are_logged_bounded(viewer_client, ticket_id, clock):
    response = viewer_client.post(f"/tickets/{ticket_id}/", {"title": "x"})
    assert response.status_code in (403, 404)
    if response.status_code == 403:
        entry = _denied()[-1]
        assert len(entry.ticket_id) <= 64
        assert ticket_id.startswith(entry.ticket_id)
        viewer_client.post(f"/tickets/{ticket_id}/", {"title": "x"})
        assert len(_denied()) == 1
    assert verify_chain().ok


@pytest.mark.django_db(transaction=True)
def test_the_count_stays_exact_across_threads_with_the_database_cache(settings, viewer, clock):
    """The database cache (the production default) increments by get and set. Threads
    run together on PostgreSQL; SQLite's in-memory test database locks whole tables, so
    there one thread does the same (the database cache path, without the race)."""
    workers = 6 if connection.vendor == "postgresql" else 1
    backend = "django.core.cache.backends.db.DatabaseCache"
    settings.CACHES = {"default": {"BACKEND": backend, "LOCATION": "thena_admin_cache"}}
    meta = services.audit.RequestMeta("r", "203.0.113.3", "flood")
    barrier = threading.Barrier(workers)
    failures = []

    def flood():
        try:
            barrier.wait()
            for _ in range(60 // workers):
                services.ticket_update_deny(user=viewer, ticket_id="T-1", meta=meta)
        except Exception as error:  # reported below: a thread's failure must fail the test
            failures.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=flood) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(_denied()) == 1
    clock[0] += timedelta(minutes=1)
    services.ticket_update_deny(user=viewer, ticket_id="T-1", meta=meta)
    assert _attempts(_denied()) == 61


# -- login lockouts ---------------------------------------------------------------------------


def _login(browser, username, password="wrong"):
    return browser.post("/accounts/login/", {"username": username, "password": password})


def test_password_spraying_locks_the_address_after_30_failures(manager):
    spray = Client(REMOTE_ADDR="203.0.113.7")
    codes = [_login(spray, f"user{n}").status_code for _ in range(4) for n in range(30)]
    assert codes[:29] == [200] * 29  # no username reaches 5, no address 30
    assert set(codes[29:]) == {429}
    assert _login(spray, "manager", PASSWORD).status_code == 429
    assert _login(Client(REMOTE_ADDR="198.51.100.9"), "manager", PASSWORD).status_code == 302


def test_a_successful_login_does_not_clear_the_address_count(manager, viewer):
    address = "203.0.113.8"
    for n in range(29):
        assert _login(Client(REMOTE_ADDR=address), f"user{n}").status_code == 200
    # One account the sprayer owns logs in: it forgives its own pair, not the address.
    assert _login(Client(REMOTE_ADDR=address), "viewer", PASSWORD).status_code == 302
    assert _login(Client(REMOTE_ADDR=address), "user-last").status_code == 429
    assert _login(Client(REMOTE_ADDR=address), "manager", PASSWORD).status_code == 429


def test_five_failures_still_lock_one_username_on_one_address(manager, viewer):
    browser = Client(REMOTE_ADDR="203.0.113.9")
    assert [_login(browser, "manager").status_code for _ in range(5)] == [200] * 4 + [429]
    assert _login(browser, "manager", PASSWORD).status_code == 429
    assert _login(browser, "viewer", PASSWORD).status_code == 302  # the address is not locked
    assert _login(Client(REMOTE_ADDR="198.51.100.10"), "manager", PASSWORD).status_code == 302


def test_four_failures_then_success_clears_the_pair(manager):
    browser = Client(REMOTE_ADDR="203.0.113.10")
    for _ in range(4):
        _login(browser, "manager")
    assert _login(browser, "manager", PASSWORD).status_code == 302
    assert [
        _login(Client(REMOTE_ADDR="203.0.113.10"), "manager").status_code for _ in range(4)
    ] == [200] * 4
