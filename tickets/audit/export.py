"""The CSV export of a filter, streamed in keyset chunks, and logged itself.

Made to keep at least half the pace of a bare SELECT of the same rows into csv.writer
(bench/export_speed.py), with memory constant in the rows: each chunk is one query that
joins every entry's latest outcome row and is read as plain tuples, the cells are made
without a per-row lookup, and the file leaves in pieces of about PIECE_CHARS characters
rather than a line at a time. tests/test_export_speed.py holds the file to what the model
instances and words.change_lines give."""

import csv
import hashlib
import io
import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, tzinfo
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import EmptyResultSet
from django.db import connections
from django.db.models import FilteredRelation, OuterRef, Q, Subquery

from ..models import (
    Action,
    AuditEntry,
    AuditOutcome,
    Outcome,
)
from ..thena import schema
from .chain import AlreadySettled, RequestMeta, _iso, record_attempt, record_outcome
from .queries import REVERTED, AuditFilter, Cursor, _before, _ids, _reverted_page, _streams
from .words import change_lines

logger = logging.getLogger(__name__)

EXPORT_CHUNK = 5000  # entries per keyset query (building and planning one takes ~2 ms)
PIECE_CHARS = 64 * 1024  # about how much of the file each piece of the response holds
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

# What a row is made from, in this order: the entry's columns, then those of its latest
# outcome row (all None when it has none), joined in the same query.
ROW_FIELDS = (
    "id",
    "created_at",
    "number",
    "actor_username",
    "actor_email",
    "action",
    "ticket_id",
    "ticket_identifier",
    "ticket_title",
    "team_id",
    "team_name",
    "changes",
    "request_body",
    "reason",
    "revert_of",
    "request_id",
    "client_ip",
    "user_agent",
    "outcome",
    "message",
    "hash",
    "batch_id",
    "latest__outcome",
    "latest__status_code",
    "latest__message",
    "latest__upstream_updated_at",
    "latest__duration_ms",
)
ID, CREATED_AT, REVERT_OF = (ROW_FIELDS.index(name) for name in ("id", "created_at", "revert_of"))

# json.loads, and json.dumps(value, ensure_ascii=False, sort_keys=True), less what they
# set up on every call (json.dumps a new encoder, the encoder a new C encoder): a tenth of
# the export's time. Both columns always hold a JSON document (a CHECK on SQLite, jsonb on
# PostgreSQL), so the scanner's first value is the whole of it.
_scan = json.JSONDecoder().scan_once
_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=True)
_c_encode = json.encoder.c_make_encoder and json.encoder.c_make_encoder(
    None,  # no check for cycles: decoded JSON has none
    _ENCODER.default,
    json.encoder.encode_basestring,
    None,
    _ENCODER.key_separator,
    _ENCODER.item_separator,
    True,  # sort_keys
    False,  # skipkeys
    True,  # allow_nan
)


def _loads(text: str) -> Any:
    return _scan(text, 0)[0]


def _dumps(value: Any) -> str:
    return "".join(_c_encode(value, 0)) if _c_encode else _ENCODER.encode(value)


def audit_export(
    *,
    actor: AbstractBaseUser,
    filters: AuditFilter,
    team_ids: frozenset[str] | None = None,
    meta: RequestMeta,
    fmt: str = "csv",
) -> Iterator[str]:
    """Record the export, then return the CSV (or, `fmt` "jsonl", JSON Lines) of every
    entry matching `filters` written before it, in pieces of whole lines (the export's own
    entry bounds the stream, so the file is the log as it stood when asked for). The last
    line says the file is complete (see TRAILER), so a file cut short shows it.

    The entry is written pending before the first line and settled once the stream ends:
    succeeded when every line was produced and taken, failed when producing one failed
    (then the file's last line says EXPORT FAILED) or the client stopped reading. An
    export whose process died midway stays pending: never "succeeded"."""
    entry = record_attempt(
        action=Action.AUDIT_EXPORT,
        actor=actor,
        ticket=None,
        changes={},
        request_body={"filters": filters.as_params(), "format": fmt},
        outcome=Outcome.PENDING,
        meta=meta,
    )
    tally = Tally()
    pieces = export_pieces(fmt, filters, team_ids, Cursor.after(entry), tally)
    return _settled(entry, pieces, tally, fmt)


