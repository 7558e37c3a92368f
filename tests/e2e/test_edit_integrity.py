"""What reaches Thena when a real browser edits a ticket: only the user's own changes.

Each test drives Chromium with real clicks and keys (htmx swaps included) and then
reads the sandbox's request log: the PATCH bodies it received and the ticket it holds.
"""

import re

import pytest
from playwright.sync_api import expect

from tests.e2e import PHONE
from tests.util import SANDBOX_VARIANTS

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("thena")]

PASSWORD = "correct horse battery"
RESOLUTION_LABELS = {"yours": "Yours", "theirs": "Theirs (now in Thena)", "original": "Original"}
# What sticks out to the right of a phone's screen, for the report: tables and
# preformatted text first (they cannot shrink), then everything else.
WIDER_THAN_PHONE = """() => [...document.querySelectorAll("body *")]
    .filter(e => e.getBoundingClientRect().right > 391)
    .sort((a, b) => ["TABLE", "PRE"].includes(b.tagName) - ["TABLE", "PRE"].includes(a.tagName))
    .map(e => e.tagName.toLowerCase() + (e.id ? "#" + e.id : "")
        + (typeof e.className === "string" && e.className ? "." + e.className : "")
        + " right=" + Math.round(e.getBoundingClientRect().right))"""
SAVED = re.compile(r"Saved \d+ change\(s\)")


@pytest.fixture
def ticket(sandbox):
    """A public SUP ticket with an account and an assignee (SUP-2 in the seed)."""
    return next(
        t
        for t in sandbox.tickets()
        if t["teamIdentifier"] == "SUP"
        and not t.get("isPrivate")
        and t.get("accountId")
        and t.get("assignedAgentId")
    )


def _open(page, live_server, ticket):
    page.goto(f"{live_server.url}/tickets/{ticket['id']}/")
    expect(page.get_by_role("heading", level=1)).to_contain_text(ticket["ticketIdentifier"])


def _form(page):
    return page.locator("#edit-form")


def _save(page):
    """Click Save and wait for the server's answer: a message left on the page by the
    previous save must not pass for this one's."""

    def is_submit(response):
        request = response.request
        return request.method == "POST" and "/validate/" not in request.url

    with page.expect_response(is_submit):
        _form(page).get_by_role("button", name="Save to Thena").click()


def _patches(sandbox) -> list:
    return [request.json for request in sandbox.requests if request.method == "PATCH"]


def _options(select) -> list[tuple[str, str]]:
    pairs = select.locator("option").evaluate_all(
        "options => options.map(o => [o.value, o.textContent.trim()])"
    )
    return [tuple(pair) for pair in pairs]


def _row(conflict, label: str):
    return conflict.locator("tbody tr").filter(
        has=conflict.page.get_by_role("rowheader", name=label, exact=True)
    )


def _settled(page) -> None:
    """No htmx request running (the history panel reloads after a save, dimmed)."""
    expect(page.locator(".htmx-request")).to_have_count(0)


