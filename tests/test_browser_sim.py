"""The "what Chromium submits" simulator (tests/browser.py) against hand-written HTML."""

import pytest
from django.http import QueryDict
from django.test import RequestFactory

from tests.browser import edit, form_data, replace, sanitize, to_multidict, to_urlencoded


def page(body: str, form_attrs: str = "") -> str:
    return f'<!doctype html><html><body><form id="edit-form" {form_attrs}>{body}</form></body>'


# Which controls belong to the form


def test_controls_of_the_form_in_document_order():
    html = """
        <input name="before" value="outside">
        <form id="edit-form"><input name="a" value="1"><div><input name="b" value="2"></div>
        </form>
        <form id="other"><input name="c" value="3"></form>
    """
    assert form_data(html) == [("a", "1"), ("b", "2")]
    assert form_data(html, "other") == [("c", "3")]


def test_control_outside_the_form_with_a_form_attribute_is_included_in_tree_order():
    html = """
        <input name="first" value="0" form="edit-form">
        <form id="edit-form"><input name="inside" value="1"></form>
        <textarea name="later" form="edit-form">x</textarea>
    """
    assert form_data(html) == [("first", "0"), ("inside", "1"), ("later", "x")]


def test_descendant_pointing_at_another_form_or_at_nothing_is_left_out():
    html = """
        <form id="edit-form">
          <input name="mine" value="1">
          <input name="theirs" value="2" form="other">
          <input name="nobody" value="3" form="">
          <input name="missing" value="4" form="no-such-form">
          <input name="not-a-form" value="5" form="a-div">
        </form>
        <form id="other"></form><div id="a-div"></div>
    """
    assert form_data(html) == [("mine", "1")]
    assert form_data(html, "other") == [("theirs", "2")]


def test_radio_set_outside_the_form_without_form_attribute_is_not_included():
    html = """
        <form id="edit-form"><input name="title" value="T"></form>
        <fieldset>
          <input type="radio" name="priority" value="low">
          <input type="radio" name="priority" value="high" checked>
        </fieldset>
    """
    assert form_data(html) == [("title", "T")]


def test_unclosed_form_keeps_owning_controls_through_the_form_pointer():
    html = '<div><form id="edit-form"><input name="a" value="1"></div><input name="b" value="2">'
    assert form_data(html) == [("a", "1"), ("b", "2")]


def test_nested_form_tag_is_ignored_by_the_parser():
    html = page('<input name="a" value="1"><form id="inner"><input name="b" value="2"></form>')
    assert form_data(html) == [("a", "1"), ("b", "2")]
    with pytest.raises(ValueError, match="inner"):
        form_data(html, "inner")


def test_template_content_is_not_part_of_the_form():
    assert form_data(page('<template><input name="t" value="1"></template>')) == []


def test_controls_in_a_datalist_are_left_out():
    assert form_data(page('<datalist><input name="d" value="1"></datalist>')) == []


def test_missing_form_is_an_error():
    with pytest.raises(ValueError):
        form_data('<div id="edit-form"></div>')


# Disabled, unnamed and button controls


def test_disabled_and_unnamed_controls_are_left_out():
    html = page(
        '<input name="off" value="1" disabled><input value="no name"><input name="" value="x">'
        '<select name="s" disabled><option>a</option></select>'
        '<textarea name="t" disabled>t</textarea><input name="readonly" value="kept" readonly>'
    )
    assert form_data(html) == [("readonly", "kept")]


def test_disabled_fieldset_disables_all_but_its_first_legend():
    html = page(
        """
        <fieldset disabled>
          <legend><input name="in-first-legend" value="1"></legend>
          <legend><input name="in-second-legend" value="2"></legend>
          <input name="in-fieldset" value="3">
          <fieldset><legend><input name="nested-legend" value="4"></legend></fieldset>
        </fieldset>
        <fieldset><input name="enabled-fieldset" value="5"></fieldset>
        """
    )
    assert form_data(html) == [("in-first-legend", "1"), ("enabled-fieldset", "5")]


