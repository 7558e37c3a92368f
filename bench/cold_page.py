"""How long a cold ticket page takes, in round trips to Thena. Prints; asserts nothing.

    .venv/bin/python bench/cold_page.py [--pages 7] [--latency-ms 200]

Serves the sandbox over HTTP on a free 127.0.0.1 port, each request --latency-ms slow,
and runs the app in this process on a throwaway SQLite database (its cache included),
with Django's test client logged in as a superuser. For tickets of every team in turn:
clears the cache, times the first GET of the ticket's edit page (cold: the ticket and
every list of choices), then a second GET (warm: the ticket only). Prints the medians as
multiples of one round trip, the median GET /health of the same sandbox. Targets: a cold
page at most 3 round trips, a warm page about 1. (The slowest cold page may be ~1 s more:
see bench/README.md on the sandbox server's listen queue.)
"""

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
TARGET = 3.0


def setup_django(tmp: Path) -> None:
    sys.path.insert(0, str(ROOT))
    for name in list(os.environ):
        if name.startswith(("DJANGO_", "THENA_", "AUDIT_", "DATABASE_URL", "CACHE_URL")):
            del os.environ[name]  # this run's settings only
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "thena_admin.settings",
            "DJANGO_DEBUG": "true",  # plain static files: nothing to collect for one run
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "AUDIT_HMAC_KEY": secrets.token_urlsafe(48),
            "DATABASE_URL": f"sqlite:///{tmp / 'bench.sqlite3'}",
            "DJANGO_ALLOWED_HOSTS": "testserver",
        }
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def timed(call) -> tuple[object, float]:
    started = time.perf_counter()
    result = call()
    return result, time.perf_counter() - started


def bench(args, tmp: Path) -> int:
    setup_django(tmp)
    from django.contrib.auth import get_user_model
    from django.core.cache import cache
    from django.test import Client

    from tickets.thena.client import ThenaClient, set_client
    from tickets.thena.sandbox import DEMO_API_KEY, SandboxApp, SandboxConfig
    from tickets.thena.sandbox.server import make_server

    app = SandboxApp(SandboxConfig(latency_ms=args.latency_ms))
    server = make_server(app, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base_url = f"http://127.0.0.1:{server.server_address[1]}"
    client = ThenaClient(base_url, DEMO_API_KEY)
    set_client(client)
    try:
        with httpx.Client(base_url=base_url) as direct:
            direct.get("/health")  # the connection, once
            rtt = statistics.median(timed(lambda: direct.get("/health"))[1] for _ in range(7))

        user = get_user_model().objects.create_superuser("bench", "bench@example.com", None)
        browser = Client()
        browser.force_login(user)
        by_team: dict[str, list[dict]] = {}
        for ticket in app.tickets():
            by_team.setdefault(ticket["teamId"], []).append(ticket)
        teams = list(by_team.values())
        cold, warm, upstream = [], [], []
        for i in range(args.pages):
            ticket = teams[i % len(teams)][i // len(teams)]
            url = f"/tickets/{ticket['id']}/"
            cache.clear()
            before = len(app.requests)
            page, seconds = timed(lambda url=url: browser.get(url))
            upstream.append(len(app.requests) - before)
            if page.status_code != 200 or b'id="edit-form"' not in page.content:
                print(f"GET {url}: {page.status_code}, no edit form", file=sys.stderr)
                return 1
            if b"Thena did not send the list of" in page.content:
                print(f"GET {url}: a list of choices is missing", file=sys.stderr)
                return 1
            cold.append(seconds)
            warm.append(timed(lambda url=url: browser.get(url))[1])
        together, fetches = at_once(app, browser, teams[0][:WORKERS])
    finally:
        set_client(None)
        client.close()
        server.shutdown()
        server.server_close()

    cold_ratio = statistics.median(cold) / rtt
    warm_ratio = statistics.median(warm) / rtt
    verdict = "within" if cold_ratio <= TARGET else "ABOVE"
    print(f"\n{args.pages} ticket pages; sandbox over HTTP, --latency-ms {args.latency_ms:g}")
    print(f"{'one round trip (GET /health)':34}{rtt * 1000:>9.1f} ms")
    print(f"{'cold page (median)':34}{statistics.median(cold) * 1000:>9.1f} ms")
    print(f"{'cold page (slowest)':34}{max(cold) * 1000:>9.1f} ms")
    print(f"{'warm page (median)':34}{statistics.median(warm) * 1000:>9.1f} ms")
    print(f"{'cold page / round trip':34}{cold_ratio:>9.2f}    target <= {TARGET:g} ({verdict})")
    print(f"{'warm page / round trip':34}{warm_ratio:>9.2f}    expected about 1")
    requests = statistics.median(upstream)
    print(f"A cold page makes {requests:g} upstream requests ({requests:g} round trips one by one)")
    print(
        f"{WORKERS} cold pages of one team at once: the slowest {max(together) / rtt:.2f} "
        f"round trips; the team's lists fetched {fetches} time(s) (expected 1)"
    )
    return 0


WORKERS = 3


def at_once(app, browser, tickets: list[dict]) -> tuple[list[float], int]:
    """`tickets` (one team's) opened at the same moment with an empty cache, one thread
    each as separate workers would: their times, and how often the team's statuses were
    fetched (the shared cache should make it once)."""
    from django.core.cache import cache
    from django.db import connection

    cache.clear()
    before = len(app.requests)
    start = threading.Barrier(len(tickets))
    times: list[float] = []

    def worker(ticket: dict) -> None:
        start.wait()
        times.append(timed(lambda: browser.get(f"/tickets/{ticket['id']}/"))[1])
        connection.close()

    threads = [threading.Thread(target=worker, args=(t,)) for t in tickets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = [r for r in app.requests[before:] if r.path == "/v1/tickets/status"]
    return times, len(statuses)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=7)
    parser.add_argument("--latency-ms", type=float, default=200)
    args = parser.parse_args()
    if args.pages < 1 or args.latency_ms <= 0:
        parser.error("--pages must be at least 1 and --latency-ms above 0")
    with tempfile.TemporaryDirectory(prefix="thena-bench-") as tmp:
        return bench(args, Path(tmp))


if __name__ == "__main__":
    sys.exit(main())
