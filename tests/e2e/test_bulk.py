"""Bulk edit in a real browser, as Chromium submits it: ticking tickets on the list (the
boxes live outside the form, form="bulk-select"), choosing the values, the preview, the
confirm, the progress page polled by htmx while the task worker runs the batch in a
thread beside the live server (both on the same SQLite test database), the results and
their CSV, cancelling a running batch, the same flow without JavaScript, the keyboard,
and what reached the sandbox."""

import csv
import re
import threading
import time

import pytest
from django.db import connections
from django.tasks import TaskResultStatus
from django_tasks_db.models import DBTaskResult
from playwright.sync_api import expect

from tests.e2e import DESKTOP, PHONE
from tests.e2e.conftest import SCREENSHOTS
from tests.util import db_worker

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("thena")]

PASSWORD = "correct horse battery"
BULK = "/v1/tickets/bulk"
REASON = "Quarterly clean-up of stale tickets"
FINISHED = ("Done", "Cancelled")


# -- fixtures and helpers -----------------------------------------------------------------


@pytest.fixture
def worker(live_server):
    """`manage.py db_worker` (its loop, without signal handlers) in a thread: it runs
    bulk_run as soon as a batch is confirmed, while the browser watches the page."""
    loop = db_worker(batch=False, interval=0.2, worker_id="e2e-bulk")

    def run() -> None:
        try:
            loop.run()
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, name="db_worker", daemon=True)
    thread.start()
    yield loop
    loop.running = False
    thread.join(timeout=30)
    assert not thread.is_alive(), "the worker did not stop"
    failed = DBTaskResult.objects.filter(status=TaskResultStatus.FAILED)
    assert not failed.exists(), [row.traceback for row in failed]


@pytest.fixture
def sup(sandbox) -> dict:
    return next(t for t in sandbox.teams() if t["identifier"] == "SUP")


@pytest.fixture
def values(thena, sup) -> dict:
    """What the tests set: status Resolved and priority Low, as ids."""
    status = next(s for s in thena.statuses(sup["id"]) if s["name"] == "Resolved")
    priority = next(p for p in thena.priorities(sup["id"]) if p["name"] == "Low")
    return {"statusId": status["id"], "priorityId": priority["id"]}


@pytest.fixture
def already_set(sandbox, sup, values) -> dict:
    """A SUP ticket someone set to the batch's values already (so it tops the list, most
    recently updated first): the preview calls it "No change" and nothing is sent for it."""
    ticket = next(
        t
        for t in sandbox.tickets()
        if t["teamId"] == sup["id"]
        and (t["statusId"], t["priorityId"]) != (values["statusId"], values["priorityId"])
    )
    return sandbox.touch_ticket(ticket["id"], **values)


def _patches(sandbox) -> list:
    return [r for r in sandbox.requests if r.method == "PATCH"]


def _ticked(page) -> list[str]:
    return page.locator("input[name=ticket]:checked").evaluate_all(
        "boxes => boxes.map(b => b.value)"
    )


def _rows(page) -> list[str]:
    return page.locator("input[name=ticket][form=bulk-select]").evaluate_all(
        "boxes => boxes.map(b => b.value)"
    )


def _no_sideways_scroll(page, width: int = 390) -> None:
    scroll = page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width, f"scrollWidth {scroll}"


def _choose(page, values: dict) -> dict[str, str]:
    """Status and priority from their selects; the rest stays "— keep as is". Returns
    the options' labels as the page shows them."""
    shown = {}
    for label, key in (("Status", "statusId"), ("Priority", "priorityId")):
        select = page.get_by_label(label, exact=True)
        select.select_option(values[key])
        shown[key] = select.locator("option:checked").inner_text()
    page.get_by_label("Reason for the change").fill(REASON)
    return shown


def _open_list(page, live_server, sup) -> None:
    """The list, then the team picked from the select (htmx swaps the table in)."""
    page.goto(f"{live_server.url}/tickets/")
    expect(page.get_by_text("To edit tickets in bulk, choose a team first.")).to_be_visible()
    expect(page.locator("input[name=ticket]")).to_have_count(0)
    page.get_by_label("Team", exact=True).select_option(sup["id"])
    expect(page).to_have_url(re.compile(rf"/tickets/\?team={sup['id']}"))
    expect(page.locator("input[name=ticket][form=bulk-select]")).to_have_count(25)


