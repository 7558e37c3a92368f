import csv
import re
from io import StringIO

import pytest
from django.test import Client
from pytest_django.asserts import assertContains, assertNotContains

from tests.util import complete_export, write_audit
from tickets.audit import RequestMeta, verify_chain
from tickets.models import AuditEntry
from tickets.thena import schema

pytestmark = pytest.mark.django_db

META = RequestMeta(request_id="req-42", client_ip="198.51.100.7", user_agent="Firefox/140")
TICKET = {"id": "tk_1", "ticketIdentifier": "SUP-1", "title": "Printer on fire", "teamId": "t_sup"}
LONG_BEFORE = "The printer on the third floor is on fire.\nNobody has called facilities yet."
LONG_AFTER = "The printer on the third floor was on fire.\nFacilities put it out this morning."


def write(actor, *, ticket=TICKET, changes=None, outcome="pending", settle=()):
    changes = changes or {"statusId": {"before": "st_open", "after": "st_closed"}}
    return write_audit(
        actor, ticket, changes, meta=META, outcome=outcome, settle=settle, duration_ms=87
    )


@pytest.fixture
def entry(manager):
    return write(
        manager,
        changes={
            "description": {"before": LONG_BEFORE, "after": LONG_AFTER},
            "metadata": {"before": {"plan": "pro"}, "after": {"plan": "pro", "seats": 5}},
            "title": {"before": "Printer", "after": "<script>alert(1)</script>"},
        },
        settle=["unknown", "succeeded"],
    )


AUDIT_URLS = ["/audit/", "/audit/?outcome=failed", "/audit/export.csv", "/audit/{number}/"]


# Access


@pytest.mark.parametrize("url", AUDIT_URLS)
def test_anonymous_users_are_sent_to_login(client, entry, url):
    url = url.format(number=entry.number)
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


@pytest.mark.parametrize("url", AUDIT_URLS)
def test_users_without_the_audit_permission_get_403(viewer_client, entry, url):
    assert viewer_client.get(url.format(number=entry.number)).status_code == 403
    htmx = viewer_client.get(url.format(number=entry.number), headers={"HX-Request": "true"})
    assert htmx.status_code == 403
    assert not AuditEntry.objects.filter(action="audit.export").exists()


@pytest.mark.parametrize("persona", ["auditor_client", "manager_client"])
@pytest.mark.parametrize("url", AUDIT_URLS)
def test_auditors_and_managers_read_every_audit_url(request, persona, entry, url):
    client = request.getfixturevalue(persona)
    response = client.get(url.format(number=entry.number))
    assert response.status_code == 200


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
@pytest.mark.parametrize("url", AUDIT_URLS)
def test_audit_urls_only_answer_get(auditor_client, entry, url, method):
    response = getattr(auditor_client, method)(url.format(number=entry.number))
    assert response.status_code == 405
    assert AuditEntry.objects.count() == 1  # no export was recorded


@pytest.mark.usefixtures("thena")
def test_nav_link_only_for_users_who_may_read_the_log(auditor_client, viewer_client):
    assertContains(auditor_client.get("/audit/"), 'href="/audit/" aria-current="page">Audit log')
    assertContains(auditor_client.get("/tickets/"), 'href="/audit/">Audit log</a>')
    assertNotContains(viewer_client.get("/tickets/"), "Audit log")


def test_unknown_entry_is_404(auditor_client):
    assert auditor_client.get("/audit/999/").status_code == 404


# The list


def test_list_shows_the_entry_with_its_links_labels_and_current_outcome(auditor_client, entry):
    response = auditor_client.get("/audit/")

    assertContains(response, f'href="/audit/{entry.number}/"')
    assertContains(response, 'href="/tickets/tk_1/" title="Printer on fire">SUP-1</a>')
    assertContains(response, "Title, Description, Metadata")  # in the edit form's order
    assertContains(response, '<span class="badge outcome-succeeded">succeeded</span>')
    assertContains(response, "manager")
    assertContains(response, "<td>Ticket edit</td>")
    assertContains(response, 'href="/audit/export.csv">Export these entries (CSV)')
    assertContains(response, "<svg")
    assertNotContains(response, "style=")  # the CSP refuses inline styles


def test_list_shows_times_in_the_users_time_zone(auditor_client, entry):
    auditor_client.cookies["tz"] = "Asia/Tokyo"
    response = auditor_client.get("/audit/")

    local = entry.created_at.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Tokyo"))
    assertContains(response, "Times are in Asia/Tokyo")
    assertContains(response, local.strftime("%H:%M:%S"))


