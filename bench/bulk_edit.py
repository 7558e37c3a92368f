"""How long a 1000-ticket bulk edit takes beside the upstream calls it needs. Prints;
asserts nothing.

    .venv/bin/python bench/bulk_edit.py [--tickets 1000] [--latency-ms 20]
        [--rate-limit 200 --rate-window 2] [--database-url URL] [--profile]

Serves the sandbox over loopback HTTP in a process of its own (`--latency-ms`, enough
generated tickets for --tickets in one team; the team with most tickets is edited).
A second process, the dashboard's side, migrates the database (a throwaway SQLite file,
or --database-url / DATABASE_URL), previews the batch through tickets.bulk with the bulk
form's values, confirms it and runs the task worker's own loop (django_tasks_db's Worker,
as `db_worker --batch` runs it) until the batch is done: A is confirm -> done.

B is the same upstream work done directly from this process with a bare httpx client and
a pool of 10 threads (as tickets.thena.client.concurrently): per chunk of BULK_CHUNK_SIZE
tickets, one GET per ticket, then one PATCH /v1/tickets/bulk per distinct body (or one
PATCH per ticket for a field the bulk endpoint does not take). The sandbox is reseeded
before each run, so A and B start from the same tickets.

Rows:
1. status + priority (the bulk endpoint): A / B, target <= 1.3;
2. a due date (one PATCH per ticket): A / B, target <= 1.3;
3. status + priority under the sandbox's rate limit: A / the rate-limit bound, target
   <= 1.1. With N minimal calls and L per window of W seconds, the N-th call cannot be
   sent before window ceil(N/L) opens: bound = (ceil(N/L) - 1) * W + the time B takes
   for the calls of that last window. (ceil(N/L) * W, a full last window, is printed too.)
Also: tickets PATCHed more than once (Thena answered 200 to each; a PATCH refused with 429
and sent again is counted apart) and tickets left without an outcome, both should be 0;
then, per run, where the worker's time goes: each step of a chunk timed from outside
(wrappers installed in the dashboard's process; the product code is unchanged), with its
database queries per chunk. --profile adds cProfile's view of the tickets code and of
the steps' callees (on Python 3.12+ it sees the pool's threads too, and slows the run).
"""

import argparse
import json
import math
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from processes import ROOT, Broken, free_port, run, run_bench, start, wait_until_up

API_KEY = "sandbox-demo-key"
TARGET_DIRECT = 1.3
TARGET_RATE = 1.1
BULK_FIELDS = {"statusId", "typeId", "priorityId", "assignedAgentId", "isPrivate"}
DUE_DATE = "2027-01-15T09:30"  # what the bulk form's datetime-local input posts


# -- the sandbox process -----------------------------------------------------------------


def serve_sandbox(port: int, tickets: int, latency_ms: float) -> None:
    """The sandbox over HTTP, with /_bench/ routes to reseed it, set its rate limit and
    read its request log (what reached "Thena", with the ticket ids of each PATCH)."""
    import dataclasses

    from tickets.thena.sandbox import SandboxApp, SandboxConfig
    from tickets.thena.sandbox.server import make_server

    app = SandboxApp(SandboxConfig(ticket_count=tickets, latency_ms=latency_ms))
    # The rate-limit window the first call after the "confirm" mark opened.
    first: dict = {"armed": False}

    def control(environ, start_response):
        path = environ.get("PATH_INFO") or ""
        if not path.startswith("/_bench/"):
            if "mark=confirm" in environ.get("QUERY_STRING", ""):
                first.clear()
                first["armed"] = True
            elif first.get("armed") and path != "/health":
                first["armed"] = False
                first["arrived"] = time.time()
                answer = app(environ, start_response)
                first["window_start"] = app._window_start
                return answer
            return app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = json.loads(environ["wsgi.input"].read(length) or b"{}")
        answer: object = {"ok": True}
        if path == "/_bench/reset":  # the seeded world again, no limit, an empty log
            app.config = dataclasses.replace(app.config, rate_limit=None)
            app.reset()
        elif path == "/_bench/rate":  # a limit from now on, a fresh window
            with app._lock:
                app.config = dataclasses.replace(
                    app.config, rate_limit=body["limit"], rate_window_seconds=body["window"]
                )
                app._window_start, app._window_used = 0.0, 0
        elif path == "/_bench/first":
            answer = first
        elif path == "/_bench/log":
            with app._lock:
                answer = [
                    [r.method, r.path, r.query.get("mark"), _patched_ids(r), r.status]
                    for r in app.requests
                ]
        data = json.dumps(answer).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [data]

    server = make_server(control, "127.0.0.1", port)
    server.serve_forever()


