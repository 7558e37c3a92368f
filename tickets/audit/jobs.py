"""Audit exports too large to stream: the task worker writes the file to the "exports"
storage (settings.STORAGES), the requester watches its progress and downloads it.

An export of more than EXPORT_BACKGROUND_ROWS entries (a bounded count decides) becomes
an ExportJob. Its audit entry is written when it is asked for, like a streamed export's,
and settled succeeded only once the whole file, trailer included, is in storage (with the
row count and the file's SHA-256); a failure, or a worker that stopped, settles it failed.
The file and its link last EXPORT_RETENTION_HOURS.
"""

import logging
import tempfile
import time
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.files import File
from django.core.files.storage import storages
from django.db import transaction

from ..models import Action, AuditEntry, ExportJob, Outcome
from . import export
from .chain import RequestMeta, record_attempt
from .queries import AuditFilter, AuditFilterForm, Cursor

logger = logging.getLogger(__name__)

FORMATS = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson; charset=utf-8"}
PROGRESS_EVERY = 1.0  # seconds between progress writes
STALE_AFTER = timedelta(minutes=5)  # a running job not heard from this long has died


def storage():
    return storages["exports"]


def export_job_start(
    *,
    actor,
    filters: AuditFilter,
    team_ids: frozenset[str] | None,
    fmt: str,
    meta: RequestMeta,
    at_least: int,
) -> ExportJob:
    """Record the export (pending) and queue its job; `at_least` is what the bounded count
    found."""
    from ..tasks import export_run

    with transaction.atomic():
        entry = record_attempt(
            action=Action.AUDIT_EXPORT,
            actor=actor,
            ticket=None,
            changes={},
            request_body={"filters": filters.as_params(), "format": fmt, "background": True},
            outcome=Outcome.PENDING,
            meta=meta,
        )
        job = ExportJob.objects.create(
            created_by=actor,
            format=fmt,
            filters=filters.as_params(),
            team_ids=None if team_ids is None else sorted(team_ids),
            entry_id=entry.pk,
            rows_expected=at_least,
        )
        transaction.on_commit(lambda: export_run.enqueue(str(job.pk)))
    return job


def export_job_get(*, user, job_id) -> ExportJob | None:
    """The job when `user` may see it: who asked for it, or another reader of the audit
    log whose teams include every team it covers. None otherwise (a 404)."""
    from ..services import team_scope_get

    job = ExportJob.objects.filter(pk=job_id).first()
    if job is None or not user.has_perm("tickets.view_auditentry"):
        return None
    if job.created_by_id == user.pk:
        return job
    scope = team_scope_get(user)
    if scope is None:
        return job
    return job if job.team_ids is not None and set(job.team_ids) <= scope else None


def downloadable(job: ExportJob) -> bool:
    now = datetime.now(UTC)
    return job.state == ExportJob.State.DONE and bool(job.expires_at and job.expires_at > now)


def export_run(job_id: str) -> str:
    """The task: write the job's file to storage, then settle its audit entry."""
    with transaction.atomic():
        job = ExportJob.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.state != ExportJob.State.QUEUED:
            return "gone" if job is None else job.state
        job.state, job.heartbeat_at = ExportJob.State.RUNNING, datetime.now(UTC)
        job.save(update_fields=["state", "heartbeat_at"])
    entry = AuditEntry.objects.get(pk=job.entry_id)
    form = AuditFilterForm(job.filters)
    form.is_valid()  # kept as the request's own filters, which were valid
    team_ids = None if job.team_ids is None else frozenset(job.team_ids)
    total = export.export_count(form.filters(), team_ids, limit=None)
    ExportJob.objects.filter(pk=job.pk).update(rows_expected=total)
    started, tally = time.monotonic(), export.Tally()
    pieces = export.export_pieces(job.format, form.filters(), team_ids, Cursor.after(entry), tally)
    try:
        with tempfile.TemporaryFile() as file:
            beat = time.monotonic()
            for text, _ in pieces:
                file.write(text.encode())
                if time.monotonic() - beat >= PROGRESS_EVERY:
                    beat = time.monotonic()
                    ExportJob.objects.filter(pk=job.pk).update(
                        rows_done=tally.rows, heartbeat_at=datetime.now(UTC)
                    )
            size = file.tell()
            file.seek(0)
            name = storage().save(f"audit-{job.pk}.{job.format}", File(file))
    except Exception as error:
        logger.exception("Background audit export %s failed", job.pk)
        message = f"The export failed after {tally.rows} rows ({type(error).__name__})."
        _finish(job, entry, Outcome.FAILED, started, message, rows_done=tally.rows)
        return "failed"
    message = f"{tally.rows} rows exported in the background; SHA-256 {tally.sha256}."
    _finish(
        job,
        entry,
        Outcome.SUCCEEDED,
        started,
        message,
        rows_done=tally.rows,
        file_name=name,
        size=size,
        sha256=tally.sha256,
        expires_at=datetime.now(UTC) + timedelta(hours=settings.EXPORT_RETENTION_HOURS),
    )
    return "done"


def _finish(job, entry, outcome: str, started: float, message: str, **fields) -> None:
    state = ExportJob.State.DONE if outcome == Outcome.SUCCEEDED else ExportJob.State.FAILED
    ExportJob.objects.filter(pk=job.pk).update(
        state=state, message=message, finished_at=datetime.now(UTC), **fields
    )
    export.settle(entry, outcome, started, message)


def exports_prune() -> int:
    """Delete the files whose time is up, and fail the jobs whose worker stopped (their
    entries settled failed: a file never finished). Run by the reconcile sweep."""
    now = datetime.now(UTC)
    expired = ExportJob.objects.filter(state=ExportJob.State.DONE, expires_at__lte=now)
    count = 0
    for job in expired.exclude(file_name=""):
        storage().delete(job.file_name)
        ExportJob.objects.filter(pk=job.pk).update(file_name="")
        count += 1
    stale = ExportJob.objects.filter(
        state=ExportJob.State.RUNNING, heartbeat_at__lt=now - STALE_AFTER
    )
    for job in stale:
        entry = AuditEntry.objects.get(pk=job.entry_id)
        message = f"The worker stopped after {job.rows_done} rows: no file was finished."
        _finish(job, entry, Outcome.FAILED, time.monotonic(), message)
    return count