def _settled(
    entry: AuditEntry, pieces: Iterator[tuple[str, int]], tally: "Tally", fmt: str = "csv"
) -> Iterator[str]:
    """The text of `pieces`, then the export's outcome recorded on `entry`; a failure
    midway ends the file with one EXPORT FAILED line (a JSON object in JSON Lines)
    instead of breaking the download off silently, and a file that ends without its
    trailer is incomplete however it ended."""
    started, sent = time.monotonic(), False
    try:
        for text, _ in pieces:
            yield text
            sent = True
    except GeneratorExit:  # the server closed the stream: the client went away
        message = f"Stopped after {tally.rows} rows: the download was not read to the end."
        settle(entry, Outcome.FAILED, started, message)
        raise
    except Exception as error:
        logger.exception("Audit export #%s failed after %s rows", entry.pk, tally.rows)
        message = (
            f"The file is incomplete: the export failed after {tally.rows} rows "
            f"({type(error).__name__}). The audit log records this export as failed."
        )
        settle(entry, Outcome.FAILED, started, message)
        if fmt == "jsonl":
            yield _dumps({"export": "failed", "message": message}) + "\n"
            return
        writer = csv.writer(_Line())
        if not sent:
            yield writer.writerow(EXPORT_COLUMNS)
        yield writer.writerow([f"{FAILED_LINE}: {message}"])
        return
    message = f"{tally.rows} rows exported; SHA-256 {tally.sha256}."
    settle(entry, Outcome.SUCCEEDED, started, message)


# The last line of a complete file: its rows and the SHA-256 of every byte before the
# line. A file without it was cut short (README, "Exports").
TRAILER_MARK = "#export-complete"


class Tally:
    """What export_pieces gave out: rows so far, and once complete the SHA-256 of the
    file before its trailer."""

    def __init__(self) -> None:
        self.rows = 0
        self.sha256 = ""


def export_pieces(
    fmt: str, filters: AuditFilter, team_ids, cursor: Cursor, tally: Tally
) -> Iterator[tuple[str, int]]:
    """The whole file in `fmt` ("csv" or "jsonl") as (text, rows) pieces, the trailer
    last; `tally` follows the rows and, at the end, holds the file's SHA-256."""
    digest = hashlib.sha256()
    pieces = (
        _csv_pieces(filters, team_ids, cursor)
        if fmt == "csv"
        else _jsonl_pieces(filters, team_ids, cursor)
    )
    header = fmt == "csv"
    for text, lines in pieces:
        rows = lines - 1 if header else lines  # the CSV header is no row
        header = False
        digest.update(text.encode())
        tally.rows += rows
        yield text, rows
    tally.sha256 = digest.hexdigest()
    if fmt == "csv":
        cells = [TRAILER_MARK, f"rows={tally.rows}", f"sha256={tally.sha256}"]
        yield csv.writer(_Line()).writerow(cells), 0
    else:
        trailer = {"export": "complete", "rows": tally.rows, "sha256": tally.sha256}
        yield _dumps(trailer) + "\n", 0


_KEYS = [json.dumps(column) for column in EXPORT_COLUMNS]


def _jsonl_pieces(filters, team_ids, cursor: Cursor) -> Iterator[tuple[str, int]]:
    """The entries as JSON Lines, one object per entry with the CSV's columns as keys and
    its values as they are (no spreadsheet quoting): pieces as _csv_pieces gives them."""
    zone = connections[AuditEntry.objects.db].timezone
    parts, size, lines = [], 0, 0
    while True:
        entries = _entries(filters, cursor, team_ids, EXPORT_CHUNK + 1)
        chunk = entries[:EXPORT_CHUNK]
        originals = _reverted_numbers(chunk)
        for values in chunk:
            row = _export_row(values, originals, zone, neutralise=False)
            # The columns in the CSV's order (the encoder sorts keys).
            cells = ",".join(
                f"{key}:{_dumps(value)}" for key, value in zip(_KEYS, row, strict=True)
            )
            line = "{" + cells + "}\n"
            parts.append(line)
            size, lines = size + len(line), lines + 1
            if size >= PIECE_CHARS:
                yield "".join(parts), lines
                parts, size, lines = [], 0, 0
        if len(entries) <= EXPORT_CHUNK:
            break
        last = chunk[-1]
        cursor = Cursor(_aware(last[CREATED_AT], zone), last[ID])
    if parts:
        yield "".join(parts), lines


