"""An entry's changes as people read them: field labels, the names recorded beside ids
when the entry was written ("before_label", "after_label", and "fields" for custom
fields; see services.Labeller), values in words. Used by the entry's page, the ticket's
history panel and the CSV export. Entries written before names were recorded read with
their raw values: nothing is looked up now, so a status renamed since cannot rename what
the log says.
"""

import json
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any

from django.utils import timezone
from django.utils.dates import MONTHS_3

from ..models import AuditEntry
from ..thena import schema, wire

EMPTY = "(empty)"
ARROW = " → "


@dataclass(frozen=True)
class CustomFieldChange:
    uid: str
    name: str  # the field's name as recorded, else its uid
    before: str  # in words ("" when empty)
    after: str
    before_readable: bool = True  # False when the values before could not be read


def field_label(name: str) -> str:
    spec = schema.field_map().get(name)
    return spec.label if spec else name


def custom_field_changes(change: Any) -> list[CustomFieldChange]:
    """The custom fields a customFieldValues change touched, by name."""
    if not isinstance(change, dict):
        return []
    fields = change.get("fields")
    if isinstance(fields, dict):
        found = [
            CustomFieldChange(
                str(uid),
                str(words.get("name") or uid),
                _text(words.get("before")),
                _text(words.get("after")),
                "before" in words,
            )
            for uid, words in fields.items()
            if isinstance(words, dict)
        ]
    else:  # written before names were recorded: the raw values, by uid
        readable = isinstance(change.get("before"), list)
        old, new = _data_by_uid(change.get("before")), _data_by_uid(change.get("after"))
        found = [
            CustomFieldChange(uid, uid, _raw(old.get(uid)), _raw(new.get(uid)), readable)
            for uid in old.keys() | new.keys()
            if not (readable and wire.equal(old.get(uid), new.get(uid)))
        ]
    return sorted(found, key=lambda field: (field.name.casefold(), field.uid))


def change_lines(changes: Any, *, limit: int | None = None, tz: tzinfo | None = None) -> list[str]:
    """One line per change, in the edit form's order: "Priority: High → Urgent", a
    write-only value as "Due date: set to 24 Dec 2026 09:30", a custom field by its name.
    Values longer than `limit` characters are cut; date-times read in `tz` (default: the
    current time zone; given, it is named after the time). An export calls this for each
    of a million entries: it looks each field up once."""
    if not isinstance(changes, dict):
        return []
    specs, order = schema.field_map(), schema.field_order()
    names = list(changes)
    if len(names) > 1:
        names.sort(key=lambda name: (order.get(name, len(order)), name))
    lines = []
    for name in names:
        change = changes[name]
        if not isinstance(change, dict):
            change = {"before": None, "after": change}
        if name == "customFieldValues":
            custom = custom_field_changes(change)
            lines += [
                _line(field.name, field.before_readable, field.before, field.after, limit)
                for field in custom
            ]
            if custom:
                continue
        spec = specs.get(name)
        moments = spec is not None and spec.kind == "datetime"
        before = _words(change.get("before"), change.get("before_label"), moments, tz)
        after = _words(change.get("after"), change.get("after_label"), moments, tz)
        lines.append(_line(spec.label if spec else name, "before" in change, before, after, limit))
    return lines


def revert_numbers(entries: list[AuditEntry]) -> dict[int, int]:
    """The numbers of the entries that `entries` revert, by entry id. Numbers run 1..N
    with no gap, so naming one tells nothing about entries a user may not read."""
    ids = {entry.revert_of for entry in entries if entry.revert_of}
    if not ids:
        return {}
    return dict(AuditEntry.objects.filter(pk__in=ids).values_list("id", "number"))


def drift_numbers(entries: list[AuditEntry]) -> dict[int, int]:
    """The numbers of the dashboard edits that changes made in Thena among `entries`
    overrode shortly after (AuditEntry.drift_of), by entry id."""
    ids = {entry.drift_of for entry in entries if entry.drift_of}
    if not ids:
        return {}
    return dict(AuditEntry.objects.filter(pk__in=ids).values_list("id", "number"))


def _line(label: str, readable: bool, before: str, after: str, limit: int | None) -> str:
    after = _cut(after, limit) or EMPTY
    if not readable:
        return f"{label}: set to {after}"
    return f"{label}: {_cut(before, limit) or EMPTY}{ARROW}{after}"


def _words(value: Any, label: Any, moments: bool, tz: tzinfo | None) -> str:
    """A field's recorded value in words: its label when one was recorded; `moments`
    when the field's values are date-times. Text first: most values are."""
    if isinstance(label, str) and label:
        return label
    if isinstance(value, str):
        return _moment(value, tz) if moments and value else value
    if value is None or value == [] or value == {}:
        return ""
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return ", ".join(value)
    return _text(value)


def _moment(value: str, tz: tzinfo | None) -> str:
    """dateformat's "j M Y H:i" (and " T" with `tz`), written out: a DateFormat costs
    more than the rest of a change's words, and an export writes a million."""
    moment = wire.aware(value)
    if moment is None:
        return value
    try:
        shown = moment.astimezone(tz or timezone.get_current_timezone())
    except (OverflowError, ValueError):
        return value
    text = (
        f"{shown.day} {MONTHS_3[shown.month].title()} {shown.year:04d}"
        f" {shown.hour:02d}:{shown.minute:02d}"
    )
    return f"{text} {shown.tzname()}" if tz else text


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _raw(data: Any) -> str:
    if isinstance(data, list):
        return ", ".join(_text(value) for value in wire.cf_values({"data": data}))
    return _text(data)


def _data_by_uid(items: Any) -> dict[str, Any]:
    if not isinstance(items, list):
        return {}
    return {
        uid: item.get("data", wire.cf_values(item))
        for item in items
        if isinstance(item, dict) and (uid := wire.cf_id(item)) is not None
    }


def _cut(text: str, limit: int | None) -> str:
    """One line, at most `limit` characters."""
    text = " ".join(text.split())
    if limit and len(text) > limit:
        return text[: limit - 1].rstrip() + "…"
    return text
