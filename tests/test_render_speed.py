"""The edit page's speed-ups change nothing a browser or the audit log can see.

tickets/widgets.py renders Django's widget templates in Python: every widget here is
rendered both ways (Django's own DjangoTemplates renderer is the reference) and compared
byte for byte, the whole edit page too. tickets/audit/chain.py writes its rows with plain
INSERTs: what is read back is what was written, as the ORM's save() would have stored it.
"""

import re

import pytest
from django import forms
from django.db import connection
from django.forms.renderers import BaseRenderer, DjangoTemplates
from django.template import Context, Template
from django.test.utils import CaptureQueriesContext, override_settings
from django.utils.functional import lazy
from django.utils.safestring import mark_safe
from hypothesis import given
from hypothesis import strategies as st

from tests.util import SANDBOX_VARIANTS, bound_form
from tickets import services, widgets
from tickets.audit import RequestMeta, record_attempt, record_outcome
from tickets.audit.chain import _insert
from tickets.forms import (
    BulkEditForm,
    RevertForm,
    SavedViewForm,
    TicketUpdateForm,
)
from tickets.models import AuditEntry, AuditField, AuditOutcome, InsertOnlyError
from tickets.snapshot import Snapshot

pytestmark = pytest.mark.django_db

DJANGO = DjangoTemplates()
FAST = widgets.FastTemplates()


def _both_ways(form: forms.Form) -> list[tuple[str, str, str]]:
    """(name, Django's HTML, ours) for every widget of `form`."""
    rendered = []
    for name in form.fields:
        form.renderer = DJANGO
        reference = str(form[name])
        form.renderer = FAST
        rendered.append((name, reference, str(form[name])))
    return rendered


def _assert_same(form: forms.Form) -> None:
    for name, reference, ours in _both_ways(form):
        assert ours == reference, name


@pytest.fixture
def fallbacks(monkeypatch) -> list[str]:
    """The widget templates our renderer left to the template engine."""
    names: list[str] = []
    render = BaseRenderer.render

    def counted(self, template_name, context, request=None):
        if isinstance(self, widgets.FastTemplates) and template_name.startswith(widgets.WIDGETS):
            names.append(template_name)
        return render(self, template_name, context, request=request)

    monkeypatch.setattr(BaseRenderer, "render", counted)
    return names


# -- the renderer ------------------------------------------------------------------------


def test_every_template_rendered_in_python_reads_as_this_django_installs_it():
    # A Django upgrade that changes one of them turns its Python off (the template renders
    # instead, slower): this test says so.
    assert set(FAST.fast()) == {widgets.WIDGETS + name for name in widgets._FAST} | {
        widgets.EDIT_FIELD,
        widgets.HISTORY_ITEM,
    }


def test_a_template_that_differs_is_rendered_by_the_template(monkeypatch):
    renderer = widgets.FastTemplates()
    monkeypatch.setitem(widgets.SOURCES, "select_option.html", "<option>{{ x }}</option>")
    fast = renderer.fast()
    assert widgets.WIDGETS + "select.html" not in fast
    assert widgets.WIDGETS + "text.html" in fast


def test_an_edit_field_template_that_differs_is_rendered_by_the_template(monkeypatch):
    monkeypatch.setattr(widgets, "EDIT_FIELD_SOURCE", "<div>{{ field }}</div>")
    assert widgets.EDIT_FIELD not in widgets.FastTemplates().fast()


def _edit_fields_both_ways(form: TicketUpdateForm) -> None:
    """The edit page's field (label, input, help, errors) of every input, both ways."""
    for bound in form:
        form.renderer = DJANGO
        reference = bound.as_edit_field()
        form.renderer = FAST
        assert bound.as_edit_field() == reference, bound.name
        assert widgets._edit_field(bound) == reference, bound.name  # no fallback


