import json

import pytest
from pytest_django.asserts import assertContains, assertNotContains

from tests.util import fail_patches, submitted
from tickets.models import AuditEntry

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("thena")]


def _post_data(client, url, **changes):
    form = client.get(url).context["form"]
    return submitted(form, **changes)


def _patches(sandbox):
    return [r.json for r in sandbox.requests if r.method == "PATCH"]


def test_anonymous_is_sent_to_login(client, url):
    assert client.get(url)["Location"] == f"/accounts/login/?next={url}"
    assert client.post(url)["Location"] == f"/accounts/login/?next={url}"


def test_manager_sees_facts_and_the_full_form(manager_client, url, ticket):
    response = manager_client.get(url)
    assertContains(response, ticket["ticketIdentifier"])
    assertContains(response, 'id="edit-form"')
    for legend in ("Basics", "People", "Dates", "Visibility", "AI-generated", "Advanced"):
        assertContains(response, f"<legend>{legend}</legend>")
    for name in ("title", "statusId", "dueDate", "isPrivate", "metadata", "attachmentUrls"):
        assertContains(response, f'name="{name}"')
    assertContains(response, 'id="history-panel"')


def test_viewer_sees_the_ticket_read_only(viewer_client, url, ticket):
    response = viewer_client.get(url)
    assertContains(response, ticket["title"])
    assertNotContains(response, 'id="edit-form"')
    assertNotContains(response, 'id="history-panel"')
    assertContains(response, "editing needs")


def test_forged_post_without_permission_is_403_sends_nothing_and_is_logged(
    viewer_client, auditor_client, url, sandbox
):
    for client in (viewer_client, auditor_client):
        response = client.post(url, {"title": "Forged"})
        assert response.status_code == 403
    assert _patches(sandbox) == []
    assert list(AuditEntry.objects.values_list("outcome", flat=True)) == ["denied", "denied"]


def test_unknown_ticket_is_404(manager_client):
    assert manager_client.get("/tickets/NOSUCHTICKET/").status_code == 404


def test_thena_down_on_load_shows_a_message_not_a_500(manager_client, url, sandbox):
    sandbox.config.api_key = "rotated"
    response = manager_client.get(url)
    assert response.status_code == 502
    assertContains(response, "API key", status_code=502)


def test_valid_edit_redirects_with_a_message(manager_client, url, sandbox, ticket):
    data = _post_data(manager_client, url, title="Fixed title", isPrivate="on")
    response = manager_client.post(url, data)
    assert response.status_code == 302
    assert response["Location"] == url
    assert _patches(sandbox) == [{"title": "Fixed title", "isPrivate": True}]
    page = manager_client.get(url)
    assertContains(page, "Saved 2 change(s) to Thena.")
    assertContains(page, "Fixed title")
    assertContains(page, "succeeded")


def test_unchanged_submit_says_so_and_sends_nothing(manager_client, url, sandbox):
    response = manager_client.post(url, _post_data(manager_client, url), follow=True)
    assertContains(response, "Nothing changed")
    assert _patches(sandbox) == []


