"""How much time the dashboard adds to a filtered ticket list, over real HTTP. Prints;
asserts nothing.

    .venv/bin/python bench/ticket_list.py [--repeats 40] [--latency-ms 20]

Starts `thena_sandbox --latency-ms N` and gunicorn on free 127.0.0.1 ports with a
throwaway SQLite database and logs in as the demo `manager`. For each of three lists (the
filter of issue 14: a team, High, unassigned, a word, by priority; that team's open
tickets; the Unassigned view over every team, by priority) it GETs the page once to warm
the caches, then reads from the sandbox's log the upstream requests a warm page makes
(expected: one search) and takes turns with three timings: A, the page (GET
/tickets/?... until its whole body); B, that same search request, as logged, sent
directly with httpx; and F, the floor: a GET to the same gunicorn and middleware, logged
in, that sends only that search through the app's client and answers "ok"
(bench/floor_urls.py). The first list is also timed as the htmx partial a filter change
fetches. Prints the medians, A - B, the ratios A/B (target <= 1.2) and F/B, and the
upstream requests of each warm page.
"""

import argparse
import os
import re
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from urllib.parse import urlencode

import httpx
from edit_overhead import API_KEY, check, dashboard_start, login, ms
from processes import Broken, run_bench

TARGET = 1.2
WARMUP = 3
SEARCH = "/v1/search/tickets"


def logged_requests(api: httpx.Client, log: Path, action) -> list[str]:
    """The request lines ("GET /path?query") the sandbox logged while `action` ran,
    between two /health marks."""
    mark = uuid.uuid4().hex
    api.get(f"/health?mark={mark}-a")
    action()
    api.get(f"/health?mark={mark}-b")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = log.read_text(errors="replace").splitlines()
        ends = [i for i, line in enumerate(lines) if f"{mark}-" in line]
        if len(ends) == 2:
            # Each line is "METHOD target status".
            return [line.rsplit(" ", 1)[0] for line in lines[ends[0] + 1 : ends[1]]]
        time.sleep(0.05)
    raise Broken("the sandbox log shows no request lines (is its stdout buffered?)")


def search_all(api: httpx.Client, filter_by: str) -> list[dict]:
    params = {"q": "*", "query_by": "title", "filter_by": filter_by, "per_page": 250}
    got = api.get(SEARCH, params=params)
    check(got.status_code == 200, f"GET {SEARCH}", got)
    return [hit["document"] for hit in got.json()["result"]["hits"]]


def pick_lists(api: httpx.Client) -> list[tuple[str, str]]:
    """(label, query) of the lists timed: the team with most unassigned High tickets,
    and the word its titles share most (so the first list is never empty)."""
    unassigned = [
        t for t in search_all(api, "assignedAgentId:=null") if t.get("priority") == "High"
    ]
    if not unassigned:
        raise Broken("the sandbox has no unassigned High ticket")
    team_id, _ = Counter(t["teamId"] for t in unassigned).most_common(1)[0]
    team_name = next(t.get("teamName") or team_id for t in unassigned if t["teamId"] == team_id)
    words = Counter(
        word
        for t in unassigned
        if t["teamId"] == team_id
        for word in set(re.findall(r"[a-z]{5,}", t["title"].lower()))
    )
    word = min(words, key=lambda w: (-words[w], w))  # the same word every run
    # In the order of the list's own links (tickets.listing.TicketFilter's fields).
    issue = {
        "team": team_id,
        "q": word,
        "priority": "High",
        "assignee": "none",
        "sort": "priority",
    }
    open_queue = {"team": team_id, "status": "Open"}
    unassigned_view = {"assignee": "none", "sort": "priority"}
    return [
        (f'{team_name}, High, unassigned, "{word}", by priority', urlencode(issue)),
        (f"{team_name}, Open, recently updated", urlencode(open_queue)),
        ("every team, unassigned, by priority", urlencode(unassigned_view)),
    ]


