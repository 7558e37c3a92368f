import re

import pytest
from playwright.sync_api import expect

from tests.util import SANDBOX_VARIANTS

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("thena")]

PASSWORD = "correct horse battery"


@pytest.fixture
def ticket(sandbox):
    return next(
        t for t in sandbox.tickets() if t["teamIdentifier"] == "SUP" and not t.get("isPrivate")
    )


def _open(page, live_server, ticket):
    page.goto(f"{live_server.url}/tickets/{ticket['id']}/")
    expect(page.get_by_role("heading", level=1)).to_contain_text(ticket["ticketIdentifier"])


@pytest.mark.parametrize(
    "sandbox_config",
    [SANDBOX_VARIANTS["documented"], SANDBOX_VARIANTS["echo-and-objects"]],
    ids=["documented", "echo-and-objects"],
    indirect=True,
)
def test_manager_edits_a_ticket_and_sees_the_change_and_history(
    page, live_server, manager, login, sandbox, ticket, shot
):
    echo = sandbox.config.echo_write_only
    login(manager.username, PASSWORD)
    _open(page, live_server, ticket)
    shot("ticket-detail")
    form = page.locator("#edit-form")

    status = form.get_by_label("Status", exact=True)
    status.select_option(label="On hold / Waiting on customer")
    form.get_by_label("Private").check()
    form.get_by_label("Due date").fill("2026-12-24T18:30")
    form.get_by_label("Metadata").fill('{"plan": "enterprise", "seats": 40}')
    form.get_by_label("Affected users").fill("42")
    form.get_by_label("Affected users").press("Tab")
    form.get_by_role("button", name="Save to Thena").press("Enter")

    expect(page.get_by_text("Saved 5 change(s) to Thena.")).to_be_visible()
    unread = page.get_by_text("Thena does not return Due date, Metadata")
    expect(unread).to_have_count(0 if echo else 1)
    history = page.locator("#history-panel")
    expect(history.get_by_text("succeeded")).to_be_visible()
    expect(history).to_contain_text("Status")
    expect(history).to_contain_text("Metadata")
    if not echo:
        shot("ticket-saved")

    saved = sandbox.ticket(ticket["id"])
    assert saved["status"] == "Waiting on customer"
    assert saved["isPrivate"] is True
    assert saved["dueDate"].startswith("2026-12-24T17:30:00")  # 18:30 in Paris
    assert saved["metadata"] == {"plan": "enterprise", "seats": 40}
    assert any(item.get("data") == [{"value": "42"}] for item in saved["customFieldValues"]), saved[
        "customFieldValues"
    ]

    # The page shows the saved values again, in the user's time zone; a value Thena does
    # not return shows empty, saying so.
    page.reload()
    due = page.locator("#edit-form").get_by_label("Due date")
    expect(due).to_have_value("2026-12-24T18:30" if echo else "")
    note = page.locator("#field-dueDate").get_by_text("Thena does not return this value")
    expect(note).to_have_count(0 if echo else 1)
    expect(page.locator("#edit-form").get_by_label("Private")).to_be_checked()


def test_bad_input_is_explained_next_to_the_field_and_kept(
    page, live_server, manager, login, ticket, shot
):
    login(manager.username, PASSWORD)
    _open(page, live_server, ticket)
    form = page.locator("#edit-form")
    form.get_by_label("Metadata").fill('{"plan": ')
    form.get_by_label("Metadata").press("Tab")  # leaving the field validates it inline
    expect(page.locator("#field-metadata .field-error")).to_contain_text("not valid JSON")
    form.get_by_role("button", name="Save to Thena").click()
    expect(page.get_by_text("Nothing was saved")).to_be_visible()
    expect(page.locator("#edit-form").get_by_label("Metadata")).to_have_value('{"plan": ')
    shot("ticket-invalid")


def test_conflict_from_a_second_browser_is_resolved_field_by_field(
    page, browser, live_server, manager, login, sandbox, ticket, shot
):
    login(manager.username, PASSWORD)
    _open(page, live_server, ticket)
    page.locator("#edit-form").get_by_label("Title", exact=True).fill("Mine: clearer title")

    other = browser.new_context()
    second = other.new_page()
    second.goto(f"{live_server.url}/accounts/login/?next=/tickets/{ticket['id']}/")
    second.get_by_label("Username").fill(manager.username)
    second.get_by_label("Password").fill(PASSWORD)
    second.get_by_label("Password").press("Enter")
    second.locator("#edit-form").get_by_label("Title", exact=True).fill("Theirs: other title")
    second.locator("#edit-form").get_by_role("button", name="Save to Thena").click()
    expect(second.get_by_text("Saved 1 change(s) to Thena.")).to_be_visible()
    other.close()

    page.locator("#edit-form").get_by_role("button", name="Save to Thena").click()
    conflict = page.locator("section.conflict")
    expect(conflict).to_contain_text("Someone changed this ticket")
    expect(conflict).to_contain_text("Theirs: other title")
    expect(conflict).to_contain_text("Mine: clearer title")
    shot("ticket-conflict")
    assert sandbox.ticket(ticket["id"])["title"] == "Theirs: other title"

    conflict.get_by_label("Yours").check()
    page.locator("#edit-form").get_by_role("button", name="Save to Thena").click()
    expect(page.get_by_text("Saved 1 change(s) to Thena.")).to_be_visible()
    assert sandbox.ticket(ticket["id"])["title"] == "Mine: clearer title"
    expect(page.locator("#history-panel")).to_contain_text("conflict")


def test_editing_works_without_javascript(browser, live_server, manager, sandbox, ticket):
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(f"{live_server.url}/accounts/login/?next=/tickets/{ticket['id']}/")
    page.get_by_label("Username").fill(manager.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.locator("#edit-form").get_by_label("Title", exact=True).fill("Edited without JavaScript")
    page.locator("#edit-form").get_by_role("button", name="Save to Thena").click()
    expect(page).to_have_url(re.compile(rf"/tickets/{ticket['id']}/$"))
    expect(page.get_by_text("Saved 1 change(s) to Thena.")).to_be_visible()
    assert sandbox.ticket(ticket["id"])["title"] == "Edited without JavaScript"
    context.close()
