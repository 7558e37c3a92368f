"""Invariant #1: only what the user changed is sent.

Property tests over the whole edit round trip: odd-but-plausible tickets stored in the
sandbox, the page loaded in one browser time zone and saved in another, a random subset
of inputs edited exactly as a browser would submit them (tests/browser.py), and the PATCH
body checked against an oracle written here, independently of tickets/thena/wire.py.
"""

import json
import re
import zoneinfo
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from django.core.cache import cache
from hypothesis import Phase, assume, event, given, settings
from hypothesis import strategies as st

from tests.browser import form_data, replace, to_urlencoded
from tests.util import SANDBOX_VARIANTS
from tickets.thena.sandbox import SandboxApp

pytestmark = pytest.mark.django_db


@pytest.fixture(params=SANDBOX_VARIANTS.values(), ids=SANDBOX_VARIANTS.keys())
def sandbox_config(request):
    """Every test here runs against each way Thena may answer (tests/util.py)."""
    return request.param


# For regressions about values only an echoing, object-shaped Thena lets the form read.
READABLE = pytest.mark.parametrize(
    "sandbox_config", [SANDBOX_VARIANTS["echo-and-objects"]], indirect=True, ids=["readable"]
)

# -- the seeded world (deterministic: SandboxConfig.seed) ----------------------------------

_WORLD = SandboxApp()
SUP = next(t for t in _WORLD.teams() if t["identifier"] == "SUP" and not t["parentTeamId"])
SUP_TICKETS = [t["id"] for t in _WORLD.tickets() if t["teamId"] == SUP["id"]]

# SUP has no date_time, decimal, multi_choice, date, multi_line or JSON-edited field of its
# own: these are added to the team's definitions for every example.
EXTRA_DEFINITIONS = [
    ("XSUPDATETIME", "Callback at", "date_time", []),
    ("XSUPDECIMAL", "Credit", "decimal", []),
    ("XSUPMULTI", "Channels", "multi_choice", ["Chat", "Email", "Phone", "Über"]),
    ("XSUPDATE", "Renewal", "date", []),
    ("XSUPNOTES", "Notes", "multi_line", []),
    ("XSUPLOOKUP", "Linked records", "lookup", []),  # no typed input: edited as JSON
]

ZONES = [
    "",  # no cookie: UTC
    "UTC",
    "Europe/Paris",
    "America/New_York",
    "Pacific/Chatham",  # +12:45 / +13:45
    "Asia/Kathmandu",  # +05:45
    "America/St_Johns",  # -03:30 / -02:30
    "Australia/Lord_Howe",  # half-hour DST
    "Pacific/Kiritimati",  # +14:00
    "Pacific/Pago_Pago",  # -11:00
]


def _definition(uid: str, name: str, field_type: str, options: list[str]) -> dict:
    return {
        "name": name,
        "uid": uid,
        "slug": name.lower().replace(" ", "-"),
        "source": "ticket",
        "fieldType": field_type,
        "options": [{"id": f"{uid}O{i}", "value": o, "order": i} for i, o in enumerate(options)],
        "metadata": {},
        "isActive": True,
        "teamId": SUP["id"],
        "hintText": None,
    }


def _fresh(sandbox) -> list[dict]:
    """Reset the sandbox and the lookup cache; the SUP team's ticket custom fields."""
    sandbox.reset()
    cache.clear()
    world = sandbox._world  # no public API adds a custom-field definition
    world.custom_fields += [_definition(*spec) for spec in EXTRA_DEFINITIONS]
    return [
        d
        for d in world.custom_fields
        if d["source"] == "ticket" and d["teamId"] in (None, SUP["id"])
    ]


def _kind(definition: dict) -> str:
    return {
        "single_line": "text",
        "multi_line": "textarea",
        "integer": "integer",
        "decimal": "decimal",
        "date": "date",
        "date_time": "datetime",
        "single_choice": "choice",
        "multi_choice": "multichoice",
        "checkbox": "boolean",
        "boolean": "boolean",
        "email": "email",
        "url": "url",
    }.get(definition["fieldType"], "json")


def _options(definition: dict) -> list[str]:
    return [o["value"] for o in definition["options"]]


