"""The sandbox WSGI app: routes, auth, rate limits and fault injection over a seeded world."""

from __future__ import annotations

import calendar
import copy
import json
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, quote

from .. import documented
from . import events, seed, spec, typesense
from .seed import TICKET_COUNT
from .spec import BULK_FIELDS, BULK_PATH
from .validation import PATCH_FIELDS, ApiError, _type_errors, apply_patch

DEMO_API_KEY = "sandbox-demo-key"
# With no configured budget the headers still go out, with a limit nobody reaches.
UNLIMITED = 1_000_000
DATE_RANGES = ("1d", "2d", "1w", "2w", "3w", "4w", "1m", "3m")
# A long benchmark over HTTP must not grow the request log without bound.
MAX_RECORDED = 10_000
_INVALID_JSON = object()
CUSTOM_FIELD_SHAPES = ("strings", "objects")
_MS = timedelta(milliseconds=1)


class SandboxConnectionDropped(Exception):
    """Raised from the WSGI app to simulate a connection closed without an answer."""


@dataclass
class SandboxConfig:
    seed: int = 1
    api_key: str = DEMO_API_KEY
    latency_ms: float = 0
    fail_rate: float = 0.0
    rate_limit: int | None = None
    rate_window_seconds: int = 60
    proactive_channels: tuple[str, ...] = ("email",)
    # What Thena documents unless told otherwise (thena-api.md §3): write-only fields
    # are stored but not returned, and customFieldValues comes back as strings.
    echo_write_only: bool = False
    custom_field_shape: str = "strings"  # "strings" (documented) or "objects"
    # The auto-link flag's PATCH key (its real name is unknown, thena-api.md §2.2): the
    # only extra key a PATCH may carry, and the name /swagger-json gives it.
    auto_link_field: str = "autoLinkSlackChannel"
    # PATCH /v1/tickets/bulk (thena-api.md §10); False: an older Thena without it (404).
    bulk_endpoint: bool = True
    # Thena documents no batch limit [?]: 100 is our guess at what it would refuse.
    bulk_max_ids: int = 100
    ticket_count: int = TICKET_COUNT
    # Platform events (sandbox/events.py): delivered to this URL when set, signed with
    # the secret, each after a random delay in this range, some twice.
    events_url: str = ""
    events_secret: str = ""
    events_delay_ms: tuple[float, float] = (20, 400)
    events_duplicate_rate: float = 0.1

    def __post_init__(self) -> None:
        if self.custom_field_shape not in CUSTOM_FIELD_SHAPES:
            raise ValueError(f"custom_field_shape must be one of {CUSTOM_FIELD_SHAPES}")
        if self.bulk_max_ids < 1:
            raise ValueError("bulk_max_ids must be at least 1")
        if self.ticket_count < 0:
            raise ValueError("ticket_count must not be negative")


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    json: Any
    headers: dict[str, str]
    status: int | None = None  # None while running, or when the connection was dropped


@dataclass(frozen=True)
class _Fault:
    """One queued fault: what the next matching request gets instead of a normal answer."""

    kind: str  # "fail" (NestJS error body), "answer" (the given body) or "drop" (no answer)
    status: int = 500
    applied: bool = False  # carry the request out first
    body: bytes | None = None  # for "answer": the exact bytes to send
    method: str | None = None  # only for the next request of this method; None: any

    def matches(self, method: str) -> bool:
        return self.method is None or self.method == method


@dataclass
class _Request:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    remote_addr: str


def _now() -> datetime:
    return datetime.now(UTC)


