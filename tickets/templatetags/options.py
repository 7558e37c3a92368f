"""{% options choices selected %}: a select's <option>s, written in Python. The list's
filters offer some sixty options: a template loop with an {% if %} each cost a tenth of
the page."""

import html

from django import template
from django.utils.safestring import mark_safe

register = template.Library()


@register.simple_tag
def options(choices, selected) -> str:
    """`choices` are (value, label) pairs, or names that are their own value (an option
    without a value attribute, as the template wrote it)."""
    parts = []
    for choice in choices:
        if isinstance(choice, str):
            value, attrs, label = choice, "", choice
        else:
            value, label = choice
            attrs = f' value="{html.escape(str(value))}"'
        mark = " selected" if value == selected else ""
        parts.append(f"<option{attrs}{mark}>{html.escape(str(label))}</option>")
    return mark_safe("".join(parts))
