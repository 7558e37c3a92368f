"""How much time the dashboard adds to an edit, over real HTTP. Prints; asserts nothing.

    .venv/bin/python bench/edit_overhead.py [--edits 30] [--latency-ms 20]

Starts `thena_sandbox --latency-ms N` and gunicorn on free 127.0.0.1 ports with a
throwaway SQLite database, logs in as the demo `manager`, then takes turns with three
timings: A, an edit submitted through the dashboard (the POST until its 302); B, the two
upstream calls an edit needs (GET + PATCH) made directly with httpx; and F, the floor: a
POST to the same gunicorn and middleware, logged in, that makes only those two calls
through the app's client and redirects (bench/floor_urls.py), so no form, lock or audit
log. Prints the medians, the ratios A/B (target <= 1.10) and F/B, and how many upstream
requests a warm page and an edit cost.

Also the CPU the gunicorn workers spent on each POST (every thread of every worker, from
/proc/<pid>/task/*/schedstat, Linux): what the dashboard adds, on a busy machine too,
where waiting for a core stretches A but not that figure.
"""

import argparse
import os
import secrets
import statistics
import sys
import time
import uuid
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlencode

import httpx
from processes import ROOT, Broken, free_port, run, run_bench, start, wait_until_up

TARGET = 1.10
API_KEY = "sandbox-demo-key"
PASSWORD = "thena-manager-demo"  # seed_demo's `manager`
WARMUP = 3


def check(ok: bool, what: str, response: httpx.Response) -> None:
    if not ok:
        raise Broken(f"{what}: {response.status_code}\n{response.text[:1500]}")


class FormParser(HTMLParser):
    """What a browser submits for one <form id=...>: (name, value) pairs in order."""

    def __init__(self, form_id: str | None):
        super().__init__()
        self.form_id, self.inside, self.pairs = form_id, False, []
        self.select = self.option = self.textarea = None
        self.options: list = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.inside = a.get("id") == self.form_id
        if not self.inside or "disabled" in a:
            return
        kind = (a.get("type") or "text").lower()
        if tag == "input" and a.get("name") and kind not in ("submit", "button", "reset", "file"):
            if kind not in ("checkbox", "radio"):
                self.pairs.append((a["name"], a.get("value") or ""))
            elif "checked" in a:
                self.pairs.append((a["name"], "on" if a.get("value") is None else a["value"]))
        elif tag == "select":
            self.select, self.options = a, []
        elif tag == "option" and self.select is not None:
            self.option = [a.get("value"), "", "selected" in a]
            self.options.append(self.option)
        elif tag == "textarea" and a.get("name"):
            self.textarea = [a["name"], ""]

    def handle_data(self, data):
        if self.option is not None:
            self.option[1] += data
        if self.textarea is not None:
            self.textarea[1] += data

    def handle_endtag(self, tag):
        if tag == "form":
            self.inside = False
        elif tag == "option":
            self.option = None
        elif tag == "textarea" and self.textarea is not None:
            name, text = self.textarea
            self.pairs.append((name, text[1:] if text.startswith("\n") else text))
            self.textarea = None
        elif tag == "select" and self.select is not None:
            chosen = [o for o in self.options if o[2]]
            if not chosen and self.options and "multiple" not in self.select:
                chosen = self.options[:1]
            if self.select.get("name"):
                self.pairs += [
                    (self.select["name"], v if v is not None else t) for v, t, _ in chosen
                ]
            self.select = None


def form_pairs(html: str, form_id: str | None) -> list[tuple[str, str]]:
    parser = FormParser(form_id)
    parser.feed(html)
    return parser.pairs


def upstream_count(sandbox: httpx.Client, log: Path, action) -> int:
    """Requests the sandbox logged while `action` ran, between two /health marks."""
    mark = uuid.uuid4().hex
    sandbox.get(f"/health?mark={mark}-a")
    action()
    sandbox.get(f"/health?mark={mark}-b")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = log.read_text(errors="replace").splitlines()
        ends = [i for i, line in enumerate(lines) if f"{mark}-" in line]
        if len(ends) == 2:
            return ends[1] - ends[0] - 1
        time.sleep(0.05)
    raise Broken("the sandbox log shows no request lines (is its stdout buffered?)")


