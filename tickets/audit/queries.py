"""Reading the audit log: AuditFilter and its form, keyset pages (audit_page), counts per
day (audit_daily_counts) and one entry in full (audit_entry_detail). Every query takes
`team_ids`: None means every team, a set keeps only entries of those teams.
"""

import base64
import binascii
import bisect
import dataclasses
import difflib
import functools
import hashlib
import heapq
import json
import re
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from time import time as time_now
from typing import Any

from django import forms
from django.core.cache import cache
from django.core.exceptions import EmptyResultSet
from django.db import connection, transaction
from django.db.models import BooleanField, Exists, F, Func, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.db.models.lookups import Exact, IContains
from django.utils import timezone

from ..models import (
    ENTRY_OUTCOMES,
    SETTLED_OUTCOMES,
    Action,
    AuditCount,
    AuditEntry,
    AuditEntryQuerySet,
    AuditField,
    AuditOutcome,
    Outcome,
)
from ..thena import schema
from .actors import TooManyActors, actor_names, distinct_values, logged_actors
from .cached import cache_set
from .words import CustomFieldChange, custom_field_changes, revert_numbers

PAGE_SIZE = 50
CHART_DAYS = 30
CHART_MAX_DAYS = 366
CHART_CACHE_SECONDS = 3600  # checked before use (_stale), so only a bound on the check
STALE_PROBE_MAX = 5000  # rows
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Later than any entry (each is dated when written), and a day short of datetime.max so
# that every zone can hold it.
LATEST = datetime(9999, 12, 30, tzinfo=UTC)
LONG_TEXT = 80  # longer strings (or any with a line break) get a word diff
WORD_DIFF_MAX = 20_000  # characters


def _tuned(function):
    """Runs `function` on PostgreSQL in a transaction (a savepoint inside one) without
    JIT compilation and parallel workers: the audit pages' queries read a few index
    ranges, but a LIMIT over a rare filter is estimated past jit_above_cost, and JIT then
    spent 9-30 ms compiling a query that runs in 0.3 ms; starting workers for a chart's
    small counts cost more than they saved (56 against 18 ms for a ticket's 30 days)."""

    @functools.wraps(function)
    def tuned(*args, **kwargs):
        if connection.vendor != "postgresql":
            return function(*args, **kwargs)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "SELECT set_config('jit', 'off', true), "
                "set_config('max_parallel_workers_per_gather', '0', true)"
            )
            return function(*args, **kwargs)

    return tuned


DASHBOARD, THENA = "dashboard", "thena"  # AuditFilter.source
# What the chart counts: changes, the dashboard's and those made in Thena.
CHANGES = (Action.TICKET_UPDATE, Action.TICKET_EXTERNAL)
REVERTS = "reverts"  # entries that revert another
REVERTED = "reverted"  # entries that another entry reverts


@dataclass(frozen=True)
class AuditFilter:
    actor: str = ""  # part of a username or email, any case (see actors.actor_names)
    ticket: str = ""  # Thena ticket id, or identifier such as SUP-12
    field: str = ""  # PATCH name
    outcome: str = ""  # current outcome
    since: date | None = None  # inclusive, in the user's time zone
    until: date | None = None  # inclusive, in the user's time zone
    revert: str = ""  # REVERTS or REVERTED
    reason: str = ""  # part of the entry's reason, any case
    batch: str = ""  # a bulk edit: its Batch id, as AuditEntry.batch_id holds it (str(UUID))
    source: str = ""  # DASHBOARD or THENA (changes made in Thena itself); "" for both
    # The usernames `actor` matched, when already resolved (AuditFilterForm does it);
    # None: resolve when queried. Not a filter of its own, so not compared.
    actor_names: tuple[str, ...] | None = dataclasses.field(default=None, compare=False, repr=False)

    def as_params(self) -> dict[str, str]:
        """The filters that are set, as query parameters."""
        values = {
            "actor": self.actor,
            "ticket": self.ticket,
            "field": self.field,
            "outcome": self.outcome,
            "since": self.since.isoformat() if self.since else "",
            "until": self.until.isoformat() if self.until else "",
            "revert": self.revert,
            "reason": self.reason,
            "batch": self.batch,
            "source": self.source,
        }
        return {name: value for name, value in values.items() if value}

    def names(self) -> tuple[str, ...]:
        """The usernames the actor filter means (empty when it is not set, or matches no
        one); TooManyActors when it means too many."""
        if not self.actor:
            return ()
        return self.actor_names if self.actor_names is not None else actor_names(self.actor)


# Filter dates are bounded so that a day's start and end, in any time zone, stay
# within what Python and both databases hold (9999-12-31 has no next day).
FILTER_MIN_DATE = date(1900, 1, 1)
FILTER_MAX_DATE = date(9998, 12, 31)
FILTER_DATE_INPUT_MAX = 32  # characters; "1" x 5000 is no date


class _FilterDateField(forms.DateField):
    widget = forms.DateInput({"type": "date"}, "%Y-%m-%d")

    def __init__(self, **kwargs):
        super().__init__(required=False, **kwargs)
        self.widget.attrs.update(min=FILTER_MIN_DATE.isoformat(), max=FILTER_MAX_DATE.isoformat())

    def to_python(self, value):
        if isinstance(value, str) and len(value) > FILTER_DATE_INPUT_MAX:
            raise forms.ValidationError("Enter a valid date.", code="invalid")
        day = super().to_python(value)
        if day is not None and not FILTER_MIN_DATE <= day <= FILTER_MAX_DATE:
            raise forms.ValidationError(
                f"Enter a date between {FILTER_MIN_DATE.year} and {FILTER_MAX_DATE.year}.",
                code="out_of_range",
            )
        return day


