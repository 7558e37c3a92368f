"""ThenaClient: the only door to the Thena REST API (house-style §4).

One pooled httpx.Client, timeouts always, the API key in a default header and
nowhere else. Every call goes through `_request`, which unwraps the envelope, keeps
the rate-limit headers, retries what is safe to retry and turns every failure into
the hierarchy in errors.py.
"""

import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar, copy_context
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import structlog
from django.conf import settings

from .. import metrics
from ..observability import current_request_id
from . import schema
from .errors import (
    ThenaAuthError,
    ThenaError,
    ThenaNotFound,
    ThenaRateLimited,
    ThenaTimeout,
    ThenaUnavailable,
    ThenaValidationError,
)
from .ratelimit import SIDE_BY_SIDE, SharedPause

logger = logging.getLogger("tickets.thena")

USER_AGENT = "thena-admin/0.1"
SANDBOX_BASE_URL = "http://sandbox.invalid"
MAX_BACKOFF = 8.0  # seconds: the longest pause between two retries
_DETAIL_LIMIT = 300
_LOOKUP_PAGE = 100
_LOOKUP_MAX_PAGES = 20
# Never reached the server, so even a PATCH may be sent again.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Less time than this left in the request's budget is too little to send anything.
_MIN_ATTEMPT_SECONDS = 0.05
_BUDGET_SPENT = "the request's time budget for Thena is spent"
_ODD_WRITE_ANSWER = (
    "Thena answered the change in a way we did not expect, so it may or may not have been "
    "saved: reload the ticket to check before trying again."
)

# One deadline (a time.monotonic() value) for every Thena call of the current HTTP
# request, retries included; None: no deadline. Set by request_budget().
_deadline: ContextVar[float | None] = ContextVar("thena_deadline", default=None)


@contextlib.contextmanager
def request_budget(seconds: float | None) -> Iterator[None]:
    """Thena calls in this block end within `seconds` from now (None: no new limit).
    Nested budgets keep the earlier deadline; the previous one is restored on exit."""
    deadline = _deadline.get()
    if seconds is not None:
        mine = time.monotonic() + seconds
        deadline = mine if deadline is None else min(deadline, mine)
    token = _deadline.set(deadline)
    try:
        yield
    finally:
        _deadline.reset(token)


def budget_remaining() -> float | None:
    """Seconds left of the current budget (may be <= 0); None when there is none."""
    deadline = _deadline.get()
    return None if deadline is None else deadline - time.monotonic()


# Shared by every request of the process, so lookups in flight stay well under the
# pool's max_connections however many requests want them at once.
_side_by_side = ThreadPoolExecutor(max_workers=10, thread_name_prefix="thena")


def concurrently[T](calls: dict[str, Callable[[], T]]) -> dict[str, T | ThenaError]:
    """Run `calls` at the same time, each in a copy of the caller's context (so the
    request's budget holds in the worker threads). A call's ThenaError is its result;
    any other exception is raised. The calls must not use the database: a worker thread
    would open a connection of its own and never close it."""
    return start_concurrently(calls)()


def start_concurrently[T](
    calls: dict[str, Callable[[], T]],
) -> Callable[[], dict[str, T | ThenaError]]:
    """`concurrently`, without waiting: the calls start now, and the function returned
    waits for their results (the caller does other work meanwhile)."""
    futures = {
        name: _side_by_side.submit(copy_context().run, _side_by_side_call, call)
        for name, call in calls.items()
    }

    def results() -> dict[str, T | ThenaError]:
        done: dict[str, T | ThenaError] = {}
        for name, future in futures.items():
            try:
                done[name] = future.result()
            except ThenaError as error:
                done[name] = error
        return done

    return results


def _side_by_side_call[T](call: Callable[[], T]) -> T:
    SIDE_BY_SIDE.set(True)  # in the worker's copy of the context only
    return call()


@dataclass(frozen=True)
class RateLimit:
    """The X-RateLimit-* headers of the latest answer (thena-api.md §1)."""

    limit: int | None
    remaining: int | None
    reset_at: datetime | None
    ip: str = ""
    user_id: str = ""
    org_id: str = ""
    path: str = ""

    @classmethod
    def from_headers(cls, headers: httpx.Headers) -> "RateLimit | None":
        if not any(key.lower().startswith("x-ratelimit-") for key in headers):
            return None
        return cls(
            limit=_int(headers.get("x-ratelimit-limit")),
            remaining=_int(headers.get("x-ratelimit-remaining")),
            reset_at=_moment(headers.get("x-ratelimit-reset")),
            ip=headers.get("x-ratelimit-ip", ""),
            user_id=headers.get("x-ratelimit-userid", ""),
            org_id=headers.get("x-ratelimit-orgid", ""),
            path=headers.get("x-ratelimit-path", ""),
        )


