import httpx
import pytest
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.core.management import call_command

from tests.util import bound_form, fail_patches
from tickets import services
from tickets.audit import RequestMeta
from tickets.forms import TicketUpdateForm
from tickets.models import AuditEntry
from tickets.thena.client import SANDBOX_BASE_URL, ThenaClient, sandbox_transport, set_client
from tickets.thena.errors import (
    ThenaAuthError,
    ThenaError,
    ThenaNotFound,
    ThenaRateLimited,
    ThenaValidationError,
)
from tickets.thena.sandbox import DEMO_API_KEY

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("thena")]

META = RequestMeta(request_id="req-1", client_ip="192.0.2.7", user_agent="pytest")


@pytest.fixture
def ticket(sandbox):
    return next(t for t in sandbox.tickets() if t["teamIdentifier"] == "SUP")


def _edit(ticket_id):
    return services.ticket_edit_load(user=User(is_superuser=True), ticket_id=ticket_id)


def _form(edit, **changes) -> TicketUpdateForm:
    form = bound_form(edit, **changes)
    assert form.is_valid(), form.errors
    return form


def _update(user, ticket_id, **changes):
    edit = _edit(ticket_id)
    return services.ticket_update(user=user, edit=edit, form=_form(edit, **changes), meta=META)


def _patches(sandbox) -> list:
    return [r for r in sandbox.requests if r.method == "PATCH"]


def _outcome(entry) -> str:
    return AuditEntry.objects.with_current_outcome().get(pk=entry.pk).current_outcome


def test_update_sends_only_changed_fields_and_records_the_outcome(manager, sandbox, ticket):
    result = _update(manager, ticket["id"], title="Shorter title", isPrivate="on")

    assert [p.json for p in _patches(sandbox)] == [{"title": "Shorter title", "isPrivate": True}]
    assert sandbox.ticket(ticket["id"])["title"] == "Shorter title"
    entry = result.entry
    assert _outcome(entry) == "succeeded"
    assert entry.request_body == {"title": "Shorter title", "isPrivate": True}
    assert entry.changes["title"] == {"before": ticket["title"], "after": "Shorter title"}
    assert entry.actor_username == "manager"
    assert entry.ticket_identifier == ticket["ticketIdentifier"]
    assert (entry.request_id, entry.client_ip, entry.user_agent) == ("req-1", "192.0.2.7", "pytest")
    settled = entry.outcomes.get()
    assert settled.status_code == 200
    assert settled.upstream_updated_at == result.ticket["updatedAt"]


def test_update_records_the_intent_before_the_patch_leaves(manager, sandbox, ticket):
    seen = []

    def spy(request: httpx.Request):
        if request.method == "PATCH":
            seen.extend(
                AuditEntry.objects.with_current_outcome().values_list("current_outcome", flat=True)
            )
        return None

    client = ThenaClient(SANDBOX_BASE_URL, DEMO_API_KEY, transport=_Spy(sandbox, spy))
    set_client(client)
    _update(manager, ticket["id"], title="Intent first")
    assert seen == ["pending"]


def test_nothing_changed_sends_nothing_and_logs_nothing(manager, sandbox, ticket):
    result = _update(manager, ticket["id"])
    assert result.nothing_changed
    assert _patches(sandbox) == []
    assert not AuditEntry.objects.exists()


def test_user_without_permission_is_denied_and_logged(viewer, sandbox, ticket):
    with pytest.raises(PermissionDenied):
        _update(viewer, ticket["id"], title="Sneaky")
    assert _patches(sandbox) == []
    entry = AuditEntry.objects.get()
    assert (entry.outcome, entry.actor_username) == ("denied", "viewer")


def test_upstream_change_to_the_same_field_is_a_conflict(manager, sandbox, ticket):
    edit = _edit(ticket["id"])
    form = _form(edit, title="Mine")
    sandbox.touch_ticket(ticket["id"], title="Theirs")

    with pytest.raises(services.Conflict) as caught:
        services.ticket_update(user=manager, edit=edit, form=form, meta=META)

    assert _patches(sandbox) == []
    [field] = caught.value.fields
    assert (field.name, field.original, field.theirs, field.yours) == (
        "title",
        ticket["title"],
        "Theirs",
        "Mine",
    )
    assert caught.value.fresh["title"] == "Theirs"
    assert _outcome(caught.value.entry) == "conflict"


