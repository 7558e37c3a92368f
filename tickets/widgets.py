"""The form renderer (settings.FORM_RENDERER): Django's own widget templates, with the
common ones written out in Python.

A ticket's edit page renders some 35 widgets and 80 options; through the template
engine each is several templates deep (select -> option -> attrs), which made the
widgets half of the page's CPU. Here the templates below are produced by string
formatting instead, escaping exactly as the template engine does, so the markup is the
same to the byte (tests/test_render_speed.py renders every kind both ways).

Nothing is assumed about the installed Django: the first render compares each template's
source with its copy in SOURCES below, and any that differs (a new Django version, an
override) is rendered by its template again. Any value of a type the Python does not
handle the way the template does (a number label, a callable, an optgroup) is rendered
by the template too.

The same goes for two of the ticket page's own templates, rendered through this renderer
so that it can stand in for them: a field of the edit form (label, input, help, errors;
some 35 per page) and an entry of the history panel (EDIT_FIELD, HISTORY_ITEM). Each
is rendered in Python while its file reads as the copy here.
"""

import html
from collections.abc import Callable

from django import forms
from django.forms.renderers import DjangoTemplates
from django.template import TemplateDoesNotExist
from django.template.defaultfilters import date as date_filter
from django.template.defaultfilters import truncatechars
from django.urls import reverse
from django.utils.safestring import SafeData, SafeString
from django.utils.timezone import template_localtime

from .templatetags.moments import ago

WIDGETS = "django/forms/widgets/"

# Django's templates, as this module reproduces them (django/forms/templates/).
SOURCES = {
    "attrs.html": (
        "{% for name, value in widget.attrs.items %}{% if value is not False %} {{ name }}"
        "{% if value is not True %}=\"{{ value|stringformat:'s' }}\"{% endif %}{% endif %}"
        "{% endfor %}"
    ),
    "input.html": (
        '<input type="{{ widget.type }}" name="{{ widget.name }}"{% if widget.value != None %}'
        " value=\"{{ widget.value|stringformat:'s' }}\"{% endif %}"
        '{% include "django/forms/widgets/attrs.html" %}>\n'
    ),
    "textarea.html": (
        '<textarea name="{{ widget.name }}"{% include "django/forms/widgets/attrs.html" %}>\n'
        "{% if widget.value %}{{ widget.value }}{% endif %}</textarea>\n"
    ),
    "select.html": (
        '<select name="{{ widget.name }}"{% include "django/forms/widgets/attrs.html" %}>'
        "{% for group_name, group_choices, group_index in widget.optgroups %}"
        "{% if group_name %}\n"
        '  <optgroup label="{{ group_name }}">{% endif %}{% for option in group_choices %}\n'
        "  {% include option.template_name with widget=option %}{% endfor %}"
        "{% if group_name %}\n"
        "  </optgroup>{% endif %}{% endfor %}\n"
        "</select>\n"
    ),
    "select_option.html": (
        "<option value=\"{{ widget.value|stringformat:'s' }}\""
        '{% include "django/forms/widgets/attrs.html" %}>{{ widget.label }}</option>\n'
    ),
    "multiple_input.html": (
        '{% with id=widget.attrs.id %}<div{% if id %} id="{{ id }}"{% endif %}'
        '{% if widget.attrs.class %} class="{{ widget.attrs.class }}"{% endif %}>'
        "{% for group, options, index in widget.optgroups %}{% if group %}\n"
        "  <div><label>{{ group }}</label>{% endif %}{% for option in options %}<div>\n"
        "    {% include option.template_name with widget=option %}</div>{% endfor %}"
        "{% if group %}\n"
        "  </div>{% endif %}{% endfor %}\n"
        "</div>{% endwith %}\n"
    ),
    "input_option.html": (
        "{% if widget.wrap_label %}<label{% if widget.attrs.id %}"
        ' for="{{ widget.attrs.id }}"{% endif %}>{% endif %}'
        '{% include "django/forms/widgets/input.html" %}'
        "{% if widget.wrap_label %} {{ widget.label }}</label>{% endif %}\n"
    ),
}
_INCLUDES_INPUT = '{% include "django/forms/widgets/input.html" %}\n'
_INCLUDES_MULTIPLE = '{% include "django/forms/widgets/multiple_input.html" %}\n'
_INCLUDES_OPTION = '{% include "django/forms/widgets/input_option.html" %}\n'
for _name in ("text", "email", "url", "number", "hidden", "password", "search", "tel"):
    SOURCES[f"{_name}.html"] = _INCLUDES_INPUT
