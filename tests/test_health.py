"""/healthz and /healthz/live: what a load balancer (probing by IP, over plain HTTP, every
few seconds from several places) gets, and what it costs Thena."""

import time

import pytest
from django.contrib.sessions.models import Session
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.util import sandbox_over_http
from tickets import services
from tickets.thena.sandbox import SandboxConfig

pytestmark = pytest.mark.django_db

IP_HOST = "10.20.30.40"  # not in ALLOWED_HOSTS: a load balancer's probe by address


def _pings(sandbox) -> int:
    return [r.path for r in sandbox.requests].count("/v1/teams")


# /healthz/live


def test_live_answers_from_the_database_without_asking_thena(client, thena, sandbox):
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/healthz/live")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "ok": True, "database": "ok"}
    assert sandbox.requests == []
    assert [q["sql"] for q in queries] == ["SELECT 1"]  # no write, no session
    assert response["Cache-Control"].startswith("max-age=0")


def test_live_answers_head_for_probes_that_send_it(client, thena, sandbox):
    assert client.head("/healthz/live").status_code == 200
    assert client.post("/healthz/live").status_code == 405


def test_live_answers_503_when_the_database_is_down(client, thena, monkeypatch):
    def broken(*args, **kwargs):
        raise connection.Database.OperationalError("connection refused")

    monkeypatch.setattr(connection, "cursor", broken)
    response = client.get("/healthz/live")

    assert response.status_code == 503
    assert response.json() == {
        "status": "down",
        "ok": False,
        "database": "error: OperationalError",
    }


# Any Host header, no redirect, no session


@pytest.mark.parametrize("path", ["/healthz", "/healthz/live"])
def test_health_answers_a_probe_by_ip_address(client, thena, path):
    response = client.get(path, HTTP_HOST=IP_HOST)

    assert response.status_code == 200
    assert response.json()["ok"] is True
    # Every other page still refuses a host that is not allowed.
    assert client.get("/accounts/login/", HTTP_HOST=IP_HOST).status_code == 400


@pytest.mark.parametrize("path", ["/healthz", "/healthz/live"])
def test_health_is_not_redirected_to_https(client, thena, settings, path):
    settings.SECURE_SSL_REDIRECT = True  # DJANGO_HTTPS=true

    assert client.get(path, HTTP_HOST=IP_HOST).status_code == 200
    assert client.get("/accounts/login/").status_code == 301


@pytest.mark.parametrize("path", ["/healthz", "/healthz/live"])
def test_health_opens_no_session_and_sets_no_cookie(manager_client, thena, path):
    sessions = Session.objects.count()  # the persona's own

    response = manager_client.get(path)

    assert response.status_code == 200
    assert not response.cookies
    assert Session.objects.count() == sessions


# /healthz: Thena from a cached, time-boxed probe


def test_healthz_reports_database_thena_and_when_thena_was_checked(client, thena, sandbox):
    report = client.get("/healthz").json()

    assert report["status"] == "ok"
    assert (report["ok"], report["database"], report["thena"]) == (True, "ok", "ok")
    assert report["checked_at"].endswith("Z")
    assert report["auto_link_field"] == "ok"
    assert isinstance(report["thena_ms"], float)


def test_healthz_asks_thena_once_per_interval_for_all_probes(client, thena, sandbox):
    first = client.get("/healthz").json()
    for _ in range(5):
        again = client.get("/healthz", HTTP_HOST=IP_HOST).json()

    assert _pings(sandbox) == 1
    assert again["checked_at"] == first["checked_at"]


def test_healthz_asks_thena_again_once_the_result_is_older_than_the_interval(
    client, thena, sandbox
):
    client.get("/healthz")
    last = cache.get(services.HEALTH_KEY)
    last["at"] -= services.HEALTH_EVERY + 1
    cache.set(services.HEALTH_KEY, last)

    client.get("/healthz")

    assert _pings(sandbox) == 2


def test_healthz_thena_down_is_degraded_not_down(client, thena, sandbox):
    sandbox.fail_next(1, status=503)

    response = client.get("/healthz")

    assert response.status_code == 200
    report = response.json()
    assert (report["status"], report["ok"]) == ("degraded", True)
    assert report["thena"].startswith("error: Thena is not reachable")
    assert report["auto_link_field"] == "unknown: Thena did not answer"


def test_healthz_is_down_only_when_the_database_is(client, thena, monkeypatch):
    def broken(*args, **kwargs):
        raise connection.Database.OperationalError("connection refused")

    monkeypatch.setattr(connection, "cursor", broken)
    response = client.get("/healthz")

    assert response.status_code == 503
    assert (response.json()["status"], response.json()["ok"]) == ("down", False)
    assert response.json()["database"] == "error: OperationalError"


def test_healthz_leaves_thena_alone_while_another_process_probes_it(client, thena, sandbox):
    cache.add(services.HEALTH_RUNNING_KEY, True)  # another process's probe in flight

    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json()["thena"] == "unknown: the first check is running"
    assert response.json()["status"] == "degraded"
    assert sandbox.requests == []


def test_healthz_answers_the_last_result_while_another_process_probes_again(client, thena, sandbox):
    first = client.get("/healthz").json()
    last = cache.get(services.HEALTH_KEY)
    last["at"] -= services.HEALTH_EVERY + 1  # due again...
    cache.set(services.HEALTH_KEY, last)
    cache.add(services.HEALTH_RUNNING_KEY, True)  # ...but someone is at it

    again = client.get("/healthz").json()

    assert again == first
    assert _pings(sandbox) == 1


def test_a_slow_thena_costs_one_probe_its_budget_and_the_next_probes_nothing(client):
    with sandbox_over_http(SandboxConfig(latency_ms=3000)) as sandbox:
        started = time.monotonic()
        first = client.get("/healthz")
        first_took = time.monotonic() - started
        started = time.monotonic()
        second = client.get("/healthz")
        second_took = time.monotonic() - started

        assert first.status_code == second.status_code == 200
        assert first_took < services.HEALTH_SECONDS + 0.7  # not the 3 s Thena takes
        assert second_took < 0.3
        assert second.json() == first.json()
        assert second.json()["status"] == "degraded"
        assert second.json()["thena"].startswith("error: Thena did not answer in time")
        assert _pings(sandbox) == 1
