"""Request validation in the style of NestJS's ValidationPipe with class-validator.

The error body shape `{statusCode, message, error}` is an assumption: Thena runs on
NestJS but documents no error bodies (thena-api.md §1).
"""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime
from http import HTTPStatus

from .seed import World, iso


class ApiError(Exception):
    """An error answer: `message` is a string or, for validation, a list of strings."""

    def __init__(self, status: int, message: str | list[str]) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def body(self) -> dict:
        return {
            "statusCode": self.status,
            "message": self.message,
            "error": HTTPStatus(self.status).phrase,
        }


# The 27 PATCH properties of thena-api.md §2.1 (minus the unnamed auto-link flag):
# name -> (kind, may be null). Null-clearing is not documented [?]: the optional links
# accept null as "clear"; for the rest null is refused, so a client bug shows up here.
PATCH_FIELDS: dict[str, tuple[str, bool]] = {
    "title": ("title", False),
    "description": ("string", True),
    "assignedAgentId": ("string", True),
    "assignedAgentEmail": ("email", True),
    "accountId": ("string", True),
    "dueDate": ("datetime", True),
    "submitterEmail": ("email", True),
    "statusId": ("string", False),
    "statusName": ("string", False),
    "priorityId": ("string", False),
    "priorityName": ("string", False),
    "sentimentId": ("string", True),
    "metadata": ("object", False),
    "typeId": ("string", True),
    "isPrivate": ("boolean", False),
    "source": ("string", False),
    "aiGeneratedTitle": ("string", True),
    "aiGeneratedSummary": ("string", True),
    "attachmentUrls": ("strings", False),
    "customFieldValues": ("objects", False),
    "isProactive": ("boolean", False),
    "closedAt": ("datetime", True),
    "closedById": ("string", True),
    "proactiveChannels": ("channels", False),
    "subTeamId": ("string", True),
    "formId": ("string", True),
}

# Stored as sent (after the type checks); everything else is resolved below.
_PLAIN = {
    "title",
    "description",
    "submitterEmail",
    "metadata",
    "isPrivate",
    "source",
    "aiGeneratedTitle",
    "aiGeneratedSummary",
    "attachmentUrls",
    "customFieldValues",
    "isProactive",
    "proactiveChannels",
}

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_DATE_START = re.compile(r"^\d{4}-\d{2}-\d{2}")


def parse_datetime(value: str) -> datetime | None:
    if not _DATE_START.match(value):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    # Naive values are taken as UTC, as JavaScript's Date does for date-only strings.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _type_errors(key: str, kind: str, value, channels: tuple[str, ...]) -> list[str]:
    if kind in ("string", "title", "email", "datetime") and not isinstance(value, str):
        return [f"{key} must be a string"]
    if kind == "title" and not value.strip():
        return [f"{key} should not be empty"]
    if kind == "email" and not _EMAIL.match(value):
        return [f"{key} must be an email"]
    if kind == "datetime" and parse_datetime(value) is None:
        return [f"{key} must be a valid ISO 8601 date string"]
    if kind == "boolean" and not isinstance(value, bool):
        return [f"{key} must be a boolean value"]
    if kind == "object" and not isinstance(value, dict):
        return [f"{key} must be an object"]
    if kind in ("strings", "objects", "channels") and not isinstance(value, list):
        return [f"{key} must be an array"]
    if kind == "strings" and not all(isinstance(v, str) for v in value):
        return [f"each value in {key} must be a string"]
    if kind == "objects" and not all(isinstance(v, dict) for v in value):
        return [f"each value in {key} must be an object"]
    if kind == "channels" and not all(v in channels for v in value):
        allowed = ", ".join(channels)
        return [f"each value in {key} must be one of the following values: {allowed}"]
    return []


def _by_id(items, value: str, key: str) -> str:
    if not any(item["id"] == value for item in items):
        raise ApiError(404, f"{key} '{value}' not found")
    return value


def _by_name(items, value: str, key: str, errors: list[str], label: str) -> str | None:
    # Case-insensitive: the docs only say "matched by name" [?].
    for item in items:
        if item["name"].lower() == value.strip().lower():
            return item["id"]
    names = ", ".join(item["name"] for item in items)
    errors.append(f"{key} must match one of the team's {label}: {names}")
    return None


def apply_patch(
    world: World,
    ticket: dict,
    body,
    *,
    proactive_channels: tuple[str, ...],
    auto_link_field: str,
) -> None:
    """Validate `body` completely, then apply it to `ticket`; raises ApiError."""
    if not isinstance(body, dict):
        raise ApiError(400, ["request body must be a JSON object"])
    errors: list[str] = []
    flags: dict[str, bool] = {}
    for key, value in body.items():
        spec = PATCH_FIELDS.get(key)
        if key == auto_link_field:
            # Its real name is unknown (thena-api.md §2.2): the sandbox is told it.
            if isinstance(value, bool):
                flags[key] = value
            else:
                errors.append(f"{key} must be a boolean value")
        elif spec is None:
            errors.append(f"property {key} should not exist")  # as whitelisting does
        elif value is None:
            if not spec[1]:
                errors.append(f"{key} should not be null")
        else:
            errors += _type_errors(key, spec[0], value, proactive_channels)
    if errors:
        raise ApiError(400, errors)

    root = world.root_team_id(ticket["teamId"])
    updates = {key: copy.deepcopy(body[key]) for key in _PLAIN if key in body}
    for key in ("dueDate", "closedAt"):
        if key in body:
            moment = body[key] and parse_datetime(body[key])
            updates[key] = iso(moment) if moment else None

    # An id beats its name (thena-api.md §6).
    if "statusId" in body:
        updates["statusId"] = _by_id(world.statuses[root], body["statusId"], "statusId")
    elif "statusName" in body:
        updates["statusId"] = _by_name(
            world.statuses[root], body["statusName"], "statusName", errors, "statuses"
        )
    if "priorityId" in body:
        updates["priorityId"] = _by_id(world.priorities[root], body["priorityId"], "priorityId")
    elif "priorityName" in body:
        updates["priorityId"] = _by_name(
            world.priorities[root], body["priorityName"], "priorityName", errors, "priorities"
        )

    team_members = [world.users[uid] for uid in world.members[root]]
    if body.get("assignedAgentId") is not None:
        _by_id(team_members, body["assignedAgentId"], "assignedAgentId")
    elif body.get("assignedAgentEmail") is not None and "assignedAgentId" not in body:
        email = body["assignedAgentEmail"].lower()
        match = next((u["id"] for u in team_members if u["email"].lower() == email), None)
        if match is None:
            errors.append("assignedAgentEmail must be the email of a member of the ticket's team")
        updates["assignedAgentId"] = match
    if "assignedAgentId" in body or "assignedAgentEmail" in body:
        updates.setdefault("assignedAgentId", body.get("assignedAgentId"))

    lookups = {
        "typeId": world.types[root],
        "sentimentId": world.sentiments[root],
        "accountId": world.accounts.values(),
        "subTeamId": world.sub_teams(root),
        "formId": world.team_forms(root),
        "closedById": world.users.values(),
    }
    for key, items in lookups.items():
        if key in body:
            value = body[key]
            updates[key] = None if value is None else _by_id(items, value, key)
    if errors:
        raise ApiError(400, errors)

    ticket.update(updates)
    if flags:
        ticket.setdefault("_extraFlags", {}).update(flags)
    world.refresh(ticket)