for _name in ("color", "date", "datetime", "time", "checkbox"):
    SOURCES[f"{_name}.html"] = _INCLUDES_INPUT
SOURCES["checkbox_select.html"] = SOURCES["radio.html"] = _INCLUDES_MULTIPLE
SOURCES["checkbox_option.html"] = SOURCES["radio_option.html"] = _INCLUDES_OPTION


# The edit page's field (tickets/templates/tickets/edit_field.html), as _edit_field renders it.
EDIT_FIELD = "tickets/edit_field.html"
EDIT_FIELD_SOURCE = (
    "{# The edit page's field. tickets/widgets.py renders it in Python while this file reads as "
    "EDIT_FIELD_SOURCE there. #}\n"
    '          <div id="field-{{ field.name }}" class="field kind-{{ field.kind }}'
    '{% if field.errors %} has-error{% endif %}"\n'
    '               hx-post="{{ field.validate_url }}?field={{ field.name }}" hx-trigger="change" '
    'hx-target="this" hx-swap="outerHTML">\n'
    '            {% if field.layout == "check" %}\n'
    '              <label class="check">{{ field }} {{ field.label }}</label>\n'
    '            {% elif field.layout == "group" %}\n'
    '              <fieldset class="checks"><legend>{{ field.label }}</legend>'
    "{{ field }}</fieldset>\n"
    "            {% else %}\n"
    '              <label for="{{ field.id_for_label }}">{{ field.label }}</label>\n'
    '              {% if field.name == "accountId" %}\n'
    '                {# Outside any form (form=""): the search text is never submitted. The answer '
    "replaces the whole select and keeps the chosen account selected. #}\n"
    '                <input type="search" class="picker-search" name="q" form="" '
    'aria-label="Search accounts" placeholder="Search accounts\u2026"\n'
    "                       hx-get=\"{% url 'tickets:account-options' %}\" "
    'hx-trigger="input changed delay:300ms" hx-target="#{{ field.id_for_label }}" '
    'hx-swap="outerHTML"\n'
    '                       hx-include="#{{ field.id_for_label }}" hx-params="accountId,q" '
    'hx-sync="this:replace">\n'
    "              {% endif %}\n"
    "              {{ field }}\n"
    "            {% endif %}\n"
    '            {% if field.help_text %}<p class="help" id="{{ field.auto_id }}_helptext">'
    "{{ field.help_text }}</p>{% endif %}\n"
    '            {% for error in field.errors %}<p class="field-error" '
    'id="{{ field.auto_id }}_error">{{ error }}</p>{% endfor %}\n'
    "          </div>\n"
)


# One entry of the ticket page's history panel (tickets/templates/tickets/history_item.html),
# as _history_item renders it.
HISTORY_ITEM = "tickets/history_item.html"
HISTORY_ITEM_SOURCE = (
    "{# One entry of the ticket page's history panel. tickets/widgets.py renders it in Python "
    "while this file reads as HISTORY_ITEM_SOURCE there. #}{% load moments %}\n"
    '    <article class="history-entry{% if item.external %} external{% endif %}">\n'
    '      <p>{% if item.external %}<span class="badge source-thena">In Thena</span>{% else %}'
    '<span class="badge outcome-{{ item.outcome }}">{{ item.outcome }}</span>{% endif %}\n'
    '        <a href="{{ item.url }}"><time datetime="{{ item.entry.created_at|date:\'c\' }}" '
    'title="{{ item.entry.created_at|date:"Y-m-d H:i T" }}">{{ item.entry.created_at|ago }}'
    "</time></a>\n"
    '        by {{ item.entry.actor_username|default:"someone" }}</p>\n'
    '      {% if item.drift_of_number %}<p class="small drift" role="note"><strong>Tug of war:'
    "</strong> this undid the dashboard\u2019s edit <a href=\"{% url 'audit:detail' "
    'item.drift_of_number %}">#{{ item.drift_of_number }}</a> of the same field, made just '
    "before.</p>{% endif %}\n"
    '      {% if item.revert_of_number %}<p class="small">Revert of <a href="'
    "{% url 'audit:detail' item.revert_of_number %}\">#{{ item.revert_of_number }}</a></p>"
    "{% endif %}\n"
    '      {% if item.changes %}<ul class="history-changes small">{% for line in item.changes %}'
    "<li>{{ line }}</li>{% endfor %}</ul>{% endif %}\n"
    '      {% if item.entry.reason %}<p class="small">Reason: '
    "{{ item.entry.reason|truncatechars:200 }}</p>{% endif %}\n"
    '      {% if item.entry.message %}<p class="muted small">'
    "{{ item.entry.message|truncatechars:200 }}</p>{% endif %}\n"
    "    </article>\n"
)


