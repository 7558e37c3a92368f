"""Thena's ticket events (thena-api.md §10): every change, not only ours.

/webhooks/thena/ stores each delivery once (by eventId) and queues `events_process` on the
task worker, which, in the order the changes happened:
- keeps the latest value an event shows of a field ticket responses lack (dueDate, ...);
- settles our "unknown" edits the event's ticket shows applied (evidence, never a guess);
- writes a `ticket.update` of ours echoed back as a link to our entry, not a new entry;
- writes any other `ticket:updated` change as a "Change in Thena" entry, flagged as a tug
  of war when it changes a field the dashboard set shortly before.

Thena documents the events' names and that each carries `eventId`, `actor {id, type,
email}`, and for ticket:updated the ticket and `previousTicket`, but neither the
envelope's other keys nor the signature scheme: both are read tolerantly (see
`event_parse`, `signature_ok`), and the README says how.
"""

import base64
import hashlib
import hmac
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils.dateparse import parse_datetime

from .audit import RequestMeta
from .audit.chain import (
    AlreadySettled,
    clean_json,
    clean_text,
    lock_chain,
    record_attempt,
    record_outcome,
)
from .audit.reconcile import custom_edits
from .models import Action, AuditEntry, Outcome, ThenaEvent, TicketFieldSeen
from .services import Labeller, entry_changes
from .thena import documented, wire

logger = logging.getLogger(__name__)

UPDATED = "ticket:updated"  # the one event that carries the ticket before and after
ECHO_SECONDS = 120  # our edit's echo arrives within this long of it
CLOCK_SKEW = timedelta(seconds=5)  # Thena's clock against ours, for the echo window
SECRET_HEADERS = ("X-Thena-Webhook-Secret", "X-Webhook-Secret")
SIGNATURE_HEADERS = ("X-Thena-Signature", "X-Signature", "X-Hub-Signature-256")
EVENT_ID_MAX = 200
PROCESS_BATCH = 50


class BadEvent(ValueError):
    """A delivery that is no event: the receiver answers 400 and keeps nothing."""


# -- receiving ---------------------------------------------------------------------------


def signature_ok(headers, body: bytes, secret: str) -> bool:
    """Whether the delivery carries the shared secret (THENA_WEBHOOK_SECRET): as is in a
    secret header or `Authorization: Bearer <secret>`, or as an HMAC-SHA256 of the body
    keyed with it, hex or base64, with or without "sha256=", in a signature header. Every
    comparison is constant-time."""
    key = secret.encode()
    given = [headers.get(name, "") for name in SECRET_HEADERS]
    authorization = headers.get("Authorization", "")
    if authorization[:7].lower() == "bearer ":
        given.append(authorization[7:].strip())
    ok = False
    for value in given:
        ok |= bool(value) and hmac.compare_digest(value.encode(), key)
    mac = hmac.new(key, body, hashlib.sha256).digest()
    for name in SIGNATURE_HEADERS:
        value = headers.get(name, "").strip()
        value = value.split("=", 1)[1] if value.lower().startswith("sha256=") else value
        if value:
            ok |= hmac.compare_digest(value.lower().encode(), mac.hex().encode())
            ok |= hmac.compare_digest(value.encode(), base64.b64encode(mac))
    return ok


@dataclass(frozen=True)
class Parsed:
    event_id: str
    event_type: str
    ticket: dict | None
    previous: dict | None
    actor: dict
    occurred_at: datetime


def _first(data: dict, *keys: str):
    return next((data[key] for key in keys if data.get(key) not in (None, "")), None)


def event_parse(data) -> Parsed:
    """The parts of an event we use, wherever the envelope keeps them: the top level or
    a `payload` / `data` object. BadEvent when it has no id."""
    if not isinstance(data, dict):
        raise BadEvent("An event is a JSON object.")
    inner = _first(data, "payload", "data")
    inner = inner if isinstance(inner, dict) else {}
    both = {**inner, **data}
    event_id = _first(both, "eventId", "event_id", "id")
    if not isinstance(event_id, str | int) or not 0 < len(str(event_id)) <= EVENT_ID_MAX:
        raise BadEvent("The event has no eventId.")
    ticket, previous = _first(both, "ticket"), _first(both, "previousTicket", "previous_ticket")
    actor = _first(both, "actor")
    kind = _first(both, "eventType", "event_type", "type", "event", "name")
    occurred = _moment(_first(both, "timestamp", "occurredAt", "createdAt"))
    if occurred is None and isinstance(ticket, dict):
        occurred = _moment(ticket.get("updatedAt"))
    return Parsed(
        event_id=clean_text(str(event_id)),
        event_type=clean_text(str(kind or ""))[:100],
        ticket=ticket if isinstance(ticket, dict) else None,
        previous=previous if isinstance(previous, dict) else None,
        actor=actor if isinstance(actor, dict) else {},
        occurred_at=occurred or datetime.now(UTC),
    )


