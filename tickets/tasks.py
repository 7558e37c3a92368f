"""Background work on Django's tasks framework: settings.TASKS queues it in the database
(django_tasks_db), shared by every instance, and `manage.py db_worker` runs it.

Settling the audit log (tickets.audit.reconcile):
- an edit recorded "unknown" queues `reconcile_entry` for when the in-flight window has
  passed (services._queue_reconcile);
- `reconcile_sweep` settles every pending or unknown entry older than that window, and
  queues its own next run AUDIT_RECONCILE_MINUTES later: one chain of sweeps per
  deployment, started by `manage.py schedule_reconcile` (run it before each worker; it
  queues nothing while a sweep is queued). It catches entries whose task was never
  queued: a failed enqueue, a process that died between the intent and the outcome.

Bulk edits (tickets/bulk.py): confirming a batch queues `bulk_run`. Each run also queues
one to look again after BULK_LEASE_SECONDS, which takes the batch over if its worker died
(or looks again later while it lives); the sweep and `schedule_reconcile` resume any batch
left without a live worker.

Reconciliation is idempotent: a task run twice, several workers, and the cron command
`reconcile_audit` at the same time settle each entry once.
"""

import logging
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.tasks import TaskResultStatus, task
from django_tasks_db.models import DBTaskResult

from .audit import reconcile

logger = logging.getLogger(__name__)

# Any fixed bigint other than the audit chain's lock; the same for every host.
SWEEP_LOCK_ID = 0x7468656E6173  # "thenas"


@task
def reconcile_entry(entry_id: int) -> dict[str, int]:
    """Settle one entry recorded "unknown". It was queued to run after the in-flight
    window, and its request has ended (it recorded the outcome), so no age is checked."""
    if not _reads_the_edited_thena():
        return {}
    return reconcile.audit_reconcile(min_age_seconds=0, entry_id=entry_id)


@task
def bulk_run(batch_id: str) -> str:
    from . import bulk

    return bulk.batch_run(batch_id)


@task
def reconcile_sweep() -> dict[str, int]:
    """Settle every pending or unknown entry older than the in-flight window. The next run
    is queued first, so a run that fails (a bug, a database error) does not end the
    chain, and one whose worker is killed has its successor queued already."""
    schedule_sweep(delay=timedelta(minutes=settings.AUDIT_RECONCILE_MINUTES))
    from . import bulk

    bulk.resume_stalled()
    bulk.drafts_prune()
    from .audit import jobs

    jobs.exports_prune()
    if not _reads_the_edited_thena():
        return {}
    return reconcile.audit_reconcile(min_age_seconds=reconcile.IN_FLIGHT_SECONDS)


def schedule_sweep(*, delay: timedelta = timedelta(0)):
    """Queue a sweep to run after `delay`, unless one is queued already (READY; the sweep
    now running is not); returns its task result, or None. Check and insert are one
    transaction under a lock, so workers starting together on several hosts queue one."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [SWEEP_LOCK_ID])
        # SQLite: settings begin every transaction IMMEDIATE, which takes the write lock.
        queued = DBTaskResult.objects.filter(
            task_path=reconcile_sweep.module_path,
            backend_name=reconcile_sweep.backend,
            status=TaskResultStatus.READY,
        )
        if queued.exists():
            return None
        return reconcile_sweep.using(run_after=datetime.now(UTC) + delay).enqueue()


def _reads_the_edited_thena() -> bool:
    """Evidence counts only when read from the Thena the edits went to. Without
    THENA_API_BASE_URL every process has its own in-process sandbox: a worker would read
    its own untouched copy and call a lost edit "failed". (Tests install the client they
    edit through and set the URL.)"""
    if settings.THENA_API_BASE_URL:
        return True
    logger.warning(
        "Audit reconciliation skipped: this worker's in-process sandbox is not the Thena "
        "the edits went to. Run `manage.py thena_sandbox` and set THENA_API_BASE_URL for "
        "every process."
    )
    return False


@task
def events_process() -> int:
    """Process the Thena events /webhooks/thena/ stored (tickets/events.py)."""
    from . import events

    return events.events_process()


@task
def export_run(job_id: str) -> str:
    """Write a large audit export to storage (tickets/audit/jobs.py)."""
    from .audit import jobs

    return jobs.export_run(job_id)