class Unhandled(Exception):
    """A value this module does not render exactly as the template would."""


_escape = html.escape  # what django.utils.html.escape applies


def _text(value) -> str:
    """`{{ value }}` for a string (autoescaped); anything else is Unhandled (the template
    would localise a number, call a callable, format a date)."""
    if type(value) is str:
        return _escape(value)
    if isinstance(value, str):
        return str(value) if isinstance(value, SafeData) else _escape(str(value))
    raise Unhandled


def _formatted(value) -> str:
    """`{{ value|stringformat:'s' }}`: stringformat keeps a safe string safe."""
    if type(value) is str:
        return _escape(value)
    if isinstance(value, str):
        return str(value) if isinstance(value, SafeData) else _escape(str(value))
    if type(value) is int:
        return str(value)
    raise Unhandled


def _attrs(attrs: dict) -> str:
    """attrs.html."""
    parts = []
    for name, value in attrs.items():
        if value is False:
            continue
        if value is True:
            parts.append(f" {_text(name)}")
        else:
            parts.append(f' {_text(name)}="{_formatted(value)}"')
    return "".join(parts)


def _input(widget: dict) -> str:
    """input.html, with its trailing newline."""
    value = widget["value"]
    shown = "" if value is None else f' value="{_formatted(value)}"'
    return (
        f'<input type="{_text(widget["type"])}" name="{_text(widget["name"])}"'
        f"{shown}{_attrs(widget['attrs'])}>\n"
    )


def _textarea(widget: dict) -> str:
    value = widget["value"]
    if value is not None and type(value) is not str and not isinstance(value, str):
        raise Unhandled
    body = _text(value) if value else ""
    return f'<textarea name="{_text(widget["name"])}"{_attrs(widget["attrs"])}>\n{body}</textarea>'


def _select(widget: dict) -> str:
    parts = [f'<select name="{_text(widget["name"])}"{_attrs(widget["attrs"])}>']
    for group_name, options, _index in widget["optgroups"]:
        if group_name:
            raise Unhandled
        for option in options:
            if option["template_name"] != WIDGETS + "select_option.html":
                raise Unhandled
            parts.append(
                f'\n  <option value="{_formatted(option["value"])}"{_attrs(option["attrs"])}>'
                f"{_text(option['label'])}</option>\n"
            )
    parts.append("\n</select>")
    return "".join(parts)


_OPTION_TEMPLATES = frozenset({WIDGETS + "checkbox_option.html", WIDGETS + "radio_option.html"})


def _multiple(widget: dict) -> str:
    """multiple_input.html (checkbox_select.html, radio.html)."""
    attrs = widget["attrs"]
    ident, css = attrs.get("id", ""), attrs.get("class", "")
    parts = [
        "<div",
        f' id="{_text(ident)}"' if ident else "",
        f' class="{_text(css)}"' if css else "",
        ">",
    ]
    for group, options, _index in widget["optgroups"]:
        if group:
            raise Unhandled
        for option in options:
            if option["template_name"] not in _OPTION_TEMPLATES or not option["wrap_label"]:
                raise Unhandled
            for_id = option["attrs"].get("id", "")
            parts.append(
                "<div>\n    <label"
                + (f' for="{_text(for_id)}"' if for_id else "")
                + ">"
                + _input(option)
                + f" {_text(option['label'])}</label>\n\n</div>"
            )
    parts.append("\n</div>")
    return "".join(parts)


