"""The ticket list as a triage tool in a real browser (issue 14): the layout at a phone's
390 px and at a desktop's 1280 px, the keyboard shortcuts of static/js/app.js, the skip
link to Save, and the read-only ticket of a user who may not edit."""

import re

import pytest
from playwright.sync_api import expect

from tests.e2e import DESKTOP, PHONE
from tests.e2e.conftest import SCREENSHOTS

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("thena")]

PASSWORD = "correct horse battery"
SCREENS = pytest.mark.parametrize("screen", [DESKTOP, PHONE], ids=["desktop", "phone"])
# What sticks out to the right of the window, for the report.
WIDER_THAN_WINDOW = """() => [...document.querySelectorAll("body *")]
    .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
    .map(e => e.tagName.toLowerCase() + (e.id ? "#" + e.id : "")
        + (typeof e.className === "string" && e.className ? "." + e.className : "")
        + " right=" + Math.round(e.getBoundingClientRect().right))"""
# The distinct lines a text is laid out on.
TEXT_LINES = """element => {
    const range = document.createRange();
    range.selectNodeContents(element);
    return new Set([...range.getClientRects()].map(r => Math.round(r.top))).size;
}"""
ROW_LINKS = "#ticket-table tbody tr a.row-link"


@pytest.fixture
def ticket(sandbox):
    """A public SUP ticket with an assignee and custom field values."""
    return next(
        t
        for t in sandbox.tickets()
        if t["teamIdentifier"] == "SUP"
        and not t.get("isPrivate")
        and t.get("assignedAgentId")
        and t.get("typeId")
        and t.get("customFieldValues")
    )


def _name(screen) -> str:
    return "phone" if screen is PHONE else "desktop"


def _no_sideways_scroll(page) -> None:
    width, window = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width <= window, (
        f"scrollWidth {width} > {window}: {page.evaluate(WIDER_THAN_WINDOW)[:15]}"
    )


def _box(locator) -> dict:
    box = locator.bounding_box()
    assert box is not None, locator
    return box


def _open(page, live_server, ticket) -> None:
    page.goto(f"{live_server.url}/tickets/{ticket['id']}/")
    expect(page.get_by_role("heading", level=1)).to_contain_text(ticket["ticketIdentifier"])


def _patches(sandbox) -> list[dict]:
    return [request.json for request in sandbox.requests if request.method == "PATCH"]


# -- layout ------------------------------------------------------------------------------


@SCREENS
def test_list_fits_the_screen_brand_on_one_line_heading_above_filters(
    screen, page, live_server, manager, login, sandbox, shot
):
    login(manager.username, PASSWORD)
    expect(page.locator(ROW_LINKS).first).to_be_visible()

    assert page.locator(".topbar .brand").evaluate(TEXT_LINES) == 1
    heading, filters = (
        _box(page.get_by_role("heading", name="Tickets")),
        _box(page.locator("form.filters")),
    )
    assert heading["y"] + heading["height"] <= filters["y"]
    for control in page.locator("form.filters :is(select, input, button):visible").all():
        box = _box(control)
        assert box["x"] >= 0 and box["x"] + box["width"] <= screen["viewport"]["width"], control
    _no_sideways_scroll(page)

    # A phone shows each ticket as a card, its cells named by their data-label.
    status = page.locator("#ticket-table tbody tr").first.locator("td[data-label=Status]")
    before = status.evaluate("td => getComputedStyle(td, '::before').content")
    assert before == ('"Status"' if screen is PHONE else "none")
    shot(f"triage-list-{_name(screen)}")

    # A team chosen: the filters of that team, the bulk edit's boxes.
    sup = next(t for t in sandbox.teams() if t["identifier"] == "SUP")
    page.get_by_label("Team", exact=True).select_option(sup["id"])
    expect(page).to_have_url(re.compile(rf"team={sup['id']}"))
    expect(page.locator("input[name=ticket]").first).to_be_visible()
    expect(page.get_by_label("Select every ticket on this page")).to_be_visible()
    _no_sideways_scroll(page)
    shot(f"triage-list-team-{_name(screen)}")


@SCREENS
def test_ticket_page_fits_and_recent_changes_reaches_the_history(
    screen, page, live_server, manager, login, ticket, shot
):
    login(manager.username, PASSWORD)
    _open(page, live_server, ticket)
    assert page.locator(".topbar .brand").evaluate(TEXT_LINES) == 1
    _no_sideways_scroll(page)
    link = page.get_by_role("link", name="Recent changes")
    history = page.get_by_role("heading", name="Recent changes")
    if screen is DESKTOP:  # the history beside the form: no link needed
        expect(history).to_be_in_viewport()
        expect(link).to_be_hidden()
        shot("triage-ticket-desktop")
        return
    expect(history).not_to_be_in_viewport()  # below the whole form
    expect(link).to_be_in_viewport()  # near the top
    shot("triage-ticket-phone")

    link.click()
    expect(page).to_have_url(re.compile(r"#history-panel$"))
    expect(history).to_be_in_viewport()
    page.screenshot(path=SCREENSHOTS / "triage-ticket-history-phone.png", caret="initial")


