"""Team scope on every surface: an audit entry is shown by the team it was recorded under
(audit.queries.visible_to), on the ticket page, its history fragment, the audit list, its
chart, one entry and the export; the lookup cache is shared (database or Redis) and its
keys are valid for every backend."""

import csv
import subprocess
import sys
import warnings
from io import StringIO
from pathlib import Path

import httpx
import pytest
from django.core.cache import CacheKeyWarning, cache
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test import override_settings

from tests.conftest import _client_for, _user
from tests.util import complete_export, submitted, write_audit
from thena_admin.settings import CACHE_TABLE, cache_backend
from tickets import services
from tickets.audit import RequestMeta
from tickets.models import AuditEntry, TeamScope
from tickets.thena.client import SANDBOX_BASE_URL, ThenaClient, set_client
from tickets.thena.sandbox import DEMO_API_KEY

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("thena")]

META = RequestMeta(request_id="req-scope", client_ip="198.51.100.7", user_agent="pytest")
ROOT = Path(__file__).resolve().parent.parent


def _team(sandbox, identifier: str) -> dict:
    return next(t for t in sandbox.teams() if t["identifier"] == identifier)


@pytest.fixture
def team_a(sandbox):
    return _team(sandbox, "SUP")


@pytest.fixture
def team_b(sandbox):
    return _team(sandbox, "BIL")


@pytest.fixture
def ticket(sandbox, team_a):
    return next(t for t in sandbox.tickets() if t["teamId"] == team_a["id"])


def _scoped(django_user_model, name: str, group: str, *team_ids: str):
    user = _user(django_user_model, name, group)
    TeamScope.objects.create(user=user, team_ids=list(team_ids))
    return _client_for(user)


@pytest.fixture
def b_client(django_user_model, team_b):
    """A support manager (edits, reads the audit log) scoped to team B."""
    return _scoped(django_user_model, "b-manager", "Support managers", team_b["id"])


@pytest.fixture
def a_client(django_user_model, team_a):
    return _scoped(django_user_model, "a-manager", "Support managers", team_a["id"])


def _record(actor, ticket: dict, team_id: str, title: str, settle=()) -> AuditEntry:
    ref = {**ticket, "teamId": team_id}
    changes = {"title": {"before": ticket["title"], "after": title}}
    return write_audit(actor, ref, changes, meta=META, settle=settle)


@pytest.fixture
def moved(manager, sandbox, ticket, team_a, team_b):
    """Two entries recorded while the ticket was in team A, then the ticket moved to
    team B in Thena and two entries recorded there. Returns (A entries, B entries)."""
    in_a = [
        _record(manager, ticket, team_a["id"], "In A, settled", settle=["succeeded"]),
        _record(manager, ticket, team_a["id"], "In A, pending"),
    ]
    sandbox.put_ticket(ticket["id"], teamId=team_b["id"], teamIdentifier="BIL")
    in_b = [
        _record(manager, ticket, team_b["id"], "In B, settled", settle=["succeeded"]),
        _record(manager, ticket, team_b["id"], "In B, pending"),
    ]
    return in_a, in_b


def _ids(items) -> set[int]:
    return {item.pk for item in items}


# -- the history panel and its fragment ---------------------------------------------------


def test_ticket_page_history_shows_only_entries_of_the_users_teams(b_client, ticket, moved):
    _, in_b = moved
    response = b_client.get(f"/tickets/{ticket['id']}/")
    assert response.status_code == 200
    assert {item.entry.pk for item in response.context["history"]} == _ids(in_b)
    assert b"In A, settled" not in response.content


def test_history_fragment_shows_only_entries_of_the_users_teams(b_client, ticket, moved):
    in_a, in_b = moved
    response = b_client.get(f"/tickets/{ticket['id']}/history/")
    assert response.status_code == 200
    assert {item.entry.pk for item in response.context["history"]} == _ids(in_b)
    for entry in in_a:
        assert f"/audit/{entry.number}/".encode() not in response.content