class SandboxApp:
    """A fake Thena API (thena-api.md §8) as a thread-safe WSGI callable."""

    def __init__(
        self, config: SandboxConfig | None = None, *, clock: Callable[[], datetime] = _now
    ) -> None:
        self.config = config or SandboxConfig()
        self.clock = clock
        self.requests: list[RecordedRequest] = []
        self.outbox = events.Outbox(
            events.Delivery(
                url=self.config.events_url,
                secret=self.config.events_secret,
                delay_ms=self.config.events_delay_ms,
                duplicate_rate=self.config.events_duplicate_rate,
                seed=self.config.seed,
            )
        )
        self._lock = threading.Lock()
        self._routes = [
            ("GET", r"/health", self._health),
            ("GET", r"/v1/tickets", self._ticket_list),
            ("GET", r"/v1/tickets/(?P<kind>status|priority|type|sentiment)", self._ticket_options),
            ("GET", r"/v1/tickets/(?P<ticket_id>[^/]+)", self._ticket_get),
            # Before the single-ticket PATCH, whose pattern would take "bulk" for an id.
            ("PATCH", BULK_PATH, self._ticket_bulk),
            ("PATCH", r"/v1/tickets/(?P<ticket_id>[^/]+)", self._ticket_patch),
            ("GET", r"/v1/teams", self._team_list),
            ("GET", r"/v1/teams/(?P<team_id>[^/]+)", self._team_get),
            ("GET", r"/v1/teams/(?P<team_id>[^/]+)/sub-teams", self._team_sub_teams),
            ("GET", r"/v1/teams/(?P<team_id>[^/]+)/members", self._team_members),
            ("GET", r"/v1/accounts", self._account_list),
            ("GET", r"/v1/accounts/(?P<account_id>[^/]+)", self._account_get),
            ("GET", r"/v1/forms", self._form_list),
            ("GET", r"/v1/custom-field", self._custom_field_list),
            ("GET", r"/v1/search/(?P<collection>tickets|accounts)", self._search),
            ("GET", r"/swagger-json", self._swagger_json),
        ]
        self._routes = [(m, re.compile(p + "/?"), h) for m, p, h in self._routes]
        self.reset()

    # Test and tooling API

    def reset(self) -> None:
        """Reseed the data and forget requests, rate counters and queued faults."""
        with self._lock:
            now = self.clock()
            self._world = seed.build(self.config.seed, now, self.config.ticket_count)
            stamps = (datetime.fromisoformat(t["updatedAt"]) for t in self._world.tickets.values())
            self._last_stamp = max(stamps, default=_to_ms(now))
            self._rng = random.Random(self.config.seed)
            self._faults: list[_Fault] = []
            self._window_start = 0.0
            self._window_used = 0
            self.requests.clear()
            self.outbox.events.clear()

    def ticket(self, ticket_id: str) -> dict:
        with self._lock:
            return copy.deepcopy(self._world.tickets[ticket_id])

    def tickets(self) -> list[dict]:
        with self._lock:
            return copy.deepcopy(list(self._world.tickets.values()))

    def teams(self) -> list[dict]:
        """All teams, the three parent teams first, then the sub-teams."""
        with self._lock:
            return copy.deepcopy(list(self._world.teams.values()))

    def touch_ticket(self, ticket_id: str, **fields) -> dict:
        """Change a ticket as someone else would upstream, in Thena's own app (PATCH
        rules; raises ApiError). The events say who: a member of the ticket's team."""
        with self._lock:
            ticket = self._world.tickets.get(ticket_id)
            if ticket is None:
                raise ApiError(404, f"Ticket '{ticket_id}' not found")
            self._patch(ticket, fields, actor=self._someone_else(ticket))
            return copy.deepcopy(ticket)

    @property
    def events(self) -> list[dict]:
        """Every event emitted since the last reset, oldest first."""
        return self.outbox.events

    def _someone_else(self, ticket: dict) -> dict:
        world = self._world
        ids = [u for u in world.members.get(ticket["teamId"], []) if u != world.api_user_id]
        user = world.users[ids[0]] if ids else {"id": "U-someone", "email": None}
        return {"id": user["id"], "type": "user", "email": user.get("email")}

    def put_ticket(self, ticket_id: str, **raw) -> None:
        """Store values as Thena might hold them, unvalidated (e.g. hostile text, a ticket
        moved to another team): for tests of what the dashboard shows."""
        with self._lock:
            self._world.tickets[ticket_id].update(copy.deepcopy(raw))

    def fail_next(
        self, count: int = 1, status: int = 500, *, applied: bool = False, only: str | None = None
    ) -> None:
        """The next `count` requests answer `status` with a NestJS error body; `applied=True`
        first carries them out (a 5xx after the change was made). `only="PATCH"` queues the
        faults for requests of that method only; others pass through."""
        self._queue(_Fault("fail", status, applied, None, _method(only)), count)

    def answer_next(
        self,
        body: Any,
        *,
        status: int = 200,
        applied: bool = True,
        count: int = 1,
        only: str | None = None,
    ) -> None:
        """The next `count` requests are carried out (unless `applied=False`) and answered
        `status` with exactly `body` as JSON (any JSON value, e.g. `{"status": True}` or
        `[]`), or with `body` itself when it is `bytes` (a non-JSON answer)."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        HTTPStatus(status)  # an unknown status fails here, not inside a request
        self._queue(_Fault("answer", status, applied, data, _method(only)), count)

    def drop_next(self, count: int = 1, *, applied: bool = False, only: str | None = None) -> None:
        """The next `count` requests get no answer; `applied=True` first carries them out,
        as when a reply is lost after Thena made the change."""
        self._queue(_Fault("drop", 0, applied, None, _method(only)), count)

    def _queue(self, fault: _Fault, count: int) -> None:
        with self._lock:
            self._faults += [fault] * count

    def _take_fault(self, method: str) -> _Fault | None:
        """The first queued fault for this method, removed from the queue (under the lock)."""
        for index, fault in enumerate(self._faults):
            if fault.matches(method):
                return self._faults.pop(index)
        return None

    # WSGI

    def __call__(self, environ: dict, start_response) -> list[bytes]:
        length = environ.get("CONTENT_LENGTH") or "0"
        # Read the whole body first so a kept-alive HTTP connection stays in step.
        raw = environ["wsgi.input"].read(int(length)) if length.isdigit() else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = _INVALID_JSON
        headers = {
            key[5:].lower().replace("_", "-"): value
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        api_key, authorization = headers.get("x-api-key"), headers.get("authorization")
        masked = {
            k: "***" if k in ("x-api-key", "authorization") else v for k, v in headers.items()
        }
        query = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
        path = environ.get("PATH_INFO") or "/"
        record = RecordedRequest(
            method=environ["REQUEST_METHOD"],
            path=path,
            query=query,
            json=None if body is _INVALID_JSON else body,
            headers=masked,
        )
        request = _Request(record.method, path, query, body, environ.get("REMOTE_ADDR", ""))

        with self._lock:
            self.requests.append(record)
            if len(self.requests) > MAX_RECORDED:
                del self.requests[: MAX_RECORDED // 10]
            fault = self._take_fault(record.method)
            rate = self.config.fail_rate
            if fault is None and rate and self._rng.random() < rate:
                fault = _Fault("fail", 500)
        if self.config.latency_ms:
            time.sleep(self.config.latency_ms / 1000)  # outside the lock, on purpose

        with self._lock:
            if fault is None or fault.applied:
                status, payload = self._handle(request, api_key, authorization)
                data = json.dumps(payload).encode()
            if fault is not None and fault.kind == "drop":
                raise SandboxConnectionDropped(f"{record.method} {path}: connection dropped")
            if fault is not None and fault.kind == "fail":
                status = fault.status
                data = json.dumps(ApiError(status, _fault_message(status)).body()).encode()
            elif fault is not None and fault.kind == "answer":
                status, data = fault.status, fault.body
            rate_headers = self._rate_headers(request)
            record.status = status
        response_headers = [
            ("Content-Type", "application/json; charset=utf-8"),
            ("Content-Length", str(len(data))),
            *rate_headers,
        ]
        start_response(f"{status} {HTTPStatus(status).phrase}", response_headers)
        return [data]

    # Plumbing (all under the lock)

    def _handle(self, request: _Request, api_key, authorization) -> tuple[int, Any]:
        try:
            handler, params = self._route(request)
            if handler != self._health:
                key = self.config.api_key
                # The older docs used `Authorization: Bearer` (thena-api.md §1).
                if api_key != key and authorization != f"Bearer {key}":
                    raise ApiError(401, "Invalid or missing API key")
                if self._over_budget():
                    raise ApiError(429, "ThrottlerException: Too Many Requests")
            return 200, handler(request, **params)
        except ApiError as error:
            return error.status, error.body()

    def _route(self, request: _Request):
        for method, pattern, handler in self._routes:
            match = pattern.fullmatch(request.path)
            if match and method == request.method:
                if not self._serves(handler):
                    # An unknown route then, not a ticket called "bulk" (a guess at how
                    # an older Thena answers).
                    break
                return handler, match.groupdict()
        raise ApiError(404, f"Cannot {request.method} {request.path}")

    def _serves(self, handler) -> bool:
        """Whether this Thena has the route, as configured now (a test may change the
        config of a running sandbox): an older one has no bulk endpoint."""
        return handler != self._ticket_bulk or self.config.bulk_endpoint

    def _over_budget(self) -> bool:
        now = self.clock().timestamp()
        if now >= self._window_start + self.config.rate_window_seconds:
            self._window_start = float(int(now))
            self._window_used = 0
        self._window_used += 1
        limit = self.config.rate_limit
        return limit is not None and self._window_used > limit

    def _rate_headers(self, request: _Request) -> list[tuple[str, str]]:
        limit = self.config.rate_limit if self.config.rate_limit is not None else UNLIMITED
        start = self._window_start or int(self.clock().timestamp())
        return [
            ("X-RateLimit-Limit", str(limit)),
            ("X-RateLimit-Remaining", str(max(0, limit - self._window_used))),
            ("X-RateLimit-Reset", str(int(start) + self.config.rate_window_seconds)),
            ("X-RateLimit-IP", request.remote_addr),
            ("X-RateLimit-UserID", self._world.api_user_id),
            ("X-RateLimit-OrgID", self._world.organization_id),
            ("X-RateLimit-Path", quote(request.path)),
        ]

    def _ok(self, data: Any) -> dict:
        return {
            "status": True,
            "message": "Success",
            "timestamp": seed.iso(self.clock()),
            "data": data,
        }

    def _patch(self, ticket: dict, body: Any, *, actor: dict | None = None) -> None:
        """Apply a PATCH body (raises ApiError, leaving the ticket as it was), then emit
        its events; by default the API key's own user made the change."""
        previous = copy.deepcopy(ticket)
        apply_patch(
            self._world,
            ticket,
            body,
            proactive_channels=self.config.proactive_channels,
            auto_link_field=self.config.auto_link_field,
        )
        # Strictly increasing, even for two changes within one millisecond.
        self._last_stamp = max(_to_ms(self.clock()), self._last_stamp + _MS)
        ticket["updatedAt"] = seed.iso(self._last_stamp)
        if actor is None:
            user = self._world.users.get(self._world.api_user_id, {})
            actor = {"id": self._world.api_user_id, "type": "app", "email": user.get("email")}
        self.outbox.changed(previous, copy.deepcopy(ticket), actor, ticket["updatedAt"])

    def _team(self, team_id: str, key: str = "teamId") -> dict:
        team = self._world.teams.get(team_id)
        if team is None:
            raise ApiError(404, f"{key} '{team_id}' not found")
        return team

    def _config_items(self, items: dict[str, list[dict]], query: dict) -> list[dict]:
        # Unknown teams are 404 here and in the ticket list [?]; sub-teams use their
        # parent's configuration.
        if query.get("teamId"):
            return items[self._world.root_team_id(self._team(query["teamId"])["id"])]
        return [item for team_items in items.values() for item in team_items]

    # Routes

    def _health(self, request: _Request) -> dict:
        # NestJS Terminus shape; the real body is undocumented [?].
        return {"status": "ok", "info": {}, "error": {}, "details": {}}

    def _swagger_json(self, request: _Request) -> dict:
        # The bare document, no envelope, as NestJS serves it.
        routes = [(m, p.pattern) for m, p, h in self._routes if self._serves(h)]
        return spec.build(self.config, routes)

    def _ticket_list(self, request: _Request) -> dict:
        query = request.query
        errors: list[str] = []
        page = _int_param(query, "page", 0, 0, None, errors)
        limit = _int_param(query, "limit", 20, 1, 100, errors)  # default/max are guesses [?]
        date_range = query.get("dateRange")
        if date_range is not None and date_range not in DATE_RANGES:
            errors.append(
                f"dateRange must be one of the following values: {', '.join(DATE_RANGES)}"
            )
        if errors:
            raise ApiError(400, errors)
        tickets = list(self._world.tickets.values())
        if query.get("teamId"):
            team_id = self._team(query["teamId"])["id"]
            tickets = [t for t in tickets if team_id in (t["teamId"], t["subTeamId"])]
        if date_range:
            # Filtering on createdAt is our reading of the docs [?].
            since = seed.iso(_range_start(self.clock(), date_range))
            tickets = [t for t in tickets if t["createdAt"] >= since]
        tickets.sort(key=lambda t: t["updatedAt"], reverse=True)
        return self._ok([self._public(t) for t in tickets[page * limit : (page + 1) * limit]])

    def _ticket_options(self, request: _Request, kind: str) -> dict:
        world = self._world
        # No sentiment list is documented (thena-api.md §4.4); this route is a guess [?].
        items = {
            "status": world.statuses,
            "priority": world.priorities,
            "type": world.types,
            "sentiment": world.sentiments,
        }[kind]
        return self._ok(self._config_items(items, request.query))

    def _ticket_get(self, request: _Request, ticket_id: str) -> dict:
        return self._ok(self._public(self._ticket(ticket_id)))

    def _ticket_patch(self, request: _Request, ticket_id: str) -> dict:
        ticket = self._ticket(ticket_id)
        if request.body is _INVALID_JSON or request.body is None:
            raise ApiError(400, ["request body must be a JSON object"])
        self._patch(ticket, request.body)
        return self._ok(self._public(ticket))

    def _ticket_bulk(self, request: _Request) -> dict:
        """PATCH /v1/tickets/bulk (thena-api.md §10): the same fields on many tickets. A
        bad request is refused whole (400); then each ticket is changed as a single PATCH
        of those fields would change it, or skipped, unchanged, with the reason."""
        body = request.body
        if body is _INVALID_JSON or not isinstance(body, dict):
            raise ApiError(400, ["request body must be a JSON object"])
        ticket_ids = body.get("ticketIds")
        errors = _ticket_id_errors(ticket_ids, self.config.bulk_max_ids)
        fields = {key: value for key, value in body.items() if key != "ticketIds"}
        for key, value in fields.items():
            if key not in BULK_FIELDS:
                errors.append(f"property {key} should not exist")  # as whitelisting does
            elif value is None:
                if not PATCH_FIELDS[key][1]:
                    errors.append(f"{key} should not be null")
            else:
                kind = PATCH_FIELDS[key][0]
                errors += _type_errors(key, kind, value, self.config.proactive_channels)
        if errors:
            raise ApiError(400, errors)

        updated, skipped = [], []
        for ticket_id in dict.fromkeys(ticket_ids):  # each id once, in the order sent
            ticket = self._world.tickets.get(ticket_id)
            if ticket is None:
                skipped.append({"id": ticket_id, "reason": "Ticket not found"})
                continue
            try:
                # apply_patch checks everything before it changes anything, so a refused
                # ticket is left as it was (a statusId of another team, say).
                self._patch(ticket, fields)
            except ApiError as error:
                reason = error.message
                reason = "; ".join(reason) if isinstance(reason, list) else reason
                skipped.append({"id": ticket_id, "reason": reason})
                continue
            updated.append({"id": ticket_id, "title": ticket["title"]})
        return self._ok({"updated": updated, "skipped": skipped})

    def _ticket(self, ticket_id: str) -> dict:
        ticket = self._world.tickets.get(ticket_id)
        if ticket is None:
            raise ApiError(404, f"Ticket '{ticket_id}' not found")
        return ticket

    def _team_list(self, request: _Request) -> dict:
        # Whether sub-teams are listed here is undocumented [?]; they are, marked by
        # parentTeamId.
        return self._ok([_team_item(t) for t in self._world.teams.values()])

    def _team_get(self, request: _Request, team_id: str) -> dict:
        return self._ok(_team_item(self._team(team_id, "teamId")))

    def _team_sub_teams(self, request: _Request, team_id: str) -> dict:
        self._team(team_id)
        return self._ok([_team_item(t) for t in self._world.sub_teams(team_id)])

    def _team_members(self, request: _Request, team_id: str) -> dict:
        self._team(team_id)
        members = [self._world.member(team_id, uid) for uid in self._world.members[team_id]]
        search = request.query.get("searchQuery", "").strip().lower()
        if search:
            members = [m for m in members if search in m["name"].lower() or search in m["email"]]
        return self._ok(members)

    def _account_list(self, request: _Request) -> dict:
        return self._ok(_paged(list(self._world.accounts.values()), request.query, 20))

    def _account_get(self, request: _Request, account_id: str) -> dict:
        account = self._world.accounts.get(account_id)
        if account is None:
            raise ApiError(404, f"Account '{account_id}' not found")
        # The docs show the account bare, without the envelope [C, maybe an artefact].
        return account

    def _form_list(self, request: _Request) -> dict:
        forms = self._team_scoped(self._world.forms, request.query, "onlyTeamForms")
        return self._ok(_paged(forms, request.query, 10))

    def _custom_field_list(self, request: _Request) -> dict:
        query = request.query
        fields = self._team_scoped(self._world.custom_fields, query, "onlyTeamFields")
        sources = ("ticket", "account", "custom_object", "customer_contact")
        source = query.get("source")
        if source is not None and source not in sources:
            allowed = ", ".join(sources)
            raise ApiError(400, [f"source must be one of the following values: {allowed}"])
        if source:
            fields = [f for f in fields if f["source"] == source]
        return self._ok(_paged(fields, query, 20))

    def _team_scoped(self, items: list[dict], query: dict, only_flag: str) -> list[dict]:
        """With `teamId`: the team's items plus the global ones (unless `only_flag`)."""
        if not query.get("teamId"):
            return items
        root = self._world.root_team_id(self._team(query["teamId"])["id"])
        allowed = (root,) if query.get(only_flag) == "true" else (root, None)
        return [item for item in items if item["teamId"] in allowed]

    def _search(self, request: _Request, collection: str) -> dict:
        query = request.query
        errors = [
            f"{name} should not be empty" for name in ("q", "query_by") if not query.get(name)
        ]
        page = _int_param(query, "page", 1, 1, None, errors)  # 1-based, as Typesense
        per_page = _int_param(query, "per_page", 20, 1, 250, errors)
        if errors:
            raise ApiError(400, errors)
        if collection == "tickets":
            documents = [self._ticket_document(t) for t in self._world.tickets.values()]
        else:
            documents = list(self._world.accounts.values())
        documents = [d for d in documents if typesense.matches(d, query.get("filter_by", ""))]
        if query["q"].strip() != "*":
            fields = [f.strip() for f in query["query_by"].split(",")]
            tokens = query["q"].lower().split()
            documents = [
                d
                for d in documents
                if all(any(tok in str(d.get(f) or "").lower() for f in fields) for tok in tokens)
            ]
        documents.sort(key=typesense.sort_key(query.get("sort_by") or "updatedAt:desc"))
        include = [f.strip() for f in query.get("include_fields", "").split(",") if f.strip()]
        hits = [
            {"document": {k: v for k, v in d.items() if not include or k in include}}
            for d in documents[(page - 1) * per_page : page * per_page]
        ]
        return {
            "result": {
                "facet_counts": [],
                "found": len(documents),
                "hits": hits,
                "page": page,
                "request_params": {
                    "collection_name": collection,
                    "per_page": per_page,
                    "q": query["q"],
                },
                "search_cutoff": False,
            }
        }

    def _ticket_document(self, ticket: dict) -> dict:
        world = self._world
        account = world.accounts.get(ticket["accountId"] or "")
        form = next((f for f in world.forms if f["id"] == ticket["formId"]), None)
        # statusName/priorityName are implied by the docs' filter_by example.
        # Search documents carry uid and organizationId, which tickets do not (§4.3).
        return {
            **self._public(ticket),
            "uid": ticket["id"],
            "organizationId": world.organization_id,
            "organizationUid": world.organization_id,
            "teamUid": ticket["teamId"],
            "formName": form["name"] if form else None,
            "accountName": account["name"] if account else None,
            "accountPrimaryDomain": account["primaryDomain"] if account else None,
            "statusName": ticket["status"],
            "priorityName": ticket["priority"],
        }

    def _public(self, ticket: dict) -> dict:
        """A ticket as Thena answers it: the documented keys in their order, write-only
        values only when configured to echo them, custom fields in the configured shape."""
        keys = documented.TICKET_KEYS
        if self.config.echo_write_only:
            keys += documented.WRITE_ONLY
        public = {key: copy.deepcopy(ticket.get(key)) for key in keys}
        if self.config.custom_field_shape == "strings":
            public["customFieldValues"] = _value_strings(ticket["customFieldValues"])
        return public


