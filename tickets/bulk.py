"""Bulk edits (issue 13): the same values set on many tickets of one team, previewed, then
run in the background by the task worker with the integrity of a single edit per ticket.

1. batch_preview_create: the selection (ticked tickets, or every ticket matching the
   list's filter) is read within the user's teams and kept as a draft Batch; each item
   holds what the preview showed of the ticket (its `before`).
2. batch_confirm queues tasks.bulk_run; batch_cancel stops it before the next chunk.
3. batch_run, one chunk of tickets at a time: take their edit locks, re-read them, decide
   per ticket (no change; a conflict with a change made since the preview; moved out of
   the team or the user's scope), commit the audit intents, send (PATCH /v1/tickets/bulk
   once per distinct body of the fields it supports, single PATCHes for the rest), and
   record each outcome by evidence, as services.ticket_update does for one ticket.

Crash safety. A run holds a claim on its batch (`runner`, renewed with `heartbeat_at`
every chunk) and keeps a run queued two leases (BULK_LEASE_SECONDS) ahead: if its worker
dies, that run finds the claim unrenewed and takes the batch over (so do
`schedule_reconcile`, the reconcile sweep and a look at the batch's page). An item turns
"sending" in the transaction that commits its audit intent; the next run never sends such
an item again: its entry stays pending until reconciliation reads the ticket back. So no
ticket is patched twice, and every ticket ends with an outcome.
"""

import contextvars
import csv
import io
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import connection, transaction
from django.db.models import Count
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from . import audit, locks
from .audit.chain import AlreadySettled, append_many, entry_row, record_outcome
from .audit.export import csv_cell
from .forms import CF_PREFIX, Choices, input_label
from .listing import QUERY_BY, Names, NoSuchValue, TicketFilter, search_params
from .models import Action, AuditEntry, AuditOutcome, Batch, BatchItem, Outcome
from .services import (
    Labeller,
    edits_split,
    entry_changes,
    in_scope,
    input_reader,
    patch_body,
    read_back_outcome,
    reconcile_queue,
    team_choices_load,
    team_list,
    team_name_cached,
    team_scope_get,
    thena_answered,
    ticket_ref,
)
from .tasks import bulk_run
from .thena import wire
from .thena.client import concurrently, get_client, request_budget, start_concurrently
from .thena.errors import ThenaError, ThenaNotFound, ThenaRateLimited

logger = logging.getLogger(__name__)

# What PATCH /v1/tickets/bulk can set (thena-api.md §10); any other input goes ticket by
# ticket.
BULK_FIELDS = frozenset({"statusId", "typeId", "priorityId", "assignedAgentId", "isPrivate"})
ID_MAX = 64  # BatchItem.ticket_id, as the audit log's column
LIST_PAGE = 100  # tickets per list or search call when selecting everything matching
# Answers to PATCH /v1/tickets/bulk after which its tickets go one by one.
BULK_REFUSED = frozenset({400, 404, 405, 413, 422})
LOCK_WAIT = 2.0  # seconds a chunk waits for its tickets' edit locks; a busy one comes later
AUTHOR_CHECK_SECONDS = 5.0  # how soon a revoked permission or scope stops a running batch
MAX_ATTEMPTS = 5  # of a ticket deferred (busy, rate-limited, unreadable) before it fails
ACTIVE = (Batch.State.QUEUED, Batch.State.RUNNING)

# What each item outcome is called on the page and in the CSV.
OUTCOME_WORDS = dict(BatchItem.Outcome.choices)


class BulkRefused(Exception):
    """The bulk edit cannot go ahead as asked; the message says why, for people."""


def _check_may_bulk(user) -> None:
    if not (user.has_perm("tickets.bulk_edit") and user.has_perm("tickets.edit_ticket")):
        raise PermissionDenied("You may not edit tickets in bulk.")


# -- selection and preview ----------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """What the user picked on the ticket list: ticked ids, or every ticket matching the
    list's filter (`everything`), always within one team (statuses, priorities, types and
    assignees are each team's own)."""

    team_id: str
    filter: TicketFilter = field(default_factory=TicketFilter)  # the list's, for `everything`
    ticket_ids: tuple[str, ...] = ()
    everything: bool = False

    @property
    def size_text(self) -> str:
        if self.everything:
            shown = self.filter
            if not shown.q:
                return "every ticket matching the filter" if shown.narrowed else "every ticket"
            more = replace(shown, q="").narrowed
            return f"every ticket matching \u201c{shown.q}\u201d" + (" and the filter" * more)
        count = len(self.ticket_ids)
        return f"{count} ticket{'s' if count != 1 else ''}"

    @property
    def filter_items(self) -> list[tuple[str, str]]:
        """The filter as the list's URL has it, within the batch's team."""
        return replace(self.filter, team=self.team_id).items()


def bulk_team_load(*, user, team_id: str) -> tuple[dict, Choices]:
    """The team a bulk edit sets values in, and its choices; BulkRefused when the user may
    not pick it."""
    _check_may_bulk(user)
    if not team_id or not in_scope(user, team_id):
        raise BulkRefused("Choose one of your teams on the ticket list first.")
    try:
        team = next((t for t in team_list() if t.get("id") == team_id), None)
    except ThenaError:
        # The form still shows (with what the cache holds), so no input is lost; reading
        # the tickets will say what is wrong.
        team = {"id": team_id, "name": team_name_cached(team_id) or team_id}
    if team is None:
        raise BulkRefused("Choose one of your teams on the ticket list first.")
    return team, team_choices_load(team_id)


