"""The Thena API key is never rendered, logged, stored or put in an exception."""

import logging
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from django.db import connection
from django.test import Client

from tests.conftest import PASSWORD
from tests.test_observability import json_log
from tests.util import submitted
from tickets.models import AuditEntry, AuditOutcome
from tickets.thena.client import SANDBOX_BASE_URL, ThenaClient, sandbox_transport, set_client
from tickets.thena.errors import ThenaError

KEY = "tk-live-9f8e7d6c5b4a-SECRET-KEY-0123456789"
# An upstream may echo the key in another case; each spelling must be caught as well.
SPELLINGS = (KEY, KEY.lower(), KEY.upper(), KEY.swapcase(), KEY.title())
ECHOED = dict(zip((400, 401, 403, 404, 429, 500), (*SPELLINGS, KEY.upper()), strict=True))
ROOT = Path(__file__).resolve().parent.parent


class _Faults(httpx.BaseTransport):
    """The sandbox, with the next PATCH failing in a chosen way."""

    def __init__(self, sandbox):
        self.inner = sandbox_transport(sandbox)
        self.patch_failure = None

    def handle_request(self, request):
        failure, self.patch_failure = (
            (self.patch_failure, None) if request.method == "PATCH" else (None, self.patch_failure)
        )
        if failure == "timeout":
            raise httpx.ReadTimeout(f"timed out talking to {request.url}", request=request)
        if failure == "refused":
            raise httpx.ConnectError(f"connection refused for {KEY.upper()}", request=request)
        if isinstance(failure, int):
            # An upstream that (wrongly) echoes the key in its error must not leak it
            # either, in whatever case it echoes it.
            body = {"statusCode": failure, "message": f"bad request with key {ECHOED[failure]}"}
            return httpx.Response(failure, json=body, request=request)
        return self.inner.handle_request(request)


@pytest.mark.django_db
def test_the_key_appears_in_no_response_log_record_audit_row_or_error(
    manager_client, viewer_client, sandbox, caplog
):
    sandbox.config.api_key = KEY
    transport = _Faults(sandbox)
    set_client(ThenaClient(SANDBOX_BASE_URL, KEY, transport=transport, sleep=lambda s: None))
    caplog.set_level(logging.DEBUG)
    ticket = next(t for t in sandbox.tickets() if t["teamIdentifier"] == "SUP")
    url = f"/tickets/{ticket['id']}/"
    seen: list[bytes] = []

    def edit(client, failure=None, **changes):
        page = client.get(url)
        seen.append(page.content)
        transport.patch_failure = failure
        response = client.post(url, submitted(page.context["form"], **changes), follow=True)
        seen.append(response.content)

    edit(manager_client, title="ok")  # succeeded
    for failure in (*ECHOED, "timeout", "refused"):
        edit(manager_client, failure, title=f"fails {failure}")
    sandbox.touch_ticket(ticket["id"], title="theirs")
    page = manager_client.get(url)
    sandbox.touch_ticket(ticket["id"], title="theirs again")
    seen.append(manager_client.post(url, submitted(page.context["form"], title="mine")).content)
    seen.append(viewer_client.post(url, {"title": "denied"}).content)
    seen.append(manager_client.get("/healthz").content)
    seen.append(manager_client.get("/tickets/").content)
    sandbox.config.api_key = "rotated"  # now Thena refuses our key
    seen.append(manager_client.get(url).content)
    seen.append(manager_client.get("/healthz").content)

    outcomes = set(
        AuditEntry.objects.with_current_outcome().values_list("current_outcome", flat=True)
    )
    assert outcomes >= {"succeeded", "failed", "unknown", "conflict", "denied"}
    secret = KEY.lower()  # every check below ignores case
    assert all(secret.encode() not in content.lower() for content in seen)
    assert secret not in caplog.text.lower()
    assert all(secret not in str(record.__dict__).lower() for record in caplog.records)
    with connection.cursor() as cursor:
        for table in ("tickets_auditentry", "tickets_auditoutcome", "django_session"):
            cursor.execute(f"SELECT * FROM {table}")
            assert secret not in repr(cursor.fetchall()).lower(), table
    # The echoes did arrive and were redacted, not merely lost on the way.
    assert AuditOutcome.objects.filter(message__contains="[redacted]").count() >= 5


@pytest.mark.parametrize("spelling", SPELLINGS)
@pytest.mark.parametrize("status", [400, 401, 404, 500, 503])
def test_the_client_redacts_the_key_in_any_case(spelling, status):
    def answer(request):
        text = f"invalid key {spelling}; check {spelling}"
        return httpx.Response(status, json={"message": text}, request=request)

    client = ThenaClient(
        "https://thena.example", KEY, transport=httpx.MockTransport(answer), sleep=lambda s: None
    )
    with pytest.raises(ThenaError) as caught:
        client.get_ticket("T1")
    error = caught.value
    parts = (error, repr(error), error.detail, error.user_message, error.args)
    parts += (getattr(error, "non_field", ""), getattr(error, "field_errors", ""))
    shown = " ".join(map(str, parts))
    assert error.detail.count("[redacted]") == 2
    assert KEY.lower() not in shown.lower()


def test_the_key_can_come_from_a_file(tmp_path):
    secret = tmp_path / "thena-key"
    secret.write_text(KEY + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("THENA_", "PYTEST_"))}
    env.update(DJANGO_DEBUG="true", THENA_API_KEY_FILE=str(secret))
    code = f"from django.conf import settings; print(settings.THENA_API_KEY == {KEY!r})"
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.strip().splitlines()[-1] == "True", result.stderr
    env["THENA_API_KEY_FILE"] = str(tmp_path / "missing")
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "THENA_API_KEY_FILE" in result.stderr
    assert KEY not in result.stderr


@pytest.mark.django_db
def test_the_json_log_of_a_login_and_edits_holds_no_key_password_or_session(manager, sandbox):
    sandbox.config.api_key = KEY
    transport = _Faults(sandbox)
    set_client(ThenaClient(SANDBOX_BASE_URL, KEY, transport=transport, sleep=lambda s: None))
    browser = Client(enforce_csrf_checks=True)
    ticket = next(t for t in sandbox.tickets() if t["teamIdentifier"] == "SUP")
    url = f"/tickets/{ticket['id']}/"

    def post(path, data):
        token = browser.cookies["csrftoken"].value
        return browser.post(path, {**data, "csrfmiddlewaretoken": token})

    with json_log(logging.DEBUG) as lines:
        browser.get("/accounts/login/")
        assert (
            post("/accounts/login/", {"username": "manager", "password": "wrong-pw-1"}).status_code
            == 200
        )
        assert (
            post("/accounts/login/", {"username": "manager", "password": PASSWORD}).status_code
            == 302
        )
        form = browser.get(url).context["form"]
        assert post(url, submitted(form, title="ok")).status_code == 302
        form = browser.get(url).context["form"]
        transport.patch_failure = 400  # an upstream that echoes the key
        post(url, submitted(form, title="refused"))
    text = lines[-1]["raw"]

    events = {line.get("event") for line in lines}
    assert {"thena_call", "audit_outcome", "request_finished"} <= events  # it did log
    assert "[redacted]" in text  # the echo reached the log, redacted
    session = browser.cookies["sessionid"].value
    csrf = browser.cookies["csrftoken"].value
    for secret in (KEY.lower(), PASSWORD, "wrong-pw-1", session, csrf):
        assert secret.lower() not in text.lower()
