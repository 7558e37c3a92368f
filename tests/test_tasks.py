"""Background reconciliation of the audit log (tickets/tasks.py) on the database task
backend, as deployed: queued tasks are rows, and the worker's own loop (`db_worker
--batch`, without its signal handlers) runs the ones that are due. Reconciliation is
idempotent: two reconcilers at once settle each entry exactly once."""

import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.tasks import TaskResultStatus
from django_tasks_db.backend import DatabaseBackend
from django_tasks_db.models import DBTaskResult

from tests.browser import form_data, replace, to_urlencoded
from tests.test_audit_pg_role import readme_sql
from tests.util import db_worker
from tickets import services, tasks
from tickets.audit import (
    RequestMeta,
    audit_reconcile,
    reconcile,
    record_attempt,
    record_outcome,
    verify_chain,
)
from tickets.audit.chain import AlreadySettled
from tickets.models import AuditEntry, AuditOutcome

pytestmark = pytest.mark.usefixtures("thena", "shared_thena")

META = RequestMeta(request_id="req-tasks", client_ip="192.0.2.7", user_agent="pytest")
FORM = "application/x-www-form-urlencoded"
TYPED = "Typed by the manager"
SENT = {"title": TYPED, "isPrivate": True}  # the PATCH body of _typed_form


@pytest.fixture
def shared_thena(settings):
    """As in production, every process reaches the same Thena (the tasks refuse to settle
    anything from a private in-process sandbox). The client the test installed is used."""
    settings.THENA_API_BASE_URL = "https://thena.test"


def _save_lost(client, url, sandbox) -> AuditEntry:
    """A save whose PATCH gets no answer and whose read-back shows nothing yet: "unknown"."""
    data = replace(form_data(client.get(url).content.decode()), "title", TYPED)
    body = to_urlencoded(replace(data, "isPrivate", "on"))
    sandbox.drop_next(only="PATCH")
    response = client.post(url, body, content_type=FORM)
    assert response.status_code == 200
    assert "“unknown” until it is settled" in response.content.decode()
    return _entry()


def _entry() -> AuditEntry:
    return AuditEntry.objects.with_current_outcome().get(action="ticket.update")


def _queued(task) -> list[DBTaskResult]:
    return list(DBTaskResult.objects.filter(task_path=task.module_path).order_by("enqueued_at"))


def _ready(task) -> list[DBTaskResult]:
    return [row for row in _queued(task) if row.status == TaskResultStatus.READY]


def _run_worker() -> None:
    """One pass of `manage.py db_worker --batch`: every task due now, then stop."""
    db_worker().run()


def _a_minute_passes() -> None:
    DBTaskResult.objects.filter(status=TaskResultStatus.READY).update(run_after=datetime.now(UTC))


def _attempt(ticket: dict, body: dict, **kwargs) -> AuditEntry:
    return record_attempt(
        action="ticket.update",
        actor=None,
        ticket=ticket,
        changes={name: {"before": ticket.get(name), "after": new} for name, new in body.items()},
        request_body=body,
        meta=META,
        base_updated_at=ticket["updatedAt"],
        **kwargs,
    )


# -- an unknown outcome queues its reconciliation ----------------------------------------


@pytest.mark.django_db
def test_an_unknown_save_queues_its_reconciliation_after_the_in_flight_window(
    manager_client, sandbox, url
):
    entry = _save_lost(manager_client, url, sandbox)

    assert entry.current_outcome == "unknown"
    [queued] = _queued(tasks.reconcile_entry)
    assert queued.status == TaskResultStatus.READY
    assert queued.args_kwargs == {"args": [entry.pk], "kwargs": {}}
    wait = queued.run_after - datetime.now(UTC)
    assert timedelta(seconds=reconcile.IN_FLIGHT_SECONDS - 10) < wait
    assert wait <= timedelta(seconds=reconcile.IN_FLIGHT_SECONDS)


@pytest.mark.django_db
def test_a_save_that_succeeds_queues_nothing(manager_client, url):
    data = replace(form_data(manager_client.get(url).content.decode()), "title", TYPED)
    assert manager_client.post(url, to_urlencoded(data), content_type=FORM).status_code == 302
    assert _entry().current_outcome == "succeeded"
    assert not DBTaskResult.objects.exists()


@pytest.mark.django_db
def test_a_queue_that_fails_does_not_fail_the_save(
    manager_client, sandbox, url, monkeypatch, caplog
):
    """A real database error (which would leave a PostgreSQL transaction unusable, were it
    not in its own savepoint): logged, the user told the usual, the sweep settles it."""

    def broken(self, task, args, kwargs):
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM no_such_task_table")

    monkeypatch.setattr(DatabaseBackend, "_task_to_db_task", broken)

    entry = _save_lost(manager_client, sandbox=sandbox, url=url)

    assert entry.current_outcome == "unknown"
    assert not DBTaskResult.objects.exists()
    assert f"Could not queue the reconciliation of audit entry #{entry.pk}" in caplog.text


