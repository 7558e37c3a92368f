"""The 27 properties of PATCH /v1/tickets/{id} (thena-api.md §2.1), declared once.

The form, the diff, the PATCH body and the audit labels are all built from this
table. It is data: a form builder switches on `kind`, the PATCH body uses `json_type`.
"""

import functools
from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

KINDS = frozenset(
    {
        "string",
        "text",
        "email",
        "datetime",
        "boolean",
        "id",
        "name",
        "json_object",
        "url_list",
        "object_list",
        "enum_list",
    }
)
JSON_TYPES = frozenset({"string", "boolean", "object", "array"})

GROUPS: tuple[tuple[str, str], ...] = (
    ("basics", "Basics"),
    ("people", "People"),
    ("dates", "Dates"),
    ("visibility", "Visibility"),
    ("ai", "AI-generated"),
    ("advanced", "Advanced"),
)

# Only "email" is confirmed (thena-api.md §2.4); other members of the enum are unknown.
PROACTIVE_CHANNELS: tuple[str, ...] = ("email",)

# The auto-link flag's real PATCH key is unknown (thena-api.md §2.2): the table holds
# this placeholder and fields() swaps in settings.THENA_AUTO_LINK_FIELD.
AUTO_LINK = "auto_link"


@dataclass(frozen=True)
class Field:
    name: str  # the PATCH property
    kind: str
    label: str
    help: str
    group: str
    json_type: str
    choices: tuple[str, ...] = ()  # enum_list only


_FIELDS: tuple[Field, ...] = (
    # basics
    Field("title", "string", "Title", "", "basics", "string"),
    Field("description", "text", "Description", "", "basics", "string"),
    Field("statusId", "id", "Status", "", "basics", "string"),
    Field("priorityId", "id", "Priority", "", "basics", "string"),
    Field("typeId", "id", "Type", "", "basics", "string"),
    Field("sentimentId", "id", "Sentiment", "", "basics", "string"),
    # people
    Field(
        "assignedAgentId",
        "id",
        "Assignee",
        "The agent who works on the ticket.",
        "people",
        "string",
    ),
    Field(
        "assignedAgentEmail",
        "email",
        "Assignee email",
        "Another way to name the assignee, by email address.",
        "people",
        "string",
    ),
    Field(
        "submitterEmail",
        "email",
        "Submitter email",
        "Who raised the ticket.",
        "people",
        "string",
    ),
    Field(
        "accountId",
        "id",
        "Account",
        "The customer account the ticket belongs to.",
        "people",
        "string",
    ),
    Field(
        AUTO_LINK,
        "boolean",
        "Link the Slack channel to this account",
        "Also link the ticket's Slack channel to the chosen account. A channel belongs to at "
        "most one account.",
        "people",
        "boolean",
    ),
    Field("subTeamId", "id", "Sub-team", "", "people", "string"),
    # dates
    Field("dueDate", "datetime", "Due date", "", "dates", "string"),
    Field(
        "closedAt",
        "datetime",
        "Closed at",
        "When the ticket was closed, for tickets closed outside Thena.",
        "dates",
        "string",
    ),
    Field("closedById", "id", "Closed by", "", "dates", "string"),
    # visibility
    Field(
        "isPrivate",
        "boolean",
        "Private",
        "Private tickets are hidden from the customer. What changing this does to an "
        "existing ticket is not documented by Thena.",
        "visibility",
        "boolean",
    ),
    Field(
        "isProactive",
        "boolean",
        "Proactive",
        "A ticket the team raised towards the customer. Needs the team's email set up in Thena.",
        "visibility",
        "boolean",
    ),
    Field(
        "proactiveChannels",
        "enum_list",
        "Proactive channels",
        "How the customer is told about a proactive ticket.",
        "visibility",
        "array",
        PROACTIVE_CHANNELS,
    ),
    # ai
    Field("aiGeneratedTitle", "string", "AI-generated title", "", "ai", "string"),
    Field("aiGeneratedSummary", "text", "AI-generated summary", "", "ai", "string"),
    # advanced
    Field(
        "source",
        "string",
        "Source",
        "Where the ticket came from, e.g. slack or email.",
        "advanced",
        "string",
    ),
    Field("formId", "id", "Form", "", "advanced", "string"),
    Field(
        "metadata", "json_object", "Metadata", "A JSON object, kept as given.", "advanced", "object"
    ),
    Field(
        "attachmentUrls", "url_list", "Attachment URLs", "One URL per line.", "advanced", "array"
    ),
    Field(
        "customFieldValues",
        "object_list",
        "Custom field values",
        "A JSON list of objects, passed to Thena untouched.",
        "advanced",
        "array",
    ),
    Field(
        "statusName",
        "name",
        "Status name",
        "Used only when no status is chosen above; the status id wins.",
        "advanced",
        "string",
    ),
    Field(
        "priorityName",
        "name",
        "Priority name",
        "Used only when no priority is chosen above; the priority id wins.",
        "advanced",
        "string",
    ),
)


def auto_link_name() -> str:
    return settings.THENA_AUTO_LINK_FIELD


# Built once (until the setting changes): pages and exports ask per field and per change.
@functools.cache
def fields() -> tuple[Field, ...]:
    """All 27 fields in display order, the auto-link flag under its configured name."""
    name = auto_link_name()
    return tuple(replace(f, name=name) if f.name == AUTO_LINK else f for f in _FIELDS)


@functools.cache
def field_map() -> Mapping[str, Field]:
    """The fields by name, in display order (read-only: it is shared)."""
    return MappingProxyType({f.name: f for f in fields()})


@functools.cache
def field_order() -> Mapping[str, int]:
    """Each field's place in display order."""
    return MappingProxyType({name: index for index, name in enumerate(field_map())})


@receiver(setting_changed)
def _auto_link_renamed(*, setting: str, **kwargs) -> None:
    if setting == "THENA_AUTO_LINK_FIELD":
        for built in (fields, field_map, field_order):
            built.cache_clear()


def holds_value(spec: Field) -> bool:
    """Whether a field sets a value the ticket keeps (not a name to look up, not the
    auto-link flag, which asks Thena to do something)."""
    return spec.kind != "name" and spec.name != auto_link_name()


def auto_link_field() -> Field:
    return replace(next(f for f in _FIELDS if f.name == AUTO_LINK), name=auto_link_name())
