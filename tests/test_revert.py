"""Reverting an audit entry's change, or one field of it (issue 12): the same path as an
edit (lock, re-read, only the reverted fields sent), the entry's "after" values as what
the page saw, so a field changed since is a three-way conflict before anything is sent.
Everything goes through the real sandbox."""

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from pytest_django.asserts import assertContains, assertNotContains, assertTemplateUsed

from tests.conftest import _client_for, _user
from tests.util import OBJECTS, bound_form, write_audit
from tickets import services
from tickets.audit import RequestMeta, record_attempt
from tickets.models import AuditEntry, TeamScope

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("thena")]

META = RequestMeta(request_id="req-revert", client_ip="192.0.2.9", user_agent="pytest")


@pytest.fixture
def ticket(sandbox):
    """A SUP ticket with a due date (write-only: Thena does not return it)."""
    return next(t for t in sandbox.tickets() if t["teamIdentifier"] == "SUP" and t["dueDate"])


def _edit(user, ticket_id: str, **changes) -> AuditEntry:
    """A real edit through the service, as the ticket page makes it."""
    edit = services.ticket_edit_load(user=User(is_superuser=True), ticket_id=ticket_id)
    form = bound_form(edit, **changes)
    assert form.is_valid(), form.errors
    return services.ticket_update(user=user, edit=edit, form=form, meta=META).entry


def _other_priority(ticket: dict) -> str:
    priorities = services.team_choices_load(ticket["teamId"]).priorities
    return next(value for value, _ in priorities if value != ticket["priorityId"])


def _patches(sandbox) -> list:
    return [r.json for r in sandbox.requests if r.method == "PATCH"]


def _outcome(entry) -> str:
    return AuditEntry.objects.with_current_outcome().get(pk=entry.pk).current_outcome


def _revert(user, entry, **kwargs) -> services.RevertResult:
    return services.ticket_revert(user=user, number=entry.number, meta=META, **kwargs)


@pytest.fixture
def priority(ticket) -> str:
    return _other_priority(ticket)


@pytest.fixture
def edited(manager, sandbox, ticket, priority) -> AuditEntry:
    """The manager changed the ticket's title and priority; Thena has not heard since."""
    entry = _edit(manager, ticket["id"], title="Changed title", priorityId=priority)
    assert _outcome(entry) == "succeeded"
    sandbox.requests.clear()
    return entry


def _url(entry) -> str:
    return f"/audit/{entry.number}/revert/"


# -- the service ---------------------------------------------------------------------------


def test_whole_revert_sends_exactly_the_before_values(manager, sandbox, ticket, edited):
    result = _revert(manager, edited, reason="Wrong ticket")

    assert _patches(sandbox) == [{"title": ticket["title"], "priorityId": ticket["priorityId"]}]
    now = sandbox.ticket(ticket["id"])
    assert (now["title"], now["priorityId"]) == (ticket["title"], ticket["priorityId"])
    assert result.reverted == ["Title", "Priority"]
    new = result.entry
    assert (new.revert_of, new.reason, _outcome(new)) == (edited.id, "Wrong ticket", "succeeded")
    assert new.changes["title"]["before"] == "Changed title"
    assert new.changes["title"]["after"] == ticket["title"]
    assert new.number == edited.number + 1


def test_single_field_revert_sends_only_that_field(manager, sandbox, ticket, edited, priority):
    result = _revert(manager, edited, fields=["priorityId"])

    assert _patches(sandbox) == [{"priorityId": ticket["priorityId"]}]
    now = sandbox.ticket(ticket["id"])
    assert (now["title"], now["priorityId"]) == ("Changed title", ticket["priorityId"])
    assert result.reverted == ["Priority"]
    assert result.entry.revert_of == edited.id
    assert list(result.entry.changes) == ["priorityId"]


def test_a_field_changed_since_shows_three_ways_and_sends_nothing(manager, sandbox, ticket, edited):
    sandbox.touch_ticket(ticket["id"], title="Theirs")
    sandbox.requests.clear()

    with pytest.raises(services.RevertConflict) as caught:
        _revert(manager, edited, reason="Undo")

    assert _patches(sandbox) == []
    conflict = caught.value
    [row] = conflict.rows
    assert (row.name, row.label) == ("title", "Title")
    assert (row.original, row.theirs, row.yours) == ("Changed title", "Theirs", ticket["title"])
    assert conflict.also == ["Priority"]  # unchanged since: reverted with the choice
    recorded = conflict.entry
    assert (recorded.outcome, recorded.revert_of, recorded.reason) == (
        "conflict",
        edited.id,
        "Undo",
    )
    assert sandbox.ticket(ticket["id"])["title"] == "Theirs"


