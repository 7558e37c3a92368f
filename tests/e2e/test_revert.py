"""Reverting from an audit entry in a real browser: what reaches the sandbox when a
manager reverts one field by keyboard, and when the field changed in Thena since (the
three-way view first, nothing sent until the user chooses and confirms)."""

import re

import pytest
from playwright.sync_api import expect

from tests.e2e import DESKTOP, PHONE

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("thena")]

PASSWORD = "correct horse battery"
RESOLUTION_LABELS = {"yours": "Yours", "theirs": "Theirs (now in Thena)", "original": "Original"}


@pytest.fixture
def ticket(sandbox):
    return next(
        t for t in sandbox.tickets() if t["teamIdentifier"] == "SUP" and not t.get("isPrivate")
    )


def _patches(sandbox) -> list:
    return [request.json for request in sandbox.requests if request.method == "PATCH"]


def _edit_then_open_the_entry(page, live_server, sandbox, ticket) -> dict:
    """The manager changes the title and the priority, then opens the entry from the
    ticket's history. Returns the priority's options, value -> label."""
    page.goto(f"{live_server.url}/tickets/{ticket['id']}/")
    form = page.locator("#edit-form")
    priority = form.get_by_label("Priority", exact=True)
    options = dict(
        tuple(pair)
        for pair in priority.locator("option").evaluate_all(
            "options => options.map(o => [o.value, o.textContent.trim()])"
        )
    )
    other = next(value for value in options if value and value != ticket["priorityId"])
    form.get_by_label("Title", exact=True).fill("Edited by mistake")
    priority.select_option(other)
    form.get_by_role("button", name="Save to Thena").click()
    expect(page.get_by_text("Saved 2 change(s) to Thena.")).to_be_visible()
    history = page.locator("#history-panel")
    expect(history.get_by_text("succeeded")).to_be_visible()
    history.locator("article a").first.click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Entry #1")
    sandbox.requests.clear()
    return options


def _no_sideways_scroll(page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"scrollWidth {width}"


@pytest.mark.parametrize("screen", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_a_manager_reverts_one_field_by_keyboard(
    screen, page, live_server, manager, login, sandbox, ticket, shot
):
    login(manager.username, PASSWORD)
    options = _edit_then_open_the_entry(page, live_server, sandbox, ticket)
    revert = page.locator("#revert")
    expect(revert.get_by_role("button", name="Revert this change")).to_be_visible()
    expect(revert.get_by_role("button", name="Revert this field: Title")).to_be_visible()
    name = "phone" if screen is PHONE else "desktop"
    revert.scroll_into_view_if_needed()
    shot(f"revert-entry-{name}")
    if screen is PHONE:
        _no_sideways_scroll(page)

    reason = page.get_by_label("Reason for this change")
    reason.focus()
    page.keyboard.type("Priority was changed on the wrong ticket")
    for _ in range(3):  # Revert this change, Revert this field: Title, ...: Priority
        page.keyboard.press("Tab")
    expect(revert.get_by_role("button", name="Revert this field: Priority")).to_be_focused()
    page.keyboard.press("Enter")

    page.wait_for_url(re.compile(rf"/tickets/{ticket['id']}/$"))
    message = page.get_by_role("status").get_by_text(re.compile(r"Reverted Priority on"))
    expect(message).to_contain_text("entry #2")
    expect(page.locator("#edit-form").get_by_label("Priority", exact=True)).to_have_value(
        ticket["priorityId"]
    )
    shot(f"revert-done-{name}")
    assert _patches(sandbox) == [{"priorityId": ticket["priorityId"]}]
    now = sandbox.ticket(ticket["id"])
    assert (now["title"], now["priority"]) == ("Edited by mistake", options[ticket["priorityId"]])

    page.get_by_role("link", name="entry #2").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Entry #2")
    expect(page.locator("main")).to_contain_text("Priority was changed on the wrong ticket")


@pytest.mark.parametrize(
    ("screen", "choice"),
    [(DESKTOP, "yours"), (DESKTOP, "theirs"), (PHONE, "original")],
    ids=["desktop-yours", "desktop-theirs", "phone-original"],
)
def test_a_field_changed_since_the_entry_is_chosen_before_anything_is_sent(
    screen, choice, page, live_server, manager, login, sandbox, ticket, shot
):
    login(manager.username, PASSWORD)
    _edit_then_open_the_entry(page, live_server, sandbox, ticket)
    # Someone changes the title in Thena after the edit.
    sandbox.touch_ticket(ticket["id"], title="Renamed in Thena")
    sandbox.requests.clear()

    page.get_by_label("Reason for this change").fill("Undo the title")
    page.get_by_role("button", name="Revert this field: Title").click()

    conflict = page.locator("section.conflict")
    expect(conflict).to_contain_text("Changed in Thena since entry #1")
    row = conflict.locator("tbody tr")
    expect(row).to_have_count(1)
    expect(row.locator("td pre")).to_have_text(
        ["Edited by mistake", "Renamed in Thena", ticket["title"]]
    )
    expect(page.get_by_text("Undo the title")).to_be_visible()
    name = "phone" if screen is PHONE else "desktop"
    shot(f"revert-conflict-{name}-{choice}")
    if screen is PHONE:
        _no_sideways_scroll(page)
    assert _patches(sandbox) == []

    group = page.get_by_role("group", name="Keep which Title", exact=True)
    group.get_by_label(RESOLUTION_LABELS[choice], exact=True).check()
    page.get_by_role("button", name="Confirm revert").click()

    expected = {"yours": ticket["title"], "theirs": "Renamed in Thena"}.get(
        choice, "Edited by mistake"
    )
    if choice == "theirs":
        expect(page.get_by_text("Nothing was sent: you kept Thena's values.")).to_be_visible()
        assert _patches(sandbox) == []
    else:
        page.wait_for_url(re.compile(rf"/tickets/{ticket['id']}/$"))
        expect(page.get_by_text(re.compile(r"Reverted Title on"))).to_be_visible()
        assert _patches(sandbox) == [{"title": expected}]
    assert sandbox.ticket(ticket["id"])["title"] == expected