def _patched_ids(request) -> list[str] | None:
    if request.method != "PATCH":
        return None
    if request.path.rstrip("/").endswith("/tickets/bulk"):
        return list((request.json or {}).get("ticketIds") or [])
    return [request.path.rstrip("/").rsplit("/", 1)[-1]]


# -- the dashboard's process: preview, confirm, the worker loop ---------------------------


def dashboard_run(spec_path: str) -> None:
    """Preview and confirm the batch `spec` describes, run the worker loop until it is
    done, and write what happened next to the spec (as JSON)."""
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.db import connection
    from django.http import QueryDict
    from django_tasks_db.management.commands.db_worker import Worker

    from tickets import bulk
    from tickets.audit import RequestMeta
    from tickets.forms import BulkEditForm
    from tickets.models import AuditEntry, BatchItem

    spec = json.loads(Path(spec_path).read_text())
    user, _ = get_user_model().objects.get_or_create(username="bench-manager")
    user.groups.add(Group.objects.get(name="Support managers"))
    user = get_user_model().objects.get(pk=user.pk)  # fresh permission cache

    _, choices = bulk.bulk_team_load(user=user, team_id=spec["team"])
    data = QueryDict(mutable=True)
    data.update(spec["form"])
    form = BulkEditForm(data, choices=choices)
    if not form.is_valid():
        raise SystemExit(f"bulk form refused {spec['form']}: {form.errors.as_json()}")
    batch = bulk.batch_preview_create(
        user=user,
        selection=bulk.Selection(team_id=spec["team"], ticket_ids=tuple(spec["ids"])),
        values=form.values(),
        value_labels=form.value_labels(),
        reason="bench",
        meta=RequestMeta(request_id=uuid.uuid4().hex, client_ip="127.0.0.1", user_agent="bench"),
    )
    sandbox = httpx.Client(base_url=spec["sandbox"], timeout=30)
    if spec.get("rate"):
        sandbox.post("/_bench/rate", json=spec["rate"]).raise_for_status()
    sandbox.get("/health", params={"mark": "confirm"}).raise_for_status()

    queries: list[float] = []

    def count(execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            queries.append(time.perf_counter() - started)

    worker = Worker(
        queue_names=["default"],
        interval=0,
        batch=True,
        backend_name="default",
        startup_delay=False,
        max_tasks=None,
        worker_id=f"bench-{uuid.uuid4().hex[:8]}",
        excluded_queue_names=[],
    )
    phases = _time_phases(queries)
    profiler = None
    if spec.get("profile"):
        import cProfile

        profiler = cProfile.Profile()
    with connection.execute_wrapper(count):
        confirmed_at = time.time()
        started = time.perf_counter()
        bulk.batch_confirm(user=user, batch=batch)
        if profiler:
            profiler.enable()
        worker.run()  # every task due now (the batch's run), then it stops
        if profiler:
            profiler.disable()
        elapsed = time.perf_counter() - started
    sandbox.get("/health", params={"mark": "done"}).raise_for_status()

    batch.refresh_from_db()
    items = batch.items.all()
    progress = bulk.batch_progress(batch)
    result = {
        "seconds": elapsed,
        "confirmed_at": confirmed_at,
        "state": batch.state,
        "values": batch.values,
        "items": items.count(),
        "outcomes": {k: n for k, n in progress.counts.items() if n},
        "without_outcome": items.exclude(state=BatchItem.State.DONE).count()
        + items.filter(state=BatchItem.State.DONE, outcome="").count(),
        "unknown": progress.counts.get("unknown", 0),
        "entries": AuditEntry.objects.filter(batch_id=str(batch.pk)).count(),
        "queries": len(queries),
        "query_seconds": sum(queries),
        "chunk_size": settings.BULK_CHUNK_SIZE,
        "phases": phases,
    }
    if profiler:
        import io
        import pstats

        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out).sort_stats("cumulative")
        stats.print_stats(r"tickets/(bulk|locks|audit)", 25)
        stats.print_callees(r"_update_items|_record_intents|append_many|entry_row")
        result["profile"] = out.getvalue()
    Path(spec_path).write_text(json.dumps({**spec, "result": result}))


