"""Helpers shared by tests (fixtures live in conftest.py)."""

import os
import re
import subprocess
import threading
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import httpx
from django import forms
from django.conf import settings
from django.db import connection
from django.utils.datastructures import MultiValueDict
from django_tasks_db.management.commands.db_worker import Worker

from tests.conftest import PASSWORD
from tickets.audit import RequestMeta, record_attempt, record_outcome
from tickets.thena.client import SANDBOX_BASE_URL, ThenaClient, sandbox_transport, set_client
from tickets.thena.sandbox import DEMO_API_KEY, SandboxApp, SandboxConfig
from tickets.thena.sandbox.server import make_server

# What real Thena may do where its docs leave it open (thena-api.md §3): edit tests run
# against each. "documented" is the sandbox's default.
SANDBOX_VARIANTS = {
    "documented": SandboxConfig(),
    "echo-write-only": SandboxConfig(echo_write_only=True),
    "object-custom-fields": SandboxConfig(custom_field_shape="objects"),
    "echo-and-objects": SandboxConfig(echo_write_only=True, custom_field_shape="objects"),
}
OBJECTS = SANDBOX_VARIANTS["object-custom-fields"]


def submitted(form: forms.Form, **changes) -> MultiValueDict:
    """What a browser would post for `form` as rendered, with `changes` applied.

    A change of None removes the field from the post (an unticked checkbox)."""
    data = MultiValueDict()
    for bound in form:
        widget = bound.field.widget
        value = bound.value()
        if isinstance(widget, forms.CheckboxSelectMultiple | forms.SelectMultiple):
            data.setlist(bound.html_name, [str(v) for v in value or []])
        elif isinstance(widget, forms.CheckboxInput):
            if value:
                data[bound.html_name] = "on"
        elif isinstance(widget, forms.Select | forms.RadioSelect):
            data[bound.html_name] = "" if value is None else str(value)
        else:
            formatted = widget.format_value(bound.field.prepare_value(value))
            data[bound.html_name] = "" if formatted is None else str(formatted)
    for name, value in changes.items():
        if value is None:
            data.pop(name, None)
        elif isinstance(value, list):
            data.setlist(name, value)
        else:
            data[name] = value
    return data


def listed(response):
    """The list a ticket list page shows: the context of its last render, the table,
    drawn once Thena has answered (the page around it is drawn while Thena searches)."""
    context = response.context
    return (context[-1] if isinstance(context, list) else context)["listing"]


def bound_form(edit, **changes):
    """The edit form as the browser posts it back (`submitted` with `changes`), bound to
    the snapshot of the page it was shown on."""
    from tickets.forms import TicketUpdateForm

    shown = TicketUpdateForm(ticket=edit.ticket, choices=edit.choices)
    return TicketUpdateForm(
        submitted(shown, **changes),
        ticket=edit.ticket,
        choices=edit.choices,
        snapshot=shown.snapshot,
    )


class FailPatch(httpx.BaseTransport):
    """The sandbox for reads; one exact failure for every PATCH: an HTTP status, or
    "timeout", "timeout-after-apply" (Thena applied it, the answer was lost) or "refused"."""

    def __init__(self, sandbox, failure):
        self.inner = sandbox_transport(sandbox)
        self.failure = failure

    def handle_request(self, request):
        if request.method != "PATCH":
            return self.inner.handle_request(request)
        if self.failure == "timeout-after-apply":
            self.inner.handle_request(request)
        if self.failure in ("timeout", "timeout-after-apply"):
            raise httpx.ReadTimeout("timed out", request=request)
        if self.failure == "refused":
            raise httpx.ConnectError("connection refused", request=request)
        # A 429 whose window resets far away: the client gives up instead of waiting.
        headers = {"X-RateLimit-Reset": "9999999999"} if self.failure == 429 else {}
        body = {"statusCode": self.failure, "message": "nope", "error": "Error"}
        return httpx.Response(self.failure, json=body, headers=headers, request=request)


def fail_patches(sandbox, failure) -> None:
    """Install, as the process-wide client, one whose PATCHes fail as `failure` says."""
    transport = FailPatch(sandbox, failure)
    set_client(
        ThenaClient(SANDBOX_BASE_URL, DEMO_API_KEY, transport=transport, sleep=lambda s: None)
    )


def write_audit(
    actor, ticket, changes, *, meta: RequestMeta, settle=(), duration_ms=None, **entry_fields
):
    """An edit attempt as the service writes it, then each outcome in `settle`."""
    entry = record_attempt(
        action="ticket.update",
        actor=actor,
        ticket=ticket,
        changes=changes,
        request_body={name: change["after"] for name, change in changes.items()},
        meta=meta,
        **entry_fields,  # outcome, message
    )
    for result in settle:
        record_outcome(entry=entry, outcome=result, status_code=200, duration_ms=duration_ms)
    return entry


