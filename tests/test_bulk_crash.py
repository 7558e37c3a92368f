"""Crash safety of bulk edits as deployed: `manage.py db_worker` processes on the test
database, the sandbox over real HTTP, and `kill -9` of the worker in the middle of a
batch. A new worker (started after `schedule_reconcile`, as compose.yaml does) takes the
batch over once the dead one's lease has run out; no ticket is patched twice, and after
`reconcile_audit` every ticket has an outcome backed by evidence.

The sandbox runs in this process, behind a gate that holds requests at a chosen point
(a chunk's PATCH in flight, a chunk's re-reads): the worker is killed exactly there, and
what reached Thena is read from the sandbox's own request log."""

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path

import pytest
from django.tasks import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from tests.util import deployed_environment, process_stop, served_over_http, shared_cache_clear
from tickets import bulk, locks, tasks
from tickets.audit import RequestMeta
from tickets.models import AuditEntry, Batch, BatchItem, TicketEditLock
from tickets.thena.client import get_client
from tickets.thena.sandbox import SandboxApp, SandboxConfig
from tickets.thena.sandbox.app import SandboxConnectionDropped

pytestmark = [pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parent.parent
TICKETS = 200
CHUNK = 10
LEASE = 5  # seconds; long enough to see that nothing takes over before it runs out
META = RequestMeta(request_id="req-bulk-crash", client_ip="192.0.2.9", user_agent="pytest")
TICKET_PATH = r"/v1/tickets/(?!status$|priority$|type$|sentiment$|bulk$)[^/]+"
PATCH_PATH = r"/v1/tickets/.+"


class Gate:
    """The sandbox behind a gate. Armed, it lets `after` more requests of `method` on
    paths matching `path` through, then holds every further one until released: then
    they are carried out, or dropped (they never reach Thena)."""

    def __init__(self, app: SandboxApp) -> None:
        self.app = app
        self.held = threading.Event()
        self._open = threading.Event()
        self._lock = threading.Lock()
        self._rule: list | None = None
        self._carry_out = True

    def arm(self, method: str, path: str, *, after: int) -> None:
        with self._lock:
            self._rule = [method, re.compile(path), after]
            self.held.clear()
            self._open.clear()

    def release(self, *, carry_out: bool) -> None:
        with self._lock:
            self._rule, self._carry_out = None, carry_out
        self._open.set()

    def __call__(self, environ: dict, start_response):
        if self._holds(environ["REQUEST_METHOD"], environ.get("PATH_INFO") or "/"):
            self.held.set()
            self._open.wait(timeout=120)
            if not self._carry_out:
                raise SandboxConnectionDropped("held, then dropped")
        return self.app(environ, start_response)

    def _holds(self, method: str, path: str) -> bool:
        with self._lock:
            rule = self._rule
            if rule is None or method != rule[0] or not rule[1].fullmatch(path):
                return False
            if rule[2] > 0:
                rule[2] -= 1
                return False
            return True


def _environment(thena_url: str) -> dict[str, str]:
    """What a deployment sets for its worker, with small chunks and a short lease."""
    return deployed_environment(
        thena_url,
        BULK_CHUNK_SIZE=str(CHUNK),
        BULK_LEASE_SECONDS=str(LEASE),
        # An edit lock's lease is the budget + 10 s: a dead worker's locks expire sooner.
        THENA_REQUEST_BUDGET_SECONDS="3",
    )


class Deployment:
    def __init__(self, stack: ExitStack, sandbox: SandboxApp, gate: Gate, env: dict, logs: Path):
        self.stack, self.sandbox, self.gate, self.env, self.logs = stack, sandbox, gate, env, logs
        self.workers: list[subprocess.Popen] = []
        self.killed: list[subprocess.Popen] = []

    def manage(self, *args: str) -> str:
        """Run a management command as a deployment's cron or entrypoint would."""
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"{args}: {done.stdout}{done.stderr}"
        return done.stdout

    def start_worker(self) -> subprocess.Popen:
        """`schedule_reconcile && exec db_worker`, as compose.yaml's worker."""
        self.manage("schedule_reconcile")
        log = self.logs / f"worker-{len(self.workers) + 1}.log"
        out = self.stack.enter_context(log.open("w"))
        worker = subprocess.Popen(
            [sys.executable, "manage.py", "db_worker"],
            cwd=ROOT,
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        self.stack.callback(process_stop, worker)
        self.workers.append(worker)
        return worker

    def kill(self, worker: subprocess.Popen) -> None:
        """kill -9: no signal handler, no `finally`, no last commit."""
        self.killed.append(worker)
        os.kill(worker.pid, signal.SIGKILL)
        assert worker.wait(timeout=10) == -signal.SIGKILL

    def log(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text()[-3000:]}"
            for path in sorted(self.logs.glob("worker-*.log"))
        )


@pytest.fixture
def deployment(tmp_path, manager, settings):
    sandbox = SandboxApp(SandboxConfig(latency_ms=30, ticket_count=1000, rate_window_seconds=3600))
    gate = Gate(sandbox)
    with ExitStack() as stack:
        stack.callback(shared_cache_clear)  # last: the workers' lookups and pauses
        stack.enter_context(served_over_http(gate))
        url = get_client().base_url
        settings.THENA_API_BASE_URL = url
        stack.callback(gate.release, carry_out=False)  # no held thread outlives the test
        yield Deployment(stack, sandbox, gate, _environment(url), tmp_path)


def _confirmed_batch(deployment: Deployment, manager) -> Batch:
    """TICKETS tickets of the support team, each needing both values: the preview and
    the confirmation, through the service (the sandbox over HTTP)."""
    support = next(t for t in deployment.sandbox.tickets() if t["teamIdentifier"] == "SUP")
    team_id = support["teamId"]
    _, choices = bulk.bulk_team_load(user=manager, team_id=team_id)
    statuses = [value for value, _ in choices.for_field("statusId")]
    priorities = [value for value, _ in choices.for_field("priorityId")]
    ours = [t for t in deployment.sandbox.tickets() if t["teamId"] == team_id]

    def needing(status, priority):
        return [t for t in ours if t["statusId"] != status and t["priorityId"] != priority]

    status, priority = max(
        ((s, p) for s in statuses for p in priorities), key=lambda pair: len(needing(*pair))
    )
    picked = needing(status, priority)[:TICKETS]
    assert len(picked) == TICKETS
    batch = bulk.batch_preview_create(
        user=manager,
        selection=bulk.Selection(team_id=team_id, ticket_ids=tuple(t["id"] for t in picked)),
        values={"statusId": status, "priorityId": priority},
        value_labels={"statusId": "S", "priorityId": "P"},
        reason="Crash drill",
        meta=META,
    )
    assert batch.items.count() == TICKETS
    bulk.batch_confirm(user=manager, batch=batch)
    return batch


def _states(batch: Batch) -> dict[str, int]:
    return dict(Counter(batch.items.values_list("state", flat=True)))


def _patched(sandbox: SandboxApp) -> Counter:
    """How many PATCHes reached Thena for each ticket (bulk ones count per ticket id)."""
    sent: Counter = Counter()
    for request in list(sandbox.requests):
        if request.method != "PATCH":
            continue
        if request.path.rstrip("/") == "/v1/tickets/bulk":
            sent.update((request.json or {}).get("ticketIds") or [])
        else:
            sent[request.path.rstrip("/").rsplit("/", 1)[-1]] += 1
    return sent


def _wait(deployment: Deployment, what: str, done, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        dead = [
            w for w in deployment.workers if w.poll() is not None and w not in deployment.killed
        ]
        assert not dead, f"the worker exited while waiting for {what}:\n{deployment.log()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{deployment.log()}"
        time.sleep(0.02)


def _wait_held(deployment: Deployment, what: str) -> None:
    _wait(deployment, what, deployment.gate.held.is_set, timeout=60)


def _done(batch: Batch) -> int:
    return batch.items.filter(state="done").count()


def _claim(batch: Batch) -> tuple[str, object]:
    """The live claim on the batch: (runner, its last heartbeat)."""
    batch.refresh_from_db()
    assert batch.state == Batch.State.RUNNING and batch.runner
    return batch.runner, batch.heartbeat_at


def _early_run(batch: Batch) -> None:
    """A run of the batch due at once, while the dead worker's claim still looks alive
    (as an earlier run's look-again may be): it must leave the batch alone."""
    tasks.bulk_run.enqueue(str(batch.pk))


def _taken_over_after_the_lease(batch: Batch, dead: tuple[str, object]) -> None:
    """The dead run's claim was taken over, and only by a run that started once its lease
    had run out: every bulk_run task started before then found the batch "busy"."""
    runner, heartbeat = dead
    batch.refresh_from_db()
    assert batch.runner != runner
    expiry = heartbeat + timedelta(seconds=LEASE)
    runs = DBTaskResult.objects.filter(task_path=tasks.bulk_run.module_path)
    early = runs.filter(started_at__gte=heartbeat, started_at__lt=expiry)
    assert all(
        (run.status, run.return_value) == (TaskResultStatus.SUCCESSFUL, "busy") for run in early
    ), [(run.status, run.return_value, run.started_at, expiry) for run in early]
    assert runs.filter(started_at__gte=expiry).exists()


def _settled(deployment: Deployment, batch: Batch) -> list[bulk.ResultRow]:
    """After the batch: reconciliation as the cron runs it; then what each item ended as."""
    out = deployment.manage("reconcile_audit", "--min-age-seconds", "0")
    assert "0 still unknown" in out and "0 left unsettled" in out, out
    verified = deployment.manage("verify_audit_log")
    assert "Audit log intact" in verified
    return list(bulk.batch_results(batch))


def _assert_integrity(deployment: Deployment, batch: Batch, rows: list[bulk.ResultRow]) -> None:
    batch.refresh_from_db()
    assert batch.state == Batch.State.DONE
    # Every item done, with an outcome that is not "unknown" any more.
    assert _states(batch) == {BatchItem.State.DONE: TICKETS}
    assert all(row.outcome in ("succeeded", "failed") for row in rows), Counter(
        row.outcome for row in rows
    )
    # The audit log: one entry per ticket sent, all of this batch, none left open.
    entries = AuditEntry.objects.filter(action="ticket.update")
    assert set(entries.values_list("batch_id", flat=True)) == {str(batch.pk)}
    for outcome in ("pending", "unknown"):
        assert not entries.for_outcome(outcome).exists(), outcome
    sent = [row for row in rows if row.item.entry_id]
    assert entries.count() == len(sent)
    assert len({row.item.entry_id for row in sent}) == len(sent)
    # What succeeded is on the ticket; what failed is not.
    for row in rows:
        now = deployment.sandbox.ticket(row.item.ticket_id)
        holds = all(now[name] == value for name, value in batch.values.items())
        assert holds == (row.outcome == "succeeded"), (row.item.ticket_id, row.outcome)


def test_killed_twice_the_batch_resumes_and_sends_each_ticket_once(deployment, manager):
    """First kill: while a chunk's bulk PATCH is in flight (its items "sending"); Thena
    carries it out, the answer goes nowhere. Second kill: while the next worker re-reads a
    chunk (its edit locks taken, its items still queued)."""
    batch = _confirmed_batch(deployment, manager)

    # Kill 1: ten chunks done (over a second after the claim: the first run's own look
    # again after the lease comes before the lease of its last heartbeat runs out), the
    # eleventh chunk's PATCH held at Thena's door.
    deployment.gate.arm("PATCH", PATCH_PATH, after=10)
    first = deployment.start_worker()
    _wait_held(deployment, "the eleventh chunk's PATCH")
    dead = _claim(batch)
    deployment.kill(first)
    _early_run(batch)
    assert _states(batch) == {"done": 10 * CHUNK, "sending": CHUNK, "queued": TICKETS - 11 * CHUNK}
    in_flight = set(batch.items.filter(state="sending").values_list("ticket_id", flat=True))
    deployment.gate.release(carry_out=True)  # Thena applies it; nobody reads the answer
    _wait(
        deployment,
        "Thena to apply the held PATCH",
        lambda: len(_patched(deployment.sandbox)) == 11 * CHUNK,
    )

    # Kill 2: the next worker re-reads three chunks, the fourth one's GETs are held.
    deployment.gate.arm("GET", TICKET_PATH, after=3 * CHUNK)
    second = deployment.start_worker()
    _wait_held(deployment, "the next worker's re-reads")
    # A chunk's re-reads start as soon as the chunk before is answered: wait for that
    # chunk's outcomes to be written, so the kill lands on the re-reads alone.
    _wait(deployment, "the third chunk's outcomes", lambda: _done(batch) == 14 * CHUNK)
    # It waited out the first worker's lease before it took the batch over.
    _taken_over_after_the_lease(batch, dead)
    dead = _claim(batch)
    deployment.kill(second)
    _early_run(batch)
    # The interrupted items were not sent again: "unknown", left to reconciliation.
    interrupted = batch.items.filter(ticket_id__in=in_flight)
    assert set(interrupted.values_list("state", "outcome")) == {("done", "unknown")}
    locked = list(
        batch.items.filter(position__range=(14 * CHUNK, 15 * CHUNK - 1)).order_by("position")
    )
    assert {(i.state, i.attempts) for i in locked} == {("queued", 0)}
    # Their edit locks are still held, by the dead worker, until they expire (as are the
    # in-flight chunk's, by the first one).
    keys = set(TicketEditLock.objects.values_list("key", flat=True))
    assert keys == {locks._key(t) for t in [*in_flight, *(i.ticket_id for i in locked)]}
    assert _states(batch) == {"done": 14 * CHUNK, "queued": TICKETS - 14 * CHUNK}
    deployment.gate.release(carry_out=True)

    # A third worker takes the batch over and finishes it: the tickets the dead worker
    # still holds come last, once their locks expire.
    deployment.start_worker()
    _wait(deployment, "the batch to finish", lambda: Batch.objects.get(pk=batch.pk).state == "done")
    _taken_over_after_the_lease(batch, dead)

    # Each ticket reached Thena exactly once, the in-flight chunk included.
    patched = _patched(deployment.sandbox)
    assert set(patched) == set(batch.items.values_list("ticket_id", flat=True))
    assert set(patched.values()) == {1}

    rows = _settled(deployment, batch)
    _assert_integrity(deployment, batch, rows)
    # The held chunk was applied: reconciliation found every value on those tickets.
    assert Counter(row.outcome for row in rows) == {"succeeded": TICKETS}


def test_killed_with_a_patch_that_never_arrives_the_tickets_end_failed(deployment, manager):
    """The worker dies while a chunk's PATCH is on its way, and the PATCH is lost: those
    tickets are never sent again, and reconciliation settles them "failed" (the ticket
    is as it was just before)."""
    batch = _confirmed_batch(deployment, manager)
    deployment.gate.arm("PATCH", PATCH_PATH, after=10)
    first = deployment.start_worker()
    _wait_held(deployment, "the eleventh chunk's PATCH")
    dead = _claim(batch)
    deployment.kill(first)
    _early_run(batch)
    lost = set(batch.items.filter(state="sending").values_list("ticket_id", flat=True))
    assert len(lost) == CHUNK
    deployment.gate.release(carry_out=False)

    deployment.start_worker()
    _wait(deployment, "the batch to finish", lambda: Batch.objects.get(pk=batch.pk).state == "done")
    _taken_over_after_the_lease(batch, dead)
    # Not sent again: left "unknown" by the next run, for reconciliation to settle.
    interrupted = batch.items.filter(ticket_id__in=lost)
    assert set(interrupted.values_list("state", "outcome")) == {("done", "unknown")}

    patched = _patched(deployment.sandbox)
    assert set(patched.values()) == {1}
    assert set(patched) == set(batch.items.values_list("ticket_id", flat=True)) - lost

    rows = _settled(deployment, batch)
    _assert_integrity(deployment, batch, rows)
    outcomes = {row.item.ticket_id: row.outcome for row in rows}
    assert {outcomes[t] for t in lost} == {"failed"}
    assert Counter(outcomes.values()) == {"succeeded": TICKETS - CHUNK, "failed": CHUNK}


def test_a_takeover_within_the_edit_locks_lease_sends_the_locked_tickets_later(deployment, manager):
    """Killed while re-reading a chunk (its edit locks taken, its items queued), with a
    lease shorter than an edit lock's: the next run finds those tickets busy. A busy
    ticket is no fault of its own; it should be sent once its lock expires."""
    batch = _confirmed_batch(deployment, manager)
    deployment.gate.arm("GET", TICKET_PATH, after=10 * CHUNK)
    first = deployment.start_worker()
    _wait_held(deployment, "the eleventh chunk's re-reads")
    _wait(deployment, "the tenth chunk's outcomes", lambda: _done(batch) == 10 * CHUNK)
    deployment.kill(first)
    locked = set(
        batch.items.filter(position__range=(10 * CHUNK, 11 * CHUNK - 1)).values_list(
            "ticket_id", flat=True
        )
    )
    keys = set(TicketEditLock.objects.values_list("key", flat=True))
    assert keys == {locks._key(t) for t in locked}
    deployment.gate.release(carry_out=True)

    deployment.start_worker()
    _wait(deployment, "the batch to finish", lambda: Batch.objects.get(pk=batch.pk).state == "done")
    patched = _patched(deployment.sandbox)
    assert set(patched.values()) == {1}
    ended = {i.ticket_id: (i.outcome, i.message) for i in batch.items.filter(ticket_id__in=locked)}
    assert {outcome for outcome, _ in ended.values()} == {"succeeded"}, ended