@pytest.mark.usefixtures("thena")
@pytest.mark.parametrize("sandbox_config", SANDBOX_VARIANTS.values(), indirect=True)
def test_the_ticket_form_renders_the_same_for_every_ticket(sandbox, viewer, fallbacks):
    for ticket in sandbox.tickets()[::6]:  # every team, odd values included
        edit = services.ticket_edit_load(user=viewer, ticket_id=ticket["id"])
        _assert_same(TicketUpdateForm(ticket=edit.ticket, choices=edit.choices))
        _edit_fields_both_ways(TicketUpdateForm(ticket=edit.ticket, choices=edit.choices))
    assert fallbacks == []  # every widget of the form rendered in Python


@pytest.mark.usefixtures("thena")
def test_a_form_with_errors_renders_the_same(sandbox, viewer):
    ticket = next(t for t in sandbox.tickets() if t["teamIdentifier"] == "SUP")
    edit = services.ticket_edit_load(user=viewer, ticket_id=ticket["id"])
    form = bound_form(
        edit,
        title="",
        metadata='{"a": ',
        attachmentUrls="ftp://example.com/x",
        statusId="no-such-status",
        dueDate="9999-99-99T99:99",
        assignedAgentEmail="not an email",
    )
    assert not form.is_valid()
    assert len(form.errors) >= 4
    _assert_same(form)
    form["title"].help_text = "<b>A note</b> & more"  # as the page adds one under an input
    _edit_fields_both_ways(form)


@pytest.mark.usefixtures("thena")
def test_the_other_forms_render_the_same(sandbox, viewer):
    ticket = next(t for t in sandbox.tickets() if t["teamIdentifier"] == "SUP")
    choices = services.ticket_edit_load(user=viewer, ticket_id=ticket["id"]).choices
    _assert_same(BulkEditForm(choices=choices))
    _assert_same(BulkEditForm({"statusId": "x", "dueDate": "nope"}, choices=choices))
    _assert_same(RevertForm(clashing=[("title", "Title"), ("statusId", "Status")]))
    _assert_same(SavedViewForm({"name": "<b>mine</b> & co", "query": 'q="x"'}))


class Odd(forms.Form):
    """Widgets and values the ticket form does not have."""

    text = forms.CharField(widget=forms.TextInput(attrs={"n": 3, "on": True, "off": False}))
    number = forms.IntegerField()
    grouped = forms.ChoiceField(choices=[("Group", [("1", "One"), ("2", "Two")]), ("3", "Three")])
    lazy = forms.ChoiceField(choices=[("y", lazy(lambda: "Yes", str)())])
    numbers = forms.TypedChoiceField(choices=[(1, "one"), (2, "two")], coerce=int)
    many = forms.MultipleChoiceField(choices=[("a", "A"), ("b", "B")])
    boxes = forms.MultipleChoiceField(
        choices=[("a", "A & a"), ("b", "<B>")],
        widget=forms.CheckboxSelectMultiple(attrs={"class": "c", "id": "boxes"}),
    )
    radios = forms.ChoiceField(choices=[("a", "A"), ("b", "B")], widget=forms.RadioSelect)
    flag = forms.BooleanField()
    hidden = forms.CharField(widget=forms.HiddenInput)
    note = forms.CharField(widget=forms.Textarea(attrs={"data-x": mark_safe("&amp;")}))
    when = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}))
    split = forms.SplitDateTimeField()
    nullable = forms.NullBooleanField()


def test_odd_widgets_and_values_render_the_same(fallbacks):
    _assert_same(Odd())
    _assert_same(Odd(prefix="p", auto_id="x_%s"))
    _assert_same(Odd(auto_id=False))
    data = {
        "text": "x\"<&>'y",
        "number": "12",
        "grouped": "2",
        "numbers": "2",
        "many": ["a", "b"],
        "boxes": ["b"],
        "radios": "b",
        "flag": "on",
        "hidden": "\x00h",
        "note": "\nline\r\n<b>",
        "when": "2026-11-28",
    }
    _assert_same(Odd(data))
    _assert_same(Odd(initial={"number": 5, "numbers": 1, "text": mark_safe("<i>safe</i>")}))
    # What the Python does not write the way the template would, the template renders.
    assert set(fallbacks) == {
        widgets.WIDGETS + name for name in ("select.html", "splitdatetime.html")
    }


