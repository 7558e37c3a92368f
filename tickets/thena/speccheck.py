"""Thena's live spec (GET /swagger-json) against what the product assumes: the PATCH
fields of schema.py, the documented ticket (documented.py) and the paths ThenaClient
calls. Plain functions over the parsed document, for `manage.py thena_check` and
/healthz; they never raise on a strange document, they report it.
"""

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from . import documented
from .client import ThenaClient
from .errors import ThenaError
from .schema import Field

BREAKING, WARNING, INFO = "breaking", "warning", "info"
UPDATE_BODY = "UpdateTicketBody"
TICKET = "TicketResponseDto"
TICKET_PATH = "/v1/tickets/{id}"
BULK_PATH = "/v1/tickets/bulk"
SLACK = "slack channel"
# Without these no edit works: the ticket's identity, its version, its team's choices.
ALWAYS_NEEDED = ("id", "updatedAt", "teamId")

# Every call of ThenaClient (keep in step with client.py): method, path, then other
# spellings a spec may use for the same route.
CLIENT_PATHS: tuple[tuple[str, ...], ...] = (
    ("GET", "/v1/tickets"),
    ("GET", TICKET_PATH),
    ("PATCH", TICKET_PATH),
    ("PATCH", BULK_PATH),
    ("GET", "/v1/tickets/status"),
    ("GET", "/v1/tickets/priority"),
    ("GET", "/v1/tickets/type"),
    ("GET", "/v1/tickets/sentiment"),
    ("GET", "/v1/teams"),
    ("GET", "/v1/teams/{id}"),
    ("GET", "/v1/teams/{id}/sub-teams"),
    ("GET", "/v1/teams/{id}/members"),
    ("GET", "/v1/accounts"),
    ("GET", "/v1/accounts/{id}"),
    ("GET", "/v1/forms"),
    ("GET", "/v1/custom-field"),
    ("GET", "/v1/search/tickets", "/v1/search/{collection}"),
    ("GET", "/v1/search/accounts", "/v1/search/{collection}"),
)
# Paths the product copes without, and how; a missing one is a warning, not breaking.
OPTIONAL_PATHS = {
    # No sentiment list is documented (thena-api.md §10): the client copes with a 404.
    "/v1/tickets/sentiment": "a guess; its choices stay empty",
    # Documented (§10), but an older Thena may lack it.
    BULK_PATH: "bulk edits fall back to one PATCH per ticket",
}


@dataclass(frozen=True)
class Finding:
    level: str  # BREAKING, WARNING or INFO
    section: str
    message: str


@dataclass
class Report:
    health: str = "ok"  # or the error
    spec_error: str = ""
    auto_link_found: str | None = None
    auto_link_configured: str = ""
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        breaking = any(f.level == BREAKING for f in self.findings)
        return self.health == "ok" and not self.spec_error and not breaking

    def section(self, name: str) -> list[Finding]:
        return [f for f in self.findings if f.section == name]

    def as_dict(self) -> dict:
        return {"ok": self.ok, **asdict(self)}


def check(
    client: ThenaClient, *, fields: Sequence[Field], auto_link: str, paths=CLIENT_PATHS
) -> Report:
    """Read Thena's health and spec through `client`, compare, report."""
    report = Report(auto_link_configured=auto_link)
    try:
        client.ping()
    except ThenaError as error:
        report.health = _error_text(error)
    try:
        spec = client.spec()
    except ThenaError as error:
        report.spec_error = _error_text(error)
        return report
    report.auto_link_found, report.findings = compare(
        spec, fields=fields, auto_link=auto_link, paths=paths
    )
    return report


def compare(
    spec: dict, *, fields: Sequence[Field], auto_link: str, paths=CLIENT_PATHS
) -> tuple[str | None, list[Finding]]:
    """The auto-link key the spec names (None if none) and every difference found."""
    body = update_body(spec)
    response = ticket_response(spec)
    flag = auto_link_flag(spec)
    findings = [
        *_check_flag(flag, auto_link),
        *_check_update_body(spec, body, fields, {auto_link, flag}),
        *_check_response(spec, response, fields),
        *_check_write_only(response, fields, auto_link),
        *_check_paths(spec, paths),
    ]
    return flag, findings


# Reading the document