def test_unscoped_manager_sees_the_whole_history(manager_client, ticket, moved):
    in_a, in_b = moved
    response = manager_client.get(f"/tickets/{ticket['id']}/history/")
    assert {item.entry.pk for item in response.context["history"]} == _ids(in_a + in_b)


def test_history_after_a_save_by_a_scoped_user_keeps_to_their_team(
    b_client, sandbox, ticket, moved
):
    in_a, in_b = moved
    url = f"/tickets/{ticket['id']}/"
    data = submitted(b_client.get(url).context["form"], title="Saved in B")
    response = b_client.post(url, data, headers={"HX-Request": "true"})
    assert response.status_code == 200
    shown = {item.entry.pk for item in response.context["history"]}
    assert shown == _ids(in_b) | {AuditEntry.objects.latest("id").pk}
    assert not shown & _ids(in_a)


def test_old_team_gets_404_on_the_page_and_the_fragment_even_with_a_stale_cached_team(
    a_client, sandbox, manager, ticket, team_a, team_b
):
    _record(manager, ticket, team_a["id"], "In A")
    # Seen in A: the shared cache says A for LOOKUP_TTL.
    assert a_client.get(f"/tickets/{ticket['id']}/history/").status_code == 200
    assert cache.get(services._ticket_team_key(ticket["id"])) == team_a["id"]
    sandbox.put_ticket(ticket["id"], teamId=team_b["id"])
    _record(manager, ticket, team_b["id"], "In B")
    # The fragment does not trust the cached team: it asks Thena.
    assert a_client.get(f"/tickets/{ticket['id']}/history/").status_code == 404
    assert a_client.get(f"/tickets/{ticket['id']}/").status_code == 404


def test_a_ticket_seen_in_another_team_updates_the_cached_team_at_once(
    a_client, sandbox, ticket, team_a, team_b
):
    key = services._ticket_team_key(ticket["id"])
    a_client.get(f"/tickets/{ticket['id']}/")
    assert cache.get(key) == team_a["id"]
    sandbox.put_ticket(ticket["id"], teamId=team_b["id"])
    assert a_client.get(f"/tickets/{ticket['id']}/").status_code == 404  # refused, yet...
    assert cache.get(key) == team_b["id"]  # ...what was read is remembered for everyone
    # so the cached check (inline validation) refuses too, without asking Thena again.
    gets = len(sandbox.requests)
    response = a_client.post(f"/tickets/{ticket['id']}/validate/?field=title", {})
    assert response.status_code == 404
    assert len(sandbox.requests) == gets


def test_history_fragment_when_thena_cannot_say_keeps_the_panel(b_client, sandbox, ticket, moved):
    sandbox.fail_next(10, status=503)
    response = b_client.get(f"/tickets/{ticket['id']}/history/")
    assert response.status_code == 502  # htmx leaves the panel as it was
    assert b"/audit/" not in response.content


def test_unscoped_users_history_fragment_costs_no_request_to_thena(
    manager_client, sandbox, ticket, moved
):
    before = len(sandbox.requests)
    assert manager_client.get(f"/tickets/{ticket['id']}/history/").status_code == 200
    assert len(sandbox.requests) == before


# -- the audit log: list, chart, detail, export -------------------------------------------


FILTERS = [
    {},
    {"ticket": "{id}"},
    {"ticket": "{identifier}"},
    {"field": "title"},
    {"outcome": "succeeded"},
    {"outcome": "pending"},
    {"actor": "manager"},
]


def _filters(raw: dict, ticket: dict) -> dict:
    return {
        key: value.format(id=ticket["id"], identifier=ticket["ticketIdentifier"])
        for key, value in raw.items()
    }


def _expected(entries: list[AuditEntry], params: dict) -> set[int]:
    outcome = params.get("outcome")
    if outcome == "succeeded":
        entries = [e for e in entries if e.outcomes.exists()]
    elif outcome == "pending":
        entries = [e for e in entries if not e.outcomes.exists()]
    return _ids(entries)