def export_verify(data: bytes) -> tuple[bool, int, str]:
    """Whether an exported file (CSV or JSON Lines) is complete: its last line is the
    trailer and the rows and SHA-256 it states are those of the bytes before it. Returns
    (complete, rows stated, why not)."""
    body, _, last = data.rstrip(b"\r\n").rpartition(b"\n")
    body += b"\n" if body else b""
    try:
        text = last.decode()
        if text.startswith(TRAILER_MARK):
            _, rows_cell, sha_cell = next(csv.reader([text]))
            rows, sha = int(rows_cell.removeprefix("rows=")), sha_cell.removeprefix("sha256=")
        else:
            trailer = json.loads(text)
            if trailer.get("export") != "complete":
                return False, 0, "the last line is no trailer: the file is incomplete"
            rows, sha = int(trailer["rows"]), str(trailer["sha256"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return False, 0, "the last line is no trailer: the file is incomplete"
    if hashlib.sha256(body).hexdigest() != sha:
        return False, rows, "the SHA-256 does not match: the file was changed or cut"
    return True, rows, ""


def export_count(filters: AuditFilter, team_ids, *, limit: int | None) -> int:
    """How many entries match, counting up to `limit` (a bounded COUNT stops there)."""
    streams = _streams(filters, team_ids, ordered=False)
    if not streams:
        return 0
    rows = streams[0][0]
    try:
        return rows[:limit].count() if limit else rows.count()
    except EmptyResultSet:
        return 0


def settle(entry: AuditEntry, outcome: str, started: float, message: str) -> None:
    """Records an export's outcome, streamed or in the background, on its entry if that is
    still pending: one settled by someone else (the sweep of a stopped worker) stays."""
    try:
        record_outcome(
            entry=entry,
            outcome=outcome,
            message=message,
            duration_ms=round((time.monotonic() - started) * 1000),
            current=Outcome.PENDING,
        )
    except AlreadySettled:
        logger.warning("Audit export #%s was settled by someone else", entry.pk)
    except Exception:  # the database itself may be what failed: the entry stays pending
        logger.exception("Could not record the outcome of audit export #%s", entry.pk)


class _Line:
    """csv.writer writes one row into this and gets the line back."""

    def write(self, value: str) -> str:
        return value


def _csv_pieces(filters, team_ids, cursor: Cursor) -> Iterator[tuple[str, int]]:
    """The file as (text, lines) pieces: the header alone, then the entries, EXPORT_CHUNK
    at a time in keyset order, in pieces of about PIECE_CHARS characters (and one at the
    end of every chunk). A row that cannot be written fails the export after the rows
    before it have been given out."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(EXPORT_COLUMNS)
    yield _taken(buffer), 1
    zone = connections[AuditEntry.objects.db].timezone
    while True:
        entries = _entries(filters, cursor, team_ids, EXPORT_CHUNK + 1)
        chunk = entries[:EXPORT_CHUNK]
        originals = _reverted_numbers(chunk)
        lines = 0
        try:
            for values in chunk:
                writer.writerow(_export_row(values, originals, zone))
                lines += 1
                if buffer.tell() >= PIECE_CHARS:
                    yield _taken(buffer), lines
                    lines = 0
        except Exception:
            if lines:
                yield _taken(buffer), lines
            raise
        if lines:
            yield _taken(buffer), lines
        if len(entries) <= EXPORT_CHUNK:
            return
        last = chunk[-1]
        cursor = Cursor(_aware(last[CREATED_AT], zone), last[ID])


def _taken(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


def _entries(filters, cursor, team_ids, n: int) -> list[tuple]:
    """Up to n entries in keyset order, as tuples of ROW_FIELDS: the rows queries._entries
    picks, read through a plain cursor. Model instances, or even values_list's per-value
    converters, cost more than reading the rows."""
    streams = _streams(filters, team_ids)
    if not streams:
        return []
    if filters.revert == REVERTED:  # few, each looked up by id (as the page does)
        rows = AuditEntry.objects.filter(pk__in=_reverted_page(filters, cursor, team_ids, n))
    elif len(streams) == 1 and streams[0][0].model is AuditEntry:
        rows = _before(streams[0][0], cursor)
    else:
        rows = AuditEntry.objects.filter(pk__in=_ids(streams, cursor, n))
    newest = AuditOutcome.objects.filter(entry=OuterRef("pk")).order_by("-id").values("id")[:1]
    latest = FilteredRelation("outcomes", condition=Q(outcomes__id=Subquery(newest)))
    rows = rows.annotate(latest=latest).newest_first().values_list(*ROW_FIELDS)[:n]
    try:
        sql, params = rows.query.get_compiler(using=rows.db).as_sql()
    except EmptyResultSet:  # a filter nothing can match (an empty scope): what Django reads
        return []
    with connections[rows.db].cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _reverted_numbers(chunk: list[tuple]) -> dict[int, int]:
    """words.revert_numbers for rows: the numbers of the entries they revert, by id."""
    ids = {values[REVERT_OF] for values in chunk if values[REVERT_OF]}
    if not ids:
        return {}
    return dict(AuditEntry.objects.filter(pk__in=ids).values_list("id", "number"))


def _aware(moment: datetime, zone: tzinfo) -> datetime:
    # SQLite gives date-times back naive, in the connection's time zone (UTC).
    return moment if moment.tzinfo else moment.replace(tzinfo=zone)


def _export_row(
    values: tuple,
    originals: dict[int, int],
    zone: tzinfo,
    *,
    neutralise: bool = True,
) -> list[Any]:
    """One CSV row from the ROW_FIELDS of an entry; `originals` has the numbers of
    reverted entries, by entry id."""
    (
        entry_id,
        created_at,
        number,
        actor_username,
        actor_email,
        action,
        ticket_id,
        ticket_identifier,
        ticket_title,
        team_id,
        team_name,
        changes,
        request_body,
        reason,
        revert_of,
        request_id,
        client_ip,
        user_agent,
        outcome,
        message,
        hash_,
        batch_id,
        latest_outcome,
        status_code,
        latest_message,
        upstream_updated_at,
        duration_ms,
    ) = values
    changes = _loads(changes)  # both databases give JSON back as text here
    fields_changed, changes_text = _describe(changes)
    row = [
        number,
        _iso(_aware(created_at, zone)),
        actor_username,
        actor_email,
        action,
        ticket_id,
        ticket_identifier,
        ticket_title,
        team_id,
        team_name or "",
        fields_changed,
        _dumps(changes),
        changes_text,
        reason or "",
        originals.get(revert_of, "") if revert_of else "",
        _dumps(_loads(request_body)),
        request_id,
        client_ip or "",
        user_agent,
    ]
    if latest_outcome is None:  # no outcome row (an outcome is never NULL): the entry's own
        row += [outcome, "", message, "", ""]
    else:
        row += [
            latest_outcome,
            "" if status_code is None else status_code,
            latest_message,
            upstream_updated_at,
            "" if duration_ms is None else duration_ms,
        ]
    row += [hash_, entry_id, batch_id or ""]
    if not neutralise:  # JSON Lines: no spreadsheet reads it
        return row
    # csv_cell, inline: 27 calls a row add up.
    return [
        "'" + value if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value
        for value in row
    ]


def _describe(changes: Any) -> tuple[str, str]:
    """The fields_changed and changes_text cells: the changed fields in the edit form's
    order, and words.change_lines in UTC."""
    names = list(changes)
    if len(names) > 1:  # most entries change one field
        order = schema.field_order()
        names.sort(key=lambda name: (order.get(name, len(order)), name))
    if not isinstance(changes, dict):
        return ", ".join(names), ""
    return ", ".join(names), "; ".join(change_lines(changes, limit=CHANGE_TEXT, tz=UTC))


def csv_cell(value: Any) -> Any:
    """Neutralise a cell a spreadsheet would read as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value
