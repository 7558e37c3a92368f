"""No input reaches a 500: every URL pattern, and every input of the edit form, driven
with hostile values (huge strings, NUL, lone surrogates, extreme dates, NaN, deep nesting,
odd ids) as an anonymous user, a viewer and a manager. Streamed answers (the export) are
read to the end, since a stream can fail after its status line was sent.

The explicit regression cases live in tests/test_hostile_inputs.py.
"""

import re
from urllib.parse import quote, urlencode

import pytest
from django import forms
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.browser import form_data, replace
from tickets.forms import JSONInputField

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("thena")]

FORM = "application/x-www-form-urlencoded"

DEEP = 20_000
HOSTILE = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\ud800",
    "x\udfffy",
    "\r\n",
    "\u202e\u0085\u2028",
    "😀" * 50,
    "x" * 65,
    "x" * 10_000,
    "1" * 5000,
    "9" * 400,
    "-1",
    "0",
    "9223372036854775808",
    "NaN",
    "Infinity",
    "-Infinity",
    "1e999",
    "9999-12-31",
    "0001-01-01",
    "1899-12-31",
    "9999-12-31T23:59",
    "0001-01-01T00:00",
    "9999-12-31T23:59:59.999999-12:00",
    "2024-02-30",
    "2024-13-45T25:61",
    '{"a": NaN}',
    '{"a": Infinity}',
    '{"a": 1e999}',
    '{"a": "\\ud800"}',
    '{"\\u0000": "\\u0000"}',
    "[" * DEEP,
    "[" * DEEP + "]" * DEEP,
    '{"a":' * 2000 + "1" + "}" * 2000,
    "../../etc/passwd",
    "a/b",
    "%00",
    "<script>alert(1)</script>",
    "' OR 1=1 --",
    "true",
    "null",
    "[]",
    "{}",
]
# Cursors of the audit list: base64 of "<microseconds>.<id>" at the edges.
CURSORS = [
    "OTk5OTk5OTk5OTk5OTk5OTk5OTk5Ljk",
    "LTYyMTM1NTk2ODAwMDAwMDAwLjE",
    "MC45MjIzMzcyMDM2ODU0Nzc1ODA3",
]
PARAMS = [
    "actor", "ticket", "field", "outcome", "since", "until", "cursor",  # /audit/
    "team", "q", "page",  # /tickets/
    "accountId", "snapshot", "title", "metadata", "dueDate",  # the edit form
    "username", "password", "next",  # login
    "o", "p", "_changelist_filters", "_popup", "app_label", "model_name",  # admin
]  # fmt: skip
ZONES = ["", "Pacific/Pago_Pago", "Pacific/Kiritimati", "Etc/GMT+12", "../../etc/passwd", "\x00"]

hostile = st.one_of(
    st.sampled_from(HOSTILE + CURSORS),
    st.text(max_size=40),
    st.builds(lambda a, b: a + b, st.sampled_from(HOSTILE), st.text(max_size=10)),
)


# -- the URLconf -------------------------------------------------------------------------


def _walk(patterns, prefix=""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern)


ROUTES = sorted(set(_walk(get_resolver().url_patterns)))


def _path(route: str, value: str) -> str:
    """The route with `value` (percent-encoded as a client may send it, lone surrogates
    as the bytes they would be) in every parameter."""
    encoded = quote(value, safe="", errors="surrogatepass") or "x"
    route = re.sub(r"<(?:\w+:)?\w+>", lambda _: encoded, route)
    route = re.sub(r"\(\?P<\w+>([^|)]*)[^)]*\)", r"\1", route)  # a regex: its first option
    route = route.replace("^", "").replace("$", "").replace("\\", "")
    return "/" + route.replace(".*", encoded)


def _query(params: list[tuple[str, str]]) -> str:
    return urlencode(params, errors="surrogatepass")


# -- personas ----------------------------------------------------------------------------


@pytest.fixture
def personas(viewer, manager):
    """A fresh client for each request (a hostile POST to /accounts/logout/ logs out)."""

    def client(persona: str, zone: str = "") -> Client:
        browser = Client(raise_request_exception=False)
        if persona != "anonymous":
            browser.force_login({"viewer": viewer, "manager": manager}[persona])
        if zone:
            browser.cookies["tz"] = quote(zone, errors="surrogatepass")
        return browser

    return client