def test_buttons_only_count_as_the_submitter():
    html = page(
        '<input type="submit" name="go" value="Go"><button name="save" value="s">Save</button>'
        '<button type="button" name="b" value="b"></button><input type="reset" name="r">'
        '<input type="image" name="img"><input type="file" name="f">'
        '<button name="action" value="keep">Keep</button>'
        '<button name="action" value="drop">Drop</button>'
        '<input type="submit" name="nope" disabled>'
    )
    assert form_data(html) == []
    assert form_data(html, submitter="save") == [("save", "s")]
    assert form_data(html, submitter="go") == [("go", "Go")]
    assert form_data(html, submitter="img") == [("img.x", "0"), ("img.y", "0")]
    assert form_data(html, submitter="action") == [("action", "keep")]
    assert form_data(html, submitter="action=drop") == [("action", "drop")]
    with pytest.raises(ValueError, match="disabled"):
        form_data(html, submitter="nope")
    with pytest.raises(ValueError):
        form_data(html, submitter="b")  # not a submit button


def test_submitter_entry_keeps_its_tree_position():
    html = page('<input name="a" value="1"><button name="go">Go</button><input name="b">')
    assert form_data(html, submitter="go") == [("a", "1"), ("go", ""), ("b", "")]


# Checkboxes and radios


def test_checkboxes_give_their_value_or_on_when_checked():
    html = page(
        '<input type="checkbox" name="c" value="x" checked><input type="checkbox" name="c" '
        'value="y"><input type="checkbox" name="flag" checked><input type="CheckBox" name="e" '
        'value="" checked>'
    )
    assert form_data(html) == [("c", "x"), ("flag", "on"), ("e", "")]


def test_radio_group_gives_the_last_checked_one():
    html = page(
        '<input type="radio" name="r" value="a" checked><input type="radio" name="r" value="b" '
        'checked><input type="radio" name="r" value="c"><input type="radio" name="s">'
        '<input type="radio" name="t" checked>'
    )
    assert form_data(html) == [("r", "b"), ("t", "on")]


# Selects


def test_select_single_gives_the_selected_or_first_enabled_option():
    html = page(
        """
        <select name="picked"><option value="1">One</option>
          <option value="2" selected>Two</option></select>
        <select name="default"><option disabled>No</option><option>  Yes
           please </option></select>
        <select name="last-selected-wins"><option selected>a<option selected>b</select>
        <select name="empty"></select>
        <select name="listbox" size="3"><option>a</option></select>
        <select name="disabled-selected"><option disabled selected>x</option><option>y</select>
        """
    )
    assert form_data(html) == [
        ("picked", "2"),
        ("default", "Yes please"),
        ("last-selected-wins", "b"),
    ]


def test_select_whose_options_were_replaced_by_text_gives_nothing():
    html = page('<select name="status">Loading failed</select><input name="x" value="1">')
    assert form_data(html) == [("x", "1")]


def test_select_multiple_gives_every_selected_enabled_option():
    html = page(
        """
        <select name="tags" multiple>
          <option value="a" selected>A</option><option value="b">B</option>
          <optgroup label="g"><option value="c" selected>C</option></optgroup>
          <optgroup label="off" disabled><option value="d" selected>D</option></optgroup>
          <option value="e" selected disabled>E</option>
        </select>
        <select name="none" multiple><option>x</option></select>
        """
    )
    assert form_data(html) == [("tags", "a"), ("tags", "c")]


def test_option_value_defaults_to_collapsed_text_and_keeps_entities():
    html = page(
        '<select name="s"><option selected>\n  Fish &amp;\tchips\xa0 <b>now</b> </option></select>'
    )
    assert form_data(html) == [("s", "Fish & chips\xa0 now")]


def test_input_in_a_select_closes_it():
    html = page('<select name="s"><option>a</option><input name="i" value="1"><option>b')
    assert form_data(html) == [("s", "a"), ("i", "1")]


