"""Use cases, named <entity>_<verb>. With tickets/audit/reconcile.py (which settles the
audit log by reading tickets back), the only callers of the Thena client (house-style §1).
"""

import contextlib
import hashlib
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core import signing
from django.core.cache import cache, caches
from django.core.cache.backends.db import DatabaseCache
from django.core.exceptions import PermissionDenied
from django.db import connection, transaction
from django.forms.renderers import get_default_renderer
from django.urls import reverse
from django.utils.dateparse import parse_datetime
from django.utils.safestring import mark_safe

from . import audit, locks
from .audit import reconcile
from .audit.chain import AlreadySettled
from .audit.queries import visible_to
from .audit.words import change_lines, drift_numbers, revert_numbers
from .forms import (
    CF_PREFIX,
    CURRENT_LABELS,
    REASON_REQUIRED,
    RESOLUTIONS,
    Choices,
    TicketUpdateForm,
    input_label,
    option_pairs,
)
from .locks import EditBusy  # noqa: F401 - raised through ticket_update
from .models import Action, AuditEntry, Outcome, TeamScope, TicketFieldSeen
from .snapshot import Snapshot, SnapshotError  # noqa: F401 - raised through here
from .tasks import reconcile_entry
from .thena import schema, speccheck, wire
from .thena.client import concurrently, get_client, request_budget
from .thena.errors import ThenaError, ThenaNotFound
from .widgets import HISTORY_ITEM

HISTORY_TEXT = 60  # characters of a value the history panel shows
NO_TEAMS = "Your account is not allowed to see any team yet. Ask your administrator."
LOOKUP_TTL = 300  # seconds: teams, statuses, members... change rarely

logger = logging.getLogger(__name__)


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
    return _filled(f"thena:{key}", fetch, lambda _: LOOKUP_TTL)


FILL_WAIT = 5.0  # seconds a process waits for another's fetch of the same value
FILL_POLL = 0.02  # seconds between looks at the cache while waiting


_UNREAD = object()


def _filled(key: str, fetch, ttl, *, good=lambda value: True, cached=_UNREAD):
    """The value cached under `key` when it is `good`, else `fetch()`ed and cached for
    `ttl(value)` seconds by one process at a time: the others (every worker of every
    instance shares the cache) wait for that answer instead of asking Thena the same
    thing. After FILL_WAIT seconds a waiter fetches for itself (a filler may have died).
    `cached`: the value under `key` when the caller has read it already."""
    value = cache.get(key) if cached is _UNREAD else cached
    if value is not None and good(value):
        return value
    filling = f"{key}:filling"
    deadline = time.monotonic() + FILL_WAIT
    while not cache.add(filling, True, FILL_WAIT):
        if time.monotonic() > deadline:
            return fetch()
        time.sleep(FILL_POLL)
        value = cache.get(key)
        if value is not None and good(value):
            return value
    try:
        value = fetch()
        cache.set(key, value, ttl(value))
    finally:
        cache.delete(filling)
    return value


def _ticket_team_key(ticket_id: str) -> str:
    return f"thena:ticket-team:{_key_part(ticket_id)}"


def team_list() -> list[dict]:
    """Top-level teams (tickets belong to these; sub-teams are a field of the ticket)."""
    return [team for team in _cached("teams", get_client().teams) if not team.get("parentTeamId")]


# -- team scopes --------------------------------------------------------------------------


def team_scope_get(user) -> frozenset[str] | None:
    """The Thena teams a user may see: None for every team (superusers, and users without
    a TeamScope row), else the scope's team ids. Memoised on the user for the request."""
    if user.is_superuser:
        return None
    if not hasattr(user, "_team_scope"):
        # Every page asks: one plain statement, not a QuerySet built anew (ten times the CPU).
        team_ids = TeamScope._meta.get_field("team_ids")
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {team_ids.column} FROM {TeamScope._meta.db_table} WHERE user_id = %s",
                [user.pk],
            )
            row = cursor.fetchone()
        user._team_scope = (
            None if row is None else frozenset(team_ids.from_db_value(row[0], None, connection))
        )
    return user._team_scope


def in_scope(user, team_id: str | None) -> bool:
    scope = team_scope_get(user)
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
    if not in_scope(user, ticket.get("teamId")):
        raise ThenaNotFound()
    return ticket


def ticket_check_scope(*, user, ticket_id: str, fresh: bool = False) -> None:
    """Raise ThenaNotFound unless the ticket is in the user's teams; nothing to check for
    unscoped users. The ticket's team comes from the cache (up to LOOKUP_TTL old), or,
    with `fresh` or on a miss, from Thena (ThenaError when Thena cannot say). Use `fresh`
    where a stale team would show something: a ticket that moved out of the user's teams
    must not show its history to them for the cache's lifetime."""
    if team_scope_get(user) is None:
        return
    team_id = None if fresh else cache.get(_ticket_team_key(ticket_id))
    if team_id is None:
        ticket = get_client().get_ticket(ticket_id)
        _remember_team(ticket)
        team_id = ticket.get("teamId")
    if not in_scope(user, team_id):
        raise ThenaNotFound()


def _datetime(value) -> datetime | None:
    return parse_datetime(value) if isinstance(value, str) else None


# Thena's health is probed at most once per HEALTH_EVERY seconds for the whole deployment
# (the result is in the shared cache), by one process at a time, within HEALTH_SECONDS:
# load balancers probing every few seconds from many places cost Thena almost nothing,
# and a slow Thena never makes /healthz slow for more than the one probe that runs.
HEALTH_KEY = "health:thena"
HEALTH_RUNNING_KEY = "health:thena:running"
HEALTH_EVERY = 30  # seconds between probes
HEALTH_SECONDS = 2.0  # the probe's budget, the spec read included
HEALTH_KEEP = 600  # an older result still answers while the next probe runs