def batch_preview_create(
    *,
    user,
    selection: Selection,
    values: dict,
    value_labels: dict,
    reason: str,
    meta: audit.RequestMeta,
) -> Batch:
    """Read the selected tickets and keep them, with what they hold now of each input
    the batch sets, as a draft batch for the user to confirm. Nothing is sent."""
    team, _ = bulk_team_load(user=user, team_id=selection.team_id)
    if not values:
        raise BulkRefused("Choose at least one field to change.")
    rows, excluded = _selected(user, selection)
    if not rows:
        raise BulkRefused("None of the selected tickets can be edited here.")
    choices = team_choices_load(team["id"])
    with transaction.atomic():
        batch = Batch.objects.create(
            created_by=user,
            team_id=team["id"],
            team_name=str(team.get("name") or ""),
            values=values,
            value_labels=value_labels,
            reason=reason,
            excluded=excluded,
            request_id=meta.request_id,
            client_ip=meta.client_ip,
            user_agent=meta.user_agent,
        )
        BatchItem.objects.bulk_create(
            BatchItem(
                batch=batch,
                position=position,
                ticket_id=str(row["id"]),
                ticket_identifier=str(row.get("ticketIdentifier") or "")[:64],
                ticket_title=str(row.get("title") or ""),
                before=_readable_inputs(row, values),
                before_labels=_shown_inputs(row, values, choices),
            )
            for position, row in enumerate(rows)
        )
    return batch


def _selected(user, selection: Selection) -> tuple[list[dict], dict[str, int]]:
    """The selected tickets of the batch's team, read from Thena, and how many of the
    selection were left out (and why)."""
    limit = settings.BULK_MAX_TICKETS
    client = get_client()
    excluded = {"out_of_scope": 0, "other_team": 0, "not_found": 0, "odd_id": 0}
    if selection.everything:
        rows = _matching(client, user, selection, limit)
    else:
        ids = list(dict.fromkeys(i for i in selection.ticket_ids if i))
        if len(ids) > limit:
            raise BulkRefused(f"At most {limit} tickets can be edited at once.")
        got = concurrently({i: (lambda i=i: client.get_ticket(i)) for i in ids})
        rows = []
        for ticket in got.values():
            if isinstance(ticket, ThenaNotFound):
                excluded["not_found"] += 1
            elif isinstance(ticket, ThenaError):
                raise BulkRefused(f"The tickets could not be read: {ticket.user_message}")
            else:
                rows.append(ticket)
    scope = team_scope_get(user)
    kept, seen = [], set()
    for row in rows:
        ticket_id = row.get("id")
        if not isinstance(ticket_id, str) or ticket_id in seen:
            continue
        seen.add(ticket_id)
        if not 0 < len(ticket_id) <= ID_MAX:
            excluded["odd_id"] += 1
            continue
        team_id = row.get("teamId")
        if scope is not None and team_id not in scope:
            excluded["out_of_scope"] += 1
        elif team_id != selection.team_id:
            excluded["other_team"] += 1
        else:
            kept.append(row)
    return kept, {reason: n for reason, n in excluded.items() if n}


def _matching(client, user, selection: Selection, limit: int) -> list[dict]:
    """Every ticket the list's filter matches (search pages, newest change first), or
    BulkRefused when there are more than `limit`."""
    flt = replace(selection.filter, team=selection.team_id)
    try:
        names = Names.of([team_choices_load(selection.team_id)])
        params = search_params(flt, names, email=getattr(user, "email", "") or "")
    except NoSuchValue as error:
        raise BulkRefused(str(error)) from None
    found: dict[str, dict] = {}

    def read(page: int) -> tuple[int, bool]:
        """Page `page` (from 0) into `found`: how many tickets were new, and whether more
        pages follow."""
        result = client.search_tickets(
            params["q"],
            query_by=QUERY_BY,
            filter_by=params["filter_by"],
            sort_by="updatedAt:desc",
            page=page + 1,
            per_page=LIST_PAGE,
        )
        items, more = result.items, (page + 1) * LIST_PAGE < result.found
        before = len(found)
        for item in items:
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                found.setdefault(item["id"], item)
        if len(found) > limit:
            raise BulkRefused(
                f"More than {limit} tickets match: narrow the filter, or edit them in parts."
            )
        return len(found) - before, more and bool(items)

    page, more = 0, True
    while more:
        _, more = read(page)
        page += 1
    # A ticket changed while the pages were read moved to the top, maybe onto a page read
    # already: read from the top again until a page brings nothing new.
    for again in range(page):
        new, more = read(again)
        if not new or not more:
            break
    return list(found.values())


def _readable_inputs(ticket: dict, values: dict) -> dict:
    """The batch's inputs as `ticket` holds them (PATCH JSON; a custom field's data),
    leaving out what cannot be read: write-only fields, and custom fields Thena sends in
    a shape that cannot be written back."""
    read = input_reader(ticket, wire.ticket_values(ticket))
    hidden = wire.unreadable(ticket)
    exact = wire.cf_exact(ticket)
    return {
        name: read(name)
        for name in values
        if name not in hidden and (exact or not name.startswith(CF_PREFIX))
    }


def _shown_inputs(ticket: dict, values: dict, choices: Choices) -> dict:
    """The same, as people read it: names for ids, Yes/No, a custom field's values."""
    labels = Labeller(choices, (ticket,))
    return {
        name: value_text(name, value, labels)
        for name, value in _readable_inputs(ticket, values).items()
    }