# The worker's steps, timed from outside (wrappers installed in the dashboard's process
# only): (where it is looked up, its name, the phase it counts as).
PHASES = [
    ("runner", "_beat", "claim renewal and cancel check (_beat)"),
    ("runner", "_refusal", "author check (_refusal)"),
    ("runner", "_wait_out_rate_limit", "rate-limit wait"),
    ("runner", "_decide", "decide per ticket (_decide)"),
    ("runner", "_record_intents", "audit intents (_record_intents)"),
    ("runner", "_send", "PATCHes + outcomes by evidence (_send)"),
    ("runner", "_record_outcomes", "audit outcomes (_record_outcomes)"),
    ("runner", "_update_items", "items (_update_items)"),
    ("runner", "_chunk", "chunk, in all"),
]


APPEND_MANY = "* append_many (audit chain)"
LINK_ENTRIES = "* _link_entries (items -> entries)"
ORDER = [
    "claim renewal and cancel check (_beat)",
    "author check (_refusal)",
    "rate-limit wait",
    "edit locks: take",
    "re-reads (concurrent GETs)",
    "decide per ticket (_decide)",
    "audit intents (_record_intents)",
    "PATCHes + outcomes by evidence (_send)",
    "  of which the PATCHes (pool)",
    "audit outcomes (_record_outcomes)",
    "items (_update_items)",
    "edit locks: free",
    "chunk, in all",
    APPEND_MANY,
    LINK_ENTRIES,
]


def _time_phases(queries: list) -> dict:
    """Wrap the worker's steps to add up their wall time and database queries: each
    chunk's edit locks (taking and freeing them), its re-reads (the concurrent GETs),
    and the _Runner methods in PHASES. Returns the dict that fills as the run goes."""
    import contextlib

    from tickets import bulk, locks

    totals: dict[str, list] = {}  # phase -> [seconds, queries, calls]
    inside_send = [False]

    def add(phase, seconds, count):
        row = totals.setdefault(phase, [0.0, 0, 0])
        row[0] += seconds
        row[1] += count
        row[2] += 1

    def timed(phase, function):
        def wrapper(*args, **kwargs):
            started, before = time.perf_counter(), len(queries)
            try:
                return function(*args, **kwargs)
            finally:
                add(phase, time.perf_counter() - started, len(queries) - before)

        return wrapper

    for _, name, phase in PHASES:
        setattr(bulk._Runner, name, timed(phase, getattr(bulk._Runner, name)))
    send = bulk._Runner._send

    def send_marked(self, plans):
        inside_send[0] = True
        try:
            return send(self, plans)
        finally:
            inside_send[0] = False

    bulk._Runner._send = send_marked
    concurrently = bulk.concurrently

    def concurrently_timed(calls):
        phase = "  of which the PATCHes (pool)" if inside_send[0] else "re-reads (concurrent GETs)"
        return timed(phase, concurrently)(calls)

    bulk.concurrently = concurrently_timed

    def locks_timed(lock):
        """`lock` (one ticket's, or a chunk's), its taking and freeing timed apart."""

        @contextlib.contextmanager
        def wrapper(*args, **kwargs):
            started, before = time.perf_counter(), len(queries)
            manager = lock(*args, **kwargs)
            try:
                held = manager.__enter__()
            finally:
                add("edit locks: take", time.perf_counter() - started, len(queries) - before)
            try:
                yield held
            finally:
                started, before = time.perf_counter(), len(queries)
                manager.__exit__(None, None, None)
                add("edit locks: free", time.perf_counter() - started, len(queries) - before)

        return wrapper

    locks.ticket_edit_locks = locks_timed(locks.ticket_edit_locks)
    # Helpers the steps above spend their time in (nested in them).
    bulk.append_many = timed(APPEND_MANY, bulk.append_many)
    bulk._link_entries = timed(LINK_ENTRIES, bulk._link_entries)
    return totals


# -- the direct calls ---------------------------------------------------------------------