# -- stored values --------------------------------------------------------------------------

# Text as people and integrations write it: unicode, emoji, odd spaces and line breaks (no
# control characters other than line breaks and tabs, no NUL: Django refuses NUL).
_CHARS = st.characters(
    blacklist_categories=("Cs", "Cc"), blacklist_characters="\x00"
) | st.sampled_from(["\n", "\r\n", " ", "\t", "\u2028", "\u00a0", "é", "🎫", "👩‍💻", "&", "<"])
texts = st.lists(_CHARS, max_size=24).map("".join)


def _line(text: str) -> str:
    return text.replace("\r", "").replace("\n", "")


titles = texts.filter(lambda t: _line(t).strip())  # Thena refuses an empty title

moments = st.datetimes(
    min_value=datetime(1971, 1, 2), max_value=datetime(2098, 12, 30), timezones=st.just(UTC)
)
# Wall times that happen twice (or never) in some zone of ZONES.
DST_EDGES = [
    datetime(2026, 11, 1, 5, 30, tzinfo=UTC),  # 01:30 twice in New York
    datetime(2026, 10, 25, 0, 30, 40, 580_000, tzinfo=UTC),  # 02:30 twice in Paris
    datetime(2026, 3, 29, 1, 30, tzinfo=UTC),  # Paris 03:30, New York 21:30
    datetime(2026, 3, 8, 7, 30, tzinfo=UTC),  # 03:30 in New York, after the gap
]
OFFSETS = [0, 0, 60, 120, -300, -240, 330, 345, 765, 825, -570, 840, -660, -210]


@st.composite
def stored_moments(draw, *, nullable: bool = True):
    """A date-time as an API might write it: any offset, any precision, or nothing."""
    if nullable and draw(st.integers(0, 3)) == 0:
        return None
    moment = draw(moments | st.sampled_from(DST_EDGES))
    if draw(st.booleans()):
        moment = moment.replace(microsecond=draw(st.sampled_from([0, 580_000, 999_000, 1])))
    local = moment.astimezone(timezone(timedelta(minutes=draw(st.sampled_from(OFFSETS)))))
    spec = draw(st.sampled_from(["milliseconds", "seconds", "microseconds", "minutes"]))
    text = local.isoformat(timespec=spec)
    return text.replace("+00:00", "Z") if draw(st.booleans()) else text


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([1.0, -0.0, 0.1, 1e300, 2**53 + 1, "\u2028", "🎫", "", " x "])
    | texts
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)
json_objects = st.dictionaries(texts, json_values, max_size=4)


def _stored_cf_values(definition: dict):
    """The values (`data[*].value`) a custom field of this kind may hold."""
    options = _options(definition)
    match _kind(definition):
        case "text":
            return st.lists(texts.map(lambda t: _line(t)[:100]), min_size=1, max_size=1)
        case "textarea":
            return st.lists(texts, min_size=1, max_size=1)
        case "integer":
            return st.lists(
                st.sampled_from(["12", "0", "-7", "007", "12.0", "1.5", 500, 3]),
                min_size=1,
                max_size=1,
            )
        case "decimal":
            return st.lists(
                st.sampled_from(
                    ["1.50", "0.10", "-3.25", "100", "1e3", "2.500", "1,234.50", 2.5, 7]
                ),
                min_size=1,
                max_size=1,
            )
        case "date":
            # Also a date as JavaScript's toISOString() writes it.
            dates = st.dates().map(lambda d: d.isoformat()) | st.just("2026-03-05T00:00:00.000Z")
            return st.lists(dates, min_size=1, max_size=1)
        case "datetime":
            return st.lists(stored_moments(nullable=False), min_size=1, max_size=1)
        case "choice":
            return st.lists(st.sampled_from([*options, "Legacy option"]), min_size=1, max_size=1)
        case "multichoice":
            return st.lists(st.sampled_from([*options, "Retired"]), unique=True, max_size=3)
        case "boolean":
            return st.lists(
                st.sampled_from(["true", "false", "TRUE", "False", True, False]),
                min_size=1,
                max_size=1,
            )
        case "email":
            return st.lists(
                st.sampled_from(
                    ["owner7@customer.example", "Ann.Lee+vip@Customer.Example", "not an email"]
                ),
                min_size=1,
                max_size=1,
            )
        case "url":
            return st.lists(
                st.sampled_from(["https://status.example/i/1?x=1#y", "http://files.example/ü"]),
                min_size=1,
                max_size=1,
            )
    return st.lists(json_values, max_size=3)