def value_text(name: str, value, labels: Labeller | None = None) -> str:
    """One input's value (PATCH JSON, or a custom field's data) as people read it."""
    if name.startswith(CF_PREFIX):
        items = value if isinstance(value, list) else []
        value = ", ".join(str(v) for v in wire.cf_values({"data": items}))
    elif labels is not None and (label := labels.label(name, value)):
        return label
    if value in (None, "", [], {}):
        return "—"
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if name == "dueDate" and isinstance(value, str) and (moment := wire.aware(value)):
        return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M")
    return str(value)


def batch_settings(batch: Batch, choices: Choices) -> list[tuple[str, str]]:
    """What the batch sets, as (field, value) in words."""
    labels = Labeller(choices)
    return [
        (
            input_label(choices.custom_fields, name),
            batch.value_labels.get(name) or value_text(name, value, labels),
        )
        for name, value in batch.values.items()
    ]


@dataclass(frozen=True)
class PreviewRow:
    item: BatchItem
    changes: list[tuple[str, str, str]]  # (input, now, new) for each input it changes
    no_change: bool


def batch_preview(batch: Batch, choices: Choices) -> list[PreviewRow]:
    """Each ticket with current -> new per input; "no change" when it holds every value
    already (a write-only input cannot be compared, so it is always sent)."""
    rows = []
    sets = list(zip(batch.values.items(), batch_settings(batch, choices), strict=True))
    for item in batch.items.order_by("position"):
        changes = []
        for (name, value), (label, new) in sets:
            if name not in item.before:
                changes.append((label, "not readable", new))
            elif not wire.equal(item.before[name], value):
                changes.append((label, item.before_labels.get(name, "—"), new))
        rows.append(PreviewRow(item, changes, no_change=not changes))
    return rows


# -- confirm, cancel, read --------------------------------------------------------------------


def batch_get(*, user, batch_id) -> Batch:
    """The batch, for its author or another bulk editor of its team; Batch.DoesNotExist
    otherwise (the page is a 404 rather than a hint that the batch exists)."""
    batch = Batch.objects.select_related("created_by").get(pk=batch_id)
    mine = batch.created_by_id == user.pk
    if not mine and not (user.has_perm("tickets.bulk_edit") and in_scope(user, batch.team_id)):
        raise Batch.DoesNotExist
    if batch.state == Batch.State.DRAFT and not mine:
        raise Batch.DoesNotExist  # someone's unconfirmed preview is theirs alone
    return batch


def batch_confirm(*, user, batch: Batch) -> None:
    """Queue the previewed batch to run (once: a second confirm changes nothing)."""
    _check_may_bulk(user)
    if batch.created_by_id != user.pk:
        raise PermissionDenied("Only its author can confirm a bulk edit.")
    confirmed = Batch.objects.filter(pk=batch.pk, state=Batch.State.DRAFT).update(
        state=Batch.State.QUEUED, confirmed_at=timezone.now()
    )
    if confirmed:
        bulk_run.enqueue(str(batch.pk))


def batch_discard(*, user, batch: Batch) -> None:
    """Forget a preview that was not confirmed."""
    if batch.created_by_id != user.pk:
        raise PermissionDenied("Only its author can discard a bulk edit.")
    Batch.objects.filter(pk=batch.pk, state=Batch.State.DRAFT).delete()


def batch_cancel(*, user, batch: Batch) -> None:
    """Stop the batch before its next chunk; what was sent stays recorded. A batch no
    worker has started yet ends at once."""
    _check_may_bulk(user)
    with transaction.atomic():
        locked = Batch.objects.select_for_update().get(pk=batch.pk)
        if locked.state not in ACTIVE:
            return
        locked.cancel_requested_at = locked.cancel_requested_at or timezone.now()
        locked.save(update_fields=["cancel_requested_at"])
        if locked.state == Batch.State.QUEUED:
            _finish(locked, Batch.State.CANCELLED)


@dataclass(frozen=True)
class Progress:
    counts: dict[str, int]  # by item outcome, plus "queued" (not yet done)
    total: int

    @property
    def done(self) -> int:
        """Tickets the batch has finished with (those a cancel left unsent are not)."""
        return self.total - self.counts["queued"] - self.counts[BatchItem.Outcome.CANCELLED]

    @property
    def percent(self) -> int:
        return round(100 * self.done / self.total) if self.total else 100


def batch_progress(batch: Batch) -> Progress:
    counts = {key: 0 for key in ("queued", *BatchItem.Outcome.values)}
    rows = batch.items.values("state", "outcome").annotate(n=Count("id"))
    for row in rows:
        key = row["outcome"] if row["state"] == BatchItem.State.DONE else "queued"
        counts[key] += row["n"]
    for outcome, n in _settled_unknowns(batch).items():
        counts[BatchItem.Outcome.UNKNOWN] -= n
        counts[outcome] += n
    return Progress(counts=counts, total=sum(counts.values()))


def _settled_unknowns(batch: Batch) -> dict[str, int]:
    """Items the batch left unknown that the audit log has settled since, by outcome."""
    found: dict[str, int] = {}
    for outcome in _entry_outcomes(batch).values():
        if outcome in (Outcome.SUCCEEDED, Outcome.FAILED):
            found[outcome] = found.get(outcome, 0) + 1
    return found


