from tickets.thena import schema

# thena-api.md §2.1, without the auto-link flag whose name is a setting (§2.2).
DOCUMENTED = {
    "assignedAgentId", "accountId", "assignedAgentEmail", "description", "dueDate",
    "submitterEmail", "statusId", "statusName", "priorityId", "priorityName", "sentimentId",
    "metadata", "typeId", "isPrivate", "source", "aiGeneratedTitle", "aiGeneratedSummary",
    "attachmentUrls", "customFieldValues", "isProactive", "closedAt", "closedById",
    "proactiveChannels", "title", "subTeamId", "formId",
}  # fmt: skip


def test_schema_has_exactly_the_27_documented_fields(settings):
    names = [field.name for field in schema.fields()]

    assert len(names) == 27
    assert len(set(names)) == 27
    assert set(names) == DOCUMENTED | {settings.THENA_AUTO_LINK_FIELD}


def test_auto_link_field_takes_its_name_from_the_setting(settings):
    settings.THENA_AUTO_LINK_FIELD = "linkSlackChannelToAccount"

    field = schema.field_map()["linkSlackChannelToAccount"]

    assert field == schema.auto_link_field()
    assert field.kind == "boolean"
    assert field.json_type == "boolean"
    assert field.group == "people"
    assert schema.AUTO_LINK not in schema.field_map()
    assert "autoLinkSlackChannel" not in schema.field_map()


def test_every_field_uses_a_known_kind_group_and_json_type():
    groups = {key for key, _title in schema.GROUPS}
    for field in schema.fields():
        assert field.kind in schema.KINDS, field
        assert field.group in groups, field
        assert field.json_type in schema.JSON_TYPES, field
        assert field.label, field


def test_fields_are_listed_group_by_group_in_display_order():
    order = [key for key, _title in schema.GROUPS]
    positions = [order.index(field.group) for field in schema.fields()]

    assert positions == sorted(positions)


def test_groups_hold_the_agreed_fields(settings):
    by_group: dict[str, set[str]] = {}
    for field in schema.fields():
        by_group.setdefault(field.group, set()).add(field.name)

    assert by_group["basics"] == {
        "title", "description", "statusId", "priorityId", "typeId", "sentimentId",
    }  # fmt: skip
    assert by_group["dates"] == {"dueDate", "closedAt", "closedById"}
    assert by_group["visibility"] == {"isPrivate", "isProactive", "proactiveChannels"}
    assert by_group["ai"] == {"aiGeneratedTitle", "aiGeneratedSummary"}
    assert settings.THENA_AUTO_LINK_FIELD in by_group["people"]


def test_kinds_match_the_json_types_thena_expects():
    fields = schema.field_map()

    assert {n for n, f in fields.items() if f.kind == "id"} == {
        "statusId", "priorityId", "typeId", "sentimentId", "assignedAgentId", "accountId",
        "subTeamId", "formId", "closedById",
    }  # fmt: skip
    assert fields["description"].kind == "text"
    assert fields["dueDate"].kind == "datetime"
    assert (fields["metadata"].kind, fields["metadata"].json_type) == ("json_object", "object")
    assert fields["attachmentUrls"].json_type == "array"
    assert fields["customFieldValues"].kind == "object_list"
    assert fields["proactiveChannels"].choices == schema.PROACTIVE_CHANNELS == ("email",)
    assert fields["isPrivate"].json_type == "boolean"


def test_name_fields_explain_that_the_id_wins():
    fields = schema.field_map()

    assert fields["statusName"].kind == "name"
    assert "id wins" in fields["statusName"].help
    assert "id wins" in fields["priorityName"].help