# -- running the tasks -------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_queued_task_settles_the_entry_when_due(manager_client, sandbox, ticket, url):
    entry = _save_lost(manager_client, url, sandbox)
    sandbox.touch_ticket(ticket["id"], **SENT)  # the lost PATCH arrived after all

    _run_worker()  # not due yet
    assert _entry().current_outcome == "unknown"
    _a_minute_passes()
    _run_worker()

    [done] = _queued(tasks.reconcile_entry)
    assert done.status == TaskResultStatus.SUCCESSFUL, done.traceback
    assert done.return_value["succeeded"] == 1
    assert _entry().current_outcome == "succeeded"
    assert entry.outcomes.count() == 2  # the unknown, then the one settlement


@pytest.mark.django_db
def test_the_task_leaves_an_entry_settled_meanwhile_alone(sandbox, ticket):
    entry = _attempt(ticket, {"title": TYPED})
    record_outcome(entry=entry, outcome="unknown")
    record_outcome(entry=entry, outcome="failed", message="settled by the sweep")
    reads = len(sandbox.requests)

    counts = tasks.reconcile_entry.call(entry.pk)

    assert sum(counts.values()) == 0
    assert entry.outcomes.count() == 2
    assert len(sandbox.requests) == reads  # not even read


@pytest.mark.django_db
def test_without_a_shared_thena_the_tasks_settle_nothing(settings, sandbox, ticket, caplog):
    """Each process has its own in-process sandbox: a worker's untouched copy is no
    evidence that an edit failed."""
    settings.THENA_API_BASE_URL = ""
    entry = _attempt(ticket, {"title": TYPED})
    record_outcome(entry=entry, outcome="unknown")

    assert tasks.reconcile_entry.call(entry.pk) == {}
    assert entry.outcomes.count() == 1
    assert "Audit reconciliation skipped" in caplog.text


# -- the sweep ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_sweep_settles_what_is_left_and_queues_itself_once(
    settings, sandbox, ticket, monkeypatch
):
    settings.AUDIT_RECONCILE_MINUTES = 5
    landed = _attempt(ticket, {"title": TYPED})  # pending: its worker died after sending
    sandbox.touch_ticket(ticket["id"], title=TYPED)
    other = next(t for t in sandbox.tickets() if t["id"] != ticket["id"])
    lost = _attempt(other, {"title": "Never arrived"})
    record_outcome(entry=lost, outcome="unknown")  # and its task was never queued

    # Every worker start runs schedule_reconcile: one sweep is queued, whatever the count.
    call_command("schedule_reconcile")
    call_command("schedule_reconcile")
    assert tasks.schedule_sweep() is None
    [first] = _ready(tasks.reconcile_sweep)
    monkeypatch.setattr(reconcile, "IN_FLIGHT_SECONDS", 0)  # the entries are old enough now
    _run_worker()

    first.refresh_from_db()
    assert first.status == TaskResultStatus.SUCCESSFUL, first.traceback
    assert (first.return_value["succeeded"], first.return_value["failed"]) == (1, 1)
    outcomes = AuditEntry.objects.with_current_outcome().in_bulk([landed.pk, lost.pk])
    assert outcomes[landed.pk].current_outcome == "succeeded"
    assert outcomes[lost.pk].current_outcome == "failed"
    [after] = _ready(tasks.reconcile_sweep)
    wait = after.run_after - datetime.now(UTC)
    assert timedelta(minutes=4) < wait <= timedelta(minutes=5)

    _run_worker()  # not due: nothing runs, nothing more is queued
    assert [row.pk for row in _ready(tasks.reconcile_sweep)] == [after.pk]
    assert len(_queued(tasks.reconcile_sweep)) == 2


