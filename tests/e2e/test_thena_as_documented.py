"""A real browser against a Thena that answers as documented: write-only fields set through
the page, custom values it cannot write back shown read-only, and a list of choices Thena
did not send. Each test checks what reached the sandbox."""

import json

import pytest
from playwright.sync_api import expect

from tests.e2e import PHONE
from tests.test_cold_page import FailPath, _install

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("thena")]

PASSWORD = "correct horse battery"


@pytest.fixture
def screen():
    return PHONE


def _ticket(sandbox, custom: bool) -> dict:
    return next(
        t
        for t in sandbox.tickets()
        if t["teamIdentifier"] == "SUP" and bool(t["customFieldValues"]) == custom
    )


def _patches(sandbox) -> list[dict]:
    return [r.json for r in sandbox.requests if r.method == "PATCH"]


def test_write_only_fields_are_set_from_a_phone_by_keyboard(
    page, live_server, manager, login, sandbox, shot
):
    ticket = _ticket(sandbox, custom=True)
    login(manager.username, PASSWORD)
    page.goto(f"{live_server.url}/tickets/{ticket['id']}/")
    form = page.locator("#edit-form")
    proactive = form.get_by_label("Proactive", exact=True)
    expect(proactive).to_have_value("")
    expect(page.locator("#field-isProactive")).to_contain_text("Thena does not return this value")
    # Custom values Thena sent as strings: shown, read-only, never submitted.
    values = form.get_by_label("Custom field values")
    expect(values).to_be_disabled()
    expect(values).to_have_value(ticket_strings(ticket))
    # Two quick changes: the inline check of "Yes" must not put "Yes" back over "No".
    proactive.focus()
    page.keyboard.press("ArrowDown")  # "Yes"
    page.keyboard.press("ArrowDown")  # "No"
    expect(proactive).to_have_value("false")
    form.get_by_label("Due date").fill("2026-12-24T18:30")
    shot("documented-write-only-phone")
    sandbox.requests.clear()
    form.get_by_role("button", name="Save to Thena").press("Enter")

    expect(page.get_by_text("Saved 2 change(s) to Thena.")).to_be_visible()
    expect(page.get_by_text("Thena does not return Due date, Proactive")).to_be_visible()
    assert _patches(sandbox) == [{"dueDate": "2026-12-24T17:30:00.000Z", "isProactive": False}]
    stored = sandbox.ticket(ticket["id"])
    assert (stored["isProactive"], stored["customFieldValues"]) == (
        False,
        ticket["customFieldValues"],
    )
    expect(form.get_by_label("Proactive", exact=True)).to_have_value("")  # not readable
    shot("documented-saved-phone")


def ticket_strings(ticket: dict) -> str:
    values = [d["value"] for item in ticket["customFieldValues"] for d in item["data"]]
    return json.dumps(values, indent=2, ensure_ascii=False)


def test_a_list_thena_did_not_send_leaves_the_page_usable(
    page, live_server, manager, login, sandbox, shot
):
    _install(FailPath(sandbox, "/v1/tickets/status", "/members"))
    ticket = _ticket(sandbox, custom=False)
    login(manager.username, PASSWORD)
    page.goto(f"{live_server.url}/tickets/{ticket['id']}/")
    note = page.get_by_text("Thena did not send the list of statuses and assignees;")
    expect(note).to_be_visible()
    form = page.locator("#edit-form")
    expect(form.get_by_label("Status", exact=True)).to_have_value(ticket["statusId"])
    shot("documented-missing-lists-phone")
    sandbox.requests.clear()
    form.get_by_label("Title", exact=True).fill("Saved without the lists")
    form.get_by_role("button", name="Save to Thena").press("Enter")
    expect(page.get_by_text("Saved 1 change(s) to Thena.")).to_be_visible()
    assert _patches(sandbox) == [{"title": "Saved without the lists"}]
