"""Use cases. The only callers of the Thena client (house-style §1)."""

import contextlib
import hashlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from django.core.cache import cache, caches
from django.core.cache.backends.db import DatabaseCache
from django.core.exceptions import PermissionDenied
from django.db import connection, transaction
from django.utils.dateparse import parse_datetime

from . import audit, locks
from .audit.chain import AlreadySettled
from .audit.queries import visible_to
from .forms import CF_PREFIX, Choices, TicketUpdateForm, input_label
from .locks import EditBusy  # noqa: F401 - raised through ticket_update
from .models import AuditEntry, TeamScope
from .snapshot import Snapshot, SnapshotError  # noqa: F401 - raised through here
from .thena import schema, speccheck, wire
from .thena.client import concurrently, get_client, request_budget
from .thena.errors import ThenaError, ThenaNotFound

PAGE_SIZE = 25
NO_TEAMS = "Your account is not allowed to see any team yet. Ask your administrator."
LOOKUP_TTL = 300  # seconds: teams, statuses, members... change rarely
# Reconciliation leaves younger edits alone: their PATCH may still be in flight (well over
# THENA_REQUEST_BUDGET_SECONDS); a lost edit is looked at again after this long.
IN_FLIGHT_SECONDS = 60

logger = logging.getLogger(__name__)


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


# A key part kept as it is: short, and only characters every cache backend accepts.
_PLAIN_KEY_PART = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _key_part(value: str) -> str:
    """`value` as one part of a cache key valid for every backend (memcached's rules are
    the strictest: at most 250 characters, no spaces or control characters). Anything
    but a short plain token (text a user typed or put in a URL) is hashed; a hashed part
    starts with "#", so it never equals a plain one."""
    if _PLAIN_KEY_PART.fullmatch(value):
        return value
    return "#" + hashlib.sha256(value.encode()).hexdigest()[:32]


def _cached(key: str, fetch):
    """`fetch()`, shared by every process through the cache for LOOKUP_TTL seconds. Any
    variable part of `key` must have gone through _key_part."""
    return cache.get_or_set(f"thena:{key}", fetch, LOOKUP_TTL)


def _ticket_team_key(ticket_id: str) -> str:
    return f"thena:ticket-team:{_key_part(ticket_id)}"


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


def _remember_team(ticket: dict) -> None:
    """Note the team a ticket was just read in, whoever read it: a ticket seen in a new
    team updates the shared cache at once."""
    if ticket.get("id"):
        cache.set(_ticket_team_key(str(ticket["id"])), ticket.get("teamId"), LOOKUP_TTL)


def _visible(user, ticket: dict) -> dict:
    """The ticket, or ThenaNotFound when it is outside the user's teams: a ticket of
    another team looks exactly like one that does not exist."""
    _remember_team(ticket)  # before the check: a move seen by anyone is known to all
    if not _in_scope(user, ticket.get("teamId")):
        raise ThenaNotFound()
    return ticket


def ticket_check_scope(*, user, ticket_id: str, fresh: bool = False) -> None:
    """Raise ThenaNotFound unless the ticket is in the user's teams; nothing to check for
    unscoped users. The ticket's team comes from the cache (up to LOOKUP_TTL old), or,
    with `fresh` or on a miss, from Thena (ThenaError when Thena cannot say). Use `fresh`
    where a stale team would show something: a ticket that moved out of the user's teams
    must not show its history to them for the cache's lifetime."""
    if user_team_scope(user) is None:
        return
    team_id = None if fresh else cache.get(_ticket_team_key(ticket_id))
    if team_id is None:
        ticket = get_client().get_ticket(ticket_id)
        _remember_team(ticket)
        team_id = ticket.get("teamId")
    if not _in_scope(user, team_id):
        raise ThenaNotFound()


def _datetime(value) -> datetime | None:
    return parse_datetime(value) if isinstance(value, str) else None