def test_field_filter_offers_every_patch_field_by_label(auditor_client):
    response = auditor_client.get("/audit/")
    for field in schema.fields():
        assertContains(response, f'<option value="{field.name}">{field.label}</option>', html=True)


def test_filters_narrow_the_list_and_are_kept_in_the_form(auditor_client, manager, auditor):
    mine = write(manager, settle=["failed"])
    other = write(auditor, settle=["succeeded"])

    response = auditor_client.get("/audit/?actor=manager&outcome=failed&field=statusId")

    assertContains(response, f'href="/audit/{mine.number}/"')
    assertNotContains(response, f'href="/audit/{other.number}/"')
    assertContains(response, 'value="manager"')
    assertContains(response, '<option value="failed" selected>Failed</option>', html=True)
    assertContains(
        response,
        'href="/audit/export.csv?actor=manager&amp;field=statusId&amp;outcome=failed"',
    )


def test_htmx_request_returns_only_the_list_fragment(auditor_client, entry):
    response = auditor_client.get(
        "/audit/?actor=&ticket=&field=&outcome=succeeded&since=&until=",
        headers={"HX-Request": "true"},
    )

    content = response.content.decode()
    assert content.lstrip().startswith('<section id="audit-results"')
    assert "<html" not in content
    assert 'id="audit-filters"' not in content
    assert f'href="/audit/{entry.number}/"' in content
    assert 'id="id_since_error" hx-swap-oob="true"' in content
    assert "HX-Request" in response["Vary"]
    assert response["HX-Push-Url"] == "/audit/?outcome=succeeded"  # no empty fields


def test_history_restore_gets_the_whole_page(auditor_client, entry):
    response = auditor_client.get(
        "/audit/", headers={"HX-Request": "true", "HX-History-Restore-Request": "true"}
    )
    assertContains(response, "<html")


def test_invalid_filters_show_errors_next_to_the_fields_not_a_500(auditor_client, entry):
    response = auditor_client.get(
        "/audit/?since=2025-02-30&until=later&outcome=maybe&field=apiKey&cursor=zzz"
    )

    assert response.status_code == 200
    assertContains(response, 'id="id_since_error">Enter a valid date.</p>')
    assertContains(response, 'id="id_until_error">Enter a valid date.</p>')
    assertContains(response, "Select a valid choice. maybe is not one of the available choices.")
    assertContains(response, "Select a valid choice. apiKey is not one of the available choices.")
    assertContains(response, 'aria-invalid="true"')
    assertContains(response, "Nothing shown: correct the filters")
    assertNotContains(response, f'href="/audit/{entry.number}/"')
    htmx = auditor_client.get(
        "/audit/?since=2025-03-10&until=2025-03-01", headers={"HX-Request": "true"}
    )
    assertContains(htmx, 'id="id_until_error" hx-swap-oob="true">The end date is before the start')


def test_bad_cursor_shows_the_newest_page_with_a_notice(auditor_client, entry):
    for token in ("zzz", "%%%", "MTIzNDU2Nzg5MC45OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5", "a" * 500):
        response = auditor_client.get("/audit/", {"cursor": token})
        assert response.status_code == 200
        assertContains(response, "That page link is not valid")
        assertContains(response, f'href="/audit/{entry.number}/"')


def test_older_link_pages_with_a_cursor_and_keeps_the_filters(auditor_client, manager):
    written = [write(manager) for _ in range(55)]

    first = auditor_client.get("/audit/?actor=manager")
    older = re.search(
        r'href="(/audit/\?actor=manager&amp;cursor=[^"]+)" rel="next"', first.content.decode()
    )
    assert older
    second = auditor_client.get(older.group(1).replace("&amp;", "&"))

    shown = [int(pk) for pk in re.findall(r'href="/audit/(\d+)/"', second.content.decode())]
    assert shown == [entry.pk for entry in reversed(written[:5])]
    assertContains(second, "End of the log.")
    assertContains(second, "« Newest")


def test_a_ticket_id_no_url_can_carry_is_shown_without_a_link(auditor_client, manager):
    odd = write(manager, ticket={"id": "a/b", "ticketIdentifier": "", "title": "", "teamId": "t"})
    assertContains(auditor_client.get("/audit/"), '<td class="nowrap">a/b</td>', html=True)
    assertContains(auditor_client.get(f"/audit/{odd.number}/"), "a/b")


