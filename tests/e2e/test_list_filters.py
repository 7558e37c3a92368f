"""The ticket list's filters in a real browser, as a support manager uses them and breaks
them: htmx swaps with pushed URLs and the Back button, the same filter without
JavaScript, the pager, saved views, bulk edit of everything matching, and the page at
desktop and phone sizes. Every expectation is computed from the sandbox's own tickets."""

import re
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import expect

from tests.e2e import DESKTOP, PHONE
from tests.e2e.conftest import SCREENSHOTS
from tickets.listing import PAGE_SIZE, QUERY_BY
from tickets.models import SavedView

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("thena")]

PASSWORD = "correct horse battery"
# An agent with Support tickets: the manager gets this address, so "Mine" is not empty.
AGENT_EMAIL = "ken.thompson@helpdesk.example"


# -- what the sandbox holds ----------------------------------------------------------------


def _team(sandbox, identifier: str) -> dict:
    return next(t for t in sandbox.teams() if t["identifier"] == identifier)


def _text_matches(ticket: dict, q: str) -> bool:
    """Thena's search as documented: every word is in one of the searched fields."""
    fields = [str(ticket.get(name) or "").lower() for name in QUERY_BY.split(",")]
    return all(any(word in text for text in fields) for word in q.lower().split())


def _expected(sandbox, *, team=None, q="", order="updatedAt", **equal) -> list[str]:
    """The identifiers the list should show, newest `order` first."""
    tickets = [
        t
        for t in sandbox.tickets()
        if (team is None or t["teamId"] == team)
        and _text_matches(t, q)
        and all(t[key] == value for key, value in equal.items())
    ]
    tickets.sort(key=lambda t: t[order], reverse=True)
    return [t["ticketIdentifier"] for t in tickets]