def _value_strings(items: list[dict]) -> list[str]:
    """customFieldValues as the documented `string[]`: what the strings hold is
    undocumented [?]; here each value as text, with no field id (so it cannot be mapped
    back to the write shape)."""
    strings = []
    for item in items:
        data = item.get("data") if isinstance(item, dict) else None
        for value in data if isinstance(data, list) else [item]:
            value = value.get("value") if isinstance(value, dict) else value
            strings.append(value if isinstance(value, str) else json.dumps(value))
    return strings


def _ticket_id_errors(ticket_ids: Any, max_ids: int) -> list[str]:
    """class-validator's messages for `ticketIds`: a non-empty array of strings of at most
    `max_ids` elements (counted as sent, duplicates included)."""
    if not isinstance(ticket_ids, list):
        return ["ticketIds must be an array", "ticketIds should not be empty"]
    errors = []
    if not ticket_ids:
        errors.append("ticketIds should not be empty")
    if len(ticket_ids) > max_ids:
        errors.append(f"ticketIds must contain no more than {max_ids} elements")
    if not all(isinstance(item, str) for item in ticket_ids):
        errors.append("each value in ticketIds must be a string")
    return errors


def _team_item(team: dict) -> dict:
    return {k: v for k, v in team.items() if k not in ("configurationId", "deletedAt")}