def test_upstream_change_to_other_fields_is_kept_and_reported(manager, sandbox, ticket):
    edit = _edit(ticket["id"])
    form = _form(edit, title="Mine")
    sandbox.touch_ticket(ticket["id"], description="Their new description")

    result = services.ticket_update(user=manager, edit=edit, form=form, meta=META)

    assert [p.json for p in _patches(sandbox)] == [{"title": "Mine"}]
    assert result.kept_upstream == ["Description"]
    assert sandbox.ticket(ticket["id"])["description"] == "Their new description"


def test_both_sides_making_the_same_change_is_no_conflict(manager, sandbox, ticket):
    edit = _edit(ticket["id"])
    form = _form(edit, title="Same")
    sandbox.touch_ticket(ticket["id"], title="Same")
    result = services.ticket_update(user=manager, edit=edit, form=form, meta=META)
    assert result.nothing_changed
    assert _patches(sandbox) == []


def _resolve(manager, form, conflict, **choices):
    """Save again after a conflict, choosing per clashing field."""
    edit = services.TicketEdit(ticket=conflict.fresh, choices=form.choices)
    originals = {field.name: field.original for field in conflict.fields}
    again = TicketUpdateForm.after_conflict(form, conflict.fresh, originals)
    data = again.data.copy()
    data.update({f"resolve__{name}": choice for name, choice in choices.items()})
    again = TicketUpdateForm(
        data, ticket=edit.ticket, choices=edit.choices, snapshot=again.snapshot
    )
    assert again.is_valid(), again.errors
    return services.ticket_update(user=manager, edit=edit, form=again, meta=META)


@pytest.mark.parametrize(
    ("choice", "title"), [("yours", "Mine"), ("theirs", "Theirs"), ("original", None)]
)
def test_resolving_a_conflict_sends_the_choice_and_never_their_other_changes(
    manager, sandbox, ticket, choice, title
):
    edit = _edit(ticket["id"])
    form = _form(edit, title="Mine", description="My description")
    other = next(v for v, _ in edit.choices.members if v != ticket.get("assignedAgentId"))
    sandbox.touch_ticket(ticket["id"], title="Theirs", assignedAgentId=other, isPrivate=True)
    with pytest.raises(services.Conflict) as caught:
        services.ticket_update(user=manager, edit=edit, form=form, meta=META)
    assert [f.name for f in caught.value.fields] == ["title"]

    _resolve(manager, form, caught.value, title=choice)

    expected = {"description": "My description"}
    if choice != "theirs":
        expected["title"] = title or ticket["title"]
    assert _patches(sandbox)[-1].json == expected
    saved = sandbox.ticket(ticket["id"])
    assert saved["title"] == (title or ticket["title"])
    assert (saved["assignedAgentId"], saved["isPrivate"]) == (other, True)  # theirs, kept


def test_upstream_validation_error_is_recorded_as_failed(manager, sandbox, ticket):
    with pytest.raises(ThenaValidationError) as caught:
        _update(manager, ticket["id"], statusName="No such status")
    assert "statusName" in caught.value.field_errors
    entry = AuditEntry.objects.get()
    settled = entry.outcomes.get()
    assert (settled.outcome, settled.status_code) == ("failed", 400)
    assert "statusName" in settled.message


@pytest.mark.parametrize(
    ("status", "error", "outcome"),
    [
        (401, ThenaAuthError, "failed"),
        (403, ThenaAuthError, "failed"),
        (404, ThenaNotFound, "failed"),
        # A 5xx may have applied the change: the read-back shows it did not.
        (500, ThenaError, "failed"),
    ],
)
def test_upstream_failures_are_recorded(manager, sandbox, ticket, status, error, outcome):
    edit = _edit(ticket["id"])
    form = _form(edit, title="Doomed")
    fail_patches(sandbox, status)
    with pytest.raises(error) as caught:
        services.ticket_update(user=manager, edit=edit, form=form, meta=META)
    assert caught.value.user_message
    settled = AuditEntry.objects.get().outcomes.get()
    assert (settled.outcome, settled.status_code) == (outcome, status)


def test_rate_limited_edit_is_failed_and_says_when_to_retry(manager, sandbox, ticket, thena):
    edit = _edit(ticket["id"])
    form = _form(edit, title="Later")
    sandbox.config.rate_limit = len(sandbox.requests) + 1  # the re-read fits, the PATCH not
    sandbox.config.rate_window_seconds = 3600
    with pytest.raises(ThenaRateLimited) as caught:
        services.ticket_update(user=manager, edit=edit, form=form, meta=META)
    assert "try again" in caught.value.user_message.lower()
    assert AuditEntry.objects.get().outcomes.get().outcome == "failed"