@pytest.mark.parametrize("raw", FILTERS, ids=lambda raw: "&".join(raw) or "none")
def test_audit_list_and_chart_show_only_the_users_teams(b_client, ticket, moved, raw):
    _, in_b = moved
    params = _filters(raw, ticket)
    response = b_client.get("/audit/", params)
    assert response.status_code == 200
    expected = _expected(in_b, params)
    assert {row.number for row in response.context["rows"]} == {
        e.number for e in AuditEntry.objects.filter(id__in=expected)
    }
    assert response.context["chart"]["total"] == len(expected)


@pytest.mark.parametrize("raw", FILTERS, ids=lambda raw: "&".join(raw) or "none")
def test_export_holds_only_the_users_teams(b_client, ticket, moved, raw):
    _, in_b = moved
    params = _filters(raw, ticket)
    response = b_client.get("/audit/export.csv", params)
    rows = list(csv.DictReader(StringIO(complete_export(b"".join(response.streaming_content)))))
    assert {int(row["chain_id"]) for row in rows} == _expected(in_b, params)


def test_audit_detail_of_another_teams_entry_is_404(b_client, moved):
    in_a, in_b = moved
    for entry in in_a:
        assert b_client.get(f"/audit/{entry.number}/").status_code == 404
    for entry in in_b:
        assert b_client.get(f"/audit/{entry.number}/").status_code == 200


def test_old_team_still_reads_what_was_recorded_under_it(a_client, moved):
    """The rule is the team an entry was recorded under, not the ticket's team now."""
    in_a, in_b = moved
    rows = {row.number for row in a_client.get("/audit/").context["rows"]}
    assert rows == {entry.number for entry in in_a}
    assert a_client.get(f"/audit/{in_b[0].number}/").status_code == 404


def test_a_scope_of_no_teams_sees_no_entry_anywhere(django_user_model, ticket, moved):
    client = _scoped(django_user_model, "nobody", "Auditors")
    response = client.get("/audit/", {"field": "title"})
    assert response.context["rows"] == []
    assert response.context["chart"]["total"] == 0
    assert client.get("/audit/", {"outcome": "succeeded"}).context["rows"] == []
    export = complete_export(b"".join(client.get("/audit/export.csv").streaming_content))
    assert len(export.splitlines()) == 1  # the header only
    assert client.get(f"/audit/{moved[0][0].number}/").status_code == 404


def test_chart_counts_are_cached_per_scope(b_client, a_client, ticket, moved):
    """The per-day counts are cached; a scope's counts never answer for another's."""
    in_a, in_b = moved
    assert b_client.get("/audit/").context["chart"]["total"] == len(in_b)
    assert a_client.get("/audit/").context["chart"]["total"] == len(in_a)
    assert b_client.get("/audit/").context["chart"]["total"] == len(in_b)


# -- the account picker -----------------------------------------------------------------------


def test_account_picker_lists_the_orgs_accounts_for_a_scoped_editor(
    b_client, manager_client, sandbox
):
    scoped = b_client.get("/tickets/accounts/").context["options"]
    unscoped = manager_client.get("/tickets/accounts/").context["options"]
    assert scoped and scoped == unscoped


def test_account_picker_is_refused_to_a_scope_of_no_teams(django_user_model):
    client = _scoped(django_user_model, "nobody", "Support managers")
    assert client.get("/tickets/accounts/").status_code == 403


@pytest.mark.parametrize("persona", ["viewer_client", "auditor_client"])
def test_account_picker_is_for_editors_only(request, persona):
    assert request.getfixturevalue(persona).get("/tickets/accounts/?q=a").status_code == 403


# -- cache keys and backends ------------------------------------------------------------------

HOSTILE = "a b\tc\n" + "é" * 300 + ":" * 10


@pytest.mark.parametrize(
    "value", ["T88WCYYHPS", "acme", HOSTILE, " ", "x" * 65, "ünïcode", "\x00", "#abc"]
)
def test_key_parts_are_valid_for_every_backend(value):
    part = services._key_part(value)
    key = f"thena:account:{part}"
    assert len(key) <= 250
    assert all(33 <= ord(ch) < 127 for ch in key)
    assert (part == value) == (len(value) <= 64 and value.isascii() and value.isalnum())


