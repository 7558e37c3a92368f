"""TicketUpdateForm: the 27 PATCH fields of tickets/thena/schema.py as one Django form.

Forms validate and normalise with no network. Every field has a *wire* value (the JSON the
PATCH body would carry); the signed snapshot holds the wire values the user saw, and
`changes()` is the PATCH body: the fields whose wire value differs from the snapshot.
"""

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django import forms
from django.core import signing
from django.core.validators import URLValidator
from django.utils.dateparse import parse_datetime

from .thena import schema

SNAPSHOT_SALT = "tickets.edit.snapshot"
SNAPSHOT_MAX_AGE = 60 * 60 * 24  # a day-old form is stale enough to reload
MAX_TEXT = 100_000
JSON_MAX = 200_000

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


@dataclass(frozen=True)
class Choices:
    """What the edit form offers, fetched for the ticket's team (see services)."""

    statuses: list[tuple[str, str]] = field(default_factory=list)
    priorities: list[tuple[str, str]] = field(default_factory=list)
    types: list[tuple[str, str]] = field(default_factory=list)
    sentiments: list[tuple[str, str]] = field(default_factory=list)
    members: list[tuple[str, str]] = field(default_factory=list)
    accounts: list[tuple[str, str]] = field(default_factory=list)
    sub_teams: list[tuple[str, str]] = field(default_factory=list)
    forms: list[tuple[str, str]] = field(default_factory=list)
    custom_fields: list[dict] = field(default_factory=list)

    def for_field(self, name: str) -> list[tuple[str, str]]:
        return {
            "statusId": self.statuses,
            "priorityId": self.priorities,
            "typeId": self.types,
            "sentimentId": self.sentiments,
            "assignedAgentId": self.members,
            "closedById": self.members,
            "accountId": self.accounts,
            "subTeamId": self.sub_teams,
            "formId": self.forms,
        }[name]


# Where a ticket object keeps the display name of a referenced id.
CURRENT_LABELS = {
    "accountId": "account",
    "assignedAgentId": "assignedAgent",
    "closedById": "closedBy",
    "subTeamId": "subTeamName",
    "statusId": "status",
    "priorityId": "priority",
    "typeId": "type",
    "sentimentId": "sentiment",
}


# -- wire values ------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).replace(second=0, microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def _to_wire(spec: schema.Field, value):
    """A form (python) value as the JSON the PATCH body carries. Empty values normalise so
    that "absent upstream" and "left empty" compare equal."""
    match spec.kind:
        case "string" | "text":
            return value or ""
        case "email" | "id" | "name":
            return value or None
        case "datetime":
            return _iso(value)
        case "boolean":
            return bool(value)
        case "json_object":
            return value if isinstance(value, dict) else {}
        case "url_list" | "enum_list" | "object_list":
            return list(value or [])
    raise ValueError(spec.kind)


def ticket_value(spec: schema.Field, ticket: dict):
    """The python value a field starts from, read from a ticket object."""
    raw = ticket.get(spec.name)
    match spec.kind:
        case "datetime":
            parsed = parse_datetime(raw) if isinstance(raw, str) else None
            return parsed.replace(second=0, microsecond=0) if parsed else None
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


def ticket_wire(ticket: dict) -> dict:
    """The wire values of every field as a ticket object holds them."""
    return {spec.name: _to_wire(spec, ticket_value(spec, ticket)) for spec in schema.fields()}


def sign_snapshot(ticket: dict, *, originals: dict | None = None) -> str:
    """The values the user is shown, signed into the form. After a conflict, `originals`
    keeps what the user first saw of the clashing fields, so they can choose it."""
    data = {
        "id": ticket["id"],
        "teamId": ticket.get("teamId"),
        "ticketIdentifier": ticket.get("ticketIdentifier"),
        "updatedAt": ticket.get("updatedAt"),
        "values": ticket_wire(ticket),
        "originals": originals or {},
    }
    return signing.dumps(data, salt=SNAPSHOT_SALT, compress=True)


def load_snapshot(value: str) -> dict:
    return signing.loads(value, salt=SNAPSHOT_SALT, max_age=SNAPSHOT_MAX_AGE)


RESOLUTIONS = [("yours", "Yours"), ("theirs", "Theirs (now in Thena)"), ("original", "Original")]


# -- custom fields -----------------------------------------------------------------------
# The wire shape of a custom-field value is undocumented (thena-api.md §2.3); we read and
# write {"customFieldId": uid, "data": [{"value": "..."}]} and keep items we do not
# recognise untouched.


def _cf_id(item: dict) -> str | None:
    for key in ("customFieldId", "customFieldUid", "uid", "id"):
        if isinstance(item.get(key), str):
            return item[key]
    return None


