import json
import zoneinfo

import pytest
from django.utils import timezone

from tests.util import bound_form, submitted
from tickets import services
from tickets.forms import TicketUpdateForm
from tickets.snapshot import Snapshot, SnapshotError
from tickets.thena import schema

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("thena")]


@pytest.fixture
def load(viewer):
    return lambda ticket_id: services.ticket_edit_load(user=viewer, ticket_id=ticket_id)


@pytest.fixture
def edit(sandbox, load):
    ticket = next(t for t in sandbox.tickets() if t["teamIdentifier"] == "SUP")
    return load(ticket["id"])


def _changes(edit, **changes) -> dict:
    form = bound_form(edit, **changes)
    assert form.is_valid(), form.errors
    return services.patch_body(edit.ticket, form.edits())


def test_form_covers_all_27_patch_fields(edit):
    form = TicketUpdateForm(ticket=edit.ticket, choices=edit.choices)
    names = {spec.name for spec in schema.fields()}
    assert len(names) == 27
    # customFieldValues is edited through one typed input per custom field of the team.
    assert names - {"customFieldValues"} <= set(form.fields)
    assert form.custom_field_names


def test_an_untouched_form_changes_nothing(edit):
    assert _changes(edit) == {}


def test_text_fields_send_only_what_changed(edit):
    assert _changes(edit, title="  A clearer title ") == {"title": "A clearer title"}
    assert _changes(edit, description="") == {"description": ""}


def test_title_cannot_be_emptied(edit):
    form = bound_form(edit, title="   ")
    assert not form.is_valid()
    assert "title" in form.errors


def test_select_sends_the_chosen_id(edit):
    other = next(v for v, _ in edit.choices.statuses if v != edit.ticket["statusId"])
    assert _changes(edit, statusId=other) == {"statusId": other}


def test_select_refuses_an_id_it_does_not_offer(edit):
    form = bound_form(edit, priorityId="NOT-A-PRIORITY")
    assert not form.is_valid()
    assert "Select a valid choice" in form.errors["priorityId"][0]


def test_clearing_a_reference_sends_null(edit):
    assert edit.ticket["assignedAgentId"] or pytest.skip("ticket has no assignee")
    assert _changes(edit, assignedAgentId="") == {"assignedAgentId": None}


def test_ticking_a_checkbox_sends_true_and_an_untouched_one_is_not_sent(edit):
    assert edit.ticket.get("isPrivate") is not True
    assert _changes(edit, isPrivate="on") == {"isPrivate": True}
    assert "isProactive" not in _changes(edit, isPrivate="on")


def test_date_time_is_read_in_the_user_time_zone_and_sent_as_utc(edit):
    with timezone.override(zoneinfo.ZoneInfo("Europe/Paris")):
        assert _changes(edit, dueDate="2026-12-24T18:30") == {"dueDate": "2026-12-24T17:30:00.000Z"}


def test_a_malformed_date_time_is_an_error_and_the_input_is_kept(edit):
    form = bound_form(edit, dueDate="next tuesday")
    assert not form.is_valid()
    assert "dueDate" in form.errors
    assert form["dueDate"].value() == "next tuesday"


def test_clearing_a_date_time_sends_null(sandbox, load):
    ticket = next(t for t in sandbox.tickets() if t.get("closedAt"))
    edit = load(ticket["id"])
    assert _changes(edit, closedAt="") == {"closedAt": None}


def test_emails_are_checked(edit):
    form = bound_form(edit, submitterEmail="not an email")
    assert not form.is_valid()
    assert "submitterEmail" in form.errors
    assert _changes(edit, submitterEmail="new@customer.example") == {
        "submitterEmail": "new@customer.example"
    }


def test_metadata_must_be_a_json_object(edit):
    assert _changes(edit, metadata='{"plan": "pro", "seats": 12}') == {
        "metadata": {"plan": "pro", "seats": 12}
    }
    broken = bound_form(edit, metadata='{"plan": ')
    assert not broken.is_valid()
    assert "not valid JSON" in broken.errors["metadata"][0]
    listed = bound_form(edit, metadata="[1, 2]")
    assert not listed.is_valid()
    assert "JSON object" in listed.errors["metadata"][0]


def test_attachment_urls_one_per_line_are_checked(edit):
    urls = "https://files.example/a.png\n\n https://files.example/b.pdf "
    assert _changes(edit, attachmentUrls=urls)["attachmentUrls"] == [
        "https://files.example/a.png",
        "https://files.example/b.pdf",
    ]
    form = bound_form(edit, attachmentUrls="https://ok.example/x\nftp://nope\njavascript:alert(1)")
    assert not form.is_valid()
    assert "line 2" in form.errors["attachmentUrls"][0]
    assert "line 3" in form.errors["attachmentUrls"][0]