def logged_in(base_url: str, username: str = "manager") -> httpx.Client:
    """A browser-like client on a running server, signed in through its login form."""
    client = httpx.Client(base_url=base_url, timeout=30)
    page = client.get("/accounts/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)[1]
    answer = client.post(
        "/accounts/login/",
        data={"csrfmiddlewaretoken": token, "username": username, "password": PASSWORD},
    )
    assert answer.status_code == 302, answer.text
    return client


@contextmanager
def sandbox_over_http(config: SandboxConfig):
    """A sandbox served over real HTTP on a free port (as `manage.py thena_sandbox` does),
    with a client on it installed as the process-wide client."""
    with served_over_http(SandboxApp(config)) as app:
        yield app


@contextmanager
def served_over_http(app):
    """`app` (a sandbox, or a WSGI wrapper of one) over real HTTP on a free port, with a
    client on it installed as the process-wide client."""
    server = make_server(app, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = ThenaClient(f"http://127.0.0.1:{server.server_address[1]}", DEMO_API_KEY)
    set_client(client)
    try:
        yield app
    finally:
        set_client(None)
        client.close()
        server.shutdown()
        server.server_close()


def db_worker(*, batch: bool = True, interval: float = 0, worker_id: str = "pytest") -> Worker:
    """The loop of `manage.py db_worker` (without its signal handlers). `batch`: run every
    task due now, then stop (`--batch`); else run until `.running` is set False."""
    return Worker(
        queue_names=["default"],
        interval=interval,
        batch=batch,
        backend_name="default",
        startup_delay=False,
        max_tasks=None,
        worker_id=worker_id,
        excluded_queue_names=[],
    )


def shared_cache_clear() -> None:
    """Empty the database cache the server processes share (tests/settings.py gives the
    test process a cache of its own, which conftest clears): what subprocesses of one test
    cached (a team's lookups, a rate-limit pause) must not reach the next test's."""
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {connection.ops.quote_name(settings.CACHE_TABLE)}")


def deployed_environment(thena_url: str, **extra: str) -> dict[str, str]:
    """The environment of a server or worker process as deployed: the production settings
    module on the test's database and Thena, none of the test's own settings; `extra`
    adds or overrides variables."""
    db = connection.settings_dict
    if connection.vendor == "postgresql":
        url = (
            f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
        )
    else:
        url = f"sqlite:///{db['NAME']}"  # tests/settings.py: a file, shared with subprocesses
    test_only = ("DJANGO_", "THENA_", "AUDIT_", "PYTEST", "CACHE_", "PROMETHEUS", "BULK_")
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(test_only) and k != "DATABASE_URL"
    }
    return {
        **base,
        "DATABASE_URL": url,
        "DJANGO_SECRET_KEY": "d" * 50,
        "AUDIT_HMAC_KEY": os.environ["AUDIT_HMAC_KEY"],  # tests/settings.py: the test's key
        "THENA_API_BASE_URL": thena_url,
        "THENA_API_KEY": DEMO_API_KEY,
        "DJANGO_DEBUG": "false",
        "DJANGO_LOG_LEVEL": "WARNING",
        "AUDIT_RECONCILE_MINUTES": "60",
        **extra,
    }


def process_stop(process) -> None:
    """SIGTERM, then SIGKILL if it has not ended within 15 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class PassingTime:
    """A clock for a sandbox whose time a client's sleeps move on (nothing really sleeps):
    `SandboxApp(config, clock=time.now)` and `ThenaClient(..., sleep=time.sleep)`."""

    def __init__(self) -> None:
        self.offset = timedelta()
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.offset += timedelta(seconds=seconds)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


class FrozenClock:
    """timezone.now() held at `now` until a test moves it on (rows are stamped with it)."""

    def __init__(self, monkeypatch, now: datetime) -> None:
        self.now = now
        from django.utils import timezone

        monkeypatch.setattr(timezone, "now", lambda: self.now)

    def tick(self, **delta) -> None:
        self.now += timedelta(**delta)


def complete_export(data: bytes | str) -> str:
    """An audit export's text without its last line, which must be the trailer that says
    the file is complete (tickets/audit/export.py, export_verify)."""
    from tickets.audit import export_verify

    data = data.encode() if isinstance(data, str) else data
    complete, _, why = export_verify(data)
    assert complete, why
    return data.rstrip(b"\r\n").rpartition(b"\n")[0].decode() + "\n"
