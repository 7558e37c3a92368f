"""Writing and verifying the audit log's hash chain.

One chain runs through AuditEntry and AuditOutcome in id order (ids are the chain
positions, shared by both tables). Each row stores `prev_hash` and
`hash = sha256(prev_hash + canonical_json(row))`. Appending takes the chain lock inside
the write transaction so two writers never link onto the same predecessor:
- PostgreSQL: a transaction-level advisory lock;
- SQLite: settings open every transaction with BEGIN IMMEDIATE, which takes the database
  write lock up front, so writers are already serialised. (Under DEFERRED they still
  could not fork the chain: WAL refuses a write from a stale snapshot with SQLITE_BUSY.)

record_attempt and record_outcome commit their own transaction. Call them outside any
outer transaction when a PATCH follows: the intent must be committed before the request
leaves, and the outcome must be kept whatever happens to the caller's transaction.
"""

import hashlib
import heapq
import ipaddress
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import connection, transaction
from django.http import HttpRequest
from django.utils import timezone

from ..models import (
    ENTRY_OUTCOMES,
    SETTLED_OUTCOMES,
    AuditEntry,
    AuditField,
    AuditOutcome,
    Outcome,
)

GENESIS_HASH = "0" * 64
OPTIONAL_CHAIN_FIELDS = frozenset({"base_updated_at"})
# Any fixed bigint; it only has to be the same for every writer of this database.
CHAIN_LOCK_ID = 0x7468656E61  # "thena"
ACTION_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
USER_AGENT_MAX = 500


@dataclass(frozen=True)
class RequestMeta:
    request_id: str
    client_ip: str | None
    user_agent: str

    @classmethod
    def of(cls, request: HttpRequest) -> "RequestMeta":
        request_id = request.headers.get("X-Request-ID", "").strip()
        if not REQUEST_ID_RE.match(request_id):
            request_id = uuid.uuid4().hex
        return cls(
            request_id=request_id,
            client_ip=_normalise_ip(client_ip(request)),
            user_agent=request.headers.get("User-Agent", "")[:USER_AGENT_MAX],
        )


def client_ip(request: HttpRequest) -> str | None:
    """REMOTE_ADDR; behind DJANGO_PROXY_COUNT proxies, the address the outermost proxy
    saw (each proxy appends its client to X-Forwarded-For). Also used by django-axes."""
    count = settings.PROXY_COUNT
    if count:
        hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        hops = [hop for hop in hops if hop]
        if len(hops) >= count:
            return hops[-count]
    return request.META.get("REMOTE_ADDR")


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    count: int  # chained rows checked (entries and outcomes)
    first_broken: str | None = None
    head: str = GENESIS_HASH  # hash of the last row; record it elsewhere to anchor the log


def record_attempt(
    *,
    action: str,
    actor: AbstractBaseUser | None,
    ticket: dict[str, Any] | None,
    changes: dict[str, Any],
    request_body: dict[str, Any],
    outcome: str = Outcome.PENDING,
    message: str = "",
    meta: RequestMeta,
    base_updated_at: str | None = None,
) -> AuditEntry:
    """Append and commit one entry. `ticket` has Thena's keys (id, ticketIdentifier,
    title, teamId), or is None for actions on no ticket."""
    if not ACTION_RE.match(action):
        raise ValueError(f"Audit action must be a dotted code like ticket.update, not {action!r}.")
    if outcome not in ENTRY_OUTCOMES:
        raise ValueError(f"An entry cannot start as {outcome!r}.")
    ticket = ticket or {}
    entry = AuditEntry(
        action=action,
        actor_id=actor.pk if actor else None,
        actor_username=actor.get_username() if actor else "",
        actor_email=getattr(actor, "email", "") or "",
        ticket_id=str(ticket.get("id") or ""),
        ticket_identifier=str(ticket.get("ticketIdentifier") or ""),
        ticket_title=str(ticket.get("title") or ""),
        team_id=str(ticket.get("teamId") or ""),
        changes=_plain_json(changes),
        request_body=_plain_json(request_body),
        request_id=meta.request_id,
        client_ip=_normalise_ip(meta.client_ip),
        user_agent=meta.user_agent[:USER_AGENT_MAX],
        outcome=outcome,
        message=message,
        base_updated_at=base_updated_at or None,
    )
    with transaction.atomic():
        _lock_chain()
        _append(entry)
        AuditField.objects.bulk_create(
            AuditField(entry=entry, field=name, created_at=entry.created_at)
            for name in sorted(entry.changes)
        )
    return entry


