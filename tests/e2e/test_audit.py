import re
from io import StringIO

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from tickets.audit import RequestMeta, record_attempt, record_outcome

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("thena")]

PASSWORD = "correct horse battery"
BEFORE = (
    "Printing fails on the third floor since Monday.\n"
    "The customer says the queue shows every job as sent."
)
AFTER = (
    "Printing fails on the third floor since the firmware update.\n"
    "The queue shows every job as sent; nothing comes out."
)


@pytest.fixture
def log(manager, sandbox):
    """A month of synthetic history, then one failed description edit by the manager."""
    call_command("seed_audit", count=400, days=30, seed=5, force=True, stdout=StringIO())
    ticket = sandbox.tickets()[0]
    entry = record_attempt(
        action="ticket.update",
        actor=manager,
        ticket=ticket,
        changes={
            "description": {"before": BEFORE, "after": AFTER},
            "metadata": {"before": {"plan": "pro"}, "after": {"plan": "pro", "seats": 40}},
        },
        request_body={"description": AFTER, "metadata": {"plan": "pro", "seats": 40}},
        meta=RequestMeta(request_id="req-e2e", client_ip="198.51.100.23", user_agent="Firefox"),
    )
    record_outcome(
        entry=entry, outcome="failed", status_code=422, message="metadata: seats too high"
    )
    return entry


def test_auditor_filters_with_the_keyboard_and_opens_the_diff(
    page, live_server, auditor, login, log, shot
):
    login(auditor.username, PASSWORD)
    nav = page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit log")
    nav.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Audit log")).to_be_visible()
    expect(page.get_by_text("Times are in Europe/Paris")).to_be_visible()
    expect(page.locator("table.audit tbody tr")).to_have_count(50)
    expect(page.locator(".chart rect")).to_have_count(30)
    shot("audit-list")

    page.get_by_label("Field changed").focus()
    page.keyboard.press("D")  # type-ahead: Description
    expect(page).to_have_url(re.compile(r"/audit/\?field=description$"))
    page.keyboard.press("Tab")
    expect(page.get_by_label("Outcome")).to_be_focused()
    page.keyboard.press("F")  # Failed
    expect(page).to_have_url(re.compile(r"/audit/\?field=description&outcome=failed$"))
    rows = page.locator("table.audit tbody tr")
    expect(rows.first).to_contain_text("manager")
    expect(rows.first).to_contain_text("Description, Metadata")
    for badge in rows.locator(".badge").all():
        expect(badge).to_have_text("failed")
    export = page.get_by_role("link", name="Export these entries (CSV)")
    expect(export).to_have_attribute("href", "/audit/export.csv?field=description&outcome=failed")
    shot("audit-filtered")

    page.get_by_role("link", name=f"#{log.number}", exact=True).focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_contain_text(f"Entry #{log.number}")
    diff = page.locator(".change .diff")
    expect(diff.locator("del").first).to_contain_text("Monday")
    expect(diff.locator("ins").first).to_contain_text("the firmware update")
    full = page.get_by_text("Full text before and after")
    full.focus()
    page.keyboard.press("Enter")
    expect(page.locator(".full-text .value").first).to_have_text(BEFORE)
    expect(page.locator(".change pre.code").nth(1)).to_contain_text('"seats": 40')
    expect(page.get_by_text("198.51.100.23")).to_be_visible()
    expect(page.get_by_role("cell", name="metadata: seats too high")).to_be_visible()
    shot("audit-detail")

    page.go_back()
    expect(page).to_have_url(re.compile(r"field=description&outcome=failed$"))
    expect(page.get_by_label("Field changed")).to_have_value("description")


def test_older_pages_follow_the_cursor_and_the_url(page, live_server, auditor, login, log):
    login(auditor.username, PASSWORD)
    page.goto(f"{live_server.url}/audit/")
    first = page.locator("table.audit tbody tr td:first-child").all_inner_texts()

    page.get_by_role("link", name="Older →").click()
    expect(page).to_have_url(re.compile(r"/audit/\?cursor=[A-Za-z0-9_-]+$"))
    expect(page.get_by_role("link", name="« Newest")).to_be_visible()
    second = page.locator("table.audit tbody tr td:first-child").all_inner_texts()
    assert len(second) == 50
    assert not set(first) & set(second)
    assert int(second[0].lstrip("#")) < int(first[-1].lstrip("#"))

    page.reload()  # the pushed URL is the same page
    assert page.locator("table.audit tbody tr td:first-child").all_inner_texts() == second


@pytest.mark.browser_context_args(java_script_enabled=False)
def test_the_filters_work_without_javascript(page, live_server, auditor, login, log, shot):
    login(auditor.username, PASSWORD)
    page.goto(f"{live_server.url}/audit/")
    expect(page.get_by_role("heading", name="Audit log")).to_be_visible()

    page.get_by_label("Actor").fill("manager")
    page.get_by_label("Outcome").select_option("failed")
    page.get_by_label("Since").fill("2002-01-01")
    page.get_by_label("Until").fill("2001-01-01")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_text("The end date is before the start date.")).to_be_visible()
    expect(page.get_by_text("Nothing shown: correct the filters marked above.")).to_be_visible()
    shot("audit-invalid")

    page.get_by_label("Since").fill("")
    page.get_by_label("Until").fill("")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"actor=manager.*outcome=failed"))
    expect(page.locator("table.audit tbody tr")).to_have_count(1)
    expect(page.locator("table.audit tbody tr")).to_contain_text("Description, Metadata")
    shot("audit-no-js")