def _watch(page, timeout: float = 20.0) -> list[tuple[str, int, int]]:
    """Read the progress section every 100 ms until the batch has finished: each
    (heading, value, max) seen, in order, without the duplicates."""
    seen: list[tuple[str, int, int]] = []
    section = page.locator("#batch-progress")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = section.evaluate(
                "s => [s.querySelector('h2').textContent.trim(),"
                " s.querySelector('progress').getAttribute('value'),"
                " s.querySelector('progress').getAttribute('max')]",
                timeout=2000,
            )
        except Exception:  # swapped out between two reads: read again
            continue
        row = (state[0], int(state[1]), int(state[2]))
        if not seen or seen[-1] != row:
            seen.append(row)
        if row[0] in FINISHED:
            return seen
        page.wait_for_timeout(100)
    raise AssertionError(f"the batch did not finish in {timeout}s: {seen}")


def _results(page) -> dict[str, str]:
    """The results table: ticket identifier -> outcome as shown."""
    rows = page.locator("table.bulk-results tbody tr")
    return dict(
        zip(
            rows.locator("td[data-label=Ticket]").all_inner_texts(),
            rows.locator("td[data-label=Outcome]").all_inner_texts(),
            strict=True,
        )
    )


def _by_identifier(sandbox) -> dict[str, dict]:
    return {t["ticketIdentifier"]: t for t in sandbox.tickets()}


# -- select, preview, confirm, watch, results, CSV -------------------------------------------