def _cf_values(item: dict) -> list:
    data = item.get("data")
    if isinstance(data, list):
        return [d.get("value") if isinstance(d, dict) else d for d in data]
    return [item["value"]] if "value" in item else []


def _option_pairs(definition: dict) -> list[tuple[str, str]]:
    pairs = []
    for option in definition.get("options") or []:
        if isinstance(option, dict):
            value = option.get("value") or option.get("id") or option.get("label") or ""
            pairs.append((str(value), str(option.get("label") or option.get("name") or value)))
        else:
            pairs.append((str(option), str(option)))
    return pairs


def _cf_form_field(definition: dict) -> forms.Field:
    kind = CF_INPUTS.get(definition.get("fieldType", ""), "json")
    common = {"required": False, "label": definition.get("name") or definition["uid"]}
    if definition.get("hintText"):
        common["help_text"] = definition["hintText"]
    match kind:
        case "text":
            return forms.CharField(max_length=2000, **common)
        case "textarea":
            return forms.CharField(
                widget=forms.Textarea(attrs={"rows": 3}), max_length=MAX_TEXT, **common
            )
        case "email":
            return forms.EmailField(**common)
        case "url":
            return forms.URLField(assume_scheme="https", **common)
        case "integer":
            return forms.IntegerField(**common)
        case "decimal":
            return forms.DecimalField(**common)
        case "date":
            return forms.DateField(
                widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"), **common
            )
        case "datetime":
            return forms.DateTimeField(widget=_datetime_widget(), **common)
        case "choice":
            return forms.ChoiceField(choices=[("", "—"), *_option_pairs(definition)], **common)
        case "multichoice":
            return forms.MultipleChoiceField(
                choices=_option_pairs(definition), widget=forms.CheckboxSelectMultiple, **common
            )
        case "boolean":
            return forms.BooleanField(**common)
    common.setdefault("help_text", "This field type has no simple input: its values as JSON.")
    return JSONInputField(list, **common)


def _cf_to_data(definition: dict, value) -> list | None:
    """A typed custom-field input as the item's `data` list; None when empty."""
    kind = CF_INPUTS.get(definition.get("fieldType", ""), "json")
    if kind == "json":
        return value or None
    if kind == "boolean":
        return [{"value": "true" if value else "false"}]
    if value in (None, "", []):
        return None
    if kind == "multichoice":
        return [{"value": v} for v in value]
    if kind == "datetime":
        value = _iso(value)
    elif kind == "date":
        value = value.isoformat()
    return [{"value": str(value)}]


def _cf_initial(definition: dict, values: list):
    kind = CF_INPUTS.get(definition.get("fieldType", ""), "json")
    if kind == "json":
        return values or None
    if kind == "multichoice":
        return [str(v) for v in values]
    first = values[0] if values else None
    if kind == "boolean":
        return str(first).lower() == "true"
    if kind == "datetime" and isinstance(first, str):
        return parse_datetime(first)
    return first


# -- form fields -------------------------------------------------------------------------


def _datetime_widget() -> forms.DateTimeInput:
    return forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")


class JSONInputField(forms.CharField):
    """A JSON object or list, edited as indented text and checked on the way in."""

    widget = forms.Textarea(attrs={"rows": 4, "spellcheck": "false", "class": "code"})
    EXAMPLES = {dict: '{"key": "value"}', list: '[{"value": "a"}]'}

    def __init__(self, json_type: type = dict, **kwargs):
        self.json_type = json_type
        super().__init__(max_length=JSON_MAX, strip=True, **kwargs)

    def prepare_value(self, value):
        if isinstance(value, self.json_type):
            return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True) if value else ""
        return value

    def to_python(self, value):
        text = super().to_python(value)
        if not text:
            return self.json_type()
        try:
            parsed = json.loads(text)
        except ValueError as error:
            raise forms.ValidationError(
                f"This is not valid JSON: {error}.", code="invalid"
            ) from None
        if not isinstance(parsed, self.json_type):
            kind = "object" if self.json_type is dict else "list"
            example = self.EXAMPLES[self.json_type]
            raise forms.ValidationError(f"Enter a JSON {kind}, e.g. {example}.", code="invalid")
        return parsed