def cpu_seconds(master: int) -> float | None:
    """CPU time of gunicorn's workers so far (all threads), or None off Linux."""
    try:
        workers = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        total = 0
        for pid in workers:
            for task in Path(f"/proc/{pid}/task").iterdir():
                total += int((task / "schedstat").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return total / 1e9


def ms(seconds: list[float], q: str) -> float:
    if q == "median":
        return statistics.median(seconds) * 1000
    return statistics.quantiles(seconds, n=10, method="inclusive")[8] * 1000


def dashboard_start(
    tmp: Path, procs: list, latency_ms: float, *, floor: bool = False
) -> tuple[str, str, Path]:
    """The sandbox over HTTP at `latency_ms` and the dashboard under gunicorn (2 workers x
    4 threads, production settings) on it, from a fresh SQLite database with the demo
    users: (the dashboard's URL, the sandbox's, the sandbox's log). With `floor`, it also
    serves bench/floor_urls.py's views."""
    sandbox_port, web_port = free_port(), free_port()
    (tmp / "bench_settings.py").write_text(
        # DEBUG off uses the manifest storage: collect static files into tmp, not the repo.
        f"from thena_admin.settings import *  # noqa\nSTATIC_ROOT = {str(tmp / 'static')!r}\n"
        + ("ROOT_URLCONF = 'floor_urls'\n" if floor else "")
    )
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "THENA_", "AUDIT_")) and k != "CACHE_URL"
    }
    env = {
        **inherited,
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "AUDIT_HMAC_KEY": secrets.token_urlsafe(48),
        "DATABASE_URL": f"sqlite:///{tmp / 'bench.sqlite3'}",
        "THENA_API_BASE_URL": f"http://127.0.0.1:{sandbox_port}",
        "THENA_API_KEY": API_KEY,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "DJANGO_SETTINGS_MODULE": "bench_settings",
        "PYTHONPATH": os.pathsep.join([str(tmp), str(ROOT), str(ROOT / "bench")]),
        "PYTHONUNBUFFERED": "1",  # the sandbox logs one line per request to stdout
    }
    py = sys.executable
    sandbox_url, web = f"http://127.0.0.1:{sandbox_port}", f"http://127.0.0.1:{web_port}"
    sandbox_log, web_log = tmp / "sandbox.log", tmp / "gunicorn.log"
    sandbox_cmd = ["manage.py", "thena_sandbox", "--port", str(sandbox_port)]
    procs.append(start([py, *sandbox_cmd, "--latency-ms", str(latency_ms)], env, sandbox_log))
    for command in (
        ["migrate", "--noinput"],
        ["seed_demo", "--force"],
        ["collectstatic", "--noinput"],
    ):
        run([py, "manage.py", *command], env)
    gunicorn = ["-m", "gunicorn", "thena_admin.wsgi", "-b", f"127.0.0.1:{web_port}"]
    gunicorn += ["--workers", "2", "--threads", "4", "--graceful-timeout", "5"]
    procs.append(start([py, *gunicorn], env, web_log))
    wait_until_up(f"{sandbox_url}/health", procs[0], sandbox_log)
    wait_until_up(f"{web}/healthz", procs[1], web_log)
    return web, sandbox_url, sandbox_log


def login(browser: httpx.Client, web: str) -> None:
    """Log `browser` in as the demo manager, through the login form."""
    page = browser.get("/accounts/login/")
    token = dict(form_pairs(page.text, None)).get("csrfmiddlewaretoken") or ""
    answer = browser.post(
        "/accounts/login/",
        data={"username": "manager", "password": PASSWORD, "csrfmiddlewaretoken": token},
        headers={"Origin": web},
    )
    check(answer.status_code == 302 and "sessionid" in browser.cookies, "login", answer)