def record_outcome(
    *,
    entry: AuditEntry,
    outcome: str,
    status_code: int | None = None,
    message: str = "",
    upstream_updated_at: str | datetime | None = None,
    duration_ms: int | None = None,
) -> AuditOutcome:
    """Append and commit the settlement of a pending entry. An entry may be settled again
    only while its current outcome is unknown (reconciliation)."""
    if outcome not in SETTLED_OUTCOMES:
        raise ValueError(
            f"An outcome must be one of {', '.join(SETTLED_OUTCOMES)}, not {outcome!r}."
        )
    if entry.outcome != Outcome.PENDING:
        raise ValueError(f"Entry #{entry.pk} was final when written ({entry.outcome}).")
    if isinstance(upstream_updated_at, datetime):
        upstream_updated_at = _iso(upstream_updated_at)
    row = AuditOutcome(
        entry=entry,
        entry_created_at=entry.created_at,
        outcome=outcome,
        status_code=status_code,
        message=message,
        upstream_updated_at=upstream_updated_at or "",
        duration_ms=duration_ms,
    )
    with transaction.atomic():
        _lock_chain()
        latest = entry.outcomes.order_by("-id").values_list("outcome", flat=True).first()
        if latest not in (None, Outcome.UNKNOWN):
            raise ValueError(f"Entry #{entry.pk} is already settled ({latest}).")
        _append(row)
    return row