class AuditFilterForm(forms.Form):
    actor = forms.CharField(required=False, max_length=150, label="Actor")
    ticket = forms.CharField(required=False, max_length=64, label="Ticket")
    field = forms.ChoiceField(required=False, label="Field changed")
    outcome = forms.ChoiceField(
        required=False, label="Outcome", choices=[("", "Any outcome"), *Outcome.choices]
    )
    since = _FilterDateField(label="Since")
    until = _FilterDateField(label="Until")
    revert = forms.ChoiceField(
        required=False,
        label="Reverts",
        choices=[("", "Any entry"), (REVERTS, "Reverts only"), (REVERTED, "Reverted entries")],
    )
    reason = forms.CharField(required=False, max_length=200, label="Reason contains")
    source = forms.ChoiceField(
        required=False,
        label="Source",
        choices=[("", "Dashboard and Thena"), (DASHBOARD, "Dashboard"), (THENA, "Made in Thena")],
    )
    # Hidden: set by the "Bulk edit" links, kept by every other filter, and cleared by the
    # page's own link. Any spelling of a UUID is read; the filter uses the canonical one.
    batch = forms.UUIDField(
        required=False,
        label="Bulk edit",
        widget=forms.HiddenInput,
        error_messages={"invalid": "That is not the id of a bulk edit."},
    )

    ACTOR_LIST_ID = "actor-suggestions"  # the <datalist> the page renders

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["actor"].widget.attrs.update(
            placeholder="part of a name", autocomplete="off", list=self.ACTOR_LIST_ID
        )
        self.fields["reason"].widget.attrs.update(placeholder="any words", autocomplete="off")
        self.fields["ticket"].widget.attrs.update(placeholder="SUP-12 or id", autocomplete="off")
        self.fields["field"].choices = [
            ("", "Any field"),
            *((field.name, field.label) for field in schema.fields()),
        ]

    def clean_actor(self) -> str:
        text = self.cleaned_data["actor"]
        try:
            self.actor_names = actor_names(text)
        except TooManyActors as error:
            raise forms.ValidationError(str(error), code="too_many") from None
        return text

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
            revert=data["revert"],
            reason=data["reason"],
            batch=str(data["batch"]) if data["batch"] else "",
            source=data["source"],
            actor_names=self.actor_names if data["actor"] else None,
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
    page, heads = _page(filters, cursor, team_ids, limit)
    if heads is not None:
        _chart_from_page(filters, team_ids, page.entries, heads)
    return page


@_tuned
def _page(filters, cursor, team_ids, limit: int) -> tuple[AuditPage, dict | None]:
    """The page, and when it holds every match of the filters (a first page with no next
    one) that the chart counts from indexes, the heads read before it (_chart_from_page)."""
    first = cursor is None and not _counted(filters)
    heads = _heads(replace(filters, since=None, until=None)) if first else None
    entries = _entries(filters, cursor, team_ids, limit + 1)
    more = len(entries) > limit
    entries = entries[:limit]
    labels = schema.field_map()
    for entry in entries:
        entry.field_labels = [_label(labels, name) for name in _in_form_order(entry.changes)]
    next_cursor = Cursor.after(entries[-1]).encode() if more else ""
    return AuditPage(entries, next_cursor), None if more else heads


def _chart_from_page(filters: AuditFilter, team_ids, entries: list[AuditEntry], heads) -> None:
    """A first page that holds every match of its filters also holds every change the
    chart counts on the past days of its span (within the filters' dates): their counts
    are cached as audit_daily_counts caches its own, with the heads read before the page,
    so that _stale catches whatever was written since. A rare filter then reads its
    matches once, not twice: a word in no reason, over a month at 1,000,000 entries,
    read every reason of the month (12 ms on PostgreSQL) for the page and again for the
    chart. Only where the chart has nothing cached: a stale entry is the chart's to
    replace."""
    span = chart_span(filters)
    last = min(span.until, timezone.localdate() - timedelta(days=1))
    days = [span.since + timedelta(days=n) for n in range((last - span.since).days + 1)]
    if not days:
        return
    key, _ = _days_key(filters, team_ids)
    if cache.get(key) is not None:
        return
    counts = dict.fromkeys(days, 0)
    for entry in entries:
        day = timezone.localtime(entry.created_at).date()
        if entry.action in CHANGES and day in counts:
            counts[day] += 1
    cache_set(key, {"heads": heads, "filled": time_now(), "days": counts}, CHART_CACHE_SECONDS)


def _entries(filters, cursor, team_ids, n: int) -> list[AuditEntry]:
    """Up to n entries in keyset order, with `current_outcome`."""
    streams = _streams(filters, team_ids)
    if not streams:
        return []
    # "reverted" is sorted, not read in index order, and "pending" passes a few rows in
    # a thousand: pick the page's ids first, from indexes alone, so that the rows are
    # read and the current outcome looked up for the page alone.
    sparse = filters.revert == REVERTED or filters.outcome == Outcome.PENDING
    if len(streams) == 1 and streams[0][0].model is AuditEntry and not sparse:
        entries = _before(streams[0][0], cursor)
        return list(entries.with_current_outcome().newest_first()[:n])
    ids = _reverted_page(filters, cursor, team_ids, n) if filters.revert == REVERTED else None
    ids = _ids(streams, cursor, n) if ids is None else ids
    return list(AuditEntry.objects.filter(pk__in=ids).with_current_outcome().newest_first())


def _reverted_page(filters: AuditFilter, cursor, team_ids, n: int) -> list[int]:
    """The first n ids of "reverted" in keyset order: the reverted entries are few (one
    per revert), so each is looked up by id, with the other filters, and sorted. Walking
    an index for them instead reads ~250 entries per reverted one."""
    found, days = set(), None
    if filters.since:
        days = ((filters.until or timezone.localdate()) - filters.since).days + 1
    unbounded = not (filters.since or filters.until or cursor)
    for rows, created, row_id in _streams(replace(filters, revert=""), team_ids, ordered=False):
        held = _before(rows.filter(_reverted(row_id, days=days)), cursor, created, row_id)
        if unbounded and connection.vendor == "sqlite":
            # True of every row, but a range on created_at: with none, SQLite looks each
            # id up in the primary key's index and then the table (10-13 ms for 4,000
            # at 1,000,000 entries), not in audit_entry_by_id alone (5 ms), which it
            # takes for an id and a range.
            held = held.filter(**{f"{created}__lte": LATEST})
        found.update(_raw(held.values_list(created, row_id)))
    return [row_id for _, row_id in heapq.nlargest(n, found)]


def _raw(rows: QuerySet) -> list[tuple]:
    """The rows as the database driver gives them, without the ORM's converters (making
    a datetime aware costs ~5 us on SQLite): for values that are only compared, with
    each other or with moments made _as_read."""
    try:
        sql, params = rows.order_by().query.sql_with_params()
    except EmptyResultSet:
        return []
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


Stream = tuple[QuerySet, str, str]  # rows, their created_at column, their entry id column