class URLListField(forms.CharField):
    widget = forms.Textarea(attrs={"rows": 3, "spellcheck": "false"})

    def __init__(self, **kwargs):
        super().__init__(max_length=JSON_MAX, **kwargs)

    def prepare_value(self, value):
        return "\n".join(value) if isinstance(value, list) else value

    def to_python(self, value):
        lines = [line.strip() for line in (super().to_python(value) or "").splitlines()]
        return [line for line in lines if line]

    def validate(self, value):
        super().validate(value)
        check = URLValidator(schemes=["http", "https"])
        bad = []
        for number, url in enumerate(value, start=1):
            try:
                check(url)
            except forms.ValidationError:
                bad.append(f"line {number} ({url[:60]})")
        if bad:
            raise forms.ValidationError(
                "These are not http(s) URLs: %(lines)s.",
                code="invalid",
                params={"lines": ", ".join(bad)},
            )


class TooLongField(forms.CharField):
    """A text longer than the form edits: shown cut short and read-only, so submitting
    the form neither sends nor truncates it."""

    PREVIEW = 5_000

    def __init__(self, length: int, **kwargs):
        kwargs["help_text"] = (
            f"{length:,} characters: too long to edit here, shown cut short. Edit it in Thena."
        )
        super().__init__(widget=forms.Textarea(attrs={"rows": 6}), disabled=True, **kwargs)

    def prepare_value(self, value):
        if isinstance(value, str) and len(value) > self.PREVIEW:
            return value[: self.PREVIEW] + " …"
        return value


class ReferenceField(forms.ChoiceField):
    """A select of known ids that also accepts an id outside the list when `open` (the
    account picker finds accounts by search, so the list holds only some of them)."""

    def __init__(self, *, open_choices: bool = False, **kwargs):
        self.open_choices = open_choices
        super().__init__(**kwargs)

    def valid_value(self, value):
        if self.open_choices:
            return len(value) <= 64 and value.replace("-", "").replace("_", "").isalnum()
        return super().valid_value(value)


def _form_field(spec: schema.Field, options: list[tuple[str, str]]) -> forms.Field:
    common = {"label": spec.label, "help_text": spec.help, "required": False}
    match spec.kind:
        case "string":
            if spec.name == "title":
                common["required"] = True
            return forms.CharField(max_length=1000, **common)
        case "text":
            return forms.CharField(
                widget=forms.Textarea(attrs={"rows": 6}), max_length=MAX_TEXT, strip=False, **common
            )
        case "email":
            return forms.EmailField(**common)
        case "datetime":
            return forms.DateTimeField(widget=_datetime_widget(), **common)
        case "boolean":
            return forms.BooleanField(**common)
        case "id":
            return ReferenceField(
                # Lazy: normalising a long list is only worth it when it is rendered.
                choices=lambda: [("", "—"), *options],
                open_choices=spec.name == "accountId",
                **common,
            )
        case "name":
            return forms.CharField(max_length=200, **common)
        case "json_object":
            return JSONInputField(dict, **common)
        case "url_list":
            return URLListField(**common)
        case "enum_list":
            return forms.MultipleChoiceField(
                choices=[(c, c) for c in spec.choices],
                widget=forms.CheckboxSelectMultiple,
                **common,
            )
        case "object_list":
            return JSONInputField(list, **common)
    raise ValueError(spec.kind)


