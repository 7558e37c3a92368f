"""What Chromium submits for a form, computed from the page HTML.

`form_data(html)` parses a page with the standard library's html.parser (plus the few tree
building rules of the HTML parser that decide which controls exist and where: void elements,
`<textarea>` as escapable raw text, nested `<form>` tags ignored, the form element pointer,
implied `</option>` and `</select>`) and runs the HTML spec's "constructing the entry list"
over the form's controls, with Chromium's value sanitization and the CRLF line breaks of
application/x-www-form-urlencoded and multipart/form-data. Tests then post exactly that:

    data = form_data(response.content.decode())
    data = replace(data, "title", "New title")
    client.post(url, to_urlencoded(data), content_type="application/x-www-form-urlencoded")
    client.post(url, to_multidict(data))  # or as Django's usual dict of lists

Not modelled: scripts (the page as served), file inputs (left out), `<object>`, form-associated
custom elements, `wrap=hard` textareas, the attribute-value rule that leaves `&copy=` undecoded.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterator
from html import unescape
from html.parser import HTMLParser
from urllib.parse import urlencode

Data = list[tuple[str, str]]

_VOID_NAMES = (
    "area base basefont bgsound br col embed frame hr img input keygen link meta param "
    "source track wbr"
)
_VOID = frozenset(_VOID_NAMES.split())
# Raw text (noscript too: Chromium parses it as raw text when scripting is on) and escapable
# raw text: their content is text, never tags.
_RAW_TEXT = ("script", "style", "xmp", "iframe", "noembed", "noframes", "noscript")
_ESCAPABLE_RAW_TEXT = ("textarea", "title")
_LISTED = frozenset({"button", "fieldset", "input", "object", "output", "select", "textarea"})
_SUBMITTABLE = frozenset({"button", "input", "select", "textarea"})
_INPUT_TYPE_NAMES = (
    "hidden text search tel url email password date month week time datetime-local number "
    "range color checkbox radio file submit image reset button"
)
_INPUT_TYPES = frozenset(_INPUT_TYPE_NAMES.split())
_TEXT_FIELD_TYPES = frozenset({"text", "search", "tel", "url", "email", "password", "number"})
_ASCII_WHITESPACE = "\t\n\f\r "


class _Element:
    __slots__ = ("attrs", "children", "in_template", "parent", "parser_form", "tag")

    def __init__(self, tag, attrs, parent, parser_form=None, in_template=False) -> None:
        self.tag: str = tag
        self.attrs: dict[str, str] = attrs
        self.parent: _Element | None = parent
        self.children: list[_Element | str] = []
        self.parser_form: _Element | None = parser_form
        self.in_template: bool = in_template

    def ancestors(self) -> Iterator[_Element]:
        node = self.parent
        while node is not None:
            yield node
            node = node.parent

    def descendants(self) -> Iterator[_Element]:
        for child in self.children:
            if isinstance(child, _Element):
                yield child
                yield from child.descendants()

    def text(self) -> str:
        """Descendant text, without script content (option labels)."""
        parts = []
        for child in self.children:
            if isinstance(child, str):
                parts.append(child)
            elif child.tag != "script":
                parts.append(child.text())
        return "".join(parts)

    def raw_text(self) -> str:
        """The content of an escapable raw text element (kept undecoded while parsing)."""
        return unescape("".join(c for c in self.children if isinstance(c, str)))


class _TreeBuilder(HTMLParser):
    CDATA_CONTENT_ELEMENTS = _RAW_TEXT + _ESCAPABLE_RAW_TEXT
    # Newer Pythons decode <textarea> text themselves; here it is decoded once, in raw_text().
    RCDATA_CONTENT_ELEMENTS = ()

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.document = _Element("#document", {}, None)
        self.stack = [self.document]
        self.form_pointer: _Element | None = None

    def _in_template(self) -> bool:
        return any(node.tag == "template" for node in self.stack)

    def _pop_until(self, tag: str) -> bool:
        for index in range(len(self.stack) - 1, 0, -1):
            if self.stack[index].tag == tag:
                del self.stack[index:]
                return True
        return False

    def handle_starttag(self, tag, attrs) -> None:
        attributes: dict[str, str] = {}
        for key, value in attrs:
            attributes.setdefault(key, "" if value is None else value)  # the first one wins
        current = self.stack[-1]
        if tag == "form" and self.form_pointer is not None and not self._in_template():
            return  # a form inside a form is ignored
        if any(node.tag == "select" for node in self.stack):
            if tag == "select":
                self._pop_until("select")  # acts as </select>
                return
            if tag in ("input", "keygen", "textarea"):
                self._pop_until("select")  # closes the select, then goes on
            elif tag in ("option", "optgroup", "hr") and current.tag == "option":
                self.stack.pop()
            if tag in ("optgroup", "hr") and self.stack[-1].tag == "optgroup":
                self.stack.pop()
        elif tag == "option" and current.tag == "option":
            self.stack.pop()
        parent = self.stack[-1]
        in_template = parent.in_template or parent.tag == "template"
        parser_form = None
        if tag in _LISTED and "form" not in attributes and not self._in_template():
            parser_form = self.form_pointer
        element = _Element(tag, attributes, parent, parser_form, in_template)
        parent.children.append(element)
        if tag == "form" and not self._in_template():
            self.form_pointer = element
        if tag not in _VOID:
            self.stack.append(element)

    def handle_startendtag(self, tag, attrs) -> None:
        # `<textarea/>` opens a textarea: the self-closing flag only counts on void elements.
        self.handle_starttag(tag, attrs)
        if tag in self.CDATA_CONTENT_ELEMENTS:
            self.set_cdata_mode(tag)

    def handle_endtag(self, tag) -> None:
        if tag == "form" and not self._in_template():
            form, self.form_pointer = self.form_pointer, None
            if form is not None and form in self.stack:
                self.stack.remove(form)  # only the form: what is open inside stays open
            return
        self._pop_until(tag)

    def handle_data(self, data) -> None:
        self.stack[-1].children.append(data)


def parse(html: str) -> _Element:
    """The document tree of `html` (input stream preprocessing: CR LF and CR become LF). A
    null character becomes U+FFFD, as in an attribute value or a textarea's text (the
    only text a form submits; elsewhere the HTML parser drops it)."""
    builder = _TreeBuilder()
    builder.feed(html.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "\ufffd"))
    builder.close()
    return builder.document


# Value sanitization (HTML spec, as Chromium implements it)


def _strip_newlines(value: str) -> str:
    return value.replace("\r", "").replace("\n", "")


_FLOAT = re.compile(r"-?(?:\d+(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?", re.ASCII)
_DATE = r"([0-9]{4,})-([0-9]{2})-([0-9]{2})"
_TIME = r"([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,3}))?)?"


def _float(value: str) -> float | None:
    if not _FLOAT.fullmatch(value):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _valid_date(year: str, month: str, day: str | None = None) -> bool:
    y, m = int(year), int(month)
    valid = y > 0 and 1 <= m <= 12 and (day is None or 1 <= int(day) <= _days_in_month(y, m))
    return valid and (y, m, int(day or 1)) <= (275760, 9, 13)  # JavaScript's last day


def _valid_time(hours: str, minutes: str, seconds: str | None) -> bool:
    return int(hours) < 24 and int(minutes) < 60 and int(seconds or 0) < 60


def _weeks_in_year(year: int) -> int:
    def weekday_of_jan_1(y: int) -> int:  # 0 = Monday
        y -= 1
        return (1 + 5 * (y % 4) + 4 * (y % 100) + 6 * (y % 400) + 6) % 7

    leap = _days_in_month(year, 2) == 29
    first = weekday_of_jan_1(year)
    return 53 if first == 3 or (leap and first == 2) else 52


def _number_text(number: float) -> str:
    return str(int(number)) if number.is_integer() else repr(number)


def _range_value(value: str, attrs: dict[str, str]) -> str:
    minimum = _float(attrs.get("min", ""))
    minimum = 0.0 if minimum is None else minimum
    maximum = _float(attrs.get("max", ""))
    maximum = max(minimum, 100.0 if maximum is None else maximum)
    number = _float(value)
    if number is None:
        number = minimum + (maximum - minimum) / 2
    number = min(max(number, minimum), maximum)
    step_text = attrs.get("step", "").strip(_ASCII_WHITESPACE).lower()
    step = _float(step_text)
    if step_text != "any":
        step = step if step is not None and step > 0 else 1.0
        steps = math.floor((number - minimum) / step + 0.5)
        number = minimum + steps * step
        if number > maximum:
            number -= step
    return _number_text(number)


def _datetime_local(value: str) -> str:
    match = re.fullmatch(_DATE + "[T ]" + _TIME, value)
    if not match:
        return ""
    year, month, day, hours, minutes, seconds, fraction = match.groups()
    if not (_valid_date(year, month, day) and _valid_time(hours, minutes, seconds)):
        return ""
    normal = f"{int(year):04d}-{month}-{day}T{hours}:{minutes}"
    milliseconds = int((fraction or "0").ljust(3, "0"))
    if milliseconds:
        return f"{normal}:{seconds}.{milliseconds:03d}"
    return f"{normal}:{seconds}" if seconds and int(seconds) else normal


def sanitize(input_type: str, value: str, attrs: dict[str, str] | None = None) -> str:
    """The value sanitization algorithm of an `<input type=input_type>`."""
    attrs = attrs or {}
    if input_type in ("text", "search", "tel", "password"):
        return _strip_newlines(value)
    if input_type == "url":
        return _strip_newlines(value).strip(_ASCII_WHITESPACE)
    if input_type == "email":
        value = _strip_newlines(value)
        if "multiple" in attrs:
            return ",".join(part.strip(_ASCII_WHITESPACE) for part in value.split(","))
        return value.strip(_ASCII_WHITESPACE)
    if input_type == "number":
        return value if _float(value) is not None else ""
    if input_type == "range":
        return _range_value(value, attrs)
    if input_type == "color":
        return value.lower() if re.fullmatch(r"#[0-9a-fA-F]{6}", value) else "#000000"
    if input_type == "date":
        match = re.fullmatch(_DATE, value)
        return value if match and _valid_date(*match.groups()) else ""
    if input_type == "month":
        match = re.fullmatch(r"([0-9]{4,})-([0-9]{2})", value)
        return value if match and _valid_date(*match.groups()) else ""
    if input_type == "week":
        match = re.fullmatch(r"([0-9]{4,})-W([0-9]{2})", value)
        valid = match and int(match[1]) > 0 and 1 <= int(match[2]) <= _weeks_in_year(int(match[1]))
        return value if valid else ""
    if input_type == "time":
        match = re.fullmatch(_TIME, value)
        return value if match and _valid_time(*match.groups()[:3]) else ""
    if input_type == "datetime-local":
        return _datetime_local(value)
    return value  # hidden, checkbox, radio, buttons: the value attribute as it is


# The entry list


def _input_type(element: _Element) -> str:
    kind = element.attrs.get("type", "").lower()
    return kind if kind in _INPUT_TYPES else "text"


def _button_type(element: _Element) -> str:
    kind = element.attrs.get("type", "").lower()
    return kind if kind in ("submit", "reset", "button") else "submit"


def _is_submit_button(element: _Element) -> bool:
    if element.tag == "button":
        return _button_type(element) == "submit"
    return element.tag == "input" and _input_type(element) in ("submit", "image")


def _disabled(element: _Element) -> bool:
    if "disabled" in element.attrs:
        return True
    child = element
    for node in element.ancestors():
        if node.tag == "fieldset" and "disabled" in node.attrs:
            legend = next(
                (c for c in node.children if isinstance(c, _Element) and c.tag == "legend"), None
            )
            if child is not legend:
                return True
        child = node
    return False


def _owner(element: _Element, ids: dict[str, _Element]) -> _Element | None:
    if "form" in element.attrs:
        target = ids.get(element.attrs["form"])
        return target if target is not None and target.tag == "form" else None
    if element.parser_form is not None:
        return element.parser_form
    return next((node for node in element.ancestors() if node.tag == "form"), None)


def _options(select: _Element) -> list[_Element]:
    found = []

    def walk(node: _Element) -> None:
        for child in node.children:
            if isinstance(child, _Element):
                if child.tag == "option":
                    found.append(child)
                elif child.tag not in ("select", "datalist", "template"):
                    walk(child)

    walk(select)
    return found


def _option_disabled(option: _Element, select: _Element) -> bool:
    if "disabled" in option.attrs:
        return True
    for node in option.ancestors():
        if node is select:
            return False
        if node.tag == "optgroup" and "disabled" in node.attrs:
            return True
    return False


def _option_value(option: _Element) -> str:
    if "value" in option.attrs:
        return option.attrs["value"]
    # Strip and collapse ASCII whitespace (a no-break space stays).
    return re.sub(r"[\t\n\f\r ]+", " ", option.text()).strip(_ASCII_WHITESPACE)


def _display_size(select: _Element) -> int:
    match = re.match(r"[\t\n\f\r ]*\+?(\d+)", select.attrs.get("size", ""))
    if match and int(match[1]) > 0:
        return int(match[1])
    return 4 if "multiple" in select.attrs else 1


def _selected_options(select: _Element) -> list[_Element]:
    options = _options(select)
    selected = [o for o in options if "selected" in o.attrs]
    if "multiple" in select.attrs:
        return selected
    if selected:
        return selected[-1:]  # the last selected one wins
    if _display_size(select) == 1:
        return [o for o in options if not _option_disabled(o, select)][:1]
    return []


def _direction(element: _Element, value: str) -> str:
    for node in (element, *element.ancestors()):
        direction = node.attrs.get("dir", "").lower()
        if direction in ("ltr", "rtl"):
            return direction
        if direction == "auto":
            for char in value:
                kind = unicodedata.bidirectional(char)
                if kind in ("R", "AL"):
                    return "rtl"
                if kind == "L":
                    return "ltr"
            return "ltr"
    return "ltr"


def _textarea_value(element: _Element) -> str:
    text = element.raw_text()
    if text.startswith("\n"):
        text = text[1:]  # the parser drops a newline right after <textarea>
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _crlf(text: str) -> str:
    return re.sub(r"\r\n|\r|\n", "\r\n", text)


def _find_submitter(controls: list[_Element], submitter: str) -> _Element:
    name, _, value = submitter.partition("=")
    for element in controls:
        if (
            _is_submit_button(element)
            and element.attrs.get("name") == name
            and (not value or element.attrs.get("value") == value)
        ):
            if _disabled(element) or any(a.tag == "datalist" for a in element.ancestors()):
                raise ValueError(f"submitter {submitter!r} is disabled")
            return element
    raise ValueError(f"no submit button {submitter!r} in the form")


def form_data(html: str, form_id: str = "edit-form", *, submitter: str | None = None) -> Data:
    """The entry list a browser builds when the form `form_id` of `html` is submitted, with
    names and values as sent (line breaks as CRLF). `submitter` names the submit button that
    was pressed (`"name"`, or `"name=value"` among buttons sharing a name); without it the
    form is submitted as by pressing Enter in a field and no button is included."""
    document = parse(html)
    elements = [e for e in document.descendants() if not e.in_template and e.tag != "template"]
    ids: dict[str, _Element] = {}
    for element in elements:
        if element.attrs.get("id"):
            ids.setdefault(element.attrs["id"], element)
    form = ids.get(form_id)
    if form is None or form.tag != "form":
        raise ValueError(f"no <form id={form_id!r}> in the page")
    owners = {id(e): _owner(e, ids) for e in elements if e.tag in _LISTED}
    controls = [e for e in elements if e.tag in _SUBMITTABLE and owners[id(e)] is form]
    pressed = _find_submitter(controls, submitter) if submitter is not None else None

    # Radio buttons: within a group (same form owner and name) the last checked one wins.
    checked_radio: dict[tuple[int, str], _Element] = {}
    for element in elements:
        radio = element.tag == "input" and _input_type(element) == "radio"
        if radio and "checked" in element.attrs and element.attrs.get("name"):
            checked_radio[(id(owners[id(element)]), element.attrs["name"])] = element

    entries: Data = []
    for element in controls:
        if any(a.tag == "datalist" for a in element.ancestors()) or _disabled(element):
            continue
        kind = _input_type(element) if element.tag == "input" else element.tag
        name = element.attrs.get("name", "")
        if element.tag == "button" or kind in ("submit", "reset", "button", "image"):
            if element is not pressed:
                continue
            if kind == "image":
                prefix = f"{name}." if name else ""
                entries += [(prefix + "x", "0"), (prefix + "y", "0")]
                continue
        if kind == "file" or not name:
            continue
        if kind == "checkbox" and "checked" not in element.attrs:
            continue
        if kind == "radio" and checked_radio.get((id(form), name)) is not element:
            continue
        if element.tag == "select":
            entries += [
                (name, _option_value(option))
                for option in _selected_options(element)
                if not _option_disabled(option, element)
            ]
            continue
        if element.tag == "textarea":
            value = _textarea_value(element)
        elif kind in ("checkbox", "radio"):
            value = element.attrs.get("value", "on")
        elif kind == "hidden" and name.lower() == "_charset_":
            value = "UTF-8"
        else:
            value = sanitize(kind, element.attrs.get("value", ""), element.attrs)
        entries.append((name, value))
        dirname = element.attrs.get("dirname", "")
        if dirname and (element.tag == "textarea" or kind in _TEXT_FIELD_TYPES):
            entries.append((dirname, _direction(element, value)))
    return [(_crlf(name), _crlf(value)) for name, value in entries]


# Changing what is submitted, and handing it to Django's test client


def replace(data: Data, name: str, value: str | list[str] | tuple[str, ...] | None) -> Data:
    """A copy of `data` with the entries of `name` replaced by `value` (a list for several
    entries, None for none), at the place of the first one (at the end if there was none)."""
    values = [] if value is None else [value] if isinstance(value, str) else list(value)
    new = [(name, str(v)) for v in values]
    result: Data = []
    placed = False
    for entry in data:
        if entry[0] != name:
            result.append(entry)
        elif not placed:
            result += new
            placed = True
    return result if placed else result + new


def edit(data: Data, **changes: str | list[str] | tuple[str, ...] | None) -> Data:
    """`replace` for each keyword: `edit(data, title="New", tags=["a", "b"], note=None)`."""
    for name, value in changes.items():
        data = replace(data, name, value)
    return data


def to_multidict(data: Data) -> dict[str, list[str]]:
    """A dict of lists for Django's test client `post(path, data)` (each name keeps its
    values in order; the order between names is not kept, which Django does not see)."""
    result: dict[str, list[str]] = {}
    for name, value in data:
        result.setdefault(name, []).append(value)
    return result


def to_urlencoded(data: Data) -> str:
    """The application/x-www-form-urlencoded body a browser sends, entries in order:
    `client.post(path, to_urlencoded(data), content_type="application/x-www-form-urlencoded")`.
    """
    return urlencode(data)
