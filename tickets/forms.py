"""TicketUpdateForm: the 27 PATCH fields of tickets/thena/schema.py as one Django form.

Forms validate with no network. What the user changed is decided per input by comparing
the text the browser sent with the text the page rendered into it (fingerprints kept in
the signed Snapshot), never by re-normalising values: an untouched input is never sent,
whatever its precision, time zone or JSON formatting. Value conversions live in
tickets/thena/wire.py.
"""

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from django import forms
from django.conf import settings
from django.core.validators import URLValidator
from django.urls import reverse
from django.utils.datastructures import MultiValueDict
from django.utils.functional import cached_property

from .models import SavedView
from .snapshot import Snapshot
from .thena import schema, wire
from .widgets import TemplateBoundField

MAX_TEXT = 100_000
JSON_MAX = 200_000
# Bounds of what Thena can store and every page can show (a moment near year 1 or 9999
# overflows once moved to another time zone). Years apply in UTC for date-times.
MIN_YEAR, MAX_YEAR = 1900, 9998
DATE_INPUT_MAX = 64  # characters: a datetime-local value is 16 to 23
JSON_MAX_DEPTH = 32
JSON_MAX_DIGITS = 400  # an integer in a JSON input
INTEGER_MAX = 2**53 - 1  # a custom integer field: what JavaScript keeps exactly
CF_PREFIX = "cf__"
RESOLVE_PREFIX = "resolve__"
# Why the user makes the change: kept in the audit entry, never sent to Thena.
REASON = "reason"
REASON_MAX = 1000
REASON_REQUIRED = "Give a reason for this change."
# Thena refuses a ticket without these; an empty choice is offered only when the ticket
# has none (so that the page does not silently pick one).
REQUIRED_CHOICES = frozenset({"statusId", "priorityId"})


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
    member_emails: dict[str, str] = field(default_factory=dict)  # member id -> email
    # Lists Thena did not send, as people call them ("statuses", "custom fields"): their
    # fields offer only the ticket's current value.
    missing: tuple[str, ...] = ()  # lists Thena did not send, as the page names them

    @property
    def missing_text(self) -> str:
        """The missing lists in words: "statuses", "statuses and assignees"."""
        *rest, last = self.missing
        return f"{', '.join(rest)} and {last}" if rest else last

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

WRITE_ONLY_NOTE = "Thena does not return this value; set it to change it."
CUSTOM_READ_ONLY = (
    "Thena sent these values in a shape that cannot be written back exactly, so they are "
    "read-only here: edit them in Thena."
)
CUSTOM_MISSING = "Thena did not send this ticket's custom field values: edit them in Thena."
CUSTOM_NO_DEFINITIONS = (
    "Thena did not send the team's custom fields, so these values are read-only for now. "
    "Reload to try again."
)

RESOLUTIONS = [("yours", "Yours"), ("theirs", "Theirs (now in Thena)"), ("original", "Original")]


# -- custom fields -----------------------------------------------------------------------


def option_pairs(definition: dict) -> list[tuple[str, str]]:
    pairs = []
    for option in definition.get("options") or []:
        if isinstance(option, dict):
            value = option.get("value") or option.get("id") or option.get("label") or ""
            pairs.append((str(value), str(option.get("label") or option.get("name") or value)))
        else:
            pairs.append((str(option), str(option)))
    return pairs


def _cf_form_field(definition: dict) -> forms.Field:
    kind = wire.cf_kind(definition)
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
            return forms.IntegerField(min_value=-INTEGER_MAX, max_value=INTEGER_MAX, **common)
        case "decimal":
            return forms.DecimalField(max_digits=30, **common)
        case "date":
            return BoundedDateField(
                widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"), **common
            )
        case "datetime":
            return BoundedDateTimeField(widget=_datetime_widget(), **common)
        case "choice":
            return forms.ChoiceField(choices=[("", "—"), *option_pairs(definition)], **common)
        case "multichoice":
            return forms.MultipleChoiceField(
                choices=option_pairs(definition), widget=forms.CheckboxSelectMultiple, **common
            )
        case "boolean":
            return forms.BooleanField(**common)
    common.setdefault("help_text", "This field type has no simple input: its values as JSON.")
    return JSONInputField(list, **common)


# -- form fields -------------------------------------------------------------------------


def _datetime_widget() -> forms.DateTimeInput:
    return forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")


OUT_OF_RANGE = f"Enter a date between the years {MIN_YEAR} and {MAX_YEAR}."


