"""Use cases. The only callers of the Thena client (house-style §1)."""

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from django.core import signing
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.utils.dateparse import parse_datetime

from . import audit
from .forms import Choices, TicketUpdateForm, load_snapshot, ticket_wire
from .models import AuditEntry, TeamScope
from .thena import schema
from .thena.client import get_client
from .thena.errors import ThenaError, ThenaNotFound

PAGE_SIZE = 25
NO_TEAMS = "Your account is not allowed to see any team yet. Ask your administrator."
LOOKUP_TTL = 300  # seconds: teams, statuses, members... change rarely


@dataclass(frozen=True)
class TicketPage:
    tickets: list[dict]
    teams: list[dict]
    team_id: str
    query: str
    page: int  # 1-based, as shown to people
    has_next: bool
    error: str = ""

    def _query(self, page: int) -> str:
        params = {"team": self.team_id, "q": self.query, "page": page}
        return urlencode({key: value for key, value in params.items() if value})

    @property
    def prev_query(self) -> str:
        return self._query(self.page - 1)

    @property
    def next_query(self) -> str:
        return self._query(self.page + 1)


def _cached(key: str, fetch):
    return cache.get_or_set(f"thena:{key}", fetch, LOOKUP_TTL)


def teams_list() -> list[dict]:
    """Top-level teams (tickets belong to these; sub-teams are a field of the ticket)."""
    return [team for team in _cached("teams", get_client().teams) if not team.get("parentTeamId")]


# -- team scopes --------------------------------------------------------------------------


def user_team_scope(user) -> frozenset[str] | None:
    """The Thena teams a user may see: None for every team (superusers, and users without
    a TeamScope row), else the scope's team ids. Memoised on the user for the request."""
    if user.is_superuser:
        return None
    if not hasattr(user, "_team_scope"):
        row = TeamScope.objects.filter(user=user).values_list("team_ids", flat=True).first()
        user._team_scope = None if row is None else frozenset(row)
    return user._team_scope


def _in_scope(user, team_id: str | None) -> bool:
    scope = user_team_scope(user)
    return scope is None or team_id in scope


def _visible(user, ticket: dict) -> dict:
    """The ticket, or ThenaNotFound when it is outside the user's teams: a ticket of
    another team looks exactly like one that does not exist."""
    if not _in_scope(user, ticket.get("teamId")):
        raise ThenaNotFound()
    cache.set(f"thena:ticket-team:{ticket['id']}", ticket.get("teamId"), LOOKUP_TTL)
    return ticket


def ticket_check_scope(*, user, ticket_id: str) -> None:
    """Raise ThenaNotFound unless the ticket is in the user's teams (a cached lookup for
    scoped users; nothing for unscoped ones)."""
    if user_team_scope(user) is None:
        return
    team_id = cache.get(f"thena:ticket-team:{ticket_id}")
    if team_id is None:
        team_id = get_client().get_ticket(ticket_id).get("teamId")
    if not _in_scope(user, team_id):
        raise ThenaNotFound()


def _datetime(value) -> datetime | None:
    return parse_datetime(value) if isinstance(value, str) else None


def _row(ticket: dict) -> dict:
    return {**ticket, "updated": _datetime(ticket.get("updatedAt"))}


def ticket_list(*, user, team_id: str = "", query: str = "", page: int = 1) -> TicketPage:
    """One page of tickets, from the list endpoint or, with a query, from search. A user
    scoped to some teams sees one of them at a time (the API lists one team or all)."""
    page = max(page, 1)
    client = get_client()
    scope = user_team_scope(user)
    try:
        teams = teams_list()
        if scope is not None:
            teams = [team for team in teams if team["id"] in scope]
            if team_id not in scope:
                team_id = teams[0]["id"] if teams else ""
            if not team_id:
                return TicketPage([], [], "", query, page, False, NO_TEAMS)
        if query:
            result = client.search_tickets(
                query, team_id=team_id or None, page=page, per_page=PAGE_SIZE
            )
            items, has_next = result.items, page * PAGE_SIZE < result.found
        else:
            items = client.list_tickets(team_id=team_id or None, page=page - 1, limit=PAGE_SIZE)
            # The API gives no total (thena-api.md §4.2): a full page means there may be more.
            has_next = len(items) == PAGE_SIZE
    except ThenaError as error:
        return TicketPage([], [], team_id, query, page, False, error.user_message)
    return TicketPage([_row(t) for t in items], teams, team_id, query, page, has_next)