def _entry_outcomes(batch: Batch) -> dict[int, str]:
    """The current outcome of the entries of items left unknown, by entry id."""
    ids = batch.items.filter(outcome=BatchItem.Outcome.UNKNOWN, entry__isnull=False).values(
        "entry_id"
    )
    rows = AuditEntry.objects.filter(pk__in=ids).with_current_outcome()
    return dict(rows.values_list("id", "current_outcome"))


@dataclass(frozen=True)
class ResultRow:
    item: BatchItem
    outcome: str
    message: str
    entry_number: int | None

    @property
    def outcome_text(self) -> str:
        return OUTCOME_WORDS.get(self.outcome, self.outcome)

    @property
    def ticket_url(self) -> str:
        """ "" for an id no URL can carry."""
        try:
            return reverse("tickets:detail", args=[self.item.ticket_id])
        except NoReverseMatch:
            return ""


def batch_results(batch: Batch) -> Iterator[ResultRow]:
    """Each item with its outcome, as the audit log has it now."""
    settled = _entry_outcomes(batch)
    numbers = dict(
        AuditEntry.objects.filter(
            pk__in=batch.items.filter(entry__isnull=False).values("entry_id")
        ).values_list("id", "number")
    )
    for item in batch.items.order_by("position").iterator(chunk_size=500):
        outcome, message = item.outcome or "queued", item.message
        now = settled.get(item.entry_id)
        if item.outcome == BatchItem.Outcome.UNKNOWN and now in (
            Outcome.SUCCEEDED,
            Outcome.FAILED,
        ):
            outcome = now
            message = f"{message} Settled since by the audit log: {now}.".strip()
        yield ResultRow(item, outcome, message, numbers.get(item.entry_id))


def batch_results_csv(batch: Batch) -> Iterator[str]:
    """The results table as CSV lines (cells that a spreadsheet would run as a formula
    are quoted as the audit export does)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    columns = ["ticket_identifier", "ticket_id", "title", "outcome", "message", "audit_entry"]
    writer.writerow(columns)
    for row in batch_results(batch):
        writer.writerow(
            csv_cell(value)
            for value in (
                row.item.ticket_identifier,
                row.item.ticket_id,
                row.item.ticket_title,
                row.outcome,
                row.message,
                row.entry_number or "",
            )
        )
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    if buffer.getvalue():
        yield buffer.getvalue()


# -- the run ------------------------------------------------------------------------------


def _lease() -> timedelta:
    return timedelta(seconds=settings.BULK_LEASE_SECONDS)


def batch_run(batch_id) -> str:
    """Run the batch (the task): claim it, then one chunk at a time until it is done or
    cancelled. Returns what happened, for the task's result."""
    token = uuid.uuid4().hex
    claimed = _claim(batch_id, token)
    if claimed != "claimed":  # finished, missing, or busy: its runner keeps its own watch
        return claimed
    batch = Batch.objects.select_related("created_by").get(pk=batch_id)
    try:
        return _Runner(batch, token).run()
    except _LostClaim:
        logger.warning("Bulk edit %s: another worker took the batch over", batch_id)
        return "taken over"


def _claim(batch_id, token: str) -> str:
    with transaction.atomic():
        batch = Batch.objects.select_for_update().filter(pk=batch_id).first()
        if batch is None:
            return "missing"
        if batch.state not in ACTIVE:
            return "finished"
        now = timezone.now()
        alive = batch.heartbeat_at is not None and batch.heartbeat_at > now - _lease()
        if batch.state == Batch.State.RUNNING and batch.runner and alive:
            return "busy"
        batch.state, batch.runner, batch.heartbeat_at = Batch.State.RUNNING, token, now
        batch.save(update_fields=["state", "runner", "heartbeat_at"])
        return "claimed"


def _finish(batch: Batch, state: str) -> None:
    """End the batch (in the caller's transaction): items never sent are cancelled."""
    batch.items.filter(state=BatchItem.State.QUEUED).update(
        state=BatchItem.State.DONE,
        outcome=BatchItem.Outcome.CANCELLED,
        message="Not sent: the bulk edit was cancelled.",
    )
    Batch.objects.filter(pk=batch.pk).update(
        state=state, finished_at=timezone.now(), runner="", heartbeat_at=None
    )


@dataclass
class _Chunk:
    """Tickets taken together: their edit locks held (`held`: the ticket ids whose lock
    was free), their re-reads under way (`reads()` waits for them), within `deadline`."""

    items: list[BatchItem]
    held: set[str]
    locks: ExitStack
    reads: Callable[[], dict]
    deadline: float | None


def _started(calls: dict, deadline: float | None) -> Callable[[], dict]:
    """The calls started within `deadline` (in the caller's context, a fresh one)."""
    seconds = None if deadline is None else deadline - time.monotonic()
    with request_budget(seconds):
        return start_concurrently(calls)


class _Cancelled(Exception):
    """A cancel was asked: send nothing more."""


class _LostClaim(Exception):
    """Another run took the batch over (this one was thought dead): stop at once."""


@dataclass
class _Plan:
    """One ticket of a chunk, after its re-read: what to send, or how it ended."""

    item: BatchItem
    fresh: dict | None = None
    body: dict = field(default_factory=dict)
    custom: dict = field(default_factory=dict)
    changes: dict = field(default_factory=dict)
    bulk: bool = False
    # Set when the ticket needs nothing sent (no change, skipped) or is done.
    outcome: str = ""
    message: str = ""
    entry: AuditEntry | None = None
    defer: bool = False  # try again later (busy, rate-limited, unreadable)
    free: bool = False  # a deferral that is not a try (rate-limited, or the ticket busy)
    status: int | None = None  # Thena's answer, for the outcome row
    updated_at: str = ""  # the ticket's updatedAt as the evidence showed it