def _edit_field(field) -> str:
    """edit_field.html (stripped, as the renderer returns it), for a TemplateBoundField."""
    name, label, auto_id = _text(field.name), _text(field.label), _text(field.auto_id)
    widget = _text(str(field))
    errors = field.errors
    layout = field.layout
    if layout == "check":
        body = f'<label class="check">{widget} {label}</label>\n            '
    elif layout == "group":
        body = f'<fieldset class="checks"><legend>{label}</legend>{widget}</fieldset>\n            '
    else:
        for_id = _text(field.id_for_label)
        search = ""
        if field.name == "accountId":
            search = (
                "\n                \n"
                '                <input type="search" class="picker-search" name="q" form="" '
                'aria-label="Search accounts" placeholder="Search accounts\u2026"\n'
                f'                       hx-get="{_text(reverse("tickets:account-options"))}" '
                f'hx-trigger="input changed delay:300ms" hx-target="#{for_id}" '
                'hx-swap="outerHTML"\n'
                f'                       hx-include="#{for_id}" hx-params="accountId,q" '
                'hx-sync="this:replace">\n              '
            )
        body = (
            f'<label for="{for_id}">{label}</label>\n              {search}'
            f"\n              {widget}\n            "
        )
    help_text = field.help_text
    shown_help = (
        f'<p class="help" id="{auto_id}_helptext">{_text(help_text)}</p>' if help_text else ""
    )
    shown_errors = "".join(
        f'<p class="field-error" id="{auto_id}_error">{_text(error)}</p>' for error in errors
    )
    return (
        f'<div id="field-{name}" class="field kind-{_text(field.kind)}'
        f'{" has-error" if errors else ""}"\n'
        f'               hx-post="{_text(field.validate_url)}?field={name}" '
        'hx-trigger="change" hx-target="this" hx-swap="outerHTML">\n'
        f"            \n              {body}\n"
        f"            {shown_help}\n"
        f"            {shown_errors}\n"
        "          </div>"
    )


def _history_item(item) -> str:
    """history_item.html (stripped), for a services.HistoryItem; an entry that links to
    another (a revert, a tug of war) is left to the template."""
    if item.drift_of_number or item.revert_of_number:
        raise Unhandled
    entry = item.entry
    if item.external:
        badge = '<span class="badge source-thena">In Thena</span>'
    else:
        badge = f'<span class="badge outcome-{_text(item.outcome)}">{_text(item.outcome)}</span>'
    moment = template_localtime(entry.created_at)
    changes = (
        '<ul class="history-changes small">'
        + "".join(f"<li>{_text(line)}</li>" for line in item.changes)
        + "</ul>"
        if item.changes
        else ""
    )
    reason, message = entry.reason, entry.message
    return (
        f'<article class="history-entry{" external" if item.external else ""}">\n'
        f"      <p>{badge}\n"
        f'        <a href="{_text(item.url)}"><time datetime="{_text(date_filter(moment, "c"))}" '
        f'title="{_text(date_filter(moment, "Y-m-d H:i T"))}">{_text(ago(entry.created_at))}'
        "</time></a>\n"
        f"        by {_text(entry.actor_username or 'someone')}</p>\n"
        "      \n"
        "      \n"
        f"      {changes}\n"
        "      "
        + (f'<p class="small">Reason: {_text(truncatechars(reason, 200))}</p>' if reason else "")
        + "\n      "
        + (f'<p class="muted small">{_text(truncatechars(message, 200))}</p>' if message else "")
        + "\n    </article>"
    )


def _whole(render: Callable[[dict], str]) -> Callable[[dict], str]:
    """A widget's template as the renderer returns it: stripped."""
    return lambda widget: render(widget).strip()


