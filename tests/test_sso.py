"""Single sign-on against a real OpenID Connect provider (tests/oidc_provider, its own
process): the app under Django's test client, the provider's pages through httpx, as
a browser would (tests/e2e/test_sso.py does it in Chromium)."""

import re
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group, User
from django.test import Client
from pytest_django.asserts import assertContains, assertNotContains, assertRedirects

from tests.oidc_provider.harness import (
    CLIENT_ID,
    PASSWORD,
    app_configure,
    person,
    provider_running,
)
from tickets.models import TeamScope
from tickets.sso import provider as provider_client
from tickets.sso.backends import SESSION_ID_TOKEN
from tickets.sso.models import Identity

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def idp(tmp_path_factory):
    with provider_running(tmp_path_factory.mktemp("idp"), app_urls=["http://testserver"]) as p:
        yield p


@pytest.fixture
def sso(settings, idp):
    app_configure(settings, idp)
    yield idp
    provider_client.provider_reset()


@pytest.fixture
def idp_browser():
    """The provider's side of the browser: its cookies (the provider's session) persist."""
    with httpx.Client(timeout=10) as client:
        yield client


def _events(caplog, event: str) -> list[dict]:
    return [
        record.msg
        for record in caplog.records
        if isinstance(record.msg, dict) and record.msg.get("event") == event
    ]


def _provider_sign_in(idp_browser: httpx.Client, authorize_url: str, username: str) -> str:
    """Follow the provider from the authorization request to the redirect back to us,
    signing in on its login page if it asks; the callback URL."""
    response = idp_browser.get(authorize_url)
    if response.status_code == 302 and "/login/" in response.headers["location"]:
        login_url = httpx.URL(authorize_url).join(response.headers["location"])
        page = idp_browser.get(login_url)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)[1]
        next_url = parse_qs(login_url.query.decode())["next"][0]
        response = idp_browser.post(
            login_url,
            data={
                "csrfmiddlewaretoken": token,
                "username": username,
                "password": PASSWORD,
                "next": next_url,
            },
        )
        assert response.status_code == 302, "the provider refused the password"
        response = idp_browser.get(httpx.URL(authorize_url).join(response.headers["location"]))
    assert response.status_code == 302, response.text[:500]
    return response.headers["location"]


def sign_in(client: Client, idp_browser: httpx.Client, username: str, *, next_url: str = ""):
    """The whole flow: our start page, the provider, our callback. The callback's answer."""
    start = client.get("/accounts/oidc/start/" + (f"?next={next_url}" if next_url else ""))
    assert start.status_code == 302
    callback = urlsplit(_provider_sign_in(idp_browser, start["Location"], username))
    assert callback.netloc == "testserver"
    return client.get(f"{callback.path}?{callback.query}")


def _groups(username: str) -> set[str]:
    return set(User.objects.get(username=username).groups.values_list("name", flat=True))


# --- sign-in and provisioning ------------------------------------------------------------


def test_the_authorization_request_uses_pkce_state_and_nonce(client, sso):
    response = client.get("/accounts/oidc/start/")
    url = urlsplit(response["Location"])
    query = parse_qs(url.query)
    assert f"{url.scheme}://{url.netloc}{url.path}" == sso.issuer + "/authorize/"
    assert query["response_type"] == ["code"]
    assert query["client_id"] == [CLIENT_ID]
    assert query["code_challenge_method"] == ["S256"]
    assert len(query["code_challenge"][0]) == 43
    assert query["redirect_uri"] == ["http://testserver/accounts/oidc/callback/"]
    assert set(query["scope"][0].split()) == {"openid", "email", "profile"}
    state, nonce = query["state"][0], query["nonce"][0]
    assert len(state) >= 32 and len(nonce) >= 32
    assert state in client.session["oidc_states"]


def test_sign_in_creates_the_user_with_mapped_groups_and_team_scope(
    client, idp_browser, sso, caplog
):
    sso.people_set(ada=person("ada", groups=["support-leads", "unrelated"], teams=["t1", "t2"]))
    response = sign_in(client, idp_browser, "ada", next_url="/audit/")
    assertRedirects(response, "/audit/", fetch_redirect_response=False)
    user = User.objects.get(username="ada@corp.example")
    assert (user.email, user.first_name, user.last_name) == ("ada@corp.example", "Ada", "Tester")
    assert not user.has_usable_password()
    assert _groups(user.username) == {"Support managers"}
    assert TeamScope.objects.get(user=user).team_ids == ["t1", "t2"]
    assert client.get("/audit/").status_code == 200  # the mapped group's permission
    assert Identity.objects.get(user=user).issuer == sso.issuer
    [signed_in] = _events(caplog, "sso_sign_in")
    assert signed_in["username"] == user.username and signed_in["created"] is True
    [entry] = LogEntry.objects.filter(object_id=str(user.pk))
    assert entry.is_addition()
    assert "groups none → Support managers" in entry.change_message
    assert "teams every team → t1, t2" in entry.change_message


