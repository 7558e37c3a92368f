"""The PATCH schema, through what the app builds from it: the form, its groups, the JSON."""

import pytest
from django import forms

from tickets.forms import Choices, TicketUpdateForm
from tickets.thena import schema, wire

# thena-api.md §2.1, without the auto-link flag whose name is a setting (§2.2).
DOCUMENTED = {
    "assignedAgentId", "accountId", "assignedAgentEmail", "description", "dueDate",
    "submitterEmail", "statusId", "statusName", "priorityId", "priorityName", "sentimentId",
    "metadata", "typeId", "isPrivate", "source", "aiGeneratedTitle", "aiGeneratedSummary",
    "attachmentUrls", "customFieldValues", "isProactive", "closedAt", "closedById",
    "proactiveChannels", "title", "subTeamId", "formId",
}  # fmt: skip
JSON = {"string": str, "boolean": bool, "object": dict, "array": list}


@pytest.fixture
def ticket(sandbox):
    return sandbox.tickets()[0]


@pytest.fixture
def form(ticket):
    return TicketUpdateForm(ticket=ticket, choices=Choices())


def test_schema_has_exactly_the_27_documented_fields(settings):
    names = [field.name for field in schema.fields()]

    assert len(names) == 27
    assert len(set(names)) == 27
    assert set(names) == DOCUMENTED | {settings.THENA_AUTO_LINK_FIELD}


def test_the_form_has_one_input_per_field_with_its_label_and_help(form):
    for spec in schema.fields():
        field = form.fields[spec.name]
        assert (field.label, field.help_text) == (spec.label, spec.help), spec.name
    # Besides the 27 fields: the snapshot, and the reason (never sent to Thena).
    assert set(form.fields) - {"snapshot", "reason"} == {spec.name for spec in schema.fields()}


def test_the_form_shows_every_field_once_group_by_group(form):
    groups = form.groups()
    assert [key for key, _title, _fields in groups] == [key for key, _ in schema.GROUPS]
    shown = [bound.name for _key, _title, fields in groups for bound in fields]
    assert sorted(shown) == sorted(spec.name for spec in schema.fields())
    by_group = {key: {bound.name for bound in fields} for key, _title, fields in groups}
    assert by_group["basics"] == {
        "title", "description", "statusId", "priorityId", "typeId", "sentimentId",
    }  # fmt: skip
    assert by_group["dates"] == {"dueDate", "closedAt", "closedById"}
    assert by_group["visibility"] == {"isPrivate", "isProactive", "proactiveChannels"}
    assert by_group["ai"] == {"aiGeneratedTitle", "aiGeneratedSummary"}


def test_each_kind_gets_its_input(form):
    fields = form.fields
    assert isinstance(fields["description"].widget, forms.Textarea)
    assert isinstance(fields["isPrivate"], forms.BooleanField)
    assert isinstance(fields["assignedAgentEmail"], forms.EmailField)
    assert isinstance(fields["statusId"].widget, forms.Select)
    assert isinstance(fields["dueDate"].widget, forms.DateTimeInput)
    assert fields["title"].required
    assert not any(f.required for name, f in fields.items() if name not in ("title", "snapshot"))
    channels = fields["proactiveChannels"]
    assert isinstance(channels.widget, forms.CheckboxSelectMultiple)
    assert [value for value, _ in channels.choices] == list(schema.PROACTIVE_CHANNELS)


def test_every_field_is_sent_as_the_json_type_thena_expects(ticket):
    filled = {
        **ticket,
        "title": "T",
        "statusId": "S1",
        "assignedAgentEmail": "a@example.com",
        "dueDate": "2025-03-04T10:00:00.000Z",
        "closedAt": "2025-03-04T10:00:00.000Z",
        "isPrivate": True,
        "metadata": {"a": 1},
        "attachmentUrls": ["https://example.com/a.png"],
        "proactiveChannels": ["email"],
        "customFieldValues": [{"customFieldId": "c", "data": [{"value": "v"}]}],
    }
    for spec in schema.fields():
        if spec.kind == "name":  # write-only: never read from a ticket
            continue
        value = wire.to_json(spec, wire.from_ticket(spec, filled))
        if value is not None:  # None clears the field (sent as null)
            assert isinstance(value, JSON[spec.json_type]), (spec.name, value)


def test_auto_link_field_takes_its_name_from_the_setting(settings, ticket):
    settings.THENA_AUTO_LINK_FIELD = "linkSlackChannelToAccount"

    form = TicketUpdateForm(ticket=ticket, choices=Choices())

    assert isinstance(form.fields["linkSlackChannelToAccount"], forms.BooleanField)
    assert schema.auto_link_field().name == "linkSlackChannelToAccount"
    assert schema.AUTO_LINK not in form.fields
    assert "autoLinkSlackChannel" not in form.fields
    people = next(fields for key, _title, fields in form.groups() if key == "people")
    assert "linkSlackChannelToAccount" in {bound.name for bound in people}


def test_name_fields_explain_that_the_id_wins(form):
    assert "id wins" in form.fields["statusName"].help_text
    assert "id wins" in form.fields["priorityName"].help_text
    assert str(form["statusName"]).startswith("<input")
