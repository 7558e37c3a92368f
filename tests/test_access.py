"""Who may do what: personas against every ticket URL, team scopes, lockouts, headers."""

import pytest
from django.test import Client
from pytest_django.asserts import assertContains, assertNotContains

from tests.conftest import PASSWORD, _client_for, _user
from tests.util import listed, submitted
from tickets.models import AuditEntry, TeamScope

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("thena")]


@pytest.fixture
def sup_ticket(sandbox):
    return next(t for t in sandbox.tickets() if t["teamIdentifier"] == "SUP")


@pytest.fixture
def billing(sandbox):
    return next(t for t in sandbox.teams() if t["identifier"] == "BIL")


@pytest.fixture
def scoped_manager(django_user_model, billing):
    """A support manager limited to the Billing team."""
    user = _user(django_user_model, "billing-manager", "Support managers")
    TeamScope.objects.create(user=user, team_ids=[billing["id"]])
    return user


@pytest.fixture
def scoped_client(scoped_manager):
    return _client_for(scoped_manager)


def _patches(sandbox):
    return [r for r in sandbox.requests if r.method == "PATCH"]


# -- personas and URLs ------------------------------------------------------------------------

URLS = {
    "detail": ("get", "/tickets/{id}/"),
    "submit": ("post", "/tickets/{id}/"),
    "validate": ("post", "/tickets/{id}/validate/?field=title"),
    "history": ("get", "/tickets/{id}/history/"),
    "accounts": ("get", "/tickets/accounts/?q=a"),
    "list": ("get", "/tickets/"),
}
EXPECTED = {
    #           detail submit validate history accounts list
    "viewer": (200, 403, 403, 403, 403, 200),
    "auditor": (200, 403, 403, 200, 403, 200),
    "manager": (200, 302, 200, 200, 200, 200),  # a saved edit redirects to the ticket
}


@pytest.mark.parametrize("persona", EXPECTED)
def test_each_persona_gets_exactly_its_rights(request, persona, sup_ticket):
    client = request.getfixturevalue(f"{persona}_client")
    data = submitted(client.get(f"/tickets/{sup_ticket['id']}/").context["form"])
    got = []
    for method, url in URLS.values():
        path = url.format(id=sup_ticket["id"])
        response = client.post(path, data) if method == "post" else client.get(path)
        got.append(response.status_code)
        if response.status_code == 302:
            assert response["Location"] == path  # the saved ticket, not the login page
    assert tuple(got) == EXPECTED[persona]