def test_losing_a_group_at_the_provider_removes_it_at_the_next_sign_in(
    client, idp_browser, sso, caplog
):
    sso.people_set(ada=person("ada", groups=["support-leads", "audit"], teams=["t1"]))
    sign_in(client, idp_browser, "ada")
    assert _groups("ada@corp.example") == {"Support managers", "Auditors"}
    client.post("/accounts/logout/")
    local = Group.objects.create(name="Local only")
    User.objects.get(username="ada@corp.example").groups.add(local)  # not in the map

    sso.people_set(ada=person("ada", groups=["audit"], teams=["t1", "t3"]))
    sign_in(client, idp_browser, "ada")
    assert _groups("ada@corp.example") == {"Auditors", "Local only"}
    assert TeamScope.objects.get(user__username="ada@corp.example").team_ids == ["t1", "t3"]
    [changed] = _events(caplog, "sso_roles_changed")[-1:]
    assert changed["groups_before"] == ["Auditors", "Support managers"]
    assert changed["groups_after"] == ["Auditors"]
    assert changed["teams_after"] == ["t1", "t3"]
    entry = LogEntry.objects.filter(object_id=str(changed["user_id"])).latest("id")
    assert entry.is_change()
    assert entry.change_message == (
        "Changed by single sign-on (Test IdP): groups Auditors, Support managers → Auditors; "
        "teams t1 → t1, t3"
    )


def test_losing_the_last_group_refuses_the_sign_in_and_removes_the_group(
    client, idp_browser, sso, caplog
):
    sso.people_set(ada=person("ada", groups=["audit"]))
    sign_in(client, idp_browser, "ada")
    client.post("/accounts/logout/")
    sso.people_set(ada=person("ada", groups=["someone-elses-group"]))
    response = sign_in(client, idp_browser, "ada")
    assertRedirects(response, "/accounts/login/", fetch_redirect_response=False)
    assert "_auth_user_id" not in client.session
    assert _groups("ada@corp.example") == set()
    [denied] = _events(caplog, "sso_sign_in_denied")
    assert denied["reason"] == "no_group"
    page = client.get("/accounts/login/")
    assertContains(page, "none of the groups that may use thena-admin")


def test_a_newcomer_without_a_mapped_group_gets_no_account(client, idp_browser, sso, caplog):
    sso.people_set(eve=person("eve", groups=["marketing"]))
    response = sign_in(client, idp_browser, "eve")
    assertRedirects(response, "/accounts/login/", fetch_redirect_response=False)
    assert not User.objects.filter(email="eve@corp.example").exists()
    assert _events(caplog, "sso_sign_in_denied")[0]["reason"] == "no_group"


def test_without_a_group_map_groups_are_left_alone(client, idp_browser, sso, settings):
    settings.OIDC_GROUP_MAP = {}
    sso.people_set(ada=person("ada", groups=["support-leads"]))
    sign_in(client, idp_browser, "ada")
    assert _groups("ada@corp.example") == set()
    assert "_auth_user_id" in client.session


@pytest.mark.parametrize(
    ("teams", "scope"),
    [
        (["*"], None),  # every team: no TeamScope row
        ([], []),  # no claim value: no team (fails closed)
        ("t1, t2 t3", ["t1", "t2", "t3"]),  # a string: split on commas and spaces
    ],
)
def test_team_scope_follows_the_claim(client, idp_browser, sso, teams, scope):
    sso.people_set(ada=person("ada", groups=["support-leads"], teams=teams))
    sign_in(client, idp_browser, "ada")
    row = TeamScope.objects.filter(user__username="ada@corp.example").first()
    assert (None if row is None else row.team_ids) == scope


def test_without_a_team_scope_claim_scopes_are_left_alone(client, idp_browser, sso, settings):
    settings.OIDC_TEAM_SCOPE_CLAIM = ""
    sso.people_set(ada=person("ada", groups=["support-leads"], teams=["t1"]))
    sign_in(client, idp_browser, "ada")
    assert not TeamScope.objects.filter(user__username="ada@corp.example").exists()


