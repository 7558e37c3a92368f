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
"""

import html
from collections.abc import Callable

from django import forms
from django.forms.renderers import DjangoTemplates
from django.template import TemplateDoesNotExist
from django.utils.safestring import SafeData, SafeString

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
    """Django's DjangoTemplates form renderer; the widget templates of _FAST are
    rendered in Python while the installed templates read as SOURCES says."""

    _fast: dict[str, Callable[[dict], str]] | None = None

    def fast(self) -> dict[str, Callable[[dict], str]]:
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
                return SafeString(render(context["widget"]))
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

    @property
    def validate_url(self) -> str:
        """Where the page checks this field as the user leaves it (the form's, reversed
        once for all its fields)."""
        return self.form.validate_url