def _moment(value) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = value / 1000 if value > 1e11 else value  # milliseconds or seconds
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    try:
        moment = parse_datetime(value) if isinstance(value, str) else None
    except ValueError:
        return None
    if moment is None or not 1 < moment.year < 9999:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def event_store(data) -> bool:
    """Keep a delivery (BadEvent if it is none); False when its eventId was kept already.
    The worker is asked to process it."""
    parsed = event_parse(data)
    ticket_id = clean_text(str((parsed.ticket or {}).get("id") or ""))[:64]
    try:
        with transaction.atomic():
            ThenaEvent.objects.create(
                event_id=parsed.event_id,
                event_type=parsed.event_type,
                ticket_id=ticket_id,
                occurred_at=parsed.occurred_at,
                received_at=datetime.now(UTC),
                payload=clean_json(data),
            )
    except IntegrityError:
        return False
    _queue_processing()
    return True


def _queue_processing() -> None:
    """One queued run is enough (it processes every stored event): a flood of deliveries
    queues a handful of tasks, not one each."""
    from django.tasks import TaskResultStatus
    from django_tasks_db.models import DBTaskResult

    from .tasks import events_process

    queued = DBTaskResult.objects.filter(
        task_path=events_process.module_path, status=TaskResultStatus.READY
    )
    if not queued.exists():
        events_process.enqueue()


# -- processing --------------------------------------------------------------------------


def events_process(limit: int = 10_000) -> int:
    """Process stored events, oldest change first; returns how many. Several workers may
    run it at once: on PostgreSQL each takes rows the others have not locked; SQLite
    writes one transaction at a time."""
    done = 0
    while done < limit:
        with transaction.atomic():
            # First: the batch appends to the chain after taking other locks (its events'
            # rows, the write-only values seen), which another worker may wait on.
            lock_chain()
            pending = ThenaEvent.objects.filter(state=ThenaEvent.State.RECEIVED)
            if connection.vendor == "postgresql":
                pending = pending.select_for_update(skip_locked=True)
            batch = list(pending.order_by("occurred_at", "id")[:PROCESS_BATCH])
            for event in batch:
                _process(event)
        if not batch:
            break
        done += len(batch)
    return done


def _process(event: ThenaEvent) -> None:
    parsed = event_parse(event.payload)
    ticket = parsed.ticket
    state, entry_id, notes = ThenaEvent.State.EVIDENCE, None, []
    if not ticket or not isinstance(ticket.get("id"), str) or not ticket["id"]:
        state = ThenaEvent.State.IGNORED
        notes.append("About no ticket.")
    else:
        _remember_write_only(ticket, parsed)
        notes += _settle_unknown(ticket, parsed)
        if parsed.event_type != UPDATED or parsed.previous is None:
            notes.append("No before and after: used as evidence only.")
        elif not (changes := _changed(parsed.previous, ticket)):
            state = ThenaEvent.State.IGNORED
            notes.append("No field the dashboard records changed.")
        elif echo := _our_edit(ticket, changes, parsed):
            state, entry_id = ThenaEvent.State.ECHO, echo.pk
            notes.append(f"Our own edit #{echo.number}, echoed back.")
        else:
            state = ThenaEvent.State.RECORDED
            entry_id = _record_external(ticket, parsed, changes).pk
    event.state, event.entry_id = state, entry_id
    event.note, event.processed_at = " ".join(notes), datetime.now(UTC)
    event.save(update_fields=["state", "entry_id", "note", "processed_at"])


def _changed(before: dict, after: dict) -> dict[str, tuple]:
    """The PATCH fields whose values differ between two ticket objects, as (before,
    after) PATCH JSON; a field either lacks (write-only) counts only when both carry it."""
    old, new = wire.ticket_values(before), wire.ticket_values(after)
    return {
        name: (old[name], new[name])
        for name in new
        if name in old and not wire.equal(old[name], new[name])
    }


def _remember_write_only(ticket: dict, parsed: Parsed) -> None:
    for name in documented.WRITE_ONLY:
        if name not in ticket:
            continue
        seen = TicketFieldSeen.objects.filter(ticket_id=ticket["id"], field=name).first()
        if seen is not None and seen.seen_at >= parsed.occurred_at:
            continue  # an older event arriving late
        TicketFieldSeen.objects.update_or_create(
            ticket_id=ticket["id"],
            field=name,
            defaults={
                "value": clean_json(ticket[name]),
                "seen_at": parsed.occurred_at,
                "event_id": parsed.event_id,
            },
        )