UNKNOWN_ITEMS = [
    {"customFieldId": "NOSUCHFIELD", "data": [{"value": "kept"}]},
    {"customFieldId": "GONE", "data": [{"value": 1.0}, {"value": None}], "extra": {"b": 2, "a": 1}},
    {"note": "an item without an id", "data": []},
    {"uid": "LEGACYUID", "value": "🎫"},
]


@st.composite
def stored_cf_items(draw, definitions: list[dict]) -> list[dict]:
    items = []
    for definition in definitions:
        if draw(st.booleans()):
            values = draw(_stored_cf_values(definition))
            item = {"customFieldId": definition["uid"], "data": [{"value": v} for v in values]}
            if draw(st.booleans()):
                item["fieldType"] = definition["fieldType"]  # extra keys ride along
            items.append(item)
    items += draw(st.lists(st.sampled_from(UNKNOWN_ITEMS), unique_by=json.dumps, max_size=3))
    return draw(st.permutations(items))


urls = st.sampled_from(
    [
        "https://files.example/a.png",
        "http://cdn.example/ü/b?x=1",
        "https://x.example/c#d",
        "ftp://legacy.example/f.txt",  # the form refuses it, but only when edited
    ]
)


@st.composite
def stored_tickets(draw, definitions: list[dict]) -> tuple[str, dict]:
    """A SUP ticket and the raw values to store on it."""
    ticket_id = draw(st.sampled_from(SUP_TICKETS))
    raw = {
        "title": draw(titles),
        "description": draw(texts | st.none()),
        "dueDate": draw(stored_moments()),
        "closedAt": draw(stored_moments()),
        "customFieldValues": draw(stored_cf_items(definitions)),
        "metadata": draw(json_objects),
        "attachmentUrls": draw(st.lists(urls, unique=True, max_size=3)),
        "isPrivate": draw(st.booleans()),
        "source": draw(st.sampled_from(["slack", " email ", "web form", "API 🎫", ""])),
    }
    return ticket_id, raw


# -- the browser ------------------------------------------------------------------------------


def _set_zone(client, name: str) -> None:
    if name:
        client.cookies["tz"] = name
    else:
        client.cookies.pop("tz", None)


def _zone(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name or "UTC")


def _crlf(text: str) -> str:
    """Line breaks as a browser submits them."""
    return re.sub(r"\r\n|\r|\n", "\r\n", text)


def _lf(text):
    return re.sub(r"\r\n|\r", "\n", text) if isinstance(text, str) else text


def _values(data, name: str) -> list[str]:
    return [value for key, value in data if key == name]


def _single(data, name: str) -> str:
    values = _values(data, name)
    return values[0] if values else ""


def _patches(sandbox) -> list[dict]:
    return [r.json for r in sandbox.requests if r.method == "PATCH"]


def _local_minutes(zone_name: str):
    """Typed datetime-local text and the moment it means in `zone_name`."""

    @st.composite
    def strategy(draw):
        naive = draw(moments).replace(tzinfo=None, second=0, microsecond=0)
        zone = _zone(zone_name)
        aware = naive.replace(tzinfo=zone)
        # Wall times that do not exist or happen twice are refused by the form (Django).
        assume(aware.utcoffset() == aware.replace(fold=1).utcoffset())
        round_trip = aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None)
        assume(round_trip == naive)
        return naive.strftime("%Y-%m-%dT%H:%M"), _iso(aware)

    return strategy()