@pytest.mark.parametrize("screen", [PHONE], ids=["phone"])
@pytest.mark.parametrize("who", ["manager", "viewer"])
def test_a_long_unbroken_title_wraps_on_a_phone(
    screen, who, request, page, live_server, login, thena, ticket
):
    title = "Upload fails: https://storage.example.com/" + "a1b2c3" * 30
    thena.update_ticket(ticket["id"], {"title": title})
    login(request.getfixturevalue(who).username, PASSWORD)
    _open(page, live_server, ticket)
    expect(page.get_by_role("heading", level=1)).to_contain_text(title[:40])
    _no_sideways_scroll(page)


@SCREENS
def test_audit_and_bulk_pages_fit_the_screen(
    screen, page, live_server, manager, login, sandbox, ticket, shot
):
    login(manager.username, PASSWORD)
    page.goto(f"{live_server.url}/audit/")
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    _no_sideways_scroll(page)
    shot(f"triage-audit-{_name(screen)}")

    sup = next(t for t in sandbox.teams() if t["identifier"] == "SUP")
    page.goto(f"{live_server.url}/tickets/bulk/?team={sup['id']}&ticket={ticket['id']}")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Bulk edit")
    _no_sideways_scroll(page)
    shot(f"triage-bulk-{_name(screen)}")


@SCREENS
def test_viewer_reads_every_field_grouped_like_the_form(
    screen, page, live_server, viewer, login, ticket, shot
):
    login(viewer.username, PASSWORD)
    _open(page, live_server, ticket)
    main = page.locator("#ticket-main")
    expect(main.locator("#edit-form")).to_have_count(0)
    expect(main.locator("input, select, textarea")).to_have_count(0)
    titles = main.locator("section.read-only h2").all_inner_texts()
    assert titles[:4] == ["Basics", "People", "Dates", "Visibility"]
    assert titles[-1] == "Advanced"
    people = main.locator("section.read-only").filter(has_text="People")
    expect(people.locator("#value-assignedAgentId dd")).to_contain_text(ticket["assignedAgent"])
    expect(main.locator("#value-typeId dd")).to_have_text(ticket["type"])
    expect(main.locator("#value-priorityId dd")).to_have_text(ticket["priority"])
    expect(main.locator("#value-dueDate dd")).to_have_text("Not readable from Thena")
    expect(page.get_by_role("link", name="Skip to Save")).to_have_count(0)
    _no_sideways_scroll(page)
    shot(f"triage-viewer-{_name(screen)}")


# -- keyboard ----------------------------------------------------------------------------


@SCREENS
def test_j_and_k_move_through_the_list_and_enter_opens_the_current_ticket(
    screen, page, live_server, manager, login, sandbox, shot
):
    login(manager.username, PASSWORD)
    # The rows htmx swapped in answer the keys too.
    sup = next(t for t in sandbox.teams() if t["identifier"] == "SUP")
    page.get_by_label("Team", exact=True).select_option(sup["id"])
    expect(page).to_have_url(re.compile(rf"team={sup['id']}"))
    links = page.locator(ROW_LINKS)
    rows = page.locator("#ticket-table tbody tr")
    expect(links.first).to_contain_text("SUP-")
    second = links.nth(1).get_attribute("href")

    page.keyboard.press("j")
    expect(links.first).to_be_focused()
    expect(rows.first).to_have_class(re.compile(r"\bis-current\b"))
    page.keyboard.press("j")
    page.keyboard.press("j")
    page.keyboard.press("k")
    expect(links.nth(1)).to_be_focused()
    expect(page.locator("#ticket-table tbody tr.is-current")).to_have_count(1)
    expect(rows.nth(1)).to_have_class(re.compile(r"\bis-current\b"))
    shot(f"triage-keys-current-row-{_name(screen)}")

    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{live_server.url}{second}")


def test_slash_focuses_search_and_letters_typed_there_stay_text(page, live_server, manager, login):
    login(manager.username, PASSWORD)
    search = page.locator("#id_q")
    expect(page.locator(ROW_LINKS).first).to_be_visible()
    page.goto(f"{live_server.url}/tickets/?q=outage")
    expect(search).to_have_value("outage")

    page.keyboard.press("/")
    expect(search).to_be_focused()
    expect(search).to_have_value("outage")  # the slash was not typed
    selected = search.evaluate("input => [input.selectionStart, input.selectionEnd]")
    assert selected == [0, len("outage")]

    page.keyboard.type("jk?")  # replaces the selected text; no row moves, no overlay
    expect(search).to_have_value("jk?")
    expect(search).to_be_focused()
    expect(page.locator("tr.is-current")).to_have_count(0)
    expect(page.locator("#keys-help")).not_to_be_visible()