class _Runner:
    def __init__(self, batch: Batch, token: str) -> None:
        self.batch = batch
        self.token = token
        self.user = batch.created_by
        self.client = get_client()
        self.meta = audit.RequestMeta(
            request_id=batch.request_id or uuid.uuid4().hex,
            client_ip=batch.client_ip,
            user_agent=batch.user_agent,
        )
        self.labels = Labeller(team_choices_load(batch.team_id))
        self.bulk_endpoint = True
        self.next_watch = 0.0  # time.monotonic() of the next _watch
        self.next_author_check = 0.0
        self.refused = ""  # why nothing more may be sent, once known
        self.cancelled = False  # a cancel was seen mid-chunk

    def run(self) -> str:
        self._settle_interrupted()
        while True:
            try:
                self._beat(cancellable=True)
            except _Cancelled:
                with transaction.atomic():
                    _finish(self.batch, Batch.State.CANCELLED)
                return "cancelled"
            refusal = self._refusal()
            if refusal:
                items = self._queued()
                if not items:
                    break
                self._end_items(items, BatchItem.Outcome.SKIPPED, refusal)
                continue
            self._wait_out_rate_limit()
            chunk = self._take(self._queued())
            if chunk is None:
                break
            # Each chunk takes the next one's locks and starts its re-reads before its own
            # bookkeeping, so that work is done while Thena answers.
            while chunk is not None:
                chunk = self._chunk(chunk)
        with transaction.atomic():
            _finish(self.batch, Batch.State.DONE)
        return "done"

    def _queued(self, *, besides: list[BatchItem] = ()) -> list[BatchItem]:
        """The next chunk: queued items, tickets tried less often first."""
        queued = self.batch.items.filter(state=BatchItem.State.QUEUED)
        queued = queued.exclude(pk__in=[item.pk for item in besides])
        return list(queued.order_by("attempts", "position")[: settings.BULK_CHUNK_SIZE])

    def _take(self, items: list[BatchItem]) -> "_Chunk | None":
        """Take the items' edit locks (those free within LOCK_WAIT) and start re-reading
        their tickets; None when there are no items."""
        if not items:
            return None
        stack = ExitStack()
        held = stack.enter_context(
            locks.ticket_edit_locks([item.ticket_id for item in items], wait=LOCK_WAIT)
        )
        # The chunk's Thena calls end within one request's budget, so its locks are held
        # for less than their lease, as a page's are. Its reads start in a context of their
        # own: the chunk before may still be in its budget.
        budget = settings.THENA_REQUEST_BUDGET_SECONDS
        deadline = time.monotonic() + budget if budget > 0 else None
        calls = {str(i.pk): self._reader(i.ticket_id) for i in items if i.ticket_id in held}
        try:
            reads = contextvars.Context().run(_started, calls, deadline)
        except BaseException:
            stack.close()
            raise
        return _Chunk(items, held, stack, reads, deadline)

    # The claim

    def _beat(self, *, cancellable: bool = False) -> None:
        """Renew the claim, or raise _LostClaim if another run has the batch; with
        `cancellable`, raise _Cancelled once a cancel was asked (one statement for both)."""
        mine = Batch.objects.filter(pk=self.batch.pk, runner=self.token)
        if cancellable:
            mine = mine.filter(cancel_requested_at__isnull=True)
        if not mine.update(heartbeat_at=timezone.now()):
            if cancellable and Batch.objects.filter(pk=self.batch.pk, runner=self.token).exists():
                raise _Cancelled()
            raise _LostClaim()
        self._watch()

    def _watch(self) -> None:
        """Keep a run queued for two leases from now, renewed every lease: if this worker
        dies, that run finds the claim older than the lease and takes the batch over."""
        if time.monotonic() < self.next_watch:
            return
        lease = _lease()
        bulk_run.using(run_after=datetime.now(UTC) + 2 * lease).enqueue(str(self.batch.pk))
        self.next_watch = time.monotonic() + lease.total_seconds()

    def _refusal(self) -> str:
        """Why no more tickets may be sent for the author, or "": read again every
        AUTHOR_CHECK_SECONDS (a chunk of 50 takes a fraction of that)."""
        if self.refused or time.monotonic() < self.next_author_check:
            return self.refused
        self.next_author_check = time.monotonic() + AUTHOR_CHECK_SECONDS
        user = self.user and type(self.user).objects.filter(pk=self.user.pk).first()
        if user is None or not user.is_active:
            self.refused = "Not sent: the bulk edit's author no longer has an active account."
        elif not (user.has_perm("tickets.bulk_edit") and user.has_perm("tickets.edit_ticket")):
            self.refused = "Not sent: the author may no longer edit tickets in bulk."
        elif not in_scope(user, self.batch.team_id):
            self.refused = "Not sent: the team is no longer one of the author's teams."
        self.user = user
        return self.refused

    def _wait_out_rate_limit(self) -> None:
        """While Thena's rate limit is spent (noted by any process), wait for its reset,
        renewing the claim: nothing is locked or recorded meanwhile."""
        while (until := self.client.paused_until()) is not None:
            delay = (until - datetime.now(UTC)).total_seconds()
            time.sleep(min(max(delay, 0.01), settings.BULK_LEASE_SECONDS / 3))
            self._beat()

    def _settle_interrupted(self) -> None:
        """Items a dead run left "sending": their PATCH may have left. Never sent again;
        their entries (pending) are for reconciliation to settle by evidence."""
        interrupted = self.batch.items.filter(state=BatchItem.State.SENDING)
        entry_ids = list(interrupted.values_list("entry_id", flat=True))
        interrupted.update(
            state=BatchItem.State.DONE,
            outcome=BatchItem.Outcome.UNKNOWN,
            message=(
                "The worker stopped while this ticket's change was being sent; it was not "
                "sent again. The audit log settles it by reading the ticket back."
            ),
        )
        for entry_id in filter(None, entry_ids):
            reconcile_queue(AuditEntry(pk=entry_id))

    def _reader(self, ticket_id: str) -> Callable[[], dict]:
        return lambda: self.client.get_ticket(ticket_id)

    def _end_items(self, items: list[BatchItem], outcome: str, message: str) -> None:
        with transaction.atomic():
            self._beat()
            BatchItem.objects.filter(pk__in=[item.pk for item in items]).update(
                state=BatchItem.State.DONE, outcome=outcome, message=message
            )

    # One chunk

    def _chunk(self, chunk: "_Chunk") -> "_Chunk | None":
        """Decide, record, send and settle `chunk`; returns the next chunk, taken once this
        one's PATCHes are answered."""
        started = time.monotonic()
        nxt = None
        with chunk.locks:
            # A busy ticket comes back later, however often: an edit lock is freed by its
            # holder or, if that died, when its lease runs out.
            plans = [
                _Plan(item)
                if item.ticket_id in chunk.held
                else _Plan(item, defer=True, free=True, message="Another save held the ticket.")
                for item in chunk.items
            ]
            reads = chunk.reads()
            left = None if chunk.deadline is None else max(chunk.deadline - time.monotonic(), 0)
            with request_budget(left):
                for plan in plans:
                    if not plan.defer:
                        self._decide(plan, reads[str(plan.item.pk)])
                sending = [p for p in plans if p.body and not p.outcome and not p.defer]
                try:
                    self._record_intents(plans, sending)
                except _Cancelled:  # asked while the chunk was read: send nothing more
                    self.cancelled = True
                    for plan in [*sending, *(p for p in plans if p.outcome == "conflict")]:
                        plan.outcome = BatchItem.Outcome.CANCELLED
                        plan.message = "Not sent: the bulk edit was cancelled."
                    sending = []
                if sending:
                    self._send(sending)
            # Not while Thena's rate limit is spent (run() waits), nor once cancelled or
            # refused (run() ends the batch).
            if self.client.paused_until() is None and not self.cancelled and not self._refusal():
                nxt = self._take(self._queued(besides=chunk.items))
            try:
                if sending:
                    self._record_outcomes(sending, started)
                # Only while the batch is still this run's: a run that took it over has
                # settled these items already (a lost outcome is the audit log's to settle).
                with transaction.atomic():
                    self._beat()
                    self._update_items(plans)
            except BaseException:
                if nxt is not None:
                    nxt.locks.close()
                raise
        return nxt

    def _decide(self, plan: _Plan, fresh) -> None:
        item = plan.item
        if isinstance(fresh, ThenaNotFound):
            plan.outcome, plan.message = "skipped", "Not found in Thena any more."
            return
        if isinstance(fresh, ThenaError):
            plan.defer, plan.free = True, isinstance(fresh, ThenaRateLimited)
            plan.message = f"Could not re-read the ticket: {fresh.detail or fresh.user_message}"
            return
        plan.fresh = fresh
        team_id = fresh.get("teamId")
        if not in_scope(self.user, team_id):
            plan.outcome, plan.message = "skipped", "Not sent: it is no longer in your teams."
            return
        if team_id != self.batch.team_id:
            where = fresh.get("teamName") or team_id or "no team"
            plan.outcome = "skipped"
            plan.message = f"Not sent: it moved to another team ({where}) since the preview."
            return
        wanted = self.batch.values
        if edits_split(wanted)[1] and not wire.cf_exact(fresh):
            plan.outcome = "skipped"
            plan.message = (
                "Not sent: Thena sends this ticket's custom field values in a shape that cannot "
                "be written back exactly. Set them in Thena."
            )
            return
        now = wire.ticket_values(fresh)
        theirs = input_reader(fresh, now)
        hidden = wire.unreadable(fresh)
        edits = {
            name: value
            for name, value in wanted.items()
            if name in hidden or not wire.equal(theirs(name), value)
        }
        moved = [
            name
            for name in edits
            if name not in hidden
            and name in item.before
            and not wire.equal(theirs(name), item.before[name])
        ]
        body = patch_body(fresh, edits)
        labels = Labeller(self.labels.choices, (fresh,))
        plan.changes = entry_changes(now, body, hidden, labels)
        if moved:
            names = ", ".join(
                f"{input_label(self.labels.choices.custom_fields, n)} "
                f"(now \u201c{value_text(n, theirs(n), labels)}\u201d)"
                for n in moved
            )
            plan.outcome, plan.body = "conflict", body
            plan.message = f"Not sent: changed in Thena since the preview: {names}."
            return
        if not body:
            plan.outcome, plan.message = "no_change", "It already had these values."
            return
        plan.body, plan.custom = body, edits_split(edits)[1]
        plan.bulk = self.bulk_endpoint and set(body) <= BULK_FIELDS

    def _entry(self, plan: _Plan, outcome: str = Outcome.PENDING) -> AuditEntry:
        return entry_row(
            action=Action.TICKET_UPDATE,
            actor=self.user,
            ticket=ticket_ref(plan.fresh),
            changes=plan.changes,
            request_body=plan.body,
            outcome=outcome,
            message=plan.message if outcome != Outcome.PENDING else "",
            meta=self.meta,
            base_updated_at=plan.fresh.get("updatedAt") if outcome == Outcome.PENDING else None,
            reason=self.batch.reason,
            batch_id=str(self.batch.pk),
        )

    def _record_intents(self, plans: list[_Plan], sending: list[_Plan]) -> None:
        """Commit the intents of what is about to be sent, and a conflict entry for each
        ticket changed since the preview, with the items turning "sending": one
        transaction, in which the claim must still be this run's."""
        conflicts = [plan for plan in plans if plan.outcome == "conflict"]
        if not sending and not conflicts:
            return
        with transaction.atomic():
            self._beat(cancellable=True)
            for plan in conflicts:
                plan.entry = self._entry(plan, Outcome.CONFLICT)
            for plan in sending:
                plan.entry = self._entry(plan)
            append_many([plan.entry for plan in [*conflicts, *sending]])
            linked = _link_entries({p.item.pk: p.entry.pk for p in sending}, sending=True)
            if linked != len(sending):  # another run moved one of them first
                raise _LostClaim()
            _link_entries({p.item.pk: p.entry.pk for p in conflicts})
        for plan in [*conflicts, *sending]:
            plan.item.entry_id = plan.entry.pk
        for plan in conflicts:
            plan.outcome = "skipped"

    def _send(self, plans: list[_Plan]) -> None:
        """Send every PATCH of the chunk at once; then decide each outcome by evidence."""
        groups: dict[str, list[_Plan]] = {}
        calls = {}
        for plan in plans:
            if plan.bulk:
                groups.setdefault(json.dumps(plan.body, sort_keys=True), []).append(plan)
            else:
                key = f"one:{plan.item.pk}"
                calls[key] = lambda p=plan: self.client.update_ticket(p.item.ticket_id, p.body)
        for key, members in groups.items():
            ids = [p.item.ticket_id for p in members]
            calls[f"bulk:{key}"] = lambda ids=ids, body=members[0].body: (
                self.client.bulk_update_tickets(ids, body)
            )
        answers = concurrently(calls)
        check: list[tuple[_Plan, str, bool, int | None]] = []
        for plan in plans:
            if plan.bulk:
                answer = answers[f"bulk:{json.dumps(plan.body, sort_keys=True)}"]
                self._bulk_outcome(plan, answer, check)
            else:
                self._single_outcome(plan, answers[f"one:{plan.item.pk}"], check)
        if check:
            self._read_back(check)

    def _bulk_outcome(self, plan: _Plan, answer, check: list) -> None:
        ticket_id = plan.item.ticket_id
        if isinstance(answer, ThenaError):
            if answer.outcome_unknown:
                check.append(_unsure(plan, answer))
                return
            if answer.status_code in BULK_REFUSED:
                # No bulk endpoint (an older Thena), or the request refused as a whole (too
                # many ids, a value it takes only ticket by ticket): one by one from now on.
                self.bulk_endpoint = False
            self._not_applied(plan, answer)
            return
        if ticket_id in answer.updated:
            plan.outcome, plan.status = "succeeded", 200
            plan.message = "Thena's bulk update lists the ticket as updated."
        elif ticket_id in answer.skipped:
            plan.outcome, plan.status = "failed", 200
            plan.message = f"Thena's bulk update skipped it: {answer.skipped[ticket_id]}"
        else:
            check.append((plan, "Thena's bulk answer does not name the ticket.", True, 200))

    def _single_outcome(self, plan: _Plan, answer, check: list) -> None:
        if isinstance(answer, ThenaError):
            if answer.outcome_unknown:
                check.append(_unsure(plan, answer))
            else:
                self._not_applied(plan, answer)
            return
        applied = wire.applied(answer, plan.body, plan.custom)
        moved_on = answer.get("updatedAt") != plan.fresh.get("updatedAt")
        if applied or (applied is None and moved_on):
            plan.outcome, plan.status, plan.message = "succeeded", 200, ""
            plan.updated_at = str(answer.get("updatedAt") or "")
        else:
            check.append((plan, "Thena's answer does not show the change.", True, 200))

    def _not_applied(self, plan: _Plan, error: ThenaError) -> None:
        """Thena surely did not apply it. A rate limit, a missing bulk endpoint or a request
        never sent (the chunk's time ran out) is no fault of the ticket: it is sent again
        later (with a new entry)."""
        plan.outcome, plan.status = "failed", error.status_code
        plan.message = error.detail or error.user_message
        unsent = error.status_code is None
        again = (
            unsent or isinstance(error, ThenaRateLimited) or (plan.bulk and not self.bulk_endpoint)
        )
        if again and plan.item.attempts + 1 < MAX_ATTEMPTS:
            plan.defer, plan.free = True, isinstance(error, ThenaRateLimited)
            plan.message += " Not applied: it is sent again later."

    def _read_back(self, check: list) -> None:
        reads = concurrently(
            {str(plan.item.pk): self._reader(plan.item.ticket_id) for plan, *_ in check}
        )
        for plan, reason, answered, status in check:
            now = reads[str(plan.item.pk)]
            now = None if isinstance(now, ThenaError) else now
            plan.status = status
            plan.updated_at = str((now or {}).get("updatedAt") or "")
            plan.outcome = read_back_outcome(
                now, plan.fresh, plan.body, plan.custom, answered=answered
            )
            if plan.outcome == "succeeded":
                plan.message = f"{reason} Reading the ticket back shows the change."
            elif plan.outcome == "failed":
                plan.message = f"{reason} Reading the ticket back shows it unchanged."
            else:
                found = (
                    "the ticket could not be read back"
                    if now is None
                    else "the ticket does not show the change yet"
                )
                plan.message = f"{reason} Read back: {found}; the audit log settles it later."

    def _record_outcomes(self, plans: list[_Plan], started: float) -> None:
        ms = round((time.monotonic() - started) * 1000)
        rows = [
            AuditOutcome(
                entry_id=plan.entry.pk,
                outcome=plan.outcome,
                status_code=plan.status,
                message=plan.message,
                upstream_updated_at=plan.updated_at or "",
                duration_ms=ms,
            )
            for plan in plans
        ]
        try:
            append_many(rows)
        except AlreadySettled:
            # Slower than the in-flight window: reconciliation settled some first; theirs
            # stand, the others are written one by one.
            for plan, row in zip(plans, rows, strict=True):
                with suppress(AlreadySettled):
                    record_outcome(
                        entry=plan.entry,
                        outcome=row.outcome,
                        status_code=row.status_code,
                        message=row.message,
                        upstream_updated_at=row.upstream_updated_at,
                        duration_ms=ms,
                    )
        for plan in plans:
            if plan.outcome == "unknown":
                reconcile_queue(plan.entry)

    def _update_items(self, plans: list[_Plan]) -> None:
        """Write each item's new state: one UPDATE per distinct outcome and message (a
        chunk has a few), far cheaper than one per item or bulk_update's CASE."""
        groups: dict[tuple, list[int]] = {}
        for plan in plans:
            item = plan.item
            if plan.defer:
                item.attempts += 0 if plan.free else 1
            if plan.defer and item.attempts < MAX_ATTEMPTS:
                item.state, item.message = BatchItem.State.QUEUED, plan.message
            else:
                if plan.defer:
                    plan.outcome = plan.outcome or "failed"
                    plan.message = f"{plan.message} Gave up after {item.attempts} tries."
                item.state = BatchItem.State.DONE
                item.outcome = {"conflict": "skipped"}.get(plan.outcome, plan.outcome) or "failed"
                item.message = plan.message
            key = (item.state, item.outcome, item.message, item.attempts)
            groups.setdefault(key, []).append(item.pk)
        for (state, outcome, message, attempts), ids in groups.items():
            BatchItem.objects.filter(pk__in=ids).update(
                state=state, outcome=outcome, message=message, attempts=attempts
            )


