"""Guards for running several processes: Thena's rate limit shared through the cache, the
in-process sandbox refused where several processes would serve it, `check --deploy`,
gunicorn.conf.py, and the dev-only management commands."""

import argparse
import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.core.management import (
    BaseCommand,
    CommandError,
    call_command,
    find_commands,
    load_command_class,
)
from django.db import connection
from pytest_django.asserts import assertContains

from tickets import checks
from tickets.models import AuditEntry
from tickets.thena.client import (
    SANDBOX_BASE_URL,
    ThenaClient,
    concurrently,
    request_budget,
    sandbox_transport,
    set_client,
)
from tickets.thena.errors import ThenaRateLimited
from tickets.thena.sandbox import DEMO_API_KEY, SandboxApp, SandboxConfig

ROOT = Path(__file__).resolve().parent.parent


def _client(sandbox: SandboxApp, sleeps: list[float] | None = None, **options) -> ThenaClient:
    """A client of its own, as another process would have; all share the cache."""
    sleep = sleeps.append if sleeps is not None else lambda seconds: None
    return ThenaClient(
        SANDBOX_BASE_URL, DEMO_API_KEY, transport=sandbox_transport(sandbox), sleep=sleep, **options
    )


def _near_reset_sandbox(**config) -> SandboxApp:
    """A sandbox whose rate window resets 0.5 to 1.5 s from now (its clock runs 58.5 s
    behind, and a window lasts 60 s from the whole second it started)."""
    behind = timedelta(seconds=58.5)
    return SandboxApp(SandboxConfig(**config), clock=lambda: datetime.now(UTC) - behind)


# --- Thena's rate limit, shared by every process ----------------------------------------


def test_a_429_in_one_process_makes_another_fail_fast_without_sending():
    first, second = SandboxApp(), SandboxApp()
    one, other = _client(first), _client(second)
    first.fail_next(1, status=429)  # the sandbox's window resets in 60 s

    with pytest.raises(ThenaRateLimited) as answered:
        one.teams()
    started = time.monotonic()
    with pytest.raises(ThenaRateLimited) as refused:
        other.teams()

    assert time.monotonic() - started < 0.1
    assert second.requests == []
    assert refused.value.retry_at == answered.value.retry_at == one.rate_limit.reset_at
    assert 50 <= refused.value.retry_after_seconds <= 60
    assert refused.value.status_code is None  # no answer: nothing was sent
    assert "not sent" in refused.value.detail
    assert "Try again in" in refused.value.user_message


def test_none_remaining_pauses_every_process_until_the_reset():
    first, second = SandboxApp(SandboxConfig(rate_limit=1)), SandboxApp()
    one, other = _client(first), _client(second)

    assert one.teams()  # answered, with X-RateLimit-Remaining: 0
    with pytest.raises(ThenaRateLimited):
        other.teams()
    with pytest.raises(ThenaRateLimited):
        one.teams()

    assert second.requests == []
    assert [r.status for r in first.requests] == [200]  # no 429 asked for


def test_after_the_reset_requests_go_out_again():
    first, second = _near_reset_sandbox(rate_limit=1), SandboxApp()
    one, other = _client(first), _client(second, max_rate_limit_wait=0)  # never waits
    one.teams()
    reset_at = one.rate_limit.reset_at

    with pytest.raises(ThenaRateLimited):
        other.teams()
    assert second.requests == []
    time.sleep(max(0.0, (reset_at - datetime.now(UTC)).total_seconds()) + 0.05)

    assert other.teams()
    assert len(second.requests) == 1


def test_a_near_reset_is_waited_for_within_the_request_budget(sleeps):
    first, second = _near_reset_sandbox(rate_limit=1), SandboxApp()
    one, other = _client(first), _client(second, sleeps)
    one.teams()

    assert other.teams()

    assert len(sleeps) == 1 and 0.3 < sleeps[0] <= 1.5
    assert len(second.requests) == 1