def health_check_live() -> dict:
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

    WRITE_ONLY_TEXT = "Not readable from Thena"

    def read_only_groups(self) -> list[tuple[str, str, list[dict]]]:
        """The edit form's groups as values to read, for a user who may not edit:
        (key, title, items), each item {"name", "label", "kind", "value", "wide"}. Built
        from the form itself, so labels and option names are the edit form's. Kinds:
        "empty", "write_only", "text", "code" (JSON), "datetime", "date"; `value` is the
        text, or the date(-time) to format; `wide` for what the form edits in a textarea."""
        form = self.form()
        specs = schema.field_map()
        groups = []
        for key, title, fields in form.groups():
            items = []
            for bound in fields:
                name = bound.name
                spec = specs.get(name)
                # Not values a ticket keeps: names to look up, the auto-link action.
                if spec and not schema.holds_value(spec):
                    continue
                field = bound.field
                value = form.get_initial_for_field(field, name)
                kind = "text"
                if name in form.unreadable:
                    kind, value = "write_only", self.WRITE_ONLY_TEXT
                elif value in (None, "", [], {}):
                    kind, value = "empty", "—"
                elif isinstance(value, bool):
                    value = "Yes" if value else "No"
                elif isinstance(value, datetime):
                    kind = "datetime"
                elif hasattr(value, "isoformat"):
                    kind = "date"
                elif getattr(field, "choices", None):
                    names = {str(v): str(label) for v, label in field.choices}
                    picked = value if isinstance(value, list) else [value]
                    value = ", ".join(names.get(str(v), str(v)) for v in picked)
                elif isinstance(value, list) and not any(isinstance(v, dict | list) for v in value):
                    # Plain values (attachment URLs, custom values read without their
                    # fields' ids): one a line.
                    value = "\n".join(str(v) for v in value)
                else:
                    # JSON and over-long texts the way the edit form shows them.
                    value = str(field.prepare_value(value))
                    if "code" in field.widget.attrs.get("class", ""):
                        kind = "code"
                # A textarea in the form (no input_type) spans the whole row here too.
                wide = kind == "code" or not hasattr(field.widget, "input_type")
                items.append(
                    {"name": name, "label": bound.label, "kind": kind, "value": value, "wide": wide}
                )
            if items:
                groups.append((key, title, items))
        return groups


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


def team_choices_load(team_id: str, *, retry_missing: bool = True) -> Choices:
    """Everything the edit form offers for one team, cached as one entry so a warm edit
    page costs exactly one upstream request (the ticket itself). Lists Thena did not
    send are named in `missing`; such a set is cached briefly, and fetched again unless
    `retry_missing` is off (a submit keeps the choices its page showed)."""
    return _choices_filled(team_id, retry_missing)


def team_choices_load_many(team_ids: list[str]) -> list[Choices]:
    """team_choices_load for each team, the cached ones read with one query."""
    cached = cache.get_many([_choices_key(team_id) for team_id in team_ids])
    return [_choices_filled(t, True, cached.get(_choices_key(t))) for t in team_ids]


def _choices_filled(team_id: str, retry_missing: bool, cached=_UNREAD) -> Choices:
    return _filled(
        _choices_key(team_id),
        lambda: _fetch_choices(team_id),
        lambda choices: INCOMPLETE_TTL if choices.missing else LOOKUP_TTL,
        good=lambda choices: not (choices.missing and retry_missing),
        cached=cached,
    )


def _choices_key(team_id: str) -> str:
    return f"thena:choices:{_key_part(team_id)}"


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
    return TicketEdit(ticket=ticket, choices=team_choices_load(ticket.get("teamId") or ""))


# A ticket identifier as Thena shows it (e.g. SUP-12): the team's prefix and a number.
TICKET_IDENTIFIER = re.compile(r"[A-Z][A-Z0-9]*-[0-9]+", re.IGNORECASE)
IDENTIFIER_TTL = 60  # seconds an identifier's ticket id is kept in the shared cache
IDENTIFIER_SEARCH_SIZE = 250  # the most one search page returns (Typesense's limit)


def _identifier_key(identifier: str) -> str:
    return f"thena:ticket-identifier:{_key_part(identifier.upper())}"


def _search_identifier(identifier: str) -> str | None:
    """The id of the one ticket whose identifier is `identifier` (case-insensitive), from
    Thena's search; None when none (or, which Thena should never answer, several) match.
    Search matches more than the identifier (SUP-1 finds SUP-12), so the documents are
    compared exactly."""
    result = get_client().search_tickets(
        identifier, query_by="ticketIdentifier", per_page=IDENTIFIER_SEARCH_SIZE
    )
    wanted = identifier.upper()
    ids = {
        document["id"]
        for document in result.items
        if isinstance(document.get("id"), str)
        and document["id"]
        and str(document.get("ticketIdentifier") or "").upper() == wanted
    }
    if len(ids) > 1:
        logger.warning("Thena's search has several tickets with identifier %s", identifier)
    return next(iter(ids)) if len(ids) == 1 else None