def _iso(moment: datetime) -> str:
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def _moment(text):
    """A stored date-time as an instant (None when empty), for comparing."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


# -- edits: (typed text, the PATCH value it should produce) ----------------------------------

EDITABLE = [
    "title",
    "description",
    "statusId",
    "priorityId",
    "assignedAgentId",
    "isPrivate",
    "dueDate",
    "metadata",
    "source",
]


def _edit_field(draw, name: str, data, form, raw: dict, save_zone: str):
    """(new entries for `name`, expected PATCH value); the entries differ from `data`'s."""
    current = [v for v in _values(data, name) if v]
    match name:
        case "title" | "source":
            typed = _line(draw(titles if name == "title" else texts))
            assume([typed] != current)
            return [typed], typed.strip()
        case "description":
            typed = draw(texts)
            assume(_lf(typed) != _lf(_single(data, name)))
            return [_crlf(typed)], typed
        case "statusId" | "priorityId" | "assignedAgentId":
            options = [str(v) for v, _ in form.fields[name].choices]
            typed = draw(st.sampled_from([o for o in options if [o] != current]))
            return [typed], typed or None
        case "isPrivate":
            return ([] if current else ["on"]), not current
        case "dueDate":
            if current and draw(st.integers(0, 4)) == 0:
                return [""], None
            typed, moment = draw(_local_minutes(save_zone))
            assume([typed] != current)
            return [typed], moment
        case "metadata":
            new = draw(json_objects)
            if current:  # shown: typing what it holds is no edit
                assume(_canonical(new) != _canonical(raw["metadata"]))
            indent = draw(st.sampled_from([None, 2, 4]))
            return [_crlf(json.dumps(new, indent=indent, ensure_ascii=draw(st.booleans())))], new
    raise AssertionError(name)


def _edit_cf(draw, definition: dict, data, form, save_zone: str):
    """(new entries for the cf input, expected `data` list, or None for no item)."""
    name = "cf__" + definition["uid"]
    current = _values(data, name)
    options = _options(definition)
    match _kind(definition):
        case "text" | "email" | "url":
            typed = draw(
                {
                    "text": texts.map(_line),
                    "email": st.integers(1, 999).map(lambda n: f"agent{n}@example.com"),
                    "url": st.integers(1, 999).map(lambda n: f"https://status.example/i/{n}"),
                }[_kind(definition)]
            )
            assume([typed] != current)
            value = typed.strip()
        case "textarea":
            typed = draw(texts)
            assume(_lf(typed) != _lf(_single(data, name)))
            return [_crlf(typed)], ([{"value": typed.strip()}] if typed.strip() else None)
        case "integer":
            typed = str(draw(st.integers(-(10**6), 10**6)))
            assume([typed] != current)
            value = typed
        case "decimal":
            typed = draw(st.sampled_from(["1.50", "0", "-2.25", "19.99", "3.10", "1000"]))
            assume([typed] != current)
            value = str(Decimal(typed))
        case "date":
            typed = draw(
                st.dates(
                    min_value=datetime(1971, 1, 1).date(), max_value=datetime(9998, 12, 31).date()
                )
            ).isoformat()
            assume([typed] != current)
            value = typed
        case "datetime":
            typed, value = draw(_local_minutes(save_zone))
            assume([typed] != current)
        case "choice":
            typed = draw(st.sampled_from([o for o in ["", *options] if [o] != current]))
            value = typed
        case "multichoice":
            chosen = draw(st.lists(st.sampled_from(options), unique=True, max_size=len(options)))
            chosen = [o for o in options if o in chosen]
            assume(chosen != current)
            return chosen, ([{"value": v} for v in chosen] or None)
        case "boolean":
            return ([] if current else ["on"]), [{"value": "false" if current else "true"}]
        case _:
            raise AssertionError(definition)
    return [typed], ([{"value": value}] if value else None)