def test_a_wait_longer_than_the_request_budget_fails_fast(sleeps):
    first, second = _near_reset_sandbox(rate_limit=1), SandboxApp()
    one, other = _client(first), _client(second, sleeps)
    one.teams()

    with request_budget(0.2), pytest.raises(ThenaRateLimited):
        other.teams()
    with pytest.raises(ThenaRateLimited):
        other.ping()  # no retries: never waits either

    assert sleeps == []
    assert second.requests == []


def test_a_patch_during_the_pause_is_not_sent_and_surely_not_applied():
    first, second = SandboxApp(), SandboxApp()
    ticket = second.tickets()[0]
    first.fail_next(1, status=429)
    with pytest.raises(ThenaRateLimited):
        _client(first).teams()

    with pytest.raises(ThenaRateLimited) as refused:
        _client(second).update_ticket(ticket["id"], {"title": "Later"})

    assert not refused.value.outcome_unknown
    assert second.requests == []


def test_a_429_in_a_side_by_side_lookup_pauses_the_other_processes():
    first, second = SandboxApp(), SandboxApp()
    first.fail_next(1, status=429)
    one, other = _client(first), _client(second)

    got = concurrently({"teams": one.teams})  # in one of the client's worker threads

    assert isinstance(got["teams"], ThenaRateLimited)
    with pytest.raises(ThenaRateLimited):
        other.teams()
    assert isinstance(concurrently({"teams": other.teams})["teams"], ThenaRateLimited)
    assert second.requests == []


@pytest.mark.django_db
def test_the_pause_is_shared_through_the_database_cache(settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "thena_admin_cache",
        }
    }
    first, second = SandboxApp(), SandboxApp()
    first.fail_next(1, status=429)
    with pytest.raises(ThenaRateLimited):
        _client(first).teams()

    with connection.cursor() as cursor:
        cursor.execute("SELECT cache_key FROM thena_admin_cache")
        keys = [row[0] for row in cursor.fetchall()]
    assert any("thena:rate-limit-pause:" in key for key in keys)
    with pytest.raises(ThenaRateLimited):
        _client(second).teams()
    assert second.requests == []


@pytest.mark.django_db
def test_the_page_says_when_to_try_again_and_sends_nothing(viewer_client):
    first, second = SandboxApp(), SandboxApp()
    first.fail_next(1, status=429)
    with pytest.raises(ThenaRateLimited):
        _client(first).teams()
    set_client(_client(second))

    response = viewer_client.get("/tickets/")

    assert response.status_code == 200
    assert "Try again in" in response.content.decode()
    assert second.requests == []


@pytest.mark.django_db
def test_a_warm_list_sends_no_search_during_another_process_pause(viewer_client):
    # The list's search runs in a worker thread, which reads this process's copy of the
    # pause: the page brings it up to date from the shared cache first.
    first, second = SandboxApp(), SandboxApp()
    set_client(_client(second))
    assert viewer_client.get("/tickets/").status_code == 200  # teams and choices cached
    second.requests.clear()
    first.fail_next(1, status=429)
    with pytest.raises(ThenaRateLimited):
        _client(first).teams()

    response = viewer_client.get("/tickets/")

    assertContains(response, "Try again in")
    assert second.requests == []


def test_the_pause_ends_with_the_cache_entry():
    first, second = SandboxApp(), SandboxApp()
    first.fail_next(1, status=429)
    with pytest.raises(ThenaRateLimited):
        _client(first).teams()

    cache.clear()  # e.g. the entry expired at the reset

    assert _client(second).teams()


# --- The in-process sandbox is for one process ------------------------------------------


def _env(**env: str) -> dict[str, str]:
    """This environment without our settings or pytest's mark, plus `env`."""
    prefixes = ("DJANGO_", "THENA_", "AUDIT_", "WEB_CONCURRENCY", "PROMETHEUS_")
    base = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    for name in ("PYTEST_VERSION", "DATABASE_URL", "SERVER_SOFTWARE", "CACHE_URL"):
        base.pop(name, None)
    keys = {"DJANGO_SECRET_KEY": "k" * 60, "AUDIT_HMAC_KEY": "a" * 60}
    return {**base, **keys, "PYTHONUNBUFFERED": "1", **env}