@dataclass(frozen=True)
class SearchPage:
    found: int
    items: list[dict]
    page: int


@dataclass(frozen=True)
class BulkUpdate:
    """Thena's answer to a bulk update (thena-api.md §10), for the ids asked about: the
    ones it changed, and the ones it left as they were, with its reason. An id in
    neither was not reported, so its outcome is unknown."""

    updated: frozenset[str]
    skipped: dict[str, str]  # id -> reason


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _int(value: str | None) -> int | None:
    number = _number(value)
    return int(number) if number is not None else None


def _moment(unix_seconds: str | None) -> datetime | None:
    number = _number(unix_seconds)
    try:
        return datetime.fromtimestamp(number, UTC) if number is not None else None
    except (OverflowError, OSError, ValueError):
        return None


def _id(value: str) -> str:
    """A path segment: ids are quoted, so "a/b" cannot reach another route. "." and ".."
    would be resolved away, so no id is either: nothing is sent for them."""
    if str(value) in (".", ".."):
        raise ThenaNotFound(detail="not sent: no id is a dot segment")
    return quote(str(value), safe="")


# Thena routes these under /v1/tickets/ itself (thena-api.md §4.3, §4.4, §5), matching
# any case: no ticket has one as its id, and asking would call a lookup or a bulk update.
_TICKET_PATH_WORDS = frozenset(
    {"status", "priority", "type", "sentiment", "bulk", "search-tickets"}
)


def _ticket_id(value: str) -> str:
    if str(value).lower() in _TICKET_PATH_WORDS:
        raise ThenaNotFound(detail="not sent: no ticket has this id")
    return _id(value)


# Per-call logs and metrics, and the request id, for `_request`

calls_log = structlog.stdlib.get_logger("tickets.thena")
# The fixed segments of the paths the client calls; any other segment is an id.
_PATH_WORDS = frozenset(
    {"v1", "tickets", "status", "priority", "type", "sentiment", "bulk", "teams", "sub-teams"}
    | {"members", "accounts", "search", "forms", "custom-field", "swagger-json"}
)


def _path_template(path: str) -> str:
    """`/v1/tickets/abc` -> `/v1/tickets/{id}`: a metric label with no ids in it."""
    return "/".join(part if part in _PATH_WORDS or not part else "{id}" for part in path.split("/"))


def _request_id_header() -> dict[str, str] | None:
    request_id = current_request_id()
    return {"X-Request-ID": request_id} if request_id else None


def _note_call(method: str, path: str, status: int | str, started: float, attempt: int) -> None:
    """One log line and the metrics of one HTTP request to Thena. `path` has no query,
    so nothing sent as a parameter is logged."""
    seconds = time.monotonic() - started
    template = _path_template(path)
    metrics.THENA_CALL_SECONDS.labels(method, template, str(status)).observe(seconds)
    metrics.THENA_CALLS.labels(method, template, str(status)).inc()
    if status == 429:
        metrics.THENA_RATE_LIMITED.labels(method, template).inc()
    calls_log.info(
        "thena_call",
        method=method,
        path=path,
        status=status,
        ms=round(seconds * 1000),
        attempt=attempt + 1,
    )


