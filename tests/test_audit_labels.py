"""Names, not ids, wherever a person reads the audit log (issue 12): each entry records
the labels of the ids it changed, the custom fields' names and option labels, and the
team's name as they were when it was written; the entry's page, the ticket's history
panel and the CSV show them (ids beside, muted), and keep showing them after a lookup is
renamed in Thena. Edits go through the browser's own post (tests/browser.py) to the
sandbox."""

import csv
from io import StringIO

import pytest
from django.core.cache import cache
from django.test import Client
from pytest_django.asserts import assertContains, assertNotContains

from tests.browser import edit, form_data, to_urlencoded
from tests.util import complete_export, write_audit
from tickets import services
from tickets.audit import RequestMeta, record_attempt, verify_chain
from tickets.models import AuditEntry, TeamScope

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("thena")]

META = RequestMeta(request_id="req-12", client_ip="198.51.100.12", user_agent="Firefox/140")


def _save(client, ticket_id: str, **changes):
    """Open the ticket's page, change inputs as a user would, and submit the form."""
    url = f"/tickets/{ticket_id}/"
    data = edit(form_data(client.get(url).content.decode()), **changes)
    response = client.post(
        url, to_urlencoded(data), content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 302, response.content.decode()[:500]
    entry = AuditEntry.objects.with_current_outcome().filter(ticket_id=ticket_id).latest("id")
    assert entry.current_outcome == "succeeded"
    return entry


def _lookup(sandbox, ticket: dict, kind: str, name: str) -> dict:
    """A status/priority/... item of the ticket's team, as the sandbox holds it (mutable)."""
    world = sandbox._world
    return next(
        i for i in getattr(world, kind)[world.root_team_id(ticket["teamId"])] if i["name"] == name
    )


def _product_area(sandbox) -> dict:
    return next(f for f in sandbox._world.custom_fields if f["name"] == "Product area")


def _csv(client) -> list[dict]:
    response = client.get("/audit/export.csv")
    rows = list(csv.reader(StringIO(complete_export(b"".join(response.streaming_content)))))
    return [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]


def _status_edit(manager_client, sandbox, ticket):
    waiting = _lookup(sandbox, ticket, "statuses", "Waiting on customer")
    urgent = _lookup(sandbox, ticket, "priorities", "Urgent")
    assert ticket["priorityId"] != urgent["id"] and ticket["statusId"] != waiting["id"]
    entry = _save(manager_client, ticket["id"], statusId=waiting["id"], priorityId=urgent["id"])
    return entry, waiting, urgent


# -- recorded when written ------------------------------------------------------------------


def test_an_edit_records_the_labels_of_the_ids_before_and_after(manager_client, sandbox, ticket):
    entry, waiting, urgent = _status_edit(manager_client, sandbox, ticket)

    assert entry.changes["statusId"]["after"] == waiting["id"]
    assert entry.changes["statusId"]["after_label"] == "On hold / Waiting on customer"
    assert entry.changes["statusId"]["before"] == ticket["statusId"]
    assert ticket["status"] in entry.changes["statusId"]["before_label"]
    assert entry.changes["priorityId"] == {
        "before": ticket["priorityId"],
        "before_label": ticket["priority"],
        "after": urgent["id"],
        "after_label": "Urgent",
    }
    assert entry.team_name == "Support" and entry.team_id == ticket["teamId"]
    assert verify_chain().ok


def test_an_assignee_is_recorded_by_name(manager_client, sandbox, ticket):
    world = sandbox._world
    other = next(u for u in world.members[ticket["teamId"]] if u != ticket["assignedAgentId"])
    person = world.users[other]

    entry = _save(manager_client, ticket["id"], assignedAgentId=other)

    change = entry.changes["assignedAgentId"]
    assert change["after_label"] == f"{person['name']} <{person['email']}>"
    assert ticket["assignedAgent"] in change["before_label"]


def test_an_id_with_no_known_name_gets_no_label():
    labels = services.Labeller(services.Choices(statuses=[("st_known", "Known")]))
    body = {"statusId": "st_new", "title": "Plain text"}
    before = {"statusId": "st_known", "title": "Old"}
    changes = services.entry_changes(before, body, frozenset(), labels)
    assert changes["statusId"] == {"before": "st_known", "before_label": "Known", "after": "st_new"}
    assert changes["title"] == {"before": "Old", "after": "Plain text"}  # text has no labels


def test_a_custom_field_is_recorded_by_name_and_option_label(manager_client, sandbox, ticket):
    area = _product_area(sandbox)
    for option in area["options"]:  # Thena's option shape is open: here with labels
        option["label"] = {"API": "Public API"}.get(option["value"], option["value"])

    entry = _save(manager_client, ticket["id"], **{f"cf__{area['uid']}": "API"})

    change = entry.changes["customFieldValues"]
    assert {"customFieldId": area["uid"], "data": [{"value": "API"}]} in change["after"]
    assert change["fields"] == {
        area["uid"]: {"name": "Product area", "before": "", "after": "Public API"}
    }


# -- the entry's page --------------------------------------------------------------------------


def test_the_entry_page_shows_labels_with_the_ids_beside(
    manager_client, auditor_client, sandbox, ticket
):
    entry, waiting, urgent = _status_edit(manager_client, sandbox, ticket)

    page = auditor_client.get(f"/audit/{entry.number}/")

    assertContains(
        page, f'On hold / Waiting on customer <code class="muted small">{waiting["id"]}</code>'
    )
    assertContains(page, f'Urgent <code class="muted small">{urgent["id"]}</code>')
    assertContains(
        page, f'{ticket["priority"]} <code class="muted small">{ticket["priorityId"]}</code>'
    )
    assertContains(page, 'Priority <code class="muted">priorityId</code>')  # the label first
    assertContains(
        page, f'<dd>Support <code class="muted small">{ticket["teamId"]}</code></dd>', html=True
    )


def test_an_entry_keeps_its_labels_after_the_status_is_renamed(
    manager_client, auditor_client, sandbox, ticket
):
    entry, waiting, _ = _status_edit(manager_client, sandbox, ticket)
    waiting["name"] = waiting["displayName"] = "Blocked by customer"
    sandbox.put_ticket(ticket["id"], teamName="Customer care", status="Blocked by customer")
    cache.clear()  # every lookup is read again
    page = manager_client.get(f"/tickets/{ticket['id']}/")
    assertContains(page, "Blocked by customer")  # the edit page reads the new names...
    assertContains(page, "Customer care")

    detail = auditor_client.get(f"/audit/{entry.number}/")
    assertContains(detail, "On hold / Waiting on customer")  # ...the log keeps the old one
    assertNotContains(detail, "Blocked by customer")
    assertContains(detail, "<dd>Support <code")
    assertNotContains(detail, "Customer care")
    assertContains(page, "Status: ")
    assertNotContains(page, "Status: Blocked")
    history = manager_client.get(f"/tickets/{ticket['id']}/history/")
    assertContains(history, "→ On hold / Waiting on customer")
    (row,) = [r for r in _csv(auditor_client) if r["action"] == "ticket.update"]
    assert "On hold / Waiting on customer" in row["changes_text"]
    assert row["team_name"] == "Support"


def test_the_entry_page_shows_custom_fields_by_name_and_option_label(
    manager_client, auditor_client, sandbox, ticket
):
    area = _product_area(sandbox)
    for option in area["options"]:
        option["label"] = {"API": "Public API"}.get(option["value"], option["value"])
    entry = _save(manager_client, ticket["id"], **{f"cf__{area['uid']}": "API"})

    page = auditor_client.get(f"/audit/{entry.number}/")

    assertContains(
        page,
        f'<th scope="row">Product area <code class="muted small">{area["uid"]}</code></th>'
        "<td>(empty)</td><td>Public API</td>",
        html=True,
    )
    assertContains(page, "Values as recorded (JSON)")  # the raw values stay at hand


def test_entries_written_before_labels_still_read(auditor_client, manager):
    old = write_audit(
        manager,
        {"id": "tk_1", "ticketIdentifier": "SUP-1", "title": "Printer", "teamId": "t_sup"},
        {
            "statusId": {"before": "st_open", "after": "st_closed"},
            "customFieldValues": {
                "before": [{"customFieldId": "cf_1", "data": [{"value": "a"}]}],
                "after": [{"customFieldId": "cf_1", "data": [{"value": "b"}, {"value": "c"}]}],
            },
        },
        meta=META,
    )

    page = auditor_client.get(f"/audit/{old.number}/")
    assertContains(page, "<dd>t_sup</dd>", html=True)
    assertContains(page, '<th scope="row">cf_1</th><td>a</td><td>b, c</td>', html=True)
    (row,) = _csv(auditor_client)
    assert row["changes_text"] == "Status: st_open → st_closed; cf_1: a → b, c"
    assert row["team_name"] == ""


# -- the ticket's history panel -------------------------------------------------------------


def test_the_history_panel_shows_values_in_words(manager_client, sandbox, ticket):
    long_title = "A much longer title " * 6
    _save(manager_client, ticket["id"], title=long_title, dueDate="2026-12-24T09:30")
    _status_edit(manager_client, sandbox, ticket)

    history = manager_client.get(f"/tickets/{ticket['id']}/history/")

    assertContains(history, f"<li>Priority: {ticket['priority']} → Urgent</li>", html=True)
    assertContains(history, "→ On hold / Waiting on customer</li>")
    assertContains(history, "<li>Due date: set to 24 Dec 2026 09:30</li>", html=True)
    cut = " ".join(long_title.split())[:59].rstrip() + "…"
    assertContains(history, f"<li>Title: {ticket['title']} → {cut}</li>", html=True)


# -- denied, reasons and reverts --------------------------------------------------------------


def test_a_denied_edit_says_so_in_words(viewer_client, auditor_client, ticket):
    url = f"/tickets/{ticket['id']}/"
    viewer_client.get("/tickets/")  # the team list, and the ticket's team, are now cached
    viewer_client.get(url)
    response = viewer_client.post(url, {"title": "Mine now"})
    assert response.status_code == 403
    entry = AuditEntry.objects.get(outcome="denied")
    assert (entry.team_id, entry.team_name) == (ticket["teamId"], "Support")

    page = auditor_client.get(f"/audit/{entry.number}/")

    assertContains(
        page,
        "The user may view tickets but not edit them (no “Can edit Thena tickets” permission).",
    )
    assertNotContains(page, "tickets.edit_ticket")


def _ticket_ref(ticket: dict) -> dict:
    return {key: ticket[key] for key in ("id", "ticketIdentifier", "title", "teamId", "teamName")}


def _entry(actor, ticket, **extra) -> AuditEntry:
    return record_attempt(
        action="ticket.update",
        actor=actor,
        ticket=_ticket_ref(ticket),
        changes={"title": {"before": "Before", "after": "After"}},
        request_body={"title": "After"},
        outcome="succeeded",
        meta=META,
        **extra,
    )


def test_the_reason_and_revert_links_show_on_both_entries(manager, auditor_client, ticket):
    original = _entry(manager, ticket, reason="Customer asked for it")
    first = _entry(manager, ticket, reason="Wrong ticket", revert_of=original.id)
    second = _entry(manager, ticket, revert_of=original.id)

    revert = auditor_client.get(f"/audit/{first.number}/")
    assertContains(
        revert, "<div><dt>Reason</dt><dd class='value'>Wrong ticket</dd></div>", html=True
    )
    assertContains(
        revert,
        "<div><dt>Revert of</dt>"
        f'<dd><a href="/audit/{original.number}/">#{original.number}</a></dd></div>',
        html=True,
    )
    assertNotContains(revert, "Reverted by")

    page = auditor_client.get(f"/audit/{original.number}/")
    assertContains(page, "Customer asked for it")
    assertContains(
        page,
        f'<dd><a href="/audit/{first.number}/">#{first.number}</a>, '
        f'<a href="/audit/{second.number}/">#{second.number}</a></dd>',
        html=True,
    )
    assertNotContains(page, "Revert of")


def test_a_scoped_user_sees_no_revert_made_under_another_team(manager, auditor, ticket, sandbox):
    original = _entry(manager, ticket)
    other = next(t for t in sandbox.tickets() if t["teamId"] != ticket["teamId"])
    hidden = _entry(manager, {**ticket, "teamId": other["teamId"]}, revert_of=original.id)
    TeamScope.objects.create(user=auditor, team_ids=[ticket["teamId"]])
    client = Client()
    client.force_login(auditor)

    page = client.get(f"/audit/{original.number}/")

    assert page.status_code == 200
    assertNotContains(page, f'href="/audit/{hidden.number}/"')
    assertNotContains(page, "Reverted by")


def test_the_history_panel_shows_the_reason_and_the_reverted_entry(manager, manager_client, ticket):
    original = _entry(manager, ticket)
    _entry(manager, ticket, reason="Put back as the customer had it", revert_of=original.id)

    history = manager_client.get(f"/tickets/{ticket['id']}/history/")

    assertContains(history, "Reason: Put back as the customer had it")
    assertContains(
        history, f'Revert of <a href="/audit/{original.number}/">#{original.number}</a>', count=1
    )
    assertContains(history, "<li>Title: Before → After</li>", count=2, html=True)


def test_the_csv_has_names_beside_ids_and_the_reason_and_reverted_number(
    manager, manager_client, auditor_client, sandbox, ticket
):
    edited, _, _ = _status_edit(manager_client, sandbox, ticket)
    revert = _entry(manager, ticket, reason="=HYPERLINK(1)", revert_of=edited.id)

    rows = {int(row["number"]): row for row in _csv(auditor_client)}

    header = list(rows[edited.number])
    assert header.index("team_name") == header.index("team_id") + 1
    assert header.index("changes_text") == header.index("changes_json") + 1
    row = rows[edited.number]
    assert row["team_name"] == "Support"
    assert row["changes_text"] == (
        f"Status: {edited.changes['statusId']['before_label']} → On hold / Waiting on customer; "
        f"Priority: {ticket['priority']} → Urgent"
    )
    assert (row["reason"], row["revert_of_number"]) == ("", "")
    assert rows[revert.number]["reason"] == "'=HYPERLINK(1)"  # neutralised, as every cell
    assert rows[revert.number]["revert_of_number"] == str(edited.number)
    assert rows[revert.number]["changes_text"] == "Title: Before → After"
