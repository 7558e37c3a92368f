import re

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("thena")]


def test_manager_logs_in_and_sees_the_ticket_list(page, live_server, manager, login, shot, sandbox):
    page.goto(live_server.url)
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/$"))
    shot("login")

    login(manager.username, "correct horse battery")

    expect(page.get_by_role("heading", name="Tickets")).to_be_visible()
    newest = max(sandbox.tickets(), key=lambda t: t["updatedAt"])
    expect(page.get_by_role("cell", name=newest["ticketIdentifier"], exact=True)).to_be_visible()
    assert page.locator("table.tickets tbody tr").count() == 25
    shot("ticket-list")


def test_team_filter_and_search_update_the_list(page, live_server, manager, login, sandbox):
    login(manager.username, "correct horse battery")
    team = sandbox.teams()[1]

    page.get_by_label("Team", exact=True).select_option(team["id"])
    expect(page).to_have_url(re.compile(rf"team={team['id']}"))
    # The first column holds the bulk edit's ticks (the manager may edit in bulk).
    teams_shown = set(page.locator("table.tickets tbody tr td:nth-child(7)").all_inner_texts())
    assert teams_shown == {team["name"]}

    target = next(t for t in sandbox.tickets() if t["teamId"] == team["id"])
    page.get_by_label("Search").fill(target["ticketIdentifier"])
    page.get_by_label("Search").press("Enter")
    expect(page.get_by_role("cell", name=target["ticketIdentifier"], exact=True)).to_be_visible()


def test_paging_moves_to_older_tickets(page, live_server, manager, login):
    login(manager.username, "correct horse battery")
    first = page.locator("table.tickets tbody tr td:first-child").first.inner_text()
    page.get_by_role("link", name="Next →").click()
    expect(page).to_have_url(re.compile(r"page=2"))
    assert page.locator("table.tickets tbody tr td:first-child").first.inner_text() != first