def test_the_team_scope_is_enforced_on_pages(client, idp_browser, sso, thena, sandbox):
    ticket = next(t for t in sandbox.tickets() if t["teamIdentifier"] == "SUP")
    other = next(t for t in sandbox.tickets() if t["teamId"] != ticket["teamId"])
    sso.people_set(ada=person("ada", groups=["support-leads"], teams=[ticket["teamId"]]))
    sign_in(client, idp_browser, "ada")
    assert client.get(f"/tickets/{ticket['id']}/").status_code == 200
    assert client.get(f"/tickets/{other['id']}/").status_code == 404


def test_the_profile_follows_the_provider(client, idp_browser, sso):
    sso.people_set(ada=person("ada", groups=["audit"]))
    sign_in(client, idp_browser, "ada")
    client.post("/accounts/logout/")
    sso.people_set(
        ada=person("ada", groups=["audit"], email="ada.l@corp.example", given_name="Augusta")
    )
    sign_in(client, idp_browser, "ada")
    user = User.objects.get(sso_identities__subject__isnull=False)
    # The username stays what the audit log already shows; the email follows.
    assert (user.username, user.email, user.first_name) == (
        "ada@corp.example",
        "ada.l@corp.example",
        "Augusta",
    )


def test_an_existing_local_account_is_linked_by_email_once(client, idp_browser, sso):
    local = User.objects.create_user("ada", email="Ada@corp.example", password="x" * 12)
    sso.people_set(ada=person("ada", groups=["audit"]))
    sign_in(client, idp_browser, "ada")
    assert Identity.objects.get().user == local
    assert int(client.session["_auth_user_id"]) == local.pk
    assert User.objects.count() == 1


def test_a_superusers_email_is_never_taken_over(client, idp_browser, sso, caplog):
    User.objects.create_superuser("root", email="ada@corp.example", password="x" * 12)
    sso.people_set(ada=person("ada", groups=["audit"]))
    response = sign_in(client, idp_browser, "ada")
    assertRedirects(response, "/accounts/login/", fetch_redirect_response=False)
    assert not Identity.objects.exists()
    assert _events(caplog, "sso_sign_in_denied")[0]["reason"] == "email_of_superuser"


def test_an_unverified_email_does_not_link_an_account(client, idp_browser, sso, caplog):
    User.objects.create_user("ada", email="ada@corp.example")
    sso.people_set(ada=person("ada", groups=["audit"], email_verified=False))
    sign_in(client, idp_browser, "ada")
    assert not Identity.objects.exists()
    assert _events(caplog, "sso_sign_in_denied")[0]["reason"] == "email_unverified"


def test_a_deactivated_user_cannot_sign_in(client, idp_browser, sso, caplog):
    sso.people_set(ada=person("ada", groups=["audit"]))
    sign_in(client, idp_browser, "ada")
    client.post("/accounts/logout/")
    User.objects.filter(username="ada@corp.example").update(is_active=False)
    sign_in(client, idp_browser, "ada")
    assert "_auth_user_id" not in client.session
    assert _events(caplog, "sso_sign_in_denied")[0]["reason"] == "inactive"


def test_a_provider_account_without_email_is_refused(client, idp_browser, sso, caplog):
    sso.people_set(ada=person("ada", groups=["audit"], email=None))
    sign_in(client, idp_browser, "ada")
    assert not User.objects.exists()
    assert _events(caplog, "sso_sign_in_denied")[0]["reason"] == "no_email"


# --- tokens the app must refuse ------------------------------------------------------------


@pytest.mark.parametrize(
    ("quirk", "reason"),
    [
        ("tampered", "id_token_signature"),
        ("wrong_audience", "id_token_audience"),
        ("expired", "id_token_expired"),
    ],
)
def test_a_bad_id_token_is_refused(client, idp_browser, sso, caplog, quirk, reason):
    sso.people_set(mallory=person("mallory", groups=["audit"], quirk=quirk))
    response = sign_in(client, idp_browser, "mallory")
    assertRedirects(response, "/accounts/login/", fetch_redirect_response=False)
    assert "_auth_user_id" not in client.session
    assert not User.objects.exists()
    [denied] = _events(caplog, "sso_sign_in_denied")
    assert denied["reason"] == reason
    assertContains(client.get("/accounts/login/"), "could not be verified")


def test_the_provider_checks_the_pkce_verifier(client, idp_browser, sso, caplog):
    """A stolen code is useless without this session's verifier."""
    sso.people_set(ada=person("ada", groups=["audit"]))
    start = client.get("/accounts/oidc/start/")
    state = parse_qs(urlsplit(start["Location"]).query)["state"][0]
    callback = urlsplit(_provider_sign_in(idp_browser, start["Location"], "ada"))
    session = client.session
    session["oidc_states"][state]["code_verifier"] = "x" * 64
    session.save()
    response = client.get(f"{callback.path}?{callback.query}")
    assertRedirects(response, "/accounts/login/", fetch_redirect_response=False)
    assert "_auth_user_id" not in client.session
    [denied] = _events(caplog, "sso_sign_in_denied")
    assert denied["reason"] == "provider_refused"
    assert "invalid_grant" in denied["detail"]