@pytest.mark.parametrize(
    ("choice", "title"),
    [("yours", None), ("theirs", "Theirs"), ("original", "Changed title")],
)
def test_the_choice_after_a_conflict_decides_what_is_sent(
    choice, title, manager, sandbox, ticket, edited
):
    sandbox.touch_ticket(ticket["id"], title="Theirs")
    with pytest.raises(services.RevertConflict) as caught:
        _revert(manager, edited)
    sandbox.requests.clear()

    result = _revert(manager, edited, token=caught.value.token, choices={"title": choice})

    title = ticket["title"] if title is None else title
    expected = {"priorityId": ticket["priorityId"]}
    if choice != "theirs":
        expected = {"title": title, **expected}
    assert _patches(sandbox) == [expected]
    assert sandbox.ticket(ticket["id"])["title"] == title
    assert result.entry.revert_of == edited.id
    assert _outcome(result.entry) == "succeeded"


def test_keeping_theirs_for_the_only_field_sends_nothing(manager, sandbox, ticket, edited):
    sandbox.touch_ticket(ticket["id"], title="Theirs")
    with pytest.raises(services.RevertConflict) as caught:
        _revert(manager, edited, fields=["title"])
    sandbox.requests.clear()
    entries = AuditEntry.objects.count()

    result = _revert(
        manager, edited, fields=["title"], token=caught.value.token, choices={"title": "theirs"}
    )

    assert result.entry is None
    assert _patches(sandbox) == []
    assert AuditEntry.objects.count() == entries


def test_a_confirmation_that_meets_another_change_asks_again(manager, sandbox, ticket, edited):
    sandbox.touch_ticket(ticket["id"], title="Theirs")
    with pytest.raises(services.RevertConflict) as first:
        _revert(manager, edited, fields=["title"])
    sandbox.touch_ticket(ticket["id"], title="Theirs again")
    sandbox.requests.clear()

    with pytest.raises(services.RevertConflict) as second:
        _revert(
            manager,
            edited,
            fields=["title"],
            token=first.value.token,
            choices={"title": "original"},
        )

    assert _patches(sandbox) == []
    [row] = second.value.rows
    assert (row.theirs, row.choice) == ("Theirs again", "original")


def test_a_token_from_elsewhere_is_refused(manager, sandbox, ticket, edited):
    sandbox.touch_ticket(ticket["id"], title="Theirs")
    with pytest.raises(services.RevertConflict) as caught:
        _revert(manager, edited, fields=["title"])
    sandbox.requests.clear()
    for token, fields in ((caught.value.token, None), ("forged", ["title"])):
        with pytest.raises(services.RevertRefused):
            _revert(manager, edited, fields=fields, token=token, choices={"title": "yours"})
    assert _patches(sandbox) == []


def test_a_field_thena_already_holds_as_before_is_not_sent(manager, sandbox, ticket, edited):
    sandbox.touch_ticket(ticket["id"], title=ticket["title"])  # someone put it back by hand
    sandbox.requests.clear()

    result = _revert(manager, edited)

    assert _patches(sandbox) == [{"priorityId": ticket["priorityId"]}]
    assert (result.reverted, result.held) == (["Priority"], ["Title"])
    assert result.kept_upstream == []


def test_a_revert_can_be_reverted(manager, sandbox, ticket, edited):
    undo = _revert(manager, edited).entry
    sandbox.requests.clear()

    redo = _revert(manager, undo, fields=["title"]).entry

    assert _patches(sandbox) == [{"title": "Changed title"}]
    assert redo.revert_of == undo.id


