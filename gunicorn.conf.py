"""gunicorn's settings for thena-admin: `gunicorn thena_admin.wsgi --bind ...`.

gunicorn reads this file from the working directory by itself (`-c gunicorn.conf.py`
names it explicitly); flags on the command line still win. Every value comes from the
environment, so the same image runs anywhere:

- WEB_CONCURRENCY: worker processes (default 2 x cores + 1, at most 8);
- GUNICORN_THREADS: threads per worker (default 4; requests mostly wait for Thena);
- THENA_REQUEST_BUDGET_SECONDS (the app's, default 20): the worker timeout is 10 s more,
  so a slow Thena ends in a message, never a killed worker;
- FORWARDED_ALLOW_IPS: proxies whose X-Forwarded-Proto is believed (default loopback);
- PROMETHEUS_MULTIPROC_DIR: emptied of the last run's samples at start.

With THENA_API_BASE_URL empty (the in-process sandbox: a fake Thena inside one process)
gunicorn refuses to start more than one worker, or any on a database other than SQLite,
unless THENA_ALLOW_IN_PROCESS_SANDBOX=true (tickets/checks.py says why).
"""

import math
import os
from pathlib import Path

MAX_WORKERS = 8


def _number(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    try:
        return float(value) if value else default
    except ValueError:
        raise RuntimeError(f"{name} must be a number, not {value!r}.") from None


def _true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("true", "1")


workers = int(_number("WEB_CONCURRENCY", min(2 * (os.cpu_count() or 1) + 1, MAX_WORKERS)))
threads = int(_number("GUNICORN_THREADS", 4))
# Above the app's budget for Thena calls, retries included (settings.py reads the same
# variable); 0 turns that budget off, which leaves gunicorn's usual 30 s.
_budget = _number("THENA_REQUEST_BUDGET_SECONDS", 20.0)
timeout = max(30, math.ceil(_budget) + 10)
graceful_timeout = timeout  # a request in flight at a restart may finish

accesslog = "-"  # standard output
# The request id is the one the app echoes in X-Request-ID (also on its log lines and in
# the audit log); %(M)s is the duration in milliseconds.
access_log_format = (
    '%(t)s %(h)s "%(r)s" %(s)s %(b)s %(M)sms request_id=%({x-request-id}o)s "%(f)s" "%(a)s"'
)
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")


def sandbox_refusal(workers: int) -> str:
    """Why the in-process sandbox cannot serve with `workers` processes ("" if it can)."""
    if os.environ.get("THENA_API_BASE_URL", "").strip():
        return ""
    if _true("THENA_ALLOW_IN_PROCESS_SANDBOX"):
        return ""
    database = os.environ.get("DATABASE_URL", "").strip()
    if workers > 1:
        why = f"{workers} workers would each have a Thena sandbox of their own"
    elif database and not database.lower().startswith("sqlite"):
        why = "several instances on one database would each have a Thena sandbox of their own"
    else:
        return ""
    return (
        f"THENA_API_BASE_URL is empty (the in-process sandbox) but {why}, with different "
        "tickets. Run `python manage.py thena_sandbox` (one sandbox for every process) and "
        "set THENA_API_BASE_URL=http://127.0.0.1:8001 and THENA_API_KEY=sandbox-demo-key, "
        "or set THENA_API_BASE_URL to the real Thena (https://platform.thena.ai). A test or "
        "demo that knows this may set THENA_ALLOW_IN_PROCESS_SANDBOX=true."
    )


def on_starting(server):
    """In the master, before any worker: refuse the sandbox shared by processes, and
    start the metrics afresh."""
    problem = sandbox_refusal(server.cfg.workers)
    if problem:
        raise RuntimeError(problem)  # gunicorn prints "Error: ..." and exits with 1
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "").strip()
    if directory:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):  # prometheus_client's files only
            stale.unlink(missing_ok=True)


def child_exit(server, worker):
    """In the master, after a worker ended: its live gauges no longer count."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR", "").strip():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