def resolve(spec: dict, node: Any, _depth: int = 0) -> dict:
    """`node` with local `$ref`s followed and `allOf` parts merged (NestJS wraps a
    described `$ref` in `allOf`); {} for anything unreadable."""
    if _depth > 20 or not isinstance(node, dict):
        return {}
    if "$ref" in node:
        return resolve(spec, _pointer(spec, node["$ref"]), _depth + 1)
    if not isinstance(node.get("allOf"), list):
        return node
    merged = {key: value for key, value in node.items() if key != "allOf"}
    properties: dict = {}
    for part in node["allOf"]:
        part = resolve(spec, part, _depth + 1)
        properties.update(part.get("properties") or {})
        merged = {**part, **merged}
    if properties:
        merged["properties"] = properties
    return merged


def _pointer(spec: dict, ref: Any) -> Any:
    if not isinstance(ref, str) or not ref.startswith("#/"):
        return None  # only local references: the check reads one document
    node: Any = spec
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        node = node.get(part) if isinstance(node, dict) else None
    return node


def normalise(path: str) -> str:
    """Path parameter names do not matter: `/v1/teams/{teamId}` is `/v1/teams/{}`."""
    return re.sub(r"{[^}/]*}", "{}", path).rstrip("/") or "/"


def operation(spec: dict, method: str, path: str) -> dict | None:
    paths = spec.get("paths")
    for template, item in (paths if isinstance(paths, dict) else {}).items():
        if isinstance(template, str) and normalise(template) == normalise(path):
            found = resolve(spec, item).get(method.lower())
            if isinstance(found, dict):
                return found
    return None


def _schema(spec: dict, name: str) -> Any:
    return _pointer(spec, "#/components/schemas/" + name)


def _json_schema(spec: dict, holder: Any) -> Any:
    """The application/json schema of a requestBody or a response."""
    content = resolve(spec, holder).get("content")
    media = content.get("application/json") if isinstance(content, dict) else None
    return media.get("schema") if isinstance(media, dict) else None


def _properties(spec: dict, schema: Any) -> dict[str, dict] | None:
    properties = resolve(spec, schema).get("properties")
    if not isinstance(properties, dict):
        return None
    return {str(name): resolve(spec, prop) for name, prop in properties.items()}


def update_body(spec: dict) -> dict[str, dict] | None:
    """The PATCH body's properties: UpdateTicketBody, else the requestBody of PATCH
    /v1/tickets/{id}; None when the spec has neither."""
    schema = _schema(spec, UPDATE_BODY)
    if schema is None:
        patch = operation(spec, "PATCH", TICKET_PATH) or {}
        schema = _json_schema(spec, patch.get("requestBody"))
    return _properties(spec, schema)


def ticket_response(spec: dict) -> dict[str, dict] | None:
    """The ticket's properties: TicketResponseDto, else the `data` of the 200 answer to
    GET /v1/tickets/{id} (or the answer itself, had it no envelope)."""
    schema = _schema(spec, TICKET)
    if schema is None:
        responses = (operation(spec, "GET", TICKET_PATH) or {}).get("responses")
        answer = resolve(spec, _json_schema(spec, (responses or {}).get("200")))
        schema = (answer.get("properties") or {}).get("data", answer)
    return _properties(spec, schema)


def auto_link_flag(spec: dict) -> str | None:
    """The update body's boolean whose description mentions the Slack channel: the
    auto-link flag's key (thena-api.md §10)."""
    for name, prop in (update_body(spec) or {}).items():
        if prop.get("type") == "boolean" and SLACK in str(prop.get("description", "")).lower():
            return name
    return None


def type_label(spec: dict, prop: dict) -> str:
    """The property's type, e.g. `string` or `array<string>`; "" when it has none."""
    kind = prop.get("type")
    if not isinstance(kind, str):
        kind = "object" if "properties" in prop else "string" if "enum" in prop else ""
    if kind != "array":
        return kind
    item = type_label(spec, resolve(spec, prop.get("items")))
    return f"array<{item}>" if item else "array"


def _documented_label(key: str) -> str:
    if key in documented.NUMBER_KEYS:
        return "number"
    if key in documented.BOOLEAN_KEYS:
        return "boolean"
    return "array<string>" if key in documented.ARRAY_KEYS else "string"


# The comparisons