def test_proactive_channels_are_an_enum(edit):
    assert _changes(edit, proactiveChannels=["email"]) == {"proactiveChannels": ["email"]}
    form = bound_form(edit, proactiveChannels=["carrier-pigeon"])
    assert not form.is_valid()


def test_status_name_is_sent_only_when_given(edit):
    assert _changes(edit, statusName="") == {}
    assert _changes(edit, statusName="On hold") == {"statusName": "On hold"}


def test_auto_link_flag_goes_only_with_a_new_account(edit, settings, load):
    settings.THENA_AUTO_LINK_FIELD = "linkSlackChannelToAccount"
    edit = load(edit.ticket_id)
    assert _changes(edit, linkSlackChannelToAccount="on") == {}
    other = next(v for v, _ in edit.choices.accounts if v != edit.ticket.get("accountId"))
    assert _changes(edit, linkSlackChannelToAccount="on", accountId=other) == {
        "accountId": other,
        "linkSlackChannelToAccount": True,
    }


def _definition(edit, *kinds):
    return next(d for d in edit.choices.custom_fields if d["fieldType"] in kinds)


def test_custom_field_typed_input_rewrites_only_its_item(edit):
    definition = _definition(edit, "integer")
    name = f"cf__{definition['uid']}"
    body = _changes(edit, **{name: "42"})
    items = body["customFieldValues"]
    mine = [i for i in items if i["customFieldId"] == definition["uid"]]
    assert mine == [{"customFieldId": definition["uid"], "data": [{"value": "42"}]}]
    others = [i for i in items if i["customFieldId"] != definition["uid"]]
    original = [
        i for i in edit.ticket["customFieldValues"] if i["customFieldId"] != definition["uid"]
    ]
    assert others == original


def test_custom_field_integer_refuses_text(edit):
    definition = _definition(edit, "integer")
    form = bound_form(edit, **{f"cf__{definition['uid']}": "many"})
    assert not form.is_valid()
    assert f"cf__{definition['uid']}" in form.errors


def test_custom_field_choice_offers_the_definition_options(edit):
    definition = _definition(edit, "single_choice")
    option = definition["options"][-1]["value"]
    items = _changes(edit, **{f"cf__{definition['uid']}": option})["customFieldValues"]
    assert {"customFieldId": definition["uid"], "data": [{"value": option}]} in items


def test_a_tampered_snapshot_is_refused(edit):
    token = TicketUpdateForm(ticket=edit.ticket, choices=edit.choices).initial["snapshot"]
    with pytest.raises(SnapshotError, match="changed outside the page"):
        Snapshot.load(token + "x", ticket_id=edit.ticket_id)


def test_a_snapshot_of_another_ticket_is_refused(edit, sandbox, load):
    other = load(next(t for t in sandbox.tickets() if t["id"] != edit.ticket_id)["id"])
    token = TicketUpdateForm(ticket=other.ticket, choices=other.choices).initial["snapshot"]
    with pytest.raises(SnapshotError, match="another ticket"):
        Snapshot.load(token, ticket_id=edit.ticket_id)


def test_edits_are_what_the_user_typed_not_what_changed_upstream(edit, sandbox):
    shown = TicketUpdateForm(ticket=edit.ticket, choices=edit.choices)
    data = submitted(shown, title="Mine")
    sandbox.touch_ticket(edit.ticket_id, priorityName="Urgent")
    form = TicketUpdateForm(data, ticket=edit.ticket, choices=edit.choices, snapshot=shown.snapshot)
    assert form.is_valid(), form.errors
    assert form.edits() == {"title": "Mine"}


def test_display_names_ids_and_formats_json(edit):
    form = TicketUpdateForm(ticket=edit.ticket, choices=edit.choices)
    status_id, label = edit.choices.statuses[0]
    assert form.display("statusId", status_id) == label
    assert form.display("metadata", {"a": 1}) == json.dumps({"a": 1}, indent=2)
    assert form.display("dueDate", None) == "—"


def test_what_thena_holds_in_an_untouched_field_never_blocks_a_save(edit, sandbox, load):
    sandbox.put_ticket(
        edit.ticket_id,
        attachmentUrls=["ftp://files.example/old.bin"],
        submitterEmail="not-an-email",
    )
    edit = load(edit.ticket_id)
    form = bound_form(edit, title="Still saveable")
    assert form.is_valid(), form.errors
    assert form.edits() == {"title": "Still saveable"}
    touched = bound_form(edit, submitterEmail="still not an email")
    assert not touched.is_valid()
    assert list(touched.errors) == ["submitterEmail"]