def _short_input(value, what: str) -> None:
    """Refuse overlong date text before parsing it ("1" x 5000 reads as 1111-11-11)."""
    if isinstance(value, str) and len(value) > DATE_INPUT_MAX:
        raise forms.ValidationError(f"This is too long to be {what}.", code="invalid")


class BoundedDateField(forms.DateField):
    """A date within MIN_YEAR..MAX_YEAR, read from a short text."""

    def to_python(self, value) -> date | None:
        _short_input(value, "a date")
        result = super().to_python(value)
        if result is not None and not MIN_YEAR <= result.year <= MAX_YEAR:
            raise forms.ValidationError(OUT_OF_RANGE, code="out_of_range")
        return result


class BoundedDateTimeField(forms.DateTimeField):
    """A date-time in the user's time zone whose UTC moment lies within MIN_YEAR..MAX_YEAR
    (9999-12-31T23:59 in UTC-11 is no moment Python, Thena or PostgreSQL can hold)."""

    def to_python(self, value) -> datetime | None:
        _short_input(value, "a date and time")
        try:
            result = super().to_python(value)
        except (OverflowError, ValueError):
            raise forms.ValidationError(OUT_OF_RANGE, code="out_of_range") from None
        if result is None:
            return None
        try:
            year = result.astimezone(UTC).year
        except (OverflowError, ValueError):
            year = None
        if year is None or not MIN_YEAR <= year <= MAX_YEAR:
            raise forms.ValidationError(OUT_OF_RANGE, code="out_of_range")
        return result


class _JSONRefused(ValueError):
    """A JSON text that parses but that Thena's JSON cannot carry reliably."""


def _json_constant(name: str):
    raise _JSONRefused(f"{name} is not a number JSON can carry")


def _json_float(text: str) -> float:
    number = float(text)
    if number in (float("inf"), float("-inf")):
        raise _JSONRefused(f"the number {text[:40]} is too large")
    return number


def _json_int(text: str) -> int:
    # Large integers are kept as typed (wire.equal: JSON's value); only absurd lengths,
    # which Python itself refuses past 4,300 digits, are turned away here, with a reason.
    if len(text.lstrip("-")) > JSON_MAX_DIGITS:
        raise _JSONRefused(f"a number has more than {JSON_MAX_DIGITS} digits")
    return int(text)


def _json_text_problem(text: str) -> str:
    if "\x00" in text:
        return "a NUL character (\\u0000)"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "a lone surrogate (\\ud800 to \\udfff): not a character"
    return ""


def _json_problem(value) -> str:
    """Why Thena's JSON cannot carry `value` reliably, or "" (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > JSON_MAX_DEPTH:
            return f"it nests deeper than {JSON_MAX_DEPTH} levels"
        if isinstance(item, dict):
            for key, child in item.items():
                if problem := _json_text_problem(key):
                    return f"a key holds {problem}"
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str) and (problem := _json_text_problem(item)):
            return f"a text holds {problem}"
    return ""


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
            parsed = json.loads(
                text, parse_constant=_json_constant, parse_float=_json_float, parse_int=_json_int
            )
        except _JSONRefused as error:
            raise forms.ValidationError(
                f"Thena cannot store this JSON: {error}.", code="unsupported"
            ) from None
        except RecursionError:
            raise forms.ValidationError(
                f"Thena cannot store this JSON: it nests deeper than {JSON_MAX_DEPTH} levels.",
                code="unsupported",
            ) from None
        except ValueError as error:
            raise forms.ValidationError(
                f"This is not valid JSON: {error}.", code="invalid"
            ) from None
        if problem := _json_problem(parsed):
            raise forms.ValidationError(
                f"Thena cannot store this JSON: {problem}.", code="unsupported"
            )
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


class ReasonField(forms.CharField):
    """Why a change is made, in the user's words, with LF line breaks: browsers send a
    textarea's as CR LF, and count each as one character against `maxlength`."""

    def to_python(self, value):
        text = super().to_python(value)
        return text.replace("\r\n", "\n").replace("\r", "\n")


class ReferenceField(forms.ChoiceField):
    """A select of known ids that also accepts an id outside the list when `open` (the
    account picker finds accounts by search, so the list holds only some of them)."""

    lists_current = True  # the form puts the ticket's current id into the options

    def __init__(self, *, open_choices: bool = False, **kwargs):
        self.open_choices = open_choices
        super().__init__(**kwargs)

    def valid_value(self, value):
        if self.open_choices:
            return len(value) <= 64 and value.replace("-", "").replace("_", "").isalnum()
        return super().valid_value(value)


