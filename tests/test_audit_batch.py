"""A bulk edit is one unit of the audit log: ?batch=<id> lists its entries (with every
other filter, in the chart and in the export), and each of its entries links there."""

import csv
import re
import uuid
from io import StringIO
from types import ModuleType

import pytest
from django.db import connection
from django.http import HttpResponse
from django.urls import include, path
from pytest_django.asserts import assertContains, assertNotContains

from tests.util import complete_export, write_audit
from thena_admin import urls as project_urls
from tickets import audit
from tickets import urls as ticket_urls
from tickets.audit import (
    AuditFilter,
    Cursor,
    RequestMeta,
    append_many,
    audit_page,
    entry_row,
    record_attempt,
    record_outcome,
    verify_chain,
)
from tickets.models import AuditEntry, TeamScope

pytestmark = pytest.mark.django_db

META = RequestMeta(request_id="req-bulk", client_ip="192.0.2.5", user_agent="pytest")
SUP = [
    {"id": f"tk_sup_{n}", "ticketIdentifier": f"SUP-{n}", "title": "Printer", "teamId": "t_sup"}
    for n in range(1, 5)
]
STATUS = {"statusId": {"before": "st_open", "after": "st_closed"}}
BATCH = str(uuid.uuid4())
OTHER = str(uuid.uuid4())


def _batch_page(request, batch_id):
    return HttpResponse(f"bulk edit {batch_id}")


def _urlconf(*, batch_page: bool) -> ModuleType:
    """The project's URLs, with or without the bulk edit's page (whichever tickets/urls.py
    has now): the links to it must follow whether it is there."""
    tickets = [p for p in ticket_urls.urlpatterns if getattr(p, "name", "") != "bulk-batch"]
    if batch_page:
        tickets.insert(0, path("bulk/<uuid:batch_id>/", _batch_page, name="bulk-batch"))
    urlconf = ModuleType(f"audit_batch_urls_{batch_page}")
    urlconf.urlpatterns = [
        *(p for p in project_urls.urlpatterns if getattr(p, "namespace", "") != "tickets"),
        path("tickets/", include((tickets, "tickets"))),
    ]
    return urlconf


WITH_PAGE, WITHOUT_PAGE = _urlconf(batch_page=True), _urlconf(batch_page=False)


@pytest.fixture
def no_batch_page(settings):
    settings.ROOT_URLCONF = WITHOUT_PAGE  # the setting_changed signal clears URL caches


@pytest.fixture
def batch_page(settings):
    settings.ROOT_URLCONF = WITH_PAGE


def _row(actor, ticket, batch_id):
    return entry_row(
        action="ticket.update",
        actor=actor,
        ticket=ticket,
        changes=STATUS,
        request_body={"statusId": "st_closed"},
        meta=META,
        batch_id=batch_id,
    )


@pytest.fixture
def log(manager):
    """Three entries of BATCH (written at once, as a bulk run does; the middle one then
    fails), two of OTHER, and single edits around them."""
    single_before = write_audit(manager, SUP[0], STATUS, meta=META, settle=["succeeded"])
    rows = [_row(manager, ticket, BATCH) for ticket in SUP[:3]]
    append_many(rows)
    batch = list(AuditEntry.objects.filter(pk__in=[r.pk for r in rows]).order_by("id"))
    record_outcome(entry=batch[0], outcome="succeeded", status_code=200)
    record_outcome(entry=batch[1], outcome="failed", status_code=422, message="bad status")
    others = [
        record_attempt(
            action="ticket.update",
            actor=manager,
            ticket=ticket,
            changes=STATUS,
            request_body={"statusId": "st_closed"},
            meta=META,
            batch_id=uuid.UUID(OTHER),  # a UUID is stored as its str
        )
        for ticket in SUP[2:]
    ]
    single_after = write_audit(manager, SUP[3], STATUS, meta=META, settle=["failed"])
    return {"batch": batch, "other": others, "single": [single_before, single_after]}


def numbers(response) -> list[int]:
    return [
        int(n)
        for n in re.findall(
            r'<td class="nowrap"><a href="/audit/\d+/">#(\d+)</a>', response.content.decode()
        )
    ]


def newest_first(entries) -> list[int]:
    return [e.number for e in sorted(entries, key=lambda e: (e.created_at, e.id), reverse=True)]


