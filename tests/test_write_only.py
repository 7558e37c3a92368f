"""Fields Thena does not return, and custom-field values it returns in a shape that
cannot be written back (thena-api.md §3): shown honestly, sent only when set, never
rebuilt from values that were not read. Every page goes through the browser's own post
(tests/browser.py) to the real sandbox."""

import json

import pytest
from pytest_django.asserts import assertContains, assertNotContains

from tests.browser import form_data, replace, to_urlencoded
from tests.util import SANDBOX_VARIANTS
from tickets.forms import CUSTOM_READ_ONLY, WRITE_ONLY_NOTE
from tickets.models import AuditEntry
from tickets.thena.documented import WRITE_ONLY

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("thena")]

ECHO = SANDBOX_VARIANTS["echo-write-only"]
OBJECTS = SANDBOX_VARIANTS["object-custom-fields"]


def _ticket(sandbox, **where) -> dict:
    return next(
        t
        for t in sandbox.tickets()
        if t["teamIdentifier"] == "SUP" and all(bool(t[k]) == v for k, v in where.items())
    )


def _open(client, ticket_id: str):
    page = client.get(f"/tickets/{ticket_id}/")
    assert page.status_code == 200
    return page, form_data(page.content.decode())


def _save(client, sandbox, ticket_id: str, data, htmx: bool = False):
    sandbox.requests.clear()
    headers = {"HX-Request": "true"} if htmx else {}
    response = client.post(
        f"/tickets/{ticket_id}/",
        to_urlencoded(data),
        content_type="application/x-www-form-urlencoded",
        headers=headers,
    )
    return response, [r.json for r in sandbox.requests if r.method == "PATCH"]


def _keys(data) -> set[str]:
    return {key for key, _ in data}


# -- write-only fields -------------------------------------------------------------------


def test_write_only_fields_show_empty_with_a_note_and_an_untouched_form_sends_nothing(
    manager_client, sandbox
):
    ticket = _ticket(sandbox, dueDate=True, metadata=True)
    page, data = _open(manager_client, ticket["id"])
    for name in ("dueDate", "metadata", "attachmentUrls", "isProactive"):
        assert [v for k, v in data if k == name] in ([], [""]), name
    assert page.content.decode().count(WRITE_ONLY_NOTE) == len(WRITE_ONLY)
    response, patches = _save(manager_client, sandbox, ticket["id"], data)
    assert response.status_code == 302
    assert patches == []


def test_a_write_only_value_is_sent_when_set_even_if_thena_already_holds_it(
    manager_client, sandbox
):
    ticket = _ticket(sandbox, metadata=True)
    stored = sandbox.ticket(ticket["id"])
    _, data = _open(manager_client, ticket["id"])
    data = replace(data, "isProactive", "false")  # the tri-state select: "No"
    data = replace(data, "metadata", json.dumps(stored["metadata"]))
    data = replace(data, "dueDate", "2026-12-24T09:30")
    response, patches = _save(manager_client, sandbox, ticket["id"], data)
    assert response.status_code == 302
    assert patches == [
        {
            "isProactive": False,
            "metadata": stored["metadata"],
            "dueDate": "2026-12-24T09:30:00.000Z",
        }
    ]
    assert sandbox.ticket(ticket["id"])["dueDate"] == "2026-12-24T09:30:00.000Z"


def test_the_audit_records_a_write_only_before_as_not_readable(
    manager_client, auditor_client, sandbox
):
    ticket = _ticket(sandbox)
    _, data = _open(manager_client, ticket["id"])
    data = replace(replace(data, "dueDate", "2026-12-24T09:30"), "title", "Renamed")
    response, _ = _save(manager_client, sandbox, ticket["id"], data, htmx=True)
    assertContains(response, "the form shows it empty again")
    entry = AuditEntry.objects.get(ticket_id=ticket["id"])
    assert entry.changes["dueDate"] == {"after": "2026-12-24T09:30:00.000Z"}
    assert entry.changes["title"] == {"before": ticket["title"], "after": "Renamed"}
    detail = auditor_client.get(f"/audit/{entry.number}/")
    assertContains(detail, "Not readable: Thena does not return this value.", count=1)


def test_the_conflict_panel_says_it_cannot_protect_a_write_only_field(manager_client, sandbox):
    ticket = _ticket(sandbox)
    _, data = _open(manager_client, ticket["id"])
    data = replace(replace(data, "dueDate", "2026-12-24T09:30"), "title", "Mine")
    sandbox.touch_ticket(ticket["id"], title="Theirs", dueDate="2027-01-01T00:00:00Z")
    response, patches = _save(manager_client, sandbox, ticket["id"], data)
    assert patches == []
    assertContains(response, "Someone changed this ticket")
    assertContains(response, "Thena does not return Due date: a change someone else made")
    # Resolving keeps the write-only value the user set, and sends it over theirs.
    again = replace(form_data(response.content.decode()), "resolve__title", "yours")
    response, patches = _save(manager_client, sandbox, ticket["id"], again)
    assert response.status_code == 302
    assert patches == [{"title": "Mine", "dueDate": "2026-12-24T09:30:00.000Z"}]