def bench(args, tmp: Path, procs: list) -> None:
    web, sandbox_url, sandbox_log = dashboard_start(tmp, procs, args.latency_ms, floor=True)
    with (
        httpx.Client(base_url=web, timeout=30) as browser,
        httpx.Client(base_url=sandbox_url, headers={"x-api-key": API_KEY}, timeout=30) as api,
    ):
        login(browser, web)
        listed = api.get("/v1/tickets", params={"limit": 50})
        check(listed.status_code == 200, "GET /v1/tickets", listed)
        ids = [t["id"] for t in listed.json()["data"]]
        run_id = uuid.uuid4().hex[:6]

        def dashboard_edit(ticket_id: str, title: str) -> float:
            url = f"/tickets/{ticket_id}/"
            page = browser.get(url)
            pairs = form_pairs(page.text, "edit-form")
            has_form = page.status_code == 200 and any(n == "snapshot" for n, _ in pairs)
            check(has_form, f"GET {url} (no edit form)", page)
            body = urlencode([(n, title if n == "title" else v) for n, v in pairs])
            headers = {"Content-Type": "application/x-www-form-urlencoded", "Origin": web}
            cpu_before = cpu_seconds(procs[1].pid)
            started = time.perf_counter()
            response = browser.post(url, content=body, headers=headers, follow_redirects=False)
            elapsed = time.perf_counter() - started
            cpu_after = cpu_seconds(procs[1].pid)
            if cpu_before is not None and cpu_after is not None:
                server_cpu.append(cpu_after - cpu_before)
            redirected = response.status_code == 302 and response.headers.get("location") == url
            check(redirected, f"POST {url} (not a 302 to {url})", response)
            return elapsed

        def direct_edit(ticket_id: str, title: str) -> float:
            started = time.perf_counter()
            got = api.get(f"/v1/tickets/{ticket_id}")
            between = time.perf_counter()
            patched = api.patch(f"/v1/tickets/{ticket_id}", json={"title": title})
            elapsed = time.perf_counter() - started
            check(got.status_code == 200, "direct GET", got)
            check(patched.status_code == 200, "direct PATCH", patched)
            single.append(between - started)
            return elapsed

        def floor_edit(ticket_id: str, title: str) -> float:
            url = f"/bench-floor/edit/{ticket_id}/"
            started = time.perf_counter()
            response = browser.post(url, data={"title": title}, follow_redirects=False)
            elapsed = time.perf_counter() - started
            check(response.status_code == 302, f"POST {url}", response)
            return elapsed

        a, b, f, single, server_cpu = [], [], [], [], []
        for i in range(WARMUP + args.edits):
            ticket_id = ids[i % len(ids)]
            turns = [(a, dashboard_edit, "dashboard"), (b, direct_edit, "direct")]
            turns.append((f, floor_edit, "floor"))
            for times, edit, who in turns[i % 3 :] + turns[: i % 3]:  # each goes first in turn
                times.append(edit(ticket_id, f"bench {run_id} {i} {who}"))
        a, b, f, single = a[WARMUP:], b[WARMUP:], f[WARMUP:], single[WARMUP:]
        server_cpu = server_cpu[WARMUP:]

        probe = f"/tickets/{ids[0]}/"
        browser.get(probe)  # warm (the same keep-alive connection, so the same worker)
        warm = upstream_count(api, sandbox_log, lambda: browser.get(probe))
        edit = upstream_count(
            api, sandbox_log, lambda: dashboard_edit(ids[0], f"bench {run_id} probe")
        )
        edit -= warm  # dashboard_edit GETs the page first

    rows = [("dashboard edit (POST -> 302)", a), ("direct GET + PATCH (httpx)", b)]
    rows += [("  of which one direct GET", single), ("floor: the two calls, no edit", f)]
    print(f"\n{args.edits} edits each; sandbox --latency-ms {args.latency_ms:g}; gunicorn 2x4")
    print(f"{'':32}{'median ms':>10}{'p90 ms':>10}")
    for label, values in rows:
        print(f"{label:32}{ms(values, 'median'):>10.1f}{ms(values, 'p90'):>10.1f}")
    ratio = ms(a, "median") / ms(b, "median")
    verdict = "within" if ratio <= TARGET else "ABOVE"
    print(f"{'ratio (median)':32}{ratio:>10.3f}   target <= {TARGET} ({verdict} target)")
    print(f"{'ratio (p90)':32}{ms(a, 'p90') / ms(b, 'p90'):>10.3f}")
    floor = ms(f, "median") / ms(b, "median")
    print(f"{'floor ratio (median)':32}{floor:>10.3f}   (F/B: what is left to the edit itself)")
    if len(server_cpu) >= 2:
        print(f"{'gunicorn CPU per edit POST':32}{ms(server_cpu, 'median'):>10.1f}", end="")
        print(f"{ms(server_cpu, 'p90'):>10.1f}   (median, p90 ms)")
    print(f"A warm edit page costs {warm} upstream request(s) (expected 1)")
    print(f"A dashboard edit (POST) costs {edit} upstream request(s) (the direct path makes 2)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=30)
    parser.add_argument("--latency-ms", type=float, default=20)
    args = parser.parse_args()
    if args.edits < 2:
        parser.error("--edits must be at least 2")
    return run_bench(bench, args)


if __name__ == "__main__":
    sys.exit(main())