def bench(args, tmp: Path, procs: list) -> None:
    web, sandbox_url, sandbox_log = dashboard_start(tmp, procs, args.latency_ms, floor=True)
    with (
        httpx.Client(base_url=web, timeout=30) as browser,
        httpx.Client(base_url=sandbox_url, headers={"x-api-key": API_KEY}, timeout=30) as api,
    ):
        login(browser, web)
        # What htmx sends when a filter changes (from the list as it was before).
        partial = {"HX-Request": "true", "HX-Target": "ticket-table"}
        partial["HX-Current-URL"] = f"{web}/tickets/"

        def page_get(url: str, headers: dict | None = None) -> float:
            started = time.perf_counter()
            response = browser.get(url, headers=headers)
            elapsed = time.perf_counter() - started
            check(response.status_code == 200 and 'class="count"' in response.text, url, response)
            return elapsed

        def direct_get(target: str) -> float:
            started = time.perf_counter()
            response = api.get(target)
            elapsed = time.perf_counter() - started
            check(response.status_code == 200, f"direct {target[:80]}", response)
            return elapsed

        def floor_get(target: str) -> float:
            url = f"/bench-floor/search/?{target.split('?', 1)[1]}"
            started = time.perf_counter()
            response = browser.get(url)
            elapsed = time.perf_counter() - started
            check(response.status_code == 200 and response.text == "ok", url[:80], response)
            return elapsed

        load_before = os.getloadavg()[0]
        results = []
        cases = [(label, query, None) for label, query in pick_lists(api)]
        cases.insert(1, ("  the same as the htmx partial (#ticket-table)", cases[0][1], partial))
        for label, query, headers in cases:
            url = f"/tickets/?{query}"
            shown = browser.get(url, headers=headers)  # warms the teams and their choices
            if shown.is_redirect and shown.headers["location"].startswith("/tickets/?"):
                url = shown.headers["location"]  # the list's own spelling of the same URL
                shown = browser.get(url, headers=headers)
            check(shown.status_code == 200, url, shown)
            found = re.search(r'class="count"[^>]*>\s*(\d+) ticket', shown.text)
            rows = shown.text.count('class="row-link"')
            lines = logged_requests(api, sandbox_log, lambda u=url, h=headers: page_get(u, h))
            searches = [line for line in lines if line.startswith(f"GET {SEARCH}?")]
            if not searches:
                raise Broken(f"{url} made no search call; the sandbox logged {lines}")
            target = searches[0].split(" ", 1)[1]
            # The request B sends must be the page's, byte for byte, as the sandbox saw it.
            same = logged_requests(api, sandbox_log, lambda t=target: direct_get(t))
            floor_same = logged_requests(api, sandbox_log, lambda t=target: floor_get(t))
            a, b, f = [], [], []
            turns = [
                (a, lambda u=url, h=headers: page_get(u, h)),
                (b, lambda t=target: direct_get(t)),
                (f, lambda t=target: floor_get(t)),
            ]
            for i in range(WARMUP + args.repeats):
                for times, timed in turns[i % 3 :] + turns[: i % 3]:  # each goes first in turn
                    times.append(timed())
            results.append(
                {
                    "label": label,
                    "url": url,
                    "a": a[WARMUP:],
                    "b": b[WARMUP:],
                    "f": f[WARMUP:],
                    "upstream": lines,
                    "identical": same == [searches[0]] == floor_same,
                    "found": found.group(1) if found else "?",
                    "rows": rows,
                    "bytes": (len(shown.content), len(api.get(target).content)),
                }
            )
        health = [direct_get("/health") for _ in range(WARMUP + args.repeats)][WARMUP:]
        load_after = os.getloadavg()[0]

    print(
        f"\n{args.repeats} repeats each, warm caches; sandbox --latency-ms {args.latency_ms:g};"
        " gunicorn 2x4; SQLite"
    )
    # Everything here shares the machine's cores: other work running at once shows here.
    print(f"load average (1 min) {load_before:.1f} before the timings, {load_after:.1f} after")
    print(f"{'':48}{'median ms':>10}{'p90 ms':>10}")
    print(f"{'one direct GET /health (a round trip)':48}{ms(health, 'median'):>10.1f}")
    for r in results:
        a, b = r["a"], r["b"]
        ratio = ms(a, "median") / ms(b, "median")
        verdict = "within" if ratio <= TARGET else "ABOVE"
        calls = len(r["upstream"])
        print(f"\n{r['label']}: {r['found']} found, {r['rows']} rows\n  {r['url']}")
        print(f"{'  A: the page':48}{ms(a, 'median'):>10.1f}{ms(a, 'p90'):>10.1f}")
        print(f"{'  B: its search, direct':48}{ms(b, 'median'):>10.1f}{ms(b, 'p90'):>10.1f}")
        added = ms(a, "median") - ms(b, "median")
        print(f"{'  A - B: what the dashboard adds':48}{added:>10.1f}", end="")
        print(f"   (the target allows {(TARGET - 1) * ms(b, 'median'):.1f})")
        print(f"{'  A / B':48}{ratio:>10.3f}{ms(a, 'p90') / ms(b, 'p90'):>10.3f}", end="")
        print(f"   target <= {TARGET} ({verdict} target)")
        floor = ms(r["f"], "median") / ms(b, "median")
        print(f"{'  F / B: the floor (the search alone, logged in)':48}{floor:>10.3f}")
        print(
            f"  a warm page costs {calls} upstream request(s) (expected 1)"
            + ("" if calls == 1 else f": {r['upstream']}")
        )
        print(
            f"  B and F send the page's request exactly: {'yes' if r['identical'] else 'NO'};"
            f" {r['bytes'][0]:,} bytes of page, {r['bytes'][1]:,} of search answer"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--latency-ms", type=float, default=20)
    args = parser.parse_args()
    if args.repeats < 2:
        parser.error("--repeats must be at least 2")
    return run_bench(bench, args)


if __name__ == "__main__":
    sys.exit(main())