@pytest.mark.parametrize("screen", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_three_ticked_tickets_are_previewed_confirmed_and_watched_live(
    screen,
    page,
    live_server,
    manager,
    login,
    sandbox,
    sup,
    values,
    already_set,
    worker,
    settings,
    shot,
    tmp_path,
):
    name = "phone" if screen is PHONE else "desktop"
    login(manager.username, PASSWORD)
    _open_list(page, live_server, sup)

    # The header box (shown by the script, also after the htmx swap) ticks the page.
    every = page.get_by_label("Select every ticket on this page")
    expect(every).to_be_visible()
    every.check()
    assert len(_ticked(page)) == 25
    every.uncheck()
    assert _ticked(page) == []

    ids = _rows(page)[:3]
    assert ids[0] == already_set["id"]  # touched last: first on the list
    for ticket_id in ids:
        page.locator(f"input[name=ticket][value='{ticket_id}']").check()
    shot(f"bulk-list-ticked-{name}")
    if screen is PHONE:
        _no_sideways_scroll(page)
    page.get_by_role("button", name="Edit selected").click()

    # The form: a plain GET carried the three ticks, outside the form as they are.
    expect(page).to_have_url(re.compile(r"/tickets/bulk/\?team="))
    assert sorted(re.findall(r"ticket=([^&]+)", page.url)) == sorted(ids)
    expect(page.get_by_role("heading", level=1)).to_have_text("Bulk edit: 3 tickets in Support")
    for label in ("Status", "Priority", "Type", "Assignee"):
        select = page.get_by_label(label, exact=True)
        expect(select.locator("option:checked")).to_have_text("— keep as is")
    labels = _choose(page, values)
    assert labels == {"statusId": "Closed / Resolved", "priorityId": "Low"}
    shot(f"bulk-form-{name}")
    if screen is PHONE:
        _no_sideways_scroll(page)
    page.get_by_role("button", name="Preview changes").click()

    # The preview: every ticket with current -> new; the one already set: "No change".
    expect(page).to_have_url(re.compile(r"/tickets/bulk/[0-9a-f-]{36}/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Preview: 3 tickets in Support")
    expect(page.locator(".bulk-summary")).to_contain_text("2 tickets will change; 3 selected.")
    expect(page.locator(".bulk-summary")).to_contain_text(f"Reason: {REASON}")
    before = {i: sandbox.ticket(i) for i in ids}
    rows = page.locator("table.bulk-preview tbody tr")
    expect(rows).to_have_count(3)
    for index, ticket_id in enumerate(ids):
        row, ticket = rows.nth(index), before[ticket_id]
        expect(row.locator("td").first).to_have_text(ticket["ticketIdentifier"])
        if ticket_id == already_set["id"]:
            expect(row).to_have_class("no-change")
            expect(row.locator("td[data-label=Change]")).to_contain_text("No change")
            continue
        changes = row.locator(".bulk-changes li")
        shown = [
            f"Status: {ticket['status']} → {labels['statusId']}",
            f"Priority: {ticket['priority']} → {labels['priorityId']}",
        ]
        # A field that already holds its value is not listed as a change.
        shown = [
            line
            for line, key in zip(shown, ("statusId", "priorityId"), strict=True)
            if ticket[key] != values[key]
        ]
        expect(changes).to_have_text(shown)
    shot(f"bulk-preview-{name}")
    if screen is PHONE:
        _no_sideways_scroll(page)
    assert _patches(sandbox) == []  # nothing sent before the confirm

    # Confirm: the worker runs while the page polls; slow Thena so that takes a while.
    settings.BULK_CHUNK_SIZE = 1
    sandbox.config.latency_ms = 500
    sandbox.requests.clear()
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: frame == page.main_frame and navigations.append(1))
    polls: list[str] = []
    page.on("request", lambda r: r.headers.get("hx-request") == "true" and polls.append(r.url))
    page.get_by_role("button", name="Apply to 2 tickets").click()
    expect(page.get_by_text("Bulk edit started.")).to_be_visible()
    expect(page.get_by_role("heading", level=1)).to_have_text("Bulk edit in Support")
    navigations.clear()
    page.evaluate("window.bulkPageMarker = 42")  # lost on any reload
    seen = _watch(page)

    assert seen[-1] == ("Done", 3, 3), seen
    assert any(0 < done < 3 for _, done, _ in seen), f"no progress shown on the way: {seen}"
    assert [done for _, done, _ in seen] == sorted(done for _, done, _ in seen), seen
    assert navigations == [], "the page reloaded"
    assert page.evaluate("window.bulkPageMarker") == 42
    assert polls and all("/tickets/bulk/" in url for url in polls)
    section = page.locator("#batch-progress")
    expect(section).to_contain_text("3 of 3 done (100%)")
    expect(section.locator(".bulk-counts")).to_contain_text("Changed: 2")
    expect(section.locator(".bulk-counts")).to_contain_text("No change: 1")
    expect(section.get_by_role("button", name="Cancel the rest")).to_have_count(0)
    identifiers = {before[i]["ticketIdentifier"]: i for i in ids}
    assert _results(page) == {
        ident: "No change" if i == already_set["id"] else "Changed"
        for ident, i in identifiers.items()
    }
    polled = len(polls)
    page.wait_for_timeout(1500)
    assert len(polls) == polled, "still polling a finished batch"
    shot(f"bulk-results-{name}")
    if screen is PHONE:
        _no_sideways_scroll(page)

    # The CSV has the same rows.
    with page.expect_download() as download:
        page.get_by_role("link", name="Download the results (CSV)").click()
    assert re.fullmatch(
        r"bulk-edit-\d{8}-\d{4}-[0-9a-f]{8}\.csv", download.value.suggested_filename
    )
    path = tmp_path / "results.csv"
    download.value.save_as(path)
    with path.open(newline="", encoding="utf-8") as file:
        lines = list(csv.DictReader(file))
    assert [(r["ticket_id"], r["ticket_identifier"]) for r in lines] == [
        (i, before[i]["ticketIdentifier"]) for i in ids
    ]
    assert {r["ticket_id"]: r["outcome"] for r in lines} == {
        i: "no_change" if i == already_set["id"] else "succeeded" for i in ids
    }
    assert all(r["audit_entry"].isdigit() for r in lines if r["outcome"] == "succeeded")
    assert [r["title"] for r in lines] == [before[i]["title"] for i in ids]

    # What reached Thena: one bulk PATCH, of exactly the two fields, for exactly the two
    # tickets that needed it; the one already set was read, never written.
    changed = [i for i in ids if i != already_set["id"]]
    patches = _patches(sandbox)
    assert {(r.path, tuple(r.json["ticketIds"])) for r in patches} <= {
        (BULK, (i,)) for i in changed
    }
    assert sorted(i for r in patches for i in r.json["ticketIds"]) == sorted(changed)
    assert all(set(r.json) == {"ticketIds", *values} for r in patches)
    assert all({k: r.json[k] for k in values} == values for r in patches)
    for ticket_id in changed:
        now = sandbox.ticket(ticket_id)
        assert (now["statusId"], now["priorityId"]) == (values["statusId"], values["priorityId"])
        untouched = {k: v for k, v in before[ticket_id].items() if k not in _MOVED}
        assert {k: now[k] for k in untouched} == untouched
    assert sandbox.ticket(already_set["id"]) == before[already_set["id"]]


# Fields a status and priority change moves along (names follow ids; closing stamps).
_MOVED = {"statusId", "priorityId", "status", "priority", "updatedAt", "closedAt", "closedById"}
_MOVED |= {"closedBy", "closedByEmail"}


# -- cancel --------------------------------------------------------------------------------


def test_cancelling_a_running_batch_stops_what_was_not_sent(
    page, live_server, manager, login, sandbox, sup, worker, settings, shot, thena
):
    urgent = next(p for p in thena.priorities(sup["id"]) if p["name"] == "Urgent")
    before = {t["id"]: t for t in sandbox.tickets() if t["teamId"] == sup["id"]}
    login(manager.username, PASSWORD)
    page.goto(f"{live_server.url}/tickets/?team={sup['id']}")
    page.get_by_role("button", name=re.compile(r"^Edit all (\d+ )?matching this filter$")).click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Bulk edit: every ticket in Support")
    page.get_by_label("Priority", exact=True).select_option(urgent["id"])
    page.get_by_role("button", name="Preview changes").click()
    rows = page.locator("table.bulk-preview tbody tr")
    expect(rows).to_have_count(len(before))
    already = sum(t["priorityId"] == urgent["id"] for t in before.values())
    expect(rows.filter(has_text="No change")).to_have_count(already)
    changing = len(before) - already

    settings.BULK_CHUNK_SIZE = 5
    sandbox.config.latency_ms = 250
    sandbox.requests.clear()
    page.get_by_role("button", name=f"Apply to {changing} tickets").click()
    section = page.locator("#batch-progress")
    # Once some chunks have gone out, cancel the rest.
    expect(section.locator("progress")).to_have_attribute(
        "value", re.compile(r"^(1\d|[2-6]\d)$"), timeout=15000
    )
    section.get_by_role("button", name="Cancel the rest").click()
    expect(page.get_by_text("Cancelling: nothing more is sent")).to_be_visible()
    expect(section.get_by_role("heading", level=2).first).to_have_text("Cancelled", timeout=15000)
    shot("bulk-cancelled-desktop")

    counts = section.locator(".bulk-counts")
    expect(counts).to_contain_text("Not sent:")
    results = _results(page)
    assert len(results) == len(before)
    tickets = _by_identifier(sandbox)
    done = {tickets[i]["id"] for i, outcome in results.items() if outcome == "Changed"}
    not_sent = {tickets[i]["id"] for i, o in results.items() if o == "Not sent (cancelled)"}
    assert set(results.values()) <= {"Changed", "No change", "Not sent (cancelled)"}, results
    assert done and not_sent, results
    expect(counts).to_contain_text(f"Changed: {len(done)}")
    expect(counts).to_contain_text(f"Not sent: {len(not_sent)}")

    # Thena got the priority, and only it, for exactly the tickets listed as done.
    patches = _patches(sandbox)
    assert all(r.path == BULK and set(r.json) == {"ticketIds", "priorityId"} for r in patches)
    assert all(r.json["priorityId"] == urgent["id"] for r in patches)
    sent = [i for r in patches for i in r.json["ticketIds"]]
    assert sorted(sent) == sorted(done)
    for ticket_id, old in before.items():
        now = sandbox.ticket(ticket_id)
        if ticket_id in done:
            assert now["priorityId"] == urgent["id"]
        else:
            assert now == old, ticket_id


# -- without JavaScript --------------------------------------------------------------------


def test_without_javascript_plain_forms_select_preview_confirm_and_refresh(
    browser, live_server, manager, sandbox, sup, values, already_set, worker, settings
):
    context = browser.new_context(java_script_enabled=False, **DESKTOP)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.goto(f"{live_server.url}/accounts/login/?next=/tickets/%3Fteam%3D{sup['id']}")
    page.get_by_label("Username").fill(manager.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Password").press("Enter")
    expect(page.locator("input[name=ticket][form=bulk-select]")).to_have_count(25)
    # No script: no header box that would do nothing.
    expect(page.get_by_label("Select every ticket on this page")).to_be_hidden()

    ids = _rows(page)[:2]
    assert ids[0] == already_set["id"]
    for ticket_id in ids:
        page.locator(f"input[name=ticket][value='{ticket_id}']").check()
    page.get_by_role("button", name="Edit selected").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Bulk edit: 2 tickets in Support")
    _choose(page, values)
    page.get_by_role("button", name="Preview changes").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Preview: 2 tickets in Support")
    expect(page.locator("tr.no-change")).to_have_count(1)

    settings.BULK_CHUNK_SIZE = 1
    sandbox.config.latency_ms = 400
    sandbox.requests.clear()
    page.get_by_role("button", name="Apply to 1 ticket").click()
    expect(page.get_by_text("Bulk edit started.")).to_be_visible()
    section = page.locator("#batch-progress")
    expect(section.get_by_role("heading", level=2).first).not_to_have_text("Done")
    refresh = section.get_by_role("link", name="Refresh")
    expect(refresh).to_be_visible()
    page.screenshot(path=SCREENSHOTS / "bulk-no-js-running.png", full_page=True, caret="initial")
    for _ in range(30):
        if section.get_by_role("heading", level=2).first.inner_text() == "Done":
            break
        page.wait_for_timeout(300)
        page.get_by_role("link", name="Refresh").click()
    expect(section.get_by_role("heading", level=2).first).to_have_text("Done")
    expect(refresh).to_have_count(0)
    identifier = {i: sandbox.ticket(i)["ticketIdentifier"] for i in ids}
    assert _results(page) == {identifier[ids[0]]: "No change", identifier[ids[1]]: "Changed"}
    page.screenshot(path=SCREENSHOTS / "bulk-no-js-done.png", full_page=True, caret="initial")
    [patch] = _patches(sandbox)
    assert (patch.path, patch.json) == (BULK, {"ticketIds": [ids[1]], **values})
    context.close()
    assert errors == []


# -- keyboard ------------------------------------------------------------------------------


def test_all_tickets_matching_a_search_are_edited_by_keyboard(
    page, live_server, manager, login, sandbox, sup, values, shot
):
    """From a search: "Edit all N matching this filter" carries the query, and the form
    is filled in and sent with the keyboard only."""
    login(manager.username, PASSWORD)
    page.goto(f"{live_server.url}/tickets/?team={sup['id']}&q=login")
    edit_all = page.get_by_role("button", name=re.compile(r"^Edit all \d+ matching this filter$"))
    found = int(re.search(r"\d+", edit_all.inner_text()).group())
    assert 1 < found < 25, found
    edit_all.focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/tickets/bulk/\?team=\w+&q=login&all=1$"))
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Bulk edit: every ticket matching \u201clogin\u201d in Support"
    )

    status = page.get_by_label("Status", exact=True)
    for _ in range(15):  # from the top of the page to the first field
        page.keyboard.press("Tab")
        if status.evaluate("s => s === document.activeElement"):
            break
    expect(status).to_be_focused()
    page.keyboard.type("Closed / Resolved")  # a focused select's type-ahead
    expect(status).to_have_value(values["statusId"])
    page.keyboard.press("Tab")
    priority = page.get_by_label("Priority", exact=True)
    expect(priority).to_be_focused()
    page.keyboard.type("Low")
    expect(priority).to_have_value(values["priorityId"])

    reason = page.get_by_label("Reason for the change")
    preview = page.get_by_role("button", name="Preview changes")
    tabs = 0
    while not preview.evaluate("b => b === document.activeElement"):
        assert tabs < 40, "Tab never reached the Preview button"
        page.keyboard.press("Tab")
        tabs += 1
        if reason.evaluate("r => r === document.activeElement"):
            page.keyboard.type(REASON)
    expect(reason).to_have_value(REASON)
    expect(preview).to_be_focused()
    shot("bulk-form-keyboard-focus")
    page.keyboard.press("Enter")

    expect(page.get_by_role("heading", level=1)).to_have_text(
        f"Preview: {found} tickets in Support"
    )
    expect(page.locator("table.bulk-preview tbody tr")).to_have_count(found)
    expect(page.locator(".bulk-summary")).to_contain_text(f"Reason: {REASON}")
    badges = page.locator(".bulk-summary .badge")
    expect(badges).to_have_text(["Status: Closed / Resolved", "Priority: Low"])
    assert _patches(sandbox) == []