def _check_flag(flag: str | None, configured: str) -> list[Finding]:
    if flag is None:
        message = (
            "Thena's update body has no boolean whose description mentions the Slack "
            f"channel, so the {configured!r} we send may be refused"
        )
        return [Finding(BREAKING, "auto-link", message)]
    if flag != configured:
        message = (
            f"THENA_AUTO_LINK_FIELD is {configured!r} but Thena calls the flag {flag!r}: "
            f"Thena would refuse the flag; set THENA_AUTO_LINK_FIELD={flag}"
        )
        return [Finding(BREAKING, "auto-link", message)]
    return []


def _check_update_body(
    spec: dict, body: dict[str, dict] | None, fields: Sequence[Field], flags: set
) -> list[Finding]:
    if body is None:
        message = f"no {UPDATE_BODY} and no request body for PATCH {TICKET_PATH} in the spec"
        return [Finding(BREAKING, "update body", message)]
    findings = []
    # The flag is checked on its own, whatever it is called.
    ours = {f.name: f for f in fields if f.name not in flags}
    for name, ours_field in ours.items():
        if name not in body:
            message = f"{name}: not in Thena's update body, so Thena would refuse a change to it"
            findings.append(Finding(BREAKING, "update body", message))
            continue
        theirs = type_label(spec, body[name]).split("<")[0]
        if not theirs:
            findings.append(Finding(WARNING, "update body", f"{name}: no type in Thena's spec"))
        elif theirs != ours_field.json_type:
            message = f"{name}: Thena's spec says {theirs}, we send {ours_field.json_type}"
            findings.append(Finding(BREAKING, "update body", message))
    for name in body:
        if name not in ours and name not in flags:
            message = f"{name}: in Thena's update body, not offered here"
            findings.append(Finding(INFO, "update body", message))
    return findings


def _check_response(
    spec: dict, response: dict[str, dict] | None, fields: Sequence[Field]
) -> list[Finding]:
    if response is None:
        message = f"no {TICKET} and no answer schema for GET {TICKET_PATH}: nothing to compare"
        return [Finding(WARNING, "ticket response", message)]
    readable = [f.name for f in fields if f.name in documented.TICKET_KEYS]
    needed = dict.fromkeys([*ALWAYS_NEEDED, *readable])
    findings = []
    for name in needed:
        if name not in response:
            level = BREAKING if name in ALWAYS_NEEDED else WARNING
            message = f"{name}: not in Thena's ticket, but we read it to edit"
            findings.append(Finding(level, "ticket response", message))
    for name in documented.TICKET_KEYS:
        if name not in response and name not in needed:
            message = f"{name}: documented, not in Thena's spec (we do not rely on it)"
            findings.append(Finding(INFO, "ticket response", message))
    for name, prop in response.items():
        if name not in documented.TICKET_KEYS:
            message = f"{name}: in Thena's ticket, not in the documented one"
            findings.append(Finding(INFO, "ticket response", message))
            continue
        theirs, ours = type_label(spec, prop), _documented_label(name)
        if theirs and theirs != ours:
            level = WARNING if name in needed else INFO
            message = f"{name}: Thena's spec says {theirs}, the docs say {ours}"
            findings.append(Finding(level, "ticket response", message))
    return findings


def _check_write_only(
    response: dict[str, dict] | None, fields: Sequence[Field], auto_link: str
) -> list[Finding]:
    if response is None:
        return []
    skip = {*documented.NAME_ALIASES, auto_link}
    return [
        Finding(INFO, "write-only", f.name)
        for f in fields
        if f.name not in skip and f.name not in response
    ]


def _check_paths(spec: dict, paths: Sequence[tuple[str, ...]]) -> list[Finding]:
    findings = []
    for method, path, *others in paths:
        if any(operation(spec, method, p) is not None for p in (path, *others)):
            continue
        if path in OPTIONAL_PATHS:
            message = f"{method} {path}: not in the spec ({OPTIONAL_PATHS[path]})"
            findings.append(Finding(WARNING, "paths", message))
        else:
            findings.append(Finding(BREAKING, "paths", f"{method} {path}: not in the spec"))
    return findings


def _error_text(error: ThenaError) -> str:
    detail = f" ({error.detail})" if error.detail else ""
    return f"{error.user_message}{detail}"