def row_hash(prev_hash: str, values: dict[str, Any]) -> str:
    payload = json.dumps(
        {
            name: _iso(value) if isinstance(value, datetime) else value
            for name, value in values.items()
            # Columns added later count only when set, so older rows still verify.
            if not (value is None and name in OPTIONAL_CHAIN_FIELDS)
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256((prev_hash + payload).encode()).hexdigest()


def verify_chain() -> VerifyResult:
    """Walk the chain in id order and report the first broken link.

    Streams both tables (merged by id) and the AuditField rows (ordered by entry), so
    memory stays flat however long the log is. Detects a changed row (its hash), a
    removed or inserted row (a gap in the ids, or a `prev_hash` that does not match the
    row before), and AuditField rows that do not match their entry's changes. Removing
    the last rows leaves no trace in the chain itself: record `head` elsewhere to catch it.
    """
    head_id = _chain_head()[0]
    chain = heapq.merge(
        _stream(AuditEntry, head_id), _stream(AuditOutcome, head_id), key=lambda row: row[1]["id"]
    )
    fields = _FieldRows(head_id)
    prev_id, prev_hash, count = 0, GENESIS_HASH, 0
    for model, values in chain:
        problem = _check_link(prev_id, prev_hash, values) or (
            fields.check(values) if model is AuditEntry else None
        )
        if problem:
            return VerifyResult(
                False, count, f"{model._meta.db_table} #{values['id']}: {problem}", prev_hash
            )
        prev_id, prev_hash = values["id"], values["hash"]
        count += 1
    if problem := fields.leftover():
        return VerifyResult(False, count, problem, prev_hash)
    return VerifyResult(True, count, None, prev_hash)


def _check_link(prev_id: int, prev_hash: str, values: dict[str, Any]) -> str | None:
    row_id = values["id"]
    if row_id <= prev_id:
        return f"its id is used twice (row #{row_id} appears again)."
    if row_id != prev_id + 1:
        gap = f"#{prev_id + 1}" if row_id == prev_id + 2 else f"#{prev_id + 1} to #{row_id - 1}"
        return f"the rows before it are missing ({gap})."
    if values["prev_hash"] != prev_hash:
        return f"prev_hash does not match the hash of row #{prev_id}."
    contents = {name: value for name, value in values.items() if name not in ("prev_hash", "hash")}
    if row_hash(prev_hash, contents) != values["hash"]:
        return "hash does not match its contents (the row was changed)."
    return None


class _FieldRows:
    """Walks AuditField in entry order alongside the chain: each entry's rows must be
    exactly the keys of its `changes`, with its created_at."""

    def __init__(self, head_id: int):
        self.rows = (
            AuditField.objects.filter(entry_id__lte=head_id)
            .order_by("entry_id", "id")
            .values_list("id", "entry_id", "field", "created_at")
            .iterator(chunk_size=2000)
        )
        self.current = next(self.rows, None)

    def check(self, entry: dict[str, Any]) -> str | None:
        names = set()
        while self.current and self.current[1] <= entry["id"]:
            field_id, entry_id, name, created_at = self.current
            if entry_id != entry["id"]:
                return f"{AuditField._meta.db_table} #{field_id} points at no entry (#{entry_id})."
            if name not in entry["changes"] or name in names or created_at != entry["created_at"]:
                return f"{AuditField._meta.db_table} #{field_id} ({name}) does not match the entry."
            names.add(name)
            self.current = next(self.rows, None)
        if missing := sorted(set(entry["changes"]) - names):
            return f"{AuditField._meta.db_table} rows are missing for {', '.join(missing)}."
        return None

    def leftover(self) -> str | None:
        if self.current:
            field_id, entry_id = self.current[:2]
            return f"{AuditField._meta.db_table} #{field_id} points at no entry (#{entry_id})."
        return None


def _append(row: AuditEntry | AuditOutcome) -> None:
    """Link `row` to the chain's last row and insert it. The caller holds the chain lock."""
    last_id, last_hash = _chain_head()
    row.id = last_id + 1
    row.created_at = timezone.now()
    row.prev_hash = last_hash
    row.hash = row_hash(last_hash, {name: getattr(row, name) for name in row.CHAIN_FIELDS})
    row.save(force_insert=True)


def _lock_chain() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CHAIN_LOCK_ID])


def _chain_head() -> tuple[int, str]:
    """The id and hash of the chain's last row, whichever table holds it (one query)."""
    entries, outcomes = AuditEntry._meta.db_table, AuditOutcome._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id, hash FROM {entries} WHERE id = (SELECT MAX(id) FROM {entries}) "
            f"UNION ALL SELECT id, hash FROM {outcomes} WHERE id = (SELECT MAX(id) FROM {outcomes})"
        )
        return max(cursor.fetchall(), default=(0, GENESIS_HASH))


def _stream(model, head_id: int) -> Iterator[tuple[type, dict[str, Any]]]:
    rows = (
        model.objects.filter(id__lte=head_id)
        .order_by("id")
        .values_list(*model.CHAIN_FIELDS, "prev_hash", "hash")
        .iterator(chunk_size=2000)
    )
    names = (*model.CHAIN_FIELDS, "prev_hash", "hash")
    for row in rows:
        yield model, dict(zip(names, row, strict=True))


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _plain_json(value: dict[str, Any]) -> dict[str, Any]:
    # What the database gives back must hash like what was written: no tuples, no
    # non-string keys, no objects that only a custom encoder understands.
    return json.loads(json.dumps(value, allow_nan=False))


def _normalise_ip(value: str | None) -> str | None:
    # PostgreSQL returns inet values in canonical form; hash that form from the start.
    try:
        return str(ipaddress.ip_address((value or "").strip()))
    except ValueError:
        return None