def _json(value):
    """`value` with JSON's notion of equal numbers (1 == 1.0 == -0.0 + 1) but true != 1."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json(item) for item in value]
    return value


def _canonical(value) -> str:
    """JSON equality that tells true from 1 (Python's == does not)."""
    return json.dumps(_json(value), sort_keys=True)


def _differs(name: str, before, after) -> bool:
    if name == "dueDate":
        return before != _moment(after)
    if name == "description":
        return _lf(before) != _lf(after)
    return _canonical(before) != _canonical(after)


def _by_input(definitions: list[dict], name: str) -> dict:
    return next(d for d in definitions if "cf__" + d["uid"] == name)


def _cf_uid(item: dict):
    for key in ("customFieldId", "customFieldUid", "uid", "id"):
        if isinstance(item.get(key), str):
            return item[key]
    return None


def _stored_value(name: str, raw: dict, ticket: dict):
    """What the ticket holds for a PATCH field, in PATCH terms, for comparing."""
    value = raw.get(name, ticket.get(name))
    if name == "dueDate":
        return _moment(value)
    if name in ("title", "description", "source"):
        return value or ""
    return value


def _stored_cf_data(raw: dict, uid: str):
    return next(
        (item.get("data") for item in raw["customFieldValues"] if _cf_uid(item) == uid), None
    )


# -- the property ---------------------------------------------------------------------------


# No shrinking: a failure would shrink for minutes; the regressions below are the minimal
# cases of the bugs this found.
def _custom_fields_editable(sandbox, raw: dict) -> bool:
    """Only values read in the shape they are written can be edited (thena-api.md §3)."""
    items = raw["customFieldValues"]
    if sandbox.config.custom_field_shape == "strings":
        return not items
    return all(_cf_uid(i) and isinstance(i.get("data"), list) for i in items)


# A quarter of the examples per variant of the sandbox.
@settings(max_examples=15, phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(data=st.data())
def test_only_what_the_user_changed_is_sent(sandbox, thena, manager_client, data):
    definitions = _fresh(sandbox)
    ticket_id, raw = data.draw(stored_tickets(definitions), label="stored")
    sandbox.put_ticket(ticket_id, **raw)
    stored = sandbox.ticket(ticket_id)
    load_zone = data.draw(st.sampled_from(ZONES), label="load zone")
    save_zone = data.draw(st.sampled_from([load_zone, *ZONES]), label="save zone")
    url = f"/tickets/{ticket_id}/"

    _set_zone(manager_client, load_zone)
    page = manager_client.get(url)
    assert page.status_code == 200
    posted = form_data(page.content.decode())
    form = page.context["form"]

    editable_cf = _custom_fields_editable(sandbox, raw)
    shown_cf = {key for key, _ in posted if key.startswith("cf__")}
    assert bool(shown_cf) == editable_cf
    assert ("customFieldValues" in {key for key, _ in posted}) is False
    typed_cf = [d for d in definitions if _kind(d) != "json" and editable_cf]
    write_only = set() if sandbox.config.echo_write_only else {"dueDate", "metadata"}
    assert all(_single(posted, name) == "" for name in write_only)
    names = data.draw(
        st.lists(st.sampled_from(EDITABLE + ["cf__" + d["uid"] for d in typed_cf]), unique=True),
        label="edited",
    )
    expected: dict = {}
    expected_cf: dict = {}
    for name in names:
        if name.startswith("cf__"):
            definition = _by_input(definitions, name)
            entries, value = _edit_cf(data.draw, definition, posted, form, save_zone)
            uid = definition["uid"]
            if _canonical(value) != _canonical(_stored_cf_data(raw, uid)):
                expected_cf[uid] = value
        else:
            entries, value = _edit_field(data.draw, name, posted, form, raw, save_zone)
            if name in write_only:
                if entries != _values(posted, name):  # set: sent as set, whatever it held
                    expected[name] = value
            elif _differs(name, _stored_value(name, raw, stored), value):
                expected[name] = value
        posted = replace(posted, name, entries or None)

    event(f"edited inputs: {len(names)}; changed fields: {len(expected) + bool(expected_cf)}")
    for name in names:
        event(
            "edited " + (_kind(_by_input(definitions, name)) if name.startswith("cf__") else name)
        )
    sandbox.requests.clear()
    _set_zone(manager_client, save_zone)
    response = manager_client.post(
        url, to_urlencoded(posted), content_type="application/x-www-form-urlencoded"
    )
    form_errors = getattr(response, "context", None) and response.context["form"].errors
    assert response.status_code == 302, form_errors
    patches = _patches(sandbox)
    if not expected and not expected_cf:
        assert patches == []
        return
    assert len(patches) == 1, patches
    body = patches[0]
    assert set(body) == set(expected) | ({"customFieldValues"} if expected_cf else set())
    for name, value in expected.items():
        if name == "description":
            assert _lf(body[name]) == _lf(value)
        elif name == "dueDate":
            assert body[name] == value
        else:
            assert _canonical(body[name]) == _canonical(value), name
    if expected_cf:
        items = body["customFieldValues"]
        untouched = [i for i in raw["customFieldValues"] if _cf_uid(i) not in expected_cf]
        assert [i for i in items if _cf_uid(i) not in expected_cf] == untouched
        sent = {_cf_uid(i): i["data"] for i in items if _cf_uid(i) in expected_cf}
        wanted = {uid: value for uid, value in expected_cf.items() if value is not None}
        assert {uid: [_lf_item(d) for d in v] for uid, v in sent.items()} == {
            uid: [_lf_item(d) for d in v] for uid, v in wanted.items()
        }


def _lf_item(item):
    return {k: _lf(v) for k, v in item.items()} if isinstance(item, dict) else item


# -- regressions ------------------------------------------------------------------------------


def _sup_ticket(sandbox, **raw) -> tuple[str, str]:
    definitions = _fresh(sandbox)
    ticket_id = SUP_TICKETS[0]
    sandbox.put_ticket(ticket_id, **raw)
    return ticket_id, definitions


def _open(client, url: str, zone: str):
    _set_zone(client, zone)
    return form_data(client.get(url).content.decode())


def _save(client, sandbox, url: str, data, zone: str):
    sandbox.requests.clear()
    _set_zone(client, zone)
    response = client.post(
        url, to_urlencoded(data), content_type="application/x-www-form-urlencoded"
    )
    errors = response.context["form"].errors if response.status_code == 200 else None
    return response, _patches(sandbox), errors


def test_title_only_edit_with_a_millisecond_custom_datetime_sends_only_the_title(
    sandbox, thena, manager_client
):
    cf = {"customFieldId": "XSUPDATETIME", "data": [{"value": "2026-03-05T04:38:40.580Z"}]}
    ticket_id, _ = _sup_ticket(sandbox, customFieldValues=[cf], dueDate="2026-03-05T06:38:40+02:00")
    url = f"/tickets/{ticket_id}/"
    data = replace(_open(manager_client, url, "Pacific/Chatham"), "title", "Only this")
    response, patches, errors = _save(manager_client, sandbox, url, data, "Pacific/Chatham")
    assert (response.status_code, errors) == (302, None)
    assert patches == [{"title": "Only this"}]


def test_load_in_paris_save_in_new_york_without_edits_sends_nothing(sandbox, thena, manager_client):
    cf = {"customFieldId": "XSUPDATETIME", "data": [{"value": "2026-07-01T22:15:09.001Z"}]}
    ticket_id, _ = _sup_ticket(
        sandbox,
        customFieldValues=[cf],
        dueDate="2026-03-05T04:38:40.580Z",
        closedAt="2026-03-05T06:38:40+02:00",
    )
    url = f"/tickets/{ticket_id}/"
    data = _open(manager_client, url, "Europe/Paris")
    response, patches, errors = _save(manager_client, sandbox, url, data, "America/New_York")
    assert (response.status_code, errors) == (302, None)
    assert patches == []


def test_an_untouched_form_posted_twice_sends_nothing(sandbox, thena, manager_client):
    ticket_id, _ = _sup_ticket(
        sandbox,
        title="  Spaces\r\naround ",
        description="first\r\nsecond\nthird\r",
        metadata={"b": 1.0, "a": [2**64, "\u2028", "🎫"], "n": {"x": None}},
        dueDate="2026-03-05T04:38:40.123456+05:45",
    )
    url = f"/tickets/{ticket_id}/"
    data = _open(manager_client, url, "Asia/Kathmandu")
    for _ in range(2):
        response, patches, errors = _save(manager_client, sandbox, url, data, "Asia/Kathmandu")
        assert (response.status_code, errors) == (302, None)
        assert patches == []


def test_untouched_due_date_at_an_ambiguous_local_time_does_not_block_a_title_edit(
    sandbox, thena, manager_client
):
    # 05:30Z on 1 Nov 2026 is 01:30 in New York, a wall time that happens twice that night.
    ticket_id, _ = _sup_ticket(sandbox, dueDate="2026-11-01T05:30:00.000Z")
    url = f"/tickets/{ticket_id}/"
    data = replace(_open(manager_client, url, "America/New_York"), "title", "Only this")
    response, patches, errors = _save(manager_client, sandbox, url, data, "America/New_York")
    assert (response.status_code, errors) == (302, None)
    assert patches == [{"title": "Only this"}]


@READABLE
@pytest.mark.parametrize(
    ("uid", "stored"),
    [
        ("XSUPDATE", "2026-03-05T00:00:00.000Z"),  # a date as JavaScript's toISOString()
        ("XSUPDECIMAL", "1,234.50"),
        ("XSUPDECIMAL", "$12.50"),
        ("XSUPDECIMAL", "1e400"),  # no double holds it
        ("XSUPDECIMAL", "\u0664\u0662"),  # Arabic-Indic digits
        ("XSUPDATE", "99999-01-01"),  # past Python's last year, not Chromium's
        ("XSUPNOTES", "a\x00b"),  # the page shows U+FFFD
    ],
)
def test_untouched_custom_field_the_browser_cannot_show_is_not_cleared(
    sandbox, thena, manager_client, uid, stored
):
    cf = {"customFieldId": uid, "data": [{"value": stored}]}
    ticket_id, _ = _sup_ticket(sandbox, customFieldValues=[cf])
    url = f"/tickets/{ticket_id}/"
    data = replace(_open(manager_client, url, ""), "title", "Only this")
    response, patches, errors = _save(manager_client, sandbox, url, data, "")
    assert (response.status_code, errors) == (302, None)
    assert patches == [{"title": "Only this"}]


@READABLE
def test_metadata_true_changed_to_1_is_sent(sandbox, thena, manager_client):
    ticket_id, _ = _sup_ticket(sandbox, metadata={"flag": True})
    url = f"/tickets/{ticket_id}/"
    data = replace(_open(manager_client, url, ""), "metadata", '{"flag": 1}')
    response, patches, errors = _save(manager_client, sandbox, url, data, "")
    assert (response.status_code, errors) == (302, None)
    assert patches == [{"metadata": {"flag": 1}}]


@READABLE
def test_editing_a_json_custom_field_keeps_the_shape_of_the_entries_left_alone(
    sandbox, thena, manager_client
):
    cf = {"customFieldId": "XSUPLOOKUP", "data": [{"value": "R-1"}, {"value": "R-2"}]}
    ticket_id, _ = _sup_ticket(sandbox, customFieldValues=[cf])
    url = f"/tickets/{ticket_id}/"
    data = _open(manager_client, url, "")
    shown = json.loads(_single(data, "cf__XSUPLOOKUP"))
    data = replace(data, "cf__XSUPLOOKUP", json.dumps(shown[:1]))  # drop the second entry
    response, patches, errors = _save(manager_client, sandbox, url, data, "")
    assert (response.status_code, errors) == (302, None)
    assert patches == [
        {"customFieldValues": [{"customFieldId": "XSUPLOOKUP", "data": [{"value": "R-1"}]}]}
    ]


@READABLE
def test_untouched_due_date_before_the_year_1000_is_not_cleared(sandbox, thena, manager_client):
    ticket_id, _ = _sup_ticket(sandbox, dueDate="0999-03-05T04:38:40.580Z")
    url = f"/tickets/{ticket_id}/"
    data = replace(_open(manager_client, url, ""), "title", "Only this")
    response, patches, errors = _save(manager_client, sandbox, url, data, "")
    assert (response.status_code, errors) == (302, None)
    assert patches == [{"title": "Only this"}]


def test_an_untouched_null_character_is_not_sent_back_as_u_fffd(sandbox, thena, manager_client):
    ticket_id, _ = _sup_ticket(sandbox, description="a\x00b", title="x\x00y")
    url = f"/tickets/{ticket_id}/"
    data = replace(_open(manager_client, url, ""), "aiGeneratedSummary", "Only this")
    response, patches, errors = _save(manager_client, sandbox, url, data, "")
    assert (response.status_code, errors) == (302, None)
    assert patches == [{"aiGeneratedSummary": "Only this"}]