def _row(ticket: dict) -> dict:
    """A ticket of a list page, with `updated` read from updatedAt: None when
    that is unreadable or too near year 1 or 9999 to show in every time zone. The `id`
    stays as Thena has it (the view links only ids a URL can carry)."""
    try:
        updated = _datetime(ticket.get("updatedAt"))
        if updated is not None and not 1 < updated.astimezone(UTC).year < 9999:
            updated = None
    except (ValueError, OverflowError):
        updated = None
    return {**ticket, "updated": updated}


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
    rows = [_row(t) for t in items if isinstance(t, dict)]
    return TicketPage(rows, teams, team_id, query, page, has_next)


# Thena's health is probed at most once per HEALTH_EVERY seconds for the whole deployment
# (the result is in the shared cache), by one process at a time, within HEALTH_SECONDS:
# load balancers probing every few seconds from many places cost Thena almost nothing,
# and a slow Thena never makes /healthz slow for more than the one probe that runs.
HEALTH_KEY = "health:thena"
HEALTH_RUNNING_KEY = "health:thena:running"
HEALTH_EVERY = 30  # seconds between probes
HEALTH_SECONDS = 2.0  # the probe's budget, the spec read included
HEALTH_KEEP = 600  # an older result still answers while the next probe runs


def health_live() -> dict:
    """The process answers and its database does: no Thena, no cache, no write."""
    database = _database_health()
    ok = database == "ok"
    return {"status": "ok" if ok else "down", "ok": ok, "database": database}


def health_check() -> dict:
    """The database (`ok` is False only when it is down) and Thena as last probed: a
    Thena that does not answer makes the status "degraded", not the site down."""
    database = _database_health()
    thena = _thena_health()
    ok = database == "ok"
    status = ("ok" if thena["thena"] == "ok" else "degraded") if ok else "down"
    return {"status": status, "ok": ok, "database": database, **thena}


def _database_health() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as error:  # any failure at all means the database is down
        return f"error: {type(error).__name__}"
    return "ok"


def _thena_health() -> dict:
    """The last probe's result, probing first when it is older than HEALTH_EVERY and no
    other process is probing already."""
    try:
        last = cache.get(HEALTH_KEY)
        if last is not None and time.time() - last["at"] < HEALTH_EVERY:
            return last["report"]
        # One probe at a time in the whole deployment; the key outlives a crashed prober
        # by a few seconds only.
        if not cache.add(HEALTH_RUNNING_KEY, True, HEALTH_SECONDS + 5):
            return last["report"] if last is not None else _unprobed("the first check is running")
    except Exception as error:  # the cache (the database by default) is down
        return _unprobed(f"the cache is unreachable ({type(error).__name__})")
    try:
        report = _probe_thena()
        cache.set(HEALTH_KEY, {"at": time.time(), "report": report}, HEALTH_KEEP)
    except Exception as error:  # /healthz answers whatever happens
        return _unprobed(f"the check failed ({type(error).__name__})")
    finally:
        with contextlib.suppress(Exception):
            cache.delete(HEALTH_RUNNING_KEY)
    return report


def _unprobed(why: str) -> dict:
    unknown = f"unknown: {why}"
    return {"thena": unknown, "checked_at": None, "auto_link_field": unknown}


def _probe_thena() -> dict:
    checked_at = datetime.now(UTC)
    started = time.monotonic()
    report: dict = {"thena": "ok"}
    with request_budget(HEALTH_SECONDS):
        try:
            get_client().ping()
        except ThenaError as error:
            report["thena"] = f"error: {error.user_message}"
        else:
            report["thena_ms"] = round((time.monotonic() - started) * 1000, 1)
        # Informational: the status says whether the site works, not whether the flag is right.
        report["auto_link_field"] = (
            _auto_link_in_spec() if report["thena"] == "ok" else "unknown: Thena did not answer"
        )
    report["checked_at"] = checked_at.isoformat(timespec="seconds").replace("+00:00", "Z")
    return report


SPEC_FLAG_KEY = "thena:spec-flag"
SPEC_FLAG_TTL = 600  # seconds: Thena's spec changes with its releases, not per request
SPEC_SECONDS = 3.0  # the spec is a large read; /healthz must stay quick