def _read(response) -> bytes:
    """The whole body: a streamed one is read to its end."""
    if response.streaming:
        return b"".join(response.streaming_content)
    return response.content


def _check(response, what: str) -> None:
    body = _read(response)
    assert response.status_code < 500, f"{what}: {response.status_code}\n{body[:2000]!r}"
    if response.get("Content-Type", "").startswith("text/csv") and b"EXPORT FAILED" in body:
        pytest.fail(f"{what}: the export failed midway\n{body[-2000:]!r}")


def _request(client: Client, method: str, path: str, params: list[tuple[str, str]]):
    if method == "GET":
        query = _query(params)
        return client.get(f"{path}?{query}" if query else path)
    return client.post(path, _query(params), content_type=FORM)


@pytest.fixture
def ticket_id(sandbox):
    return next(t["id"] for t in sandbox.tickets() if t["teamIdentifier"] == "SUP")


# -- every URL, each persona -------------------------------------------------------------


# What our own pages read (route prefix, first match wins).
READS = [
    ("audit/<", ()),
    ("audit/", ("actor", "ticket", "field", "outcome", "since", "until", "cursor")),
    ("tickets/accounts/", ("q", "accountId")),
    ("tickets/<ticket_id:ticket_id>/validate/", ("field", "snapshot", "accountId")),
    ("tickets/<", ("snapshot", "accountId", "title")),
    ("tickets/", ("team", "q", "page")),
    ("accounts/login/", ("username", "password", "next")),
]
WORST = ["x" * 65, "a\x00b", "\ud800", "9999-12-31", "[" * DEEP, "1" * 5000]


@pytest.mark.parametrize("persona", ["anonymous", "viewer", "manager"])
def test_every_url_with_hostile_ids_and_values_answers_without_a_5xx(personas, persona):
    """A sweep: each route, GET and POST, with the worst values in its path and in every
    parameter (each parameter gets each value on our own pages; the admin's once)."""
    for n, route in enumerate(ROUTES):
        client = personas(persona, "Pacific/Pago_Pago")  # logout and login log out
        rounds = 1 if route.startswith("admin/") else len(WORST)
        for k in range(n, n + rounds):
            path = _path(route, WORST[k % len(WORST)])
            params = [(name, WORST[(k + i) % len(WORST)]) for i, name in enumerate(PARAMS)]
            for method in ("GET", "POST"):
                _check(_request(client, method, path, params), f"{persona} {method} {path}")
        # One parameter at a time too: with every one hostile, a form is refused whole
        # and what lies behind it (the audit chart, the export) is never reached.
        path = _path(route, "1")
        for name in next((names for start, names in READS if route.startswith(start)), ()):
            for value in WORST:
                for method in ("GET", "POST"):
                    response = _request(client, method, path, [(name, value)])
                    _check(response, f"{persona} {method} {path} {name}={value[:20]!r}")


@settings(max_examples=80)
@given(data=st.data())
def test_any_url_with_any_hostile_values_answers_without_a_5xx(personas, ticket_id, data):
    route = data.draw(st.sampled_from(ROUTES), label="route")
    persona = data.draw(st.sampled_from(["anonymous", "viewer", "manager"]), label="persona")
    method = data.draw(st.sampled_from(["GET", "POST"]), label="method")
    value = data.draw(st.one_of(st.just(ticket_id), st.just("1"), hostile), label="path value")
    params = data.draw(
        st.lists(
            st.tuples(st.one_of(st.sampled_from(PARAMS), st.text(max_size=8)), hostile),
            max_size=6,
        ),
        label="params",
    )
    zone = data.draw(st.sampled_from(ZONES), label="tz cookie")
    path = _path(route, value)
    _check(_request(personas(persona, zone), method, path, params), f"{method} {path}")


# -- every input of the edit form --------------------------------------------------------


@pytest.fixture
def tickets(sandbox):
    """One ticket of each team: each team has its own custom fields."""
    first = {}
    for ticket in sandbox.tickets():
        first.setdefault(ticket["teamIdentifier"], ticket["id"])
    return sorted(first.values())


def _edit_page(client: Client, ticket_id: str):
    """The edit page's URL, what a browser submits from it, and its form."""
    url = f"/tickets/{ticket_id}/"
    response = client.get(url)
    assert response.status_code == 200, response.status_code
    return url, form_data(response.content.decode()), response.context["form"]