def _csv(response) -> list[dict[str, str]]:
    return list(csv.DictReader(StringIO(complete_export(b"".join(response.streaming_content)))))


# The filter


def test_batch_filter_lists_exactly_the_batchs_entries(auditor_client, log):
    response = auditor_client.get("/audit/", {"batch": BATCH})

    assert response.status_code == 200
    assert numbers(response) == newest_first(log["batch"])
    assertContains(response, f"<code>{BATCH[:8]}</code> — 3 entries.")
    assertContains(response, 'href="/audit/">Show every entry, not only this bulk edit</a>')
    assert numbers(auditor_client.get("/audit/", {"batch": OTHER})) == newest_first(log["other"])


def test_batch_filter_combines_with_the_outcome_filter(auditor_client, log):
    response = auditor_client.get("/audit/", {"batch": BATCH, "outcome": "failed"})

    assert numbers(response) == [log["batch"][1].number]  # not the failed single edit
    assertContains(response, "— 3 entries, 1 of them matching the other filters.")
    # Clearing the batch keeps the outcome; the chart and the export keep the batch.
    assertContains(response, 'href="/audit/?outcome=failed">Show every entry')
    assertContains(response, "/audit/export.csv?outcome=failed&amp;batch=")
    assert response.context["chart"]["total"] == 1
    assert numbers(auditor_client.get("/audit/", {"batch": BATCH, "outcome": "pending"})) == [
        log["batch"][2].number
    ]


def test_batch_filter_combines_with_ticket_and_actor(auditor_client, log, manager):
    shared = SUP[2]["ticketIdentifier"]  # edited by both batches
    response = auditor_client.get("/audit/", {"batch": OTHER, "ticket": shared, "actor": "man"})
    assert numbers(response) == [log["other"][0].number]
    assert numbers(auditor_client.get("/audit/", {"batch": OTHER, "actor": "nobody"})) == []


def test_any_spelling_of_the_uuid_finds_the_batch(auditor_client, log):
    for spelling in (BATCH.upper(), BATCH.replace("-", ""), f"{{{BATCH}}}"):
        response = auditor_client.get("/audit/", {"batch": spelling})
        assert numbers(response) == newest_first(log["batch"]), spelling


def test_an_unknown_batch_lists_nothing(auditor_client, log):
    response = auditor_client.get("/audit/", {"batch": str(uuid.uuid4())})
    assert numbers(response) == []
    assertContains(response, "— 0 entries.")


@pytest.mark.parametrize("bad", ["nope", "1" * 5000, BATCH + "0", "' OR 1=1 --"])
def test_an_invalid_batch_id_is_a_form_error_not_a_500(auditor_client, log, bad):
    response = auditor_client.get("/audit/", {"batch": bad, "outcome": "failed"})

    assert response.status_code == 200
    assertContains(response, "That is not the id of a bulk edit.")
    assertContains(response, 'href="/audit/?outcome=failed">Show the log without it</a>')
    assert numbers(response) == []
    htmx = auditor_client.get("/audit/", {"batch": bad}, headers={"HX-Request": "true"})
    assert htmx.status_code == 200
    assertContains(htmx, "That is not the id of a bulk edit.")


def test_export_of_an_invalid_batch_is_refused_and_writes_nothing(auditor_client, log):
    response = auditor_client.get("/audit/export.csv", {"batch": "nope"})
    assert response.status_code == 400
    assert not AuditEntry.objects.filter(action="audit.export").exists()


def test_the_batch_is_kept_in_the_form_for_the_other_filters(auditor_client, log):
    response = auditor_client.get("/audit/", {"batch": BATCH})
    assertContains(response, f'<input type="hidden" name="batch" value="{BATCH}"', html=False)