texts = st.text(st.characters(codec="utf-8"), max_size=12)
attr_values = st.one_of(
    texts, st.integers(-5, 10**12), st.booleans(), st.none(), texts.map(mark_safe)
)


@given(
    value=texts,
    labels=st.lists(st.tuples(texts, texts), max_size=4),
    attrs=st.dictionaries(st.from_regex(r"[a-z][a-z-]{0,8}", fullmatch=True), attr_values),
    chosen=st.lists(texts, max_size=2),
)
def test_any_text_renders_the_same(value, labels, attrs, chosen):
    for widget in (
        forms.TextInput(attrs),
        forms.Textarea(attrs),
        forms.HiddenInput(attrs),
        forms.CheckboxInput(attrs),
        forms.Select(attrs, choices=labels),
        forms.SelectMultiple(attrs, choices=labels),
        forms.CheckboxSelectMultiple(attrs, choices=labels),
        forms.RadioSelect(attrs, choices=labels),
    ):
        shown = chosen if getattr(widget, "allow_multiple_selected", False) else value
        reference = widget.render("name", shown, renderer=DJANGO)
        assert widget.render("name", shown, renderer=FAST) == reference, type(widget)


# -- the edit page -----------------------------------------------------------------------


def _normalised(html: str) -> str:
    """The page without what differs from one render to the next."""
    html = re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "csrf", html)
    html = re.sub(r'"x-csrftoken": "[^"]*"', "csrf", html, flags=re.IGNORECASE)
    return re.sub(r'name="snapshot" value="[^"]*"', "snapshot", html)


def _pages(client, url: str, data=None) -> tuple[str, str]:
    """The page with Django's renderer, then with ours."""
    pages = []
    for renderer in ("django.forms.renderers.DjangoTemplates", "tickets.widgets.FastTemplates"):
        with override_settings(FORM_RENDERER=renderer):
            response = client.post(url, data) if data else client.get(url)
            assert response.status_code == 200
            pages.append(_normalised(response.content.decode()))
    return pages[0], pages[1]


@pytest.mark.usefixtures("thena")
def test_the_edit_page_is_the_same_page(manager_client, url, fallbacks, monkeypatch):
    reference, ours = _pages(manager_client, url)
    assert 'id="edit-form"' in ours
    assert ours == reference
    renders = []
    render = widgets.FastTemplates.render
    monkeypatch.setattr(
        widgets.FastTemplates, "render", lambda *a, **k: renders.append(a[1]) or render(*a, **k)
    )
    fallbacks.clear()
    manager_client.get(url)
    assert len(renders) > 30
    assert fallbacks == []  # every widget of the page rendered in Python


@pytest.mark.usefixtures("thena")
def test_the_edit_page_with_errors_is_the_same_page(manager_client, url):
    page = manager_client.get(url).content.decode()
    data = {
        "snapshot": re.search(r'name="snapshot" value="([^"]*)"', page).group(1),
        "title": "",
        "metadata": "{",
    }
    reference, ours = _pages(manager_client, url, data)
    assert "please correct the fields marked below" in ours
    assert ours == reference


@pytest.mark.usefixtures("thena")
def test_a_bound_field_answers_the_template_engine_as_before(sandbox, viewer):
    ticket = next(t for t in sandbox.tickets() if t["teamIdentifier"] == "SUP")
    edit = services.ticket_edit_load(user=viewer, ticket_id=ticket["id"])
    form = TicketUpdateForm(ticket=edit.ticket, choices=edit.choices)
    assert isinstance(form["title"], widgets.TemplateBoundField)
    assert form["title"]["label"] == form["title"].label
    assert form["title"]["auto_id"] == "id_title"
    assert form["statusId"][0].data["value"] == form["statusId"].subwidgets[0].data["value"]
    with pytest.raises(TypeError):
        form["title"]["no_such_attribute"]