def _write_only_field(spec: schema.Field) -> forms.Field:
    """A field whose current value cannot be read: shown empty, sent only when set. A
    box cannot be left "not set", so a yes/no is a select that starts at "not set"."""
    field = _form_field(spec, [], None)
    if spec.kind == "boolean":
        field = forms.TypedChoiceField(
            choices=[("", "— not set"), ("true", "Yes"), ("false", "No")],
            coerce=lambda value: value == "true",
            empty_value=None,
            label=spec.label,
            required=False,
        )
    field.help_text = f"{WRITE_ONLY_NOTE} {spec.help}".strip()
    return field


def _form_field(spec: schema.Field, options: list[tuple[str, str]], current) -> forms.Field:
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
            return BoundedDateTimeField(widget=_datetime_widget(), **common)
        case "boolean":
            return forms.BooleanField(**common)
        case "id":
            empty = [] if spec.name in REQUIRED_CHOICES and current else [("", "—")]
            return ReferenceField(
                # Lazy: normalising a long list is only worth it when it is rendered.
                choices=lambda: [*empty, *options],
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


def input_label(custom_fields: list[dict], name: str) -> str:
    """What people call an input: a field's label, or a custom field's name."""
    if name.startswith(CF_PREFIX):
        uid = name.removeprefix(CF_PREFIX)
        definition = next((d for d in custom_fields if d.get("uid") == uid), {})
        return definition.get("name") or uid
    spec = schema.field_map().get(name)
    return spec.label if spec else name


class TicketUpdateForm(forms.Form):
    """Unbound, it renders a ticket and signs a Snapshot of what it rendered. Bound, it
    takes the Snapshot the view read from the post and reports the user's edits."""

    bound_field_class = TemplateBoundField  # the page reads many of its attributes
    snapshot = forms.CharField(widget=forms.HiddenInput)

    def __init__(
        self, data=None, *, ticket: dict, choices: Choices, snapshot: Snapshot | None = None
    ):
        self.ticket = ticket
        self.choices = choices
        self.specs = schema.fields()
        self.custom_fields = [d for d in choices.custom_fields if d.get("uid")]
        self.unreadable = wire.unreadable(ticket)
        initial = {spec.name: wire.from_ticket(spec, ticket) for spec in self.specs}
        super().__init__(data, initial=initial)
        for spec in self.specs:
            if spec.name in self.unreadable:
                self.fields[spec.name] = _write_only_field(spec)
                continue
            current = ticket.get(spec.name)
            options = self._options(spec) if spec.kind == "id" else []
            field = self.fields[spec.name] = _form_field(spec, options, current)
            value = initial[spec.name]
            limit = getattr(field, "max_length", None)
            if isinstance(value, str) and limit and len(value) > limit:
                self.fields[spec.name] = TooLongField(len(value), label=spec.label, required=False)
        self._add_custom_fields()
        self.reason_required = settings.THENA_REQUIRE_REASON
        self.fields[REASON] = ReasonField(
            label="Reason for this change",
            required=False,  # only when something changed: see clean()
            max_length=REASON_MAX,
            widget=forms.Textarea(attrs={"rows": 2, "autocomplete": "off"}),
            help_text=("Required. " if self.reason_required else "Optional. ")
            + "Kept in the audit log with this change; never sent to Thena.",
        )
        if data is None:
            snapshot = Snapshot(ticket, self._rendered(), snapshot.originals if snapshot else {})
            self.initial["snapshot"] = snapshot.sign()
        self.snapshot = snapshot
        for name in self.snapshot.originals if self.snapshot else ():
            self.fields[RESOLVE_PREFIX + name] = forms.ChoiceField(
                label=f"Keep which {self.label(name)}",
                choices=RESOLUTIONS,
                required=False,
                widget=forms.RadioSelect,
            )

    @cached_property
    def validate_url(self) -> str:
        """Where the page checks a field as the user leaves it (POST ?field=<name>): one
        reverse() for the form rather than one per field."""
        return reverse("tickets:validate", args=[self.ticket.get("id")])

    @classmethod
    def after_conflict(cls, form: "TicketUpdateForm", fresh: dict, originals: dict):
        """The user's edits again, now over the ticket as Thena has it: every input they
        did not edit shows Thena's current value, so saving cannot send it back."""
        shown = cls(ticket=fresh, choices=form.choices, snapshot=Snapshot(fresh, {}, originals))
        data = shown.rendered_data()
        for name in form.edited_inputs:
            if name in shown.fields:
                html_name = form[name].html_name
                data.setlist(html_name, form.data.getlist(html_name))
                if not data.getlist(html_name):
                    del data[html_name]  # an unticked box is sent as nothing at all
        data["snapshot"] = shown.initial["snapshot"]
        if form.data.get(REASON):
            data[REASON] = form.data[REASON]
        for name in originals:
            data[RESOLVE_PREFIX + name] = "yours"
        bound = cls(data, ticket=fresh, choices=form.choices, snapshot=shown.snapshot)
        bound.is_valid()
        return bound

    def _options(self, spec: schema.Field) -> list[tuple[str, str]]:
        """The choices, keeping the ticket's current id selectable even when the lists
        do not hold it (an archived status, an account beyond the first page)."""
        listed = self.choices.for_field(spec.name)
        current = self.ticket.get(spec.name)
        if not isinstance(current, str) or not current:
            return listed
        if any(value == current for value, _ in listed):
            return listed
        label = self.ticket.get(CURRENT_LABELS.get(spec.name, "")) or current
        return [(current, str(label)), *listed]

    def _add_custom_fields(self) -> None:
        undefined = "custom fields" in self.choices.missing
        if undefined or not wire.cf_exact(self.ticket):
            # Shown as read, never submitted (a disabled input is not sent).
            raw = self.ticket.get("customFieldValues")
            note = CUSTOM_NO_DEFINITIONS if undefined else CUSTOM_READ_ONLY
            self.fields["customFieldValues"] = JSONInputField(
                list,
                label="Custom field values",
                required=False,
                disabled=True,
                help_text=CUSTOM_MISSING if raw is None else note,
            )
            self.initial["customFieldValues"] = raw if isinstance(raw, list) else None
            self.custom_fields = []
            return
        by_id = {wire.cf_id(item): item for item in wire.cf_items(self.ticket)}
        for definition in self.custom_fields:
            name = CF_PREFIX + definition["uid"]
            self.fields[name] = _cf_form_field(definition)
            self.initial[name] = wire.cf_initial(definition, by_id.get(definition["uid"]))
        if self.custom_fields:
            # Typed inputs stand for customFieldValues (see edits()).
            del self.fields["customFieldValues"]

    # -- what was rendered, what came back --

    @property
    def custom_field_names(self) -> list[str]:
        return [CF_PREFIX + d["uid"] for d in self.custom_fields]

    def _inputs(self) -> list[str]:
        """The names of the inputs that carry ticket data (not the snapshot, the reason or
        radios)."""
        return [
            name
            for name, f in self.fields.items()
            if name not in ("snapshot", REASON)
            and not name.startswith(RESOLVE_PREFIX)
            and not f.disabled
        ]

    def _rendered(self) -> dict[str, str]:
        return {name: wire.digest(wire.rendered_text(self[name])) for name in self._inputs()}

    def rendered_data(self) -> MultiValueDict:
        """What a browser submits for this (unbound) form as rendered."""
        data = MultiValueDict()
        for name in self._inputs():
            if text := wire.rendered_text(self[name]):  # an unticked box sends nothing
                data.setlist(self[name].html_name, list(text))
        return data

    @cached_property
    def edited_inputs(self) -> list[str]:
        """Inputs whose submitted text differs from what the page rendered into them."""
        seen = self.snapshot.inputs
        edited = []
        for name in self._inputs():
            posted = wire.posted_text(self.data, self[name])
            if posted is not None and name in seen and wire.digest(posted) != seen[name]:
                edited.append(name)
        return edited

    def label(self, name: str) -> str:
        return input_label(self.custom_fields, name)

    def clean(self):
        cleaned = super().clean()
        # Inputs the page had but this form cannot read (a list Thena did not send this
        # time): refuse rather than save without them.
        unread = [n for n in self.snapshot.inputs if n not in self.fields and n in self.data]
        if unread:
            raise forms.ValidationError(
                "Thena did not send what is needed to read %(names)s, so nothing was saved. "
                "Reload the page and make that change again.",
                code="unread",
                params={"names": ", ".join(self.label(n) for n in unread)},
            )
        edited = set(self.edited_inputs)
        if {"assignedAgentId", "assignedAgentEmail"} <= edited:
            agent, email = cleaned.get("assignedAgentId"), cleaned.get("assignedAgentEmail")
            known = self.choices.member_emails.get(agent or "", "")
            if email and agent and known.lower() != email.lower():
                self.add_error(
                    "assignedAgentEmail",
                    "This email is not the chosen assignee's. Choose the assignee or type "
                    "an email, not two different people.",
                )
        if self.reason_required and not cleaned.get(REASON) and REASON not in self.errors:
            # An untouched form is not refused: it saves nothing and says so.
            changed = bool(self.edited_inputs) if self.errors else bool(self.edits())
            if changed:
                self.add_error(REASON, forms.ValidationError(REASON_REQUIRED, code="required"))
        return cleaned

    @property
    def reason(self) -> str:
        """The reason given, once the form is valid ("" for none)."""
        return self.cleaned_data.get(REASON, "")

    def _clean_fields(self):
        # Only edited inputs are read: an untouched one is not sent, so what Thena holds
        # there (an ftp:// attachment, an over-long JSON) must not block saving the others.
        skip = set(self._inputs()) - set(self.edited_inputs)
        for name, form_field in self.fields.items():
            if name in skip or form_field.disabled:  # shown, never sent
                continue
            try:
                self.cleaned_data[name] = form_field._clean_bound_field(self[name])
            except forms.ValidationError as error:
                self.add_error(name, error)

    def edits(self) -> dict[str, Any]:
        """The user's changes, by input name: PATCH JSON for a field, the `data` list (or
        None to remove it) for a custom field. After a conflict, the choices made for the
        clashing inputs apply."""
        edits: dict[str, Any] = {}
        definitions = {CF_PREFIX + d["uid"]: d for d in self.custom_fields}
        specs = schema.field_map()
        for name in self.edited_inputs:
            value = self.cleaned_data.get(name)
            if name in definitions:
                edits[name] = wire.cf_to_data(definitions[name], value)
            else:
                edits[name] = wire.to_json(specs[name], value)
        for name, original in self.snapshot.originals.items():
            choice = self.cleaned_data.get(RESOLVE_PREFIX + name) or "yours"
            if choice == "theirs":
                edits.pop(name, None)
            elif choice == "original":
                edits[name] = original
        auto_link = schema.auto_link_name()
        # The flag only means something alongside a new account (thena-api.md §2.2).
        if auto_link in edits and (not edits[auto_link] or "accountId" not in edits):
            del edits[auto_link]
        for name in ("statusName", "priorityName"):
            if edits.get(name) is None:
                edits.pop(name, None)
        return edits

    def display(self, name: str, value) -> str:
        """A value in words, for the conflict table."""
        if name.startswith(CF_PREFIX) and isinstance(value, list):
            value = ", ".join(str(v) for v in wire.cf_values({"data": value}))
        if value in (None, "", [], {}):
            return "—"
        spec = schema.field_map().get(name)
        if spec and spec.kind == "id":
            return dict(self._options(spec)).get(value, value)
        if isinstance(value, bool):
            return "Yes" if value else "No"
        if isinstance(value, dict | list):
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


class RevertForm(forms.Form):
    """The revert controls of an audit entry (POST /audit/<number>/revert/): the field to
    revert ("all" for the whole change) and why; after a conflict, the signed token of
    what Thena held then and a choice per clashing field (resolve__<name>)."""

    field = forms.CharField(max_length=200)
    reason = ReasonField(label="Reason for this change", max_length=REASON_MAX, required=False)
    token = forms.CharField(required=False, widget=forms.HiddenInput)

    def __init__(self, data=None, *, clashing: list[tuple[str, str]] = ()):
        super().__init__(data)
        reason = self.fields[REASON]
        reason.required = settings.THENA_REQUIRE_REASON
        reason.error_messages["required"] = REASON_REQUIRED
        reason.widget.attrs["autocomplete"] = "off"
        for name, label in clashing:
            self.fields[RESOLVE_PREFIX + name] = forms.ChoiceField(
                label=f"Keep which {label}",
                choices=RESOLUTIONS,
                required=False,
                widget=forms.RadioSelect,
            )

    def names(self) -> list[str] | None:
        """The fields to revert, as input names; None for the whole change."""
        name = self.cleaned_data["field"]
        return None if name == "all" else [name]

    def resolutions(self) -> dict[str, str]:
        """The choice posted for each clashing field, by input name."""
        return {
            key.removeprefix(RESOLVE_PREFIX): str(value)
            for key, value in self.data.items()
            if key.startswith(RESOLVE_PREFIX)
        }


# -- bulk edit --------------------------------------------------------------------------

KEEP = ("", "— keep as is")
BULK_ID_INPUTS = ("statusId", "priorityId", "typeId", "assignedAgentId", "subTeamId", "formId")


class BulkEditForm(forms.Form):
    """The values a bulk edit sets (tickets/bulk.py). Every input starts at "keep as is";
    only those the user sets become part of the batch. Custom fields are sent ticket by
    ticket: a yes/no one is a select, so that "keep" is possible."""

    def __init__(self, data=None, *, choices: Choices, reason_required: bool = False):
        super().__init__(data)
        self.choices = choices
        specs = schema.field_map()
        for name in BULK_ID_INPUTS:
            self.fields[name] = forms.ChoiceField(
                label=specs[name].label,
                choices=[KEEP, *choices.for_field(name)],
                required=False,
            )
        self.fields["isPrivate"] = forms.TypedChoiceField(
            label=specs["isPrivate"].label,
            choices=[KEEP, ("true", "Yes: private"), ("false", "No: public")],
            coerce=lambda value: value == "true",
            empty_value=None,
            required=False,
        )
        self.fields["dueDate"] = BoundedDateTimeField(
            label=specs["dueDate"].label,
            widget=_datetime_widget(),
            required=False,
            help_text="Thena does not return due dates, so a set due date is always sent.",
        )
        self.order_fields(["statusId", "priorityId", "typeId", "assignedAgentId", "isPrivate"])
        self.definitions = {CF_PREFIX + d["uid"]: d for d in choices.custom_fields if d.get("uid")}
        for name, definition in self.definitions.items():
            field = _cf_form_field(definition)
            if isinstance(field, forms.ChoiceField) and not field.widget.allow_multiple_selected:
                field.choices = [KEEP, *option_pairs(definition)]  # "—" would read as "clear"
            elif isinstance(field, forms.BooleanField):
                field = forms.TypedChoiceField(
                    label=field.label,
                    choices=[KEEP, ("true", "Yes"), ("false", "No")],
                    coerce=lambda value: value == "true",
                    empty_value=None,
                    required=False,
                )
            self.fields[name] = field
        self.fields[REASON] = ReasonField(
            label="Reason for the change",
            max_length=REASON_MAX,
            required=reason_required,
            widget=forms.Textarea(attrs={"rows": 2}),
            help_text="Kept in the audit log with every ticket's entry; not sent to Thena.",
            error_messages={"required": REASON_REQUIRED},
        )

    @property
    def field_names(self) -> list[str]:
        return [name for name in self.fields if name != REASON and name not in self.definitions]

    @property
    def custom_field_names(self) -> list[str]:
        return list(self.definitions)

    def _is_set(self, name: str) -> bool:
        value = self.cleaned_data.get(name)
        return value not in (None, "", [])

    def clean(self):
        cleaned = super().clean()
        if not self.errors and not any(self._is_set(n) for n in self.fields if n != REASON):
            raise forms.ValidationError("Choose at least one field to change.", code="empty")
        return cleaned

    def values(self) -> dict[str, Any]:
        """The inputs set, as PATCH JSON (a custom field's `data` list, by cf__<uid>)."""
        specs = schema.field_map()
        values = {}
        for name in self.fields:
            if name == REASON or not self._is_set(name):
                continue
            value = self.cleaned_data[name]
            if name in self.definitions:
                values[name] = wire.cf_to_data(self.definitions[name], value)
            else:
                values[name] = wire.to_json(specs[name], value)
        return values

    def value_labels(self) -> dict[str, str]:
        """The same, as the page showed them: the option's name, not its id."""
        labels = {}
        for name in self.values():
            field = self.fields[name]
            raw = self.data.getlist(self.add_prefix(name)) if hasattr(self.data, "getlist") else []
            options = dict(getattr(field, "choices", []) or [])
            shown = [str(options.get(v, v)) for v in raw] if options else raw
            labels[name] = ", ".join(shown)[:500]
        return labels

    @property
    def reason(self) -> str:
        return self.cleaned_data.get(REASON, "")


class SavedViewForm(forms.Form):
    name = forms.CharField(max_length=SavedView.NAME_MAX, label="Name this view")
    query = forms.CharField(max_length=2000, required=False, widget=forms.HiddenInput)