def test_a_forged_code_is_refused(client, sso, caplog):
    start = client.get("/accounts/oidc/start/")
    state = parse_qs(urlsplit(start["Location"]).query)["state"][0]
    response = client.get(f"/accounts/oidc/callback/?code=forged&state={state}")
    assertRedirects(response, "/accounts/login/", fetch_redirect_response=False)
    assert _events(caplog, "sso_sign_in_denied")[0]["reason"] == "provider_refused"


def test_a_callback_is_used_once(client, idp_browser, sso, caplog):
    sso.people_set(ada=person("ada", groups=["audit"]))
    start = client.get("/accounts/oidc/start/")
    callback = urlsplit(_provider_sign_in(idp_browser, start["Location"], "ada"))
    client.get(f"{callback.path}?{callback.query}")
    client.post("/accounts/logout/")
    replay = client.get(f"{callback.path}?{callback.query}")
    assertRedirects(replay, "/accounts/login/", fetch_redirect_response=False)
    assert "_auth_user_id" not in client.session
    assert _events(caplog, "sso_sign_in_denied")[0]["reason"] in ("not_started", "state_mismatch")


def test_a_callback_from_another_browser_is_refused(client, idp_browser, sso, caplog):
    """Login CSRF: a code and state obtained by someone else, in this idp_browser."""
    sso.people_set(mallory=person("mallory", groups=["audit"]))
    attacker = Client()
    start = attacker.get("/accounts/oidc/start/")
    callback = urlsplit(_provider_sign_in(idp_browser, start["Location"], "mallory"))
    client.get("/accounts/oidc/start/")  # the victim has a sign-in of their own under way
    response = client.get(f"{callback.path}?{callback.query}")
    assertRedirects(response, "/accounts/login/", fetch_redirect_response=False)
    assert "_auth_user_id" not in client.session
    assert _events(caplog, "sso_sign_in_denied")[0]["reason"] == "state_mismatch"


def test_an_error_from_the_provider_is_recorded(client, sso, caplog):
    start = client.get("/accounts/oidc/start/")
    state = parse_qs(urlsplit(start["Location"]).query)["state"][0]
    response = client.get(f"/accounts/oidc/callback/?error=access_denied&state={state}")
    assertRedirects(response, "/accounts/login/", fetch_redirect_response=False)
    [denied] = _events(caplog, "sso_sign_in_denied")
    assert (denied["reason"], denied["detail"]) == ("provider_error", "access_denied")
    assertContains(client.get("/accounts/login/"), "Test IdP did not sign you in")


def test_an_unreachable_provider_says_so(client, settings, sso, caplog):
    settings.OIDC_ISSUER = "http://127.0.0.1:9/o"  # nothing listens on port 9
    response = client.get("/accounts/oidc/start/")
    assertRedirects(response, "/accounts/login/", fetch_redirect_response=False)
    assertContains(client.get("/accounts/login/"), "cannot be reached right now")
    assert _events(caplog, "sso_sign_in_denied")[0]["reason"] == "provider_unavailable"


def test_discovery_is_fetched_once(client, idp_browser, sso):
    requests: list[str] = []

    class Counting(httpx.HTTPTransport):
        def handle_request(self, request):
            requests.append(request.url.path)
            return super().handle_request(request)

    provider_client.provider_reset(transport=Counting())
    sso.people_set(ada=person("ada", groups=["audit"]), bob=person("bob", groups=["audit"]))
    sign_in(client, idp_browser, "ada")
    sign_in(Client(), httpx.Client(), "bob")
    assert requests.count("/o/.well-known/openid-configuration") == 1
    assert requests.count("/o/.well-known/jwks.json") == 1
    assert requests.count("/o/token/") == 2


def test_an_address_locked_out_by_password_guessing_cannot_use_the_provider(
    idp_browser, sso, caplog
):
    client = Client(REMOTE_ADDR="203.0.113.7")
    for n in range(30):  # password spraying: the address is locked (tickets/lockouts.py)
        client.post("/accounts/login/", {"username": f"user{n}", "password": "wrong"})
    sso.people_set(ada=person("ada", groups=["audit"]))
    response = sign_in(client, idp_browser, "ada")
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session
    assert _events(caplog, "sso_sign_in_denied")[0]["reason"] == "locked_out"