def _auto_link_in_spec() -> str:
    """Whether THENA_AUTO_LINK_FIELD is the flag Thena's live spec names; a spec that
    cannot be read (or a cache that fails) is "unknown", never an error."""
    try:
        found = cache.get(SPEC_FLAG_KEY)
        if found is None:
            try:
                with request_budget(SPEC_SECONDS):
                    found = {"flag": speccheck.auto_link_flag(get_client().spec()) or ""}
            except ThenaError as error:
                found = {"error": error.user_message}
            cache.set(SPEC_FLAG_KEY, found, SPEC_FLAG_TTL)
    except Exception as error:  # /healthz must answer whatever happens here
        return f"unknown: {type(error).__name__}"
    if "error" in found:
        return f"unknown: {found['error']}"
    if found["flag"] == schema.auto_link_name():
        return "ok"
    if not found["flag"]:
        return "not in Thena's spec: it names no Slack-channel flag"
    return f"not in Thena's spec: set THENA_AUTO_LINK_FIELD={found['flag']}"


# -- editing -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TicketEdit:
    """A ticket as read for editing, with the choices its team offers; on a submit, also
    the snapshot of what the page showed."""

    ticket: dict
    choices: Choices
    snapshot: Snapshot | None = None

    @property
    def ticket_id(self) -> str:
        return self.ticket["id"]

    def form(self, data=None) -> TicketUpdateForm:
        return TicketUpdateForm(
            data, ticket=self.ticket, choices=self.choices, snapshot=self.snapshot
        )

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


# How the page names each list of choices when Thena did not send it.
LIST_NAMES = {
    "statuses": "statuses",
    "priorities": "priorities",
    "types": "types",
    "sentiments": "sentiments",
    "members": "assignees",
    "accounts": "accounts",
    "sub_teams": "sub-teams",
    "forms": "forms",
    "custom_fields": "custom fields",
}
INCOMPLETE_TTL = 60  # seconds: choices with a list missing, for the submit of their page


def team_choices(team_id: str, *, retry_missing: bool = True) -> Choices:
    """Everything the edit form offers for one team, cached as one entry so a warm edit
    page costs exactly one upstream request (the ticket itself). Lists Thena did not
    send are named in `missing`; such a set is cached briefly, and fetched again unless
    `retry_missing` is off (a submit keeps the choices its page showed)."""
    key = f"thena:choices:{_key_part(team_id)}"
    choices = cache.get(key)
    if choices is None or (choices.missing and retry_missing):
        choices = _fetch_choices(team_id)
        cache.set(key, choices, INCOMPLETE_TTL if choices.missing else LOOKUP_TTL)
    return choices


def _fetch_choices(team_id: str) -> Choices:
    """All lists at once (a cold page waits for one round trip, not ten); one that fails
    leaves the others."""
    client = get_client()
    got = concurrently(
        {
            "statuses": lambda: _statuses(client.statuses(team_id)),
            "priorities": lambda: _pairs(client.priorities(team_id), "displayName", "name"),
            "types": lambda: _pairs(client.types(team_id), "name"),
            "sentiments": lambda: _pairs(client.sentiments(team_id), "displayName", "name"),
            "members": lambda: client.team_members(team_id),
            "accounts": lambda: _pairs(client.accounts(limit=100), "name"),
            "sub_teams": lambda: _pairs(client.sub_teams(team_id), "name"),
            "forms": lambda: _pairs(client.forms(team_id), "name"),
            "custom_fields": lambda: [
                f for f in client.custom_fields(team_id) if f.get("isActive", True)
            ],
        }
    )
    failed = [name for name, value in got.items() if isinstance(value, ThenaError)]
    lists = {name: value for name, value in got.items() if name not in failed}
    members = lists.pop("members", [])
    return Choices(
        **lists,
        members=_members(members),
        member_emails={m["id"]: m["email"] for m in members if m.get("email")},
        missing=tuple(LIST_NAMES[name] for name in failed),
    )