def _edits(ticket_id: str):
    return AuditEntry.objects.filter(
        action=Action.TICKET_UPDATE, ticket_id=ticket_id
    ).with_current_outcome()


def _shows(ticket: dict, entry: AuditEntry) -> bool:
    custom = custom_edits(entry.changes.get("customFieldValues"))
    return wire.applied(ticket, entry.request_body, custom) is True


def _settle_unknown(ticket: dict, parsed: Parsed) -> list[str]:
    """Our edits of this ticket whose outcome is unknown, made before the change the
    event shows, and whose every sent value the event's ticket holds: succeeded."""
    notes = []
    unknown = _edits(ticket["id"]).filter(
        current_outcome=Outcome.UNKNOWN, created_at__lte=parsed.occurred_at
    )
    for entry in unknown:
        if not _shows(ticket, entry):
            continue
        try:
            record_outcome(
                entry=entry,
                outcome=Outcome.SUCCEEDED,
                message=f"Settled by Thena event {parsed.event_id}: the ticket shows "
                "every sent value.",
                upstream_updated_at=ticket.get("updatedAt"),
                current=Outcome.UNKNOWN,
            )
        except AlreadySettled:
            continue
        notes.append(f"Settled #{entry.number} as succeeded.")
    return notes


def evidence_for(entry: AuditEntry) -> ThenaEvent | None:
    """An event, of a change made after `entry` was written, whose ticket shows every
    value the entry sent: reconciliation's evidence before it reads the ticket back."""
    events = ThenaEvent.objects.filter(
        ticket_id=entry.ticket_id, occurred_at__gte=entry.created_at
    ).order_by("occurred_at", "id")
    for event in events[:50]:
        ticket = event_parse(event.payload).ticket
        if ticket and _shows(ticket, entry):
            return event
    return None


def _our_edit(ticket: dict, changes: dict, parsed: Parsed) -> AuditEntry | None:
    """Our edit this change echoes: made within ECHO_SECONDS before it, not failed,
    sending exactly the changed fields, all of which the ticket shows, and not the echo
    of another event already."""
    window = _edits(ticket["id"]).filter(
        created_at__gte=parsed.occurred_at - timedelta(seconds=ECHO_SECONDS),
        created_at__lte=parsed.occurred_at + CLOCK_SKEW,
        current_outcome__in=(Outcome.PENDING, Outcome.SUCCEEDED, Outcome.UNKNOWN),
    )
    for entry in window.order_by("-id"):
        if set(changes) <= set(entry.request_body) and _shows(ticket, entry):
            echoed = ThenaEvent.objects.filter(state=ThenaEvent.State.ECHO, entry_id=entry.pk)
            if not echoed.exists():
                return entry
    return None


def _record_external(ticket: dict, parsed: Parsed, changes: dict) -> AuditEntry:
    before = {name: old for name, (old, _) in changes.items()}
    body = {name: new for name, (_, new) in changes.items()}
    labels = Labeller(tickets=(ticket, parsed.previous or {}))
    actor = parsed.actor
    who = str(actor.get("email") or actor.get("name") or actor.get("id") or "Thena")
    kind = str(actor.get("type") or "someone")
    entry = record_attempt(
        action=Action.TICKET_EXTERNAL,
        actor=None,
        actor_label=who[:150],
        actor_email=str(actor.get("email") or "")[:254],
        ticket=ticket,
        changes=entry_changes(before, body, frozenset(), labels),
        request_body={},
        outcome=Outcome.SUCCEEDED,
        message=f"Changed in Thena by {kind} {who} at {parsed.occurred_at:%Y-%m-%d %H:%M:%S} "
        f"UTC (event {parsed.event_id}).",
        meta=RequestMeta(request_id=parsed.event_id[:64], client_ip=None, user_agent=""),
        drift_of=_drift_of(ticket["id"], set(changes), parsed.occurred_at),
    )
    return entry


def _drift_of(ticket_id: str, fields: set[str], occurred_at: datetime) -> int | None:
    """Our latest succeeded edit of one of `fields` within THENA_DRIFT_SECONDS before
    a change made in Thena: the tug of war the ticket page and the audit list flag."""
    since = occurred_at - timedelta(seconds=settings.THENA_DRIFT_SECONDS)
    recent = _edits(ticket_id).filter(
        created_at__gte=since,
        created_at__lte=occurred_at,
        current_outcome=Outcome.SUCCEEDED,
    )
    for entry in recent.order_by("-id")[:20]:
        if fields & set(entry.changes):
            return entry.pk
    return None
