"""Request ids, JSON logs and /metrics (tickets/observability.py, tickets/metrics.py)."""

import io
import json
import logging
import re
from contextlib import contextmanager

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.util import fail_patches, submitted, write_audit
from tickets import observability
from tickets.audit import RequestMeta
from tickets.models import AuditEntry

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("thena")]

NEW_ID = re.compile(r"^[0-9a-f]{32}$")
LOGGERS = ("", "tickets", "django", "django_structlog")


@contextmanager
def json_log(level=logging.INFO):
    """The lines logged in the block as the deployed handler writes them, parsed."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(observability.json_formatter())
    loggers = [logging.getLogger(name) for name in LOGGERS]
    levels = [logger.level for logger in loggers]
    loggers[0].addHandler(handler)
    for logger in loggers:
        logger.setLevel(level)
    lines: list[dict] = []
    try:
        yield lines
    finally:
        loggers[0].removeHandler(handler)
        for logger, old in zip(loggers, levels, strict=True):
            logger.setLevel(old)
        lines.extend(json.loads(line) for line in stream.getvalue().splitlines())
        lines.append({"raw": stream.getvalue()})  # for tests that search the text


def _edit(client, url, request_id, **changes):
    form = client.get(url).context["form"]
    return client.post(url, submitted(form, **changes), headers={"X-Request-ID": request_id})


def _scrape(client, **extra) -> dict:
    """The samples of /metrics by (name, sorted labels)."""
    response = client.get("/metrics", **extra)
    assert response.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


# --- request id ---------------------------------------------------------------------------


def test_a_sane_request_id_is_echoed(client):
    response = client.get("/accounts/login/", headers={"X-Request-ID": "lb-1234.abc:9"})
    assert response["X-Request-ID"] == "lb-1234.abc:9"


@pytest.mark.parametrize("sent", [None, "x" * 500, "abc\ndef", "<script>", " "])
def test_a_missing_or_hostile_request_id_is_replaced(client, sent):
    headers = {"X-Request-ID": sent} if sent is not None else {}
    first = client.get("/accounts/login/", headers=headers)["X-Request-ID"]
    second = client.get("/accounts/login/", headers=headers)["X-Request-ID"]
    assert NEW_ID.match(first)
    assert first != second


def test_thena_receives_the_request_id_and_the_audit_entry_keeps_it(manager_client, url, sandbox):
    manager_client.get(url, headers={"X-Request-ID": "page-load-1"})  # a cold page: parallel calls
    loaded = list(sandbox.requests)
    sandbox.requests.clear()
    response = _edit(manager_client, url, "edit-42", title="Traced")

    assert response.status_code == 302
    assert response["X-Request-ID"] == "edit-42"
    assert len(loaded) > 1
    assert {r.headers.get("x-request-id") for r in loaded} == {"page-load-1"}
    edit_calls = sandbox.requests[-2:]  # the re-read and the PATCH of the POST
    assert [r.method for r in edit_calls] == ["GET", "PATCH"]
    assert {r.headers.get("x-request-id") for r in edit_calls} == {"edit-42"}
    assert AuditEntry.objects.get().request_id == "edit-42"


def test_the_lists_search_carries_the_request_id(manager_client, sandbox):
    manager_client.get("/tickets/")  # teams and choices cached
    sandbox.requests.clear()

    manager_client.get("/tickets/", headers={"X-Request-ID": "list-7"})

    assert [r.path for r in sandbox.requests] == ["/v1/search/tickets"]
    assert sandbox.requests[0].headers.get("x-request-id") == "list-7"


def test_request_meta_takes_the_middlewares_id(rf):
    request = rf.get("/", headers={"X-Request-ID": "from-header"})
    request.request_id = "from-middleware"
    assert RequestMeta.of(request).request_id == "from-middleware"


# --- JSON logs ----------------------------------------------------------------------------


def test_thena_calls_and_the_edit_outcome_are_json_lines_with_context(
    manager_client, manager, url, ticket
):
    with json_log() as lines:
        _edit(manager_client, url, "edit-log-1", title="Logged")
    entry = AuditEntry.objects.get()

    patch = next(line for line in lines if line.get("method") == "PATCH")
    assert patch["event"] == "thena_call"
    assert patch["logger"] == "tickets.thena"
    assert patch["level"] == "info"
    assert patch["path"] == f"/v1/tickets/{ticket['id']}"
    assert (patch["status"], patch["attempt"]) == (200, 1)
    assert isinstance(patch["ms"], int)
    assert patch["request_id"] == "edit-log-1"
    assert patch["user_id"] == manager.pk
    assert patch["ticket_id"] == ticket["id"]
    assert re.match(r"^\d{4}-\d\d-\d\dT", patch["timestamp"])

    outcome = next(line for line in lines if line.get("event") == "audit_outcome")
    assert outcome["level"] == "info"
    assert outcome["entry_id"] == entry.pk
    assert outcome["ticket_id"] == ticket["id"]
    assert (outcome["outcome"], outcome["status_code"]) == ("succeeded", 200)
    assert outcome["request_id"] == "edit-log-1"

    # One id across the request: django-structlog's lines carry ours, not one of their own.
    posted = [line for line in lines if line.get("request", "").startswith("POST")]
    assert [line["event"] for line in posted] == ["request_started", "request_finished"]
    assert {line["request_id"] for line in posted} == {"edit-log-1"}


def test_a_failed_patch_logs_a_json_warning_with_the_request_id(manager_client, url, sandbox):
    form = manager_client.get(url).context["form"]
    fail_patches(sandbox, 400)
    with json_log() as lines:
        manager_client.post(
            url, submitted(form, title="Refused"), headers={"X-Request-ID": "edit-fail-1"}
        )

    warnings = [
        line for line in lines if line.get("level") == "warning" and "PATCH" in line["event"]
    ]
    assert warnings
    assert all(line["request_id"] == "edit-fail-1" for line in warnings)
    outcome = next(line for line in lines if line.get("event") == "audit_outcome")
    assert (outcome["outcome"], outcome["status_code"]) == ("failed", 400)


def test_secrets_are_redacted_from_any_line(settings):
    settings.THENA_API_KEY = "tk-very-secret-key-123"
    with json_log() as lines:
        logging.getLogger("tickets.x").warning("echoed TK-VERY-SECRET-KEY-123", extra={"p": 1})
        logging.getLogger("tickets.x").warning("form", extra={"password": "hunter22"})
    text = lines[-1]["raw"]
    assert "secret-key" not in text.lower()
    assert "hunter22" not in text
    assert lines[0]["event"] == "echoed [redacted]"


# --- /metrics -----------------------------------------------------------------------------


def test_metrics_without_a_token_answer_only_direct_local_requests(client):
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 404
    proxied = client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert proxied.status_code == 404
    local = client.get("/metrics", REMOTE_ADDR="127.0.0.1")
    assert local.status_code == 200  # no login needed
    assert "thena_admin_audit_oldest_unsettled_age_seconds" in local.content.decode()
    assert client.get("/metrics", REMOTE_ADDR="::1").status_code == 200


def test_metrics_with_a_token_need_it(client, settings):
    settings.METRICS_TOKEN = "metrics-token-0123456789"
    assert client.get("/metrics").status_code == 404  # loopback is not enough now
    wrong = {"Authorization": "Bearer metrics-token-0123456788"}
    assert client.get("/metrics", headers=wrong).status_code == 404
    right = {"Authorization": "Bearer metrics-token-0123456789"}
    response = client.get("/metrics", headers=right, REMOTE_ADDR="203.0.113.9")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")


def test_metrics_count_thena_calls_outcomes_and_age_unsettled_edits(
    client, manager_client, manager, url, ticket
):
    patch = (
        "thena_admin_thena_requests_total",
        (("method", "PATCH"), ("path", "/v1/tickets/{id}"), ("status", "200")),
    )
    succeeded = (
        "thena_admin_audit_outcomes_total",
        (("action", "ticket.update"), ("outcome", "succeeded")),
    )
    gauge = ("thena_admin_audit_oldest_unsettled_age_seconds", ())
    before = _scrape(client)

    assert _edit(manager_client, url, "edit-metrics-1", title="Counted").status_code == 302
    after = _scrape(client)

    assert after[patch] == before.get(patch, 0) + 1
    assert after[succeeded] == before.get(succeeded, 0) + 1
    assert after[gauge] == 0  # the edit is settled
    assert not any(ticket["id"] in str(key) for key in after)  # ids never become labels
    detail = (
        "thena_admin_http_request_duration_seconds_count",
        (("method", "POST"), ("route", "tickets:detail"), ("status", "302")),
    )
    assert after[detail] >= 1

    meta = RequestMeta(request_id="r-1", client_ip=None, user_agent="")
    write_audit(manager, ticket, {"title": {"before": "a", "after": "b"}}, meta=meta)
    assert _scrape(client)[gauge] > 0