def account_search(query: str, *, keep: str = "") -> list[tuple[str, str]]:
    """Accounts matching `query` for the picker; `keep` (the current choice) stays first
    so that searching never silently unlinks the ticket's account.

    Accounts belong to the organisation, not to a team (Thena links no account to a
    team), so every editor, scoped or not, picks from what the API key can list."""
    query = query.strip()[:100]
    client = get_client()
    if query:
        options = _cached(
            f"accounts:q:{_key_part(query.lower())}",
            lambda: _pairs(client.search_accounts(query), "name"),
        )
    else:
        options = _cached("accounts:first", lambda: _pairs(client.accounts(limit=100), "name"))
    if keep and keep not in {value for value, _ in options}:
        name = _cached(
            f"account:{_key_part(keep)}", lambda: client.account(keep).get("name") or keep
        )
        options = [(keep, name), *options]
    return options


def ticket_edit_load(*, user, ticket_id: str) -> TicketEdit:
    """Raises ThenaNotFound for a ticket that does not exist (or is out of scope)."""
    ticket = _visible(user, get_client().get_ticket(ticket_id))
    return TicketEdit(ticket=ticket, choices=team_choices(ticket.get("teamId") or ""))


def ticket_edit_submitted(
    *, user, ticket_id: str, token: str, account_id: str = ""
) -> TicketEdit | None:
    """The edit as the user saw it, from the form's signed snapshot and the cached
    choices: a submit, and every failure it re-renders, needs no GET of its own. None
    when the ticket is outside the user's teams; SnapshotError when the snapshot cannot
    be trusted. `account_id` is the account the user picked: one found by search is added
    to the choices, so a re-rendered picker still shows it selected."""
    snapshot = Snapshot.load(token, ticket_id=ticket_id)
    if not _in_scope(user, snapshot.ticket.get("teamId")):
        return None
    # Lists Thena did not send stay missing, as the page showed them; the form still
    # offers the current values.
    choices = team_choices(snapshot.team_id, retry_missing=False)
    if account_id and account_id not in dict(choices.accounts):
        choices = replace(choices, accounts=_account_options(choices.accounts, account_id))
    return TicketEdit(ticket=snapshot.ticket, choices=choices, snapshot=snapshot)


def _account_options(listed: list, account_id: str) -> list[tuple[str, str]]:
    try:
        return account_search("", keep=account_id)
    except ThenaError:
        return [(account_id, account_id), *listed]  # no name to be had: the id will do


def _ticket_ref(ticket: dict) -> dict:
    """What the audit entry keeps of a ticket (audit.record_attempt makes any text fit
    its column: a ticket Thena holds oddly can still be edited, and its edits logged)."""
    return {key: ticket.get(key) for key in ("id", "ticketIdentifier", "title", "teamId")}


NO_PERMISSION = "The user lacks the permission tickets.edit_ticket."
OUT_OF_SCOPE = "The ticket is outside the user's teams."


DENIED_WINDOW = 60  # seconds: at most one denied entry per user, ticket and window
DENIED_KEEP = 24 * 60 * 60  # how long a window's count waits in the cache to be written
TICKET_ID_MAX = 64  # AuditEntry.ticket_id's max_length


def _denied_now() -> datetime:
    return datetime.now(UTC)


def ticket_update_denied(
    *,
    user,
    ticket_id: str,
    meta: audit.RequestMeta,
    why: str = NO_PERMISSION,
    team_id: str | None = None,
) -> None:
    """An edit refused before anything was sent: nothing reaches Thena, but it is logged.

    Repeats collapse: the first denied attempt of a user on a ticket in a minute (UTC,
    from :00) is written; later ones in that minute only count in the cache, and that
    count is written with the next denied entry of the same user and ticket, as "and N
    more denied attempts between HH:MM and HH:MM UTC". The log is insert-only, so a
    count cannot be added to an entry already written. `team_id` None means unknown:
    it is then taken from the cache of ticket teams if there, never asked of Thena."""
    ticket_id = str(ticket_id)[:TICKET_ID_MAX]
    if team_id is None:
        team_id = cache.get(_ticket_team_key(ticket_id))
    now = _denied_now()
    window = int(now.timestamp()) // DENIED_WINDOW
    base = f"audit:denied:{user.pk}:{_key_part(ticket_id)}"
    if _denied_counted(f"{base}:{window}"):
        return  # written with this user's next denied entry on this ticket
    message = why + _denied_before(base, window)
    cache.set(f"{base}:last", window, DENIED_KEEP)
    audit.record_attempt(
        action="ticket.update",
        actor=user,
        ticket={"id": ticket_id, "teamId": team_id},
        changes={},
        request_body={},
        outcome="denied",
        message=message,
        meta=meta,
    )