# -- what cannot be reverted ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "settle", "words"),
    [
        ("pending", [], "not known yet"),
        ("pending", ["unknown"], "not known yet"),
        ("pending", ["failed"], "not applied"),
        ("conflict", [], "Nothing was sent"),
        ("denied", [], "refused"),
    ],
)
def test_only_succeeded_edits_can_be_reverted(
    outcome, settle, words, manager, manager_client, sandbox, ticket
):
    changes = {"title": {"before": ticket["title"], "after": "Never applied"}}
    entry = write_audit(manager, ticket, changes, meta=META, outcome=outcome, settle=settle)
    count = AuditEntry.objects.count()

    with pytest.raises(services.RevertRefused, match=words):
        _revert(manager, entry)
    response = manager_client.post(_url(entry), {"field": "all"})

    assert response.status_code == 400
    assertContains(response, words, status_code=400)
    assert _patches(sandbox) == []
    assert AuditEntry.objects.count() == count
    page = manager_client.get(f"/audit/{entry.number}/")
    assertContains(page, words)
    assertNotContains(page, "Revert this change")


def test_an_entry_that_is_no_ticket_edit_offers_no_revert(manager, manager_client, sandbox):
    entry = record_attempt(
        action="audit.export",
        actor=manager,
        ticket=None,
        changes={},
        request_body={},
        outcome="succeeded",
        meta=META,
    )
    with pytest.raises(services.RevertRefused):
        _revert(manager, entry)
    assertNotContains(manager_client.get(f"/audit/{entry.number}/"), 'id="revert"')
    assert manager_client.post(_url(entry), {"field": "all"}).status_code == 400
    assert _patches(sandbox) == []


def test_a_write_only_field_cannot_be_reverted_and_says_why(
    manager, manager_client, sandbox, ticket
):
    entry = _edit(manager, ticket["id"], title="Changed title", dueDate="2026-12-24T09:30")
    assert "before" not in entry.changes["dueDate"]
    sandbox.requests.clear()

    page = manager_client.get(f"/audit/{entry.number}/")
    assertContains(page, services.REVERT_WRITE_ONLY)
    assertContains(page, 'name="field" value="title"')
    assertNotContains(page, 'name="field" value="dueDate"')
    with pytest.raises(services.RevertRefused, match="Due date"):
        _revert(manager, entry, fields=["dueDate"])
    assert _patches(sandbox) == []

    result = _revert(manager, entry)  # the whole change: what can be reverted

    assert _patches(sandbox) == [{"title": ticket["title"]}]
    assert result.reverted == ["Title"]


def test_a_field_the_entry_did_not_change_is_refused(manager, sandbox, edited):
    with pytest.raises(services.RevertRefused, match="did not change"):
        _revert(manager, edited, fields=["description"])
    assert _patches(sandbox) == []


# -- who may revert ------------------------------------------------------------------------


def test_anonymous_users_are_sent_to_login(client, edited):
    response = client.post(_url(edited), {"field": "all"})
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_the_revert_url_only_answers_post(manager_client, edited):
    assert manager_client.get(_url(edited)).status_code == 405


def test_viewers_cannot_revert(viewer_client, sandbox, edited):
    count = AuditEntry.objects.count()
    assert viewer_client.post(_url(edited), {"field": "all"}).status_code == 403
    assert _patches(sandbox) == []
    assert AuditEntry.objects.count() == count


def test_auditors_see_no_revert_and_a_forged_one_is_denied_and_logged(
    auditor, auditor_client, sandbox, edited
):
    assertNotContains(auditor_client.get(f"/audit/{edited.number}/"), "Revert this change")
    with pytest.raises(PermissionDenied):
        _revert(auditor, edited)

    response = auditor_client.post(_url(edited), {"field": "all", "reason": "x"})

    assert response.status_code == 403
    assert _patches(sandbox) == []
    denied = AuditEntry.objects.filter(actor_username="auditor")
    assert {(e.outcome, e.ticket_id) for e in denied} == {("denied", edited.ticket_id)}


def _team(sandbox, identifier: str) -> dict:
    return next(t for t in sandbox.teams() if t["identifier"] == identifier)


def test_a_manager_of_another_team_gets_404(django_user_model, sandbox, edited):
    user = _user(django_user_model, "bil-manager", "Support managers")
    TeamScope.objects.create(user=user, team_ids=[_team(sandbox, "BIL")["id"]])
    count = AuditEntry.objects.count()

    assert _client_for(user).post(_url(edited), {"field": "all"}).status_code == 404
    with pytest.raises(AuditEntry.DoesNotExist):
        _revert(user, edited)
    assert _patches(sandbox) == []
    assert AuditEntry.objects.count() == count


