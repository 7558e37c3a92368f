"""The ticket list as a triage tool: filters, sort and paging through Thena's search
(thena-api.md §4.3), so a page costs one upstream call, and every match is counted.

Thena documents the search parameters but not its index. What this module assumes, and
the sandbox imitates: documents carry the ticket's own fields (statusId, priorityId,
typeId, assignedAgentId, assignedAgentEmail, subTeamId, teamId, updatedAt, createdAt),
`filter_by` takes Typesense's syntax, a missing assignee matches `null`, `updatedAt`
compares with an ISO date-time, and `_eval()` ranks in `sort_by`.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from django.db import connection, transaction
from django.http import QueryDict

from .forms import Choices
from .models import SavedView
from .services import NO_TEAMS, _datetime, team_choices_load_many, team_list, team_scope_get
from .thena.client import get_client, start_concurrently
from .thena.errors import ThenaError

PAGE_SIZE = 25
# Text search covers the title, description, identifier, requester and assignee.
QUERY_BY = (
    "title,description,ticketIdentifier,requestorEmail,customerContactFirstName,"
    "customerContactLastName,customerContactEmail,assignedAgent,assignedAgentEmail"
)
# What a row shows: a hit carries these only (a full document is ten times the size).
INCLUDE_FIELDS = "id,ticketIdentifier,title,status,priority,assignedAgent,teamId,teamName,updatedAt"
ME, NOBODY = "me", "none"
UPDATED_WITHIN = {
    "1h": ("the last hour", timedelta(hours=1)),
    "24h": ("the last 24 hours", timedelta(days=1)),
    "7d": ("the last 7 days", timedelta(days=7)),
    "30d": ("the last 30 days", timedelta(days=30)),
}
SORTS = {
    "updated": "Recently updated",
    "updated_asc": "Least recently updated",
    "created": "Newest",
    "created_asc": "Oldest",
    "priority": "Priority, highest first",
    "status": "Status",
}
DEFAULT_SORT = "updated"
# Priorities ranked by their usual names (Thena's defaults); others rank below them.
PRIORITY_RANKS = {"urgent": 4, "high": 3, "medium": 2, "low": 1}
# A filter value from a URL: longer than any id or name is no id or name.
VALUE_MAX = 100


@dataclass(frozen=True)
class TicketFilter:
    """What the list shows, as its URL says: everything a view or a shared link holds."""

    team: str = ""
    q: str = ""
    status: str = ""  # a status name, matched in every team shown
    priority: str = ""  # a priority name
    type: str = ""  # a type name
    assignee: str = ""  # a member id, ME or NOBODY
    subteam: str = ""  # a sub-team id
    updated: str = ""  # a key of UPDATED_WITHIN
    sort: str = DEFAULT_SORT  # a key of SORTS

    @classmethod
    def from_query(cls, data) -> "TicketFilter":
        def one(name: str, limit: int = VALUE_MAX) -> str:
            value = data.get(name, "")
            return value.strip()[:limit] if isinstance(value, str) else ""

        updated, sort = one("updated"), one("sort")
        return cls(
            team=one("team"),
            q=one("q", 200),
            status=one("status"),
            priority=one("priority"),
            type=one("type"),
            assignee=one("assignee"),
            subteam=one("subteam"),
            updated=updated if updated in UPDATED_WITHIN else "",
            sort=sort if sort in SORTS else DEFAULT_SORT,
        )

    def items(self) -> list[tuple[str, str]]:
        """The parameters that differ from the defaults, in a fixed order."""
        return [
            (f.name, getattr(self, f.name))
            for f in fields(self)
            if getattr(self, f.name) != f.default
        ]

    def query_string(self, page: int = 1) -> str:
        return urlencode(self.items() + ([("page", page)] if page > 1 else []))

    @property
    def sort_label(self) -> str:
        return SORTS[self.sort]

    @property
    def narrowed(self) -> bool:
        """Whether anything but the team and the order limits the list."""
        return any(name not in ("team", "sort") for name, _ in self.items())

    def without_team(self) -> "TicketFilter":
        return replace(self, team="")


@dataclass(frozen=True)
class FilterOptions:
    """What the filter controls offer: names across the teams shown, members and
    sub-teams by id."""

    statuses: list[str] = field(default_factory=list)
    priorities: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    assignees: list[tuple[str, str]] = field(default_factory=list)
    sub_teams: list[tuple[str, str]] = field(default_factory=list)
    updated: list[tuple[str, str]] = field(
        default_factory=lambda: [(key, label) for key, (label, _) in UPDATED_WITHIN.items()]
    )
    sorts: list[tuple[str, str]] = field(default_factory=lambda: list(SORTS.items()))


@dataclass(frozen=True)
class TicketPage:
    tickets: list[dict]
    teams: list[dict]
    filter: TicketFilter
    page: int  # 1-based, as shown to people
    found: int = 0  # matches in all
    options: FilterOptions = field(default_factory=FilterOptions)
    error: str = ""
    last_page: int = 1

    @property
    def has_next(self) -> bool:
        return self.page < self.last_page

    @property
    def beyond_end(self) -> bool:
        return self.page > self.last_page

    @property
    def prev_query(self) -> str:
        return self.filter.query_string(self.page - 1)

    @property
    def next_query(self) -> str:
        return self.filter.query_string(self.page + 1)

    @property
    def last_query(self) -> str:
        return self.filter.query_string(self.last_page)


class NoSuchValue(Exception):
    """A filter names a status, priority or type no team shown has: nothing can match."""


@dataclass(frozen=True)
class Names:
    """Each list's names (as shown, in the teams' order) and the ids each name stands for
    across the teams shown."""

    labels: dict[str, list[str]]
    ids: dict[str, dict[str, list[str]]]

    @classmethod
    def of(cls, choice_sets: list[Choices]) -> "Names":
        labels: dict[str, list[str]] = {}
        ids: dict[str, dict[str, list[str]]] = {}
        for kind in ("statuses", "priorities", "types"):
            seen: dict[str, list[str]] = {}
            shown: list[str] = []
            for choices in choice_sets:
                for choice_id, label in getattr(choices, kind):
                    key = label.casefold()
                    if key not in seen:
                        seen[key] = []
                        shown.append(label)
                    seen[key].append(choice_id)
            labels[kind], ids[kind] = shown, seen
        return cls(labels, ids)

    def lookup(self, kind: str, name: str, noun: str) -> list[str]:
        found = self.ids[kind].get(name.casefold())
        if not found:
            raise NoSuchValue(f"No {noun} is called “{name}” here, so no ticket matches.")
        return found


def _quoted(value: str) -> str:
    # Typesense has no escape inside backticks: an id or name never holds one.
    return "`" + value.replace("`", "") + "`"


def _any_of(name: str, values: list[str]) -> str:
    return f"{name}:=[{','.join(_quoted(v) for v in values)}]"


def search_params(flt: TicketFilter, names: Names, *, email: str) -> dict:
    """The search that lists `flt`: q, filter_by and sort_by. Raises NoSuchValue when
    nothing can match."""
    clauses = []
    if flt.team:
        clauses.append(f"teamId:={_quoted(flt.team)}")
    for kind, param, thena_field, noun in (
        ("statuses", "status", "statusId", "status"),
        ("priorities", "priority", "priorityId", "priority"),
        ("types", "type", "typeId", "type"),
    ):
        if value := getattr(flt, param):
            clauses.append(_any_of(thena_field, names.lookup(kind, value, noun)))
    if flt.assignee == ME:
        if not email:
            raise NoSuchValue("Your account has no email address to match an assignee by.")
        clauses.append(f"assignedAgentEmail:={_quoted(email)}")
    elif flt.assignee == NOBODY:
        clauses.append("assignedAgentId:=null")
    elif flt.assignee:
        clauses.append(f"assignedAgentId:={_quoted(flt.assignee)}")
    if flt.subteam:
        clauses.append(f"subTeamId:={_quoted(flt.subteam)}")
    if flt.updated:
        since = datetime.now(UTC) - UPDATED_WITHIN[flt.updated][1]
        clauses.append(f"updatedAt:>={since.isoformat(timespec='seconds').replace('+00:00', 'Z')}")
    return {
        "q": flt.q or "*",
        "filter_by": " && ".join(clauses),
        "sort_by": _sort_by(flt.sort, names),
    }


def _sort_by(sort: str, names: Names) -> str:
    if sort in ("priority", "status"):
        kind, field_name = {
            "priority": ("priorities", "priorityId"),
            "status": ("statuses", "statusId"),
        }[sort]
        labels = names.labels[kind]
        if sort == "priority":
            ranked = [
                (PRIORITY_RANKS[label.casefold()], label)
                for label in labels
                if label.casefold() in PRIORITY_RANKS
            ]
        else:  # the teams' own order: Open before In progress before Closed
            ranked = [(len(labels) - index, label) for index, label in enumerate(labels)]
        rules = [
            f"({_any_of(field_name, names.ids[kind][label.casefold()])}):{rank}"
            for rank, label in ranked
        ]
        if rules:
            return f"_eval([{','.join(rules)}]):desc,updatedAt:desc"
        return "updatedAt:desc"
    return {
        "updated_asc": "updatedAt:asc",
        "created": "createdAt:desc",
        "created_asc": "createdAt:asc",
    }.get(sort, "updatedAt:desc")


def _options(names: Names, choice_sets: list[Choices]) -> FilterOptions:
    def merged(kind: str) -> list[tuple[str, str]]:
        return list({key: label for c in choice_sets for key, label in getattr(c, kind)}.items())

    return FilterOptions(
        statuses=names.labels["statuses"],
        priorities=names.labels["priorities"],
        types=names.labels["types"],
        assignees=merged("members"),
        sub_teams=merged("sub_teams"),
    )


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


def teams_shown(user, flt: TicketFilter) -> tuple[list[dict], TicketFilter]:
    """The teams the user may pick, and the filter with a team the user may see: a user
    scoped to some teams sees one of them at a time (the first, unless chosen)."""
    teams = team_list()
    scope = team_scope_get(user)
    if scope is not None:
        teams = [team for team in teams if team["id"] in scope]
        if flt.team not in scope:
            flt = replace(flt, team=teams[0]["id"] if teams else "")
    return teams, flt


def ticket_list_start(
    *, user, flt: TicketFilter, page: int = 1
) -> tuple[TicketPage, Callable[[], TicketPage]]:
    """One page of the tickets `flt` matches, from one search call (the teams and their
    choices come from the cache), in two steps: the page as known before the search (its
    teams, filter and options; no tickets), and a function that waits for the search,
    sent now, and gives the whole page, meanwhile the caller does what needs no answer.
    When the search fails, the page says why and keeps what the filters offer."""
    page = max(page, 1)
    try:
        teams, flt = teams_shown(user, flt)
        if not teams and team_scope_get(user) is not None:
            return _known(TicketPage([], [], flt, page, error=NO_TEAMS))
        team_ids = [flt.team] if flt.team else [team["id"] for team in teams]
        choice_sets = team_choices_load_many(team_ids)
    except ThenaError as error:
        return _known(TicketPage([], [], flt, page, error=error.user_message))
    names = Names.of(choice_sets)
    options = _options(names, choice_sets)
    known = {sub_id for sub_id, _ in options.sub_teams}
    if flt.subteam not in known and not any("sub-teams" in c.missing for c in choice_sets):
        flt = replace(flt, subteam="")  # another team's (the team just changed)
    shown = TicketPage([], teams, flt, page, options=options)
    try:
        params = search_params(flt, names, email=getattr(user, "email", "") or "")
    except NoSuchValue as error:
        return _known(replace(shown, error=str(error)))
    client = get_client()
    # The search runs in a worker thread, which reads this process's copy of Thena's
    # rate-limit pause: bring that up to date from the shared cache first.
    client.paused_until()
    answer = start_concurrently(
        {
            "search": lambda: client.search_tickets(
                params["q"],
                query_by=QUERY_BY,
                filter_by=params["filter_by"],
                sort_by=params["sort_by"],
                include_fields=INCLUDE_FIELDS,
                page=page,
                per_page=PAGE_SIZE,
            )
        }
    )

    def finish() -> TicketPage:
        result = answer()["search"]
        if isinstance(result, ThenaError):
            return replace(shown, error=result.user_message)
        rows = [_row(t) for t in result.items if isinstance(t, dict)]
        last_page = max(1, math.ceil(result.found / PAGE_SIZE))
        return replace(shown, tickets=rows, found=result.found, last_page=last_page)

    return shown, finish


def _known(page: TicketPage) -> tuple[TicketPage, Callable[[], TicketPage]]:
    return page, lambda: page


# -- saved views ------------------------------------------------------------------------

VIEWS_MAX = 50  # saved views per user


@dataclass(frozen=True)
class ViewLink:
    name: str
    query: str
    current: bool
    pk: int | None = None  # a saved view's id; built-in views have none


def view_links(user, page: TicketPage) -> list[ViewLink]:
    """The built-in views (Mine, Unassigned, Urgent) within the team shown, then the
    user's own; the one the list shows now is `current`."""
    team = TicketFilter(team=page.filter.team)
    urgent = next((p for p in page.options.priorities if p.casefold() == "urgent"), "Urgent")
    built_in = [
        ("Mine", replace(team, assignee=ME).query_string()),
        ("Unassigned", replace(team, assignee=NOBODY).query_string()),
        ("Urgent", replace(team, priority=urgent).query_string()),
    ]
    shown = page.filter.query_string()
    links = [ViewLink(name, query, query == shown) for name, query in built_in]
    with connection.cursor() as cursor:  # every list page: a plain statement, not a QuerySet
        cursor.execute(
            f"SELECT id, name, query FROM {SavedView._meta.db_table} WHERE owner_id = %s"
            " ORDER BY name, id",
            [user.pk],
        )
        links += [ViewLink(name, query, query == shown, pk) for pk, name, query in cursor]
    return links


class TooManyViews(Exception):
    pass


def saved_view_save(*, user, name: str, query: str) -> SavedView:
    """Keeps `query` (read as a list URL would be, so only its filter is kept) under
    `name`, replacing the user's view of that name."""
    flt = TicketFilter.from_query(QueryDict(query))
    with transaction.atomic():
        exists = SavedView.objects.filter(owner=user, name=name).exists()
        if not exists and SavedView.objects.filter(owner=user).count() >= VIEWS_MAX:
            raise TooManyViews(f"You can keep at most {VIEWS_MAX} views: delete one first.")
        view, _ = SavedView.objects.update_or_create(
            owner=user, name=name, defaults={"query": flt.query_string()}
        )
    return view


def saved_view_delete(*, user, pk: int) -> bool:
    deleted, _ = SavedView.objects.filter(owner=user, pk=pk).delete()
    return bool(deleted)
