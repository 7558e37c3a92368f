"""Settling the audit log's open edits by evidence: reading the tickets back.

An edit whose outcome is pending (its process died after the intent) or unknown (Thena
did not tell) is settled by the same evidence as the edit itself (thena.wire.applied).
Callers: tickets.tasks (a task per unknown edit, and the periodic sweep) and
`manage.py reconcile_audit`.
"""

from datetime import UTC, datetime, timedelta

from ..models import Action, AuditEntry
from ..thena import wire
from ..thena.client import get_client
from ..thena.errors import ThenaError, ThenaNotFound
from .chain import AlreadySettled, record_outcome

# Reconciliation leaves younger edits alone: their PATCH may still be in flight (well over
# THENA_REQUEST_BUDGET_SECONDS); a lost edit is looked at again after this long.
IN_FLIGHT_SECONDS = 60


def custom_edits(change: dict | None) -> dict:
    """The custom fields an entry's customFieldValues change touched, by uid."""
    if not isinstance(change, dict):
        return {}
    before = {
        wire.cf_id(i): i.get("data") for i in change.get("before") or [] if isinstance(i, dict)
    }
    after = {wire.cf_id(i): i.get("data") for i in change.get("after") or [] if isinstance(i, dict)}
    return {
        uid: after.get(uid)
        for uid in before.keys() | after.keys()
        if not wire.equal(before.get(uid), after.get(uid))
    }


def audit_reconcile(
    *, min_age_seconds: int = IN_FLIGHT_SECONDS, entry_id: int | None = None
) -> dict[str, int]:
    """Settle pending and unknown edits (or only `entry_id`) by reading their tickets back,
    by evidence only: every sent value on the ticket is "succeeded"; the ticket still at
    the updatedAt it had just before the PATCH is "failed"; a ticket changed since, but not
    to the sent values, stays "unknown" with the reason (it may have applied and been
    changed again). Entries younger than `min_age_seconds` may still be in flight and are
    left alone.

    Safe to run at the same time on several hosts (task workers, cron): each outcome is
    written only if the entry is still as it was read (record_outcome's `current`), so an
    entry is settled once, and one another run settled first counts as "already_settled".
    """
    cutoff = datetime.now(UTC) - timedelta(seconds=min_age_seconds)
    counts = {"succeeded": 0, "failed": 0, "unknown": 0, "skipped": 0, "already_settled": 0}
    client = get_client()
    edits = AuditEntry.objects.filter(action=Action.TICKET_UPDATE, created_at__lt=cutoff)
    if entry_id is not None:
        edits = edits.filter(pk=entry_id)
    # Both lists first: an entry this run records as unknown is not read again.
    found = [(entry, "pending") for entry in edits.for_outcome("pending")]
    found += [(entry, "unknown") for entry in edits.for_outcome("unknown")]
    for entry, current in found:
        counts[_reconcile(client, entry, current)] += 1
    return counts


def _reconcile(client, entry: AuditEntry, current: str) -> str:
    """Settle one entry whose outcome was `current` when listed; returns what it counts as.
    A Thena event that shows the sent values settles it without reading the ticket."""
    from ..events import event_parse, evidence_for

    if event := evidence_for(entry):
        now = event_parse(event.payload).ticket or {}
        status, outcome = None, "succeeded"
        message = f"Reconciled from Thena event {event.event_id}: it shows every sent value."
        return _record(entry, outcome, status, message, now, current)
    try:
        now = client.get_ticket(entry.ticket_id)
    except ThenaNotFound:
        now, status = {}, 404
        outcome, message = "failed", "Reconciled: the ticket no longer exists in Thena."
    except ThenaError:
        return "skipped"
    else:
        status = None
        custom = custom_edits(entry.changes.get("customFieldValues"))
        applied = wire.applied(now, entry.request_body, custom)
        untouched = bool(entry.base_updated_at) and now.get("updatedAt") == entry.base_updated_at
        if applied:
            outcome, message = "succeeded", "Reconciled: every sent value is on the ticket."
        elif untouched:
            outcome = "failed"
            message = "Reconciled: the ticket has not changed since just before the edit."
        else:
            outcome = "unknown"
            message = (
                "Reconciled: cannot tell. The ticket changed since the edit was sent, "
                "but does not hold the values sent (changed again, or never applied)."
            )
            if applied is None:
                message = "Reconciled: cannot tell; the values sent cannot be read back."
            if current == "unknown":  # already unknown: nothing new to record
                return "unknown"
    return _record(entry, outcome, status, message, now, current)


def _record(entry, outcome: str, status, message: str, now: dict, current: str) -> str:
    try:
        record_outcome(
            entry=entry,
            outcome=outcome,
            status_code=status,
            message=message,
            upstream_updated_at=now.get("updatedAt"),
            current=current,
        )
    except AlreadySettled:  # another run (another host, the cron command) was first
        return "already_settled"
    return outcome