# Textareas


@pytest.mark.parametrize(
    ("inner", "submitted"),
    [
        ("plain", "plain"),
        ("\nfirst newline dropped", "first newline dropped"),
        ("\n\nonly one dropped", "\r\nonly one dropped"),
        ("\r\nCRLF counts as one", "CRLF counts as one"),
        ("a\nb\rc\r\nd", "a\r\nb\r\nc\r\nd"),
        ("&lt;b&gt; &amp; &quot;", '<b> & "'),
        ("<b>not a tag</b> </div>", "<b>not a tag</b> </div>"),
        (" \nleading space kept", " \r\nleading space kept"),
        ("", ""),
    ],
)
def test_textarea_value_rules(inner, submitted):
    assert form_data(page(f'<textarea name="t">{inner}</textarea>')) == [("t", submitted)]


def test_textarea_content_ends_only_at_its_end_tag():
    html = page('<textarea name="t"><input name="fake" value="1"></textarea><input name="n">')
    assert form_data(html) == [("t", '<input name="fake" value="1">'), ("n", "")]


# Inputs and value sanitization


def test_input_values_are_decoded_and_default_to_empty():
    html = page(
        '<input name="a" value="Fish &amp; chips &lt;3"><input name="b"><input name="c" value>'
        '<input type="weird" name="d" value="text-like">'
    )
    assert form_data(html) == [("a", "Fish & chips <3"), ("b", ""), ("c", ""), ("d", "text-like")]


@pytest.mark.parametrize("kind", ["text", "search", "tel", "password"])
def test_text_like_inputs_lose_newlines(kind):
    html = page(f'<input type="{kind}" name="v" value=" a&#10;b&#13;c\nd ">')
    assert form_data(html) == [("v", " abcd ")]


def test_hidden_input_keeps_newlines_as_crlf_and_charset_is_utf8():
    html = page('<input type="hidden" name="h" value="a&#10;b"><input type=hidden name=_charset_>')
    assert form_data(html) == [("h", "a\r\nb"), ("_charset_", "UTF-8")]


def test_email_and_url_lose_newlines_and_outer_whitespace():
    html = page(
        '<input type="email" name="e" value="  a@b.c&#10; "><input type="url" name="u" '
        'value="\t https://x.y/\n "><input type="email" multiple name="m" value=" a@b , c@d ">'
    )
    assert form_data(html) == [("e", "a@b.c"), ("u", "https://x.y/"), ("m", "a@b,c@d")]


@pytest.mark.parametrize(
    ("value", "submitted"),
    [
        ("12", "12"),
        ("-1.5e3", "-1.5e3"),
        (".5", ".5"),
        ("1.", ""),
        ("+1", ""),
        (" 1", ""),
        ("1e999", ""),
        ("abc", ""),
        ("", ""),
    ],
)
def test_number_is_empty_unless_a_valid_float(value, submitted):
    assert form_data(page(f'<input type="number" name="n" value="{value}">')) == [("n", submitted)]


@pytest.mark.parametrize(
    ("kind", "value", "submitted"),
    [
        ("date", "2025-06-15", "2025-06-15"),
        ("date", "2024-02-29", "2024-02-29"),
        ("date", "2025-02-29", ""),
        ("date", "2025-6-15", ""),
        ("date", "15/06/2025", ""),
        ("time", "09:30", "09:30"),
        ("time", "09:30:05.25", "09:30:05.25"),
        ("time", "24:00", ""),
        ("month", "2025-06", "2025-06"),
        ("month", "2025-13", ""),
        ("week", "2020-W53", "2020-W53"),
        ("week", "2021-W53", ""),
        ("color", "#A0B1C2", "#a0b1c2"),
        ("color", "red", "#000000"),
        ("range", "", "50"),
        ("range", "120", "100"),
        ("range", "7.4", "7"),
    ],
)
def test_date_time_and_other_sanitization(kind, value, submitted):
    assert form_data(page(f'<input type="{kind}" name="v" value="{value}">')) == [("v", submitted)]