def test_a_ticket_moved_out_of_the_users_teams_is_not_reverted(
    django_user_model, sandbox, ticket, edited
):
    user = _user(django_user_model, "sup-manager", "Support managers")
    TeamScope.objects.create(user=user, team_ids=[ticket["teamId"]])
    sandbox.put_ticket(ticket["id"], teamId=_team(sandbox, "BIL")["id"])

    response = _client_for(user).post(_url(edited), {"field": "all", "reason": "Undo"})

    assert response.status_code == 404
    assertContains(response, "not in your teams now", status_code=404)
    assert _patches(sandbox) == []


# -- custom fields -------------------------------------------------------------------------


def _text_fields(thena, ticket: dict) -> list[str]:
    return [
        d["uid"] for d in thena.custom_fields(ticket["teamId"]) if d["fieldType"] == "single_line"
    ]


@pytest.fixture
def cf_ticket(sandbox, thena) -> dict:
    return next(
        t
        for t in sandbox.tickets()
        if len(t["customFieldValues"]) > 1
        and t["customFieldValues"][0]["customFieldId"] in _text_fields(thena, t)
    )


@pytest.mark.parametrize("sandbox_config", [OBJECTS], indirect=True)
def test_a_custom_field_revert_rewrites_only_its_item(manager, manager_client, sandbox, cf_ticket):
    first, second, *others = cf_ticket["customFieldValues"]
    name = "cf__" + first["customFieldId"]
    entry = _edit(manager, cf_ticket["id"], **{name: "ORD-1"})
    # Meanwhile someone removes another custom field's value in Thena.
    edited = {**first, "data": [{"value": "ORD-1"}]}
    sandbox.touch_ticket(cf_ticket["id"], customFieldValues=[edited, *others])
    sandbox.requests.clear()
    page = manager_client.get(f"/audit/{entry.number}/")
    assertContains(page, f'name="field" value="{name}"')

    result = _revert(manager, entry, fields=[name])

    assert _patches(sandbox) == [{"customFieldValues": [first, *others]}]
    assert sandbox.ticket(cf_ticket["id"])["customFieldValues"] == [first, *others]
    assert second not in sandbox.ticket(cf_ticket["id"])["customFieldValues"]
    assert result.entry.revert_of == entry.id
    assert _outcome(result.entry) == "succeeded"


@pytest.mark.parametrize("sandbox_config", [OBJECTS], indirect=True)
def test_a_custom_field_changed_since_is_a_conflict(manager, sandbox, cf_ticket):
    first = cf_ticket["customFieldValues"][0]
    name = "cf__" + first["customFieldId"]
    entry = _edit(manager, cf_ticket["id"], **{name: "ORD-1"})
    items = sandbox.ticket(cf_ticket["id"])["customFieldValues"]
    items[0] = {**items[0], "data": [{"value": "ORD-2"}]}
    sandbox.touch_ticket(cf_ticket["id"], customFieldValues=items)
    sandbox.requests.clear()

    with pytest.raises(services.RevertConflict) as caught:
        _revert(manager, entry)

    [row] = caught.value.rows
    assert (row.name, row.original, row.theirs, row.yours) == (
        name,
        [{"value": "ORD-1"}],
        [{"value": "ORD-2"}],
        first["data"],
    )
    assert _patches(sandbox) == []


@pytest.mark.parametrize("sandbox_config", [OBJECTS], indirect=True)
def test_custom_fields_that_are_not_exact_now_are_not_reverted(manager, sandbox, cf_ticket):
    first = cf_ticket["customFieldValues"][0]
    name = "cf__" + first["customFieldId"]
    entry = _edit(manager, cf_ticket["id"], **{name: "ORD-1"})
    sandbox.put_ticket(cf_ticket["id"], customFieldValues=["opaque"])
    sandbox.requests.clear()

    with pytest.raises(services.RevertRefused, match="cannot be written back exactly"):
        _revert(manager, entry, fields=[name])
    assert _patches(sandbox) == []
    assert sandbox.ticket(cf_ticket["id"])["customFieldValues"] == ["opaque"]


# -- a reason ------------------------------------------------------------------------------


def test_a_required_reason_is_enforced(settings, manager, manager_client, sandbox, edited):
    settings.THENA_REQUIRE_REASON = True
    page = manager_client.get(f"/audit/{edited.number}/")
    assertContains(page, "(required)")

    response = manager_client.post(_url(edited), {"field": "title", "reason": "  "})

    assert response.status_code == 200
    assertContains(response, "Give a reason for this change.")
    with pytest.raises(services.RevertRefused, match="reason"):
        _revert(manager, edited, fields=["title"])
    assert _patches(sandbox) == []

    response = manager_client.post(_url(edited), {"field": "title", "reason": "Customer asked"})

    assert response.status_code == 302
    assert AuditEntry.objects.get(revert_of=edited.id).reason == "Customer asked"