def ticket_id_resolve(*, user, identifier: str) -> str:
    """The id of the ticket whose identifier (e.g. SUP-12, any case) is `identifier`.
    Raises ThenaNotFound when the value is no identifier, no ticket has it, or the ticket
    is outside the user's teams (which looks exactly like no ticket); ThenaError when Thena
    cannot say. A found id is kept in the shared cache for IDENTIFIER_TTL seconds; a miss
    is not, so a new ticket resolves at once."""
    if len(identifier) > 64 or not TICKET_IDENTIFIER.fullmatch(identifier):
        raise ThenaNotFound()
    key = _identifier_key(identifier)
    ticket_id = cache.get(key)
    if not isinstance(ticket_id, str):
        ticket_id = _search_identifier(identifier)
        if ticket_id is None:
            raise ThenaNotFound()
        cache.set(key, ticket_id, IDENTIFIER_TTL)
    ticket_check_scope(user=user, ticket_id=ticket_id)
    return ticket_id


def ticket_edit_load_submitted(
    *, user, ticket_id: str, token: str, account_id: str = ""
) -> TicketEdit | None:
    """The edit as the user saw it, from the form's signed snapshot and the cached
    choices: a submit, and every failure it re-renders, needs no GET of its own. None
    when the ticket is outside the user's teams; SnapshotError when the snapshot cannot
    be trusted. `account_id` is the account the user picked: one found by search is added
    to the choices, so a re-rendered picker still shows it selected."""
    snapshot = Snapshot.load(token, ticket_id=ticket_id)
    if not in_scope(user, snapshot.ticket.get("teamId")):
        return None
    # Lists Thena did not send stay missing, as the page showed them; the form still
    # offers the current values.
    choices = team_choices_load(snapshot.team_id, retry_missing=False)
    if account_id and account_id not in dict(choices.accounts):
        choices = replace(choices, accounts=_account_options(choices.accounts, account_id))
    return TicketEdit(ticket=snapshot.ticket, choices=choices, snapshot=snapshot)


def _account_options(listed: list, account_id: str) -> list[tuple[str, str]]:
    try:
        return account_search("", keep=account_id)
    except ThenaError:
        return [(account_id, account_id), *listed]  # no name to be had: the id will do


def ticket_ref(ticket: dict) -> dict:
    """What the audit entry keeps of a ticket (audit.record_attempt makes any text fit
    its column: a ticket Thena holds oddly can still be edited, and its edits logged)."""
    return {
        key: ticket.get(key) for key in ("id", "ticketIdentifier", "title", "teamId", "teamName")
    }


def team_name_cached(team_id: str | None) -> str | None:
    """The team's name if the team list team_list() caches holds it (no request to
    Thena: a refused edit is logged whatever Thena's state)."""
    teams = cache.get("thena:teams") if team_id else None
    if not isinstance(teams, list):
        return None
    return next(
        (t.get("name") for t in teams if isinstance(t, dict) and t.get("id") == team_id), None
    )


NO_PERMISSION = (
    "The user may view tickets but not edit them (no \u201cCan edit Thena tickets\u201d "
    "permission)."
)
OUT_OF_SCOPE = "The ticket is outside the user's teams."


DENIED_WINDOW = 60  # seconds: at most one denied entry per user, ticket and window
DENIED_KEEP = 24 * 60 * 60  # how long a window's count waits in the cache to be written
TICKET_ID_MAX = 64  # AuditEntry.ticket_id's max_length


def _denied_now() -> datetime:
    return datetime.now(UTC)


def ticket_update_deny(
    *,
    user,
    ticket_id: str,
    meta: audit.RequestMeta,
    why: str = NO_PERMISSION,
    team_id: str | None = None,
    team_name: str | None = None,
) -> None:
    """An edit refused before anything was sent: nothing reaches Thena, but it is logged.

    Repeats collapse: the first denied attempt of a user on a ticket in a minute (UTC,
    from :00) is written; later ones in that minute only count in the cache, and that
    count is written with the next denied entry of the same user and ticket, as "and N
    more denied attempts between HH:MM and HH:MM UTC". The log is insert-only, so a
    count cannot be added to an entry already written. `team_id` None means unknown:
    it is then taken from the cache of ticket teams if there, never asked of Thena; so is
    `team_name` from the cached team list when not given."""
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
        action=Action.TICKET_UPDATE,
        actor=user,
        ticket={
            "id": ticket_id,
            "teamId": team_id,
            "teamName": team_name or team_name_cached(team_id),
        },
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


def input_reader(ticket: dict, values: dict) -> Callable[[str], object]:
    """A reader of one input's value on `ticket`: the PATCH JSON of a field (from
    `values`, its wire.ticket_values), or the data of a custom field (cf__<uid>)."""

    def read(name: str):
        if name.startswith(CF_PREFIX):
            return wire.cf_data(ticket, name.removeprefix(CF_PREFIX))
        return values.get(name)

    return read


def edits_split(edits: dict) -> tuple[dict, dict]:
    """Field edits and custom-field edits (by uid)."""
    fields = {n: v for n, v in edits.items() if not n.startswith(CF_PREFIX)}
    custom = {n.removeprefix(CF_PREFIX): v for n, v in edits.items() if n.startswith(CF_PREFIX)}
    return fields, custom


def patch_body(ticket: dict, edits: dict) -> dict:
    """The PATCH body for the user's edits over `ticket` as Thena has it now: custom-field
    edits rewrite only their own items of the ticket's current list."""
    fields, custom = edits_split(edits)
    if custom:
        fields["customFieldValues"] = wire.cf_merge(wire.cf_items(ticket), custom)
    return fields


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
        ticket_update_deny(
            user=user,
            ticket_id=edit.ticket_id,
            meta=meta,
            team_id=edit.ticket.get("teamId"),
            team_name=edit.ticket.get("teamName"),
        )
        raise PermissionDenied("You may view tickets but not edit them.")
    with locks.ticket_edit_lock(edit.ticket_id):
        return _update_locked(user, edit, form.snapshot, edits, meta, intent)