def _link_entries(entries: dict[int, int], *, sending: bool = False) -> int:
    """Point items (by pk) at their audit entries in one statement; with `sending`, only
    items still queued, which turn "sending". Returns how many rows changed."""
    if not entries:
        return 0
    q = connection.ops.quote_name
    cases = " ".join("WHEN %s THEN %s" for _ in entries)
    marks = ", ".join("%s" for _ in entries)
    sql = f"UPDATE {q(BatchItem._meta.db_table)} SET {q('entry_id')} = CASE {q('id')} {cases} END"
    params: list = [value for pair in entries.items() for value in pair]
    if sending:
        sql += f", {q('state')} = %s"
        params.append(BatchItem.State.SENDING)
    sql += f" WHERE {q('id')} IN ({marks})"
    params += list(entries)
    if sending:
        sql += f" AND {q('state')} = %s"
        params.append(BatchItem.State.QUEUED)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def _unsure(plan: _Plan, error: ThenaError) -> tuple[_Plan, str, bool, int | None]:
    """A PATCH whose outcome the error leaves open, for a read-back."""
    return plan, error.detail or error.user_message, thena_answered(error), error.status_code


def _stalled(batch: Batch) -> bool:
    """Active, and no worker has renewed a claim on it within the lease (or, queued, no
    worker has taken it up within the lease since it was confirmed)."""
    if batch.state not in ACTIVE:
        return False
    since = batch.heartbeat_at or batch.confirmed_at
    return since is None or since <= timezone.now() - _lease()


def resume_if_stalled(batch: Batch) -> None:
    """A look at the batch's page is a chance to notice that its worker died."""
    if _stalled(batch):
        bulk_run.enqueue(str(batch.pk))


DRAFT_DAYS = 1  # a preview never confirmed is forgotten after this


def drafts_prune() -> int:
    """Forget previews never confirmed (nothing was sent for them); for the sweep."""
    old = timezone.now() - timedelta(days=DRAFT_DAYS)
    deleted, _ = Batch.objects.filter(state=Batch.State.DRAFT, created_at__lt=old).delete()
    return deleted


def resume_stalled() -> int:
    """Queue a run for every batch whose worker stopped renewing its claim (or that was
    confirmed while no task could be queued). For `schedule_reconcile` at worker start."""
    stalled = [b for b in Batch.objects.filter(state__in=ACTIVE) if _stalled(b)]
    for batch in stalled:
        bulk_run.enqueue(str(batch.pk))
    return len(stalled)