def _to_ms(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _method(only: str | None) -> str | None:
    return only.upper() if only else None


def _fault_message(status: int) -> str:
    return "Internal server error" if status == 500 else HTTPStatus(status).phrase


def _int_param(query, name, default, minimum, maximum, errors) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        errors.append(f"{name} must be a number conforming to the specified constraints")
        return default
    if value < minimum:
        errors.append(f"{name} must not be less than {minimum}")
    if maximum is not None and value > maximum:
        errors.append(f"{name} must not be greater than {maximum}")
    return value


def _paged(items: list[dict], query: dict, default_limit: int) -> list[dict]:
    errors: list[str] = []
    page = _int_param(query, "page", 0, 0, None, errors)
    limit = _int_param(query, "limit", default_limit, 1, 100, errors)
    if errors:
        raise ApiError(400, errors)
    return items[page * limit : (page + 1) * limit]


def _range_start(now: datetime, date_range: str) -> datetime:
    """Calendar-based UTC: from 00:00 of the day N days, weeks or months back (§4.2)."""
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    count, unit = int(date_range[:-1]), date_range[-1]
    if unit == "d":
        return today - timedelta(days=count)
    if unit == "w":
        return today - timedelta(weeks=count)
    month_index = today.year * 12 + today.month - 1 - count
    year, month = divmod(month_index, 12)
    day = min(today.day, calendar.monthrange(year, month + 1)[1])
    return today.replace(year=year, month=month + 1, day=day)