# What the edit page's field partial works out with the template engine, as it is written
# there; the bound field's words for it must agree for every field.
PARTIAL_EXPRESSIONS = Template(
    "{{ field.field.widget.input_type|default:'textarea' }}|"
    '{% if field.field.widget.input_type == "checkbox" and not field.field.choices %}check'
    "{% elif field.field.widget.allow_multiple_selected"
    ' or field.field.widget.input_type == "radio" %}'
    "group{% else %}label{% endif %}|"
    "{% url 'tickets:validate' field.form.ticket.id %}"
)


@pytest.mark.usefixtures("thena")
@pytest.mark.parametrize("sandbox_config", SANDBOX_VARIANTS.values(), indirect=True)
def test_a_bound_field_says_what_the_partial_works_out(sandbox, viewer):
    forms_seen = []
    for ticket in sandbox.tickets()[::12]:
        edit = services.ticket_edit_load(user=viewer, ticket_id=ticket["id"])
        forms_seen.append(TicketUpdateForm(ticket=edit.ticket, choices=edit.choices))
        snapshot = Snapshot(edit.ticket, {}, {"title": "Before", "isPrivate": True})
        forms_seen.append(
            TicketUpdateForm(ticket=edit.ticket, choices=edit.choices, snapshot=snapshot)
        )
    layouts = set()
    for form in forms_seen:
        for bound in form:
            expected = PARTIAL_EXPRESSIONS.render(Context({"field": bound}))
            assert f"{bound.kind}|{bound.layout}|{bound.validate_url}" == expected, bound.name
            layouts.add(bound.layout)
    assert layouts == {"check", "group", "label"}


@pytest.mark.usefixtures("thena")
def test_the_validate_url_is_the_one_url_reverses(sandbox, viewer):
    ticket = next(t for t in sandbox.tickets() if t["teamIdentifier"] == "SUP")
    edit = services.ticket_edit_load(user=viewer, ticket_id=ticket["id"])
    form = TicketUpdateForm(ticket=edit.ticket, choices=edit.choices)
    assert form.validate_url == f"/tickets/{ticket['id']}/validate/"


# -- the audit log's writes --------------------------------------------------------------

META = RequestMeta(request_id="req-1", client_ip="192.0.2.10", user_agent="pytest")


def _columns(row) -> dict:
    return {field.attname: getattr(row, field.attname) for field in row._meta.concrete_fields}


def test_rows_read_back_as_written(manager):
    entry = record_attempt(
        action="ticket.update",
        actor=manager,
        ticket={"id": "T1", "ticketIdentifier": "SUP-1", "title": "Tï\x00tle", "teamId": "TM"},
        changes={"title": {"before": "a", "after": "b"}, "isPrivate": {"before": 0, "after": 1}},
        request_body={"title": "b", "nested": {"list": [1, 2.5, None, "ü"]}},
        meta=META,
        base_updated_at="2026-11-28T10:00:00.000Z",
        reason="because",
    )
    outcome = record_outcome(
        entry=entry, outcome="succeeded", status_code=200, duration_ms=42, message="ok"
    )
    assert _columns(AuditEntry.objects.get(pk=entry.pk)) == _columns(entry)
    assert _columns(AuditOutcome.objects.get(pk=outcome.pk)) == _columns(outcome)
    assert not entry._state.adding and entry._state.db == "default"
    fields = AuditField.objects.filter(entry=entry).values_list("field", "created_at")
    assert sorted(fields) == [("isPrivate", entry.created_at), ("title", entry.created_at)]
    with pytest.raises(InsertOnlyError):
        _insert(entry)  # written already