# What each widget template renders, and the templates it stands for (its includes).
_FAST: dict[str, tuple[Callable[[dict], str], tuple[str, ...]]] = {
    **{
        f"{name}.html": (_whole(_input), (f"{name}.html", "input.html", "attrs.html"))
        for name in (
            "text",
            "email",
            "url",
            "number",
            "hidden",
            "password",
            "search",
            "tel",
            "color",
            "date",
            "datetime",
            "time",
            "checkbox",
        )
    },
    "input.html": (_whole(_input), ("input.html", "attrs.html")),
    "textarea.html": (_textarea, ("textarea.html", "attrs.html")),
    "select.html": (_select, ("select.html", "select_option.html", "attrs.html")),
    **{
        f"{name}.html": (
            _multiple,
            (
                f"{name}.html",
                "multiple_input.html",
                f"{option}.html",
                "input_option.html",
                "input.html",
                "attrs.html",
            ),
        )
        for name, option in (("checkbox_select", "checkbox_option"), ("radio", "radio_option"))
    },
}


class FastTemplates(DjangoTemplates):
    """Django's DjangoTemplates form renderer; the widget templates of _FAST (and
    EDIT_FIELD, HISTORY_ITEM) are rendered in Python while the installed templates read
    as SOURCES (EDIT_FIELD_SOURCE, HISTORY_ITEM_SOURCE) says."""

    _fast: dict[str, Callable] | None = None

    def fast(self) -> dict[str, Callable]:
        """The templates rendered in Python, by name (checked once, on first use)."""
        if self._fast is None:
            same = {
                name for name, source in SOURCES.items() if self._source(WIDGETS + name) == source
            }
            self._fast = {
                WIDGETS + name: render
                for name, (render, uses) in _FAST.items()
                if same.issuperset(uses)
            }
            if self._source(EDIT_FIELD) == EDIT_FIELD_SOURCE:
                self._fast[EDIT_FIELD] = _edit_field
            if self._source(HISTORY_ITEM) == HISTORY_ITEM_SOURCE:
                self._fast[HISTORY_ITEM] = _history_item
        return self._fast

    def _source(self, template_name: str) -> str | None:
        try:
            return self.get_template(template_name).template.source
        except TemplateDoesNotExist:
            return None

    def render(self, template_name, context, request=None):
        render = self.fast().get(template_name)
        if render is not None and request is None and len(context) == 1:
            try:
                (value,) = context.values()  # a widget's dict, a bound field, a history item
                return SafeString(render(value))
            except (Unhandled, KeyError, TypeError, AttributeError):
                pass  # the template knows
        return super().render(template_name, context, request=request)


class TemplateBoundField(forms.BoundField):
    """A BoundField that answers templates' attribute lookups at once, and says in one
    word what the edit page's field partial otherwise works out from three levels of
    attributes per field.

    The template engine tries `field[name]` before `field.name`, and BoundField answers
    any text index with a TypeError it formats first: the edit page looks up hundreds of
    attributes of its bound fields, and those exceptions were a twentieth of its CPU.
    Here a text index that names an attribute gives that attribute, which is what the
    engine's next try would have found; anything else is BoundField's as before."""

    def __getitem__(self, idx):
        if type(idx) is str:
            try:
                return getattr(self, idx)
            except AttributeError:
                pass
        return super().__getitem__(idx)

    @property
    def kind(self) -> str:
        """`field.field.widget.input_type|default:'textarea'`."""
        return getattr(self.field.widget, "input_type", None) or "textarea"

    @property
    def layout(self) -> str:
        """How the page lays the input out: "check" (a box inside its label), "group" (a
        fieldset of boxes or radios, the label its legend) or "label" (a label, then the
        input)."""
        widget = self.field.widget
        input_type = getattr(widget, "input_type", None)
        if input_type == "checkbox" and not getattr(self.field, "choices", None):
            return "check"
        if getattr(widget, "allow_multiple_selected", False) or input_type == "radio":
            return "group"
        return "label"

    def as_edit_field(self) -> str:
        """The field as the edit page shows it: label, input, help and errors."""
        return self.render(EDIT_FIELD)

    @property
    def validate_url(self) -> str:
        """Where the page checks this field as the user leaves it (the form's, reversed
        once for all its fields)."""
        return self.form.validate_url
