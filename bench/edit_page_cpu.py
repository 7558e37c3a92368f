"""How much CPU the edit page and an edit cycle cost, against the sandbox's own. Prints;
asserts nothing.

    .venv/bin/python bench/edit_page_cpu.py [--requests 200] [--cycles 100] [--repeats 5]
        [--database-url URL] [--profile] [--queries]

Everything runs in this one process, as DJANGO_DEBUG=false with the production static
files storage (collected into a temp dir) and the default shared cache (the database's):
the app through Django's test client, logged in as the demo `manager`, against the
in-process sandbox with no latency, so every CPU second spent is counted by
time.process_time (the sandbox's share too; it is measured alone and subtracted below).
The database is a throwaway SQLite file unless --database-url or DATABASE_URL names one
(PostgreSQL then works in its own processes, which process_time does not see).

Rows, each the median over --repeats batches (the fastest batch in brackets):
1. page: a warm GET of a ticket's edit page (the ticket from Thena, the team's choices
   from the cache), CPU per request; target <= 10 ms. Its Thena GET (the app's client
   and the sandbox answering it, timed alone) is shown apart, and the page without it.
2. edit cycle: that GET, then the POST that saves a new title (until its 302), CPU per
   cycle, and cycles per second per core (1 / CPU). Parsing the page for the form's
   fields, as a browser would, is not counted.
3. direct: the sandbox's GET + PATCH of the same ticket through httpx (the in-process
   transport), CPU per pair and pairs per second per core: the bound an edit cycle is
   compared with.
--profile prints cProfile's top functions over 50 page GETs and 50 saves; --queries the
database queries of one page GET and one save (the save's split at its Thena calls).
"""

import argparse
import cProfile
import io
import logging
import os
import pstats
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode

from edit_overhead import form_pairs

ROOT = Path(__file__).resolve().parent.parent
TARGET_PAGE_MS = 10.0


def setup_django(tmp: Path, database_url: str) -> None:
    sys.path.insert(0, str(tmp))
    sys.path.insert(0, str(ROOT))
    for name in list(os.environ):
        if name.startswith(("DJANGO_", "THENA_", "AUDIT_", "DATABASE_URL", "CACHE_URL")):
            del os.environ[name]  # this run's settings only
    (tmp / "bench_settings.py").write_text(
        f"from thena_admin.settings import *  # noqa\nSTATIC_ROOT = {str(tmp / 'static')!r}\n"
    )
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "bench_settings",
            "DJANGO_DEBUG": "false",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "AUDIT_HMAC_KEY": secrets.token_urlsafe(48),
            "DATABASE_URL": database_url or f"sqlite:///{tmp / 'bench.sqlite3'}",
            "DJANGO_ALLOWED_HOSTS": "testserver",
        }
    )
    import django

    django.setup()
    # The app logs a JSON line per request and per Thena call, as in production: into a
    # file, so that they cost what they cost without flooding the terminal.
    logging.getHandlerByName("console").setStream((tmp / "app.log").open("w"))
    from django.core.management import call_command

    quiet = io.StringIO()
    call_command("migrate", verbosity=0, stdout=quiet)
    call_command("collectstatic", "--noinput", verbosity=0, stdout=quiet)
    call_command("seed_demo", "--force", stdout=quiet)


def cpu(call) -> float:
    started = time.process_time()
    call()
    return time.process_time() - started


def summary(values: list[float]) -> tuple[float, float]:
    return statistics.median(values), min(values)