class ThenaClient:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        max_retries: int = 3,
        backoff: float = 0.5,
        max_rate_limit_wait: float = 10.0,
        sleep: Callable[[float], Any] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        # Matched in any case: an upstream may echo the key upper- or lower-cased.
        self._api_key_re = re.compile(re.escape(api_key), re.IGNORECASE) if api_key else None
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_rate_limit_wait = max_rate_limit_wait
        self._sleep = sleep
        self.rate_limit: RateLimit | None = None
        self._pause = SharedPause(self.base_url)  # shared by every process (ratelimit.py)
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"x-api-key": api_key, "Accept": "application/json", "User-Agent": USER_AGENT},
            timeout=httpx.Timeout(timeout, connect=min(3.0, timeout)),
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"<ThenaClient {self.base_url}>"

    def close(self) -> None:
        self._http.close()

    # Tickets

    def get_ticket(self, ticket_id: str) -> dict:
        return _dict(self._request("GET", f"/v1/tickets/{_ticket_id(ticket_id)}"))

    def list_tickets(
        self,
        *,
        team_id: str | None = None,
        page: int = 0,
        limit: int = 25,
        date_range: str | None = None,
    ) -> list[dict]:
        params = {"teamId": team_id, "page": page, "limit": limit, "dateRange": date_range}
        return _list(self._request("GET", "/v1/tickets", params=params))

    def search_tickets(
        self,
        q: str,
        *,
        team_id: str | None = None,
        filter_by: str = "",
        sort_by: str = "",
        page: int = 1,
        per_page: int = 25,
        query_by: str = "title,ticketIdentifier,description",
        include_fields: str = "",
    ) -> SearchPage:
        """One page of Thena's ticket search; `filter_by` and `sort_by` in Typesense's
        syntax, `team_id` a shorthand for one more filter clause, `include_fields` the
        fields each hit carries (all when empty)."""
        clauses = [f"teamId:={team_id}"] if team_id else []
        params = {
            "q": q or "*",
            "query_by": query_by,
            "filter_by": " && ".join(clauses + ([filter_by] if filter_by else [])) or None,
            "sort_by": sort_by or None,
            "include_fields": include_fields or None,
            "page": page,
            "per_page": per_page,
        }
        return _search_page(self._request("GET", "/v1/search/tickets", params=params), page)

    def update_ticket(self, ticket_id: str, body: dict) -> dict:
        """Sends `body` as given: the caller decides which fields change. Any 2xx answer
        that is not this ticket leaves the outcome unknown."""
        path = f"/v1/tickets/{_ticket_id(ticket_id)}"
        return self._request("PATCH", path, json=body, check=_is_ticket(ticket_id))

    def bulk_update_tickets(self, ticket_ids: list[str], fields: dict) -> BulkUpdate:
        """The same `fields` (statusId, typeId, priorityId, assignedAgentId, isPrivate) on
        every ticket of `ticket_ids`, in one PATCH /v1/tickets/bulk. Thena checks no
        versions there: whatever the tickets hold now is overwritten. A 2xx that is not
        the documented result leaves the outcome unknown, as for update_ticket."""
        if "ticketIds" in fields:
            raise ValueError("ticketIds is given as ticket_ids, not as a field")
        body = {"ticketIds": list(ticket_ids), **fields}
        data = self._request("PATCH", "/v1/tickets/bulk", json=body, check=_bulk_problem)
        asked = set(body["ticketIds"])
        # What Thena says about ids we did not ask for is no answer to this request.
        return BulkUpdate(
            updated=frozenset(item["id"] for item in data["updated"] if item["id"] in asked),
            skipped={
                item["id"]: self._redact(_reason(item))[:_DETAIL_LIMIT]
                for item in data["skipped"]
                if item["id"] in asked
            },
        )

    # Choices for the edit form

    def statuses(self, team_id: str) -> list[dict]:
        return _list(self._request("GET", "/v1/tickets/status", params={"teamId": team_id}))

    def priorities(self, team_id: str) -> list[dict]:
        return _list(self._request("GET", "/v1/tickets/priority", params={"teamId": team_id}))

    def types(self, team_id: str) -> list[dict]:
        return _list(self._request("GET", "/v1/tickets/type", params={"teamId": team_id}))

    def sentiments(self, team_id: str) -> list[dict]:
        # No REST list is documented; this path is a guess (thena-api.md §4.4).
        try:
            data = self._request("GET", "/v1/tickets/sentiment", params={"teamId": team_id})
        except ThenaNotFound:
            return []
        return _list(data)

    def teams(self) -> list[dict]:
        return _list(self._request("GET", "/v1/teams"))

    def team(self, team_id: str) -> dict:
        return _dict(self._request("GET", f"/v1/teams/{_id(team_id)}"))

    def sub_teams(self, team_id: str) -> list[dict]:
        return _list(self._request("GET", f"/v1/teams/{_id(team_id)}/sub-teams"))

    def team_members(self, team_id: str, *, search: str | None = None) -> list[dict]:
        path = f"/v1/teams/{_id(team_id)}/members"
        return _list(self._request("GET", path, params={"searchQuery": search}))

    def accounts(self, *, page: int = 0, limit: int = 50) -> list[dict]:
        return _list(self._request("GET", "/v1/accounts", params={"page": page, "limit": limit}))

    def account(self, account_id: str) -> dict:
        return _dict(self._request("GET", f"/v1/accounts/{_id(account_id)}"))

    def search_accounts(self, q: str, *, per_page: int = 20) -> list[dict]:
        params = {"q": q or "*", "query_by": "name,primaryDomain", "page": 1, "per_page": per_page}
        return _search_page(self._request("GET", "/v1/search/accounts", params=params), 1).items

    def forms(self, team_id: str) -> list[dict]:
        return self._all_pages("/v1/forms", {"teamId": team_id})

    def custom_fields(self, team_id: str) -> list[dict]:
        return self._all_pages("/v1/custom-field", {"teamId": team_id, "source": "ticket"})

    def paused_until(self) -> datetime | None:
        """The end of the rate-limit pause any process noted (ratelimit.py), or None."""
        return self._pause.until()

    def ping(self) -> None:
        """Proves that Thena answers and accepts the key; no retries, so it fails fast."""
        self._request("GET", "/v1/teams", retries=0)

    def spec(self) -> dict:
        """Thena's OpenAPI document (GET /swagger-json), as given; no retries, as ping.
        It has no envelope: `_unwrap` passes a bare object through."""

        def check(data: Any) -> str:
            openapi = isinstance(data, dict) and isinstance(data.get("paths"), dict)
            return "" if openapi else "expected an OpenAPI document"

        return self._request("GET", "/swagger-json", retries=0, check=check)

    def _all_pages(self, path: str, params: dict) -> list[dict]:
        # Lists carry no total: a short page is the last one (thena-api.md §4.2, §7.6).
        # A server that ignores `page` sends the same rows again: rows are kept once by
        # id, and a page with nothing new ends the list too (§10).
        items: dict[str, dict] = {}
        for page in range(_LOOKUP_MAX_PAGES):
            rows = _list(
                self._request("GET", path, params={**params, "page": page, "limit": _LOOKUP_PAGE})
            )
            new = {_row_key(row): row for row in rows if _row_key(row) not in items}
            items.update(new)
            if len(rows) < _LOOKUP_PAGE or not new:
                break
        return list(items.values())

    # The one private door

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict | None = None,
        json: Any = None,
        retries: int | None = None,
        check: Callable[[Any], str] | None = None,
    ) -> Any:
        """`check(data)` names what is wrong with a 2xx answer ("" when nothing is); a
        wrong answer to a write leaves its outcome unknown."""
        self._wait_out_rate_limit_pause(method, path, retries)
        retries = self.max_retries if retries is None else retries
        safe = method in _SAFE_METHODS
        query = {key: value for key, value in (params or {}).items() if value is not None}
        attempt = 0
        unknown = False  # an earlier attempt of this write may have been carried out
        while True:
            remaining = budget_remaining()
            if remaining is not None and remaining <= _MIN_ATTEMPT_SECONDS:
                logger.warning("Thena %s %s not sent: %s", method, path, _BUDGET_SPENT)
                raise ThenaTimeout(detail=_BUDGET_SPENT, outcome_unknown=unknown)
            cause: Exception | None = None
            started = time.monotonic()
            try:
                response = self._http.request(
                    method,
                    path,
                    params=query,
                    json=json,
                    timeout=self._timeout(remaining),
                    headers=_request_id_header(),
                )
            except httpx.HTTPError as exc:
                _note_call(method, path, type(exc).__name__, started, attempt)
                error = self._transport_error(exc, safe)
                unknown = unknown or error.outcome_unknown
                if attempt >= retries or not (safe or isinstance(exc, _NOT_SENT)):
                    logger.warning("Thena %s %s failed: %s", method, path, type(exc).__name__)
                    raise error from exc
                delay = self._backoff_delay(attempt)
                reason, cause = type(exc).__name__, exc
            else:
                _note_call(method, path, response.status_code, started, attempt)
                rate_limit = self._note_rate_limit(method, path, response)
                if response.is_success:
                    data = self._unwrap(response, safe)
                    problem = check(data) if check is not None else ""
                    if problem:
                        logger.warning(
                            "Thena %s %s answered %s: %s",
                            method,
                            path,
                            response.status_code,
                            problem,
                        )
                        raise self._odd_answer(response, problem, safe)
                    return data
                status = response.status_code
                if status == 429:
                    delay, retry_at = self._rate_limit_delay(rate_limit, attempt)
                    error = ThenaRateLimited(retry_at=retry_at, detail=self._detail(response))
                    if attempt >= retries or delay > self.max_rate_limit_wait:
                        logger.warning("Thena %s %s rate-limited until %s", method, path, retry_at)
                        raise error
                elif status >= 500 and safe and attempt < retries:
                    delay = self._backoff_delay(attempt)
                    error = self._status_error(response, safe)
                else:
                    error = self._status_error(response, safe)
                    logger.warning(
                        "Thena %s %s answered %s: %s", method, path, status, error.detail
                    )
                    raise error
                reason = str(status)
            remaining = budget_remaining()
            if remaining is not None and remaining - delay <= _MIN_ATTEMPT_SECONDS:
                # Waiting would leave no time for another attempt: give the last answer.
                logger.warning(
                    "Thena %s %s: %s, no time left in the request's budget to retry",
                    method,
                    path,
                    reason,
                )
                raise error from cause
            attempt += 1
            metrics.THENA_RETRIES.labels(method, _path_template(path)).inc()
            logger.info(
                "Thena %s %s: %s, retry %d of %d in %.1fs",
                method,
                path,
                reason,
                attempt,
                retries,
                delay,
            )
            self._sleep(delay)

    def _timeout(self, remaining: float | None) -> httpx.Timeout:
        """The client's timeouts, cut to what is left of the request's budget."""
        base = self._http.timeout
        if remaining is None:
            return base
        read = base.read if base.read is not None else remaining
        connect = base.connect if base.connect is not None else remaining
        return httpx.Timeout(min(read, remaining), connect=min(connect, remaining))

    def _backoff_delay(self, attempt: int) -> float:
        return min(self.backoff * 2**attempt, MAX_BACKOFF)

    def _rate_limit_delay(
        self, rate_limit: RateLimit | None, attempt: int
    ) -> tuple[float, datetime]:
        """How long to wait after a 429: until X-RateLimit-Reset (or, without one, the
        end of a pause another process noted), else back off."""
        now = datetime.now(UTC)
        reset_at = rate_limit.reset_at if rate_limit else None
        if reset_at is None:
            reset_at = self._pause.until()
        if reset_at is not None and reset_at > now:
            return (reset_at - now).total_seconds(), reset_at
        delay = self._backoff_delay(attempt)
        return delay, now + timedelta(seconds=delay)

    def _note_rate_limit(
        self, method: str, path: str, response: httpx.Response
    ) -> RateLimit | None:
        self.rate_limit = limit = RateLimit.from_headers(response.headers)
        if limit is None:
            logger.debug("Thena %s %s -> %s", method, path, response.status_code)
        else:
            logger.debug(
                "Thena %s %s -> %s; rate limit %s of %s left, resets %s (path %s)",
                method,
                path,
                response.status_code,
                limit.remaining,
                limit.limit,
                limit.reset_at.isoformat() if limit.reset_at else "?",
                limit.path,
            )
        spent = response.status_code == 429 or (limit is not None and limit.remaining == 0)
        if spent and limit is not None and limit.reset_at is not None:
            # Every process (and instance) sends nothing until the reset: ratelimit.py.
            self._pause.note(limit.reset_at)
        return limit

    def _wait_out_rate_limit_pause(self, method: str, path: str, retries: int | None) -> None:
        """Before sending: while Thena's rate limit is spent (noted by any process), wait
        for its reset if that fits the request's budget and `max_rate_limit_wait` (and the
        call may retry at all), else raise ThenaRateLimited at once, having sent nothing."""
        until = self._pause.until()
        if until is None:
            return
        delay = (until - datetime.now(UTC)).total_seconds()
        remaining = budget_remaining()
        waits = self.max_retries if retries is None else retries
        if (
            waits > 0
            and delay <= self.max_rate_limit_wait
            and (remaining is None or remaining - delay > _MIN_ATTEMPT_SECONDS)
        ):
            logger.info("Thena %s %s: rate-limited, waiting %.1fs", method, path, delay)
            self._sleep(delay)
            return
        logger.warning("Thena %s %s not sent: rate-limited until %s", method, path, until)
        raise ThenaRateLimited(
            retry_at=until,
            status_code=None,  # no answer: nothing was sent
            detail=f"not sent: Thena's rate limit is spent until {until:%H:%M:%S} UTC",
        )

    def _unwrap(self, response: httpx.Response, safe: bool) -> Any:
        try:
            body = _json(response)
        except ValueError:
            raise ThenaUnavailable(
                "Thena answered with something we cannot read. Try again in a few minutes.",
                status_code=response.status_code,
                detail=self._detail(response),
                outcome_unknown=not safe,
            ) from None
        # An envelope; for a write, also one without `data` (a bare object has an id).
        if (
            isinstance(body, dict)
            and isinstance(body.get("status"), bool)
            and ("data" in body or (not safe and "id" not in body))
        ):
            if body["status"] is not True:
                raise ThenaError(
                    status_code=response.status_code,
                    detail=self._redact(str(body.get("message", ""))),
                    outcome_unknown=not safe,
                )
            if "data" not in body:
                raise self._odd_answer(response, "an envelope without data", safe)
            return body["data"]
        if isinstance(body, dict) and isinstance(body.get("result"), dict):
            return body["result"]  # search (thena-api.md §4.3)
        return body  # a bare object, e.g. an account (thena-api.md §1)

    def _odd_answer(self, response: httpx.Response, problem: str, safe: bool) -> ThenaError:
        """A 2xx that is not what was asked for: for a write, maybe saved, maybe not."""
        if safe:
            message = "Thena answered in a way we did not expect. Try again in a few minutes."
        else:
            message = _ODD_WRITE_ANSWER
        return ThenaUnavailable(
            message,
            status_code=response.status_code,
            detail=self._redact(problem)[:_DETAIL_LIMIT],
            outcome_unknown=not safe,
        )

    def _messages(self, response: httpx.Response) -> list[str]:
        """The upstream `message` (a string or a list), else the raw text; nothing else
        of the error body is relied on, as its shape is undocumented (thena-api.md §1)."""
        try:
            body = _json(response)
        except ValueError:
            body = None
        message = body.get("message") if isinstance(body, dict) else None
        if isinstance(message, list):
            messages = [str(item) for item in message]
        elif message is not None:
            messages = [str(message)]
        else:
            text = " ".join(response.text.split())
            if not text or text.startswith("<"):  # empty, or an HTML error page
                text = f"HTTP {response.status_code} {response.reason_phrase}".strip()
            messages = [text]
        return [self._redact(item)[:_DETAIL_LIMIT] for item in messages]

    def _detail(self, response: httpx.Response) -> str:
        return "; ".join(self._messages(response))

    def _redact(self, text: str) -> str:
        return self._api_key_re.sub("[redacted]", text) if self._api_key_re else text

    def _status_error(self, response: httpx.Response, safe: bool) -> ThenaError:
        status = response.status_code
        messages = self._messages(response)
        if status in (400, 422):
            return ThenaValidationError(
                messages, known_fields=schema.field_map(), status_code=status
            )
        if status == 404 and not safe:
            # A write naming an unknown statusId, accountId... is a bad value, not a
            # missing ticket, when the message names the property (a guess: §2.5).
            error = ThenaValidationError(
                messages, known_fields=schema.field_map(), status_code=status
            )
            if error.field_errors:
                return error
        detail = "; ".join(messages)
        if status in (401, 403):
            return ThenaAuthError(status_code=status, detail=detail)
        if status == 404:
            return ThenaNotFound(status_code=status, detail=detail)
        if status >= 500:
            return ThenaUnavailable(status_code=status, detail=detail, outcome_unknown=not safe)
        if 400 <= status < 500:
            return ThenaError(status_code=status, detail=detail)
        return ThenaUnavailable(
            "Thena answered in a way we did not expect. Try again in a few minutes.",
            status_code=status,
            detail=detail,
            outcome_unknown=not safe,
        )

    def _transport_error(self, exc: httpx.HTTPError, safe: bool) -> ThenaError:
        detail = self._redact(f"{type(exc).__name__}: {exc}")[:_DETAIL_LIMIT]
        sent = not isinstance(exc, _NOT_SENT)
        if isinstance(exc, httpx.TimeoutException):
            return ThenaTimeout(detail=detail, outcome_unknown=sent and not safe)
        return ThenaUnavailable(detail=detail, outcome_unknown=sent and not safe)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _json(response: httpx.Response) -> Any:
    """The body as JSON, with lone surrogates (valid JSON escapes, but no text) replaced:
    a page that showed one could not be encoded. Only an escape can make one, so a body
    without any is not walked."""
    data = response.json()
    return _no_surrogates(data) if _SURROGATE_ESCAPE.search(response.content) else data


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _no_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value) if _SURROGATE.search(value) else value
    if isinstance(value, list):
        return [_no_surrogates(item) for item in value]
    if isinstance(value, dict):
        return {_no_surrogates(key): _no_surrogates(item) for key, item in value.items()}
    return value