def _no_sideways_scroll(page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    wide = page.evaluate(WIDER_THAN_PHONE)
    assert width <= 390, f"scrollWidth {width}; wider than the phone: {wide[:15]}"


def _keep(page, label: str, choice: str) -> None:
    group = page.get_by_role("group", name=f"Keep which {label}", exact=True)
    group.get_by_label(RESOLUTION_LABELS[choice], exact=True).check()


# 1 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("choice", ["yours", "theirs", "original"])
def test_a_resolved_conflict_sends_only_the_users_own_changes(
    choice, page, live_server, manager, login, sandbox, ticket, shot
):
    login(manager.username, PASSWORD)
    _open(page, live_server, ticket)
    form = _form(page)
    before = sandbox.ticket(ticket["id"])
    priorities = _options(form.get_by_label("Priority", exact=True))
    members = _options(form.get_by_label("Assignee", exact=True))
    mine_priority, their_priority = [v for v, _ in priorities if v != before["priorityId"]][:2]
    their_agent = next(v for v, _ in members if v and v != before["assignedAgentId"])
    names = dict(priorities)

    form.get_by_label("Title", exact=True).fill("Mine: clearer title")
    form.get_by_label("Priority", exact=True).select_option(mine_priority)
    form.get_by_label("Description", exact=True).fill("Mine: steps to reproduce")
    # Meanwhile someone else changes the same two fields, and two more.
    sandbox.touch_ticket(
        ticket["id"],
        title="Theirs: other title",
        priorityId=their_priority,
        assignedAgentId=their_agent,
        isPrivate=True,
    )
    _save(page)

    conflict = page.locator("section.conflict")
    expect(conflict).to_contain_text("Someone changed this ticket")
    expect(_row(conflict, "Title").locator("td pre")).to_have_text(
        [before["title"], "Theirs: other title", "Mine: clearer title"]
    )
    expect(_row(conflict, "Priority").locator("td pre")).to_have_text(
        [names[before["priorityId"]], names[their_priority], names[mine_priority]]
    )
    expect(conflict.locator("tbody tr")).to_have_count(2)  # not the assignee, not Private
    # The rest of the form now shows Thena's values, the user's other edit kept.
    expect(form.get_by_label("Assignee", exact=True)).to_have_value(their_agent)
    expect(form.get_by_label("Private", exact=True)).to_be_checked()
    expect(form.get_by_label("Description", exact=True)).to_have_value("Mine: steps to reproduce")
    _settled(page)
    shot(f"integrity-conflict-{choice}")
    assert _patches(sandbox) == []

    _keep(page, "Title", choice)
    _keep(page, "Priority", choice)
    _save(page)

    expected = {"description": "Mine: steps to reproduce"}
    if choice == "yours":
        expected |= {"title": "Mine: clearer title", "priorityId": mine_priority}
    elif choice == "original":
        expected |= {"title": before["title"], "priorityId": before["priorityId"]}
    expect(page.get_by_text(f"Saved {len(expected)} change(s) to Thena.")).to_be_visible()
    assert _patches(sandbox) == [expected]

    after = sandbox.ticket(ticket["id"])
    assert after["assignedAgentId"] == their_agent
    assert after["isPrivate"] is True
    assert after["description"] == "Mine: steps to reproduce"
    assert (
        after["title"]
        == {
            "yours": "Mine: clearer title",
            "theirs": "Theirs: other title",
            "original": before["title"],
        }[choice]
    )
    assert (
        after["priorityId"]
        == {
            "yours": mine_priority,
            "theirs": their_priority,
            "original": before["priorityId"],
        }[choice]
    )


# 2 ---------------------------------------------------------------------------------------


def test_a_conflict_is_resolved_without_javascript(browser, live_server, manager, sandbox, ticket):
    context = browser.new_context(java_script_enabled=False, timezone_id="Europe/Paris")
    page = context.new_page()
    errors = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.goto(f"{live_server.url}/accounts/login/?next=/tickets/{ticket['id']}/")
    page.get_by_label("Username").fill(manager.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    form = _form(page)
    form.get_by_label("Title", exact=True).fill("Mine: clearer title")
    form.get_by_label("Description", exact=True).fill("Mine: steps to reproduce")
    sandbox.touch_ticket(ticket["id"], title="Theirs: other title")
    _save(page)

    conflict = page.locator("section.conflict")
    expect(conflict).to_contain_text("Theirs: other title")
    _keep(page, "Title", "theirs")
    _save(page)

    expect(page).to_have_url(re.compile(rf"/tickets/{ticket['id']}/$"))
    expect(page.get_by_text("Saved 1 change(s) to Thena.")).to_be_visible()
    assert _patches(sandbox) == [{"description": "Mine: steps to reproduce"}]
    assert sandbox.ticket(ticket["id"])["title"] == "Theirs: other title"
    context.close()
    assert errors == []


# 3 ---------------------------------------------------------------------------------------


def _search_accounts(page, text: str) -> None:
    search = _form(page).get_by_label("Search accounts")
    # After a swap, typing before htmx has taken the new input in would go unheard.
    page.wait_for_function(
        "el => el['htmx-internal-data'] && el['htmx-internal-data'].initHash",
        arg=search.element_handle(),
    )
    with page.expect_response("**/tickets/accounts/**"):
        search.press_sequentially(text)
    account = _form(page).get_by_label("Account", exact=True)
    expect(account.locator("option", has_text=text).first).to_be_attached()


def test_searching_accounts_sends_no_account_until_one_is_picked(
    page, live_server, manager, login, sandbox, ticket, shot
):
    other = next(
        t for t in sandbox.tickets() if t.get("account") and t["account"] != ticket["account"]
    )
    wanted = other["account"]
    login(manager.username, PASSWORD)
    _open(page, live_server, ticket)
    form = _form(page)
    account = form.get_by_label("Account", exact=True)
    expect(account).to_have_value(ticket["accountId"])

    _search_accounts(page, wanted)
    expect(account).to_have_value(ticket["accountId"])  # the search picked nothing
    form.get_by_label("Title", exact=True).fill("Only the title changes")
    _save(page)
    expect(page.get_by_text("Saved 1 change(s) to Thena.")).to_be_visible()
    assert _patches(sandbox) == [{"title": "Only the title changes"}]
    assert sandbox.ticket(ticket["id"])["accountId"] == ticket["accountId"]

    _search_accounts(page, wanted)
    account.select_option(label=wanted)
    shot("integrity-account-picked")
    _save(page)
    expect(page.get_by_text("Saved 1 change(s) to Thena.")).to_be_visible()
    assert _patches(sandbox)[1:] == [{"accountId": other["accountId"]}]
    assert sandbox.ticket(ticket["id"])["accountId"] == other["accountId"]


def test_an_account_found_beyond_the_first_page_stays_picked(
    page, live_server, manager, login, sandbox, ticket
):
    # Thena with more accounts than the form lists (services.team_choices_load: the first
    # 100): 100 accounts sort before the seeded ones. No public sandbox call adds any.
    world = sandbox._world
    seeded = world.accounts
    fillers = {
        f"AFILL{n:05d}": {**next(iter(seeded.values())), "id": f"AFILL{n:05d}", "name": f"Aa {n}"}
        for n in range(100)
    }
    world.accounts = {**fillers, **seeded}
    wanted = next(a for a in seeded.values() if a["id"] != ticket["accountId"])
    login(manager.username, PASSWORD)
    _open(page, live_server, ticket)
    account = _form(page).get_by_label("Account", exact=True)
    expect(account.locator(f'option[value="{wanted["id"]}"]')).to_have_count(0)

    _search_accounts(page, wanted["name"])
    account.select_option(wanted["id"])
    _settled(page)  # picking validates the field inline (an htmx swap)
    expect(account).to_have_value(wanted["id"])
    _save(page)
    expect(page.get_by_text("Saved 1 change(s) to Thena.")).to_be_visible()
    assert _patches(sandbox) == [{"accountId": wanted["id"]}]


# 4 ---------------------------------------------------------------------------------------


def test_focus_moves_to_the_outcome_of_a_save(page, live_server, manager, login, ticket, shot):
    login(manager.username, PASSWORD)
    _open(page, live_server, ticket)
    _form(page).get_by_label("Title", exact=True).fill("Focus after saving")
    _save(page)  # the button is at the bottom of a long form
    messages = page.locator(".messages")
    expect(messages).to_contain_text("Saved 1 change(s) to Thena.")
    expect(messages).to_be_focused()
    expect(messages).to_be_in_viewport()
    shot("integrity-saved-focus")

    metadata = _form(page).get_by_label("Metadata", exact=True)
    metadata.fill('{"x": ')
    with page.expect_response("**/validate/**"):  # leaving the field checks it first
        metadata.press("Tab")
    _save(page)
    summary = page.locator(".error-summary")
    expect(summary).to_contain_text("Nothing was saved")
    expect(summary).to_be_focused()
    expect(summary).to_be_in_viewport()
    shot("integrity-invalid-focus")


def test_the_keyboard_alone_reaches_save(page, live_server, manager, login, sandbox, ticket):
    login(manager.username, PASSWORD)
    _open(page, live_server, ticket)
    title = _form(page).get_by_label("Title", exact=True)
    title.fill("Saved by keyboard")
    save = _form(page).get_by_role("button", name="Save to Thena")
    for _ in range(150):
        if save.evaluate("button => button === document.activeElement"):
            break
        page.keyboard.press("Tab")
    else:
        pytest.fail("Tab never reached the Save button")
    page.keyboard.press("Enter")
    expect(page.locator(".messages")).to_be_focused()
    expect(page.locator(".messages")).to_contain_text("Saved 1 change(s) to Thena.")
    assert _patches(sandbox) == [{"title": "Saved by keyboard"}]


# 5 ---------------------------------------------------------------------------------------


def _record_dialogs(page) -> list[str]:
    seen: list[str] = []

    def on_dialog(dialog):
        seen.append(dialog.type)
        dialog.dismiss()  # stay on the page

    page.on("dialog", on_dialog)
    return seen


def _wait_for_dialog(page, dialogs: list[str]) -> None:
    for _ in range(50):
        if dialogs:
            break
        page.wait_for_timeout(100)  # lets Playwright dispatch the dialog event
    page.wait_for_timeout(200)  # and a navigation, had the dismissal not held it


def test_leaving_with_unsaved_edits_asks_first(page, live_server, manager, login, ticket):
    login(manager.username, PASSWORD)
    _open(page, live_server, ticket)
    dialogs = _record_dialogs(page)
    here = page.url
    title = _form(page).get_by_label("Title", exact=True)
    title.press_sequentially("Unsaved ")

    page.get_by_role("link", name="← Tickets").click(no_wait_after=True)
    _wait_for_dialog(page, dialogs)
    assert dialogs == ["beforeunload"]
    assert page.url == here
    expect(title).to_have_value(re.compile("Unsaved "))

    _save(page)
    expect(page.get_by_text("Saved 1 change(s) to Thena.")).to_be_visible()
    page.get_by_role("link", name="← Tickets").click()
    page.wait_for_url(f"{live_server.url}/tickets/")
    assert dialogs == ["beforeunload"]  # none after the save

    _open(page, live_server, ticket)
    _form(page).get_by_label("Title", exact=True).press_sequentially("Dropped ")
    page.get_by_role("link", name="Discard changes").click()
    page.wait_for_load_state()
    expect(_form(page).get_by_label("Title", exact=True)).not_to_have_value(re.compile("Dropped"))
    assert dialogs == ["beforeunload"]  # none for Discard


def test_an_edit_checked_inline_still_asks_before_leaving(
    page, live_server, manager, login, ticket
):
    login(manager.username, PASSWORD)
    _open(page, live_server, ticket)
    dialogs = _record_dialogs(page)
    title = _form(page).get_by_label("Title", exact=True)
    with page.expect_response(re.compile(r"/validate/\?field=title")):
        title.fill("Checked inline, not saved")
        title.press("Tab")  # leaving the field validates it: an htmx swap of the field
    _settled(page)
    expect(title).to_have_value("Checked inline, not saved")

    page.get_by_role("link", name="← Tickets").click(no_wait_after=True)
    _wait_for_dialog(page, dialogs)
    assert dialogs == ["beforeunload"], "left the page, unsaved title and all, without asking"
    assert "/tickets/" + ticket["id"] in page.url


# 6 ---------------------------------------------------------------------------------------


def test_status_and_priority_offer_no_empty_choice(page, live_server, manager, login, ticket):
    login(manager.username, PASSWORD)
    _open(page, live_server, ticket)
    form = _form(page)
    for label, current in (("Status", ticket["statusId"]), ("Priority", ticket["priorityId"])):
        select = form.get_by_label(label, exact=True)
        options = _options(select)
        assert options, label
        assert all(value and text != "—" for value, text in options), (label, options)
        assert current in [value for value, _ in options]
        expect(select).to_have_value(current)


# 7 ---------------------------------------------------------------------------------------


def test_an_assignee_and_another_persons_email_are_refused(
    page, live_server, manager, login, sandbox, ticket, shot
):
    login(manager.username, PASSWORD)
    _open(page, live_server, ticket)
    form = _form(page)
    # The input shows the current assignee's address; type a third person's.
    emails = {t["assignedAgentId"]: t["assignedAgentEmail"] for t in sandbox.tickets()}
    members = [v for v, _ in _options(form.get_by_label("Assignee", exact=True)) if v]
    chosen, third = [v for v in members if v != ticket["assignedAgentId"] and v in emails][:2]
    expect(form.get_by_label("Assignee email", exact=True)).to_have_value(
        ticket["assignedAgentEmail"]
    )
    form.get_by_label("Assignee", exact=True).select_option(chosen)
    form.get_by_label("Assignee email", exact=True).fill(emails[third])
    _save(page)

    expect(page.locator("#field-assignedAgentEmail .field-error")).to_contain_text(
        "not the chosen assignee"
    )
    expect(page.locator(".error-summary")).to_contain_text("Assignee email")
    shot("integrity-assignee-clash")
    assert _patches(sandbox) == []
    assert sandbox.ticket(ticket["id"])["assignedAgentId"] == ticket["assignedAgentId"]


# 8 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("screen", [PHONE])
def test_editing_on_a_phone(page, live_server, manager, login, sandbox, ticket, shot):
    login(manager.username, PASSWORD)
    _open(page, live_server, ticket)
    shot("integrity-phone-detail")
    _form(page).get_by_label("Title", exact=True).fill("Edited on a phone")
    save = _form(page).get_by_role("button", name="Save to Thena")
    save.scroll_into_view_if_needed()
    expect(save).to_be_visible()
    expect(save).to_be_in_viewport()
    save.click()
    expect(page.get_by_text("Saved 1 change(s) to Thena.")).to_be_in_viewport()
    _settled(page)
    shot("integrity-phone-saved")
    assert _patches(sandbox) == [{"title": "Edited on a phone"}]
    _no_sideways_scroll(page)


@pytest.mark.parametrize("screen", [PHONE])
def test_a_conflict_on_a_phone(page, live_server, manager, login, sandbox, ticket, shot):
    login(manager.username, PASSWORD)
    _open(page, live_server, ticket)
    _form(page).get_by_label("Title", exact=True).fill("Mine: a title edited on a phone")
    sandbox.touch_ticket(ticket["id"], title="Theirs: a title edited elsewhere")
    _save(page)
    conflict = page.locator("section.conflict")
    expect(conflict).to_contain_text("Theirs: a title edited elsewhere")
    _settled(page)
    shot("integrity-phone-conflict")
    for choice in RESOLUTION_LABELS.values():
        expect(conflict.get_by_label(choice, exact=True)).to_be_visible()
    _no_sideways_scroll(page)


# 9 ---------------------------------------------------------------------------------------


def test_an_upstream_failure_after_sending_keeps_the_input(
    page, live_server, manager, login, sandbox, ticket, shot
):
    login(manager.username, PASSWORD)
    _open(page, live_server, ticket)
    dialogs = _record_dialogs(page)
    title = _form(page).get_by_label("Title", exact=True)
    title.fill("Lost upstream")
    sandbox.answer_next({"status": True}, applied=False, only="PATCH")
    _save(page)

    summary = page.locator(".error-summary")
    expect(summary).to_contain_text("shows it unchanged")
    expect(summary).to_be_focused()
    expect(_form(page).get_by_label("Title", exact=True)).to_have_value("Lost upstream")
    expect(page.get_by_text(SAVED)).to_have_count(0)
    expect(page.locator(".messages")).to_have_count(0)
    _settled(page)
    shot("integrity-upstream-failure")
    assert _patches(sandbox) == [{"title": "Lost upstream"}]
    assert sandbox.ticket(ticket["id"])["title"] == ticket["title"]

    # The input is still only on the page: leaving asks.
    page.get_by_role("link", name="← Tickets").click(no_wait_after=True)
    _wait_for_dialog(page, dialogs)
    assert dialogs == ["beforeunload"]


@pytest.mark.parametrize(
    "sandbox_config", [SANDBOX_VARIANTS["echo-and-objects"]], indirect=True, ids=["typed-cf"]
)
def test_a_number_the_browser_cannot_read_is_kept_and_not_sent_as_a_clear(
    page, live_server, manager, login, sandbox
):
    # "12e" in a number box: the browser would submit it as empty, which reads as clearing
    # the field. Its inline check and the save stop, and say why, with the input kept.
    ticket = next(t for t in sandbox.tickets() if t["teamIdentifier"] == "BIL")
    login(manager.username, PASSWORD)
    _open(page, live_server, ticket)
    users = _form(page).get_by_label("Affected users", exact=True)
    uid = users.get_attribute("id").removeprefix("id_cf__")
    others = [i for i in ticket.get("customFieldValues") or [] if i.get("customFieldId") != uid]
    held = {"customFieldId": uid, "data": [{"value": "42"}]}
    sandbox.put_ticket(ticket["id"], customFieldValues=[*others, held])
    _open(page, live_server, ticket)
    expect(users).to_have_value("42")
    users.click()
    page.keyboard.press("Control+a")
    page.keyboard.type("12e")
    page.keyboard.press("Tab")  # the field's inline check
    note = page.locator(".field-error[data-unreadable]")
    expect(note).to_have_text("Enter a number, or leave it empty.")
    expect(users).to_have_attribute("aria-invalid", "true")
    sandbox.requests.clear()

    _form(page).get_by_label("Title", exact=True).fill("Saved with the number fixed")
    _form(page).get_by_role("button", name="Save to Thena").click()
    page.wait_for_timeout(300)  # a save would have gone by now

    expect(users).to_be_focused()
    assert users.evaluate("input => input.validity.badInput")  # still "12e" on the screen
    assert [r for r in sandbox.requests if r.method in ("POST", "PATCH")] == []
    assert _patches(sandbox) == []

    page.keyboard.press("Backspace")  # "12"
    expect(note).to_have_count(0)
    _save(page)
    expect(page.get_by_text(SAVED)).to_be_visible()
    [patch] = _patches(sandbox)
    assert patch["title"] == "Saved with the number fixed"
    [users_value] = [
        item["data"]
        for item in patch["customFieldValues"]
        if item["data"] and item["data"][0].get("value") in ("12", 12)
    ]
    assert users_value