@pytest.mark.parametrize("sandbox_config", [ECHO], indirect=True)
def test_a_returned_write_only_field_behaves_like_every_other_field(manager_client, sandbox):
    ticket = _ticket(sandbox, dueDate=True)
    page, data = _open(manager_client, ticket["id"])
    assertNotContains(page, WRITE_ONLY_NOTE)
    assert [v for k, v in data if k == "dueDate"] != [""]
    response, patches = _save(manager_client, sandbox, ticket["id"], data)
    assert patches == []
    response, patches = _save(manager_client, sandbox, ticket["id"], replace(data, "dueDate", ""))
    assert response.status_code == 302
    assert patches == [{"dueDate": None}]
    entry = AuditEntry.objects.get(ticket_id=ticket["id"])
    assert entry.changes["dueDate"]["before"] == ticket["dueDate"]


# -- custom fields -----------------------------------------------------------------------


def test_custom_fields_read_as_strings_are_read_only_and_never_sent(manager_client, sandbox):
    ticket = _ticket(sandbox, customFieldValues=True)
    page, data = _open(manager_client, ticket["id"])
    assertContains(page, CUSTOM_READ_ONLY)
    assert not {k for k in _keys(data) if k.startswith("cf__")}
    assert "customFieldValues" not in _keys(data)
    # A forged post of a custom field, or of the list, changes nothing.
    uid = ticket["customFieldValues"][0]["customFieldId"]
    forged = [*data, (f"cf__{uid}", "forged"), ("customFieldValues", "[]")]
    forged = replace(forged, "title", "Only this")
    response, patches = _save(manager_client, sandbox, ticket["id"], forged)
    assert response.status_code == 302
    assert patches == [{"title": "Only this"}]
    assert sandbox.ticket(ticket["id"])["customFieldValues"] == ticket["customFieldValues"]


def _text_fields(thena, ticket: dict) -> list[str]:
    """The uids of the ticket's team's single-line custom fields."""
    return [
        d["uid"] for d in thena.custom_fields(ticket["teamId"]) if d["fieldType"] == "single_line"
    ]


def test_a_ticket_with_no_custom_values_yet_can_get_its_first(manager_client, sandbox, thena):
    ticket = _ticket(sandbox, customFieldValues=False)
    uid = _text_fields(thena, ticket)[0]
    _, data = _open(manager_client, ticket["id"])
    response, patches = _save(
        manager_client, sandbox, ticket["id"], replace(data, f"cf__{uid}", "42")
    )
    assert response.status_code == 302, response.context["form"].errors
    assert patches == [{"customFieldValues": [{"customFieldId": uid, "data": [{"value": "42"}]}]}]


@pytest.mark.parametrize("sandbox_config", [OBJECTS], indirect=True)
def test_object_custom_fields_are_edited_item_by_item(manager_client, sandbox, thena):
    ticket = next(
        t
        for t in sandbox.tickets()
        if len(t["customFieldValues"]) > 1
        and t["customFieldValues"][0]["customFieldId"] in _text_fields(thena, t)
    )
    first, *others = ticket["customFieldValues"]
    _, data = _open(manager_client, ticket["id"])
    name = "cf__" + first["customFieldId"]
    assert data_value(data, name) == first["data"][0]["value"]
    response, patches = _save(manager_client, sandbox, ticket["id"], replace(data, name, "ORD-1"))
    assert response.status_code == 302
    edited = {**first, "data": [{"value": "ORD-1"}]}
    assert patches == [{"customFieldValues": [edited, *others]}]


def data_value(data, name: str) -> str:
    return next((v for k, v in data if k == name), "")


@pytest.mark.parametrize("sandbox_config", [OBJECTS], indirect=True)
def test_one_item_thena_holds_in_another_shape_makes_them_all_read_only(manager_client, sandbox):
    ticket = _ticket(sandbox, customFieldValues=True)
    items = [*ticket["customFieldValues"], {"uid": "LEGACY", "value": "kept"}]
    sandbox.put_ticket(ticket["id"], customFieldValues=items)
    page, data = _open(manager_client, ticket["id"])
    assertContains(page, CUSTOM_READ_ONLY)
    assert not {k for k in _keys(data) if k.startswith("cf__")}