def _denied_counted(key: str) -> bool:
    """Count one more attempt in the window `key`; False when it is the window's first
    (or its count expired), which the caller writes. The database cache's incr is a get
    and a set, so there it runs under a lock to stay exact across processes."""
    with contextlib.ExitStack() as stack:
        if isinstance(caches["default"], DatabaseCache):
            stack.enter_context(transaction.atomic())  # SQLite: BEGIN IMMEDIATE locks
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    lock = int(hashlib.sha256(key.encode()).hexdigest()[:15], 16)
                    cursor.execute("SELECT pg_advisory_xact_lock(%s)", [lock])
        if cache.add(key, 0, DENIED_KEEP):
            return False
        try:
            cache.incr(key)
        except ValueError:
            return False
        return True


def _denied_before(base: str, window: int) -> str:
    """The uncounted attempts of the window of the previous denied entry, as a clause."""
    last = cache.get(f"{base}:last")
    if last is None or last == window:
        return ""
    more = cache.get(f"{base}:{last}") or 0
    if not more:
        return ""
    start = datetime.fromtimestamp(last * DENIED_WINDOW, UTC)
    end = start + timedelta(seconds=DENIED_WINDOW)
    return (
        f" And {more} more denied attempt{'s' if more != 1 else ''} "
        f"between {start:%Y-%m-%d %H:%M} and {end:%H:%M} UTC."
    )


class OutOfScope(ThenaNotFound):
    """The ticket moved to a team outside the user's scope since the page was shown."""


class OutcomeUnknown(Exception):
    """The PATCH may or may not have applied, and reading the ticket back did not tell:
    the audit entry says unknown until reconcile_audit settles it. `reason` says, for
    people, what the read-back found."""

    def __init__(self, entry, reason: str):
        super().__init__(reason)
        self.entry = entry
        self.reason = reason


class EditFailed(ThenaError):
    """Thena surely did not apply the edit; `user_message` says why."""


def _input_values(ticket: dict, values: dict) -> Callable[[str], object]:
    """A reader of one input's value on `ticket`: the PATCH JSON of a field (from
    `values`, its wire.ticket_values), or the data of a custom field (cf__<uid>)."""

    def read(name: str):
        if name.startswith(CF_PREFIX):
            return wire.cf_data(ticket, name.removeprefix(CF_PREFIX))
        return values.get(name)

    return read


def _split(edits: dict) -> tuple[dict, dict]:
    """Field edits and custom-field edits (by uid)."""
    fields = {n: v for n, v in edits.items() if not n.startswith(CF_PREFIX)}
    custom = {n.removeprefix(CF_PREFIX): v for n, v in edits.items() if n.startswith(CF_PREFIX)}
    return fields, custom


def patch_body(ticket: dict, edits: dict) -> dict:
    """The PATCH body for the user's edits over `ticket` as Thena has it now: custom-field
    edits rewrite only their own items of the ticket's current list."""
    fields, custom = _split(edits)
    if custom:
        fields["customFieldValues"] = wire.cf_merge(wire.cf_items(ticket), custom)
    return fields


def _applied(ticket: dict, body: dict, custom: dict) -> bool | None:
    """Whether `ticket` shows the edit: True when every sent value that the ticket object
    carries is there, False when one is not, None when none can be read back."""
    specs, values = schema.field_map(), wire.ticket_values(ticket)
    checked = False
    for name, sent in body.items():
        if name == "customFieldValues" and not wire.cf_exact(ticket):
            continue  # custom fields read as strings cannot show what was written
        if name == "customFieldValues" and custom:
            for uid, data in custom.items():
                if not wire.equal(wire.cf_data(ticket, uid), data):
                    return False
            checked = True
        elif name in specs and name in ticket:  # write-only keys are not on a ticket
            if not wire.same(specs[name], sent, values[name]):
                return False
            checked = True
    return True if checked else None