def direct_run(api: httpx.Client, pool, ids: list[str], values: dict, chunk: int) -> dict:
    """The minimal upstream work of the batch, chunk by chunk: GET each ticket, then the
    PATCHes for what differs. Returns the time and the calls made."""
    calls = Counter()
    started = time.perf_counter()
    for at in range(0, len(ids), chunk):
        part = ids[at : at + chunk]
        tickets = list(pool.map(lambda i: _ok(api.get(f"/v1/tickets/{i}"))["data"], part))
        calls["GET"] += len(part)
        bodies: dict[str, list[str]] = {}
        for ticket in tickets:
            # A due date cannot be read back (write-only): always sent.
            body = {k: v for k, v in values.items() if k == "dueDate" or ticket.get(k) != v}
            if body:
                bodies.setdefault(json.dumps(body, sort_keys=True), []).append(ticket["id"])
        sends = []
        for body, members in bodies.items():
            fields = json.loads(body)
            if set(fields) <= BULK_FIELDS:
                sends.append(("/v1/tickets/bulk", {**fields, "ticketIds": members}))
            else:
                sends += [(f"/v1/tickets/{m}", fields) for m in members]
        list(pool.map(lambda s: _ok(api.patch(s[0], json=s[1])), sends))
        calls["PATCH"] += len(sends)
    return {"seconds": time.perf_counter() - started, "calls": dict(calls)}


def _ok(response: httpx.Response) -> dict:
    if response.status_code != 200:
        raise Broken(f"{response.request.method} {response.request.url}: {response.text[:300]}")
    return response.json()


# -- the bench ------------------------------------------------------------------------------


def pick_team(api: httpx.Client, want: int) -> tuple[str, str, list[str]]:
    """The team with most tickets: (id, name, the ids of `want` of its tickets)."""
    teams = [t for t in _ok(api.get("/v1/teams"))["data"] if not t.get("parentTeamId")]
    best = None
    for team in teams:
        ids, page = [], 0
        while True:
            params = {"teamId": team["id"], "page": page, "limit": 100}
            rows = _ok(api.get("/v1/tickets", params=params))["data"]
            ids += [r["id"] for r in rows if r.get("teamId") == team["id"]]
            if len(rows) < 100:
                break
            page += 1
        if best is None or len(ids) > len(best[2]):
            best = (team["id"], team.get("name", ""), ids)
    if len(best[2]) < want:
        raise Broken(f"the largest team has {len(best[2])} tickets; raise --sandbox-tickets")
    return best[0], best[1], best[2][:want]


def sent_after_confirm(api: httpx.Client) -> tuple[Counter, Counter, Counter, int]:
    """From the sandbox's log, between the confirm and done marks: calls by method,
    PATCHes Thena carried out per ticket (answered 200), PATCHes sent per ticket (any
    answer), and answers 429."""
    log = _ok(api.get("/_bench/log"))
    marks = [i for i, row in enumerate(log) if row[2] in ("confirm", "done")]
    if len(marks) != 2:
        raise Broken(f"the sandbox log has {len(marks)} marks (expected 2)")
    window = log[marks[0] + 1 : marks[1]]
    calls = Counter(row[0] for row in window)
    patched = Counter(i for row in window if row[4] == 200 for i in row[3] or [])
    sent = Counter(i for row in window for i in row[3] or [])
    limited = sum(1 for row in window if row[4] == 429)
    return calls, patched, sent, limited