def health_check() -> dict:
    report: dict = {"ok": True, "database": "ok", "thena": "ok"}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as error:  # any failure at all means the database is down
        report.update(ok=False, database=f"error: {type(error).__name__}")
    started = time.monotonic()
    try:
        get_client().ping()
    except ThenaError as error:
        report.update(ok=False, thena=f"error: {error.user_message}")
    else:
        report["thena_ms"] = round((time.monotonic() - started) * 1000, 1)
    return report


# -- editing -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TicketEdit:
    """A ticket as read for editing, with the choices its team offers."""

    ticket: dict
    choices: Choices

    @property
    def ticket_id(self) -> str:
        return self.ticket["id"]

    @property
    def facts(self) -> list[tuple[str, object]]:
        """The read-only side of the page."""
        t = self.ticket
        contact = " ".join(
            filter(None, [t.get("customerContactFirstName"), t.get("customerContactLastName")])
        )
        if t.get("customerContactEmail"):
            contact = f"{contact} <{t['customerContactEmail']}>".strip()
        team = t.get("teamName") or t.get("teamId")
        if t.get("subTeamName"):
            team = f"{team} / {t['subTeamName']}"
        return [
            ("Ticket", t.get("ticketIdentifier")),
            ("Team", team),
            ("Status", t.get("status")),
            ("Requester", t.get("requestorEmail")),
            ("Customer contact", contact),
            ("Account", t.get("account")),
            ("Created", _datetime(t.get("createdAt"))),
            ("Updated", _datetime(t.get("updatedAt"))),
        ]

    @property
    def comments(self) -> list[tuple[str, str]]:
        found = []
        for key, label in (
            ("lastCustomerComment", "Customer"),
            ("lastVendorComment", "Team"),
            ("lastComment", "Latest"),
        ):
            value = self.ticket.get(key)
            if isinstance(value, dict):  # shape undocumented: take the text we can find
                value = value.get("content") or value.get("contentMarkdown") or value.get("text")
            if isinstance(value, str) and value.strip():
                found.append((label, value))
        return found


@dataclass(frozen=True)
class ConflictField:
    name: str
    label: str
    original: object
    theirs: object
    yours: object


class Conflict(Exception):
    """Fields the user changed were also changed in Thena since the form was loaded."""

    def __init__(self, *, fields: list[ConflictField], fresh: dict, entry):
        super().__init__(", ".join(f.name for f in fields))
        self.fields = fields
        self.fresh = fresh
        self.entry = entry


@dataclass(frozen=True)
class UpdateResult:
    entry: object | None  # the audit entry; None when nothing changed
    ticket: dict
    sent: dict  # the PATCH body
    kept_upstream: list[str]  # labels of fields changed in Thena meanwhile, left as they are

    @property
    def nothing_changed(self) -> bool:
        return not self.sent


def _status_label(status: dict, by_id: dict) -> str:
    name = status.get("displayName") or status.get("name") or status["id"]
    parent = by_id.get(status.get("parentStatusId") or "")
    return f"{parent.get('displayName') or parent.get('name')} / {name}" if parent else name


def _statuses(items: list[dict]) -> list[tuple[str, str]]:
    """Parents, each followed by its sub-statuses."""
    by_id = {s["id"]: s for s in items}
    parents = [s for s in items if not s.get("parentStatusId")]
    ordered = []
    for parent in parents:
        ordered.append(parent)
        ordered += [s for s in items if s.get("parentStatusId") == parent["id"]]
    ordered += [s for s in items if s not in ordered]
    return [(s["id"], _status_label(s, by_id)) for s in ordered]


def _pairs(items: list[dict], *label_keys: str) -> list[tuple[str, str]]:
    pairs = []
    for item in items:
        label = next((item[k] for k in label_keys if item.get(k)), item["id"])
        pairs.append((item["id"], str(label)))
    return pairs


def _members(items: list[dict]) -> list[tuple[str, str]]:
    return [
        (
            m["id"],
            f"{m.get('name') or m['id']} <{m['email']}>"
            if m.get("email")
            else m.get("name") or m["id"],
        )
        for m in items
        if m.get("isActive", True)
    ]


def team_choices(team_id: str) -> Choices:
    """Everything the edit form offers for one team, cached as one entry so a warm edit
    page costs exactly one upstream request (the ticket itself)."""

    def fetch() -> Choices:
        client = get_client()
        return Choices(
            statuses=_statuses(client.statuses(team_id)),
            priorities=_pairs(client.priorities(team_id), "displayName", "name"),
            types=_pairs(client.types(team_id), "name"),
            sentiments=_pairs(client.sentiments(team_id), "displayName", "name"),
            members=_members(client.team_members(team_id)),
            accounts=_pairs(client.accounts(limit=100), "name"),
            sub_teams=_pairs(client.sub_teams(team_id), "name"),
            forms=_pairs(client.forms(team_id), "name"),
            custom_fields=[f for f in client.custom_fields(team_id) if f.get("isActive", True)],
        )

    return _cached(f"choices:{team_id}", fetch)