def test_empty_result_says_so(auditor_client):
    assertContains(auditor_client.get("/audit/?actor=nobody"), "No entries match.")


# One entry


def test_detail_shows_who_when_where_the_diff_json_body_and_every_outcome(auditor_client, entry):
    response = auditor_client.get(f"/audit/{entry.number}/")

    for text in (
        "manager",
        "&lt;manager@example.com&gt;",
        "198.51.100.7",
        "Firefox/140",
        "req-42",
        'href="/tickets/tk_1/">SUP-1</a>',
        '<del><span class="visually-hidden">[removed: </span>is',
        '<ins><span class="visually-hidden">[added: </span>was',
        "&lt;script&gt;alert(1)&lt;/script&gt;",
        "&quot;seats&quot;: 5",
        "Request body",
        '<span class="badge outcome-unknown">unknown</span>',
        "87 ms",
        entry.hash,
    ):
        assertContains(response, text)
    assertContains(response, '<span class="badge outcome-succeeded">succeeded</span>', count=2)
    assertNotContains(response, "<script>alert")
    body = response.content.decode()
    assert "{\n  &quot;description&quot;: " in body  # the exact request body, indented


def test_ticket_history_links_each_item_to_its_audit_entry(manager_client, sandbox, thena):
    ticket = sandbox.tickets()[0]
    from django.contrib.auth.models import User

    logged = write(User.objects.get(username="manager"), ticket=ticket)
    response = manager_client.get(f"/tickets/{ticket['id']}/")
    assertContains(response, f'href="/audit/{logged.number}/"')


# Export


def _csv(response) -> list[list[str]]:
    return list(csv.reader(StringIO(complete_export(b"".join(response.streaming_content)))))


def test_export_streams_the_filtered_entries_and_is_recorded(auditor_client, manager, auditor):
    failed = [write(manager, settle=["failed"]) for _ in range(3)]
    write(manager, settle=["succeeded"])
    write(auditor, settle=["failed"])

    response = auditor_client.get("/audit/export.csv?actor=manager&outcome=failed&cursor=zzz")

    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert re.match(
        r'attachment; filename="audit-log-\d{8}-\d{6}\.csv"', response["Content-Disposition"]
    )
    rows = _csv(response)
    assert rows[0][:3] == ["number", "created_at_utc", "actor"]
    assert [int(row[0]) for row in rows[1:]] == [entry.number for entry in reversed(failed)]
    export = AuditEntry.objects.get(action="audit.export")
    assert export.actor_username == "auditor"
    # Written pending, settled once the whole file was streamed.
    assert (export.outcome, export.outcomes.get().outcome) == ("pending", "succeeded")
    filters = {"actor": "manager", "outcome": "failed"}
    assert export.request_body == {"filters": filters, "format": "csv"}
    assert export.client_ip == "127.0.0.1"
    assert verify_chain().ok


def test_export_neutralises_formula_cells(auditor_client, django_user_model):
    evil = django_user_model.objects.create_user("=2+5", email="+x@example.com")
    write(
        evil,
        ticket={"id": "tk_9", "ticketIdentifier": "SUP-9", "title": "@SUM(1)", "teamId": "t"},
        changes={"title": {"before": "a", "after": "-1"}},
        outcome="denied",
    )

    header, row = _csv(auditor_client.get("/audit/export.csv"))[:2]
    cells = dict(zip(header, row, strict=True))

    assert (cells["actor"], cells["actor_email"], cells["ticket_title"]) == (
        "'=2+5",
        "'+x@example.com",
        "'@SUM(1)",
    )
    assert cells["changes_json"] == '{"title": {"after": "-1", "before": "a"}}'


def test_export_with_invalid_filters_is_a_400_and_records_nothing(auditor_client):
    response = auditor_client.get("/audit/export.csv?since=soon")
    assert response.status_code == 400
    assert b"since" in response.content
    assert not AuditEntry.objects.exists()


def test_export_of_an_empty_log_is_just_the_header(auditor_client):
    rows = _csv(auditor_client.get("/audit/export.csv"))
    assert len(rows) == 1


def test_export_client_ip_comes_from_the_request(auditor):
    client = Client(REMOTE_ADDR="203.0.113.9", HTTP_USER_AGENT="curl/8")
    client.force_login(auditor)
    b"".join(client.get("/audit/export.csv").streaming_content)
    export = AuditEntry.objects.get(action="audit.export")
    assert (export.client_ip, export.user_agent) == ("203.0.113.9", "curl/8")