def test_hostile_ids_and_queries_make_only_valid_cache_keys(b_client, manager_client, sandbox):
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheKeyWarning)  # LocMem warns on memcached-bad keys
        response = b_client.get("/tickets/a%20b%0Ac%09" + "d" * 300 + "/history/")
        assert response.status_code in (404, 502)
        response = manager_client.get("/tickets/accounts/", {"q": HOSTILE, "accountId": HOSTILE})
        assert response.status_code == 200
        response = manager_client.get("/tickets/accounts/", {"q": "x" * 99})
        assert response.status_code == 200


def test_cache_backend_from_cache_url():
    assert cache_backend("")["BACKEND"] == "django.core.cache.backends.db.DatabaseCache"
    assert cache_backend("")["LOCATION"] == CACHE_TABLE
    redis = cache_backend("redis://cache:6379/0")
    assert redis == {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://cache:6379/0",
    }
    assert cache_backend("rediss://cache:6380/1")["BACKEND"].endswith("RedisCache")
    for bad in ("memcached://cache:11211", "redis", "file:///tmp/cache", "db://"):
        with pytest.raises(ImproperlyConfigured, match="CACHE_URL"):
            cache_backend(bad)


def test_a_deployment_refuses_an_unknown_cache_url():
    env = {
        key: value
        for key, value in __import__("os").environ.items()
        if not key.startswith(("DJANGO_", "THENA_", "CACHE_", "PYTEST_", "DATABASE_"))
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**env, "DJANGO_DEBUG": "true", "CACHE_URL": "memcached://cache:11211"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "CACHE_URL must be empty" in result.stderr


def test_migrations_make_the_database_cache_table():
    assert CACHE_TABLE in connection.introspection.table_names()


DB_CACHE = {
    "default": {
        "BACKEND": "django.core.cache.backends.db.DatabaseCache",
        "LOCATION": CACHE_TABLE,
        "TIMEOUT": 300,
    }
}


def test_the_pages_work_on_the_database_cache(b_client, sandbox, ticket, moved, team_b):
    """The default outside tests: lookups and tickets' teams land in the shared table,
    where every process reads them."""
    _, in_b = moved
    with override_settings(CACHES=DB_CACHE):
        cache.clear()
        page = b_client.get(f"/tickets/{ticket['id']}/")
        assert page.status_code == 200
        assert {item.entry.pk for item in page.context["history"]} == _ids(in_b)
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT COUNT(*) FROM {connection.ops.quote_name(CACHE_TABLE)}")
            assert cursor.fetchone()[0] >= 2  # the team's choices and the ticket's team
        assert cache.get(services._ticket_team_key(ticket["id"])) == team_b["id"]
        gets = len(sandbox.requests)
        assert b_client.get(f"/tickets/{ticket['id']}/").status_code == 200
        assert len(sandbox.requests) == gets + 1  # warm: the ticket itself only
        listing = b_client.get("/audit/")
        assert listing.context["chart"]["total"] == len(in_b)
        assert b_client.get("/tickets/accounts/", {"q": HOSTILE}).status_code == 200
        cache.clear()
    cache.clear()


def test_a_second_process_shares_the_database_cache(sandbox, ticket):
    """What one process cached, another (its own cache object on the same table) reads:
    a warm lookup costs no request to Thena, whichever worker serves it."""
    from django.core.cache import caches

    with override_settings(CACHES=DB_CACHE):
        choices = services.team_choices_load(ticket["teamId"])
        other = caches.create_connection("default")  # as a new process would make it
        assert other is not caches["default"]
        assert other.get(f"thena:choices:{ticket['teamId']}") == choices
        cache.clear()


def test_no_transport_error_leaks_from_the_fragment(b_client, sandbox, ticket, moved):
    class Down(httpx.BaseTransport):
        def handle_request(self, request):
            raise httpx.ConnectError("connection refused", request=request)

    set_client(ThenaClient(SANDBOX_BASE_URL, DEMO_API_KEY, transport=Down(), sleep=lambda s: 0))
    response = b_client.get(f"/tickets/{ticket['id']}/history/")
    assert response.status_code == 502