def _streams(
    filters: AuditFilter, team_ids, *, ordered: bool = True, counting: bool = False
) -> list[Stream]:
    """Where the matching entries are read from, as streams in keyset order (none when
    the actor filter matches no one).

    The table whose index matches the most selective filter drives, and every other
    filter is a probe per row. An actor's or a ticket's entries are a small part of the
    log and have (actor/ticket, created_at, id) indexes, so they drive whenever given.
    Reverts are rarer still: "reverts only" drives from a partial index of them, and
    "reverted" from the set of reverted ids, sorted (its cost grows with the number of
    reverts, not with the log: ~17 ms for 4,000 on SQLite). The reason search reads the
    partial index of entries that have a reason, newest first, and keeps those whose
    reason contains the text (case-insensitive LIKE; no index can match inside a text):
    a common word costs a page, a rare one every reason in the date range (~0.2 s per
    200,000 reasons on SQLite), so bound it with dates. Otherwise a field or a settled
    outcome drives from its own table and the page's entries are fetched by id: an
    EXISTS per entry over the whole log is ~100x slower for rare values. "pending" reads
    the entries' outcome index and keeps those with no outcome row, so it is slow when
    few are pending unless a date range bounds it. A ticket is two streams, its id and
    its identifier, and an actor filter that matches several people is one stream per
    username, because an OR (or IN) of them has no index order (`ordered=False`, for
    counting, keeps the OR). A bulk edit drives before all of these: its partial index
    holds at most a few thousand entries of one batch, so every other filter, an OR of
    names or ticket ids included, is a probe over that range.
    """
    names = filters.names()
    if filters.actor and not names:
        return []
    if filters.batch:
        return [(_entry_rows(filters, team_ids, counting=counting), "created_at", "id")]
    if filters.ticket and ordered:
        rest = _entry_rows(replace(filters, ticket=""), team_ids)
        return [
            (rest.filter(ticket_id=filters.ticket), "created_at", "id"),
            (rest.filter(ticket_identifier=filters.ticket.upper()), "created_at", "id"),
        ]
    if len(names) > 1 and ordered:
        rest = _entry_rows(replace(filters, actor="", actor_names=None), team_ids)
        return [(rest.filter(actor_username=name), "created_at", "id") for name in names]
    drives = filters.actor or filters.ticket or filters.revert or filters.reason
    if filters.field and not drives:
        return _field_rows(filters, team_ids)
    if filters.outcome in SETTLED_OUTCOMES and not drives:
        return _settled_rows(filters, team_ids)
    rows = _entry_rows(filters, team_ids, counting=counting)
    if ordered and _reason_drives(filters):
        return [(rows.filter(part), "created_at", "id") for part in _reason_parts()]
    return [(rows, "created_at", "id")]


# On PostgreSQL, reasons of at most this many bytes are in a covering index of their own
# (migration 0017): a B-tree entry must stay under 2,704 bytes.
SHORT_REASON_BYTES = 2000


def _reason_drives(filters: AuditFilter) -> bool:
    """Whether the reason search reads the index of reasons (nothing narrower drives)."""
    return bool(filters.reason) and not (filters.actor or filters.ticket or filters.batch)


def _reason_parts() -> list[Q]:
    """Disjoint parts of the entries with a reason, each read through its own index. On
    PostgreSQL: the short reasons, whose index holds the reason (no table read per
    reason), and the long ones."""
    if connection.vendor != "postgresql":
        return [Q()]
    return [Q(_ShortReason("reason")), ~Q(_ShortReason("reason"))]


class _ShortReason(Func):
    # The bound written out, not a parameter: it must match the indexes' predicates.
    template = f"OCTET_LENGTH(%(expressions)s) <= {SHORT_REASON_BYTES}"
    output_field = BooleanField()


def _ids(streams: list[Stream], cursor, n: int) -> list[int]:
    """The first n entry ids of the streams, merged in keyset order."""
    keys = [
        _before(rows, cursor, created, row_id)
        .order_by(f"-{created}", f"-{row_id}")
        .values_list(created, row_id)[:n]
        for rows, created, row_id in streams
    ]
    if len(keys) > 1:
        first = _first_of(keys, n)
        ids = list(dict.fromkeys(row_id for _, row_id in first))
        # Exact unless an entry came twice and filled the n rows (see _first_of).
        if len(ids) == len(first) or len(first) < n:
            return ids
    merged = heapq.merge(*keys, reverse=True) if len(keys) > 1 else keys[0]
    # An entry in two streams (a ticket whose id is its identifier) is listed once.
    return list(dict.fromkeys(row_id for _, row_id in merged))[:n]


def _first_of(keys: list[QuerySet], n: int) -> list[tuple]:
    """The first n rows of the sliced, ordered `keys` together, in one statement: both
    databases merge the streams' index scans and read each only as far as the n rows
    take it, where n rows per stream, each its own query, read up to n times more (an
    actor filter that matches eight people: 8 x 51 rows, 7 ms on PostgreSQL, against
    1.5). Rows as the driver gives them (_raw). An entry in two streams comes twice:
    fewer than n rows are then all there are; n rows with a repeat may hide one."""
    parts, params = [], []
    for rows in keys:
        try:
            sql, values = rows.query.sql_with_params()
        except EmptyResultSet:
            continue
        parts.append(f"SELECT * FROM ({sql}) AS s{len(parts)}")
        params += values
    if not parts:
        return []
    query = " UNION ALL ".join(parts) + f" ORDER BY 1 DESC, 2 DESC LIMIT {int(n)}"
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        return cursor.fetchall()


def visible_to(team_ids: frozenset[str] | None, *, to_entry: str = "") -> Q:
    """THE scope rule of the audit log, used by every surface that shows entries (the
    ticket page's history panel and its fragment, the list, its chart, one entry, the
    export): an entry is visible to a user scoped to `team_ids` when it was recorded under
    one of those teams (AuditEntry.team_id, the ticket's team at the time), whatever team
    the ticket is in now. None (superusers, unscoped users) sees every entry; an empty
    scope sees none; entries recorded under no team (an export, an edit refused before
    the ticket was read) only unscoped users see. With `to_entry` (the path of the
    relation, "entry__"), for rows that point at an entry."""
    if team_ids is None:
        return Q()
    return Q(**{f"{to_entry}team_id__in": sorted(team_ids)})