def test_an_edit_writes_its_audit_rows_in_few_statements(manager):
    def statements(context) -> list[str]:
        return [
            q["sql"].split()[0].upper()
            for q in context.captured_queries
            if q["sql"].split()[0].upper() in ("SELECT", "INSERT", "UPDATE", "DELETE")
            and "pg_advisory_xact_lock" not in q["sql"]
        ]

    with CaptureQueriesContext(connection) as attempt:
        entry = record_attempt(
            action="ticket.update",
            actor=manager,
            ticket={"id": "T1"},
            changes={"title": {"before": "a", "after": "b"}},
            request_body={"title": "b"},
            meta=META,
        )
    with CaptureQueriesContext(connection) as settled:
        record_outcome(entry=entry, outcome="succeeded", status_code=200)
    # The chain's tail and the next number; the entry; its field rows.
    assert statements(attempt) == ["SELECT", "INSERT", "INSERT"]
    # The entry's latest outcome; the chain's tail; the outcome.
    assert statements(settled) == ["SELECT", "SELECT", "INSERT"]


def test_entry_numbers_follow_across_outcomes(manager):
    numbers = []
    for _ in range(3):
        entry = record_attempt(
            action="ticket.update",
            actor=manager,
            ticket={"id": "T1"},
            changes={},
            request_body={},
            meta=META,
        )
        record_outcome(entry=entry, outcome="failed", status_code=500)
        numbers.append((entry.id, entry.number))
    (first, number), *_ = numbers
    assert numbers == [(first, number), (first + 2, number + 1), (first + 4, number + 2)]


# -- the history panel ------------------------------------------------------------------


def test_a_history_entry_renders_the_same(manager):
    import copy
    import dataclasses
    import zoneinfo
    from datetime import timedelta

    from django.utils import timezone

    from tickets.models import Action

    for action in ("ticket.update", Action.TICKET_EXTERNAL):
        entry = record_attempt(
            action=action,
            actor=manager,
            ticket={"id": "T1", "teamId": "TA"},
            changes={"title": {"before": "<b>a</b>", "after": "b & c"}},
            request_body={},
            meta=META,
            reason="why " * 80,
            message='it\'s "done" <now>' if action == "ticket.update" else "",
        )
        record_outcome(entry=entry, outcome="succeeded", status_code=200)
    items = services.ticket_history_list(user=manager, ticket_id="T1")
    assert {item.external for item in items} == {True, False}
    variants = [
        *items,
        dataclasses.replace(items[0], changes=(), url="/audit/1/?a=1&b=<2>"),
        dataclasses.replace(items[1], outcome="<odd>", revert_of_number=7),
        dataclasses.replace(items[1], drift_of_number=3),
    ]
    variants[-1].entry.actor_username = ""
    earlier = dataclasses.replace(items[0], entry=copy.copy(items[0].entry))
    earlier.entry.created_at -= timedelta(hours=3, minutes=5)
    variants.append(earlier)
    # How long ago, the moment itself on hover.
    for item, ago in ((items[0], "just now"), (earlier, "3\xa0hours, 5\xa0minutes ago")):
        shown = DJANGO.render(widgets.HISTORY_ITEM, {"item": item})
        moment = timezone.localtime(item.entry.created_at)
        assert f'title="{moment:%Y-%m-%d %H:%M} UTC">{ago}</time>' in shown
    for zone in ("UTC", "America/St_Johns", "Asia/Kathmandu"):
        with timezone.override(zoneinfo.ZoneInfo(zone)):
            for item in variants:
                reference = DJANGO.render(widgets.HISTORY_ITEM, {"item": item})
                assert FAST.render(widgets.HISTORY_ITEM, {"item": item}) == reference
                if not (item.revert_of_number or item.drift_of_number):
                    assert widgets._history_item(item) == reference  # no fallback