def _run(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


POSTGRES = "postgres://thena:secret@127.0.0.1:1/thena_admin"  # never reached


def test_runserver_refuses_the_in_process_sandbox_with_postgresql():
    result = _run("manage.py", "runserver", "--noreload", "127.0.0.1:1", DATABASE_URL=POSTGRES)

    assert result.returncode != 0
    assert "THENA_API_BASE_URL is empty" in result.stderr
    assert "manage.py thena_sandbox" in result.stderr
    assert "THENA_ALLOW_IN_PROCESS_SANDBOX=true" in result.stderr


def test_management_commands_are_not_servers_and_keep_the_sandbox():
    result = _run("manage.py", "check", DATABASE_URL=POSTGRES)

    assert result.returncode == 0, result.stderr


def test_the_guard_refuses_only_servers_and_only_unless_allowed(settings, monkeypatch):
    settings.THENA_API_BASE_URL = ""
    shared_database = connection.vendor != "sqlite"  # `make test-postgres`: PostgreSQL
    monkeypatch.delenv("SERVER_SOFTWARE", raising=False)
    monkeypatch.setattr(sys, "argv", ["manage.py", "migrate"])
    checks.guard_in_process_sandbox()  # not a server

    monkeypatch.setenv("SERVER_SOFTWARE", "gunicorn/23.0.0")
    assert checks.serving()
    if shared_database:
        with pytest.raises(ImproperlyConfigured, match="thena_sandbox"):
            checks.guard_in_process_sandbox()
    else:
        checks.guard_in_process_sandbox()  # SQLite: one host, and gunicorn.conf.py counts
    settings.THENA_ALLOW_IN_PROCESS_SANDBOX = True
    checks.guard_in_process_sandbox()
    settings.THENA_ALLOW_IN_PROCESS_SANDBOX = False
    settings.THENA_API_BASE_URL = "https://platform.thena.ai"
    checks.guard_in_process_sandbox()


def test_make_demo_still_serves_runserver_with_sqlite_and_the_sandbox(tmp_path):
    port = _free_port()
    env = _env(DJANGO_DEBUG="true", DATABASE_URL=f"sqlite:///{tmp_path / 'demo.sqlite3'}")
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        response = _wait_for(f"http://127.0.0.1:{port}/healthz/live", server)
        assert response.status_code == 200
    finally:
        server.terminate()
        server.wait(timeout=10)


def _wait_for(url: str, process: subprocess.Popen, **request) -> httpx.Response:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited: {process.stderr.read()}")
        try:
            return httpx.get(url, timeout=2, **request)
        except httpx.TransportError:
            time.sleep(0.1)
    pytest.fail(f"{url} did not answer in time")


# --- check --deploy ---------------------------------------------------------------------


def _error_ids(settings, **values) -> set[str]:
    for name, value in values.items():
        setattr(settings, name, value)
    return {message.id for message in checks.check_production_backends(None)}


def test_deploy_check_refuses_sqlite_and_the_sandbox_with_debug_off(settings):
    sqlite = connection.vendor == "sqlite"
    ids = _error_ids(settings, DEBUG=False, THENA_API_BASE_URL="", THENA_DEMO_DEPLOY=False)

    assert ids == ({"tickets.E001"} if sqlite else set()) | {"tickets.E002"}
    assert not _error_ids(settings, THENA_DEMO_DEPLOY=True)  # a demo, said so
    assert not _error_ids(settings, THENA_DEMO_DEPLOY=False, DEBUG=True)
    assert _error_ids(settings, DEBUG=False, THENA_API_BASE_URL="https://platform.thena.ai") == (
        {"tickets.E001"} if sqlite else set()
    )


def test_check_deploy_command_errors_and_names_the_way_out():
    result = _run("manage.py", "check", "--deploy", DJANGO_DEBUG="false")

    assert result.returncode != 0
    assert "tickets.E001" in result.stderr and "tickets.E002" in result.stderr
    assert "THENA_DEMO_DEPLOY=true" in result.stderr
    demo = _run("manage.py", "check", "--deploy", DJANGO_DEBUG="false", THENA_DEMO_DEPLOY="true")
    assert "tickets.E00" not in demo.stderr + demo.stdout


# --- gunicorn.conf.py -------------------------------------------------------------------


def _gunicorn_conf(monkeypatch, **env: str):
    """gunicorn.conf.py as gunicorn loads it, with only `env` of our variables set."""
    for name in list(os.environ):
        if name.startswith(("THENA_", "WEB_CONCURRENCY", "PROMETHEUS_", "FORWARDED_")):
            monkeypatch.delenv(name)
        if name in ("DATABASE_URL", "GUNICORN_THREADS"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location("gunicorn_conf", ROOT / "gunicorn.conf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _server(workers: int) -> SimpleNamespace:
    return SimpleNamespace(cfg=SimpleNamespace(workers=workers))


def test_gunicorn_conf_defaults(monkeypatch):
    conf = _gunicorn_conf(monkeypatch)

    assert conf.workers == min(2 * (os.cpu_count() or 1) + 1, conf.MAX_WORKERS)
    assert conf.threads == 4
    assert conf.timeout == 30  # the 20 s budget for Thena, and room to answer
    assert conf.graceful_timeout == conf.timeout
    assert conf.accesslog == "-"
    assert "%(M)sms" in conf.access_log_format  # duration in milliseconds
    assert "%({x-request-id}o)s" in conf.access_log_format  # the id the app echoes
    assert conf.forwarded_allow_ips == "127.0.0.1,::1"


def test_gunicorn_conf_reads_the_environment(monkeypatch):
    conf = _gunicorn_conf(
        monkeypatch,
        WEB_CONCURRENCY="3",
        GUNICORN_THREADS="8",
        THENA_REQUEST_BUDGET_SECONDS="45.5",
        FORWARDED_ALLOW_IPS="10.0.0.2",
    )

    assert (conf.workers, conf.threads) == (3, 8)
    assert conf.timeout > 45.5 and conf.timeout == 56
    assert conf.forwarded_allow_ips == "10.0.0.2"


def test_gunicorn_refuses_several_workers_on_the_in_process_sandbox(monkeypatch):
    conf = _gunicorn_conf(monkeypatch)

    with pytest.raises(RuntimeError, match="2 workers would each have a Thena sandbox"):
        conf.on_starting(_server(2))
    conf.on_starting(_server(1))  # `make demo`-like: one process, SQLite


def test_gunicorn_refuses_one_worker_on_postgresql_with_the_sandbox(monkeypatch):
    conf = _gunicorn_conf(monkeypatch, DATABASE_URL=POSTGRES)

    with pytest.raises(RuntimeError, match="several instances on one database"):
        conf.on_starting(_server(1))


@pytest.mark.parametrize(
    "env",
    [{"THENA_API_BASE_URL": "http://127.0.0.1:8001"}, {"THENA_ALLOW_IN_PROCESS_SANDBOX": "true"}],
)
def test_gunicorn_serves_several_workers_with_a_shared_thena_or_when_allowed(monkeypatch, env):
    conf = _gunicorn_conf(monkeypatch, DATABASE_URL=POSTGRES, **env)

    conf.on_starting(_server(4))


def test_gunicorn_starts_metrics_afresh_and_forgets_dead_workers(monkeypatch, tmp_path):
    conf = _gunicorn_conf(
        monkeypatch,
        THENA_API_BASE_URL="http://127.0.0.1:8001",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path),
    )
    (tmp_path / "counter_999.db").write_bytes(b"last run")
    (tmp_path / "notes.txt").write_text("not ours")

    conf.on_starting(_server(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]

    for name in ("gauge_liveall_4242.db", "gauge_all_4242.db", "counter_4242.db"):
        (tmp_path / name).write_bytes(b"")
    conf.child_exit(_server(2), SimpleNamespace(pid=4242))
    assert "gauge_liveall_4242.db" not in {p.name for p in tmp_path.iterdir()}
    assert "counter_4242.db" in {p.name for p in tmp_path.iterdir()}


def _gunicorn(*args: str) -> list[str]:
    return [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", *args, "thena_admin.wsgi"]


def test_gunicorn_exits_at_start_with_two_workers_and_no_thena_url():
    started = time.monotonic()
    result = subprocess.run(
        _gunicorn("--workers", "2", "--bind", "127.0.0.1:0"),
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0
    assert "2 workers would each have a Thena sandbox of their own" in result.stderr
    assert "THENA_API_BASE_URL" in result.stderr and "thena_sandbox" in result.stderr
    assert time.monotonic() - started < 20


def test_gunicorn_with_two_workers_answers_probes_by_ip_and_logs_duration_and_id(tmp_path):
    port = _free_port()
    metrics = tmp_path / "prometheus"
    metrics.mkdir()
    (metrics / "counter_1.db").write_bytes(b"last run")
    env = _env(
        THENA_API_BASE_URL="http://127.0.0.1:1",  # /healthz/live never asks it
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        PROMETHEUS_MULTIPROC_DIR=str(metrics),
    )
    server = subprocess.Popen(
        _gunicorn("--workers", "2", "--bind", f"127.0.0.1:{port}"),
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    request_id = uuid.uuid4().hex
    try:
        response = _wait_for(
            f"http://127.0.0.1:{port}/healthz/live",
            server,
            headers={"Host": "10.20.30.40", "X-Request-ID": request_id},
        )
        assert response.status_code == 200
        assert response.json()["database"] == "ok"
        assert not (metrics / "counter_1.db").exists()  # emptied at start
    finally:
        server.send_signal(signal.SIGTERM)
        out, _ = server.communicate(timeout=40)
    lines = [line for line in out.splitlines() if "/healthz/live" in line]
    assert lines, out
    assert re.search(
        rf'"GET /healthz/live HTTP/1.1" 200 \d+ \d+ms request_id={request_id} ', lines[-1]
    )


# --- Dev-only commands, and help for every option ---------------------------------------


@pytest.mark.django_db
def test_seed_demo_refuses_with_debug_off_unless_forced(settings):
    settings.DEBUG = False

    with pytest.raises(CommandError, match="--force"):
        call_command("seed_demo", stdout=StringIO())
    assert not get_user_model().objects.filter(username="admin").exists()

    call_command("seed_demo", force=True, stdout=StringIO())
    assert get_user_model().objects.filter(username="admin").exists()


@pytest.mark.django_db
def test_seed_demo_runs_with_debug_on(settings):
    settings.DEBUG = True

    call_command("seed_demo", stdout=StringIO())

    assert get_user_model().objects.filter(username="manager").exists()


@pytest.mark.django_db
def test_seed_audit_refuses_with_debug_off_unless_forced(settings):
    settings.DEBUG = False

    with pytest.raises(CommandError, match="--force"):
        call_command("seed_audit", count=5, stdout=StringIO())
    assert not AuditEntry.objects.exists()

    call_command("seed_audit", count=5, force=True, stdout=StringIO())
    assert AuditEntry.objects.count() == 5


OUR_COMMANDS = sorted(find_commands(str(ROOT / "tickets" / "management")))
DJANGO_OPTIONS = {a.dest for a in BaseCommand().create_parser("manage.py", "x")._actions}


def test_we_have_the_commands_we_expect():
    assert {"seed_demo", "seed_audit", "thena_sandbox", "thena_check"} <= set(OUR_COMMANDS)


@pytest.mark.parametrize("name", OUR_COMMANDS)
def test_every_option_of_our_commands_has_help(name):
    command = load_command_class("tickets", name)
    parser = command.create_parser("manage.py", name)
    ours = [a for a in parser._actions if a.dest not in DJANGO_OPTIONS]

    assert command.help.strip()
    for action in ours:
        assert action.help and action.help != argparse.SUPPRESS, f"{name} {action.option_strings}"
