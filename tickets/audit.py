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

Reading the log (below the chain functions): AuditFilter and its form, keyset pages
(audit_page), counts per day (audit_daily_counts), one entry in full
(audit_entry_detail) and the CSV export (audit_export). Every query takes `team_ids`:
None means every team, a set keeps only entries of those teams.
"""

import base64
import binascii
import csv
import difflib
import hashlib
import heapq
import ipaddress
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.db.models.lookups import Exact
from django.http import HttpRequest
from django.utils import timezone

from .models import (
    ENTRY_OUTCOMES,
    SETTLED_OUTCOMES,
    AuditEntry,
    AuditEntryQuerySet,
    AuditField,
    AuditOutcome,
    Outcome,
)
from .thena import schema

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


# -- reading the log ---------------------------------------------------------------------

PAGE_SIZE = 50
EXPORT_CHUNK = 2000
CHART_DAYS = 30
CHART_MAX_DAYS = 366
CHART_CACHE_SECONDS = 600
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
LONG_TEXT = 80  # longer strings (or any with a line break) get a word diff
WORD_DIFF_MAX = 20_000  # characters


@dataclass(frozen=True)
class AuditFilter:
    actor: str = ""  # username as recorded
    ticket: str = ""  # Thena ticket id, or identifier such as SUP-12
    field: str = ""  # PATCH name
    outcome: str = ""  # current outcome
    since: date | None = None  # inclusive, in the user's time zone
    until: date | None = None  # inclusive, in the user's time zone

    def as_params(self) -> dict[str, str]:
        """The filters that are set, as query parameters."""
        values = {
            "actor": self.actor,
            "ticket": self.ticket,
            "field": self.field,
            "outcome": self.outcome,
            "since": self.since.isoformat() if self.since else "",
            "until": self.until.isoformat() if self.until else "",
        }
        return {name: value for name, value in values.items() if value}


class AuditFilterForm(forms.Form):
    actor = forms.CharField(required=False, max_length=150, label="Actor")
    ticket = forms.CharField(required=False, max_length=64, label="Ticket")
    field = forms.ChoiceField(required=False, label="Field changed")
    outcome = forms.ChoiceField(
        required=False, label="Outcome", choices=[("", "Any outcome"), *Outcome.choices]
    )
    since = forms.DateField(
        required=False, label="Since", widget=forms.DateInput({"type": "date"}, "%Y-%m-%d")
    )
    until = forms.DateField(
        required=False, label="Until", widget=forms.DateInput({"type": "date"}, "%Y-%m-%d")
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["actor"].widget.attrs.update(placeholder="username", autocomplete="off")
        self.fields["ticket"].widget.attrs.update(placeholder="SUP-12 or id", autocomplete="off")
        self.fields["field"].choices = [
            ("", "Any field"),
            *((field.name, field.label) for field in schema.fields()),
        ]

    def clean(self):
        data = super().clean()
        since, until = data.get("since"), data.get("until")
        if since and until and since > until:
            self.add_error("until", "The end date is before the start date.")
        return data

    def filters(self) -> AuditFilter:
        """The filters as given; call only once the form is valid."""
        data = self.cleaned_data
        return AuditFilter(
            actor=data["actor"],
            ticket=data["ticket"],
            field=data["field"],
            outcome=data["outcome"],
            since=data["since"],
            until=data["until"],
        )


@dataclass(frozen=True)
class Cursor:
    """Where a page ends: the last entry's (created_at, id), keyset order newest first."""

    created_at: datetime
    id: int

    def encode(self) -> str:
        micros = (self.created_at - EPOCH) // timedelta(microseconds=1)
        return base64.urlsafe_b64encode(f"{micros}.{self.id}".encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> "Cursor | None":
        """None for anything that is not a cursor this module made."""
        try:
            text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
            micros, row_id = (int(part) for part in text.split("."))
            if not 0 < row_id < 2**63:  # a bigint, as the ids are
                return None
            return cls(EPOCH + timedelta(microseconds=micros), row_id)
        except (ValueError, binascii.Error, OverflowError, UnicodeDecodeError):
            return None

    @classmethod
    def after(cls, entry: AuditEntry) -> "Cursor":
        return cls(entry.created_at, entry.id)


@dataclass(frozen=True)
class AuditPage:
    entries: list[AuditEntry]  # newest first; `current_outcome` and `field_labels` set
    next_cursor: str  # "" on the last page


def audit_page(
    *,
    filters: AuditFilter,
    cursor: Cursor | None = None,
    team_ids: frozenset[str] | None = None,
    limit: int = PAGE_SIZE,
) -> AuditPage:
    entries = _entries(filters, cursor, team_ids, limit + 1)
    more = len(entries) > limit
    entries = entries[:limit]
    labels = schema.field_map()
    for entry in entries:
        entry.field_labels = [_label(labels, name) for name in _in_form_order(entry.changes)]
    next_cursor = Cursor.after(entries[-1]).encode() if more else ""
    return AuditPage(entries, next_cursor)


def _entries(filters, cursor, team_ids, n: int) -> list[AuditEntry]:
    """Up to n entries in keyset order, with `current_outcome`."""
    streams = _streams(filters, team_ids)
    if len(streams) == 1 and streams[0][0].model is AuditEntry:
        entries = _before(streams[0][0], cursor)
        return list(entries.with_current_outcome().newest_first()[:n])
    ids = _ids(streams, cursor, n)
    return list(AuditEntry.objects.filter(pk__in=ids).with_current_outcome().newest_first())


Stream = tuple[QuerySet, str, str]  # rows, their created_at column, their entry id column


def _streams(filters: AuditFilter, team_ids, *, ordered: bool = True) -> list[Stream]:
    """Where the matching entries are read from, as streams in keyset order.

    The table whose index matches the most selective filter drives, and every other
    filter is a probe per row. An actor's or a ticket's entries are a small part of the
    log and have (actor/ticket, created_at, id) indexes, so they drive whenever given.
    Otherwise a field or a settled outcome drives from its own table and the page's
    entries are fetched by id: an EXISTS per entry over the whole log is ~100x slower
    for rare values. "pending" reads the entries' outcome index and keeps those with no
    outcome row, so it is slow when few are pending unless a date range bounds it.
    A ticket is two streams, its id and its identifier, because an OR of the two has no
    index order (`ordered=False`, for counting, keeps the OR).
    """
    if filters.ticket and ordered:
        rest = _entry_rows(replace(filters, ticket=""), team_ids)
        return [
            (rest.filter(ticket_id=filters.ticket), "created_at", "id"),
            (rest.filter(ticket_identifier=filters.ticket.upper()), "created_at", "id"),
        ]
    if filters.field and not (filters.actor or filters.ticket):
        return _field_rows(filters, team_ids)
    if filters.outcome in SETTLED_OUTCOMES and not (filters.actor or filters.ticket):
        return _settled_rows(filters, team_ids)
    return [(_entry_rows(filters, team_ids), "created_at", "id")]


def _ids(streams: list[Stream], cursor, n: int) -> list[int]:
    """The first n entry ids of the streams, merged in keyset order."""
    keys = [
        _before(rows, cursor, created, row_id)
        .order_by(f"-{created}", f"-{row_id}")
        .values_list(created, row_id)[:n]
        for rows, created, row_id in streams
    ]
    merged = heapq.merge(*keys, reverse=True) if len(keys) > 1 else keys[0]
    # An entry in two streams (a ticket whose id is its identifier) is listed once.
    return list(dict.fromkeys(row_id for _, row_id in merged))[:n]


def _entry_q(filters: AuditFilter, team_ids, *, to_entry: str = "") -> Q:
    """The filters held on the entry itself, for entries or (with `to_entry`, the path of
    the relation) rows that point at one. The date range belongs to each stream."""
    q = Q()
    if team_ids is not None:
        q &= Q(**{f"{to_entry}team_id__in": sorted(team_ids)})
    if filters.actor:
        q &= Q(**{f"{to_entry}actor_username": filters.actor})
    if filters.ticket:
        q &= Q(**{f"{to_entry}ticket_id": filters.ticket}) | Q(
            **{f"{to_entry}ticket_identifier": filters.ticket.upper()}
        )
    return q


def _entry_rows(filters: AuditFilter, team_ids) -> AuditEntryQuerySet:
    entries = AuditEntry.objects.filter(_entry_q(filters, team_ids), _dates(filters, "created_at"))
    if filters.field:
        entries = entries.filter(
            Exists(AuditField.objects.filter(entry=OuterRef("pk"), field=filters.field))
        )
    return entries.filter(_outcome_q(filters.outcome)) if filters.outcome else entries


def _field_rows(filters: AuditFilter, team_ids) -> list[Stream]:
    rows = AuditField.objects.filter(
        _entry_q(filters, team_ids, to_entry="entry__"),
        _dates(filters, "created_at"),
        field=filters.field,
    )
    if filters.outcome:
        rows = rows.filter(_outcome_q(filters.outcome, to_entry="entry__"))
    return [(rows, "created_at", "entry_id")]


def _settled_rows(filters: AuditFilter, team_ids) -> list[Stream]:
    """Entries whose latest outcome row is `filters.outcome`, and (succeeded, failed) the
    entries written with it as a final outcome."""
    settled = AuditOutcome.objects.filter(
        _entry_q(filters, team_ids, to_entry="entry__"),
        _dates(filters, "entry_created_at"),
        outcome=filters.outcome,
    )
    if filters.outcome == Outcome.UNKNOWN:
        # Only an unknown is ever settled again (record_outcome refuses anything after a
        # succeeded or failed), so the probe for a later row is needed for it alone.
        settled = settled.current()
    streams = [(settled, "entry_created_at", "entry_id")]
    if filters.outcome in ENTRY_OUTCOMES:
        own = AuditEntry.objects.filter(
            _entry_q(filters, team_ids),
            _dates(filters, "created_at"),
            outcome=filters.outcome,
        )
        streams.append((own, "created_at", "id"))
    return streams


def _outcome_q(outcome: str, *, to_entry: str = "") -> Q:
    """Current outcome is `outcome`: the latest outcome row, else the entry's own, read by
    one probe of the (entry, id) index per row (as AuditEntryQuerySet.with_current_outcome)
    so it also works across a relation. An EXISTS here lets SQLite scan the outcome index."""
    latest = AuditOutcome.objects.filter(entry=OuterRef(f"{to_entry}pk")).order_by("-id")
    current = Coalesce(Subquery(latest.values("outcome")[:1]), F(f"{to_entry}outcome"))
    q = Q(Exact(current, outcome))
    if outcome not in SETTLED_OUTCOMES:
        q &= Q(**{f"{to_entry}outcome": outcome})  # written so: the outcome index can drive
    return q


def _dates(filters: AuditFilter, column: str) -> Q:
    q = Q()
    if filters.since:
        q &= Q(**{f"{column}__gte": _midnight(filters.since)})
    if filters.until:
        q &= Q(**{f"{column}__lt": _midnight(filters.until + timedelta(days=1))})
    return q


def _before(rows: QuerySet, cursor: Cursor | None, created="created_at", row_id="id"):
    if cursor is None:
        return rows
    # Not the bare OR: the outer <= gives the index a bound to start from.
    return rows.filter(
        Q(**{f"{created}__lte": cursor.created_at})
        & (Q(**{f"{created}__lt": cursor.created_at}) | Q(**{f"{row_id}__lt": cursor.id}))
    )


def _midnight(day: date) -> datetime:
    """The start of `day` in the user's time zone (tickets.middleware activates it)."""
    return datetime.combine(day, time.min, tzinfo=timezone.get_current_timezone())


def _in_form_order(names) -> list[str]:
    """Field names as the edit form orders them, unknown ones last: the same on both
    databases (PostgreSQL's jsonb keeps no key order)."""
    order = {name: index for index, name in enumerate(schema.field_map())}
    return sorted(names, key=lambda name: (order.get(name, len(order)), name))


def _label(labels: dict[str, schema.Field], name: str) -> str:
    field = labels.get(name)
    return field.label if field else name


@dataclass(frozen=True)
class DayCount:
    day: date
    count: int


def audit_daily_counts(
    *,
    filters: AuditFilter,
    team_ids: frozenset[str] | None = None,
    days: int = CHART_DAYS,
) -> list[DayCount]:
    """Entries per day (the user's time zone) over the filtered date range: by default the
    last `days` days up to `until` (or today), at most CHART_MAX_DAYS.

    One COUNT per day over an index range, sent as a single UNION ALL: counting index
    entries is several times faster than grouping by a computed local date (which SQLite
    runs through a Python function per row). Days before today are cached for
    CHART_CACHE_SECONDS: the log only grows at its newest end, so a past day's count
    changes only when one of its entries is settled later (outcome filters)."""
    today = timezone.localdate()
    until = filters.until or today
    since = filters.since or until - timedelta(days=days - 1)
    since = max(since, until - timedelta(days=CHART_MAX_DAYS - 1))
    span = [since + timedelta(days=n) for n in range((until - since).days + 1)]
    undated = replace(filters, since=None, until=None)
    scope = sorted(team_ids) if team_ids is not None else None
    what = f"{undated!r}{scope!r}{timezone.get_current_timezone_name()}"
    key = "audit-days:" + hashlib.sha256(what.encode()).hexdigest()[:32]
    keys = {day: f"{key}:{day.isoformat()}" for day in span if day < today}
    hits = cache.get_many(keys.values())
    counts = {day: hits[k] for day, k in keys.items() if k in hits}
    fresh = _count_days([day for day in span if day not in counts], undated, team_ids)
    cache.set_many({keys[day]: n for day, n in fresh.items() if day in keys}, CHART_CACHE_SECONDS)
    counts |= fresh
    return [DayCount(day, counts[day]) for day in span]


def _count_days(days: list[date], filters: AuditFilter, team_ids) -> dict[date, int]:
    counts = dict.fromkeys(days, 0)
    if not days:
        return counts
    # Each day's range is the only date bound: SQLite takes one range per index scan,
    # and given the whole range as well it may pick that one for every day.
    for rows, created, _ in _streams(filters, team_ids, ordered=False):
        rows = rows.order_by()
        per_day = [
            rows.filter(**{f"{created}__gte": _midnight(day)})
            .filter(**{f"{created}__lt": _midnight(day + timedelta(days=1))})
            .values(day=Value(n))
            .annotate(count=Count("*"))
            for n, day in enumerate(days)
        ]
        for n, count in per_day[0].union(*per_day[1:], all=True).values_list("day", "count"):
            counts[days[n]] += count
    return counts


@dataclass(frozen=True)
class FieldChange:
    name: str
    label: str
    before: str
    after: str
    diff: list[tuple[str, str]]  # (same|del|ins, text) for long text, else empty
    code: bool  # JSON: show in a monospace block


@dataclass(frozen=True)
class AuditDetail:
    entry: AuditEntry
    changes: list[FieldChange]
    request_body: str  # indented JSON
    outcomes: list[AuditOutcome]  # oldest first
    current_outcome: str


def audit_entry_detail(*, pk: int, team_ids: frozenset[str] | None = None) -> AuditDetail:
    """One entry with its field diff and outcome rows; AuditEntry.DoesNotExist when it is
    missing or outside `team_ids`."""
    entries = AuditEntry.objects.all()
    if team_ids is not None:
        entries = entries.filter(team_id__in=sorted(team_ids))
    entry = entries.get(pk=pk)
    outcomes = list(entry.outcomes.order_by("id"))
    labels = schema.field_map()
    return AuditDetail(
        entry=entry,
        changes=[
            _field_change(name, labels.get(name), entry.changes[name])
            for name in _in_form_order(entry.changes)
        ],
        request_body=_pretty(entry.request_body),
        outcomes=outcomes,
        current_outcome=outcomes[-1].outcome if outcomes else entry.outcome,
    )


def _field_change(name: str, field: schema.Field | None, change: Any) -> FieldChange:
    change = change if isinstance(change, dict) else {"after": change}
    before, after = change.get("before"), change.get("after")
    code = isinstance(before, dict | list) or isinstance(after, dict | list)
    diff = []
    if isinstance(before, str) and isinstance(after, str):
        long = any(len(text) > LONG_TEXT or "\n" in text for text in (before, after))
        if long or (field and field.kind == "text"):
            diff = _word_diff(before, after)
    label = field.label if field else name
    return FieldChange(name, label, _shown(before), _shown(after), diff, code)


def _word_diff(before: str, after: str) -> list[tuple[str, str]]:
    # Word by word reads best; very long texts go line by line to bound difflib's work.
    unit = r"(\s+)" if len(before) + len(after) <= WORD_DIFF_MAX else r"(\n)"
    old, new = re.split(unit, before), re.split(unit, after)
    parts = []
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            parts.append(("same", "".join(old[i1:i2])))
            continue
        if i2 > i1:
            parts.append(("del", "".join(old[i1:i2])))
        if j2 > j1:
            parts.append(("ins", "".join(new[j1:j2])))
    return parts


def _shown(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return _pretty(value)
    return json.dumps(value)  # true/false and numbers as JSON writes them


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


# -- CSV export --------------------------------------------------------------------------

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