def test_no_reason_is_needed_by_default(manager_client, sandbox, ticket, edited):
    response = manager_client.post(_url(edited), {"field": "title"})
    assert response.status_code == 302
    assert _patches(sandbox) == [{"title": ticket["title"]}]
    assert AuditEntry.objects.get(revert_of=edited.id).reason is None


# -- the pages -----------------------------------------------------------------------------


def test_the_entry_page_offers_a_revert_to_editors(manager_client, edited):
    page = manager_client.get(f"/audit/{edited.number}/")
    assertContains(page, f'action="/audit/{edited.number}/revert/"')
    assertContains(page, "Reason for this change")
    assertContains(page, 'name="field" value="all"')
    assertContains(page, 'name="field" value="title"')
    assertContains(page, 'name="field" value="priorityId"')
    assertContains(page, 'aria-label="Revert this field: Priority"')


def test_a_revert_redirects_to_the_ticket_with_a_link_to_the_new_entry(
    manager_client, sandbox, ticket, edited
):
    response = manager_client.post(_url(edited), {"field": "priorityId", "reason": "Oops"})

    new = AuditEntry.objects.get(revert_of=edited.id)
    assert response.status_code == 302
    assert response["Location"] == f"/tickets/{ticket['id']}/"
    page = manager_client.get(response["Location"])
    assertContains(
        page,
        f"Reverted Priority on {ticket['ticketIdentifier']} to before entry #{edited.number}; "
        f'<a href="/audit/{new.number}/">entry #{new.number}</a>.',
        html=False,
    )
    assert _patches(sandbox) == [{"priorityId": ticket["priorityId"]}]


def test_a_conflict_page_lets_the_user_choose_then_confirm(manager_client, sandbox, ticket, edited):
    sandbox.touch_ticket(ticket["id"], title="Theirs")
    sandbox.requests.clear()

    page = manager_client.post(_url(edited), {"field": "all", "reason": "Undo it"})

    assert page.status_code == 200
    assertTemplateUsed(page, "audit/audit_revert.html")
    assertContains(page, "Changed in Thena since entry")
    for value in ("Changed title", "Theirs", ticket["title"], "Undo it", "Priority"):
        assertContains(page, value)
    assertContains(page, 'name="resolve__title" value="yours"')
    assert _patches(sandbox) == []
    form = page.context["form"]

    response = manager_client.post(
        _url(edited),
        {
            "field": "all",
            "reason": "Undo it",
            "token": form["token"].value(),
            "resolve__title": "theirs",
        },
    )

    assert response.status_code == 302
    assert _patches(sandbox) == [{"priorityId": ticket["priorityId"]}]
    new = AuditEntry.objects.filter(revert_of=edited.id).with_current_outcome().newest_first()[0]
    assert (new.current_outcome, new.reason) == ("succeeded", "Undo it")


def test_a_failed_revert_shows_why_and_keeps_the_reason(manager_client, sandbox, ticket, edited):
    sandbox.fail_next(status=500, only="PATCH")

    response = manager_client.post(_url(edited), {"field": "title", "reason": "Keep me"})

    assert response.status_code == 200
    assertContains(response, 'value="Keep me"')
    assertContains(response, "Nothing was reverted.")
    assert _patches(sandbox) == [{"title": ticket["title"]}]  # sent once, not applied
    assert sandbox.ticket(ticket["id"])["title"] == "Changed title"
    new = AuditEntry.objects.filter(revert_of=edited.id).with_current_outcome().get()
    assert (new.current_outcome, new.reason) == ("failed", "Keep me")


def test_a_thena_refusal_shows_why_and_keeps_the_reason(manager_client, sandbox, edited):
    sandbox.fail_next(status=400, only="PATCH")

    response = manager_client.post(_url(edited), {"field": "title", "reason": "Keep me"})

    assert response.status_code == 200
    assertContains(response, "Nothing was reverted.")
    assertContains(response, 'value="Keep me"')
    new = AuditEntry.objects.filter(revert_of=edited.id).with_current_outcome().get()
    assert new.current_outcome == "failed"