def test_timeout_after_sending_records_unknown(manager, sandbox, ticket):
    edit = _edit(ticket["id"])
    form = _form(edit, title="Maybe")
    fail_patches(sandbox, "timeout")
    with pytest.raises(services.OutcomeUnknown) as caught:
        services.ticket_update(user=manager, edit=edit, form=form, meta=META)
    assert "may still arrive" in caught.value.reason
    assert AuditEntry.objects.get().outcomes.get().outcome == "unknown"


def test_refused_connection_records_failed(manager, sandbox, ticket):
    edit = _edit(ticket["id"])
    form = _form(edit, title="Never sent")
    fail_patches(sandbox, "refused")
    with pytest.raises(ThenaError) as caught:
        services.ticket_update(user=manager, edit=edit, form=form, meta=META)
    assert not caught.value.outcome_unknown
    assert AuditEntry.objects.get().outcomes.get().outcome == "failed"


def test_failed_re_read_is_recorded_and_nothing_sent(manager, sandbox, ticket):
    edit = _edit(ticket["id"])
    form = _form(edit, title="Nope")
    sandbox.config.api_key = "rotated"
    with pytest.raises(ThenaAuthError):
        services.ticket_update(user=manager, edit=edit, form=form, meta=META)
    assert _patches(sandbox) == []
    entry = AuditEntry.objects.get()
    assert entry.outcome == "failed"
    assert "re-read" in entry.message


def test_reconcile_settles_unknown_edits_by_reading_back(manager, sandbox, ticket):
    edit = _edit(ticket["id"])
    fail_patches(sandbox, "timeout-after-apply")
    # The read-back right away shows the change: settled without waiting for reconcile.
    result = services.ticket_update(
        user=manager, edit=edit, form=_form(edit, title="Applied"), meta=META
    )
    assert "Reading the ticket back shows the change" in result.entry.outcomes.get().message
    lost = _edit(ticket["id"])
    fail_patches(sandbox, "timeout")
    with pytest.raises(services.OutcomeUnknown):
        services.ticket_update(user=manager, edit=lost, form=_form(lost, source="fax"), meta=META)
    set_client(None)
    set_client(ThenaClient(SANDBOX_BASE_URL, DEMO_API_KEY, transport=sandbox_transport(sandbox)))

    call_command("reconcile_audit", "--min-age-seconds", "0")

    outcomes = AuditEntry.objects.with_current_outcome().order_by("id")
    assert list(outcomes.values_list("current_outcome", flat=True)) == ["succeeded", "failed"]


def test_ticket_history_lists_newest_first_with_labels(manager, sandbox, ticket):
    _update(manager, ticket["id"], title="One")
    _update(manager, ticket["id"], isPrivate="on")
    history = services.ticket_history_list(user=manager, ticket_id=ticket["id"])
    assert [item.fields for item in history] == [["Private"], ["Title"]]
    assert {item.outcome for item in history} == {"succeeded"}


def test_warm_edit_page_costs_one_upstream_request(sandbox, ticket):
    _edit(ticket["id"])
    before = len(sandbox.requests)
    _edit(ticket["id"])
    assert [(r.method, r.path) for r in sandbox.requests[before:]] == [
        ("GET", f"/v1/tickets/{ticket['id']}")
    ]


class _Spy(httpx.BaseTransport):
    """The sandbox, with a look at each request before it is answered."""

    def __init__(self, sandbox, look):
        self.inner = sandbox_transport(sandbox)
        self.look = look

    def handle_request(self, request):
        self.look(request)
        return self.inner.handle_request(request)


def test_an_unticked_box_stays_unticked_through_a_conflict(manager, sandbox, ticket):
    sandbox.touch_ticket(ticket["id"], isPrivate=True)
    edit = _edit(ticket["id"])
    form = _form(edit, title="Mine", isPrivate=None)  # None: the box is unticked
    sandbox.touch_ticket(ticket["id"], title="Theirs")
    with pytest.raises(services.Conflict) as caught:
        services.ticket_update(user=manager, edit=edit, form=form, meta=META)
    _resolve(manager, form, caught.value, title="yours")
    assert _patches(sandbox)[-1].json == {"title": "Mine", "isPrivate": False}