def bench(args, tmp: Path) -> int:
    setup_django(tmp, args.database_url)
    import httpx
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from tickets.thena.client import SANDBOX_BASE_URL, ThenaClient, sandbox_transport, set_client
    from tickets.thena.sandbox import DEMO_API_KEY, SandboxApp, SandboxConfig

    app = SandboxApp(SandboxConfig())
    client = ThenaClient(SANDBOX_BASE_URL, DEMO_API_KEY, transport=sandbox_transport(app))
    set_client(client)
    direct = httpx.Client(
        base_url=SANDBOX_BASE_URL,
        transport=sandbox_transport(app),
        headers={"x-api-key": DEMO_API_KEY},
    )
    browser = Client()
    browser.force_login(get_user_model().objects.get(username="manager"))
    tickets = [t for t in app.tickets() if t["teamIdentifier"] == "SUP"][:10]
    urls = [f"/tickets/{t['id']}/" for t in tickets]
    run_id = uuid.uuid4().hex[:6]
    counter = iter(range(10**9))

    def page(url: str):
        response = browser.get(url)
        if response.status_code != 200 or b'id="edit-form"' not in response.content:
            raise SystemExit(f"GET {url}: {response.status_code}, no edit form")
        return response

    def save(url: str, html: str) -> None:
        title = f"bench {run_id} {next(counter)}"
        pairs = form_pairs(html, "edit-form")
        body = urlencode([(n, title if n == "title" else v) for n, v in pairs])
        response = browser.post(url, body, content_type="application/x-www-form-urlencoded")
        if response.status_code != 302:
            raise SystemExit(f"POST {url}: {response.status_code}, not a redirect")

    for url in urls:  # warm: the choices in the cache, the templates compiled
        save(url, page(url).content.decode())
        page(url)

    def page_batch() -> float:
        n = args.requests
        return cpu(lambda: [page(urls[i % len(urls)]) for i in range(n)]) / n

    def thena_get_batch() -> float:
        n = args.requests
        ids = [tickets[i % len(tickets)]["id"] for i in range(n)]
        return cpu(lambda: [client.get_ticket(ticket_id) for ticket_id in ids]) / n

    def cycle_batch() -> float:
        spent = 0.0
        for i in range(args.cycles):
            url = urls[i % len(urls)]
            started = time.process_time()
            html = page(url).content.decode()
            spent += time.process_time() - started
            pairs = form_pairs(html, "edit-form")  # the browser's work: not counted
            title = f"bench {run_id} {next(counter)}"
            body = urlencode([(n, title if n == "title" else v) for n, v in pairs])
            started = time.process_time()
            response = browser.post(url, body, content_type="application/x-www-form-urlencoded")
            spent += time.process_time() - started
            if response.status_code != 302:
                raise SystemExit(f"POST {url}: {response.status_code}, not a redirect")
        return spent / args.cycles

    def direct_batch() -> float:
        def pair(i: int) -> None:
            ticket_id = tickets[i % len(tickets)]["id"]
            got = direct.get(f"/v1/tickets/{ticket_id}")
            patched = direct.patch(
                f"/v1/tickets/{ticket_id}", json={"title": f"direct {run_id} {i}"}
            )
            if got.status_code != 200 or patched.status_code != 200:
                raise SystemExit(f"direct GET/PATCH: {got.status_code}/{patched.status_code}")

        n = args.cycles
        return cpu(lambda: [pair(i) for i in range(n)]) / n

    pages, gets, cycles, pairs = [], [], [], []
    for _ in range(args.repeats):  # interleaved, so that a busy moment hits each alike
        pages.append(page_batch())
        gets.append(thena_get_batch())
        cycles.append(cycle_batch())
        pairs.append(direct_batch())

    page_ms, page_best = (v * 1000 for v in summary(pages))
    get_ms, get_best = (v * 1000 for v in summary(gets))
    cycle_ms, cycle_best = (v * 1000 for v in summary(cycles))
    pair_ms, pair_best = (v * 1000 for v in summary(pairs))
    own = [p - g for p, g in zip(pages, gets, strict=True)]
    own_ms, own_best = (v * 1000 for v in summary(own))
    db = connection.vendor
    print(
        f"\n{args.repeats} batches of {args.requests} page GETs and {args.cycles} edit cycles; "
        f"in-process sandbox, no latency; {db}; CPU per request (fastest batch)"
    )
    verdict = "within" if page_ms <= TARGET_PAGE_MS else "ABOVE"
    print(
        f"{'edit page (warm GET)':42}{page_ms:>8.2f} ms ({page_best:.2f})   target <= "
        f"{TARGET_PAGE_MS:g} ms ({verdict})"
    )
    print(f"{'  of which its Thena GET (client+sandbox)':42}{get_ms:>8.2f} ms ({get_best:.2f})")
    print(f"{'  the page without it':42}{own_ms:>8.2f} ms ({own_best:.2f})")
    print(f"{'edit cycle (GET page + POST save)':42}{cycle_ms:>8.2f} ms ({cycle_best:.2f})")
    print(f"{'direct GET + PATCH (httpx, sandbox)':42}{pair_ms:>8.2f} ms ({pair_best:.2f})")
    print(
        f"{'edit cycles per second per core':42}{1000 / cycle_ms:>8.0f}      "
        f"direct pairs: {1000 / pair_ms:.0f} (x{cycle_ms / pair_ms:.1f} the CPU)"
    )
    if db != "sqlite":
        print("(the database server's CPU, in its own processes, is not counted)")

    if args.queries:
        url = urls[0]
        with CaptureQueriesContext(connection) as got:
            html = page(url).content.decode()
        print(f"\nqueries of one page GET: {len(got)}")
        for query in got.captured_queries:
            print(f"  {query['sql'][:150]}")
        calls = []
        original = client._request

        def marked(*a, **k):
            calls.append(len(connection.queries) - got.initial_queries)
            return original(*a, **k)

        client._request = marked
        try:
            with CaptureQueriesContext(connection) as got:
                save(url, html)
        finally:
            client._request = original
        print(f"queries of one save: {len(got)} (Thena calls after query {calls})")
        for number, query in enumerate(got.captured_queries):
            print(f"  {number:>2} {query['sql'][:150]}")

    if args.profile:
        for label, action in (
            ("50 page GETs", lambda i: page(urls[i % len(urls)])),
            ("50 saves", None),
        ):
            profile = cProfile.Profile()
            for i in range(50):
                url = urls[i % len(urls)]
                if action is None:  # a save: its page is fetched outside the profile
                    html = page(url).content.decode()
                    profile.runcall(save, url, html)
                else:
                    profile.runcall(action, i)
            out = io.StringIO()
            stats = pstats.Stats(profile, stream=out).sort_stats("cumulative")
            stats.print_stats(r"tickets|django/(template|forms|db|contrib)|httpx|structlog", 40)
            print(f"\n-- {label} --{out.getvalue()}")
    set_client(None)
    client.close()
    direct.close()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--cycles", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", ""))
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--queries", action="store_true")
    args = parser.parse_args()
    if args.requests < 1 or args.cycles < 1 or args.repeats < 1:
        parser.error("--requests, --cycles and --repeats must be at least 1")
    with tempfile.TemporaryDirectory(prefix="thena-bench-") as tmp:
        return bench(args, Path(tmp))


if __name__ == "__main__":
    sys.exit(main())