@pytest.mark.parametrize("sandbox_config", [OBJECTS], indirect=True)
def test_values_that_stop_being_exact_before_the_save_are_not_rebuilt(
    manager_client, sandbox, thena
):
    ticket = next(
        t
        for t in sandbox.tickets()
        if t["customFieldValues"]
        and t["customFieldValues"][0]["customFieldId"] in _text_fields(thena, t)
    )
    first = ticket["customFieldValues"][0]
    _, data = _open(manager_client, ticket["id"])
    data = replace(data, "cf__" + first["customFieldId"], "ORD-1")
    sandbox.put_ticket(ticket["id"], customFieldValues=["opaque"])  # now one string
    response, patches = _save(manager_client, sandbox, ticket["id"], data)
    assert response.status_code == 200
    assertContains(response, "cannot be written back exactly")
    assert patches == []
    entry = AuditEntry.objects.get(ticket_id=ticket["id"])
    assert (entry.outcome, entry.request_body) == ("failed", {})
    assert entry.message.startswith("Nothing was sent")
    assert sandbox.ticket(ticket["id"])["customFieldValues"] == ["opaque"]


# -- outcomes when only write-only values were sent ---------------------------------------


def _due_date_only(manager_client, sandbox) -> tuple[dict, list]:
    ticket = _ticket(sandbox)
    _, data = _open(manager_client, ticket["id"])
    return ticket, replace(data, "dueDate", "2026-12-24T09:30")


@pytest.mark.parametrize(
    ("applied", "outcome"),
    [(True, "unknown"), (False, "failed")],
    ids=["applied", "not-applied"],
)
def test_a_500_after_a_write_only_edit_is_settled_by_updated_at_never_by_guess(
    manager_client, sandbox, applied, outcome
):
    ticket, data = _due_date_only(manager_client, sandbox)
    sandbox.fail_next(1, 500, applied=applied, only="PATCH")
    response, patches = _save(manager_client, sandbox, ticket["id"], data)
    assert patches == [{"dueDate": "2026-12-24T09:30:00.000Z"}]
    assert response.status_code == 200  # the form again, with the input
    assert data_value(form_data(response.content.decode()), "dueDate") == "2026-12-24T09:30"
    entry = AuditEntry.objects.with_current_outcome().get(ticket_id=ticket["id"])
    assert entry.current_outcome == outcome
    if applied:  # the ticket moved on: it may be ours, but the value cannot be read
        assertContains(response, "Thena does not return the values sent")


def test_a_write_only_edit_answered_with_the_moved_ticket_succeeds(manager_client, sandbox):
    ticket, data = _due_date_only(manager_client, sandbox)
    response, patches = _save(manager_client, sandbox, ticket["id"], data)
    assert (response.status_code, patches) == (302, [{"dueDate": "2026-12-24T09:30:00.000Z"}])
    entry = AuditEntry.objects.with_current_outcome().get(ticket_id=ticket["id"])
    assert entry.current_outcome == "succeeded"


# -- custom fields when Thena does not send their definitions -----------------------------


def _failing_custom_fields(sandbox):
    from tests.test_cold_page import FailPath, _install

    failing = FailPath(sandbox, "/v1/custom-field")
    _install(failing)
    return failing


@pytest.mark.parametrize("sandbox_config", [OBJECTS], indirect=True)
def test_without_definitions_the_values_are_read_only(manager_client, sandbox):
    _failing_custom_fields(sandbox)
    ticket = _ticket(sandbox, customFieldValues=True)
    page, data = _open(manager_client, ticket["id"])
    assertContains(page, "Thena did not send the team&#x27;s custom fields")
    assert "customFieldValues" not in _keys(data)
    assert not [k for k in _keys(data) if k.startswith("cf__")]


@pytest.mark.parametrize("sandbox_config", [OBJECTS], indirect=True)
def test_a_custom_input_the_save_cannot_read_is_refused_not_dropped(manager_client, sandbox, thena):
    from django.core.cache import cache

    ticket = next(
        t
        for t in sandbox.tickets()
        if t["customFieldValues"]
        and t["customFieldValues"][0]["customFieldId"] in _text_fields(thena, t)
    )
    name = "cf__" + ticket["customFieldValues"][0]["customFieldId"]
    _, data = _open(manager_client, ticket["id"])
    data = replace(replace(data, name, "ORD-1"), "title", "Renamed")
    cache.clear()  # the page's choices expired, and now the definitions do not come
    _failing_custom_fields(sandbox)
    response, patches = _save(manager_client, sandbox, ticket["id"], data)
    assert response.status_code == 200
    assertContains(response, "so nothing was saved")
    assert patches == []
    assert data_value(form_data(response.content.decode()), "title") == "Renamed"
