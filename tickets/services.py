"""Use cases. The only callers of the Thena client (house-style §1)."""

import time
from dataclasses import dataclass
from urllib.parse import urlencode

from django.core.cache import cache
from django.db import connection
from django.utils.dateparse import parse_datetime

from .thena.client import get_client
from .thena.errors import ThenaError

PAGE_SIZE = 25
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
    return _cached("teams", get_client().teams)


def _row(ticket: dict) -> dict:
    updated = ticket.get("updatedAt")
    return {**ticket, "updated": parse_datetime(updated) if isinstance(updated, str) else None}


def ticket_list(*, team_id: str = "", query: str = "", page: int = 1) -> TicketPage:
    """One page of tickets, from the list endpoint or, with a query, from search."""
    page = max(page, 1)
    client = get_client()
    try:
        teams = teams_list()
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