@dataclass(frozen=True)
class Intent:
    """What an edit's audit entries say beside the change: the user's reason for it, and
    for a revert, the id of the entry whose change it undoes."""

    reason: str = ""
    revert_of: int | None = None


def ticket_update(
    *,
    user,
    edit: TicketEdit,
    form: TicketUpdateForm,
    meta: audit.RequestMeta,
    intent: Intent = Intent(),
) -> UpdateResult:
    """Lock the ticket, re-read it, record the intent, PATCH what the user changed, and
    record the outcome by evidence.

    The PATCH runs outside any transaction: a remote write cannot be rolled back, so the
    audit log records the intent first (committed) and the outcome after. The lock
    (tickets/locks.py) makes a second save of the same ticket wait and then see the
    first one, as a conflict when it touched the same fields.
    """
    edits = form.edits()
    if not edits:
        return UpdateResult(entry=None, ticket=edit.ticket, sent={}, kept_upstream=[])
    if not user.has_perm("tickets.edit_ticket"):
        ticket_update_denied(
            user=user, ticket_id=edit.ticket_id, meta=meta, team_id=edit.ticket.get("teamId")
        )
        raise PermissionDenied("You may view tickets but not edit them.")
    with locks.ticket_edit_lock(edit.ticket_id):
        return _update_locked(user, edit, form.snapshot, edits, meta, intent)


def _update_locked(
    user, edit: TicketEdit, snapshot: Snapshot, edits: dict, meta, intent: Intent
) -> UpdateResult:
    client = get_client()
    seen = _input_values(snapshot.ticket, snapshot.values)
    try:
        fresh = client.get_ticket(edit.ticket_id)
    except ThenaError as error:
        reason = "could not re-read the ticket first: " + (error.detail or error.user_message)
        _record_unsent(user, snapshot.ticket, edits, reason, meta, intent)
        raise
    if not _in_scope(user, fresh.get("teamId")):
        ticket_update_denied(
            user=user,
            ticket_id=edit.ticket_id,
            meta=meta,
            why=OUT_OF_SCOPE,
            team_id=fresh.get("teamId"),
        )
        raise OutOfScope()
    now = wire.ticket_values(fresh)
    theirs = _input_values(fresh, now)
    if _split(edits)[1] and not wire.cf_exact(fresh):
        reason = "the ticket's custom field values cannot be read exactly now"
        _record_unsent(user, fresh, edits, reason, meta, intent)
        raise EditFailed(
            "Thena now sends this ticket's custom field values in a shape that cannot be "
            "written back exactly, so they were not saved, and nothing was sent. Reload the "
            "page: custom fields are then read-only here."
        )
    # A write-only value cannot be compared: it is sent as set, and cannot clash.
    hidden = wire.unreadable(fresh)
    # A value Thena already holds needs no PATCH (and is no conflict).
    edits = {
        name: value
        for name, value in edits.items()
        if name in hidden or not wire.equal(theirs(name), value)
    }
    moved = {
        name for name in edits if name not in hidden and not wire.equal(theirs(name), seen(name))
    }
    custom = _split(edits)[1]
    body = patch_body(fresh, edits)
    kept = [
        field_label(name)
        for name, value in now.items()
        if not wire.equal(value, snapshot.values.get(name)) and name not in body
    ]

    def record(outcome: str = "pending", message: str = ""):
        return audit.record_attempt(
            action="ticket.update",
            actor=user,
            ticket=_ticket_ref(fresh),
            changes=_changes(now, body, hidden),
            request_body=body,
            outcome=outcome,
            message=message,
            meta=meta,
            base_updated_at=fresh.get("updatedAt") if outcome == "pending" else None,
            reason=intent.reason,
            revert_of=intent.revert_of,
        )

    if moved:
        clashing = [
            ConflictField(
                name,
                input_label(edit.choices.custom_fields, name),
                seen(name),
                theirs(name),
                edits[name],
            )
            for name in sorted(moved)
        ]
        message = "Changed in Thena meanwhile: " + ", ".join(f.label for f in clashing)
        raise Conflict(fields=clashing, fresh=fresh, entry=record("conflict", message))
    if not body:
        return UpdateResult(entry=None, ticket=fresh, sent={}, kept_upstream=kept)

    sent = _Sent(record(), fresh, body, custom, kept, time.monotonic())
    try:
        updated = client.update_ticket(edit.ticket_id, body)
    except ThenaError as error:
        reason = error.detail or error.user_message
        if not error.outcome_unknown:
            sent.record("failed", error.status_code, reason)
            raise
        # Thena answered (5xx, an odd 2xx) or went silent after the PATCH left. A
        # gateway's 502/503/504 says a proxy gave up, not that Thena is done with it.
        answered = error.status_code is not None and error.status_code not in GATEWAY_ERRORS
        return _settle(
            sent, _read_back(client, edit.ticket_id), reason, answered, error.status_code
        )
    applied = _applied(updated, body, custom)
    # Only write-only values sent: a ticket that moved on is the best evidence there is.
    if applied or (applied is None and updated.get("updatedAt") != fresh.get("updatedAt")):
        sent.record("succeeded", 200, ticket=updated)
        return sent.result(updated)
    reason = "Thena's answer does not show the change."
    return _settle(sent, _read_back(client, edit.ticket_id), reason, True, 200)