def test_pages_of_a_batch_follow_in_keyset_order(log):
    filters = AuditFilter(batch=BATCH)
    seen, cursor = [], None
    while True:
        page = audit_page(filters=filters, cursor=cursor, limit=2)
        seen += [e.number for e in page.entries]
        if not page.next_cursor:
            break
        cursor = Cursor.decode(page.next_cursor)
    assert seen == newest_first(log["batch"])


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's plans")
def test_a_batch_page_is_a_range_of_its_index_in_keyset_order(log):
    from tickets.audit.queries import _entries

    for filters in (
        AuditFilter(batch=BATCH),
        AuditFilter(batch=BATCH, outcome="failed"),
        AuditFilter(batch=BATCH, outcome="pending", field="statusId"),
        AuditFilter(batch=BATCH, revert="reverts", reason="x"),
        AuditFilter(batch=BATCH, ticket="SUP-3"),
        AuditFilter(batch=BATCH, actor="man", actor_names=("manager",)),
        AuditFilter(batch=BATCH, actor="a", actor_names=("amanda", "manager")),
    ):
        plan = _FirstPlan()
        with connection.execute_wrapper(plan):
            _entries(filters, None, frozenset({"t_sup"}), 3)
        assert "USING INDEX audit_entry_batch" in plan.text, (filters, plan.text)
        assert "TEMP B-TREE" not in plan.text, (filters, plan.text)  # read in order, no sort


class _FirstPlan:
    """The query plan of the first SELECT run while installed."""

    text = ""

    def __call__(self, execute, sql, params, many, context):
        if not self.text and sql.lstrip().upper().startswith("SELECT"):
            with context["connection"].cursor() as cursor:
                cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
                self.text = " | ".join(str(row[-1]) for row in cursor.fetchall())
        return execute(sql, params, many, context)


# Scope


def test_a_user_scoped_to_other_teams_sees_none_of_the_batch(client, auditor, log):
    TeamScope.objects.create(user=auditor, team_ids=["t_bil"])
    client.force_login(auditor)

    response = client.get("/audit/", {"batch": BATCH})

    assert response.context["rows"] == []
    assert response.context["chart"]["total"] == 0
    assertContains(response, "— 0 entries.")
    assert len(_csv(client.get("/audit/export.csv", {"batch": BATCH}))) == 0
    assert client.get(f"/audit/{log['batch'][0].number}/").status_code == 404


# Markers


def test_each_entry_of_a_batch_links_to_the_batchs_entries(auditor_client, log, no_batch_page):
    response = auditor_client.get("/audit/")
    html = response.content.decode()

    assert html.count(f'href="/audit/?batch={BATCH}"') == 3
    assert html.count(f'href="/audit/?batch={OTHER}"') == 2
    assert html.count(">Bulk edit ") == 5  # single edits have none
    assertNotContains(response, "Show every entry, not only this bulk edit")
    assertNotContains(response, "its page</a>")  # no bulk edit page to link to yet


def test_an_entry_of_a_batch_links_to_the_batch_on_its_page(auditor_client, log, no_batch_page):
    response = auditor_client.get(f"/audit/{log['batch'][0].number}/")
    assertContains(response, f'href="/audit/?batch={BATCH}"', count=2)
    assertNotContains(response, "the bulk edit's page")

    single = auditor_client.get(f"/audit/{log['single'][0].number}/")
    assertNotContains(single, "?batch=")


def test_the_bulk_edit_page_is_linked_once_it_exists(auditor_client, log, batch_page):
    page = f'href="/tickets/bulk/{BATCH}/"'
    listed = auditor_client.get("/audit/", {"batch": BATCH})
    assertContains(listed, f"{page}>Open the bulk edit</a>")
    assertContains(listed, f"{page}>its page</a>", count=3)
    detail = auditor_client.get(f"/audit/{log['batch'][0].number}/")
    assertContains(detail, f"{page}>the bulk edit's page</a>")


# Export and chain


def test_export_has_the_batch_id_column(auditor_client, log):
    assert audit.EXPORT_COLUMNS[-1] == "batch_id"
    rows = _csv(auditor_client.get("/audit/export.csv", {"batch": BATCH}))
    assert [int(row["number"]) for row in rows] == newest_first(log["batch"])
    assert {row["batch_id"] for row in rows} == {BATCH}

    everything = {
        int(row["number"]): row["batch_id"] for row in _csv(auditor_client.get("/audit/export.csv"))
    }
    assert {everything[e.number] for e in log["single"]} == {""}
    assert {everything[e.number] for e in log["other"]} == {OTHER}
    export = AuditEntry.objects.filter(action="audit.export").order_by("id").first()
    assert export.request_body == {"filters": {"batch": BATCH}, "format": "csv"}


def test_the_chain_verifies_with_batch_entries(log):
    assert AuditEntry.objects.filter(batch_id__isnull=False).count() == 5
    result = verify_chain()
    assert result.ok, result