def _inputs(data) -> list[str]:
    return sorted({name for name, _ in data} - {"snapshot", "csrfmiddlewaretoken"})


# The values each kind of input is swept with (every input also gets TEXT).
TEXT = ["a\x00b", "\ud800" + "x" * 3000]
JSON = [v for v in HOSTILE if v[:1] in "[{" or v in ("NaN", "1e999", "null", "true")]
DATES = [v for v in HOSTILE if re.match(r"\d{4}-|1{10}", v)] + ["1" * 5000, " 2025-01-01 "]
NUMBERS = ["NaN", "Infinity", "1e999", "-1e999", "9" * 400, "9223372036854775808", "1e-999"]


def _values(field: forms.Field) -> list[str]:
    if isinstance(field, JSONInputField):
        return TEXT + JSON
    if isinstance(field, forms.DateField | forms.DateTimeField):
        return TEXT + DATES
    if isinstance(field, forms.IntegerField | forms.DecimalField | forms.FloatField):
        return TEXT + NUMBERS
    return TEXT


def test_every_edit_form_input_with_hostile_values_answers_without_a_5xx(personas, tickets):
    """A sweep: every input of every team's form, each alone (so that a value the form
    accepts goes on to Thena and the audit log) with the values that matter for its kind."""
    client = personas("manager", "Pacific/Pago_Pago")
    for ticket_id in tickets:
        url, data, form = _edit_page(client, ticket_id)
        for name in _inputs(data):
            values = _values(form.fields[name]) if name in form.fields else TEXT
            for value in values:
                body = _query(replace(data, name, value))
                response = client.post(url, body, content_type=FORM)
                _check(response, f"{name}={value[:40]!r}")
                if response.status_code == 302:  # it saved: the next post needs a fresh page
                    url, data, form = _edit_page(client, ticket_id)
                if value is values[-1]:
                    validate = client.post(f"{url}validate/?field={name}", body, content_type=FORM)
                    _check(validate, f"validate {name}={value[:40]!r}")


@settings(max_examples=40)
@given(data=st.data())
def test_edit_form_with_hostile_values_in_several_inputs_answers_without_a_5xx(
    personas, tickets, sandbox, data
):
    sandbox.reset()  # a save may change which inputs the page has (read-only custom fields)
    ticket_id = data.draw(st.sampled_from(tickets), label="ticket")
    zone = data.draw(st.sampled_from(ZONES), label="tz cookie")
    client = personas("manager", zone)
    url, form, _ = _edit_page(client, ticket_id)
    names = _inputs(form)
    edits = data.draw(
        st.lists(st.tuples(st.sampled_from(names), hostile), min_size=1, max_size=4),
        label="edits",
    )
    for name, value in edits:
        form = replace(form, name, value)
    partial = data.draw(st.booleans(), label="htmx")
    headers = {"HX-Request": "true"} if partial else {}
    response = client.post(url, _query(form), content_type=FORM, headers=headers)
    _check(response, f"{edits!r}"[:300])


# -- what Thena holds --------------------------------------------------------------------


@settings(max_examples=30)
@given(data=st.data())
def test_the_ticket_list_shows_hostile_upstream_values_without_a_5xx(personas, sandbox, data):
    ticket = data.draw(st.sampled_from(sandbox.tickets()[:25]), label="ticket")
    raw = data.draw(
        st.fixed_dictionaries(
            {},
            optional={
                **{
                    key: st.one_of(hostile, st.none(), st.integers(), st.just({"x": [1]}))
                    for key in ("id", "ticketIdentifier", "title", "status", "priority",
                                "assignedAgent", "teamName")
                },
                # A string: the sandbox sorts by it (a real Thena would answer a 500).
                "updatedAt": hostile,
            },
        ),
        label="upstream values",
    )  # fmt: skip
    zone = data.draw(st.sampled_from(ZONES), label="tz cookie")
    sandbox.put_ticket(ticket["id"], **raw)
    try:
        _check(personas("viewer", zone).get("/tickets/"), f"/tickets/ with {raw!r}"[:300])
    finally:  # the next example draws from the same sandbox
        sandbox.put_ticket(ticket["id"], **{key: ticket.get(key) for key in raw})
