"""System checks, and the start-up guard of the in-process sandbox.

`manage.py check --deploy` errors when DJANGO_DEBUG is off and the database is SQLite
(tickets.E001) or Thena is the in-process sandbox (tickets.E002), unless
THENA_DEMO_DEPLOY=true says the deployment is a demo.

The in-process sandbox (THENA_API_BASE_URL empty) is a fake Thena inside one process:
served by several, each would have its own tickets and its own edits. So a server does
not start with it where several processes are likely: gunicorn.conf.py refuses workers > 1
before any worker starts, and `guard_in_process_sandbox` (from TicketsConfig.ready) refuses
a database that is not SQLite (several instances share one) when this process is a
server: `runserver`, or the app loaded by gunicorn. Management commands (migrate,
thena_check...) and pytest are not servers, so `make test-postgres` keeps the in-process
sandbox. THENA_ALLOW_IN_PROCESS_SANDBOX=true lets a test or demo that knows this through.
"""

import os
import sys

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

SANDBOX_WAY_OUT = (
    "Run `python manage.py thena_sandbox` (one sandbox for every process) and set "
    "THENA_API_BASE_URL=http://127.0.0.1:8001 and THENA_API_KEY=sandbox-demo-key, or set "
    "THENA_API_BASE_URL to the real Thena (https://platform.thena.ai)."
)


def in_process_sandbox() -> bool:
    return not settings.THENA_API_BASE_URL


def _sqlite() -> bool:
    return settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"


@checks.register("thena_admin", deploy=True)
def check_production_backends(app_configs, **kwargs) -> list[checks.CheckMessage]:
    if settings.DEBUG or settings.THENA_DEMO_DEPLOY:
        return []
    errors = []
    if _sqlite():
        errors.append(
            checks.Error(
                "The database is SQLite, which one host only can use.",
                hint=(
                    "Set DATABASE_URL=postgres://user:password@host:5432/name "
                    "(or THENA_DEMO_DEPLOY=true for a demo)."
                ),
                id="tickets.E001",
            )
        )
    if in_process_sandbox():
        errors.append(
            checks.Error(
                "THENA_API_BASE_URL is empty, so Thena is the in-process sandbox, a fake.",
                hint=(
                    "Set THENA_API_BASE_URL=https://platform.thena.ai and THENA_API_KEY "
                    "(or THENA_DEMO_DEPLOY=true for a demo on the sandbox)."
                ),
                id="tickets.E002",
            )
        )
    return errors


def serving() -> bool:
    """Whether this process is a web server: runserver, or gunicorn (whose master sets
    SERVER_SOFTWARE for itself and its workers)."""
    return sys.argv[1:2] == ["runserver"] or os.environ.get("SERVER_SOFTWARE", "").startswith(
        "gunicorn/"
    )


def in_process_sandbox_refusal() -> str:
    """Why the in-process sandbox cannot serve this deployment ("" when it can)."""
    if not in_process_sandbox() or settings.THENA_ALLOW_IN_PROCESS_SANDBOX or _sqlite():
        return ""
    return (
        "Thena is the in-process sandbox (THENA_API_BASE_URL is empty) but the database is "
        "not SQLite: several instances likely serve this site, each with a sandbox of its "
        f"own. {SANDBOX_WAY_OUT} A test or demo that knows this may set "
        "THENA_ALLOW_IN_PROCESS_SANDBOX=true."
    )


def guard_in_process_sandbox() -> None:
    """Refuse to serve with the in-process sandbox where several processes are likely."""
    if serving():
        problem = in_process_sandbox_refusal()
        if problem:
            raise ImproperlyConfigured(problem)