def _record_unsent(user, ticket: dict, edits: dict, reason: str, meta, intent: Intent) -> None:
    """An attempt that ended before the PATCH: what the user asked for, nothing sent."""
    hidden = wire.unreadable(ticket)
    if not wire.cf_exact(ticket):
        hidden |= {"customFieldValues"}
    changes = _changes(wire.ticket_values(ticket), patch_body(ticket, edits), hidden)
    audit.record_attempt(
        action="ticket.update",
        actor=user,
        ticket=_ticket_ref(ticket),
        changes=changes,
        request_body={},
        outcome="failed",
        message=f"Nothing was sent: {reason}.",
        meta=meta,
        reason=intent.reason,
        revert_of=intent.revert_of,
    )


GATEWAY_ERRORS = frozenset({502, 503, 504})


@dataclass(frozen=True)
class _Sent:
    """A PATCH that has left: what it carried, and the entry its outcome settles."""

    entry: AuditEntry
    fresh: dict  # the ticket as re-read just before
    body: dict
    custom: dict  # custom-field edits by uid
    kept: list[str]
    started: float

    def record(self, outcome: str, status: int | None, message: str = "", ticket=None) -> None:
        try:
            audit.record_outcome(
                entry=self.entry,
                outcome=outcome,
                status_code=status,
                message=message,
                upstream_updated_at=(ticket or {}).get("updatedAt"),
                duration_ms=_ms(self.started),
            )
        except AlreadySettled:
            # A request slower than the in-flight window: reconciliation settled the entry
            # first, by reading the ticket back. Its outcome stands.
            logger.warning("Audit entry #%s was settled by reconciliation first", self.entry.pk)

    def result(self, ticket: dict) -> UpdateResult:
        return UpdateResult(
            entry=self.entry, ticket=ticket, sent=self.body, kept_upstream=self.kept
        )


def _read_back(client, ticket_id: str) -> dict | None:
    try:
        return client.get_ticket(ticket_id)
    except ThenaError:
        return None


