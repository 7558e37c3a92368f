"""The audit list in a browser: a chart bar picked with the keyboard lists its day, a
partial actor name finds the person, the reason typed on the edit form reaches the log,
and a refused or missing page is the app's own."""

import re
from datetime import datetime, timedelta
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from tests.e2e.conftest import SCREENSHOTS
from tickets.audit import RequestMeta, record_attempt

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("thena")]

PASSWORD = "correct horse battery"
DAY_LINK = re.compile(r"^\w{3} \d{1,2} \w{3} \d{4}: \d+ changes?$")


@pytest.fixture
def log(manager, sandbox):
    """A month of synthetic history, then one edit by the manager, with a reason."""
    call_command("seed_audit", count=400, days=30, seed=5, force=True, stdout=StringIO())
    return record_attempt(
        action="ticket.update",
        actor=manager,
        ticket=sandbox.tickets()[0],
        changes={"title": {"before": "Printer", "after": "Printer on fire"}},
        request_body={"title": "Printer on fire"},
        meta=RequestMeta(request_id="req-e2e", client_ip="198.51.100.23", user_agent="Firefox"),
        outcome="conflict",
        reason="Customer called twice",
    )


def test_a_chart_bar_picked_with_the_keyboard_lists_that_day(
    page, live_server, auditor, login, log, shot
):
    login(auditor.username, PASSWORD)
    page.goto(f"{live_server.url}/audit/")
    days = page.get_by_role("list", name="Changes per day").get_by_role("link", name=DAY_LINK)
    expect(days).to_have_count(30)

    # From the export link backwards with Shift+Tab: the last day's bar, then the one before.
    page.get_by_role("link", name="Export these entries (CSV)").focus()
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")
    bar = days.nth(28)
    expect(bar).to_be_focused()
    label = bar.get_attribute("aria-label")
    yesterday = datetime.now(ZoneInfo("Europe/Paris")).date() - timedelta(days=1)
    day = yesterday.isoformat()
    shot("audit-chart-bar-focused")

    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(rf"/audit/\?since={day}&until={day}$"))
    expect(page.get_by_label("Since")).to_have_value(day)
    expect(page.get_by_label("Until")).to_have_value(day)
    assert int(re.search(r": (\d+) change", label).group(1)) > 0
    # Every entry listed is of that day (exports too, which the chart does not count).
    times = page.locator("table.audit tbody time").all_inner_texts()
    assert times
    assert all(t.startswith(f"{yesterday.day} {yesterday:%b %Y},") for t in times), times
    expect(page.locator(".chart-days li")).to_have_count(1)
    expect(page.get_by_role("link", name=label)).to_be_visible()
    shot("audit-chart-day")


def test_a_partial_actor_name_in_any_case_finds_the_person(
    page, live_server, auditor, login, log, shot
):
    login(auditor.username, PASSWORD)
    page.goto(f"{live_server.url}/audit/")
    expect(page.locator("#actor-suggestions option[value='manager']")).to_have_count(1)

    actor = page.get_by_label("Actor")
    actor.fill("MANA")
    actor.press("Enter")
    expect(page).to_have_url(re.compile(r"/audit/\?actor=MANA$"))
    expect(page.get_by_text("Actor “MANA” is manager.")).to_be_visible()
    rows = page.locator("table.audit tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Reason: Customer called twice")
    shot("audit-actor-partial")

    page.get_by_label("Reason contains").fill("TWICE")
    page.get_by_label("Reason contains").press("Enter")
    expect(page).to_have_url(re.compile(r"actor=MANA&reason=TWICE$"))
    expect(rows).to_have_count(1)


def test_the_reason_typed_on_the_edit_form_is_required_and_logged(
    page, live_server, manager, login, sandbox, settings, shot
):
    settings.THENA_REQUIRE_REASON = True
    ticket = next(t for t in sandbox.tickets() if t["teamIdentifier"] == "SUP")
    login(manager.username, PASSWORD)
    page.goto(f"{live_server.url}/tickets/{ticket['id']}/")
    form = page.locator("#edit-form")
    form.get_by_label("Title", exact=True).fill("Printer still on fire")
    form.get_by_role("button", name="Save to Thena").click()

    reason = form.get_by_label("Reason for this change")
    expect(page.get_by_text("Give a reason for this change.").first).to_be_visible()
    expect(form.get_by_label("Title", exact=True)).to_have_value("Printer still on fire")
    shot("edit-reason-required")

    reason.fill("Customer called again.\nFacilities are on their way.")
    form.get_by_role("button", name="Save to Thena").click()
    expect(page.get_by_text("Saved 1 change(s) to Thena.")).to_be_visible()
    shot("edit-reason-saved")
    assert "Customer" not in str([r.json for r in sandbox.requests if r.method == "PATCH"])

    from tickets.models import AuditEntry

    entry = AuditEntry.objects.get(action="ticket.update")
    assert entry.reason == "Customer called again.\nFacilities are on their way."


def test_a_viewer_gets_the_apps_own_403_404_and_500(browser, live_server, viewer, settings):
    # A page of its own: the 403 and 404 answers are logged as failed loads, which the
    # `page` fixture refuses; anything else (a script error, a CSP violation) still fails.
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.goto(f"{live_server.url}/accounts/login/?next=/audit/")
    page.get_by_label("Username").fill(viewer.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Password").press("Enter")

    expect(
        page.get_by_role("heading", name="You don\u2019t have access to this page")
    ).to_be_visible()
    expect(page.get_by_text("“Auditors” or “Support managers” role")).to_be_visible()
    page.screenshot(path=SCREENSHOTS / "error-403.png", full_page=True, caret="initial")

    page.goto(f"{live_server.url}/audit/no-such-page/")
    expect(page.get_by_role("heading", name="No such page or entry")).to_be_visible()
    page.screenshot(path=SCREENSHOTS / "error-404.png", full_page=True, caret="initial")

    settings.ROOT_URLCONF = "tests.test_error_pages"  # the app's URLs and /boom/, which raises
    response = page.goto(f"{live_server.url}/boom/")
    expect(page.get_by_role("heading", name="Something went wrong on our side")).to_be_visible()
    expect(page.locator("code.request-id")).to_have_text(response.headers["x-request-id"])
    page.screenshot(path=SCREENSHOTS / "error-500.png", full_page=True, caret="initial")
    context.close()
    expected = ("status of 403", "status of 404", "status of 500")
    assert [e for e in errors if not any(status in e for status in expected)] == []