def _update_locked(
    user, edit: TicketEdit, snapshot: Snapshot, edits: dict, meta, intent: Intent
) -> UpdateResult:
    client = get_client()
    seen = input_reader(snapshot.ticket, snapshot.values)
    try:
        fresh = client.get_ticket(edit.ticket_id)
    except ThenaError as error:
        reason = "could not re-read the ticket first: " + (error.detail or error.user_message)
        labels = Labeller(edit.choices, (snapshot.ticket,))
        _record_unsent(user, snapshot.ticket, edits, reason, meta, intent, labels)
        raise
    if not in_scope(user, fresh.get("teamId")):
        ticket_update_deny(
            user=user,
            ticket_id=edit.ticket_id,
            meta=meta,
            why=OUT_OF_SCOPE,
            team_id=fresh.get("teamId"),
            team_name=fresh.get("teamName"),
        )
        raise OutOfScope()
    # Names for the ids recorded: the page's choices, then both reads' own names.
    labels = Labeller(edit.choices, (fresh, snapshot.ticket))
    now = wire.ticket_values(fresh)
    theirs = input_reader(fresh, now)
    if edits_split(edits)[1] and not wire.cf_exact(fresh):
        reason = "the ticket's custom field values cannot be read exactly now"
        _record_unsent(user, fresh, edits, reason, meta, intent, labels)
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
    custom = edits_split(edits)[1]
    body = patch_body(fresh, edits)
    kept = [
        field_label(name)
        for name, value in now.items()
        if not wire.equal(value, snapshot.values.get(name)) and name not in body
    ]

    def record(outcome: str = "pending", message: str = ""):
        return audit.record_attempt(
            action=Action.TICKET_UPDATE,
            actor=user,
            ticket=ticket_ref(fresh),
            changes=entry_changes(now, body, hidden, labels),
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
        # Thena answered (5xx, an odd 2xx) or went silent after the PATCH left.
        return _settle(
            sent,
            _read_back(client, edit.ticket_id),
            reason,
            thena_answered(error),
            error.status_code,
        )
    applied = wire.applied(updated, body, custom)
    # Only write-only values sent: a ticket that moved on is the best evidence there is.
    if applied or (applied is None and updated.get("updatedAt") != fresh.get("updatedAt")):
        sent.record("succeeded", 200, ticket=updated)
        return sent.result(updated)
    reason = "Thena's answer does not show the change."
    return _settle(sent, _read_back(client, edit.ticket_id), reason, True, 200)


def _record_unsent(
    user, ticket: dict, edits: dict, reason: str, meta, intent: Intent, labels: "Labeller"
) -> None:
    """An attempt that ended before the PATCH: what the user asked for, nothing sent."""
    hidden = wire.unreadable(ticket)
    if not wire.cf_exact(ticket):
        hidden |= {"customFieldValues"}
    changes = entry_changes(wire.ticket_values(ticket), patch_body(ticket, edits), hidden, labels)
    audit.record_attempt(
        action=Action.TICKET_UPDATE,
        actor=user,
        ticket=ticket_ref(ticket),
        changes=changes,
        request_body={},
        outcome="failed",
        message=f"Nothing was sent: {reason}.",
        meta=meta,
        reason=intent.reason,
        revert_of=intent.revert_of,
    )


GATEWAY_ERRORS = frozenset({502, 503, 504})


def thena_answered(error: ThenaError) -> bool:
    """Whether Thena itself answered (so is done with the request): a gateway's 502, 503
    or 504 says a proxy gave up, and no answer says nothing."""
    return error.status_code is not None and error.status_code not in GATEWAY_ERRORS


def read_back_outcome(
    now: dict | None, fresh: dict, body: dict, custom: dict, *, answered: bool
) -> str:
    """The outcome of a PATCH whose answer did not show it, from one read-back (`now`,
    None when it failed) of the ticket that was `fresh` just before: applied is
    "succeeded"; untouched since, after Thena finished with the request, is "failed";
    anything else stays "unknown"."""
    if now is not None and wire.applied(now, body, custom):
        return "succeeded"
    if answered and now is not None and now.get("updatedAt") == fresh.get("updatedAt"):
        return "failed"
    return "unknown"


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
    """Record what one read-back shows (read_back_outcome), and tell the user."""
    outcome = read_back_outcome(now, sent.fresh, sent.body, sent.custom, answered=answered)
    if outcome == "succeeded":
        sent.record("succeeded", status, f"{reason} Reading the ticket back shows the change.", now)
        return sent.result(now)
    if outcome == "failed":
        sent.record("failed", status, f"{reason} Reading the ticket back shows it unchanged.", now)
        raise EditFailed(
            "Thena answered in a way we did not expect, and reading the ticket back shows it "
            "unchanged. Your input is below: save again.",
            status_code=status,
            detail=reason,
        )
    if now is None:
        found = "the ticket could not be read back to check"
    elif now.get("updatedAt") == sent.fresh.get("updatedAt"):
        found = "the ticket does not show it yet, but the change may still arrive"
    elif wire.applied(now, sent.body, sent.custom) is None:  # only write-only values sent
        found = "the ticket has changed since, but Thena does not return the values sent"
    else:
        found = "the ticket has changed since, but not to the values sent"
    sent.record("unknown", status, f"{reason} Read back: {found}.", now)
    reconcile_queue(sent.entry)
    raise OutcomeUnknown(sent.entry, found)


def reconcile_queue(entry: AuditEntry) -> None:
    """Ask the task worker to settle `entry` once the in-flight window has passed. Never
    fails the request: an entry whose task could not be queued is left to the sweep."""
    try:
        run_after = datetime.now(UTC) + timedelta(seconds=reconcile.IN_FLIGHT_SECONDS)
        with transaction.atomic():  # a failed insert must not spoil a caller's transaction
            reconcile_entry.using(run_after=run_after).enqueue(entry.pk)
    except Exception:
        logger.exception(
            "Could not queue the reconciliation of audit entry #%s; the sweep will settle it.",
            entry.pk,
        )


def field_label(name: str) -> str:
    return input_label([], name)


@dataclass(frozen=True)
class Labeller:
    """The names people know the recorded ids by, taken when the entry is written (a
    status renamed later must not rename history): the choices the page had, then the
    display names on the tickets as read (`tickets`, freshest first). Never a request to
    Thena: an id with no name at hand gets no label."""

    choices: Choices = field(default_factory=Choices)
    tickets: tuple[dict, ...] = ()

    def label(self, name: str, value) -> str | None:
        """The label of `value` when `name` is an id field and the id has a known name."""
        spec = schema.field_map().get(name)
        if spec is None or spec.kind != "id" or not isinstance(value, str) or not value:
            return None
        listed = dict(self.choices.for_field(name)).get(value)
        if listed:
            return str(listed)
        key = CURRENT_LABELS.get(name)
        for ticket in self.tickets:
            shown = ticket.get(key) if key and ticket.get(name) == value else None
            if isinstance(shown, str) and shown:
                return shown
        return None

    def custom_fields(self, before: list | None, after: list) -> dict:
        """The custom fields an edit of customFieldValues touched, in words, by uid:
        {"name": ..., "before": ..., "after": ...}; option values become their labels.
        `before` None means it could not be read: every field sent is listed, without
        "before"."""
        definitions = {d["uid"]: d for d in self.choices.custom_fields if d.get("uid")}
        old, new = _cf_data_by_uid(before or []), _cf_data_by_uid(after)
        uids = [*new, *(uid for uid in old if uid not in new)] if before is not None else new
        summary = {}
        for uid in uids:
            if before is not None and wire.equal(old.get(uid), new.get(uid)):
                continue
            definition = definitions.get(uid, {})
            words = {"after": _cf_text(definition, new.get(uid))}
            if definition.get("name"):
                words["name"] = str(definition["name"])
            if before is not None:
                words["before"] = _cf_text(definition, old.get(uid))
            summary[uid] = words
        return summary


def _cf_data_by_uid(items: list) -> dict:
    found = {}
    for item in items:
        if isinstance(item, dict) and (uid := wire.cf_id(item)) is not None:
            found[uid] = item.get("data", wire.cf_values(item))
    return found


def _cf_text(definition: dict, data) -> str:
    """A custom field's `data` as people read it: option labels, Yes/No, ", " between."""
    if data is None:
        return ""
    values = wire.cf_values({"data": data}) if isinstance(data, list) else [data]
    options = dict(option_pairs(definition))
    boolean = wire.cf_kind(definition) == "boolean"
    words = []
    for value in values:
        if value is None:
            continue
        if boolean:
            words.append("Yes" if str(value).lower() == "true" else "No")
        elif isinstance(value, dict | list):
            words.append(json.dumps(value, ensure_ascii=False, sort_keys=True))
        else:
            words.append(options.get(str(value), str(value)))
    if not words and data:  # a shape with no "value": shown as it is
        return json.dumps(data, ensure_ascii=False, sort_keys=True)
    return ", ".join(words)


def entry_changes(
    before: dict, body: dict, unreadable: frozenset[str], labels: Labeller | None = None
) -> dict:
    """Each sent field's before and after; a write-only field has no "before" (it could
    not be read), which is not the same as an empty one. Beside an id with a known name,
    its label ("before_label", "after_label"); for customFieldValues, the fields touched
    in words ("fields", see Labeller.custom_fields)."""
    labels = labels or Labeller()
    changes = {}
    for name, value in body.items():
        change = changes[name] = {"after": value}
        if name not in unreadable:
            change["before"] = before.get(name)
        for side in ("before", "after"):
            if side in change and (label := labels.label(name, change[side])):
                change[f"{side}_label"] = label
        if name == "customFieldValues" and isinstance(value, list):
            old = change.get("before") if "before" in change else None
            change["fields"] = labels.custom_fields(old if isinstance(old, list) else None, value)
    return changes


def _ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


@dataclass(frozen=True)
class HistoryItem:
    entry: AuditEntry
    outcome: str
    fields: list[str]  # labels of the fields the attempt changed
    changes: tuple[str, ...] = ()  # each change in words: "Priority: High → Urgent"
    revert_of_number: int | None = None  # the number of the entry this one reverts
    drift_of_number: int | None = None  # a change in Thena: the edit it overrode
    url: str = ""  # the entry's page

    @property
    def external(self) -> bool:
        return self.entry.action == Action.TICKET_EXTERNAL

    @property
    def html(self) -> str:
        """The entry as the history panel shows it (widgets.HISTORY_ITEM)."""
        return mark_safe(get_default_renderer().render(HISTORY_ITEM, {"item": self}))


HISTORY_SOURCES = {"dashboard": "Dashboard", "thena": "In Thena"}
# What the history panel reads of an entry (the rest, the PATCH body above all, is not
# fetched).
HISTORY_COLUMNS = (
    "id",
    "created_at",
    "action",
    "actor_username",
    "changes",
    "outcome",
    "message",
    "reason",
    "revert_of",
    "drift_of",
    "number",
)
_URL_MARK = 987654321


def audit_entry_urls() -> Callable[[int], str]:
    """A function giving an audit entry's page from its number, with one reverse() for
    every entry of a page: audit:detail is the number within fixed text."""
    head, tail = reverse("audit:detail", args=[_URL_MARK]).rsplit(str(_URL_MARK), 1)
    return lambda number: f"{head}{number}{tail}"


def ticket_history_list(
    *, user, ticket_id: str, limit: int = 10, source: str = ""
) -> list[HistoryItem]:
    """The ticket's latest audit entries that `user` may read, with their current outcome
    (local reads only), from one source (HISTORY_SOURCES) or all. Entries are kept by the
    team they were recorded under (the audit log's one rule, audit.queries.visible_to): a
    ticket that moved teams shows a user scoped to its new team none of what was done
    while it was in the old one."""
    entries = AuditEntry.objects.filter(visible_to(team_scope_get(user)))
    if source == "thena":
        entries = entries.filter(action=Action.TICKET_EXTERNAL)
    elif source == "dashboard":
        entries = entries.exclude(action=Action.TICKET_EXTERNAL)
    entries = entries.for_ticket(ticket_id).only(*HISTORY_COLUMNS).with_current_outcome()
    entries = list(entries[:limit])
    numbers, drifts = revert_numbers(entries), drift_numbers(entries)
    entry_url = audit_entry_urls()
    return [
        HistoryItem(
            entry,
            entry.current_outcome,
            [field_label(name) for name in entry.changes],
            tuple(change_lines(entry.changes, limit=HISTORY_TEXT)),
            numbers.get(entry.revert_of),
            drifts.get(entry.drift_of),
            entry_url(entry.number),
        )
        for entry in entries
    ]


def write_only_seen(ticket_id: str) -> list[TicketFieldSeen]:
    """What Thena's events last showed of the ticket's write-only fields."""
    return list(TicketFieldSeen.objects.filter(ticket_id=ticket_id))


# -- reverting ---------------------------------------------------------------------------
# A revert is an edit like any other (lock, re-read, only the reverted fields sent, the
# outcome by evidence), whose page "saw" the values the entry set: a field that moved on
# since the entry is then a conflict, shown three ways before anything is sent.

REVERT_SALT = "tickets.revert.v1"
REVERT_CHOICES = tuple(choice for choice, _ in RESOLUTIONS)
NOT_SETTLED = (
    "Whether this change reached Thena is not known yet (its outcome is “{outcome}”), so "
    "it cannot be reverted until it is settled."
)
NOT_APPLIED = {
    Outcome.FAILED: "This change was not applied (it failed): there is nothing to revert.",
    Outcome.CONFLICT: "Nothing was sent for this attempt (a conflict): there is nothing to revert.",
    Outcome.DENIED: "This attempt was refused, so nothing changed: there is nothing to revert.",
}
REVERT_WRITE_ONLY = (
    "Thena does not return this value, so what it held before is unknown: it cannot be reverted."
)
REVERT_CUSTOM_UNREAD = (
    "These values were not read in a shape that can be written back, so what they were "
    "before is unknown: they cannot be reverted."
)
REVERT_NO_VALUE = "This asks Thena to do something rather than set a value: nothing to put back."
REVERT_UNKNOWN_FIELD = "This is not a field thena-admin edits, so it cannot be reverted here."
REVERT_CUSTOM_NOT_EXACT = (
    "Thena now sends this ticket's custom field values in a shape that cannot be written "
    "back exactly, so custom fields cannot be reverted here. Nothing was sent."
)


@dataclass(frozen=True)
class RevertField:
    """One thing an entry changed that a revert puts back: a field (its PATCH name) or one
    custom field (cf__<uid>). Values as edits hold them: PATCH JSON, or a custom field's
    `data` list (None: the ticket had no item for it)."""

    name: str
    label: str
    before: object  # what a revert sends
    after: object  # what the entry set
    before_text: str = ""  # `before` in words, for the page
    refusal: str = ""  # why this one cannot be reverted; "" when it can


@dataclass(frozen=True)
class RevertPlan:
    """What reverting an entry would do, for `user`; local reads only."""

    entry: AuditEntry
    outcome: str  # the entry's current outcome
    fields: list[RevertField]
    refusal: str = ""  # why the entry cannot be reverted at all; "" when it can

    @property
    def revertable(self) -> list[RevertField]:
        return [] if self.refusal else [f for f in self.fields if not f.refusal]


class RevertRefused(Exception):
    """A revert that cannot be made; the message says why. Nothing was sent."""


@dataclass(frozen=True)
class RevertRow:
    """A field that changed in Thena since the entry: what the entry set (original), what
    Thena holds now (theirs), what the revert would send (yours)."""

    name: str
    label: str
    original: object
    theirs: object
    yours: object
    choice: str = "yours"  # the choice made before, when the user confirmed already


class RevertConflict(Exception):
    """Fields to revert changed in Thena since the entry: nothing was sent (a "conflict"
    entry records the attempt). `token` signs what Thena held then, for the confirmation;
    `also` are the labels of the other fields the revert puts back."""

    def __init__(self, *, rows, also, fresh, choices, entry, token):
        super().__init__(", ".join(row.name for row in rows))
        self.rows = rows
        self.also = also
        self.fresh = fresh
        self.choices = choices
        self.entry = entry
        self.token = token


@dataclass(frozen=True)
class RevertResult:
    update: UpdateResult
    plan: RevertPlan
    reverted: list[str]  # labels of the fields sent back
    held: list[str]  # labels of fields Thena already held as before the entry: not sent
    kept_upstream: list[str]  # labels of other fields changed in Thena meanwhile

    @property
    def entry(self) -> AuditEntry | None:
        return self.update.entry


def revert_plan(*, user, number: int) -> RevertPlan:
    """The entry `number` as `user` may revert it: AuditEntry.DoesNotExist when they
    cannot read it (audit.queries.visible_to). `refusal` says why the whole entry cannot
    be reverted (not a ticket edit, not succeeded, no permission, out of scope), each
    field's `refusal` why that one cannot (write-only, nothing to put back)."""
    scope = team_scope_get(user)
    entry = AuditEntry.objects.filter(visible_to(scope)).with_current_outcome().get(number=number)
    outcome = entry.current_outcome
    fields = _revert_fields(entry) if entry.action == Action.TICKET_UPDATE else []
    refusal = ""
    if entry.action != Action.TICKET_UPDATE or not entry.ticket_id:
        refusal = "Only ticket edits can be reverted."
    elif outcome in NOT_APPLIED:
        refusal = NOT_APPLIED[outcome]
    elif outcome != Outcome.SUCCEEDED:
        refusal = NOT_SETTLED.format(outcome=outcome)
    elif not user.has_perm("tickets.edit_ticket"):
        refusal = "Reverting a change needs the permission to edit tickets."
    elif not in_scope(user, entry.team_id) or not in_scope(
        user, cache.get(_ticket_team_key(entry.ticket_id), entry.team_id)
    ):
        refusal = "This ticket is not in your teams now, so it cannot be changed from here."
    elif not any(not f.refusal for f in fields):
        refusal = "None of the fields this entry changed can be reverted."
    return RevertPlan(entry, outcome, fields, refusal)


def _revert_fields(entry: AuditEntry) -> list[RevertField]:
    """The entry's changes as revertable fields, in the form's order; customFieldValues
    becomes one field per custom field it changed."""
    changes = entry.changes if isinstance(entry.changes, dict) else {}
    specs = schema.field_map()
    order = {name: index for index, name in enumerate(specs)}
    found = []
    for name in sorted(changes, key=lambda name: (order.get(name, len(order)), name)):
        change = changes[name] if isinstance(changes[name], dict) else {}
        spec = specs.get(name)
        before, after = change.get("before"), change.get("after")
        label = spec.label if spec else name
        if name == "customFieldValues" and "before" in change:
            found += _revert_custom_fields(entry, change)
            continue
        refusal = ""
        if spec is None:
            refusal = REVERT_UNKNOWN_FIELD
        elif not schema.holds_value(spec):
            refusal = REVERT_NO_VALUE
        elif "before" not in change:
            refusal = REVERT_CUSTOM_UNREAD if name == "customFieldValues" else REVERT_WRITE_ONLY
        text = change.get("before_label") or _revert_text(before)
        found.append(RevertField(name, label, before, after, text, refusal))
    return found


def _revert_custom_fields(entry: AuditEntry, change: dict) -> list[RevertField]:
    """One field per custom field whose data differs between the lists before and after;
    names as recorded with the entry, else as the cached choices have them, else the uid."""
    old = _cf_data_by_uid(change.get("before") or [])
    new = _cf_data_by_uid(change.get("after") or [])
    recorded = change.get("fields") if isinstance(change.get("fields"), dict) else {}
    cached = cache.get(_choices_key(entry.team_id))
    definitions = cached.custom_fields if isinstance(cached, Choices) else []
    found = []
    for uid in [*new, *(uid for uid in old if uid not in new)]:
        if wire.equal(old.get(uid), new.get(uid)):
            continue
        words = recorded.get(uid) if isinstance(recorded.get(uid), dict) else {}
        label = words.get("name") or input_label(definitions, CF_PREFIX + uid)
        text = words.get("before") or _revert_text(old.get(uid), True)
        found.append(
            RevertField(CF_PREFIX + uid, str(label), old.get(uid), new.get(uid), str(text))
        )
    return found


def _revert_text(value, custom: bool = False) -> str:
    if custom and isinstance(value, list):
        value = ", ".join(str(v) for v in wire.cf_values({"data": value}))
    if value in (None, "", [], {}):
        return "(empty)"
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def ticket_revert(
    *,
    user,
    number: int,
    fields: list[str] | None = None,
    reason: str = "",
    meta: audit.RequestMeta,
    choices: dict[str, str] | None = None,
    token: str = "",
) -> RevertResult:
    """Put back what entry `number` changed: every field it changed that can be
    reverted (`fields` None), or the ones named (input names: a PATCH field, cf__<uid>).

    The same path as an edit (_update_locked): lock, re-read, only the reverted fields
    sent, the new entry linked to the old one (`revert_of`) with the reason. The page it
    "saw" holds the values the entry set, so a field changed in Thena since is a
    RevertConflict and nothing is sent. Confirming one passes its `token` back with a
    choice per clashing field (`choices`: yours, the value before the entry; theirs, leave
    Thena's; original, the value the entry set)."""
    plan = revert_plan(user=user, number=number)
    entry = plan.entry
    if not user.has_perm("tickets.edit_ticket"):
        if entry.action == Action.TICKET_UPDATE and entry.ticket_id:
            ticket_update_deny(
                user=user, ticket_id=entry.ticket_id, meta=meta, team_id=entry.team_id or None
            )
        raise PermissionDenied("You may view tickets but not edit them.")
    if plan.refusal:
        raise RevertRefused(plan.refusal)
    chosen = _revert_chosen(plan, fields)
    if settings.THENA_REQUIRE_REASON and not reason.strip():
        raise RevertRefused(REASON_REQUIRED)
    seen_then = _revert_token_load(token, entry, chosen) if token else {}
    choices = choices or {}
    edits, seen = {}, {}
    for target in chosen:
        choice = (choices.get(target.name) or "yours") if target.name in seen_then else "yours"
        if choice not in REVERT_CHOICES:
            raise RevertRefused(f"Choose which {target.label} to keep.")
        if choice == "theirs":
            continue
        edits[target.name] = target.before if choice == "yours" else target.after
        seen[target.name] = seen_then.get(target.name, target.after)
    if not edits:
        nothing = UpdateResult(entry=None, ticket={}, sent={}, kept_upstream=[])
        return RevertResult(nothing, plan, [], [], [])
    edit = ticket_edit_load(user=user, ticket_id=entry.ticket_id)
    if edits_split(edits)[1] and not wire.cf_exact(edit.ticket):
        raise RevertRefused(REVERT_CUSTOM_NOT_EXACT)
    snapshot = Snapshot(_revert_seen_ticket(edit.ticket, seen))
    intent = Intent(reason=reason, revert_of=entry.id)
    try:
        with locks.ticket_edit_lock(edit.ticket_id):
            result = _update_locked(user, edit, snapshot, edits, meta, intent)
    except Conflict as conflict:
        raise _revert_conflict(conflict, entry, chosen, seen_then, choices, edit) from None
    return _revert_result(result, plan, chosen, edits)


def _revert_chosen(plan: RevertPlan, names: list[str] | None) -> list[RevertField]:
    if names is None:
        return plan.revertable
    by_name = {f.name: f for f in plan.fields}
    chosen = []
    for name in dict.fromkeys(names):
        target = by_name.get(name)
        if target is None:
            raise RevertRefused(f"Entry #{plan.entry.number} did not change that field.")
        if target.refusal:
            raise RevertRefused(f"{target.label}: {target.refusal}")
        chosen.append(target)
    return chosen


def _revert_seen_ticket(ticket: dict, seen: dict) -> dict:
    """`ticket` as it reads had it held `seen` (input name -> value as edits hold it). The
    display name beside an id seen is dropped: it names the id the ticket holds now."""
    values, custom = edits_split(seen)
    shown = {**ticket, **values}
    for name in values:
        shown.pop(CURRENT_LABELS.get(name, ""), None)
    if custom:
        shown["customFieldValues"] = wire.cf_merge(wire.cf_items(ticket), custom)
    return shown


def _revert_token_load(token: str, entry: AuditEntry, chosen: list[RevertField]) -> dict:
    """What Thena held of each clashing field when the three-way view was shown."""
    try:
        data = signing.loads(token, salt=REVERT_SALT)
    except signing.BadSignature:
        raise RevertRefused(
            "This confirmation was changed outside the page or comes from another server. "
            "Start the revert again from the entry."
        ) from None
    if data.get("e") != entry.id or data.get("f") != [f.name for f in chosen]:
        raise RevertRefused(
            "This confirmation belongs to another revert. Start again from the entry."
        )
    return data.get("s") or {}


def _revert_conflict(
    conflict: Conflict,
    entry: AuditEntry,
    chosen: list[RevertField],
    seen_then: dict,
    choices: dict,
    edit: TicketEdit,
) -> RevertConflict:
    """The three-way view of every field that clashed now or at an earlier confirmation,
    with Thena's values now; the token keeps those values as what the user saw."""
    theirs = input_reader(conflict.fresh, wire.ticket_values(conflict.fresh))
    clashing = set(seen_then) | {f.name for f in conflict.fields}
    labels = edit.choices.custom_fields
    rows = [
        RevertRow(
            f.name,
            input_label(labels, f.name),
            f.after,
            theirs(f.name),
            f.before,
            choices.get(f.name) if choices.get(f.name) in REVERT_CHOICES else "yours",
        )
        for f in chosen
        if f.name in clashing
    ]
    also = [input_label(labels, f.name) for f in chosen if f.name not in clashing]
    token = signing.dumps(
        {"e": entry.id, "f": [f.name for f in chosen], "s": {r.name: r.theirs for r in rows}},
        salt=REVERT_SALT,
        compress=True,
    )
    return RevertConflict(
        rows=rows,
        also=also,
        fresh=conflict.fresh,
        choices=edit.choices,
        entry=conflict.entry,
        token=token,
    )


def _revert_result(
    result: UpdateResult, plan: RevertPlan, chosen: list[RevertField], edits: dict
) -> RevertResult:
    """Which fields went back, and which Thena held as before the entry already."""
    sent = set(result.sent) - {"customFieldValues"}
    if result.entry is not None:
        change = result.entry.changes.get("customFieldValues")
        if isinstance(change, dict):
            old = _cf_data_by_uid(change.get("before") or [])
            new = _cf_data_by_uid(change.get("after") or [])
            sent |= {
                CF_PREFIX + uid
                for uid in old.keys() | new.keys()
                if not wire.equal(old.get(uid), new.get(uid))
            }
    reverted = [f.label for f in chosen if f.name in edits and f.name in sent]
    held = [f.label for f in chosen if f.name in edits and f.name not in sent]
    ours = {field_label(f.name) for f in chosen}
    if any(f.name.startswith(CF_PREFIX) for f in chosen):
        ours.add(field_label("customFieldValues"))
    kept = [label for label in result.kept_upstream if label not in ours]
    return RevertResult(result, plan, reverted, held, kept)