def test_htmx_edit_returns_the_fragment_and_triggers_history_refresh(manager_client, url):
    data = _post_data(manager_client, url, title="Via htmx")
    response = manager_client.post(url, data, headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert "ticket-updated" in json.loads(response["HX-Trigger"])
    assertContains(response, 'id="ticket-main"')
    assertNotContains(response, "<html")
    assertContains(response, "Saved 1 change(s)")


def test_invalid_input_shows_errors_next_to_fields_and_keeps_input(manager_client, url, sandbox):
    data = _post_data(
        manager_client, url, metadata='{"broken": ', dueDate="soon", title="Kept title"
    )
    response = manager_client.post(url, data)
    assert response.status_code == 200
    assertContains(response, 'id="id_metadata_error"')
    assertContains(response, "not valid JSON")
    assertContains(response, 'id="id_dueDate_error"')
    assertContains(response, 'value="Kept title"')
    assertContains(response, "{&quot;broken&quot;: ")
    assert _patches(sandbox) == []


def test_upstream_400_shows_on_the_named_field(manager_client, url):
    data = _post_data(manager_client, url, statusName="Nonexistent")
    response = manager_client.post(url, data)
    assert response.status_code == 200
    assertContains(response, 'id="id_statusName_error"')
    assertContains(response, "Thena says")
    assert AuditEntry.objects.get().outcomes.get().outcome == "failed"


@pytest.mark.parametrize(
    ("status", "words"),
    [
        (401, "API key"),
        (403, "administrator"),
        (404, "could not find"),
        (429, "again"),
        # A gateway error: the edit may have reached Thena ("Thena" alone is on every page).
        (503, "Thena did not confirm this save"),
    ],
)
def test_upstream_errors_are_shown_on_the_form(manager_client, url, sandbox, status, words):
    data = _post_data(manager_client, url, title="Will fail")
    fail_patches(sandbox, status)
    response = manager_client.post(url, data)
    assert response.status_code == 200
    assertContains(response, 'class="error-summary"')
    assertContains(response, words)
    assertContains(response, 'value="Will fail"')
    assert AuditEntry.objects.get().outcomes.exists()


def test_conflict_shows_original_theirs_and_yours(manager_client, url, sandbox, ticket):
    data = _post_data(manager_client, url, title="Mine")
    sandbox.touch_ticket(ticket["id"], title="Theirs")
    response = manager_client.post(url, data)
    assert response.status_code == 200
    assertContains(response, "Someone changed this ticket")
    assertContains(response, ticket["title"])
    assertContains(response, "Theirs")
    assertContains(response, 'name="resolve__title"')
    assert _patches(sandbox) == []

    again = submitted(response.context["form"], resolve__title="yours")
    assert manager_client.post(url, again).status_code == 302
    assert _patches(sandbox) == [{"title": "Mine"}]


def test_history_fragment_for_auditors_only(
    auditor_client, viewer_client, manager_client, url, ticket
):
    manager_client.post(url, _post_data(manager_client, url, title="Logged"))
    response = auditor_client.get(f"{url}history/", headers={"HX-Request": "true"})
    assertContains(response, 'id="history-panel"')
    assertContains(response, "Title")
    assertContains(response, "manager")
    assert viewer_client.get(f"{url}history/").status_code == 403


def test_inline_validation_returns_the_field_with_its_error(manager_client, url):
    data = _post_data(manager_client, url, submitterEmail="not-an-email")
    response = manager_client.post(f"{url}validate/?field=submitterEmail", data)
    assertContains(response, 'id="field-submitterEmail"')
    assertContains(response, "Enter a valid email address.")
    assertNotContains(response, "<form")


def test_inline_validation_makes_no_upstream_request(manager_client, url, sandbox):
    data = _post_data(manager_client, url, title="")
    before = len(sandbox.requests)
    response = manager_client.post(f"{url}validate/?field=title", data)
    assertContains(response, "This field is required.")
    assert len(sandbox.requests) == before


def test_inline_validation_is_for_editors_only(viewer_client, url):
    assert viewer_client.post(f"{url}validate/?field=title", {}).status_code == 403


def test_account_search_keeps_the_current_account(manager_client, sandbox):
    ticket = next(t for t in sandbox.tickets() if t.get("accountId"))
    current = ticket["accountId"]
    response = manager_client.get(
        "/tickets/accounts/", {"q": "zzzz-no-match", "accountId": current}
    )
    assertContains(response, f'value="{current}" selected')
    some = sandbox.ticket(ticket["id"])["account"]
    assertContains(manager_client.get("/tickets/accounts/", {"q": some[:4]}), some)


# What a browser really submits (tests/browser.py), and failure paths that keep the input


def _browser_post(client, url, headers=None, **changes):
    from tests.browser import edit, form_data, to_urlencoded

    data = edit(form_data(client.get(url).content.decode()), **changes)
    return client.post(
        url, to_urlencoded(data), content_type="application/x-www-form-urlencoded", headers=headers
    )


def test_a_local_validation_error_asks_thena_nothing(manager_client, url, sandbox):
    manager_client.get(url)
    before = len(sandbox.requests)
    response = _browser_post(manager_client, url, metadata='{"x": ')
    assertContains(response, "not valid JSON")
    assert len(sandbox.requests) == before + 1  # only the GET of the page itself


@pytest.mark.parametrize("htmx", [False, True])
def test_thena_unreachable_at_submit_keeps_the_form_and_the_input(
    manager_client, url, sandbox, htmx
):
    from tests.browser import edit, form_data, to_urlencoded

    data = edit(form_data(manager_client.get(url).content.decode()), title="Typed while down")
    sandbox.config.api_key = "rotated"  # every call now fails, the re-read first
    response = manager_client.post(
        url,
        to_urlencoded(data),
        content_type="application/x-www-form-urlencoded",
        headers={"HX-Request": "true"} if htmx else None,
    )
    assert response.status_code == 200
    assertContains(response, 'value="Typed while down"')
    assertContains(response, "Nothing was saved.")
    assertContains(response, "API key")
    assert _patches(sandbox) == []
    assert AuditEntry.objects.get().outcome == "failed"


def test_a_tampered_snapshot_shows_the_ticket_again_and_sends_nothing(manager_client, url, sandbox):
    from tests.browser import edit, form_data, to_urlencoded

    data = edit(form_data(manager_client.get(url).content.decode()), title="Forged")
    data = [(n, v + "x" if n == "snapshot" else v) for n, v in data]
    response = manager_client.post(
        url, to_urlencoded(data), content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 400
    assertContains(response, "changed outside the page", status_code=400)
    assert _patches(sandbox) == []


def test_status_and_priority_offer_no_empty_choice_when_set(manager_client, url, ticket):
    form = manager_client.get(url).context["form"]
    for name in ("statusId", "priorityId"):
        assert ticket[name]
        assert "" not in [value for value, _ in form.fields[name].choices]
    assert "" in [value for value, _ in form.fields["typeId"].choices]


def test_an_assignee_and_another_persons_email_are_refused(manager_client, url, sandbox, ticket):
    form = manager_client.get(url).context["form"]
    emails = form.choices.member_emails
    agent, other = [m for m in emails if m != ticket.get("assignedAgentId")][:2]
    response = _browser_post(
        manager_client, url, assignedAgentId=agent, assignedAgentEmail=emails[other]
    )
    assertContains(response, 'id="id_assignedAgentEmail_error"')
    assertContains(response, "not the chosen assignee")
    assert _patches(sandbox) == []
    _browser_post(manager_client, url, assignedAgentId=agent, assignedAgentEmail=emails[agent])
    assert _patches(sandbox) == [{"assignedAgentId": agent, "assignedAgentEmail": emails[agent]}]


def test_the_account_picker_answers_a_whole_select_keeping_the_choice(manager_client, sandbox):
    ticket = next(t for t in sandbox.tickets() if t.get("accountId"))
    response = manager_client.get(
        "/tickets/accounts/", {"q": "a", "accountId": ticket["accountId"]}
    )
    assertContains(response, '<select name="accountId" id="id_accountId"')
    assertContains(response, f'<option value="{ticket["accountId"]}" selected>')


def test_a_lone_surrogate_from_thena_still_renders_the_page(manager_client, url, sandbox, ticket):
    sandbox.put_ticket(ticket["id"], title="half \ud800 a pair", metadata={"a": "\udc00"})
    response = manager_client.get(url)
    assertContains(response, "half \ufffd a pair")
