"""The per-ticket edit lock (tickets/locks.py): one holder at a time, freed on exit, taken
over once a dead holder's lease has run out."""

import threading
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from tickets import locks
from tickets.models import TicketEditLock
from tickets.thena.client import request_budget

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_second_holder_waits_until_the_first_lets_go():
    order = []
    inside = threading.Event()

    def first():
        with locks.ticket_edit_lock("T-1"):
            order.append("first in")
            inside.set()
            time.sleep(0.3)
            order.append("first out")

    thread = threading.Thread(target=first)
    thread.start()
    inside.wait(5)
    with locks.ticket_edit_lock("T-1"):
        order.append("second in")
    thread.join()
    assert order == ["first in", "first out", "second in"]
    assert not TicketEditLock.objects.exists()


def test_other_tickets_do_not_wait():
    with locks.ticket_edit_lock("T-1"), locks.ticket_edit_lock("T-2"):
        assert TicketEditLock.objects.count() == 2


def test_waiting_ends_within_the_request_budget():
    with locks.ticket_edit_lock("T-1"):
        started = time.monotonic()
        with request_budget(1.5), pytest.raises(locks.EditBusy), locks.ticket_edit_lock("T-1"):
            pass
        assert time.monotonic() - started < 1.5


def test_a_lease_left_by_a_dead_process_is_taken_over_when_it_runs_out():
    key = locks._key("T-1")
    TicketEditLock.objects.create(
        key=key, token="dead", expires_at=timezone.now() - timedelta(seconds=1)
    )
    with locks.ticket_edit_lock("T-1"):
        assert TicketEditLock.objects.get(key=key).token != "dead"
    assert not TicketEditLock.objects.exists()


def test_any_ticket_id_fits():
    with locks.ticket_edit_lock("x" * 5000 + "\u0000/\ud800"):
        assert TicketEditLock.objects.count() == 1


def test_a_chunks_locks_take_the_free_tickets_and_leave_the_held_ones():
    with locks.ticket_edit_lock("T-1"):
        started = time.monotonic()
        with locks.ticket_edit_locks(["T-1", "T-2", "T-3"], wait=0.2) as held:
            assert held == {"T-2", "T-3"}
            assert time.monotonic() - started >= 0.2  # it waited for T-1, then gave up
            assert TicketEditLock.objects.count() == 3
        # Only the chunk's own locks are freed: T-1 is still its holder's.
        assert TicketEditLock.objects.count() == 1
        with locks.ticket_edit_locks(["T-2"], wait=0) as again:
            assert again == {"T-2"}
    assert not TicketEditLock.objects.exists()


def test_a_chunk_waits_for_a_ticket_freed_meanwhile():
    inside, done = threading.Event(), []

    def holder():
        with locks.ticket_edit_lock("T-1"):
            inside.set()
            time.sleep(0.2)

    thread = threading.Thread(target=holder)
    thread.start()
    inside.wait(5)
    with locks.ticket_edit_locks(["T-1", "T-2"], wait=5) as held:
        done.append(held)
    thread.join()
    assert done == [{"T-1", "T-2"}]


def test_a_chunk_takes_over_a_dead_holders_expired_lease():
    TicketEditLock.objects.create(
        key=locks._key("T-1"), token="dead", expires_at=timezone.now() - timedelta(seconds=1)
    )
    with locks.ticket_edit_locks(["T-1"], wait=0) as held:
        assert held == {"T-1"}
        assert TicketEditLock.objects.get().token != "dead"