# --- logout ------------------------------------------------------------------------------


def test_logout_ends_the_session_here_and_at_the_provider(client, idp_browser, sso):
    sso.people_set(ada=person("ada", groups=["audit"]))
    sign_in(client, idp_browser, "ada")
    id_token = client.session[SESSION_ID_TOKEN]
    response = client.post("/accounts/logout/")
    location = urlsplit(response["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == sso.issuer + "/logout/"
    assert parse_qs(location.query) == {
        "id_token_hint": [id_token],
        "client_id": [CLIENT_ID],
        "post_logout_redirect_uri": ["http://testserver/accounts/login/"],
    }
    assert "_auth_user_id" not in client.session
    # The provider ends its session and sends the idp_browser back to our login page.
    back = idp_browser.get(response["Location"])
    assert back.headers["location"] == "http://testserver/accounts/login/"
    start = client.get("/accounts/oidc/start/")
    assert "/login/" in idp_browser.get(start["Location"]).headers["location"]


def test_an_end_session_endpoint_on_another_origin_is_offered_as_a_link(
    client, idp_browser, sso, settings
):
    """form-action would block a redirect to an origin settings.py did not add."""
    settings.SECURE_CSP = {**settings.SECURE_CSP, "form-action": ["'self'"]}
    sso.people_set(ada=person("ada", groups=["audit"]))
    sign_in(client, idp_browser, "ada")
    response = client.post("/accounts/logout/")
    assert response.status_code == 200
    assertContains(response, f'href="{sso.issuer}/logout/?id_token_hint=')
    assertContains(response, "Sign out of Test IdP too")
    assert "_auth_user_id" not in client.session


def test_a_password_user_logs_out_here_only(client, sso, manager):
    client.force_login(manager)
    assertRedirects(client.post("/accounts/logout/"), "/accounts/login/")


# --- the login page and password sign-in ----------------------------------------------


def test_the_login_page_offers_the_provider_when_configured(client, sso):
    page = client.get("/accounts/login/?next=/audit/")
    assertContains(page, 'href="/accounts/oidc/start/?next=/audit/"')
    assertContains(page, "Sign in with Test IdP")
    assertContains(page, 'name="password"')
    assertNotContains(page, "Administrator sign-in")


def test_the_login_page_is_unchanged_without_single_sign_on(client):
    page = client.get("/accounts/login/")
    assertNotContains(page, "Sign in with")
    assertContains(page, 'name="password"')


def test_without_single_sign_on_its_pages_send_to_the_login_page(client):
    for path in ("/accounts/oidc/start/", "/accounts/oidc/callback/?code=x&state=y"):
        assertRedirects(client.get(path), "/accounts/login/", fetch_redirect_response=False)


@pytest.fixture
def local_login_off(settings, sso):
    backends = settings.AUTHENTICATION_BACKENDS
    index = backends.index("tickets.backends.ModelBackend")
    settings.AUTHENTICATION_BACKENDS = [
        *backends[:index],
        "tickets.sso.backends.BreakGlassBackend",
        *backends[index + 1 :],
    ]
    settings.LOCAL_LOGIN = False


def test_with_local_login_off_only_superusers_use_a_password(client, local_login_off, manager):
    page = client.get("/accounts/login/")
    assertContains(page, "Sign in with Test IdP")
    assertContains(page, "<summary>Administrator sign-in</summary>", html=False)
    response = client.post(
        "/accounts/login/", {"username": "manager", "password": "correct horse battery"}
    )
    assert response.status_code == 200  # the form again, with its error
    assertContains(response, '<details class="break-glass" open>', html=False)
    assert "_auth_user_id" not in client.session
    User.objects.create_superuser("root", password="correct horse battery")
    response = client.post(
        "/accounts/login/", {"username": "root", "password": "correct horse battery"}
    )
    assertRedirects(response, "/tickets/", fetch_redirect_response=False)


def test_with_local_login_off_the_provider_still_signs_in(
    client, idp_browser, local_login_off, sso
):
    sso.people_set(ada=person("ada", groups=["audit"]))
    sign_in(client, idp_browser, "ada")
    assert "_auth_user_id" in client.session
    assert client.get("/tickets/").status_code in (200, 503)


def test_a_password_sign_in_never_asks_the_provider(client, settings, sso, manager):
    settings.OIDC_ISSUER = "http://127.0.0.1:9/o"  # down
    response = client.post(
        "/accounts/login/", {"username": "manager", "password": "correct horse battery"}
    )
    assertRedirects(response, "/tickets/", fetch_redirect_response=False)