def _settle(sent: _Sent, now: dict | None, reason: str, answered: bool, status) -> UpdateResult:
    """The outcome of a PATCH whose answer did not show it, from one read-back: applied
    is "succeeded"; untouched since the re-read, after Thena finished with the request,
    is "failed"; anything else stays "unknown"."""
    applied = _applied(now, sent.body, sent.custom) if now is not None else False
    unchanged = now is not None and now.get("updatedAt") == sent.fresh.get("updatedAt")
    if applied:
        sent.record("succeeded", status, f"{reason} Reading the ticket back shows the change.", now)
        return sent.result(now)
    if answered and unchanged:
        sent.record("failed", status, f"{reason} Reading the ticket back shows it unchanged.", now)
        raise EditFailed(
            "Thena answered in a way we did not expect, and reading the ticket back shows it "
            "unchanged. Your input is below: save again.",
            status_code=status,
            detail=reason,
        )
    if now is None:
        found = "the ticket could not be read back to check"
    elif unchanged:
        found = "the ticket does not show it yet, but the change may still arrive"
    elif applied is None:  # only write-only values were sent
        found = "the ticket has changed since, but Thena does not return the values sent"
    else:
        found = "the ticket has changed since, but not to the values sent"
    sent.record("unknown", status, f"{reason} Read back: {found}.", now)
    _queue_reconcile(sent.entry)
    raise OutcomeUnknown(sent.entry, found)


def _queue_reconcile(entry: AuditEntry) -> None:
    """Ask the task worker to settle `entry` once the in-flight window has passed. Never
    fails the request: an entry whose task could not be queued is left to the sweep."""
    try:
        from .tasks import reconcile_entry  # tasks call services: imported here, not above

        run_after = datetime.now(UTC) + timedelta(seconds=IN_FLIGHT_SECONDS)
        with transaction.atomic():  # a failed insert must not spoil a caller's transaction
            reconcile_entry.using(run_after=run_after).enqueue(entry.pk)
    except Exception:
        logger.exception(
            "Could not queue the reconciliation of audit entry #%s; the sweep will settle it.",
            entry.pk,
        )


def field_label(name: str) -> str:
    return input_label([], name)


def _changes(before: dict, body: dict, unreadable: frozenset[str]) -> dict:
    """Each sent field's before and after; a write-only field has no "before" (it could
    not be read), which is not the same as an empty one."""
    changes = {}
    for name, value in body.items():
        changes[name] = {"after": value}
        if name not in unreadable:
            changes[name]["before"] = before.get(name)
    return changes


def _ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


@dataclass(frozen=True)
class HistoryItem:
    entry: AuditEntry
    outcome: str
    fields: list[str]  # labels of the fields the attempt changed


def ticket_history(*, user, ticket_id: str, limit: int = 10) -> list[HistoryItem]:
    """The ticket's latest audit entries that `user` may read, with their current outcome
    (local reads only). Entries are kept by the team they were recorded under (the audit
    log's one rule, audit.queries.visible_to): a ticket that moved teams shows a user
    scoped to its new team none of what was done while it was in the old one."""
    entries = AuditEntry.objects.filter(visible_to(user_team_scope(user)))
    entries = entries.for_ticket(ticket_id).with_current_outcome()[:limit]
    return [
        HistoryItem(entry, entry.current_outcome, [field_label(name) for name in entry.changes])
        for entry in entries
    ]


# -- reconciliation ----------------------------------------------------------------------


def _custom_edits(change: dict | None) -> dict:
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
    edits = AuditEntry.objects.filter(action="ticket.update", created_at__lt=cutoff)
    if entry_id is not None:
        edits = edits.filter(pk=entry_id)
    # Both lists first: an entry this run records as unknown is not read again.
    found = [(entry, "pending") for entry in edits.for_outcome("pending")]
    found += [(entry, "unknown") for entry in edits.for_outcome("unknown")]
    for entry, current in found:
        counts[_reconcile(client, entry, current)] += 1
    return counts


def _reconcile(client, entry: AuditEntry, current: str) -> str:
    """Settle one entry whose outcome was `current` when listed; returns what it counts as."""
    try:
        now = client.get_ticket(entry.ticket_id)
    except ThenaNotFound:
        now, status = {}, 404
        outcome, message = "failed", "Reconciled: the ticket no longer exists in Thena."
    except ThenaError:
        return "skipped"
    else:
        status = None
        custom = _custom_edits(entry.changes.get("customFieldValues"))
        applied = _applied(now, entry.request_body, custom)
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
    try:
        audit.record_outcome(
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
