"""The CSV export of a filter, streamed in keyset chunks, and logged itself."""

import csv
import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser

from ..models import (
    Action,
    AuditEntry,
    AuditOutcome,
    Outcome,
)
from .chain import RequestMeta, _iso, record_attempt, record_outcome
from .queries import AuditFilter, Cursor, _entries, _in_form_order
from .words import change_lines, revert_numbers

logger = logging.getLogger(__name__)

EXPORT_CHUNK = 2000
FAILED_LINE = "EXPORT FAILED"  # how the last line of an incomplete file starts
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CHANGE_TEXT = 200  # characters of a value in changes_text (changes_json has them whole)


EXPORT_COLUMNS = (
    "number",
    "created_at_utc",
    "actor",
    "actor_email",
    "action",
    "ticket_id",
    "ticket_identifier",
    "ticket_title",
    "team_id",
    "team_name",  # as it was when the entry was written
    "fields_changed",
    "changes_json",
    "changes_text",  # the changes in words, names beside ids where they were recorded
    "reason",
    "revert_of_number",  # the number of the entry this one reverts
    "request_body_json",
    "request_id",
    "client_ip",
    "user_agent",
    "current_outcome",
    "status_code",
    "message",
    "upstream_updated_at",
    "duration_ms",
    "hash",
    "chain_id",  # the row's position in the hash chain (verify_audit_log names rows by it)
    "batch_id",  # the bulk edit the entry is part of; empty for a single edit
)


def audit_export(
    *,
    actor: AbstractBaseUser,
    filters: AuditFilter,
    team_ids: frozenset[str] | None = None,
    meta: RequestMeta,
) -> Iterator[str]:
    """Record the export, then return the CSV lines of every entry matching `filters`
    written before it (the export's own entry bounds the stream, so the file is the log
    as it stood when asked for).

    The entry is written pending before the first line and settled once the stream ends:
    succeeded when every line was produced and taken, failed when producing one failed
    (then the file's last line says EXPORT FAILED) or the client stopped reading. An
    export whose process died midway stays pending: never "succeeded"."""
    entry = record_attempt(
        action=Action.AUDIT_EXPORT,
        actor=actor,
        ticket=None,
        changes={},
        request_body={"filters": filters.as_params()},
        outcome=Outcome.PENDING,
        meta=meta,
    )
    return _settled(entry, _csv_lines(filters, team_ids, Cursor.after(entry)))


def _settled(entry: AuditEntry, lines: Iterator[str]) -> Iterator[str]:
    """`lines`, then the export's outcome recorded on `entry`; a failure midway ends the
    file with one EXPORT FAILED line instead of breaking the download off silently."""
    started, rows = time.monotonic(), -1  # the header is no row
    try:
        for line in lines:
            yield line
            rows += 1
    except GeneratorExit:  # the server closed the stream: the client went away
        message = f"Stopped after {max(rows, 0)} rows: the download was not read to the end."
        _settle(entry, Outcome.FAILED, started, message)
        raise
    except Exception as error:
        logger.exception("Audit export #%s failed after %s rows", entry.pk, max(rows, 0))
        message = (
            f"The file is incomplete: the export failed after {max(rows, 0)} rows "
            f"({type(error).__name__}). The audit log records this export as failed."
        )
        _settle(entry, Outcome.FAILED, started, message)
        writer = csv.writer(_Line())
        if rows < 0:
            yield writer.writerow(EXPORT_COLUMNS)
        yield writer.writerow([f"{FAILED_LINE}: {message}"])
        return
    _settle(entry, Outcome.SUCCEEDED, started, f"{rows} rows exported.")


def _settle(entry: AuditEntry, outcome: str, started: float, message: str) -> None:
    try:
        record_outcome(
            entry=entry,
            outcome=outcome,
            message=message,
            duration_ms=round((time.monotonic() - started) * 1000),
        )
    except Exception:  # the database itself may be what failed: the entry stays pending
        logger.exception("Could not record the outcome of audit export #%s", entry.pk)


class _Line:
    """csv.writer writes one row into this and gets the line back."""

    def write(self, value: str) -> str:
        return value


def _csv_lines(filters, team_ids, cursor: Cursor) -> Iterator[str]:
    writer = csv.writer(_Line())
    yield writer.writerow(EXPORT_COLUMNS)
    while True:
        entries = _entries(filters, cursor, team_ids, EXPORT_CHUNK + 1)
        chunk = entries[:EXPORT_CHUNK]
        latest = {
            row.entry_id: row
            for row in AuditOutcome.objects.filter(entry__in=[e.pk for e in chunk])
            .order_by("entry_id", "id")
            .iterator()
        }
        numbers = revert_numbers(chunk)
        for entry in chunk:
            yield writer.writerow(_export_row(entry, latest.get(entry.pk), numbers))
        if len(entries) <= EXPORT_CHUNK:
            return
        cursor = Cursor.after(chunk[-1])


def _export_row(
    entry: AuditEntry, outcome: AuditOutcome | None, originals: dict[int, int]
) -> list[Any]:
    """One CSV row; `originals` has the numbers of reverted entries, by entry id."""
    row = [
        entry.number,
        _iso(entry.created_at),
        entry.actor_username,
        entry.actor_email,
        entry.action,
        entry.ticket_id,
        entry.ticket_identifier,
        entry.ticket_title,
        entry.team_id,
        entry.team_name or "",
        ", ".join(_in_form_order(entry.changes)),
        json.dumps(entry.changes, ensure_ascii=False, sort_keys=True),
        "; ".join(change_lines(entry.changes, limit=CHANGE_TEXT, tz=UTC)),
        entry.reason or "",
        originals.get(entry.revert_of, "") if entry.revert_of else "",
        json.dumps(entry.request_body, ensure_ascii=False, sort_keys=True),
        entry.request_id,
        entry.client_ip or "",
        entry.user_agent,
        outcome.outcome if outcome else entry.outcome,
        outcome.status_code if outcome and outcome.status_code is not None else "",
        outcome.message if outcome else entry.message,
        outcome.upstream_updated_at if outcome else "",
        outcome.duration_ms if outcome and outcome.duration_ms is not None else "",
        entry.hash,
        entry.id,
        entry.batch_id or "",
    ]
    return [csv_cell(value) for value in row]


def csv_cell(value: Any) -> Any:
    """Neutralise a cell a spreadsheet would read as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value
