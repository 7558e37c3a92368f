"""What Thena's own docs say about a ticket (../shared/thena-docs/update-a-ticket.txt,
thena-api.md §3), as data. Stdlib only: the sandbox, the schema and `thena_check` all
read it, so the fake, the form and the live check agree on one copy.
"""

# The `data` of the documented 200 answer to PATCH /v1/tickets/{id}: exactly these keys,
# in this order. GET and list answers carry the same object.
TICKET_KEYS: tuple[str, ...] = (
    "id",
    "ticketIdentifier",
    "title",
    "ticketId",
    "description",
    "source",
    "accountId",
    "status",
    "statusId",
    "priority",
    "priorityId",
    "storyPoints",
    "account",
    "teamId",
    "teamName",
    "teamIdentifier",
    "subTeamId",
    "subTeamName",
    "subTeamIdentifier",
    "isPrivate",
    "typeId",
    "type",
    "assignedAgent",
    "assignedAgentId",
    "assignedAgentEmail",
    "assignedAgentAvatar",
    "requestorEmail",
    "customerContactId",
    "customerContactFirstName",
    "customerContactLastName",
    "customerContactEmail",
    "submitterEmail",
    "customFieldValues",
    "deletedAt",
    "archivedAt",
    "createdAt",
    "updatedAt",
    "formId",
    "aiGeneratedTitle",
    "aiGeneratedSummary",
    "sentiment",
    "sentimentId",
    "teamIcon",
    "teamColor",
    "teamOrganizationId",
    "teamParentTeamId",
    "teamDescription",
    "teamConfigurationId",
    "teamTeamOwnerId",
    "teamIsActive",
    "teamIsPrivate",
    "teamCreatedAt",
    "teamUpdatedAt",
    "teamDeletedAt",
    "teamArchivedAt",
    "subTeamIcon",
    "subTeamColor",
    "subTeamOrganizationId",
    "subTeamParentTeamId",
    "subTeamDescription",
    "subTeamConfigurationId",
    "subTeamTeamOwnerId",
    "subTeamIsActive",
    "subTeamIsPrivate",
    "subTeamCreatedAt",
    "subTeamUpdatedAt",
    "subTeamDeletedAt",
    "subTeamArchivedAt",
    "lastCustomerComment",
    "lastVendorComment",
    "closedAt",
    "closedBy",
    "closedById",
    "closedByEmail",
    "lastComment",
)

# Ticket keys that are numbers or booleans; every other key is a string (or null).
NUMBER_KEYS = frozenset({"ticketId", "storyPoints"})
BOOLEAN_KEYS = frozenset(
    {"isPrivate", "teamIsActive", "teamIsPrivate", "subTeamIsActive", "subTeamIsPrivate"}
)
ARRAY_KEYS = frozenset({"customFieldValues"})  # documented as string[]

# The PATCH body (UpdateTicketBody), in the page's order: name -> (OpenAPI type, format or
# item type, description). The auto-link flag's name is lost on the page (thena-api.md
# §2.2); it is last, under AUTO_LINK_DESCRIPTION.
UPDATE_BODY: tuple[tuple[str, str, str, str], ...] = (
    ("assignedAgentId", "string", "", "The ID of the assigned agent"),
    ("accountId", "string", "", "The ID of the account"),
    ("assignedAgentEmail", "string", "", "The email of the assigned agent"),
    ("description", "string", "", "The description of the ticket"),
    ("dueDate", "string", "date-time", "The due date of the ticket"),
    ("submitterEmail", "string", "", "The email of the submitter"),
    (
        "statusId",
        "string",
        "",
        "The ID of the status, status id if provided is used over status name",
    ),
    ("statusName", "string", "", "The name of the status to match against"),
    (
        "priorityId",
        "string",
        "",
        "The ID of the priority, priority id if provided is used over priority name",
    ),
    ("priorityName", "string", "", "The name of the priority to match against"),
    ("sentimentId", "string", "", "The ID of the sentiment"),
    ("metadata", "object", "", "The metadata of the ticket"),
    ("typeId", "string", "", "The ID of the type"),
    ("isPrivate", "boolean", "", "Whether the ticket is private"),
    ("source", "string", "", "The source of the ticket"),
    ("aiGeneratedTitle", "string", "", "The AI generated title of the ticket"),
    ("aiGeneratedSummary", "string", "", "The AI generated summary of the ticket"),
    ("attachmentUrls", "array", "string", "The attachment URLs"),
    ("customFieldValues", "array", "object", "The custom field values"),
    ("isProactive", "boolean", "", "Whether the ticket is proactive"),
    ("closedAt", "string", "date-time", "The closed date of the ticket"),
    ("closedById", "string", "", "The ID of the user who closed the ticket"),
    (
        "proactiveChannels",
        "array",
        "enum",
        "The proactive channels associated with the ticket",
    ),
    ("title", "string", "", "The title of the ticket"),
    ("subTeamId", "string", "", "The ID of the sub-team"),
    ("formId", "string", "", "The ID of the form"),
)
AUTO_LINK_DESCRIPTION = (
    "Whether to auto-link Slack channel metadata from the ticket to the selected account"
)

# statusName and priorityName only name a status or priority for Thena to look up: the
# ticket's status and priority are read through their ids.
NAME_ALIASES = ("statusName", "priorityName")

# PATCH fields whose values the documented answer does not carry: they cannot be read.
WRITE_ONLY = tuple(
    name for name, *_ in UPDATE_BODY if name not in TICKET_KEYS and name not in NAME_ALIASES
)