def _entry_q(filters: AuditFilter, team_ids, *, to_entry: str = "") -> Q:
    """The filters held on the entry itself, for entries or (with `to_entry`, the path of
    the relation) rows that point at one. The date range belongs to each stream."""
    q = visible_to(team_ids, to_entry=to_entry)
    if filters.actor:
        names = filters.names()
        if len(names) == 1:
            q &= Q(**{f"{to_entry}actor_username": names[0]})
        else:
            q &= Q(**{f"{to_entry}actor_username__in": names})
    if filters.ticket:
        q &= Q(**{f"{to_entry}ticket_id": filters.ticket}) | Q(
            **{f"{to_entry}ticket_identifier": filters.ticket.upper()}
        )
    if filters.revert == REVERTS:
        q &= Q(**{f"{to_entry}revert_of__isnull": False})
    elif filters.revert == REVERTED:
        q &= Q(**{f"{to_entry}pk__in": _reverted_ids()})
    if filters.reason:
        # IS NOT NULL as well: it is what lets the partial index of reasons drive.
        q &= Q(**{f"{to_entry}reason__isnull": False})
        q &= Q(_ContainsAnyCase(F(f"{to_entry}reason"), filters.reason))
    if filters.batch:
        q &= Q(**{f"{to_entry}batch_id": filters.batch})
    if filters.source == THENA:
        q &= Q(**{f"{to_entry}action": Action.TICKET_EXTERNAL})
    elif filters.source == DASHBOARD:
        q &= ~Q(**{f"{to_entry}action": Action.TICKET_EXTERNAL})
    return q


class _ContainsAnyCase(IContains):
    """Django's icontains, but LOWER(reason) LIKE LOWER(text) on PostgreSQL: what its
    ILIKE does on a UTF-8 database (both sides lowered, then LIKE), but through LIKE's
    UTF-8 matcher, where ILIKE takes the generic multibyte one: 12 ms instead of 20 for
    the 42,000 reasons of a month at 1,000,000 entries, which a rare word reads twice
    (its page and its chart). Django's UPPER(reason) once made PostgreSQL sort every
    reason instead of walking the partial index of reasons newest first (0.3 s instead
    of 1 ms for a common word); since the index holds the reason (migration 0017) the
    walk reads the index alone and wins whatever the guess of how many match."""

    def as_postgresql(self, compiler, connection):
        lhs_sql, lhs_params = compiler.compile(self.lhs)
        rhs_sql, rhs_params = self.process_rhs(compiler, connection)
        return f"LOWER({lhs_sql}) LIKE LOWER({rhs_sql})", (*lhs_params, *rhs_params)