class TicketUpdateForm(forms.Form):
    snapshot = forms.CharField(widget=forms.HiddenInput)

    def __init__(self, data=None, *, ticket: dict, choices: Choices):
        self.ticket = ticket
        self.choices = choices
        self.specs = schema.fields()
        self.custom_fields = [d for d in choices.custom_fields if d.get("uid")]
        initial = {spec.name: ticket_value(spec, ticket) for spec in self.specs}
        if data is None:  # a bound form keeps the snapshot it was posted with
            initial["snapshot"] = sign_snapshot(ticket)
        super().__init__(data, initial=initial)
        for spec in self.specs:
            options = self._options(spec) if spec.kind == "id" else []
            field = self.fields[spec.name] = _form_field(spec, options)
            value = initial[spec.name]
            limit = getattr(field, "max_length", None)
            if isinstance(value, str) and limit and len(value) > limit:
                self.fields[spec.name] = TooLongField(len(value), label=spec.label, required=False)
        self._add_custom_fields(initial["customFieldValues"])
        self.conflicts = self._conflicts(data)
        for name in self.conflicts:
            self.fields[f"resolve__{name}"] = forms.ChoiceField(
                choices=RESOLUTIONS, required=False, widget=forms.RadioSelect
            )

    def _conflicts(self, data) -> dict:
        """The originals carried by a post-conflict snapshot (verified again in clean)."""
        try:
            return load_snapshot((data or {}).get("snapshot", "")).get("originals") or {}
        except signing.BadSignature:
            return {}

    def _options(self, spec: schema.Field) -> list[tuple[str, str]]:
        """The choices, keeping the ticket's current id selectable even when the lists
        do not hold it (an archived status, an account beyond the first page)."""
        listed = self.choices.for_field(spec.name)
        current = self.ticket.get(spec.name)
        if not current or any(value == current for value, _ in listed):
            return listed
        label = self.ticket.get(CURRENT_LABELS.get(spec.name, "")) or current
        return [(current, label), *listed]

    def _add_custom_fields(self, items: list[dict]) -> None:
        by_id = {_cf_id(item): item for item in items}
        self.custom_items = items
        for definition in self.custom_fields:
            name = f"cf__{definition['uid']}"
            self.fields[name] = _cf_form_field(definition)
            item = by_id.get(definition["uid"])
            self.initial[name] = _cf_initial(definition, _cf_values(item) if item else [])
        if self.custom_fields:
            # Typed inputs stand for customFieldValues (see _custom_field_values).
            del self.fields["customFieldValues"]

    # -- reading --

    @property
    def custom_field_names(self) -> list[str]:
        return [f"cf__{d['uid']}" for d in self.custom_fields]

    def clean_snapshot(self) -> dict:
        try:
            data = signing.loads(
                self.cleaned_data["snapshot"], salt=SNAPSHOT_SALT, max_age=SNAPSHOT_MAX_AGE
            )
        except signing.SignatureExpired:
            raise forms.ValidationError(
                "This form is more than a day old. Reload the page to edit the ticket."
            ) from None
        except signing.BadSignature:
            raise forms.ValidationError(
                "This form was tampered with or is from another server. Reload the page."
            ) from None
        if data.get("id") != self.ticket["id"]:
            raise forms.ValidationError("This form belongs to another ticket. Reload the page.")
        return data

    def _custom_field_values(self) -> list[dict]:
        """The ticket's items in their order, with only the inputs the user changed
        rewritten, so an untouched form gives back exactly the list it was given and
        items we do not understand ride along untouched."""
        items = [dict(item) for item in self.custom_items]
        position = {_cf_id(item): index for index, item in enumerate(items)}
        for definition in self.custom_fields:
            name = f"cf__{definition['uid']}"
            if name not in self.changed_data:
                continue
            data = _cf_to_data(definition, self.cleaned_data.get(name))
            if definition["uid"] in position:
                items[position[definition["uid"]]]["data"] = data
            elif data is not None:
                items.append({"customFieldId": definition["uid"], "data": data})
        return [item for item in items if item.get("data", True) is not None]

    def wire_values(self) -> dict:
        """Every field's wire value from the user's (valid) input."""
        values = {}
        for spec in self.specs:
            if spec.name == "customFieldValues" and self.custom_fields:
                values[spec.name] = self._custom_field_values()
            else:
                values[spec.name] = _to_wire(spec, self.cleaned_data.get(spec.name))
        snapshot = self.cleaned_data["snapshot"]
        for name, original in snapshot.get("originals", {}).items():
            choice = self.cleaned_data.get(f"resolve__{name}")
            if choice == "theirs":
                values[name] = snapshot["values"].get(name)
            elif choice == "original":
                values[name] = original
        return values

    def changes(self) -> dict:
        """The PATCH body: the fields the user changed against the snapshot they saw."""
        seen = self.cleaned_data["snapshot"]["values"]
        values = self.wire_values()
        body = {
            name: value
            for name, value in values.items()
            if value != seen.get(name) and not getattr(self.fields.get(name), "disabled", False)
        }
        auto_link = schema.auto_link_name()
        # The flag only means something alongside a new account (thena-api.md §2.2).
        if auto_link in body and (not body[auto_link] or "accountId" not in body):
            del body[auto_link]
        for name in ("statusName", "priorityName"):
            if body.get(name) is None:
                body.pop(name, None)
        return body

    def display(self, name: str, value) -> str:
        """A wire value in words, for the conflict table."""
        if value in (None, "", [], {}):
            return "—"
        spec = schema.field_map().get(name)
        if spec and spec.kind == "id":
            return dict(self._options(spec)).get(value, value)
        if isinstance(value, bool):
            return "Yes" if value else "No"
        if isinstance(value, (dict, list)):
            return json.dumps(value, indent=2, ensure_ascii=False)
        return str(value)

    def groups(self) -> list[tuple[str, str, list]]:
        """(key, title, bound fields) in display order, for the template."""
        grouped = []
        for key, title in schema.GROUPS:
            if key == "advanced" and self.custom_fields:
                grouped.append(
                    ("custom", "Custom fields", [self[n] for n in self.custom_field_names])
                )
            names = [s.name for s in self.specs if s.group == key and s.name in self.fields]
            grouped.append((key, title, [self[name] for name in names]))
        return grouped