def bench(args, tmp: Path, procs: list) -> None:
    port = free_port()
    sandbox_url = f"http://127.0.0.1:{port}"
    database_url = args.database_url or os.environ.get("DATABASE_URL", "")
    database_url = database_url or f"sqlite:///{tmp / 'bench.sqlite3'}"
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "THENA_", "AUDIT_", "BULK_")) and k != "DATABASE_URL"
    }
    env = {
        **inherited,
        "DJANGO_SETTINGS_MODULE": "thena_admin.settings",
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "AUDIT_HMAC_KEY": "bench-bulk-edit-" + "k" * 32,  # a reused database keeps its chain
        "DATABASE_URL": database_url,
        "THENA_API_BASE_URL": sandbox_url,
        "THENA_API_KEY": API_KEY,
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
    }
    py, me = sys.executable, str(Path(__file__).resolve())
    sandbox_log = tmp / "sandbox.log"
    serve = [py, me, "--serve-sandbox", str(port), "--sandbox-tickets", str(args.sandbox_tickets)]
    procs.append(start([*serve, "--latency-ms", str(args.latency_ms)], env, sandbox_log))
    wait_until_up(f"{sandbox_url}/health", procs[0], sandbox_log)
    run([py, "manage.py", "migrate", "--noinput"], env, timeout=900)
    engine = "PostgreSQL" if database_url.startswith("postgres") else "SQLite"

    limits = httpx.Limits(max_connections=20, max_keepalive_connections=10)
    headers = {"x-api-key": API_KEY, "Accept": "application/json"}
    with (
        httpx.Client(base_url=sandbox_url, headers=headers, timeout=30, limits=limits) as api,
        ThreadPoolExecutor(max_workers=10) as pool,
    ):
        team, team_name, ids = pick_team(api, args.tickets)
        statuses = _ok(api.get("/v1/tickets/status", params={"teamId": team}))["data"]
        priorities = _ok(api.get("/v1/tickets/priority", params={"teamId": team}))["data"]
        # The values most of the tickets lack, so that nearly every ticket changes.
        held = Counter()
        for at in range(0, len(ids), 50):
            for t in pool.map(
                lambda i: _ok(api.get(f"/v1/tickets/{i}"))["data"], ids[at : at + 50]
            ):
                held[("statusId", t["statusId"])] += 1
                held[("priorityId", t["priorityId"])] += 1
        status = min(statuses, key=lambda s: held[("statusId", s["id"])])["id"]
        priority = min(priorities, key=lambda p: held[("priorityId", p["id"])])["id"]

        def dashboard(form: dict, rate: dict | None = None) -> dict:
            _ok(api.post("/_bench/reset"))
            spec = tmp / f"spec-{uuid.uuid4().hex[:6]}.json"
            spec.write_text(
                json.dumps(
                    {
                        "team": team,
                        "ids": ids,
                        "form": form,
                        "rate": rate,
                        "sandbox": sandbox_url,
                        "profile": args.profile,
                    }
                )
            )
            log = tmp / f"{spec.stem}.log"
            with log.open("wb") as out:
                done = subprocess.run(
                    [py, me, "--dashboard-run", str(spec)],
                    cwd=ROOT,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=1800,
                )
            if done.returncode:
                raise Broken(f"the dashboard's run failed:\n{log.read_text()[-3000:]}")
            result = json.loads(spec.read_text())["result"]
            if result["state"] != "done":
                raise Broken(f"the batch ended {result['state']}")
            calls, patched, sent, limited = sent_after_confirm(api)
            first = _ok(api.get("/_bench/first"))
            return {
                **result,
                "calls": calls,
                "patched": patched,
                "sent": sent,
                "limited": limited,
                "first": first,
            }

        def direct(values: dict, chunk: int) -> dict:
            _ok(api.post("/_bench/reset"))
            return direct_run(api, pool, ids, values, chunk)

        print(
            f"\n{args.tickets} tickets of team {team_name} ({engine}); sandbox --latency-ms "
            f"{args.latency_ms:g} in its own process; pool of 10 on both sides"
        )
        rows = []
        for label, form in (
            ("status + priority (bulk PATCH)", {"statusId": status, "priorityId": priority}),
            ("due date (one PATCH per ticket)", {"dueDate": DUE_DATE}),
        ):
            a = dashboard(form)
            b = direct(a["values"], a["chunk_size"])
            rows.append((label, a, b))
        rate = {"limit": args.rate_limit, "window": args.rate_window}
        limited = dashboard({"statusId": status, "priorityId": priority}, rate)
        lone = direct(limited["values"], limited["chunk_size"])  # no limit: B's pace

    print(f"BULK_CHUNK_SIZE {rows[0][1]['chunk_size']} (the default)\n")
    print(f"{'':34}{'A s':>8}{'B s':>8}{'A/B':>7}   calls A (GET/PATCH)  calls B")
    for label, a, b in rows:
        ratio = a["seconds"] / b["seconds"]
        verdict = "within" if ratio <= TARGET_DIRECT else "ABOVE"
        calls_a = f"{a['calls'].get('GET', 0)}/{a['calls'].get('PATCH', 0)}"
        calls_b = f"{b['calls'].get('GET', 0)}/{b['calls'].get('PATCH', 0)}"
        print(
            f"{label:34}{a['seconds']:>8.2f}{b['seconds']:>8.2f}{ratio:>7.2f}   "
            f"{calls_a:<21}{calls_b}   target <= {TARGET_DIRECT} ({verdict})"
        )

    calls = lone["calls"]["GET"] + lone["calls"]["PATCH"]
    windows = math.ceil(calls / args.rate_limit)
    last = calls - (windows - 1) * args.rate_limit
    tail = lone["seconds"] * last / calls
    # The sandbox's windows start on a whole second (as its X-RateLimit-Reset says): the
    # first one opened at `start`, up to a second before the first call, so it was short.
    opened = limited["first"]["window_start"] - limited["confirmed_at"]
    bound = opened + (windows - 1) * args.rate_window + tail
    ratio = limited["seconds"] / bound
    verdict = "within" if ratio <= TARGET_RATE else "ABOVE"
    print(
        f"\nrate limit {args.rate_limit} per {args.rate_window:g} s; N = {calls} minimal calls "
        f"-> ceil(N/L) = {windows} windows"
    )
    print(
        f"  bound = {opened:+.2f} s (the first window opened, from confirm) + {windows - 1} x "
        f"{args.rate_window:g} s + {tail:.2f} s (the last {last} calls at B's pace) = "
        f"{bound:.2f} s"
    )
    print(
        f"{'status + priority, rate-limited':34}{limited['seconds']:>8.2f} s   A / bound "
        f"{ratio:.2f}   target <= {TARGET_RATE} ({verdict})"
    )
    print(
        f"  A / ((ceil(N/L) - 1) x W + tail) = {limited['seconds'] / (bound - opened):.2f}; "
        f"A / (ceil(N/L) x W) = {limited['seconds'] / (windows * args.rate_window):.2f}; "
        f"calls A (GET/PATCH) {limited['calls'].get('GET', 0)}/"
        f"{limited['calls'].get('PATCH', 0)}, {limited['limited']} answered 429"
    )

    runs = [(r[0], r[1], r[2]) for r in rows] + [("rate-limited", limited, None)]
    print()
    for label, a, _ in runs:
        twice = sum(1 for n in a["patched"].values() if n > 1)
        again = sum(1 for n in a["sent"].values() if n > 1)
        print(
            f"{label:34}patched twice: {twice} (PATCHed again after a 429: {again}); "
            f"without an outcome: {a['without_outcome']}; unknown: {a['unknown']}"
        )
        print(f"{'':34}outcomes {a['outcomes']}; audit entries {a['entries']}")
    for label, a, b in runs:
        chunks = math.ceil(a["items"] / a["chunk_size"])
        print(
            f"\n{label}: {chunks} chunks; {a['queries']} DB queries "
            f"({a['queries'] / chunks:.0f} per chunk), {a['query_seconds']:.2f} s in the "
            "database driver"
        )
        print(f"  {'step (inclusive wall time)':42}{'s':>7}{'ms/chunk':>10}{'queries/chunk':>15}")
        phases = a["phases"]
        for phase in sorted(phases, key=lambda p: ORDER.index(p) if p in ORDER else 99):
            seconds, count, _ = phases[phase]
            print(
                f"  {phase:42}{seconds:>7.2f}{seconds / chunks * 1000:>10.1f}"
                f"{count / chunks:>15.1f}"
            )
        print("  (* called inside the steps above)")
        per_chunk = a["seconds"] / chunks * 1000
        print(f"  {'run, confirm -> done':42}{a['seconds']:>7.2f}{per_chunk:>10.1f}")
        if b:
            print(f"  {'B, direct':42}{b['seconds']:>7.2f}{b['seconds'] / chunks * 1000:>10.1f}")
    if args.profile:
        for label, a in [*((r[0], r[1]) for r in rows), ("rate-limited", limited)]:
            print(f"\n== cProfile of the worker loop (tickets code; all threads): {label} ==")
            print(a["profile"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=1000)
    parser.add_argument("--latency-ms", type=float, default=20)
    parser.add_argument("--rate-limit", type=int, default=200)
    parser.add_argument("--rate-window", type=int, default=2)
    parser.add_argument(
        "--database-url", default="", help="default: DATABASE_URL, else a throwaway SQLite file"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the worker loop")
    parser.add_argument("--sandbox-tickets", type=int, default=3000, help=argparse.SUPPRESS)
    parser.add_argument("--serve-sandbox", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--dashboard-run", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_sandbox:
        serve_sandbox(args.serve_sandbox, args.sandbox_tickets, args.latency_ms)
        return 0
    if args.dashboard_run:
        dashboard_run(args.dashboard_run)
        return 0
    if not 1 <= args.tickets <= 1000:
        parser.error("--tickets must be 1 to 1000 (BULK_MAX_TICKETS)")
    return run_bench(bench, args)


if __name__ == "__main__":
    sys.exit(main())