def account_search(query: str, *, keep: str = "") -> list[tuple[str, str]]:
    """Accounts matching `query` for the picker; `keep` (the current choice) stays first
    so that searching never silently unlinks the ticket's account."""
    query = query.strip()[:100]
    client = get_client()
    if query:
        options = _cached(
            f"accounts:q:{query.lower()}", lambda: _pairs(client.search_accounts(query), "name")
        )
    else:
        options = _cached("accounts:first", lambda: _pairs(client.accounts(limit=100), "name"))
    if keep and keep not in {value for value, _ in options}:
        name = _cached(f"account:{keep}", lambda: client.account(keep).get("name") or keep)
        options = [(keep, name), *options]
    return options


def ticket_edit_load(*, user, ticket_id: str) -> TicketEdit:
    """Raises ThenaNotFound for a ticket that does not exist (or is out of scope)."""
    ticket = _visible(user, get_client().get_ticket(ticket_id))
    return TicketEdit(ticket=ticket, choices=team_choices(ticket.get("teamId") or ""))


def ticket_edit_from_snapshot(*, user, ticket_id: str, snapshot: str) -> TicketEdit | None:
    """The edit as the user saw it, rebuilt from the form's signed snapshot and the cached
    choices: a submit needs no GET of its own (the update re-reads the ticket anyway).
    None when the snapshot is stale, forged or of another ticket."""
    try:
        data = load_snapshot(snapshot)
    except signing.BadSignature:
        return None
    if data.get("id") != ticket_id or not _in_scope(user, data.get("teamId")):
        return None
    ticket = {
        "id": ticket_id,
        "teamId": data.get("teamId"),
        "ticketIdentifier": data.get("ticketIdentifier"),
        **data["values"],
    }
    return TicketEdit(ticket=ticket, choices=team_choices(ticket["teamId"] or ""))


def _ticket_ref(ticket: dict) -> dict:
    return {key: ticket.get(key) for key in ("id", "ticketIdentifier", "title", "teamId")}


NO_PERMISSION = "The user lacks the permission tickets.edit_ticket."
OUT_OF_SCOPE = "The ticket is outside the user's teams."


def ticket_update_denied(
    *, user, ticket_id: str, meta: audit.RequestMeta, why: str = NO_PERMISSION
) -> None:
    """An edit refused before anything was sent: nothing reaches Thena, but it is logged."""
    audit.record_attempt(
        action="ticket.update",
        actor=user,
        ticket={"id": ticket_id},
        changes={},
        request_body={},
        outcome="denied",
        message=why,
        meta=meta,
    )


def ticket_update(
    *, user, edit: TicketEdit, form: TicketUpdateForm, meta: audit.RequestMeta
) -> UpdateResult:
    """Diff, check, re-read, record the intent, PATCH, record the outcome.

    The PATCH runs outside any transaction: a remote write cannot be rolled back, so the
    audit log records the intent first (committed) and the outcome after.
    """
    body = form.changes()
    if not body:
        return UpdateResult(entry=None, ticket=edit.ticket, sent={}, kept_upstream=[])
    if not user.has_perm("tickets.edit_ticket"):
        ticket_update_denied(user=user, ticket_id=edit.ticket_id, meta=meta)
        raise PermissionDenied("You may view tickets but not edit them.")

    seen = form.cleaned_data["snapshot"]["values"]
    client = get_client()
    try:
        fresh = client.get_ticket(edit.ticket_id)
    except ThenaError as error:
        audit.record_attempt(
            action="ticket.update",
            actor=user,
            ticket=_ticket_ref(edit.ticket),
            changes=_changes(seen, body),
            request_body=body,
            outcome="failed",
            message="Could not re-read the ticket before saving: "
            + (error.detail or error.user_message),
            meta=meta,
        )
        raise
    if not _in_scope(user, fresh.get("teamId")):
        ticket_update_denied(user=user, ticket_id=edit.ticket_id, meta=meta, why=OUT_OF_SCOPE)
        raise ThenaNotFound()
    theirs = ticket_wire(fresh)
    moved = {name for name, value in theirs.items() if value != seen.get(name)}
    # A field both sides set to the same value is no conflict and needs no PATCH.
    body = {
        name: value for name, value in body.items() if not (name in moved and theirs[name] == value)
    }
    labels = schema.field_map()

    def record(outcome: str = "pending", message: str = ""):
        return audit.record_attempt(
            action="ticket.update",
            actor=user,
            ticket=_ticket_ref(fresh),
            changes=_changes(theirs, body),
            request_body=body,
            outcome=outcome,
            message=message,
            meta=meta,
        )

    clashing = sorted(moved & body.keys())
    if clashing:
        fields = [
            ConflictField(name, _label(labels, name), seen.get(name), theirs[name], body[name])
            for name in clashing
        ]
        message = "Changed in Thena meanwhile: " + ", ".join(f.label for f in fields)
        raise Conflict(fields=fields, fresh=fresh, entry=record("conflict", message))
    kept = [_label(labels, name) for name in sorted(moved)]
    if not body:
        return UpdateResult(entry=None, ticket=fresh, sent={}, kept_upstream=kept)

    entry = record()
    started = time.monotonic()
    try:
        updated = client.update_ticket(edit.ticket_id, body)
    except ThenaError as error:
        audit.record_outcome(
            entry=entry,
            outcome="unknown" if error.outcome_unknown else "failed",
            status_code=error.status_code,
            message=error.detail or error.user_message,
            duration_ms=_ms(started),
        )
        raise
    audit.record_outcome(
        entry=entry,
        outcome="succeeded",
        status_code=200,
        upstream_updated_at=updated.get("updatedAt"),
        duration_ms=_ms(started),
    )
    return UpdateResult(entry=entry, ticket=updated, sent=body, kept_upstream=kept)