def _dict(data: Any) -> dict:
    if not isinstance(data, dict):
        raise ThenaUnavailable(
            "Thena answered in a way we did not expect. Try again in a few minutes.",
            detail=f"expected an object, got {type(data).__name__}",
        )
    return data


def _is_ticket(ticket_id: str) -> Callable[[Any], str]:
    """A check for `_request`: what is wrong with `data` as the ticket `ticket_id`."""

    def check(data: Any) -> str:
        if not isinstance(data, dict):
            return f"expected the ticket, got {type(data).__name__}"
        if "id" not in data:
            return "expected the ticket, got an object without an id"
        if str(data["id"]) != str(ticket_id):
            return "expected the ticket, got another object"
        return ""

    return check


def _bulk_problem(data: Any) -> str:
    """A check for `_request`: what is wrong with `data` as a bulk update's result,
    `{updated: [{id, title}], skipped: [{id, reason}]}` (only the ids are relied on)."""
    if not isinstance(data, dict):
        return f"expected the bulk result, got {type(data).__name__}"
    for key in ("updated", "skipped"):
        items = data.get(key)
        if not isinstance(items, list):
            return f"expected the bulk result, got no {key} list"
        if not all(isinstance(item, dict) and isinstance(item.get("id"), str) for item in items):
            return f"expected the bulk result, got {key} items without a string id"
    return ""


