import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("thena")]

HOSTILE = '<script>alert("owned")</script><img src=x onerror="alert(1)"><b>bold</b>'


def test_hostile_ticket_content_never_runs(page, live_server, manager, login, sandbox, shot):
    ticket = next(t for t in sandbox.tickets() if t["teamIdentifier"] == "SUP")
    sandbox.put_ticket(
        ticket["id"],
        title=HOSTILE,
        description=HOSTILE * 3,
        metadata={"note": HOSTILE},
        lastComment=HOSTILE,
    )
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    login(manager.username, "correct horse battery")
    page.goto(f"{live_server.url}/tickets/?q={ticket['ticketIdentifier']}")
    expect(page.get_by_role("cell", name=HOSTILE[:40])).to_be_visible()
    page.goto(f"{live_server.url}/tickets/{ticket['id']}/")
    expect(page.get_by_role("heading", level=1)).to_contain_text('<script>alert("owned")</script>')
    assert page.locator("main img").count() == 0
    assert page.locator("main b").count() == 0
    shot("hostile-ticket")
    assert dialogs == []