def _label(labels: dict, name: str) -> str:
    spec = labels.get(name)
    return spec.label if spec else name


def _changes(before: dict, body: dict) -> dict:
    return {name: {"before": before.get(name), "after": value} for name, value in body.items()}


def _ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


@dataclass(frozen=True)
class HistoryItem:
    entry: AuditEntry
    outcome: str
    fields: list[str]  # labels of the fields the attempt changed


def ticket_history(*, ticket_id: str, limit: int = 10) -> list[HistoryItem]:
    """The ticket's latest audit entries with their current outcome (local reads only)."""
    labels = schema.field_map()
    entries = AuditEntry.objects.for_ticket(ticket_id).with_current_outcome()[:limit]
    return [
        HistoryItem(entry, entry.current_outcome, [_label(labels, name) for name in entry.changes])
        for entry in entries
    ]


# -- reconciliation ----------------------------------------------------------------------

# Write-only keys: the ticket object does not echo them, so they cannot be read back.
UNREADABLE = {"statusName", "priorityName"}


def audit_reconcile(*, min_age_seconds: int = 60) -> dict[str, int]:
    """Settle pending and unknown edits by reading their tickets back: an edit whose
    values are all on the ticket now succeeded; one whose values are not there failed
    (or was overwritten since, which the message says). Entries younger than
    `min_age_seconds` may still be in flight and are left alone."""
    cutoff = datetime.now(UTC) - timedelta(seconds=min_age_seconds)
    counts = {"succeeded": 0, "failed": 0, "skipped": 0}
    client = get_client()
    known = schema.field_map()
    unreadable = UNREADABLE | {schema.auto_link_name()}
    edits = AuditEntry.objects.filter(action="ticket.update", created_at__lt=cutoff)
    unsettled = [*edits.for_outcome("pending"), *edits.for_outcome("unknown")]
    for entry in unsettled:
        comparable = {
            name: value
            for name, value in entry.request_body.items()
            if name in known and name not in unreadable
        }
        try:
            fresh = client.get_ticket(entry.ticket_id)
        except ThenaNotFound:
            audit.record_outcome(
                entry=entry,
                outcome="failed",
                status_code=404,
                message="Reconciled: the ticket no longer exists in Thena.",
            )
            counts["failed"] += 1
            continue
        except ThenaError:
            counts["skipped"] += 1
            continue
        if not comparable:
            counts["skipped"] += 1
            continue
        now = ticket_wire(fresh)
        differing = sorted(name for name, value in comparable.items() if now.get(name) != value)
        if differing:
            outcome = "failed"
            message = "Reconciled: not on the ticket now: " + ", ".join(differing)
            message += " (or changed again since)."
        else:
            outcome, message = "succeeded", "Reconciled: every sent value is on the ticket."
        audit.record_outcome(
            entry=entry,
            outcome=outcome,
            message=message,
            upstream_updated_at=fresh.get("updatedAt"),
        )
        counts[outcome] += 1
    return counts
