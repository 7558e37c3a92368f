"""The CSV export of a filter, streamed in keyset chunks, and logged itself."""

import csv
import json
from collections.abc import Iterator
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser

from ..models import (
    AuditEntry,
    AuditOutcome,
    Outcome,
)
from .chain import RequestMeta, _iso, record_attempt
from .queries import AuditFilter, Cursor, _entries, _in_form_order

EXPORT_CHUNK = 2000
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


EXPORT_COLUMNS = (
    "id",
    "created_at_utc",
    "actor",
    "actor_email",
    "action",
    "ticket_id",
    "ticket_identifier",
    "ticket_title",
    "team_id",
    "fields_changed",
    "changes_json",
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
    as it stood when asked for)."""
    entry = record_attempt(
        action="audit.export",
        actor=actor,
        ticket=None,
        changes={},
        request_body={"filters": filters.as_params()},
        outcome=Outcome.SUCCEEDED,
        meta=meta,
    )
    return _csv_lines(filters, team_ids, Cursor.after(entry))


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
        for entry in chunk:
            yield writer.writerow(_export_row(entry, latest.get(entry.pk)))
        if len(entries) <= EXPORT_CHUNK:
            return
        cursor = Cursor.after(chunk[-1])


def _export_row(entry: AuditEntry, outcome: AuditOutcome | None) -> list[Any]:
    row = [
        entry.id,
        _iso(entry.created_at),
        entry.actor_username,
        entry.actor_email,
        entry.action,
        entry.ticket_id,
        entry.ticket_identifier,
        entry.ticket_title,
        entry.team_id,
        ", ".join(_in_form_order(entry.changes)),
        json.dumps(entry.changes, ensure_ascii=False, sort_keys=True),
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
    ]
    return [_cell(value) for value in row]


def _cell(value: Any) -> Any:
    """Neutralise a cell a spreadsheet would read as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value