def test_question_mark_opens_the_keys_overlay_and_escape_closes_it(
    page, live_server, manager, login, shot
):
    login(manager.username, PASSWORD)
    links = page.locator(ROW_LINKS)
    expect(links.first).to_be_visible()
    page.keyboard.press("j")
    expect(links.first).to_be_focused()

    page.keyboard.press("?")
    help = page.get_by_role("dialog", name="Keyboard shortcuts")
    expect(help).to_be_visible()
    expect(help).to_contain_text("Search the ticket list")
    page.keyboard.press("j")  # the page behind is inert
    expect(page.locator("tr.is-current")).to_have_count(1)
    shot("triage-keys-help")
    page.keyboard.press("Escape")
    expect(help).not_to_be_visible()
    expect(links.first).to_be_focused()  # focus goes back

    # The Close button too, and the header's "Shortcuts" button opens it.
    page.get_by_role("button", name="Shortcuts").click()
    expect(help).to_be_visible()
    help.get_by_role("button", name="Close").click()
    expect(help).not_to_be_visible()
    expect(page.get_by_role("button", name="Shortcuts")).to_be_focused()


def test_ctrl_s_saves_through_htmx_while_typing_and_only_that_change_is_sent(
    page, live_server, manager, login, sandbox, ticket, shot
):
    login(manager.username, PASSWORD)
    _open(page, live_server, ticket)
    page.evaluate("window.stillThisPage = true")  # lost on any full page load
    # Runs after the page's own listener (on the document): did it keep the browser's save?
    page.evaluate("addEventListener('keydown', e => { window.saveKept = e.defaultPrevented })")
    sandbox.requests.clear()
    title = page.locator("#edit-form").get_by_label("Title", exact=True)
    title.fill("Saved with the keyboard")  # the caret stays in the field

    def is_save(response):
        return response.request.method == "POST" and "/validate/" not in response.request.url

    with page.expect_response(is_save):
        page.keyboard.press("Control+s")
    expect(page.get_by_text("Saved 1 change(s) to Thena.")).to_be_visible()
    assert page.evaluate("window.stillThisPage") is True
    assert page.evaluate("window.saveKept") is True  # no "Save page as"
    assert _patches(sandbox) == [{"title": "Saved with the keyboard"}]
    assert sandbox.ticket(ticket["id"])["title"] == "Saved with the keyboard"
    shot("triage-ctrl-s-saved")

    # Cmd+S as on a Mac, on the form htmx swapped in.
    sandbox.requests.clear()
    page.locator("#edit-form").get_by_label("Title", exact=True).fill("Saved with Cmd+S")
    with page.expect_response(is_save):
        page.keyboard.press("Meta+s")
    expect(page.locator("#edit-form").get_by_label("Title", exact=True)).to_have_value(
        "Saved with Cmd+S"
    )
    assert _patches(sandbox) == [{"title": "Saved with Cmd+S"}]
    assert page.evaluate("window.stillThisPage") is True


def test_ctrl_s_does_not_save_through_the_open_keys_overlay(
    page, live_server, manager, login, sandbox, ticket
):
    login(manager.username, PASSWORD)
    _open(page, live_server, ticket)
    page.evaluate("addEventListener('keydown', e => { window.saveKept = e.defaultPrevented })")
    page.locator("#edit-form").get_by_label("Title", exact=True).fill("Not yet")
    page.get_by_role("button", name="Shortcuts").click()
    expect(page.locator("#keys-help")).to_be_visible()
    sandbox.requests.clear()

    page.keyboard.press("Control+s")
    page.wait_for_timeout(300)  # a save would have gone by now

    assert _patches(sandbox) == [] and sandbox.requests == []
    assert page.evaluate("window.saveKept") is True  # nor the browser's "Save page"
    page.keyboard.press("Escape")
    with page.expect_response(lambda r: r.request.method == "POST"):
        page.keyboard.press("Control+s")  # closed: it saves
    expect(page.get_by_text("Saved 1 change(s) to Thena.")).to_be_visible()
    assert _patches(sandbox) == [{"title": "Not yet"}]


def test_skip_link_moves_focus_to_save(page, live_server, manager, login, ticket, shot):
    login(manager.username, PASSWORD)
    _open(page, live_server, ticket)
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to Save")
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport()
    shot("triage-skip-to-save")
    page.keyboard.press("Enter")
    save = page.get_by_role("button", name="Save to Thena")
    expect(save).to_be_focused()
    expect(save).to_be_in_viewport()
