"""Two app instances and a task worker on one PostgreSQL, with the sandbox over HTTP, as
compose.yaml runs them: real gunicorn processes with the production settings module,
driven over HTTP. They must behave as one."""

import hashlib
import os
import re
import socket
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from django.db import connection

from tests.browser import form_data, replace, to_urlencoded
from tests.util import deployed_environment, logged_in, process_stop, shared_cache_clear
from tickets import tasks
from tickets.audit import RequestMeta, record_attempt, record_outcome
from tickets.models import AuditEntry
from tickets.thena.sandbox import SandboxApp, SandboxConfig
from tickets.thena.sandbox.server import make_server

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL"),
    pytest.mark.django_db(transaction=True),
]

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start(stack: ExitStack, args: list[str], env: dict, log: Path) -> subprocess.Popen:
    out = stack.enter_context(log.open("w"))
    process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    stack.callback(process_stop, process)
    return process


def _wait_until_live(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{url} exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/healthz/live", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not come up:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def collected_static():
    """The static files a production instance serves (whitenoise's manifest)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_SETTINGS")}
    env["DJANGO_DEBUG"] = "false"
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def deployment(tmp_path, manager, collected_static, settings):
    """(the sandbox, instance A's URL, instance B's URL, their environment), a worker
    running beside them."""
    # A hash the production settings can check (tests hash with MD5).
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    manager.set_password(PASSWORD)
    manager.save()
    shared_cache_clear()
    # The rate-limit window outlasts the test: a pause is never waited out.
    sandbox = SandboxApp(SandboxConfig(rate_window_seconds=3600))
    server = make_server(sandbox, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = deployed_environment(f"http://127.0.0.1:{server.server_address[1]}", WEB_CONCURRENCY="2")
    python = sys.executable
    gunicorn = str(Path(python).with_name("gunicorn"))
    with ExitStack() as stack:
        stack.callback(server.server_close)
        stack.callback(server.shutdown)
        urls = []
        for name in ("a", "b"):
            port = _free_port()
            log = tmp_path / f"{name}.log"
            args = [gunicorn, "-c", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}"]
            process = _start(stack, [*args, "thena_admin.wsgi"], env, log)
            urls.append((f"http://127.0.0.1:{port}", process, log))
        worker = tmp_path / "worker.log"
        _start(stack, [python, "manage.py", "db_worker", "--no-reload"], env, worker)
        for url, process, log in urls:
            _wait_until_live(url, process, log)
        yield sandbox, urls[0][0], urls[1][0], env
        stack.close()
    shared_cache_clear()


def _on(client: httpx.Client, url: str) -> httpx.Client:
    """The same browser (its cookies), sent to another instance."""
    other = httpx.Client(base_url=url, timeout=30)
    other.cookies = client.cookies
    return other


def _lists(sandbox: SandboxApp) -> list[str]:
    return [r.path for r in sandbox.requests if r.path == "/v1/tickets/status"]


def test_two_instances_and_a_worker_behave_as_one(deployment):
    sandbox, url_a, url_b, _ = deployment
    ticket, other = [t for t in sandbox.tickets() if t["teamIdentifier"] == "SUP"][:2]
    a = logged_in(url_a)
    b = _on(a, url_b)

    # A session made on A works on B. B's list of every team fetches each team's lists
    # (its filters offer their statuses...) once.
    sandbox.requests.clear()
    listing = b.get("/tickets/")
    assert listing.status_code == 200 and "manager" in listing.text
    teams = [t for t in sandbox.teams() if not t.get("parentTeamId")]
    assert len(_lists(sandbox)) == len(teams)

    # Lookups are fetched once for every instance: A's and B's pages use B's cached lists.
    page = a.get(f"/tickets/{ticket['id']}/")
    assert page.status_code == 200
    assert b.get(f"/tickets/{other['id']}/").status_code == 200
    assert len(_lists(sandbox)) == len(teams)

    # An edit saved through A is seen through B, history included.
    data = replace(form_data(page.text), "title", "Saved on A")
    saved = a.post(f"/tickets/{ticket['id']}/", content=to_urlencoded(data), headers=FORM)
    assert saved.status_code == 302, saved.text
    seen = b.get(f"/tickets/{ticket['id']}/")
    assert "Saved on A" in seen.text
    assert re.search(r'outcome-succeeded">succeeded', seen.text)

    # Thena's rate-limit pause met by A holds on B: B sends nothing until the reset.
    sandbox.fail_next(1, 429, only="GET")
    assert a.get(f"/tickets/{ticket['id']}/").status_code == 502
    sent = len(sandbox.requests)
    paused = b.get(f"/tickets/{other['id']}/")
    assert paused.status_code == 502 and "too many requests" in paused.text
    assert len(sandbox.requests) == sent


def _lost_edit(sandbox: SandboxApp, ticket: dict) -> AuditEntry:
    """An edit Thena applied whose answer was lost: recorded "unknown"."""
    entry = record_attempt(
        action="ticket.update",
        actor=None,
        ticket=ticket,
        changes={"title": {"before": ticket["title"], "after": "Lost"}},
        request_body={"title": "Lost"},
        meta=RequestMeta(request_id="deployed", client_ip=None, user_agent="pytest"),
        base_updated_at=ticket["updatedAt"],
    )
    sandbox.touch_ticket(ticket["id"], title="Lost")
    record_outcome(entry=entry, outcome="unknown", message="the answer was lost")
    return entry


def test_reconcilers_on_two_hosts_and_the_worker_settle_each_entry_once(deployment):
    sandbox, *_, env = deployment
    tickets = [t for t in sandbox.tickets() if t["teamIdentifier"] == "SUP"][:4]
    entries = [_lost_edit(sandbox, ticket) for ticket in tickets]

    # The worker runs a queued reconciliation once it is due.
    first = entries[0]
    tasks.reconcile_entry.using(run_after=datetime.now(UTC)).enqueue(first.pk)
    deadline = time.monotonic() + 20
    while not first.outcomes.filter(outcome="succeeded").exists():
        assert time.monotonic() < deadline, "the worker did not settle the entry"
        time.sleep(0.3)

    # Two hosts' cron runs at once settle the rest, each entry once.
    command = [sys.executable, "manage.py", "reconcile_audit", "--min-age-seconds", "0"]
    runs = [subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE) for _ in "ab"]
    for run in runs:
        assert run.wait(timeout=60) == 0
    for entry in entries:
        outcomes = entry.outcomes.order_by("id").values_list("outcome", flat=True)
        assert list(outcomes) == ["unknown", "succeeded"]


def _seed(env: dict, count: int) -> None:
    subprocess.run(
        [sys.executable, "manage.py", "seed_audit", "--count", str(count), "--force"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )


def test_a_million_entries_export_in_the_background_complete_and_checked(deployment, tmp_path):
    """As deployed: instance A queues the export, the worker writes it to the shared
    storage, instance B serves the file; its rows and SHA-256 are the database's."""
    _, a, b, env = deployment
    _seed(env, 1_000_000)
    client = logged_in(a)
    asked = client.get("/audit/export.csv")
    assert asked.status_code == 302, asked.text[:500]
    job_url = asked.headers["location"]
    deadline = time.monotonic() + 300
    while "Download the file" not in (page := client.get(job_url).text):
        assert "Failed" not in page, page[-2000:]
        assert time.monotonic() < deadline, "the export did not finish in 5 minutes"
        time.sleep(2)

    path = tmp_path / "export.csv"
    with _on(client, b).stream("GET", job_url + "download") as download, path.open("wb") as f:
        assert download.status_code == 200
        for chunk in download.iter_bytes(1 << 20):
            f.write(chunk)
    size = path.stat().st_size
    with path.open("rb") as f:
        f.seek(max(0, size - 300))
        trailer = f.read().rstrip(b"\r\n").rpartition(b"\n")[2].decode()
        mark, rows, sha = trailer.split(",")
        f.seek(0)
        digest, left = hashlib.sha256(), size - len(trailer) - 2  # the trailer and its CRLF
        while left:
            block = f.read(min(left, 1 << 20))
            digest.update(block)
            left -= len(block)
    export = AuditEntry.objects.filter(action="audit.export").latest("id")
    expected = AuditEntry.objects.filter(pk__lt=export.pk).count()
    assert expected >= 1_000_000
    hexdigest = digest.hexdigest()
    assert (mark, rows, sha) == ("#export-complete", f"rows={expected}", f"sha256={hexdigest}")
    settled = export.outcomes.get()
    assert settled.outcome == "succeeded"
    assert settled.message == f"{expected} rows exported in the background; SHA-256 {hexdigest}."


def test_a_streamed_export_cut_off_is_never_recorded_as_succeeded(deployment):
    """The server dies while the file streams: the download ends without its trailer and
    the export's entry stays pending (nothing says it succeeded)."""
    _, a, _, env = deployment
    _seed(env, 30_000)  # below EXPORT_BACKGROUND_ROWS: streamed
    client = logged_in(a)
    received = b""
    with client.stream("GET", "/audit/export.csv") as response:
        for chunk in response.iter_bytes():
            received += chunk
            if len(received) > 200_000:
                subprocess.run(["pkill", "-9", "-f", f"127.0.0.1:{a.rsplit(':', 1)[1]}"])
                break
    from tickets.audit import export_verify

    assert export_verify(received)[0] is False
    export = AuditEntry.objects.filter(action="audit.export").latest("id")
    assert not export.outcomes.filter(outcome="succeeded").exists()