def _reason(item: dict) -> str:
    """A skipped ticket's reason as text; its shape is not relied on."""
    reason = item.get("reason")
    if reason is None or not str(reason).strip():
        return "Thena gave no reason"
    return str(reason)


def _list(data: Any) -> list[dict]:
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise ThenaUnavailable(
            "Thena answered in a way we did not expect. Try again in a few minutes.",
            detail=f"expected a list of objects, got {type(data).__name__}",
        )
    return data


def _row_key(row: dict) -> str:
    """What makes a listed row the same row on another page: its id (a custom field has
    only a uid), else the whole row."""
    return str(row.get("id") or row.get("uid") or repr(row))


def _search_page(result: Any, page: int) -> SearchPage:
    hits = _dict(result).get("hits")
    items = _list([hit.get("document") for hit in _list(hits if hits is not None else [])])
    found = result.get("found")
    return SearchPage(
        found=found if isinstance(found, int) else len(items),
        items=items,
        page=result.get("page") if isinstance(result.get("page"), int) else page,
    )


# The process-wide client

_client: ThenaClient | None = None
_client_lock = threading.Lock()


def sandbox_transport(app=None) -> httpx.BaseTransport:
    """An in-process transport to the sandbox (the default one unless `app` is given)."""
    from .sandbox import SandboxConnectionDropped, default_sandbox

    class SandboxTransport(httpx.WSGITransport):
        # The sandbox simulates a dropped connection by raising; httpx raises this for
        # a real one, so the client treats both the same way.
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            try:
                return super().handle_request(request)
            except SandboxConnectionDropped as exc:
                raise httpx.RemoteProtocolError(str(exc), request=request) from exc

    return SandboxTransport(app=app if app is not None else default_sandbox())


def _from_settings() -> ThenaClient:
    timeout = settings.THENA_TIMEOUT_SECONDS
    if settings.THENA_API_BASE_URL:
        return ThenaClient(settings.THENA_API_BASE_URL, settings.THENA_API_KEY, timeout=timeout)
    from .sandbox import DEMO_API_KEY

    return ThenaClient(
        SANDBOX_BASE_URL,
        settings.THENA_API_KEY or DEMO_API_KEY,
        timeout=timeout,
        transport=sandbox_transport(),
    )


def get_client() -> ThenaClient:
    """The process-wide client, built from settings on first use."""
    global _client
    client = _client
    if client is None:
        with _client_lock:
            if _client is None:
                _client = _from_settings()
            client = _client
    return client


def set_client(client: ThenaClient | None) -> None:
    """Install `client` for the whole process (tests); None rebuilds from settings."""
    global _client
    with _client_lock:
        _client = client
