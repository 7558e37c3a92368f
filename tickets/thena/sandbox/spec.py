"""The sandbox's `GET /swagger-json`: an OpenAPI 3.0 document as Thena's NestJS server
would publish it, built from documented.py and the sandbox's own routes, so the spec
never promises a route the sandbox does not serve.

Stdlib only (no Django), like the rest of the sandbox.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from .. import documented

if TYPE_CHECKING:
    from .app import SandboxConfig

REF = "#/components/schemas/"
# Thena's names for the path parameters the sandbox's route patterns capture.
_PARAM_NAMES = {"ticket_id": "id", "team_id": "teamId", "account_id": "id"}
_GROUP = re.compile(r"\(\?P<(?P<name>\w+)>(?P<body>[^)]*)\)")
_ANY_SEGMENT = "[^/]+"
_TICKET = "/v1/tickets/{id}"
BULK_PATH = "/v1/tickets/bulk"
# What PATCH /v1/tickets/bulk may change besides ticketIds (thena-api.md §5, §10).
BULK_FIELDS = ("statusId", "typeId", "priorityId", "assignedAgentId", "isPrivate")


def path_templates(pattern: str) -> list[str]:
    """A route pattern as path templates: a `[^/]+` group becomes `{param}`, a group of
    alternatives (`status|priority`) one concrete path per alternative."""
    pattern = pattern.removesuffix("/?")
    match = _GROUP.search(pattern)
    if match is None:
        return [pattern]
    head, tail = pattern[: match.start()], pattern[match.end() :]
    if match["body"] == _ANY_SEGMENT:
        options = ["{" + _PARAM_NAMES.get(match["name"], match["name"]) + "}"]
    else:
        options = match["body"].split("|")
    return [head + option + rest for option in options for rest in path_templates(tail)]


def build(config: SandboxConfig, routes: list[tuple[str, str]]) -> dict:
    """The document for `routes`, (method, route pattern) pairs, as `config` answers."""
    paths: dict[str, dict] = {}
    for method, pattern in routes:
        for template in path_templates(pattern):
            paths.setdefault(template, {})[method.lower()] = _operation(method, template)
    return {
        "openapi": "3.0.0",
        "info": {
            "title": "Thena Platform",
            "description": "The Thena sandbox's imitation of Thena's spec.",
            "version": "1.0",
        },
        "servers": [{"url": "https://platform.thena.ai"}, {"url": "http://localhost:8000"}],
        "paths": paths,
        "components": {
            "securitySchemes": {"ApiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}},
            "schemas": _schemas(config),
        },
    }


def _operation(method: str, template: str) -> dict:
    operation: dict[str, Any] = {
        "operationId": _operation_id(method, template),
        "parameters": [
            {"name": name, "required": True, "in": "path", "schema": {"type": "string"}}
            for name in re.findall(r"{(\w+)}", template)
        ],
        "responses": {"200": {"description": "Operation successful"}},
    }
    if template != "/health":  # the only route open without a key
        operation["security"] = [{"ApiKey": []}]
    envelope = {
        ("GET", _TICKET): "CommonTicketResponse",
        ("PATCH", _TICKET): "CommonTicketResponse",
        ("GET", "/v1/tickets"): "GetAllTicketsResponse",
        ("PATCH", BULK_PATH): "CommonBulkUpdateTicketsResponse",
    }.get((method, template))
    if envelope:
        operation["responses"]["200"]["content"] = _json_ref(envelope)
    body = {
        ("PATCH", _TICKET): ("Update ticket request body", "UpdateTicketBody"),
        ("PATCH", BULK_PATH): ("Update tickets in bulk request body", "BulkUpdateTicketsBody"),
    }.get((method, template))
    if body:
        description, schema = body
        operation["requestBody"] = {
            "required": True,
            "description": description,
            "content": _json_ref(schema),
        }
    return operation


def _operation_id(method: str, template: str) -> str:
    """NestJS style, e.g. `TicketsController_patch_tickets_id` (the names are ours)."""
    segments = [s.strip("{}") for s in template.split("/") if s and s != "v1"]
    controller = (segments[0] if segments else "app").replace("-", " ").title().replace(" ", "")
    rest = "_".join(s.replace("-", "_") for s in segments)
    return f"{controller}Controller_{method.lower()}_{rest}"


def _json_ref(name: str) -> dict:
    return {"application/json": {"schema": {"$ref": REF + name}}}


def _schemas(config: SandboxConfig) -> dict:
    body = {
        name: _property(kind, detail, description, config)
        for name, kind, detail, description in documented.UPDATE_BODY
    }
    body[config.auto_link_field] = {
        "type": "boolean",
        "description": documented.AUTO_LINK_DESCRIPTION,
    }
    ticket = {name: _ticket_property(name, config) for name in documented.TICKET_KEYS}
    if config.echo_write_only:
        ticket.update({name: body[name] for name in documented.WRITE_ONLY})
    envelope = {
        "status": {
            "type": "boolean",
            "default": True,
            "description": "The status of the response",
        },
        "message": {
            "type": "string",
            "default": "Success",
            "description": "The message of the response",
        },
        "timestamp": {
            "type": "string",
            "format": "date-time",
            "default": "2024-01-01T00:00:00.000Z",
            "description": "The timestamp of the response",
        },
    }
    required = ["status", "message", "timestamp", "data"]
    schemas = {
        "ExternalCustomFieldValuesDto": {"type": "object", "properties": {}},
        "UpdateTicketBody": {"type": "object", "properties": body},
        "TicketResponseDto": {"type": "object", "properties": ticket},
        "CommonTicketResponse": {
            "type": "object",
            "required": required,
            "properties": {
                **envelope,
                "data": {
                    "description": "The response for create/update/delete ticket operations",
                    "allOf": [{"$ref": REF + "TicketResponseDto"}],
                },
            },
        },
        "GetAllTicketsResponse": {
            "type": "object",
            "required": required,
            "properties": {
                **envelope,
                "data": {"type": "array", "items": {"$ref": REF + "TicketResponseDto"}},
            },
        },
    }
    if config.bulk_endpoint:
        schemas.update(_bulk_schemas(body, envelope, required))
    return schemas


def _bulk_schemas(body: dict, envelope: dict, required: list[str]) -> dict:
    """PATCH /v1/tickets/bulk's body and answer. The names are ours: the docs show the
    shapes only (thena-api.md §10)."""
    bulk_body = {
        "ticketIds": {
            "type": "array",
            "items": {"type": "string"},
            "description": "The IDs of the tickets to update",
        },
        **{name: body[name] for name in BULK_FIELDS},
    }
    outcome = {"type": "string", "description": "The ID of the ticket"}
    bulk_result = {
        "updated": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"id": outcome, "title": {"type": "string"}},
            },
        },
        "skipped": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"id": outcome, "reason": {"type": "string"}},
            },
        },
    }
    return {
        "BulkUpdateTicketsBody": {
            "type": "object",
            "required": ["ticketIds"],
            "properties": bulk_body,
        },
        "CommonBulkUpdateTicketsResponse": {
            "type": "object",
            "required": required,
            "properties": {
                **envelope,
                "data": {"type": "object", "properties": bulk_result},
            },
        },
    }


def _property(kind: str, detail: str, description: str, config: SandboxConfig) -> dict:
    """One UPDATE_BODY entry as an OpenAPI property."""
    prop: dict[str, Any] = {"type": kind, "description": description}
    if kind == "string" and detail:
        prop["format"] = detail
    elif kind == "array" and detail == "enum":
        prop["items"] = {"type": "string", "enum": list(config.proactive_channels)}
    elif kind == "array" and detail == "object":
        prop["items"] = {"$ref": REF + "ExternalCustomFieldValuesDto"}
    elif kind == "array":
        prop["items"] = {"type": detail}
    return prop


def _ticket_property(name: str, config: SandboxConfig) -> dict:
    if name in documented.NUMBER_KEYS:
        return {"type": "number"}
    if name in documented.BOOLEAN_KEYS:
        return {"type": "boolean"}
    if name in documented.ARRAY_KEYS:  # customFieldValues
        items = "string" if config.custom_field_shape == "strings" else "object"
        return {"type": "array", "items": {"type": items}}
    return {"type": "string"}