@pytest.mark.parametrize(
    ("value", "submitted"),
    [
        ("2025-06-15T09:30", "2025-06-15T09:30"),
        ("2025-06-15T09:30:00", "2025-06-15T09:30"),
        ("2025-06-15T09:30:00.000", "2025-06-15T09:30"),
        ("2025-06-15T09:30:07", "2025-06-15T09:30:07"),
        ("2025-06-15T09:30:07.000", "2025-06-15T09:30:07"),
        ("2025-06-15T09:30:07.5", "2025-06-15T09:30:07.500"),
        ("2025-06-15T09:30:00.12", "2025-06-15T09:30:00.120"),
        ("2025-06-15 09:30", "2025-06-15T09:30"),
        ("2025-06-15T09:30Z", ""),
        ("2025-06-15T09:30+02:00", ""),
        ("2025-06-15T9:30", ""),
        ("2025-06-31T09:30", ""),
        ("2025-06-15T09:60", ""),
        ("2025-06-15T09:30:00.1234", ""),
        ("2025-06-15", ""),
        ("", ""),
    ],
)
def test_datetime_local_is_validated_and_normalised(value, submitted):
    html = page(f'<input type="datetime-local" name="due" value="{value}">')
    assert form_data(html) == [("due", submitted)]


def test_dirname_adds_the_direction():
    html = page(
        '<input name="a" dirname="a.dir" value="x"><div dir="rtl"><textarea name="b" '
        'dirname="b.dir"></textarea></div><input dir="auto" name="c" dirname="c.dir" '
        'value="\u05e9\u05dc\u05d5\u05dd">'
    )
    assert form_data(html) == [
        ("a", "x"),
        ("a.dir", "ltr"),
        ("b", ""),
        ("b.dir", "rtl"),
        ("c", "\u05e9\u05dc\u05d5\u05dd"),
        ("c.dir", "rtl"),
    ]


def test_sanitize_is_usable_alone():
    assert sanitize("datetime-local", "2025-01-02T03:04:05.600") == "2025-01-02T03:04:05.600"
    assert sanitize("hidden", "a\nb") == "a\nb"


# Changing the data and posting it


def test_replace_and_edit_keep_the_order():
    data = [("a", "1"), ("tags", "x"), ("b", "2"), ("tags", "y")]
    assert replace(data, "tags", ["p", "q", "r"]) == [
        ("a", "1"),
        ("tags", "p"),
        ("tags", "q"),
        ("tags", "r"),
        ("b", "2"),
    ]
    assert replace(data, "tags", None) == [("a", "1"), ("b", "2")]
    assert replace(data, "a", "new") == [("a", "new"), ("tags", "x"), ("b", "2"), ("tags", "y")]
    assert replace(data, "c", "3")[-1] == ("c", "3")
    assert edit(data, a="9", tags=[], c=["z"]) == [("a", "9"), ("b", "2"), ("c", "z")]
    assert data == [("a", "1"), ("tags", "x"), ("b", "2"), ("tags", "y")]  # not changed


def test_to_multidict_and_to_urlencoded_round_trip_through_django():
    data = [("t", "a\r\nb"), ("tags", "x"), ("n", "1 & 2"), ("tags", "y")]
    assert to_multidict(data) == {"t": ["a\r\nb"], "tags": ["x", "y"], "n": ["1 & 2"]}
    query = QueryDict(to_urlencoded(data))
    assert query.getlist("tags") == ["x", "y"] and query["t"] == "a\r\nb"
    assert query["n"] == "1 & 2"


def test_django_request_reads_the_multidict():
    request = RequestFactory().post("/", to_multidict([("tags", "x"), ("tags", "y"), ("t", "")]))
    assert request.POST.getlist("tags") == ["x", "y"] and request.POST["t"] == ""