@pytest.mark.parametrize(("method", "url"), URLS.values())
def test_anonymous_is_sent_to_login_everywhere(client, method, url, sup_ticket):
    path = url.format(id=sup_ticket["id"])
    response = getattr(client, method)(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


def test_viewer_sees_no_form_and_a_forged_post_is_denied_and_logged(
    viewer_client, sup_ticket, sandbox
):
    assertNotContains(viewer_client.get(f"/tickets/{sup_ticket['id']}/"), '<form id="edit-form"')
    assert viewer_client.post(f"/tickets/{sup_ticket['id']}/", {"title": "x"}).status_code == 403
    assert _patches(sandbox) == []
    assert AuditEntry.objects.get().outcome == "denied"


# -- team scopes ----------------------------------------------------------------------------


def test_scoped_user_lists_only_their_teams(scoped_client, billing):
    response = scoped_client.get("/tickets/")
    listing = listed(response)
    assert [team["id"] for team in listing.teams] == [billing["id"]]
    assert {t["teamId"] for t in listing.tickets} == {billing["id"]}
    assert listing.tickets


def test_scoped_user_cannot_list_another_team_by_url(scoped_client, sandbox, billing):
    support = next(t for t in sandbox.teams() if t["identifier"] == "SUP")
    listing = listed(scoped_client.get("/tickets/", {"team": support["id"]}))
    assert {t["teamId"] for t in listing.tickets} == {billing["id"]}


def test_scoped_user_search_stays_in_scope(scoped_client, sup_ticket):
    listing = scoped_client.get("/tickets/", {"q": sup_ticket["ticketIdentifier"]}).context[
        "listing"
    ]
    assert sup_ticket["id"] not in {t["id"] for t in listing.tickets}


@pytest.mark.parametrize("name", ["detail", "submit", "validate", "history"])
def test_other_teams_tickets_answer_404_on_every_path(
    scoped_client, manager_client, sup_ticket, sandbox, name
):
    data = submitted(
        manager_client.get(f"/tickets/{sup_ticket['id']}/").context["form"], title="Out"
    )
    method, url = URLS[name]
    path = url.format(id=sup_ticket["id"])
    response = scoped_client.post(path, data) if method == "post" else scoped_client.get(path)
    assert response.status_code == 404
    assert _patches(sandbox) == []


def test_other_team_looks_like_a_ticket_that_does_not_exist(scoped_client, sup_ticket):
    hidden = scoped_client.get(f"/tickets/{sup_ticket['id']}/")
    missing = scoped_client.get("/tickets/DOESNOTEXIST0000000000000000/")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.content == missing.content


def test_scoped_user_edits_their_own_teams_tickets(scoped_client, sandbox, billing):
    ticket = next(t for t in sandbox.tickets() if t["teamId"] == billing["id"])
    url = f"/tickets/{ticket['id']}/"
    data = submitted(scoped_client.get(url).context["form"], title="Billing fix")
    assert scoped_client.post(url, data).status_code == 302
    assert sandbox.ticket(ticket["id"])["title"] == "Billing fix"


def test_a_ticket_moved_out_of_scope_since_the_form_was_loaded_is_refused(
    scoped_client, sandbox, billing
):
    ticket = next(t for t in sandbox.tickets() if t["teamId"] == billing["id"])
    url = f"/tickets/{ticket['id']}/"
    data = submitted(scoped_client.get(url).context["form"], title="Too late")
    support = next(t for t in sandbox.teams() if t["identifier"] == "SUP")
    sandbox.put_ticket(ticket["id"], teamId=support["id"])
    assert scoped_client.post(url, data).status_code == 404
    assert _patches(sandbox) == []
    assert AuditEntry.objects.get().outcome == "denied"


def test_superuser_ignores_scopes(django_user_model, sup_ticket, billing):
    admin = django_user_model.objects.create_superuser("root", "root@example.com", PASSWORD)
    TeamScope.objects.create(user=admin, team_ids=[billing["id"]])
    assert _client_for(admin).get(f"/tickets/{sup_ticket['id']}/").status_code == 200


def test_scope_with_no_teams_sees_nothing(django_user_model):
    user = _user(django_user_model, "nobody")
    TeamScope.objects.create(user=user, team_ids=[])
    response = _client_for(user).get("/tickets/")
    assertContains(response, "not allowed to see any team")
    assert listed(response).tickets == []


# -- login, sessions, headers ------------------------------------------------------------------


def test_five_failures_lock_the_username_from_that_address(manager):
    browser = Client(REMOTE_ADDR="203.0.113.5")
    for _ in range(5):
        response = browser.post("/accounts/login/", {"username": "manager", "password": "wrong"})
    response = browser.post("/accounts/login/", {"username": "manager", "password": PASSWORD})
    assert response.status_code == 429
    assertContains(response, "Too many failed logins", status_code=429)
    elsewhere = Client(REMOTE_ADDR="198.51.100.9")
    response = elsewhere.post("/accounts/login/", {"username": "manager", "password": PASSWORD})
    assert response.status_code == 302


def test_a_wrong_password_says_so_without_a_500(client, manager):
    response = client.post("/accounts/login/", {"username": "manager", "password": "nope"})
    assert response.status_code == 200
    assertContains(response, "Please enter a correct username and password")


def test_logout_is_post_only(manager_client):
    assert manager_client.get("/accounts/logout/").status_code == 405
    assert manager_client.post("/accounts/logout/").status_code == 302
    assert manager_client.get("/tickets/").status_code == 302


def test_sessions_end_after_eight_idle_hours(settings):
    assert settings.SESSION_COOKIE_AGE == 8 * 60 * 60
    assert settings.SESSION_COOKIE_HTTPONLY


def test_security_headers(manager_client, sup_ticket):
    response = manager_client.get(f"/tickets/{sup_ticket['id']}/")
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "style-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert b"<script>" not in response.content  # every script is a file
    assert b" style=" not in response.content


# -- hostile content -------------------------------------------------------------------------

HOSTILE = '<script>alert("owned")</script><img src=x onerror=alert(1)>'


def test_hostile_ticket_content_renders_escaped_and_truncated(manager_client, sandbox, sup_ticket):
    sandbox.put_ticket(
        sup_ticket["id"],
        title=HOSTILE + "T" * 5000,
        description=HOSTILE + "D" * 2_000_000,
        metadata={"x": HOSTILE},
        lastComment=HOSTILE,
    )
    response = manager_client.get(f"/tickets/{sup_ticket['id']}/")
    assert response.status_code == 200
    assert HOSTILE.encode() not in response.content
    assertContains(response, "&lt;script&gt;alert(&quot;owned&quot;)&lt;/script&gt;")
    assert len(response.content) < 200_000  # the 2 MB description is cut short
    assertContains(response, "too long to edit here")
    data = submitted(response.context["form"], isPrivate="on")
    assert manager_client.post(f"/tickets/{sup_ticket['id']}/", data).status_code == 302
    assert [r.json for r in sandbox.requests if r.method == "PATCH"] == [{"isPrivate": True}]
    listing = manager_client.get("/tickets/", {"team": sup_ticket["teamId"]})
    assert HOSTILE.encode() not in listing.content
    assert b"T" * 200 not in listing.content  # truncated in the list


# -- admin ---------------------------------------------------------------------------------


def test_admin_shows_the_audit_log_read_only(django_user_model, manager_client, sup_ticket):
    url = f"/tickets/{sup_ticket['id']}/"
    manager_client.post(url, submitted(manager_client.get(url).context["form"], title="Logged"))
    entry = AuditEntry.objects.get()
    admin = _client_for(
        django_user_model.objects.create_superuser("root", "r@example.com", PASSWORD)
    )
    assert admin.get("/admin/tickets/auditentry/").status_code == 200
    page = admin.get(f"/admin/tickets/auditentry/{entry.pk}/change/")
    assert page.status_code == 200
    assertNotContains(page, 'name="_save"')
    assert admin.get("/admin/tickets/auditentry/add/").status_code == 403
    assert (
        admin.post(f"/admin/tickets/auditentry/{entry.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    assert AuditEntry.objects.filter(pk=entry.pk).exists()


def test_admin_edits_team_scopes_on_the_user_page(django_user_model, manager, billing):
    admin = _client_for(
        django_user_model.objects.create_superuser("root", "r@example.com", PASSWORD)
    )
    page = admin.get(f"/admin/auth/user/{manager.pk}/change/")
    assertContains(page, "Team scope")
    assertContains(page, billing["name"])
    assert admin.get("/admin/axes/accessattempt/").status_code == 200


def test_deleting_a_user_keeps_their_audit_entries(manager_client, manager, sup_ticket):
    url = f"/tickets/{sup_ticket['id']}/"
    manager_client.post(url, submitted(manager_client.get(url).context["form"], title="Kept"))
    manager.delete()
    entry = AuditEntry.objects.get()
    assert entry.actor_username == "manager"


def test_scoped_auditor_reads_only_their_teams_audit_entries(
    django_user_model, manager_client, sandbox, billing, sup_ticket
):
    bil_ticket = next(t for t in sandbox.tickets() if t["teamId"] == billing["id"])
    for ticket in (sup_ticket, bil_ticket):
        url = f"/tickets/{ticket['id']}/"
        manager_client.post(
            url, submitted(manager_client.get(url).context["form"], title="Audited")
        )
    auditor = _user(django_user_model, "billing-auditor", "Auditors")
    TeamScope.objects.create(user=auditor, team_ids=[billing["id"]])
    client = _client_for(auditor)
    listing = client.get("/audit/")
    assertContains(listing, bil_ticket["ticketIdentifier"])
    assertNotContains(listing, f">{sup_ticket['ticketIdentifier']}<")
    hidden = AuditEntry.objects.get(ticket_id=sup_ticket["id"])
    assert client.get(f"/audit/{hidden.number}/").status_code == 404
    export = b"".join(client.get("/audit/export.csv").streaming_content).decode()
    assert bil_ticket["ticketIdentifier"] in export
    assert sup_ticket["ticketIdentifier"] not in export


def test_client_ip_behind_a_proxy(settings, rf):
    from tickets.audit import client_ip

    request = rf.get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="198.51.100.7, 10.0.0.1")
    assert client_ip(request) == "10.0.0.2"
    settings.PROXY_COUNT = 2
    assert client_ip(request) == "198.51.100.7"