def _entry_rows(filters: AuditFilter, team_ids, *, counting: bool = False) -> AuditEntryQuerySet:
    entries = AuditEntry.objects.filter(_entry_q(filters, team_ids), _dates(filters, "created_at"))
    if filters.field:
        # A field row carries its entry's created_at: bounded by the same dates, the
        # probe lets PostgreSQL join a date range of the field index rather than hash
        # all of it (0.3 s for a chart of actor + field). A page's probe leaves out the
        # equality with the entry's created_at: the planner takes the two equalities for
        # independent, expects no match and walks the whole index. A count (`counting`)
        # has it: both indexes then run in (created_at, id) order, and PostgreSQL merges
        # them instead of probing the field index once per entry (7 ms instead of 30 for
        # a month of one actor and description at 1,000,000 entries).
        fields = AuditField.objects.filter(
            _dates(filters, "created_at"), entry=OuterRef("pk"), field=filters.field
        )
        if counting:
            fields = fields.filter(created_at=OuterRef("created_at"))
        entries = entries.filter(Exists(fields))
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
    so it also works across a relation. An EXISTS here lets SQLite scan the outcome index;
    "pending" is the one outcome whose probe is a NOT EXISTS (it has no outcome row)."""
    if outcome == Outcome.PENDING:
        # Written pending and never settled: a probe that reads the (entry, id) index
        # alone, where the latest outcome's value would be read from the table.
        settled = AuditOutcome.objects.filter(entry=OuterRef(f"{to_entry}pk"))
        return Q(~Exists(settled), **{f"{to_entry}outcome": outcome})
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


@dataclass(frozen=True)
class BatchSummary:
    batch_id: str
    total: int  # the batch's entries the user may read
    matching: int | None  # of those, the ones the other filters keep; None: no other filter

    @property
    def short(self) -> str:
        return self.batch_id[:8]  # the first group of the UUID, as people quote it


@_tuned
def batch_summary(
    *, filters: AuditFilter, team_ids: frozenset[str] | None = None
) -> BatchSummary | None:
    """The bulk edit the filters name, counted; None when they name none. Plain COUNTs
    over its partial index: a batch has at most a few thousand entries."""
    if not filters.batch:
        return None
    total = AuditEntry.objects.filter(visible_to(team_ids), batch_id=filters.batch).count()
    matching = None
    if set(filters.as_params()) - {"batch"}:
        streams = _streams(filters, team_ids, ordered=False)
        matching = streams[0][0].count() if streams else 0
    return BatchSummary(filters.batch, total, matching)


def _in_form_order(names) -> list[str]:
    """Field names as the edit form orders them, unknown ones last: the same on both
    databases (PostgreSQL's jsonb keeps no key order)."""
    order = schema.field_order()
    return sorted(names, key=lambda name: (order.get(name, len(order)), name))


def _label(labels: dict[str, schema.Field], name: str) -> str:
    field = labels.get(name)
    return field.label if field else name


@dataclass(frozen=True)
class DayCount:
    day: date
    count: int


@dataclass(frozen=True)
class ChartSpan:
    since: date
    until: date
    asked: int  # days the filters asked for; more than CHART_MAX_DAYS are not charted

    @property
    def cut(self) -> bool:
        return self.asked > CHART_MAX_DAYS


def chart_span(filters: AuditFilter, *, days: int = CHART_DAYS) -> ChartSpan:
    """The days the chart shows: the filtered date range, by default the last `days` days
    up to `until` (or today); of a range longer than CHART_MAX_DAYS, its last
    CHART_MAX_DAYS days (ChartSpan.cut says so, and the page says it plainly)."""
    today = timezone.localdate()
    # A `since` after today (and no `until`) charts that one day, never an empty span.
    until = filters.until or max(today, filters.since or today)
    until = min(until, FILTER_MAX_DATE)
    since = min(filters.since or _days_before(until, days - 1), until)
    asked = (until - since).days + 1
    return ChartSpan(max(since, _days_before(until, CHART_MAX_DAYS - 1)), until, asked)


@_tuned
def audit_daily_counts(
    *,
    filters: AuditFilter,
    team_ids: frozenset[str] | None = None,
    days: int = CHART_DAYS,
) -> list[DayCount]:
    """Changes (ticket.update and ticket.external entries, whatever their outcome) per day
    in the user's time zone over chart_span(filters): exports and chain anchors are not
    changes.

    Filters the counts table answers (outcome, field, source, dates, and the scope) sum
    its 15-minute buckets per local day: one statement, exact at any moment (the
    triggers keep it in the writers' transactions), so nothing is cached. The others
    (actor, ticket, revert, reason, bulk edit) count index entries: one COUNT per day
    over an index range, sent as a single UNION ALL (_count_days); counting index
    entries is several times faster than grouping by a computed local date (which SQLite
    runs through a Python function per row).

    Those counts of days before today are cached (one cache entry per filter, scope and
    time zone) and checked before use, so they are never stale: a past day's count can
    change only through rows written after it was counted, which are the rows past the
    ids the cache entry remembers (at most CHART_CACHE_SECONDS of writes). An entry dated into
    the past (seed_audit, a clock behind) drops the cache; so does, with an outcome
    filter, an outcome row that settles an entry of a past day, and with "reverted" any
    new revert."""
    span = chart_span(filters, days=days)
    shown = [span.since + timedelta(days=n) for n in range((span.until - span.since).days + 1)]
    if _counted(filters):
        ranges = [(_midnight(day), _midnight(day + timedelta(days=1))) for day in shown]
        per_day = _summed(_count_rows(filters, team_ids), ranges)
        return [DayCount(day, n) for day, n in zip(shown, per_day, strict=True)]
    today = timezone.localdate()
    key, undated = _days_key(filters, team_ids)
    cached = cache.get(key)
    if not cached or _stale(cached, undated, _midnight(today)):
        cached = {"heads": _heads(undated), "filled": time_now(), "days": {}}
    counts = {day: cached["days"][day] for day in shown if day in cached["days"]}
    fresh = _count_days([day for day in shown if day not in counts], undated, team_ids)
    past = {day: n for day, n in fresh.items() if day < today}
    if past:
        cache_set(key, {**cached, "days": cached["days"] | past}, CHART_CACHE_SECONDS)
    return [DayCount(day, (counts | fresh)[day]) for day in shown]


def _days_key(filters: AuditFilter, team_ids) -> tuple[str, AuditFilter]:
    """The cache key of a chart's per-day counts (one per filter, scope and time zone, the
    dates aside), and the filters undated, with the usernames they mean."""
    undated = replace(filters, since=None, until=None)
    try:
        names = undated.names()
    except TooManyActors:
        names = ()
    undated = replace(undated, actor_names=names)
    scope = sorted(team_ids) if team_ids is not None else None
    what = f"{undated!r}{names!r}{scope!r}{timezone.get_current_timezone_name()}"
    return "audit-days:v2:" + hashlib.sha256(what.encode()).hexdigest()[:32], undated


# The filters the counts table answers alone (with the scope); the others count index
# entries (_count_days).
COUNTED = frozenset({"since", "until", "outcome", "field", "source"})


def _counted(filters: AuditFilter) -> bool:
    return not set(filters.as_params()) - COUNTED


def _count_rows(filters: AuditFilter, team_ids) -> QuerySet:
    """The AuditCount rows of the changes the filters keep: those of the entries
    themselves (field ""), or of the field's rows."""
    actions = CHANGES
    if filters.source == THENA:
        actions = (Action.TICKET_EXTERNAL,)
    elif filters.source == DASHBOARD:
        actions = tuple(action for action in CHANGES if action != Action.TICKET_EXTERNAL)
    # outcome "": every outcome (AuditCount)
    return AuditCount.objects.filter(
        visible_to(team_ids), field=filters.field, action__in=actions, outcome=filters.outcome
    )


def _summed(rows: QuerySet, ranges: list[tuple[datetime, datetime]]) -> list[int]:
    """Per [start, end) range, the sum of `rows`' n over the buckets in it: one statement,
    the ranges as a VALUES list, each summed over an index range of the counts' primary
    key (field, outcome, bucket, ...). No bound over all the ranges: SQLite takes one
    range per index scan, and may pick that one for every day."""
    totals = [0] * len(ranges)
    try:
        sql, params = rows.order_by().values("bucket", "n").query.sql_with_params()
    except EmptyResultSet:  # a scope of no teams
        return totals
    adapt = connection.ops.adapt_datetimefield_value
    days = ", ".join(["(%s, %s, %s)"] * len(ranges))
    bounds = [
        value for n, (start, end) in enumerate(ranges) for value in (n, adapt(start), adapt(end))
    ]
    # A subquery per day, not a join: PostgreSQL may otherwise scan all the buckets
    # and test each against every day.
    query = (
        f"WITH days (i, lo, hi) AS (VALUES {days}) SELECT days.i, "
        f"(SELECT SUM(c.n) FROM ({sql}) c WHERE c.bucket >= days.lo AND c.bucket < days.hi) "
        "FROM days"
    )
    with connection.cursor() as cursor:
        cursor.execute(query, [*bounds, *params])
        for n, total in cursor.fetchall():
            totals[n] = int(total or 0)
    return totals


def _heads(filters: AuditFilter) -> dict[str, int]:
    """The newest ids the counts about to be made can have seen."""
    heads = {"entry": AuditEntry.objects.order_by("-id").values_list("id", flat=True).first()}
    if filters.outcome:
        heads["outcome"] = AuditOutcome.objects.order_by("-id").values_list("id", flat=True).first()
    return {name: head or 0 for name, head in heads.items()}


def _stale(cached: dict, filters: AuditFilter, midnight: datetime) -> bool:
    """Whether rows written since `cached` was filled may change a past day's count. The
    rows past its ids are read in id order (a primary-key range: given the dates as
    well, SQLite walks the whole log before `midnight` instead), at most
    STALE_PROBE_MAX of them; past that, the counts are made again."""
    if time_now() - cached["filled"] > CHART_CACHE_SECONDS:
        return True
    heads, reverted = cached["heads"], filters.revert == REVERTED
    entries = AuditEntry.objects.filter(id__gt=heads["entry"]).order_by("id")
    new = entries.values_list("created_at", "revert_of")[: STALE_PROBE_MAX + 1]
    if len(new) > STALE_PROBE_MAX:
        return True
    if any(created < midnight or (reverted and revert_of) for created, revert_of in new):
        return True
    if not filters.outcome:
        return False
    outcomes = AuditOutcome.objects.filter(id__gt=heads["outcome"]).order_by("id")
    settled = outcomes.values_list("entry_created_at", flat=True)[: STALE_PROBE_MAX + 1]
    return len(settled) > STALE_PROBE_MAX or any(created < midnight for created in settled)


def _days_before(day: date, n: int) -> date:
    return max(day - timedelta(days=min(n, (day - FILTER_MIN_DATE).days)), FILTER_MIN_DATE)


def _count_days(days: list[date], filters: AuditFilter, team_ids) -> dict[date, int]:
    """Changes per day, for the filters the counts table cannot answer alone (_counted).

    Each stream's rows of the day are counted through the filter's own index (reading
    each row's action instead would turn the index-only counts into a table lookup per
    row, 3 to 10 times slower), less those of entries that are not changes: few
    (exports, anchors), so they are listed once for all the days, through the action
    index, and the stream is asked which of them it holds. "reverted" looks up the few
    reverted entries rather than probing every entry. An actor filter that matches more
    people than it leaves out counts the others and takes them from the counts table's
    total (_actor_complement)."""
    counts = dict.fromkeys(days, 0)
    if not days:
        return counts
    ranges = [(_midnight(day), _midnight(day + timedelta(days=1))) for day in days]
    fields = _actor_field_rows(ranges, filters, team_ids)
    if fields is not None and connection.vendor == "postgresql" and fields <= FETCH_MAX:
        # At most `fields` matches: their times, read in one statement over the whole
        # span (PostgreSQL then merges the actor and field indexes on (created_at, id);
        # per day it probes the field index once per entry instead, 5x slower). Given
        # one statement, PostgreSQL picks the join whichever table the statement starts
        # from (at 1,000,000 entries the two cost within 15% of each other, for one name
        # or eight, a rare field or a common one), so no count picks it (_fields_drive:
        # up to 6 ms): one person's entries run in (created_at, id) order and merge with
        # the field's rows; several people's do not, and the field's rows drive.
        span = replace(filters, since=days[0], until=days[-1])
        streams = (
            _field_driven(span, team_ids)
            if len(filters.names()) > 1
            else [(rows, at, sign) for rows, at, _, sign in _chart_streams(span, team_ids)]
        )
        for rows, created, sign in streams:
            for day, n in zip(days, _bucketed(rows, created, ranges), strict=True):
                counts[day] += sign * n
    elif fields is not None and _fields_drive(ranges, filters, fields):
        per_day = _per_day(
            lambda day: _field_driven(replace(filters, since=day, until=day), team_ids), ranges
        )
        counts = dict(zip(days, per_day, strict=True))
    elif (complement := _actor_complement(days, ranges, filters, team_ids)) is not None:
        return complement
    elif filters.revert == REVERTED:
        stored = [(_as_read(start), _as_read(end)) for start, end in ranges]
        for rows, created, row_id, sign in _chart_streams(replace(filters, revert=""), team_ids):
            held = rows.filter(
                _reverted(row_id, days=(days[-1] - days[0]).days + 1),
                **{f"{created}__gte": ranges[0][0], f"{created}__lt": ranges[-1][1]},
            )
            moments = [moment for (moment,) in _raw(held.values_list(created))]
            _tally(counts, days, stored, moments, sign)
    else:

        def streams(day: date) -> list[tuple[QuerySet, str, int]]:
            dated = replace(filters, since=day, until=day)
            return [(rows, at, sign) for rows, at, _, sign in _chart_streams(dated, team_ids)]

        counts = dict(zip(days, _per_day(streams, ranges), strict=True))
    others = [code for code in distinct_values("action") if code not in CHANGES]
    if others:
        for rows, created, row_id, sign in _chart_streams(filters, team_ids):
            # Driven from the action index (few rows, and their created_at and id in
            # it), each a probe of the stream's own index on its (created_at, id), which
            # a row's copy of them makes exact; a stream holds at most one row of an entry.
            mine = rows.filter(**{row_id: OuterRef("pk"), created: OuterRef("created_at")})
            held = AuditEntry.objects.filter(
                Exists(mine),
                action__in=others,
                created_at__gte=ranges[0][0],
                created_at__lt=ranges[-1][1],
            ).values_list("created_at", flat=True)
            _tally(counts, days, ranges, held, -sign)
    return counts


def _chart_streams(filters: AuditFilter, team_ids) -> list[tuple[QuerySet, str, str, int]]:
    """The streams whose rows, added up with their signs (+1 or -1), are the matching
    entries: each counted over one index. On PostgreSQL a ticket is its id's entries
    plus its identifier's, less those that have both (its plan for the OR read every row
    from the table; SQLite's reads the two indexes), and a reason is two disjoint
    streams (_reason_parts)."""
    if filters.ticket and not filters.batch and connection.vendor == "postgresql":
        if filters.actor and not filters.names():
            return []
        rest = _entry_rows(replace(filters, ticket=""), team_ids, counting=True)
        by_id = rest.filter(ticket_id=filters.ticket)
        by_identifier = rest.filter(ticket_identifier=filters.ticket.upper())
        both = by_id.filter(ticket_identifier=filters.ticket.upper())
        return [
            (by_id, "created_at", "id", +1),
            (by_identifier, "created_at", "id", +1),
            (both, "created_at", "id", -1),
        ]
    streams = _streams(filters, team_ids, ordered=False, counting=True)
    if len(streams) == 1 and _reason_drives(filters):
        rows, created, row_id = streams[0]
        return [(rows.filter(part), created, row_id, +1) for part in _reason_parts()]
    return [(*stream, +1) for stream in streams]


# Matches read one by one (their times) rather than counted per day, at most.
FETCH_MAX = 50_000


def _actor_field_rows(ranges, filters: AuditFilter, team_ids) -> int | None:
    """For an actor filter with a field (and only filters the counts table answers): how
    many rows of that field the span holds, from the counts table (a bound on the
    matches). None for other filters."""
    names = filters.names() if filters.actor else ()
    rest = replace(filters, actor="", actor_names=None)
    if not (filters.field and names and _counted(rest)):
        return None
    return _summed(_count_rows(rest, team_ids), [(ranges[0][0], ranges[-1][1])])[0]


def _fields_drive(ranges, filters: AuditFilter, fields: int) -> bool:
    """Whether an actor filter with a field is cheaper to count from the field's `fields`
    rows, each probing its entry, than from the people's entries, each probing the field
    index: the people's entries are counted only up to FIELD_PROBE_COST times `fields`
    (bounded work, from the actor index alone; every team's, as a guess for a scoped
    user)."""
    names = filters.names()
    theirs = AuditEntry.objects.filter(
        actor_username__in=names, created_at__gte=ranges[0][0], created_at__lt=ranges[-1][1]
    )
    bound = FIELD_PROBE_COST.get(connection.vendor, 4) * fields
    return theirs.order_by()[: bound + 1].count() > bound


# How many times cheaper an entry probing the field index is than a field row probing
# its entry (in audit_entry_by_id, migration 0018). SQLite: about as cheap (a month at
# 1,000,000 entries: 44 ms instead of 80 for 8 people and statusId, 16 instead of 22 for
# one and description, no case slower). PostgreSQL, past the rows it reads in one
# statement (FETCH_MAX): it may merge or hash the people's entries with the field's
# rows, about four times cheaper.
FIELD_PROBE_COST = {"sqlite": 1, "postgresql": 4}


def _field_driven(filters: AuditFilter, team_ids) -> list[tuple[QuerySet, str, int]]:
    """The field's rows of the filters' dates whose entries match the rest, each bounded
    by the same dates on the entry too (so PostgreSQL may join a date range of the
    entries rather than all of them). Only changes have field rows."""
    ((rows, created, _),) = _field_rows(filters, team_ids)
    return [(rows.filter(_dates(filters, "entry__created_at")), created, +1)]


def _actor_complement(days, ranges, filters: AuditFilter, team_ids) -> dict[date, int] | None:
    """The counts of an actor filter (with filters the counts table answers) that
    matches more people than it leaves out: the counts table's total less the entries
    of everyone else (and of no one), each read through the actor index. None when
    counting the people themselves is cheaper, or when someone new appeared meanwhile.

    Exact: every username the log held when `head` was read is either matched or
    counted as another; a row written since by someone else would be in the total
    alone, so the rows past `head` are checked after counting (a primary-key range)."""
    rest = replace(filters, actor="", actor_names=None)
    names = set(filters.names()) if filters.actor else set()
    if not names or not _counted(rest):
        return None
    head = AuditEntry.objects.order_by("-id").values_list("id", flat=True).first() or 0
    others = [*sorted(logged_actors() - names), ""]
    if len(others) >= len(names):
        return None
    total = _summed(_count_rows(rest, team_ids), ranges)
    them = _count_days(days, replace(filters, actor_names=tuple(others)), team_ids)
    later = AuditEntry.objects.filter(id__gt=head).exclude(actor_username__in=[*names, *others])
    if later.exists():
        return None
    return {day: n - them[day] for day, n in zip(days, total, strict=True)}


UNION_MAX = 400  # SELECTs per UNION ALL (SQLite takes at most 500)
PARAMS_MAX = 30_000  # parameters per statement
# The streams of a chart are compiled once, dated the first of these days, and each
# day's own bounds then take the place of that day's (told apart by the second).
PROBE_DAYS = (date(1900, 1, 2), date(1900, 1, 3))


def _per_day(streams, ranges: list[tuple[datetime, datetime]]) -> list[int]:
    """Per [start, end) range, the rows of `streams(day)` that fall in it: each stream is
    (rows, their created_at column, +1 or -1), rows that may be dated `day` already (as
    the filters' date range dates them, the field probe included). One COUNT per range
    and stream, over an index, all sent as a single UNION ALL.

    The query is compiled once (twice: for each of PROBE_DAYS), and each range's bounds
    take the place of the first day's in its parameters: the ORM takes ~0.3 ms to build
    each, and a 366-day chart would spend 0.1 s on that alone. Each range is its
    stream's only date bound: SQLite takes one range per index scan, and given a wider
    one as well it may pick that one for every day.

    PostgreSQL plans each SELECT of a UNION ALL apart (15 ms for a ticket's 30 days,
    which then ran in 3), so there each stream, undated (`streams(None)`), is counted
    by a subquery per range of a VALUES list: planned once, run once per range."""
    if connection.vendor == "postgresql":
        return _per_range(streams(None), ranges)
    adapt = connection.ops.adapt_datetimefield_value
    first = PROBE_DAYS[0]
    probe = [adapt(_midnight(first)), adapt(_midnight(first + timedelta(days=1)))]
    counts = [0] * len(ranges)
    statements = [([], [])]  # (SELECTs, parameters), each within SQLite's limits
    compiled = [_compiled(streams, day) for day in PROBE_DAYS]
    for (sql, params, sign), (other, changed, _) in zip(*compiled, strict=True):
        # The parameters that move with the day are its bounds, and nothing else.
        if other != sql or len(changed) != len(params):
            raise ValueError("A chart's stream does not compile the same for every day.")
        slots = [None if a == b else probe.index(a) for a, b in zip(params, changed, strict=True)]
        for n, bounds in enumerate(ranges):
            parts, values = statements[-1]
            if len(parts) >= UNION_MAX or len(values) + len(params) > PARAMS_MAX:
                parts, values = [], []
                statements.append((parts, values))
            bounds = [adapt(bound) for bound in bounds]
            parts.append(f"SELECT {sign} AS sign, {n} AS day, COUNT(*) AS n FROM ({sql}) AS d")
            values += [
                value if slot is None else bounds[slot]
                for value, slot in zip(params, slots, strict=True)
            ]
    with connection.cursor() as cursor:
        for parts, values in statements:
            if parts:
                cursor.execute(" UNION ALL ".join(parts), values)
                for sign, n, count in cursor.fetchall():
                    counts[n] += sign * count
    return counts


def _per_range(streams, ranges: list[tuple[datetime, datetime]]) -> list[int]:
    """_per_day on PostgreSQL: `streams` are undated; each range bounds each of them in a
    correlated subquery (an index range per range and stream)."""
    counts = [0] * len(ranges)
    columns, params, signs = [], [], []
    quote = connection.ops.quote_name
    for rows, created, sign in streams:
        try:
            sql, values = rows.order_by().values(created).query.sql_with_params()
        except EmptyResultSet:  # e.g. a scope of no teams: nothing to count
            continue
        column = quote(created)
        columns.append(
            f"(SELECT COUNT(*) FROM ({sql}) s WHERE s.{column} >= days.lo AND s.{column} < days.hi)"
        )
        params += values
        signs.append(sign)
    if not columns:
        return counts
    days = ", ".join(["(%s, %s, %s)"] * len(ranges))
    bounds = [value for n, (start, end) in enumerate(ranges) for value in (n, start, end)]
    query = (
        f"WITH days (i, lo, hi) AS (VALUES {days}) SELECT days.i, {', '.join(columns)} FROM days"
    )
    with connection.cursor() as cursor:
        cursor.execute(query, [*bounds, *params])
        for n, *found in cursor.fetchall():
            counts[n] = sum(sign * count for sign, count in zip(signs, found, strict=True))
    return counts


def _bucketed(rows: QuerySet, created: str, ranges: list[tuple[datetime, datetime]]) -> list[int]:
    """PostgreSQL: how many of `rows` fall in each of the disjoint [start, end) `ranges`,
    read in one pass and counted by the database (width_bucket over the ranges' bounds),
    not sent as thousands of timestamps to be bisected here (4-5 ms for 9,000)."""
    counts = [0] * len(ranges)
    try:
        sql, params = rows.order_by().values(created).query.sql_with_params()
    except EmptyResultSet:  # e.g. a scope of no teams: nothing to count
        return counts
    bounds = sorted({bound for pair in ranges for bound in pair})
    column = connection.ops.quote_name(created)
    query = (
        f"SELECT WIDTH_BUCKET(s.{column}, %s::timestamptz[]) AS b, COUNT(*) "
        f"FROM ({sql}) s GROUP BY 1"
    )
    with connection.cursor() as cursor:
        cursor.execute(query, [bounds, *params])
        found = dict(cursor.fetchall())
    # Bucket k holds [bounds[k - 1], bounds[k]); no bound lies inside a range.
    return [found.get(bounds.index(start) + 1, 0) for start, _ in ranges]


def _compiled(streams, day: date) -> list[tuple[str, tuple, int]]:
    """Each stream of `streams(day)`, counted over `day`: its SQL, parameters and sign."""
    start, end = _midnight(day), _midnight(day + timedelta(days=1))
    out = []
    for rows, created, sign in streams(day):
        dated = rows.filter(**{f"{created}__gte": start}).filter(**{f"{created}__lt": end})
        try:
            sql, params = dated.order_by().values(created).query.sql_with_params()
        except EmptyResultSet:  # e.g. a scope of no teams: nothing to count
            continue
        out.append((sql, tuple(params), sign))
    return out


def _as_read(moment: datetime) -> datetime:
    """`moment` as the driver reads a datetime column (_raw): in the connection's time
    zone, naive where the database keeps no zone (SQLite). Aware datetimes of the same
    tzinfo compare as naive ones do; of two zones, each comparison asks both for their
    offset (bisecting 9,000 moments among a month's days took 18 ms instead of 0.5)."""
    if connection.features.supports_timezones:
        return moment.astimezone(connection.timezone)
    return moment.astimezone(connection.timezone).replace(tzinfo=None)


def _tally(counts: dict, days: list[date], ranges: list, moments, step: int) -> None:
    """Add `step` to the count of the day each of `moments` falls in (if any)."""
    starts = [start for start, _ in ranges]
    for moment in moments:
        n = bisect.bisect_right(starts, moment) - 1
        if n >= 0 and moment < ranges[n][1]:
            counts[days[n]] += step


# Over fewer days than this, PostgreSQL reads "reverted" from the date range's entries.
REVERTED_RANGE_DAYS = 7


def _reverted(column: str, *, days: int | None) -> Q:
    """`column`, an entry id, is that of an entry some entry reverts, among rows dated
    over `days` days (None: no bound): the reverted ids from the index of revert_of, a
    subquery (thousands of ids as a list cost the ORM more than the lookups).

    On PostgreSQL over more than REVERTED_RANGE_DAYS days (or none), = ANY(ARRAY(...)):
    its index scan sorts the ids and looks each up in index order through the index
    `column` leads (the entries' by id, the field or outcome rows' by entry), a cost
    that follows the number of reverts. IN (...) hashes them and either looks them up
    at random or reads every entry of the date range, a cost that follows the range:
    at 1,000,000 entries and 4,000 reverts, 0.7 against 3 ms for a day, equal at a
    week, 11 against 4 for 30 days, 9 against 5 with no bound."""
    if connection.vendor == "postgresql" and (days is None or days > REVERTED_RANGE_DAYS):
        return Q(_AnyOf(F(column), Subquery(_reverted_ids())))
    return Q(**{f"{column}__in": _reverted_ids()})


def _reverted_ids() -> QuerySet:
    """The ids of the entries some entry reverts, from the index of revert_of."""
    return AuditEntry.objects.filter(revert_of__isnull=False).values("revert_of")


class _AnyOf(Func):
    """column = ANY(ARRAY(subquery)), PostgreSQL only."""

    output_field = BooleanField()

    def as_sql(self, compiler, connection, **extra_context):
        column, rows = self.get_source_expressions()
        column_sql, column_params = compiler.compile(column)
        rows_sql, rows_params = compiler.compile(rows)  # "(SELECT ...)"
        return f"{column_sql} = ANY(ARRAY{rows_sql})", (*column_params, *rows_params)


@dataclass(frozen=True)
class FieldChange:
    name: str
    label: str
    before: str
    after: str
    diff: list[tuple[str, str]]  # (same|del|ins, text) for long text, else empty
    code: bool  # JSON: show in a monospace block
    before_readable: bool = True  # False for a write-only field (no "before" recorded)
    # The names recorded beside ids when the entry was written ("" when none was known).
    before_label: str = ""
    after_label: str = ""
    # customFieldValues: each custom field touched, by name, in words.
    custom_fields: tuple[CustomFieldChange, ...] = ()

    @property
    def labelled(self) -> bool:
        return bool(self.before_label or self.after_label)


@dataclass(frozen=True)
class AuditDetail:
    entry: AuditEntry
    changes: list[FieldChange]
    request_body: str  # indented JSON
    outcomes: list[AuditOutcome]  # oldest first
    current_outcome: str
    revert_of_number: int | None = None  # the number of the entry this one reverts
    reverted_by: tuple[int, ...] = ()  # the numbers of the entries that revert this one


def audit_entry_detail(*, number: int, team_ids: frozenset[str] | None = None) -> AuditDetail:
    """One entry with its field diff and outcome rows; AuditEntry.DoesNotExist when it is
    missing or outside `team_ids`."""
    entry = AuditEntry.objects.filter(visible_to(team_ids)).get(number=number)
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
        revert_of_number=revert_numbers([entry]).get(entry.revert_of),
        reverted_by=tuple(
            AuditEntry.objects.filter(visible_to(team_ids), revert_of=entry.pk)
            .order_by("id")
            .values_list("number", flat=True)
        ),
    )


def _field_change(name: str, field: schema.Field | None, change: Any) -> FieldChange:
    change = change if isinstance(change, dict) else {"before": None, "after": change}
    before, after = change.get("before"), change.get("after")
    code = isinstance(before, dict | list) or isinstance(after, dict | list)
    diff = []
    if isinstance(before, str) and isinstance(after, str):
        long = any(len(text) > LONG_TEXT or "\n" in text for text in (before, after))
        if long or (field and field.kind == "text"):
            diff = _word_diff(before, after)
    label = field.label if field else name
    readable = "before" in change
    return FieldChange(
        name,
        label,
        _shown(before),
        _shown(after),
        diff,
        code,
        readable,
        before_label=_shown_label(change.get("before_label")),
        after_label=_shown_label(change.get("after_label")),
        custom_fields=tuple(custom_field_changes(change)) if name == "customFieldValues" else (),
    )


def _shown_label(label: Any) -> str:
    return label if isinstance(label, str) else ""


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