@pytest.mark.django_db(transaction=True)
def test_a_sweep_that_fails_still_queues_the_next(monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(reconcile, "audit_reconcile", broken)
    tasks.schedule_sweep()

    _run_worker()

    first, after = _queued(tasks.reconcile_sweep)
    assert first.status == TaskResultStatus.FAILED
    assert "a bug" in first.traceback
    assert after.status == TaskResultStatus.READY


# -- idempotent settlement -----------------------------------------------------------------


@pytest.mark.django_db
def test_an_outcome_written_from_a_stale_read_is_refused(ticket):
    entry = _attempt(ticket, {"title": TYPED})
    record_outcome(entry=entry, outcome="unknown", message="another reconciler was first")

    with pytest.raises(AlreadySettled, match=r"already settled \(unknown\)"):
        record_outcome(entry=entry, outcome="unknown", current="pending")
    assert isinstance(AlreadySettled(), ValueError)  # callers catching ValueError still do
    record_outcome(entry=entry, outcome="succeeded", current="unknown")
    with pytest.raises(AlreadySettled, match=r"already settled \(succeeded\)"):
        record_outcome(entry=entry, outcome="failed", current="unknown")
    assert list(entry.outcomes.order_by("id").values_list("outcome", flat=True)) == [
        "unknown",
        "succeeded",
    ]


def test_a_save_slower_than_the_in_flight_window_keeps_reconciliations_outcome(
    manager_client, sandbox, ticket, url, monkeypatch
):
    """A PATCH that answers after reconciliation already settled its entry: the page
    answers (no 500) and the entry keeps the outcome found by reading the ticket back."""
    real_update = services.get_client().update_ticket

    def slow_update(ticket_id, body):
        updated = real_update(ticket_id, body)
        audit_reconcile(min_age_seconds=0)  # meanwhile, a sweep reads it back
        return updated

    monkeypatch.setattr(services.get_client(), "update_ticket", slow_update)
    data = replace(form_data(manager_client.get(url).content.decode()), "title", TYPED)
    response = manager_client.post(url, to_urlencoded(data), content_type=FORM)

    assert response.status_code == 302
    entry = AuditEntry.objects.get(ticket_id=ticket["id"])
    assert list(entry.outcomes.values_list("outcome", flat=True)) == ["succeeded"]


def _race(sandbox, thena, monkeypatch, *, before_each=lambda: None) -> None:
    """Two reconcilers at once (two hosts, or the task and the cron command) over the same
    nine entries: three that landed, three untouched (both unknown), three pending on a
    ticket changed since. Both list every entry before either reads Thena, so every entry
    is contested; each is settled exactly once, and nothing raises."""
    landed, untouched, changed = sandbox.tickets()[:3]
    entries = []
    for _ in range(3):
        for ticket, body in ((landed, {"title": TYPED}), (untouched, {"title": "Never sent"})):
            entry = _attempt(ticket, body)
            record_outcome(entry=entry, outcome="unknown")
            entries.append(entry)
        entries.append(_attempt(changed, {"title": "Mine"}))
    sandbox.touch_ticket(landed["id"], title=TYPED)
    sandbox.touch_ticket(changed["id"], title="Theirs")
    rows_before = {entry.pk: entry.outcomes.count() for entry in entries}

    barrier = threading.Barrier(2)
    first_read = threading.local()
    read = thena.get_ticket

    def get_ticket(ticket_id):
        if not getattr(first_read, "done", False):
            first_read.done = True
            barrier.wait(timeout=20)  # both have listed every entry by now
        return read(ticket_id)

    monkeypatch.setattr(thena, "get_ticket", get_ticket)
    results, errors = [], []

    def reconcile():
        try:
            before_each()
            results.append(audit_reconcile(min_age_seconds=0))
        except BaseException as error:  # reported below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=reconcile) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    total = {key: sum(result[key] for result in results) for key in results[0]}
    assert total == {"succeeded": 3, "failed": 3, "unknown": 3, "skipped": 0, "already_settled": 9}
    for entry in entries:
        assert entry.outcomes.count() == rows_before[entry.pk] + 1, entry.pk
    current = AuditEntry.objects.with_current_outcome().filter(pk__in=[e.pk for e in entries])
    assert sorted(current.values_list("current_outcome", flat=True)) == (
        ["failed"] * 3 + ["succeeded"] * 3 + ["unknown"] * 3
    )
    assert AuditOutcome.objects.count() == 6 + 9
    assert verify_chain().ok


@pytest.mark.django_db(transaction=True)
def test_two_reconcilers_at_once_settle_each_entry_once(sandbox, thena, monkeypatch):
    _race(sandbox, thena, monkeypatch)


@pytest.mark.postgres
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_two_reconcilers_at_once_as_the_append_only_role(sandbox, thena, monkeypatch):
    """PostgreSQL, each reconciler on its own connection as the README's app role, which
    may only read and append to the audit tables (no row locks: they need UPDATE)."""
    role = f"reconcile_app_{uuid.uuid4().hex[:8]}"
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_database()")
        database = cursor.fetchone()[0]
        for statement in readme_sql(role, f'"{database}"'):
            cursor.execute(statement)

    def as_app_role():
        with connection.cursor() as cursor:
            cursor.execute(f"SET ROLE {role}")

    try:
        _race(sandbox, thena, monkeypatch, before_each=as_app_role)
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP OWNED BY {role}")
            cursor.execute(f"DROP ROLE {role}")
