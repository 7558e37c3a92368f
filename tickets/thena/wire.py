"""Values per field kind, in the three forms they take: the Python value a form field
holds, the text a page renders into its input (as a browser submits it back), and the
JSON a PATCH body carries. One owner per format: the form, the diff and the services
call these and convert nothing themselves.
"""

import hashlib
import json
import math
import re
from datetime import UTC, date, datetime

from django import forms
from django.utils.dateparse import parse_date, parse_datetime

from . import schema

# -- PATCH JSON ---------------------------------------------------------------------------


def iso(value: datetime | None) -> str | None:
    """A date-time as Thena's JSON: UTC, milliseconds, a Z. Years below 1000 keep four
    digits (strftime would give "1-01-01")."""
    if value is None:
        return None
    moment = value.astimezone(UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _shown_moment(raw) -> datetime | None:
    """A date-time from Thena as a form starts from it: None when it is unreadable, or
    so close to year 1 or 9999 that showing it in some time zone would overflow."""
    if not isinstance(raw, str):
        return None
    try:
        parsed = parse_datetime(raw)
    except ValueError:
        return None
    if parsed is None or parsed.tzinfo is None:
        return parsed
    try:
        year = parsed.astimezone(UTC).year
    except OverflowError:
        return None
    return parsed if 1 < year < 9999 else None


def aware(text: str) -> datetime | None:
    """`text` as a date-time with its offset; None when it is not one, or has none."""
    try:
        parsed = parse_datetime(text)
    except ValueError:
        return None
    return parsed if parsed is not None and parsed.tzinfo is not None else None


def _moment(raw) -> str | None:
    """A date-time string from Thena, normalised so equal moments compare equal whatever
    the offset or precision it was written with; unreadable text is kept as it is."""
    if not isinstance(raw, str) or not raw:
        return None
    parsed = aware(raw)
    if parsed is None:
        return raw
    try:
        return iso(parsed)
    except OverflowError:
        return raw


def lines(text: str) -> str:
    """Browsers submit a textarea's line breaks as CRLF; Thena's text uses LF."""
    return text.replace("\r\n", "\n")


def to_json(spec: schema.Field, value):
    """A form field's Python value as the JSON a PATCH body carries. Empty values
    normalise so that "absent upstream" and "left empty" compare equal."""
    match spec.kind:
        case "string" | "text":
            return lines(value or "")
        case "email" | "id" | "name":
            return value or None
        case "datetime":
            return iso(value)
        case "boolean":
            return bool(value)
        case "json_object":
            return value if isinstance(value, dict) else {}
        case "url_list" | "enum_list" | "object_list":
            return list(value or [])
    raise ValueError(spec.kind)


def from_ticket(spec: schema.Field, ticket: dict):
    """The Python value a form field starts from, read from a ticket object (None, an
    empty input, when the object does not carry the field)."""
    if spec.name not in ticket:
        return None
    raw = ticket[spec.name]
    match spec.kind:
        case "datetime":
            return _shown_moment(raw)
        case "boolean":
            return raw is True
        case "json_object":
            return raw if isinstance(raw, dict) else {}
        case "url_list" | "enum_list":
            return [str(item) for item in raw] if isinstance(raw, list) else []
        case "object_list":
            return [item for item in raw if isinstance(item, dict)] if isinstance(raw, list) else []
        case "name":
            return None  # write-only: the id field shows the current value
        case _:
            return raw if isinstance(raw, str) else None


def unreadable(ticket: dict) -> frozenset[str]:
    """The write-only fields of `ticket`: the value fields its object does not carry
    (thena-api.md §3). Their current value cannot be shown, compared or recorded.
    customFieldValues is not one of them: custom fields have rules of their own
    (`cf_exact`)."""
    return frozenset(
        spec.name
        for spec in schema.fields()
        if spec.name not in ticket and spec.name != "customFieldValues" and schema.holds_value(spec)
    )


def ticket_values(ticket: dict) -> dict:
    """Every readable field's PATCH JSON as the ticket object holds it, normalised for
    comparing (date-times to UTC milliseconds), so two reads of an unchanged ticket are
    equal. Write-only fields have no value to compare and are left out."""
    values = {}
    hidden = unreadable(ticket)
    for spec in schema.fields():
        if spec.name in hidden:
            continue
        if spec.kind == "datetime":
            values[spec.name] = _moment(ticket.get(spec.name))
        else:
            values[spec.name] = to_json(spec, from_ticket(spec, ticket))
    return values


def equal(a, b) -> bool:
    """Equality as JSON sees it: true is not 1, and 1 is not 1.0."""
    if a is b:
        return True
    dump = json.dumps
    try:
        return dump(a, sort_keys=True) == dump(b, sort_keys=True)
    except (TypeError, ValueError):
        return a == b


def same(spec: schema.Field, sent, now) -> bool:
    """Whether a value read from Thena is the value a PATCH sent."""
    if spec.kind == "datetime":
        return _moment(sent) == _moment(now)
    return equal(sent, now)


# -- custom fields ------------------------------------------------------------------------
# The item shape is undocumented (thena-api.md §2.3): we read and write
# {"customFieldId": uid, "data": [{"value": "..."}]} and keep items we do not recognise.

# Custom-field types that get a typed input; any other type is edited as JSON.
CF_INPUTS = {
    "single_line": "text",
    "email": "email",
    "url": "url",
    "phone_number": "text",
    "multi_line": "textarea",
    "rich_text": "textarea",
    "integer": "integer",
    "decimal": "decimal",
    "currency": "decimal",
    "rating": "integer",
    "date": "date",
    "date_time": "datetime",
    "single_choice": "choice",
    "radio_button": "choice",
    "multi_choice": "multichoice",
    "checkbox": "boolean",
    "toggle": "boolean",
    "boolean": "boolean",
}


def cf_kind(definition: dict) -> str:
    return CF_INPUTS.get(definition.get("fieldType", ""), "json")


def cf_id(item: dict) -> str | None:
    for key in ("customFieldId", "customFieldUid", "uid", "id"):
        if isinstance(item.get(key), str):
            return item[key]
    return None


def cf_values(item: dict) -> list:
    data = item.get("data")
    if isinstance(data, list):
        return [d.get("value") if isinstance(d, dict) else d for d in data]
    return [item["value"]] if "value" in item else []


def cf_exact(ticket: dict) -> bool:
    """Whether the ticket's custom-field values were read in the shape they are written
    (an id and a `data` list each, written back as read). Thena documents them as strings
    (thena-api.md §3): then they cannot be written back, and one edited value must not
    rebuild the whole list from values never read."""
    raw = ticket.get("customFieldValues")
    return isinstance(raw, list) and all(
        isinstance(item, dict) and cf_id(item) is not None and isinstance(item.get("data"), list)
        for item in raw
    )


def cf_items(ticket: dict) -> list[dict]:
    raw = ticket.get("customFieldValues")
    return [item for item in raw if isinstance(item, dict)] if isinstance(raw, list) else []


def cf_data(ticket: dict, uid: str):
    """One custom field's `data` as the ticket holds it (None when it has no item)."""
    for item in cf_items(ticket):
        if cf_id(item) == uid:
            return item.get("data", cf_values(item))
    return None


def cf_to_data(definition: dict, value) -> list | None:
    """A typed custom-field input as the item's `data` list; None when empty."""
    kind = cf_kind(definition)
    if kind == "json":
        return value or None
    if kind == "boolean":
        return [{"value": "true" if value else "false"}]
    if value in (None, "", []):
        return None
    if kind == "multichoice":
        return [{"value": v} for v in value]
    if kind == "datetime":
        value = iso(value)
    elif kind == "date":
        value = value.isoformat()
    elif kind == "textarea":
        value = lines(value)
    return [{"value": str(value)}]


def cf_initial(definition: dict, item: dict | None):
    """The Python value a custom-field input starts from."""
    values = cf_values(item) if item else []
    kind = cf_kind(definition)
    if kind == "json":  # edited as the raw `data` list, written back the same way
        data = item.get("data") if item else None
        return data if isinstance(data, list) and data else (values or None)
    if kind == "multichoice":
        return [str(v) for v in values]
    first = values[0] if values else None
    if kind == "boolean":
        return str(first).lower() == "true"
    if kind == "date" and isinstance(first, str):
        # A date some clients store as a whole ISO date-time ("…T00:00:00.000Z").
        try:
            return parse_date(first[:10]) or first
        except ValueError:
            return first
    if kind == "datetime" and isinstance(first, str):
        return _shown_moment(first)
    return first


def cf_merge(items: list[dict], edits: dict[str, list | None]) -> list[dict]:
    """`items` (a ticket's list, in its order) with the edited custom fields' data
    replaced, added, or (None) removed; every other item rides along untouched."""
    merged, done = [], set()
    for item in items:
        uid = cf_id(item)
        if uid in edits:
            done.add(uid)
            if edits[uid] is None:
                continue
            item = {**item, "data": edits[uid]}
        merged.append(item)
    merged += [
        {"customFieldId": uid, "data": data}
        for uid, data in edits.items()
        if uid not in done and data is not None
    ]
    return merged


# -- evidence -----------------------------------------------------------------------------


def applied(ticket: dict, body: dict, custom: dict) -> bool | None:
    """Whether `ticket` shows the PATCH `body` (with `custom`, its custom-field edits by
    uid): True when every sent value that the ticket object carries is there, False when
    one is not, None when none can be read back. The edit and reconciliation both settle
    outcomes by this."""
    specs, values = schema.field_map(), ticket_values(ticket)
    checked = False
    for name, sent in body.items():
        if name == "customFieldValues" and not cf_exact(ticket):
            continue  # custom fields read as strings cannot show what was written
        if name == "customFieldValues" and custom:
            for uid, data in custom.items():
                if not equal(cf_data(ticket, uid), data):
                    return False
            checked = True
        elif name in specs and name in ticket:  # write-only keys are not on a ticket
            if not same(specs[name], sent, values[name]):
                return False
            checked = True
    return True if checked else None


# -- rendered input text ------------------------------------------------------------------
# "Changed" means the text the browser sends back differs from the text the page put into
# the input. Both sides go through `_browser_text`, so a value the user did not touch
# compares equal whatever its precision, time zone or JSON formatting.

_NO_NEWLINES = {"text", "search", "tel", "password"}
_TRIMMED = {"email", "url"}


# Chromium reads ASCII digits only, numbers a double holds, and dates up to JavaScript's
# last day.
_NUMBER = re.compile(r"-?(?:\d+(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?", re.ASCII)
_DATE = re.compile(r"(\d{4,})-(\d{2})-(\d{2})", re.ASCII)
_LOCAL = re.compile(
    r"(\d{4,}-\d{2}-\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,3}))?)?", re.ASCII
)
_LAST_DAY = (275760, 9, 13)


def _valid_date(text: str) -> bool:
    match = _DATE.fullmatch(text)
    if not match:
        return False
    year, month, day = map(int, match.groups())
    try:
        date(2000 + year % 400, month, day)  # the calendar repeats every 400 years
    except ValueError:
        return False
    return year > 0 and (year, month, day) <= _LAST_DAY


def _local(text: str) -> str:
    """A datetime-local value as Chromium keeps it: the shortest form, or empty."""
    match = _LOCAL.fullmatch(text)
    if not match or not _valid_date(match[1]) or int(match[2]) > 23 or int(match[3]) > 59:
        return ""
    seconds, fraction = int(match[4] or 0), (match[5] or "").rstrip("0")
    if seconds > 59:
        return ""
    shown = f"{match[1]}T{match[2]}:{match[3]}"
    if seconds or fraction:
        shown += f":{seconds:02}"
    return shown + (f".{match[5]}" if fraction else "")


def _line_breaks(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _browser_text(widget: forms.Widget, text: str) -> str:
    """The value sanitisation a browser applies before submitting (HTML §4.10.5): what
    it cannot show (a date that is no date, text in a number box) it sends as empty. A
    null character reaches it as U+FFFD, as the HTML parser reads one in a value."""
    text = _line_breaks(text).replace("\x00", "\ufffd")
    kind = getattr(widget, "input_type", None)
    if kind in _NO_NEWLINES or kind in _TRIMMED:
        text = text.replace("\n", "")
    if kind in _TRIMMED:
        text = text.strip(" \t\n\f")
    match kind:
        case "number":
            return text if _NUMBER.fullmatch(text) and math.isfinite(float(text)) else ""
        case "date":
            return text if _valid_date(text) else ""
        case "datetime-local":
            return _local(text)
    return text


def _choice_values(field: forms.Field) -> list[str]:
    values = []
    for value, label in field.choices:
        if isinstance(label, list | tuple):  # an optgroup
            values += [str(v) for v, _ in label]
        else:
            values.append(str(value))
    return values


def rendered_text(bound: forms.BoundField) -> tuple[str, ...]:
    """What a browser submits for this input of an unbound form as rendered."""
    field, widget = bound.field, bound.field.widget
    value = bound.initial
    if isinstance(widget, forms.CheckboxSelectMultiple | forms.SelectMultiple):
        chosen = {str(v) for v in (value or [])}
        return tuple(v for v in _choice_values(field) if v in chosen)
    if isinstance(widget, forms.CheckboxInput):
        return ("on",) if widget.check_test(value) else ()
    if isinstance(widget, forms.Select | forms.RadioSelect):
        current = "" if value is None else str(value)
        if getattr(field, "lists_current", False):
            return (current,)  # ReferenceField puts the current value into its options
        options = _choice_values(field)
        if current in options:
            return (current,)
        # No option matches: a select shows (and submits) its first one.
        return (options[0],) if options and isinstance(widget, forms.Select) else ()
    shown = widget.format_value(field.prepare_value(value))
    return (_browser_text(widget, "" if shown is None else str(shown)),)


def posted_text(data, bound: forms.BoundField) -> tuple[str, ...] | None:
    """What the browser submitted for this input; None when it sent nothing at all for
    an input that always submits something (a missing select or text box was not edited:
    the page lost it, and that is no reason to clear the value)."""
    widget, name = bound.field.widget, bound.html_name
    if isinstance(widget, forms.CheckboxSelectMultiple | forms.SelectMultiple):
        chosen, options = data.getlist(name), _choice_values(bound.field)
        # In page order, as rendered; a value no box offers (forged) makes it an edit.
        return (*(v for v in options if v in chosen), *(v for v in chosen if v not in options))
    if isinstance(widget, forms.CheckboxInput):
        return ("on",) if data.getlist(name) else ()
    if name not in data:
        return None
    value = str(data.get(name))
    if isinstance(widget, forms.Select | forms.RadioSelect):
        return (value,)
    # A browser sent it sanitised already; anything else is compared as it came.
    return (_line_breaks(value),)


def digest(text: tuple[str, ...]) -> str:
    """A short fingerprint of an input's text, for the signed snapshot."""
    payload = json.dumps(text, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(payload, digest_size=12).hexdigest()
