"""The reason for a change: typed on the edit form, kept in the audit entry, never sent
to Thena, and required for every change when THENA_REQUIRE_REASON is on."""

import pytest
from pytest_django.asserts import assertContains, assertNotContains

from tests.browser import edit, form_data, to_urlencoded
from tests.util import fail_patches, submitted
from tickets.models import AuditEntry

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("thena")]

REASON = "Customer asked on the call.\r\nSee the thread of 3 March."


def _patches(sandbox) -> list[dict]:
    return [r.json for r in sandbox.requests if r.method == "PATCH"]


def _data(client, url, **changes):
    return submitted(client.get(url).context["form"], **changes)


def _browser_post(client, url, headers=None, **changes):
    """What Chromium submits: the page's own inputs, CR LF line breaks and all."""
    data = edit(form_data(client.get(url).content.decode()), **changes)
    return client.post(
        url, to_urlencoded(data), content_type="application/x-www-form-urlencoded", headers=headers
    )


@pytest.fixture
def required(settings):
    settings.THENA_REQUIRE_REASON = True


def test_the_form_asks_for_a_reason_above_the_save_button(manager_client, url):
    page = manager_client.get(url).content.decode()

    assert 'name="reason"' in page
    assert "Reason for this change" in page
    assert "never sent to Thena" in page
    assert 'maxlength="1000"' in page
    assert page.index('name="reason"') < page.index("Save to Thena")
    # It is no ticket field: not in any of the form's groups of Thena fields.
    assert page.index('name="reason"') > page.rindex("</fieldset>")


def test_a_reason_is_stored_with_the_change_and_never_sent_to_thena(manager_client, url, sandbox):
    response = _browser_post(manager_client, url, title="Printer fixed", reason=REASON)

    assert response.status_code == 302
    assert _patches(sandbox) == [{"title": "Printer fixed"}]
    for request in sandbox.requests:
        assert "reason" not in (request.json or {})
        assert "Customer asked" not in str(request.json)
    entry = AuditEntry.objects.get()
    assert entry.reason == "Customer asked on the call.\nSee the thread of 3 March."
    assert "reason" not in entry.changes and "reason" not in entry.request_body


def test_a_reason_alone_changes_nothing(manager_client, url, sandbox):
    response = manager_client.post(url, _data(manager_client, url, reason="Just looking"))

    assert response.status_code == 302
    assertContains(manager_client.get(url), "Nothing changed")
    assert _patches(sandbox) == []
    assert not AuditEntry.objects.exists()


def test_the_reason_is_never_an_edited_input(manager_client, url):
    form = manager_client.get(url).context["form"]
    bound = type(form)(
        submitted(form, reason="Why not"),
        ticket=form.ticket,
        choices=form.choices,
        snapshot=form.snapshot,
    )

    assert bound.is_valid()
    assert bound.edited_inputs == []
    assert bound.edits() == {}
    assert "reason" not in form.snapshot.inputs


def test_without_the_setting_a_change_needs_no_reason(manager_client, url, sandbox):
    response = manager_client.post(url, _data(manager_client, url, title="No reason given"))

    assert response.status_code == 302
    assert AuditEntry.objects.get().reason is None


@pytest.mark.usefixtures("required")
@pytest.mark.parametrize("htmx", [False, True])
def test_required_reason_refuses_a_change_without_one_and_keeps_the_input(
    manager_client, url, sandbox, htmx
):
    headers = {"HX-Request": "true"} if htmx else None
    response = _browser_post(
        manager_client, url, headers, title="Typed before the error", reason="   "
    )

    assert response.status_code == 200
    assertContains(response, 'id="id_reason_error"')
    assertContains(response, "Give a reason for this change.")
    assertContains(response, "Required. Kept in the audit log")
    assertContains(response, 'value="Typed before the error"')
    assert _patches(sandbox) == []
    assert not AuditEntry.objects.exists()

    again = submitted(response.context["form"], reason="Now with a reason")
    assert manager_client.post(url, again, headers=headers).status_code in (200, 302)
    assert _patches(sandbox) == [{"title": "Typed before the error"}]
    assert AuditEntry.objects.get().reason == "Now with a reason"


@pytest.mark.usefixtures("required")
def test_required_reason_still_lets_an_untouched_form_say_nothing_changed(
    manager_client, url, sandbox
):
    response = manager_client.post(url, _data(manager_client, url), follow=True)

    assertContains(response, "Nothing changed")
    assertNotContains(response, "Give a reason")
    assert _patches(sandbox) == []


def test_an_overlong_reason_is_refused_and_kept(manager_client, url, sandbox):
    long = "why " * 300
    response = manager_client.post(url, _data(manager_client, url, title="X", reason=long))

    assert response.status_code == 200
    assertContains(response, "at most 1000 characters")
    assertContains(response, long.strip())
    assert _patches(sandbox) == []


@pytest.mark.parametrize("failure", [500, "timeout"])
def test_the_reason_is_kept_and_logged_when_the_save_fails(manager_client, url, sandbox, failure):
    data = _data(manager_client, url, title="Will fail", reason="Escalated by the customer")
    fail_patches(sandbox, failure)
    response = manager_client.post(url, data)

    assert response.status_code == 200
    assertContains(response, 'class="error-summary"')
    assertContains(response, "Escalated by the customer</textarea>")
    assert AuditEntry.objects.get().reason == "Escalated by the customer"


def test_the_reason_survives_a_conflict(manager_client, url, sandbox, ticket):
    data = _data(manager_client, url, title="Mine", reason="Agreed with the account owner")
    sandbox.touch_ticket(ticket["id"], title="Theirs")
    response = manager_client.post(url, data)

    assertContains(response, "Someone changed this ticket")
    assertContains(response, "Agreed with the account owner</textarea>")
    conflict = AuditEntry.objects.get()
    assert (conflict.outcome, conflict.reason) == ("conflict", "Agreed with the account owner")

    again = submitted(response.context["form"], resolve__title="yours")
    assert manager_client.post(url, again).status_code == 302
    assert _patches(sandbox) == [{"title": "Mine"}]
    assert AuditEntry.objects.latest("id").reason == "Agreed with the account owner"
