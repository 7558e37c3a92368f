"""Helpers shared by tests (fixtures live in conftest.py)."""

from django import forms
from django.utils.datastructures import MultiValueDict


def submitted(form: forms.Form, **changes) -> MultiValueDict:
    """What a browser would post for `form` as rendered, with `changes` applied.

    A change of None removes the field from the post (an unticked checkbox)."""
    data = MultiValueDict()
    for bound in form:
        widget = bound.field.widget
        value = bound.value()
        if isinstance(widget, forms.CheckboxSelectMultiple | forms.SelectMultiple):
            data.setlist(bound.html_name, [str(v) for v in value or []])
        elif isinstance(widget, forms.CheckboxInput):
            if value:
                data[bound.html_name] = "on"
        elif isinstance(widget, forms.Select | forms.RadioSelect):
            data[bound.html_name] = "" if value is None else str(value)
        else:
            formatted = widget.format_value(bound.field.prepare_value(value))
            data[bound.html_name] = "" if formatted is None else str(formatted)
    for name, value in changes.items():
        if value is None:
            data.pop(name, None)
        elif isinstance(value, list):
            data.setlist(name, value)
        else:
            data[name] = value
    return data