def _count_text(found: int, page: int = 1) -> str:
    last = max(1, -(-found // PAGE_SIZE))
    text = f"{found} ticket{'s' if found != 1 else ''}"
    return text + (f" · page {page} of {last}" if last > 1 else "")


# -- what the page shows -------------------------------------------------------------------


def _params(url: str) -> dict[str, list[str]]:
    """The URL's parameters that hold a value (a GET form sends the empty ones too)."""
    return parse_qs(urlsplit(url).query)


def _shown(page) -> list[str]:
    return page.locator("table.tickets td[data-label=Ticket]").all_inner_texts()


def _expect_list(page, identifiers: list[str], page_number: int = 1) -> None:
    """The count says how many match, and the rows are this page of them, in order."""
    expect(page.locator("p.count")).to_have_text(_count_text(len(identifiers), page_number))
    start = (page_number - 1) * PAGE_SIZE
    assert _shown(page) == identifiers[start : start + PAGE_SIZE]


def _options(select) -> list[str]:
    return select.locator("option").all_inner_texts()


def _filter_of(pairs) -> dict[str, str]:
    """A list's filter from its parameters: what holds a value, the default order left out."""
    return {
        name: value
        for name, value in pairs
        if value and name != "page" and (name, value) != ("sort", "updated")
    }


def _expect_controls_as_url(page) -> None:
    """The filter controls would send the filter the URL (and so the list) has."""
    sent = page.locator("#filters").evaluate("f => [...new FormData(f)]")
    in_url = [(name, value) for name, values in _params(page.url).items() for value in values]
    assert _filter_of(sent) == _filter_of(in_url), page.url


def _not_reloaded(page) -> bool:
    return page.evaluate("window.__notReloaded === true")


def _list_requests(page) -> list[str]:
    """The list requests htmx sends from now on (URLs), to count them."""
    sent: list[str] = []
    page.on(
        "request",
        lambda r: (
            "/tickets/?" in r.url and r.headers.get("hx-request") == "true" and sent.append(r.url)
        ),
    )
    return sent


def _slow_network(page, seconds: float) -> None:
    """Hold every htmx request for `seconds` before it leaves the browser."""

    def hold(route) -> None:
        if route.request.headers.get("hx-request"):
            time.sleep(seconds)
        route.continue_()

    page.route(re.compile(r"/tickets/\?"), hold)


def _no_sideways_scroll(page, width: int) -> None:
    scroll = page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width, f"the page scrolls sideways: scrollWidth {scroll} > {width}"


@pytest.fixture(autouse=True)
def _no_console_errors(page):
    """As tests/e2e/conftest.py, but a refused view name is answered with 400 on purpose,
    which Chromium logs as a failed load of the page: only that one is allowed."""
    errors: list[str] = []
    refused = re.compile(r"status of 400 .* at \{'url': '[^']*/tickets/views/'")

    def seen(text: str) -> None:
        if not refused.search(text):
            errors.append(text)

    page.on("console", lambda m: m.type == "error" and seen(f"{m.text} at {m.location}"))
    page.on("pageerror", lambda error: seen(str(error)))
    yield
    assert errors == [], "\n".join(errors)


@pytest.fixture
def sup(sandbox) -> dict:
    return _team(sandbox, "SUP")


@pytest.fixture
def bil(sandbox) -> dict:
    return _team(sandbox, "BIL")


# -- with JavaScript: htmx swaps, pushed URLs, Back and Forward ------------------------------


def test_filters_swap_the_table_push_the_url_and_back_and_forward_restore_it(
    page, live_server, manager, login, sandbox, sup, bil
):
    login(manager.username, PASSWORD)
    page.goto(f"{live_server.url}/tickets/?team={sup['id']}")
    _expect_list(page, _expected(sandbox, team=sup["id"]))
    # A full reload would lose this; an htmx swap keeps it.
    page.evaluate("window.__notReloaded = true")
    sent = _list_requests(page)

    # Priority: the table is swapped, the URL pushed, the count right.
    page.get_by_label("Priority").select_option("High")
    expect(page).to_have_url(re.compile(r"[?&]priority=High(&|$)"))
    high = _expected(sandbox, team=sup["id"], priority="High")
    _expect_list(page, high)
    assert _params(page.url) == {"team": [sup["id"]], "priority": ["High"]}  # pushed clean
    assert _not_reloaded(page)
    assert len(sent) == 1, sent
    after_priority = page.url

    # Search: typed slowly, sent once after the pause, not once a key.
    sent.clear()
    page.get_by_label("Search").press_sequentially("thompson", delay=60)
    expect(page).to_have_url(re.compile(r"[?&]q=thompson(&|$)"))
    thompson = _expected(sandbox, team=sup["id"], priority="High", q="thompson")
    assert 0 < len(thompson) < len(high)
    _expect_list(page, thompson)
    page.wait_for_timeout(600)  # a late second request would have gone by now
    assert len(sent) == 1, sent
    assert _not_reloaded(page)
    after_search = page.url

    # Team: the whole list is swapped, and the sub-teams offered are the new team's.
    def sub_teams(team: dict) -> list[str]:
        return [t["name"] for t in sandbox.teams() if t.get("parentTeamId") == team["id"]]

    assert _options(page.get_by_label("Sub-team"))[1:] == sub_teams(sup)
    page.get_by_label("Team", exact=True).select_option(bil["id"])
    expect(page).to_have_url(re.compile(rf"[?&]team={bil['id']}(&|$)"))
    _expect_list(page, _expected(sandbox, team=bil["id"], priority="High", q="thompson"))
    assert _options(page.get_by_label("Sub-team"))[1:] == sub_teams(bil)
    assert _params(page.url)["q"] == ["thompson"] and _params(page.url)["priority"] == ["High"]
    assert _not_reloaded(page)
    after_team = page.url

    # Back: the previous list and its URL, and controls that say what the list shows (or
    # the next change would send a filter other than the one shown).
    page.go_back()
    expect(page).to_have_url(after_search)
    _expect_list(page, thompson)
    assert _options(page.get_by_label("Sub-team"))[1:] == sub_teams(sup)
    _expect_controls_as_url(page)

    page.go_back()
    expect(page).to_have_url(after_priority)
    _expect_list(page, high)
    _expect_controls_as_url(page)

    page.go_forward()
    expect(page).to_have_url(after_search)
    _expect_list(page, thompson)
    _expect_controls_as_url(page)
    page.go_forward()
    expect(page).to_have_url(after_team)
    _expect_list(page, _expected(sandbox, team=bil["id"], priority="High", q="thompson"))
    _expect_controls_as_url(page)
    assert _not_reloaded(page)


def test_a_control_changed_after_back_keeps_the_filter_the_list_shows(
    page, live_server, manager, login, sandbox, sup
):
    """After Back, the next change starts from the list shown, not from stale controls."""
    login(manager.username, PASSWORD)
    page.goto(f"{live_server.url}/tickets/?team={sup['id']}")
    page.get_by_label("Priority").select_option("High")
    expect(page).to_have_url(re.compile(r"priority=High"))
    page.get_by_label("Type").select_option(index=1)
    expect(page).to_have_url(re.compile(r"[?&]type=\w"))
    page.go_back()
    expect(page).not_to_have_url(re.compile(r"type=\w"))
    _expect_list(page, _expected(sandbox, team=sup["id"], priority="High"))
    page.get_by_label("Sort").select_option("created")
    expect(page).to_have_url(re.compile(r"sort=created"))
    expected = _expected(sandbox, team=sup["id"], priority="High", order="createdAt")
    assert _params(page.url) == {"team": [sup["id"]], "priority": ["High"], "sort": ["created"]}
    _expect_list(page, expected)


def test_the_same_search_sent_again_is_still_one_step_back(
    page, live_server, manager, login, sandbox, sup
):
    """Leaving the search field (its change event) or pressing Enter after the list has
    already followed the typing sends the same list again: that is no new page to go
    back through."""
    login(manager.username, PASSWORD)
    page.goto(f"{live_server.url}/tickets/?team={sup['id']}")
    before, steps = page.url, page.evaluate("history.length")
    search = page.get_by_label("Search")
    search.press_sequentially("thompson", delay=60)
    expect(page).to_have_url(re.compile(r"[?&]q=thompson(&|$)"))
    thompson = _expected(sandbox, team=sup["id"], q="thompson")
    _expect_list(page, thompson)
    assert page.evaluate("history.length") == steps + 1

    search.press("Tab")
    page.wait_for_timeout(800)
    search.press("Enter")
    page.wait_for_timeout(800)
    _expect_list(page, thompson)
    assert page.evaluate("history.length") == steps + 1, "the same list was pushed again"
    page.go_back()
    expect(page).to_have_url(before)
    _expect_list(page, _expected(sandbox, team=sup["id"]))


def test_a_view_name_typed_right_after_a_search_is_kept(
    page, live_server, manager, login, sandbox, sup
):
    """Searching, then naming the view: leaving the search field must not swap a new
    (empty) name field in under the user's typing. On a slow network (300 ms), where
    that swap lands while the user types."""
    login(manager.username, PASSWORD)
    page.goto(f"{live_server.url}/tickets/?team={sup['id']}")
    _slow_network(page, 0.3)
    page.get_by_label("Search").press_sequentially("login", delay=60)
    expect(page).to_have_url(re.compile(r"[?&]q=login(&|$)"))
    _expect_list(page, _expected(sandbox, team=sup["id"], q="login"))

    name = page.get_by_label("Name this view")
    name.click()
    name.press_sequentially("Login trouble", delay=60)
    page.wait_for_timeout(500)
    expect(name).to_have_value("Login trouble")
    name.press("Enter")
    expect(page.get_by_text("Saved the view “Login trouble”.")).to_be_visible()
    assert SavedView.objects.get().query == f"team={sup['id']}&q=login"


def test_clear_filters_is_offered_once_the_list_is_narrowed_by_htmx(
    page, live_server, manager, login, sandbox, sup
):
    login(manager.username, PASSWORD)
    page.goto(f"{live_server.url}/tickets/?team={sup['id']}")
    clear = page.get_by_role("link", name="Clear filters")
    expect(clear).to_have_count(0)  # nothing to clear yet
    page.get_by_label("Priority").select_option("Urgent")
    expect(page).to_have_url(re.compile(r"priority=Urgent"))
    _expect_list(page, _expected(sandbox, team=sup["id"], priority="Urgent"))
    expect(clear).to_be_visible()
    clear.click()
    expect(page).to_have_url(f"{live_server.url}/tickets/?team={sup['id']}")
    _expect_list(page, _expected(sandbox, team=sup["id"]))
    expect(page.get_by_label("Priority")).to_have_value("")


def test_changing_team_drops_the_old_teams_sub_team(
    page, live_server, manager, login, sandbox, sup, bil
):
    """A sub-team of Support matches nothing in Billing: switching team must not keep
    it hidden in the URL while the Sub-team control says "Any"."""
    login(manager.username, PASSWORD)
    tier1 = next(t for t in sandbox.teams() if t["name"] == "Tier 1")
    page.goto(f"{live_server.url}/tickets/?team={sup['id']}")
    page.get_by_label("Sub-team").select_option(label="Tier 1")
    expect(page).to_have_url(re.compile(rf"subteam={tier1['id']}"))
    _expect_list(page, _expected(sandbox, team=sup["id"], subTeamId=tier1["id"]))

    page.get_by_label("Team", exact=True).select_option(bil["id"])
    expect(page).to_have_url(re.compile(rf"team={bil['id']}"))
    _expect_list(page, _expected(sandbox, team=bil["id"]))
    expect(page.get_by_label("Sub-team")).to_have_value("")
    assert "subteam" not in _params(page.url), page.url


@pytest.mark.parametrize("late", ["priority", "search"])
def test_a_filter_changed_while_a_new_team_loads_is_kept(
    page, live_server, manager, login, sandbox, sup, bil, late
):
    login(manager.username, PASSWORD)
    page.goto(f"{live_server.url}/tickets/?team={sup['id']}")
    sandbox.config.latency_ms = 400  # the new team's list takes a while
    page.get_by_label("Team", exact=True).select_option(bil["id"])
    if late == "priority":
        page.get_by_label("Priority").select_option("High")
        expected = _expected(sandbox, team=bil["id"], priority="High")
    else:
        page.get_by_label("Search").press_sequentially("invoice", delay=30)
        expected = _expected(sandbox, team=bil["id"], q="invoice")
    assert 0 < len(expected) < len(_expected(sandbox, team=bil["id"]))

    # The new team's filters hold the late change, and the list and the URL follow it.
    expect(page).to_have_url(re.compile(r"[?&](priority=High|q=invoice)(&|$)"))
    _expect_list(page, expected)
    sandbox.config.latency_ms = 0
    page.wait_for_timeout(500)  # nothing late undoes it
    _expect_list(page, expected)
    expect(page.get_by_label("Search")).to_have_value("invoice" if late == "search" else "")
    _expect_controls_as_url(page)
    assert _params(page.url)["team"] == [bil["id"]]


# -- without JavaScript ----------------------------------------------------------------------


def test_without_javascript_apply_gives_the_same_url_and_tickets(
    browser, page, live_server, manager, login, sandbox, sup
):
    login(manager.username, PASSWORD)
    page.goto(f"{live_server.url}/tickets/?team={sup['id']}")
    page.get_by_label("Priority").select_option("Urgent")
    expect(page).to_have_url(re.compile(r"priority=Urgent"))
    page.get_by_label("Search").fill("a")
    page.get_by_label("Search").press("Enter")
    expect(page).to_have_url(re.compile(r"[?&]q=a(&|$)"))
    urgent = _expected(sandbox, team=sup["id"], priority="Urgent", q="a")
    assert urgent
    _expect_list(page, urgent)
    with_js = page.url

    context = browser.new_context(java_script_enabled=False, **DESKTOP)
    plain = context.new_page()
    errors: list[str] = []
    plain.on("console", lambda m: m.type == "error" and errors.append(m.text))
    plain.goto(f"{live_server.url}/accounts/login/?next=/tickets/%3Fteam%3D{sup['id']}")
    plain.get_by_label("Username").fill(manager.username)
    plain.get_by_label("Password").fill(PASSWORD)
    plain.get_by_label("Password").press("Enter")
    _expect_list(plain, _expected(sandbox, team=sup["id"]))
    # Nothing happens on change without a script: the filter waits for Apply.
    plain.get_by_label("Priority").select_option("Urgent")
    plain.get_by_label("Search").fill("a")
    assert "priority" not in plain.url
    plain.get_by_role("button", name="Apply").click()
    expect(plain).to_have_url(with_js)
    _expect_list(plain, urgent)
    expect(plain.get_by_label("Priority")).to_have_value("Urgent")
    expect(plain.get_by_label("Search")).to_have_value("a")
    # A change of team through Apply: the sub-teams offered follow it.
    bil = _team(sandbox, "BIL")
    plain.get_by_label("Team", exact=True).select_option(bil["id"])
    plain.get_by_role("button", name="Apply").click()
    expect(plain.get_by_label("Sub-team")).to_be_visible()
    assert _options(plain.get_by_label("Sub-team"))[1:] == [
        t["name"] for t in sandbox.teams() if t.get("parentTeamId") == bil["id"]
    ]
    _expect_list(plain, _expected(sandbox, team=bil["id"], priority="Urgent", q="a"))
    context.close()
    assert errors == []


# -- the pager ------------------------------------------------------------------------------


def test_the_pager_keeps_the_filter_and_a_page_past_the_end_lands_on_the_last(
    page, live_server, manager, login, sandbox
):
    login(manager.username, PASSWORD)
    medium = _expected(sandbox, priority="Medium", q="e")
    last = -(-len(medium) // PAGE_SIZE)
    assert last >= 3, len(medium)
    page.goto(f"{live_server.url}/tickets/?priority=Medium&q=e&sort=updated")
    _expect_list(page, medium)

    page.get_by_role("link", name=re.compile("Next")).click()
    expect(page).to_have_url(re.compile(r"page=2"))
    assert _params(page.url) == {"priority": ["Medium"], "q": ["e"], "page": ["2"]}
    _expect_list(page, medium, 2)
    expect(page.locator("nav.pager")).to_contain_text(f"Page 2 of {last}")
    expect(page.get_by_label("Priority")).to_have_value("Medium")
    expect(page.get_by_label("Search")).to_have_value("e")

    page.get_by_role("link", name=re.compile("Previous")).click()
    expect(page).not_to_have_url(re.compile(r"page="))
    _expect_list(page, medium, 1)

    page.goto(f"{live_server.url}/tickets/?priority=Medium&q=e&page=999")
    expect(page).to_have_url(re.compile(rf"[?&]page={last}$"))
    assert _params(page.url) == {"priority": ["Medium"], "q": ["e"], "page": [str(last)]}
    expect(page.locator("nav.pager")).to_contain_text(f"Page {last} of {last}")
    _expect_list(page, medium, last)
    expect(page.get_by_role("link", name=re.compile("Next"))).to_have_count(0)

    # Pages no one means: the first page, never an error.
    for odd in ("0", "-3", "abc", "1e9"):
        page.goto(f"{live_server.url}/tickets/?priority=Medium&q=e&page={odd}")
        _expect_list(page, medium, 1)


# -- saved views ------------------------------------------------------------------------------


def test_saved_and_built_in_views(page, live_server, manager, login, sandbox, sup):
    manager.email = AGENT_EMAIL
    manager.save()
    login(manager.username, PASSWORD)
    page.goto(f"{live_server.url}/tickets/?team={sup['id']}")
    # The filter as htmx leaves it: the form that saves it was swapped in with the table.
    page.get_by_label("Priority").select_option("High")
    expect(page).to_have_url(re.compile(r"priority=High"))
    page.get_by_label("Sort").select_option("created")
    expect(page).to_have_url(re.compile(r"sort=created"))

    name = page.get_by_label("Name this view")
    name.focus()
    page.keyboard.type("Highs, newest")
    page.keyboard.press("Enter")
    expect(page.get_by_text("Saved the view “Highs, newest”.")).to_be_visible()
    assert _params(page.url) == {"team": [sup["id"]], "priority": ["High"], "sort": ["created"]}
    views = page.get_by_role("navigation", name="Views")
    saved = views.get_by_role("link", name="Highs, newest")
    expect(saved).to_have_attribute("aria-current", "page")
    expect(views.locator("[aria-current]")).to_have_count(1)
    assert (
        SavedView.objects.get(owner=manager).query == f"team={sup['id']}&priority=High&sort=created"
    )

    views.get_by_role("link", name="Mine").click()
    expect(page).to_have_url(re.compile(r"assignee=me"))
    _expect_list(page, _expected(sandbox, team=sup["id"], assignedAgentEmail=AGENT_EMAIL))
    expect(views.get_by_role("link", name="Mine")).to_have_attribute("aria-current", "page")
    expect(saved).not_to_have_attribute("aria-current", "page")
    expect(page.get_by_label("Assignee")).to_have_value("me")

    views.get_by_role("link", name="Unassigned").click()
    expect(page).to_have_url(re.compile(r"assignee=none"))
    _expect_list(page, _expected(sandbox, team=sup["id"], assignedAgentId=None))
    assert set(page.locator("td[data-label=Assignee]").all_inner_texts()) == {"Unassigned"}
    expect(views.get_by_role("link", name="Unassigned")).to_have_attribute("aria-current", "page")

    views.get_by_role("link", name="Urgent").click()
    expect(page).to_have_url(re.compile(r"priority=Urgent"))
    _expect_list(page, _expected(sandbox, team=sup["id"], priority="Urgent"))
    expect(views.get_by_role("link", name="Urgent")).to_have_attribute("aria-current", "page")
    urgent_url = page.url

    saved.click()
    expect(page).to_have_url(re.compile(r"sort=created"))
    _expect_list(page, _expected(sandbox, team=sup["id"], priority="High", order="createdAt"))
    expect(saved).to_have_attribute("aria-current", "page")

    # Delete: it leaves the nav, and the list it was deleted from stays.
    page.goto(urgent_url)
    page.get_by_role("button", name="Delete the view Highs, newest").click()
    expect(page.get_by_text("The view was deleted.")).to_be_visible()
    expect(views.get_by_role("link", name="Highs, newest")).to_have_count(0)
    expect(page).to_have_url(urgent_url)
    _expect_list(page, _expected(sandbox, team=sup["id"], priority="Urgent"))
    assert not SavedView.objects.exists()


def test_a_view_name_that_cannot_be_kept_shows_why_and_keeps_what_was_typed(
    page, live_server, manager, login, sandbox, sup
):
    login(manager.username, PASSWORD)
    page.goto(f"{live_server.url}/tickets/?team={sup['id']}&priority=Urgent")
    urgent = _expected(sandbox, team=sup["id"], priority="Urgent")
    name = page.get_by_label("Name this view")

    # Empty: the browser refuses to send it and says why; nothing leaves the page.
    url = page.url
    name.press("Enter")
    assert name.evaluate("i => i.validity.valueMissing")
    assert name.evaluate("i => i.validationMessage")
    expect(page).to_have_url(url)

    # Only spaces: the server says it is required, next to the field.
    name.fill("   ")
    name.press("Enter")
    name = page.get_by_label("Name this view")
    expect(page.locator(".save-view .field-error")).to_have_text("This field is required.")
    expect(name).to_have_value("   ")
    # The list it was saved from is still the one shown.
    _expect_list(page, urgent)
    expect(page.get_by_label("Priority")).to_have_value("Urgent")

    # Too long: the browser stops at 60 characters as it is typed...
    name.fill("")
    name.press_sequentially("x" * 70)
    expect(name).to_have_value("x" * 60)
    # ...and a page that does not (an older one, another client) gets the server's answer.
    name.evaluate("i => i.removeAttribute('maxlength')")
    typed = "Urgent tickets of the support team, longest waiting first!!!"  # 60
    typed += " and more"
    name.fill(typed)
    name.press("Enter")
    name = page.get_by_label("Name this view")
    expect(page.locator(".save-view .field-error")).to_contain_text("at most 60 characters")
    expect(name).to_have_value(typed)
    expect(page.locator(".save-view .has-error")).to_have_count(1)
    _expect_list(page, urgent)
    assert not SavedView.objects.exists()
    # Fixed, it is kept, with the filter it was typed on.
    name.fill(typed[:60])
    name.press("Enter")
    expect(page.get_by_text(f"Saved the view “{typed[:60]}”.")).to_be_visible()
    assert SavedView.objects.get().query == f"team={sup['id']}&priority=Urgent"


# -- bulk edit of everything matching ----------------------------------------------------------


def test_edit_all_matching_carries_the_filter_and_previews_exactly_its_tickets(
    page, live_server, manager, login, sandbox, sup
):
    login(manager.username, PASSWORD)
    page.goto(f"{live_server.url}/tickets/?team={sup['id']}")
    page.get_by_label("Priority").select_option("High")
    expect(page).to_have_url(re.compile(r"priority=High"))
    high = _expected(sandbox, team=sup["id"], priority="High")
    assert len(high) > PAGE_SIZE  # more than the page shows
    _expect_list(page, high)

    page.get_by_role("button", name=f"Edit all {len(high)} matching this filter").click()
    expect(page).to_have_url(re.compile(r"/tickets/bulk/\?"))
    assert _params(page.url) == {
        "team": [sup["id"]],
        "priority": ["High"],
        "all": ["1"],
    }
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Bulk edit: every ticket matching the filter in Support"
    )
    hidden = page.locator("form.bulk-form input[type=hidden]:not([name=csrfmiddlewaretoken])")
    carried = hidden.evaluate_all("inputs => inputs.map(i => [i.name, i.value])")
    assert sorted(map(tuple, carried)) == sorted(
        [("team", sup["id"]), ("priority", "High"), ("all", "1")]
    )

    page.get_by_label("Status", exact=True).select_option(index=1)
    page.get_by_label("Reason for the change").fill("Triage of the high ones")
    page.get_by_role("button", name="Preview changes").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(
        f"Preview: {len(high)} tickets in Support"
    )
    previewed = page.locator("table.bulk-preview td[data-label=Ticket]").all_inner_texts()
    assert sorted(previewed) == sorted(high)
    assert [r for r in sandbox.requests if r.method == "PATCH"] == []


# -- at desktop and phone sizes ----------------------------------------------------------------


@pytest.mark.parametrize("screen", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_filtered_list_at_desktop_and_phone_sizes(
    screen, page, live_server, manager, login, sandbox, sup, shot
):
    width = screen["viewport"]["width"]
    name = "phone" if screen is PHONE else "desktop"
    login(manager.username, PASSWORD)
    SavedView.objects.create(owner=manager, name="Urgent & unassigned", query="priority=Urgent")
    SavedView.objects.create(owner=manager, name="W" * 60, query="priority=Low")  # no space
    page.goto(f"{live_server.url}/tickets/?team={sup['id']}")
    toggle = page.get_by_role("button", name=re.compile(r"^Filters"))
    if screen is PHONE:  # folded behind one button, the search beside it
        expect(toggle).to_have_text("Filters")  # none set yet (the team is beside it)
        expect(page.get_by_label("Team", exact=True)).to_be_visible()
        expect(toggle).to_have_attribute("aria-expanded", "false")
        expect(page.get_by_label("Priority")).to_be_hidden()
        expect(page.get_by_label("Search")).to_be_visible()
        toggle.click()
        expect(toggle).to_have_attribute("aria-expanded", "true")
    else:
        expect(toggle).to_be_hidden()
    page.get_by_label("Priority").select_option("High")
    expect(page).to_have_url(re.compile(r"priority=High"))
    # Enter, so leaving the field later sends nothing (see the test above).
    page.get_by_label("Search").fill("login")
    page.get_by_label("Search").press("Enter")
    expect(page).to_have_url(re.compile(r"q=login"))
    _expect_list(page, _expected(sandbox, team=sup["id"], priority="High", q="login"))

    _no_sideways_scroll(page, width)
    # Every control of the filters is on the screen (they wrap rather than overflow).
    for control in page.locator("#filters :is(select, input, button):visible").all():
        box = control.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= width, control
    # The heading sits above the filters.
    heading = page.get_by_role("heading", name="Tickets").bounding_box()
    assert heading["y"] + heading["height"] <= page.locator("#filters").bounding_box()["y"]
    # Things to tap are big enough to hit (WCAG 2.2, 2.5.8: 24 by 24 CSS pixels).
    views = page.get_by_role("navigation", name="Views")
    for target in views.get_by_role("link").all():
        box = target.bounding_box()
        assert box["width"] >= 24 and box["height"] >= 24, (target.inner_text(), box)
    shot(f"list-filters-{name}")
    if screen is PHONE:
        # Still open after the swaps; folded again, the first tickets fit the first screen.
        expect(toggle).to_have_text("Filters (1 set)")  # High
        toggle.click()
        expect(page.get_by_label("Priority")).to_be_hidden()
        page.evaluate("window.scrollTo(0, 0)")
        first = page.locator("table.tickets tbody tr").first.bounding_box()
        assert first["y"] + first["height"] <= screen["viewport"]["height"], first
    page.screenshot(path=SCREENSHOTS / f"list-filters-{name}-first-screen.png", caret="initial")

    # The same list with a view name refused, the error beside the field.
    page.get_by_label("Name this view").fill("   ")
    page.get_by_label("Name this view").press("Enter")
    error = page.locator(".save-view .field-error")
    expect(error).to_have_text("This field is required.")
    _no_sideways_scroll(page, width)
    page.screenshot(path=SCREENSHOTS / f"list-filters-{name}-view-refused.png", caret="initial")
    # The answer is seen where the name was typed, not at the top of a page reloaded.
    expect(error).to_be_in_viewport()
