"""Bulk edit (issue 13), service and views, against the in-process sandbox through the
real client and the real task worker: what real use does to it."""

import csv
import io
import re
import threading
import time
from collections import Counter
from contextlib import ExitStack
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.core.management import call_command
from django.db import connection
from django.tasks import TaskResultStatus
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from tests.conftest import _client_for, _user
from tests.test_tasks import _a_minute_passes, _run_worker
from tickets import bulk, locks, tasks
from tickets.audit import RequestMeta, verify_chain
from tickets.models import AuditEntry, Batch, BatchItem, TeamScope, TicketEditLock
from tickets.thena.sandbox import SandboxConfig

pytestmark = pytest.mark.usefixtures("thena", "shared_thena")

META = RequestMeta(request_id="req-bulk", client_ip="192.0.2.9", user_agent="pytest")
BULK_PATH = "/v1/tickets/bulk"
REASON = "Quarterly clean-up"


@pytest.fixture
def shared_thena(settings):
    """As tests/test_tasks.py: every process reaches the same Thena, the installed client."""
    settings.THENA_API_BASE_URL = "https://thena.test"


# -- the world ------------------------------------------------------------------------------


def _team(sandbox, identifier: str = "SUP") -> dict:
    return next(t for t in sandbox.teams() if t["identifier"] == identifier)


def _of_team(sandbox, identifier: str = "SUP") -> list[dict]:
    return [t for t in sandbox.tickets() if t["teamIdentifier"] == identifier]


def _patches(sandbox) -> list:
    return [r for r in sandbox.requests if r.method == "PATCH"]


def _patched(sandbox, *, applied_only: bool = False) -> Counter:
    """How many PATCH requests named each ticket id (bulk ids included)."""
    counts: Counter = Counter()
    for request in _patches(sandbox):
        if applied_only and request.status != 200:
            continue
        if request.path.rstrip("/") == BULK_PATH:
            counts.update((request.json or {}).get("ticketIds") or [])
        else:
            counts[request.path.rstrip("/").rsplit("/", 1)[-1]] += 1
    return counts


def _status(thena, team_id: str, name: str) -> dict:
    return next(s for s in thena.statuses(team_id) if s["name"] == name)


def _changeable(sandbox, thena, status_id: str, count: int, identifier: str = "SUP") -> list[dict]:
    """Public tickets of the team in a top-level status other than `status_id`: a batch
    setting both changes them."""
    team_id = _team(sandbox, identifier)["id"]
    parents = {s["id"] for s in thena.statuses(team_id) if not s.get("parentStatusId")}
    found = [
        t
        for t in _of_team(sandbox, identifier)
        if t["statusId"] != status_id and not t["isPrivate"] and t["statusId"] in parents
    ]
    assert len(found) >= count
    return found[:count]


def _preview(user, team_id: str, ids, values: dict, *, labels: dict | None = None, **selection):
    """A draft batch, as the form's POST makes it (`values` as BulkEditForm.values())."""
    return bulk.batch_preview_create(
        user=user,
        selection=bulk.Selection(team_id=team_id, ticket_ids=tuple(ids), **selection),
        values=values,
        value_labels=labels or {},
        reason=REASON,
        meta=META,
    )


def _confirm_and_run(user, batch: Batch) -> Batch:
    bulk.batch_confirm(user=user, batch=batch)
    _run_worker()
    batch.refresh_from_db()
    return batch


def _items(batch: Batch) -> dict[str, BatchItem]:
    return {item.ticket_id: item for item in batch.items.order_by("position")}


def _outcomes(batch: Batch) -> dict[str, str]:
    return {row.item.ticket_id: row.outcome for row in bulk.batch_results(batch)}


def _entries(batch: Batch):
    return AuditEntry.objects.with_current_outcome().filter(batch_id=str(batch.pk)).order_by("id")


def _html(response) -> str:
    return response.content.decode()


def _text(html: str) -> str:
    """The page's text, tags dropped and white space collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).strip()


def _rows(html: str) -> dict[str, str]:
    """A table's rows by the text of their first cell: the row's text."""
    rows = {}
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", html, flags=re.S):
        cells = re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, flags=re.S)
        if cells:
            rows[_text(cells[0])] = _text(row)
    return rows


def _messages(response) -> list[str]:
    return [str(m) for m in response.wsgi_request._messages]


# -- 1. the happy path through the pages ---------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_happy_path_through_the_pages(manager_client, sandbox, thena):
    team = _team(sandbox)
    resolved = _status(thena, team["id"], "Resolved")
    first, second, third = _changeable(sandbox, thena, resolved["id"], 3)
    # The third holds the values already: no change, and not sent.
    sandbox.touch_ticket(third["id"], statusId=resolved["id"], isPrivate=True)
    ids = [first["id"], second["id"], third["id"]]

    # The list offers the selection only with a team chosen.
    page = _html(manager_client.get("/tickets/"))
    assert 'id="bulk-select"' not in page
    assert 'name="ticket"' not in page
    assert "To edit tickets in bulk, choose a team first." in page
    page = _html(manager_client.get(f"/tickets/?team={team['id']}"))
    assert 'id="bulk-select"' in page
    # The ticket just touched is the newest: on the first page, with its tick box.
    assert f'name="ticket" value="{third["id"]}" form="bulk-select"' in page

    query = "&".join([f"team={team['id']}", *(f"ticket={i}" for i in ids)])
    response = manager_client.get(f"/tickets/bulk/?{query}")
    assert response.status_code == 200
    assert "Bulk edit: 3 tickets in Support" in _text(_html(response))
    assert not _patches(sandbox)

    response = manager_client.post(
        "/tickets/bulk/",
        {
            "team": team["id"],
            "ticket": ids,
            "statusId": resolved["id"],
            "isPrivate": "true",
            "reason": REASON,
        },
    )
    assert response.status_code == 302, _html(response)
    batch = Batch.objects.get()
    assert response["Location"] == f"/tickets/bulk/{batch.pk}/"
    assert batch.state == Batch.State.DRAFT
    assert batch.values == {"statusId": resolved["id"], "isPrivate": True}
    assert not _patches(sandbox)

    page = _html(manager_client.get(response["Location"]))
    assert "2 tickets will change; 3 selected." in _text(page)
    assert "Apply to 2 tickets" in _text(page)
    rows = _rows(page)
    old = {s["id"]: s["name"] for s in thena.statuses(team["id"])}
    for ticket in (first, second):
        row = rows[ticket["ticketIdentifier"]]
        assert f"Status: {old[ticket['statusId']]} → Closed / Resolved" in row
        assert "Private: No → Yes: private" in row
        assert "No change" not in row
    assert "No change" in rows[third["ticketIdentifier"]]
    assert "→" not in rows[third["ticketIdentifier"]]

    response = manager_client.post(f"/tickets/bulk/{batch.pk}/", {"action": "confirm"})
    assert response.status_code == 302
    batch.refresh_from_db()
    assert batch.state == Batch.State.QUEUED
    assert not _patches(sandbox)

    _run_worker()
    batch.refresh_from_db()
    assert batch.state == Batch.State.DONE

    [sent] = _patches(sandbox)
    assert sent.path == BULK_PATH
    assert sorted(sent.json.pop("ticketIds")) == sorted([first["id"], second["id"]])
    assert sent.json == {"statusId": resolved["id"], "isPrivate": True}
    for ticket in (first, second, third):
        now = sandbox.ticket(ticket["id"])
        assert (now["statusId"], now["isPrivate"]) == (resolved["id"], True)

    page = _html(manager_client.get(f"/tickets/bulk/{batch.pk}/"))
    text = _text(page)
    assert "Changed: 2" in text and "No change: 1" in text and "Failed: 0" in text
    entries = {e.ticket_id: e for e in _entries(batch)}
    assert set(entries) == {first["id"], second["id"]}
    for entry in entries.values():
        assert f'href="/audit/{entry.number}/"' in page

    response = manager_client.get(f"/tickets/bulk/{batch.pk}.csv")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    updated = "Thena's bulk update lists the ticket as updated."
    assert rows == [
        ["ticket_identifier", "ticket_id", "title", "outcome", "message", "audit_entry"],
        *(
            [
                t["ticketIdentifier"],
                t["id"],
                t["title"],
                "succeeded",
                updated,
                str(entries[t["id"]].number),
            ]
            for t in (first, second)
        ),
        [
            third["ticketIdentifier"],
            third["id"],
            third["title"],
            "no_change",
            "It already had these values.",
            "",
        ],
    ]


# -- 2. inputs the bulk endpoint does not take: one PATCH per ticket ------------------------

ORDER_NUMBER = "Order number"
OBJECTS = pytest.param(SandboxConfig(custom_field_shape="objects"), id="objects")


def _field_uid(thena, team_id: str, name: str) -> str:
    return next(f["uid"] for f in thena.custom_fields(team_id) if f["name"] == name)


def _single_patches(sandbox) -> dict[str, dict]:
    """The single-ticket PATCHes, by ticket id (each id at most once)."""
    patches = [r for r in _patches(sandbox) if r.path.rstrip("/") != BULK_PATH]
    by_id = {r.path.rstrip("/").rsplit("/", 1)[-1]: r.json for r in patches}
    assert len(by_id) == len(patches), "a ticket was patched twice"
    return by_id


@pytest.mark.django_db(transaction=True)
def test_sub_team_and_form_go_ticket_by_ticket_with_only_what_changes(manager, sandbox, thena):
    team = _team(sandbox)
    tier1 = next(s for s in thena.sub_teams(team["id"]) if s["name"] == "Tier 1")
    form = next(f for f in thena.forms(team["id"]) if f["name"] == "Support request")
    plain, half, done = [t for t in _of_team(sandbox) if t["subTeamId"] != tier1["id"]][:3]
    sandbox.touch_ticket(plain["id"], formId=None)
    sandbox.touch_ticket(half["id"], subTeamId=tier1["id"], formId=None)  # needs the form only
    sandbox.touch_ticket(done["id"], subTeamId=tier1["id"], formId=form["id"])
    values = {"subTeamId": tier1["id"], "formId": form["id"]}

    batch = _preview(manager, team["id"], [plain["id"], half["id"], done["id"]], values)
    _confirm_and_run(manager, batch)

    assert _single_patches(sandbox) == {
        plain["id"]: {"subTeamId": tier1["id"], "formId": form["id"]},
        half["id"]: {"formId": form["id"]},
    }
    assert not [r for r in _patches(sandbox) if r.path == BULK_PATH]
    assert _outcomes(batch) == {
        plain["id"]: "succeeded",
        half["id"]: "succeeded",
        done["id"]: "no_change",
    }
    for ticket in (plain, half, done):
        now = sandbox.ticket(ticket["id"])
        assert (now["subTeamId"], now["formId"]) == (tier1["id"], form["id"])


@pytest.mark.django_db(transaction=True)
def test_a_bulk_field_beside_another_goes_ticket_by_ticket(manager, sandbox, thena):
    team = _team(sandbox)
    resolved = _status(thena, team["id"], "Resolved")
    first, second = _changeable(sandbox, thena, resolved["id"], 2)
    due = "2031-02-03T04:05:06.000Z"
    values = {"statusId": resolved["id"], "dueDate": due}

    batch = _preview(manager, team["id"], [first["id"], second["id"]], values)
    _confirm_and_run(manager, batch)

    # A due date cannot be read back, so it is always sent; with it, no bulk request.
    assert _single_patches(sandbox) == {
        first["id"]: {"statusId": resolved["id"], "dueDate": due},
        second["id"]: {"statusId": resolved["id"], "dueDate": due},
    }
    assert set(_outcomes(batch).values()) == {"succeeded"}
    assert sandbox.ticket(first["id"])["dueDate"] == due


@pytest.mark.django_db(transaction=True)
def test_a_due_date_alone_is_always_sent(manager, sandbox, thena):
    team = _team(sandbox)
    [ticket] = _of_team(sandbox)[:1]
    due = "2031-02-03T04:05:06.000Z"
    sandbox.touch_ticket(ticket["id"], dueDate=due)  # it has it, but nobody can see that

    batch = _preview(manager, team["id"], [ticket["id"]], {"dueDate": due})
    preview = bulk.batch_preview(batch, bulk.team_choices_load(team["id"]))
    shown = bulk.value_text("dueDate", due)
    assert [row.changes for row in preview] == [[("Due date", "not readable", shown)]]
    _confirm_and_run(manager, batch)

    assert _single_patches(sandbox) == {ticket["id"]: {"dueDate": due}}


@pytest.mark.parametrize("sandbox_config", [OBJECTS], indirect=True)
@pytest.mark.django_db(transaction=True)
def test_a_custom_field_is_merged_into_each_tickets_own_values(manager_client, sandbox, thena):
    team = _team(sandbox)
    uid = _field_uid(thena, team["id"], ORDER_NUMBER)
    with_values = next(
        t
        for t in _of_team(sandbox)
        if len(t["customFieldValues"]) >= 2
        and any(item["customFieldId"] == uid for item in t["customFieldValues"])
    )
    others = next(
        t
        for t in _of_team(sandbox)
        if t["customFieldValues"] and all(i["customFieldId"] != uid for i in t["customFieldValues"])
    )
    empty = next(t for t in _of_team(sandbox) if not t["customFieldValues"])
    already = next(
        t
        for t in _of_team(sandbox)
        if t["id"] not in (with_values["id"], others["id"], empty["id"])
    )
    sandbox.touch_ticket(
        already["id"], customFieldValues=[{"customFieldId": uid, "data": [{"value": "ORD-1"}]}]
    )
    ids = [with_values["id"], others["id"], empty["id"], already["id"]]

    response = manager_client.post(
        "/tickets/bulk/", {"team": team["id"], "ticket": ids, f"cf__{uid}": "ORD-1"}
    )
    assert response.status_code == 302, _html(response)
    batch = Batch.objects.get()
    assert batch.values == {f"cf__{uid}": [{"value": "ORD-1"}]}
    rows = _rows(_html(manager_client.get(response["Location"])))
    assert "No change" in rows[already["ticketIdentifier"]]
    assert f"{ORDER_NUMBER}: — → ORD-1" in rows[empty["ticketIdentifier"]]
    old = next(i for i in with_values["customFieldValues"] if i["customFieldId"] == uid)
    old_text = old["data"][0]["value"]
    assert f"{ORDER_NUMBER}: {old_text} → ORD-1" in rows[with_values["ticketIdentifier"]]
    manager_client.post(response["Location"], {"action": "confirm"})
    _run_worker()

    new = {"customFieldId": uid, "data": [{"value": "ORD-1"}]}
    assert _single_patches(sandbox) == {
        with_values["id"]: {
            "customFieldValues": [
                new if item["customFieldId"] == uid else item
                for item in with_values["customFieldValues"]
            ]
        },
        others["id"]: {"customFieldValues": [*others["customFieldValues"], new]},
        empty["id"]: {"customFieldValues": [new]},
    }
    batch.refresh_from_db()
    assert _outcomes(batch) == {
        with_values["id"]: "succeeded",
        others["id"]: "succeeded",
        empty["id"]: "succeeded",
        already["id"]: "no_change",
    }


@pytest.mark.parametrize("sandbox_config", [OBJECTS], indirect=True)
@pytest.mark.django_db(transaction=True)
def test_another_custom_field_changed_since_the_preview_is_kept(manager, sandbox, thena):
    """The batch's custom field is merged into the ticket's list as it is at send time:
    someone's change to another custom field since the preview is not lost; a change
    to the batch's own field is a conflict."""
    team = _team(sandbox)
    uid = _field_uid(thena, team["id"], ORDER_NUMBER)
    area = _field_uid(thena, team["id"], "Product area")
    theirs_other, theirs_same = [t for t in _of_team(sandbox) if not t["customFieldValues"]][:2]
    values = {f"cf__{uid}": [{"value": "ORD-1"}]}
    batch = _preview(manager, team["id"], [theirs_other["id"], theirs_same["id"]], values)

    api = {"customFieldId": area, "data": [{"value": "API"}]}
    sandbox.touch_ticket(theirs_other["id"], customFieldValues=[api])
    sandbox.touch_ticket(
        theirs_same["id"], customFieldValues=[{"customFieldId": uid, "data": [{"value": "ORD-9"}]}]
    )
    _confirm_and_run(manager, batch)

    new = {"customFieldId": uid, "data": [{"value": "ORD-1"}]}
    assert _single_patches(sandbox) == {theirs_other["id"]: {"customFieldValues": [api, new]}}
    assert sandbox.ticket(theirs_other["id"])["customFieldValues"] == [api, new]
    items = _items(batch)
    assert items[theirs_other["id"]].outcome == "succeeded"
    assert items[theirs_same["id"]].outcome == "skipped"
    assert items[theirs_same["id"]].message == (
        f"Not sent: changed in Thena since the preview: {ORDER_NUMBER} (now “ORD-9”)."
    )


@pytest.mark.django_db(transaction=True)
def test_with_custom_fields_read_as_strings_those_tickets_are_skipped(manager, sandbox, thena):
    """Thena documents customFieldValues as strings: a ticket with values cannot have one
    of them rewritten without losing the others. A ticket without any can."""
    team = _team(sandbox)
    uid = _field_uid(thena, team["id"], ORDER_NUMBER)
    with_values = next(t for t in _of_team(sandbox) if t["customFieldValues"])
    empty = next(t for t in _of_team(sandbox) if not t["customFieldValues"])
    values = {f"cf__{uid}": [{"value": "ORD-1"}]}

    labels = {f"cf__{uid}": "ORD-1"}
    batch = _preview(manager, team["id"], [with_values["id"], empty["id"]], values, labels=labels)
    preview = bulk.batch_preview(batch, bulk.team_choices_load(team["id"]))
    assert [row.changes for row in preview] == [
        [(ORDER_NUMBER, "not readable", "ORD-1")],
        [(ORDER_NUMBER, "—", "ORD-1")],
    ]
    _confirm_and_run(manager, batch)

    assert _single_patches(sandbox) == {
        empty["id"]: {"customFieldValues": [{"customFieldId": uid, "data": [{"value": "ORD-1"}]}]}
    }
    items = _items(batch)
    assert items[with_values["id"]].outcome == "skipped"
    assert "cannot be written back exactly" in items[with_values["id"]].message
    assert items[empty["id"]].outcome == "succeeded"
    assert (
        sandbox.ticket(with_values["id"])["customFieldValues"] == with_values["customFieldValues"]
    )


# -- 3. "all matching" ----------------------------------------------------------------------


def _form(team_id: str, **more) -> dict:
    return {"team": team_id, "reason": REASON, **more}


@pytest.mark.parametrize("sandbox_config", [SandboxConfig(ticket_count=600)], indirect=True)
@pytest.mark.django_db
def test_all_matching_without_a_query_takes_every_ticket_of_the_team(
    manager_client, sandbox, thena
):
    team = _team(sandbox)
    expected = {t["id"] for t in _of_team(sandbox)}
    assert len(expected) > 2 * bulk.LIST_PAGE  # several list pages

    response = manager_client.get(f"/tickets/bulk/?team={team['id']}&all=1")
    assert response.status_code == 200
    assert "Bulk edit: every ticket in Support" in _text(_html(response))
    assert 'name="all" value="1"' in _html(response)
    resolved = _status(thena, team["id"], "Resolved")
    response = manager_client.post(
        "/tickets/bulk/", _form(team["id"], all="1", statusId=resolved["id"])
    )

    assert response.status_code == 302, _html(response)
    batch = Batch.objects.get()
    assert set(batch.items.values_list("ticket_id", flat=True)) == expected
    assert batch.items.count() == len(expected)
    assert not _patches(sandbox)


@pytest.mark.parametrize("sandbox_config", [SandboxConfig(ticket_count=600)], indirect=True)
@pytest.mark.django_db
def test_all_matching_misses_no_ticket_updated_while_the_pages_are_read(
    manager_client, sandbox, thena
):
    """Thena lists tickets most recently updated first, by page: a ticket someone updates
    while the pages are read moves to the first page, already read. "All matching" must
    still take every ticket of the team (or say it could not)."""
    team = _team(sandbox)
    expected = {t["id"] for t in _of_team(sandbox)}
    oldest = min(_of_team(sandbox), key=lambda t: t["updatedAt"])
    index = next(
        i for i, route in enumerate(sandbox._routes) if route[1].pattern == "/v1/tickets/?"
    )
    method, pattern, handler = sandbox._routes[index]

    def list_while_someone_edits(request, **params):
        page = handler(request, **params)
        if request.query.get("page") == "0":
            sandbox._patch(sandbox._world.tickets[oldest["id"]], {"title": "Updated meanwhile"})
        return page

    sandbox._routes[index] = (method, pattern, list_while_someone_edits)
    resolved = _status(thena, team["id"], "Resolved")
    response = manager_client.post(
        "/tickets/bulk/", _form(team["id"], all="1", statusId=resolved["id"])
    )

    if response.status_code == 302:
        got = set(Batch.objects.get().items.values_list("ticket_id", flat=True))
        assert got == expected, f"left out: {expected - got}"
    else:
        assert response.status_code == 400
        assert not Batch.objects.exists()


@pytest.mark.parametrize(
    ("sandbox_config", "word"),
    [
        (SandboxConfig(), "upload"),  # a few
        (SandboxConfig(ticket_count=600), "writes"),  # every ticket: several search pages
    ],
    indirect=["sandbox_config"],
)
@pytest.mark.django_db
def test_all_matching_a_query_takes_exactly_the_matching_tickets(
    manager_client, sandbox, thena, word
):
    team = _team(sandbox)
    expected = {
        t["id"]
        for t in _of_team(sandbox)
        if any(word in (t[k] or "").lower() for k in ("title", "ticketIdentifier", "description"))
    }
    assert expected
    if word == "writes":
        assert len(expected) > 2 * bulk.LIST_PAGE
    resolved = _status(thena, team["id"], "Resolved")

    response = manager_client.get(f"/tickets/bulk/?team={team['id']}&all=1&q={word}")
    assert f"Bulk edit: every ticket matching “{word}” in Support" in _text(_html(response))
    response = manager_client.post(
        "/tickets/bulk/", _form(team["id"], all="1", q=word, statusId=resolved["id"])
    )

    assert response.status_code == 302, _html(response)
    batch = Batch.objects.get()
    assert set(batch.items.values_list("ticket_id", flat=True)) == expected


@pytest.mark.django_db
def test_all_matching_takes_the_lists_whole_filter(manager_client, sandbox, thena):
    """Not only the words searched: the status, priority, assignee... filters too."""
    team = _team(sandbox)
    priority = _of_team(sandbox)[0]["priority"]
    expected = {
        t["id"] for t in _of_team(sandbox) if t["priority"] == priority and not t["assignedAgentId"]
    }
    assert expected
    resolved = _status(thena, team["id"], "Resolved")
    filters = {"priority": priority, "assignee": "none", "sort": "created"}

    response = manager_client.get("/tickets/bulk/", {"team": team["id"], "all": "1", **filters})
    html = _html(response)
    assert "Bulk edit: every ticket matching the filter in Support" in _text(html)
    assert f'name="priority" value="{priority}"' in html
    response = manager_client.post(
        "/tickets/bulk/", _form(team["id"], all="1", statusId=resolved["id"], **filters)
    )

    assert response.status_code == 302, _html(response)
    batch = Batch.objects.get()
    assert set(batch.items.values_list("ticket_id", flat=True)) == expected


@pytest.mark.parametrize("query", ["", "upload"])
@pytest.mark.django_db
def test_more_than_the_maximum_is_refused_with_the_input_kept(
    manager_client, sandbox, thena, settings, query
):
    settings.BULK_MAX_TICKETS = 2
    team = _team(sandbox)
    resolved = _status(thena, team["id"], "Resolved")

    response = manager_client.post(
        "/tickets/bulk/", _form(team["id"], all="1", q=query, statusId=resolved["id"])
    )

    assert response.status_code == 400
    html = _html(response)
    assert "More than 2 tickets match: narrow the filter, or edit them in parts." in html
    assert 'name="all" value="1"' in html
    assert f'name="team" value="{team["id"]}"' in html
    if query:
        assert f'name="q" value="{query}"' in html
    assert f'<option value="{resolved["id"]}" selected>' in html
    assert re.search(rf">\s*{REASON}</textarea>", html)
    assert not Batch.objects.exists()
    assert not BatchItem.objects.exists()
    assert not _patches(sandbox)


@pytest.mark.django_db
def test_more_ticked_tickets_than_the_maximum_are_refused(manager_client, sandbox, thena, settings):
    settings.BULK_MAX_TICKETS = 2
    team = _team(sandbox)
    ids = [t["id"] for t in _of_team(sandbox)[:3]]
    resolved = _status(thena, team["id"], "Resolved")

    response = manager_client.post(
        "/tickets/bulk/", _form(team["id"], ticket=ids, statusId=resolved["id"])
    )

    assert response.status_code == 400
    html = _html(response)
    assert "At most 2 tickets can be edited at once." in html
    for ticket_id in ids:
        assert f'name="ticket" value="{ticket_id}"' in html
    assert not Batch.objects.exists()


# -- 4. scope and permissions ---------------------------------------------------------------


def _scoped(django_user_model, name: str, *team_ids: str):
    user = _user(django_user_model, name, "Support managers")
    TeamScope.objects.create(user=user, team_ids=list(team_ids))
    return user


@pytest.fixture
def other_manager(django_user_model):
    return _user(django_user_model, "other-manager", "Support managers")


@pytest.mark.parametrize("persona", ["viewer_client", "auditor_client"])
@pytest.mark.django_db
def test_without_the_bulk_permission_the_pages_are_refused(
    request, persona, manager, sandbox, thena
):
    client = request.getfixturevalue(persona)
    team = _team(sandbox)
    ids = [t["id"] for t in _of_team(sandbox)[:2]]
    resolved = _status(thena, team["id"], "Resolved")
    query = f"team={team['id']}&ticket={ids[0]}"

    assert client.get(f"/tickets/bulk/?{query}").status_code == 403
    assert client.get(f"/tickets/bulk/?team={team['id']}&all=1").status_code == 403
    form = _form(team["id"], ticket=ids, statusId=resolved["id"])
    assert client.post("/tickets/bulk/", form).status_code == 403
    assert "Edit selected" not in _html(client.get(f"/tickets/?team={team['id']}"))
    # Someone's batch, even confirmed: as if it did not exist; and no acting on it.
    batch = _preview(manager, team["id"], ids, {"statusId": resolved["id"]})
    bulk.batch_confirm(user=manager, batch=batch)
    assert client.get(f"/tickets/bulk/{batch.pk}/").status_code == 404
    assert client.get(f"/tickets/bulk/{batch.pk}.csv").status_code == 404
    assert client.post(f"/tickets/bulk/{batch.pk}/", {"action": "cancel"}).status_code == 404
    batch.refresh_from_db()
    assert (batch.state, batch.cancel_requested_at) == (Batch.State.QUEUED, None)
    assert not Batch.objects.exclude(pk=batch.pk).exists()
    assert not _patches(sandbox)


@pytest.mark.django_db
def test_a_scoped_manager_cannot_pick_a_team_outside_the_scope(django_user_model, sandbox, thena):
    billing, support = _team(sandbox, "BIL"), _team(sandbox, "SUP")
    user = _scoped(django_user_model, "billing-manager", billing["id"])
    client = _client_for(user)
    ticket = _of_team(sandbox, "SUP")[0]
    resolved = _status(thena, support["id"], "Resolved")

    response = client.get(f"/tickets/bulk/?team={support['id']}&ticket={ticket['id']}")
    assert response.status_code == 302
    assert response["Location"] == f"/tickets/?team={support['id']}"
    assert _messages(response) == ["Choose one of your teams on the ticket list first."]
    form = _form(support["id"], ticket=[ticket["id"]], statusId=resolved["id"])
    response = client.post("/tickets/bulk/", form)
    assert response.status_code == 302
    assert _messages(response)[-1] == "Choose one of your teams on the ticket list first."
    response = client.post("/tickets/bulk/", {**form, "all": "1"})
    assert response.status_code == 302
    assert not Batch.objects.exists()
    with pytest.raises(bulk.BulkRefused):
        _preview(user, support["id"], [ticket["id"]], {"statusId": resolved["id"]})
    assert not Batch.objects.exists()


@pytest.mark.django_db
def test_another_users_batch_is_not_found(
    django_user_model, manager, other_manager, sandbox, thena
):
    support = _team(sandbox)
    ids = [t["id"] for t in _of_team(sandbox)[:2]]
    resolved = _status(thena, support["id"], "Resolved")
    batch = _preview(manager, support["id"], ids, {"statusId": resolved["id"]})
    billing_client = _client_for(
        _scoped(django_user_model, "billing-manager", _team(sandbox, "BIL")["id"])
    )
    other_client = _client_for(other_manager)
    url = f"/tickets/bulk/{batch.pk}/"

    # An unconfirmed preview is its author's alone.
    for client in (billing_client, other_client):
        assert client.get(url).status_code == 404
        assert client.post(url, {"action": "confirm"}).status_code == 404
        assert client.post(url, {"action": "discard"}).status_code == 404
    batch.refresh_from_db()
    assert batch.state == Batch.State.DRAFT

    bulk.batch_confirm(user=manager, batch=batch)
    # Confirmed: another bulk editor of the team may watch (and cancel) it; one of
    # another team may not even see it.
    assert billing_client.get(url).status_code == 404
    assert billing_client.get(f"/tickets/bulk/{batch.pk}.csv").status_code == 404
    assert billing_client.post(url, {"action": "cancel"}).status_code == 404
    batch.refresh_from_db()
    assert batch.cancel_requested_at is None
    assert other_client.get(url).status_code == 200


@pytest.mark.django_db
def test_tickets_of_other_teams_posted_by_hand_are_left_out_and_counted(
    django_user_model, manager_client, sandbox, thena
):
    support, billing = _team(sandbox, "SUP"), _team(sandbox, "BIL")
    sup = _of_team(sandbox, "SUP")[:2]
    bil = _of_team(sandbox, "BIL")[0]
    eng = _of_team(sandbox, "ENG")[0]
    resolved = _status(thena, support["id"], "Resolved")

    ids = [sup[0]["id"], bil["id"], eng["id"], "NO-SUCH-TICKET", sup[1]["id"], sup[0]["id"]]
    form = _form(support["id"], ticket=ids, statusId=resolved["id"])
    response = manager_client.post("/tickets/bulk/", form)
    assert response.status_code == 302, _html(response)
    batch = Batch.objects.get()
    assert list(batch.items.order_by("position").values_list("ticket_id", flat=True)) == [
        sup[0]["id"],
        sup[1]["id"],
    ]
    assert batch.excluded == {"other_team": 2, "not_found": 1}
    text = _text(_html(manager_client.get(response["Location"])))
    assert "2 in another team, 1 not found in Thena" in text

    # A manager of Billing alone: the others are outside the teams, whatever the team.
    client = _client_for(_scoped(django_user_model, "billing-manager", billing["id"]))
    bil_status = _status(thena, billing["id"], "Resolved")
    ids = [bil["id"], sup[0]["id"], eng["id"]]
    response = client.post(
        "/tickets/bulk/", _form(billing["id"], ticket=ids, statusId=bil_status["id"])
    )
    assert response.status_code == 302, _html(response)
    mine = Batch.objects.exclude(pk=batch.pk).get()
    assert list(mine.items.values_list("ticket_id", flat=True)) == [bil["id"]]
    assert mine.excluded == {"out_of_scope": 2}
    assert "2 outside your teams" in _text(_html(client.get(response["Location"])))

    # Nothing of the selection is in the team: refused, nothing kept.
    response = client.post(
        "/tickets/bulk/", _form(billing["id"], ticket=[sup[0]["id"]], statusId=bil_status["id"])
    )
    assert response.status_code == 400
    assert "None of the selected tickets can be edited here." in _html(response)
    assert Batch.objects.count() == 2
    assert not _patches(sandbox)


@pytest.mark.django_db(transaction=True)
def test_a_ticket_moved_out_of_the_team_after_the_preview_is_not_sent(
    django_user_model, sandbox, thena
):
    support, billing = _team(sandbox, "SUP"), _team(sandbox, "BIL")
    user = _scoped(django_user_model, "support-manager", support["id"])
    resolved = _status(thena, support["id"], "Resolved")
    stays, moves = _changeable(sandbox, thena, resolved["id"], 2)
    batch = _preview(user, support["id"], [stays["id"], moves["id"]], {"statusId": resolved["id"]})

    sandbox.put_ticket(moves["id"], teamId=billing["id"], teamName=billing["name"])
    _confirm_and_run(user, batch)

    assert _patched(sandbox) == Counter({stays["id"]: 1})
    items = _items(batch)
    assert items[stays["id"]].outcome == "succeeded"
    assert items[moves["id"]].outcome == "skipped"
    assert items[moves["id"]].message == "Not sent: it is no longer in your teams."
    assert sandbox.ticket(moves["id"])["statusId"] == moves["statusId"]
    assert [e.ticket_id for e in _entries(batch)] == [stays["id"]]


@pytest.mark.django_db(transaction=True)
def test_a_ticket_moved_to_another_team_of_the_scope_is_not_sent(manager, sandbox, thena):
    support, billing = _team(sandbox, "SUP"), _team(sandbox, "BIL")
    resolved = _status(thena, support["id"], "Resolved")
    stays, moves = _changeable(sandbox, thena, resolved["id"], 2)
    batch = _preview(
        manager, support["id"], [stays["id"], moves["id"]], {"statusId": resolved["id"]}
    )

    sandbox.put_ticket(moves["id"], teamId=billing["id"], teamName=billing["name"])
    _confirm_and_run(manager, batch)

    assert _patched(sandbox) == Counter({stays["id"]: 1})
    moved = _items(batch)[moves["id"]]
    assert moved.outcome == "skipped"
    assert moved.message == "Not sent: it moved to another team (Billing) since the preview."


# -- 5. a change in Thena since the preview ---------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_ticket_changed_since_the_preview_in_a_batch_field_is_a_conflict(manager, sandbox, thena):
    team = _team(sandbox)
    resolved = _status(thena, team["id"], "Resolved")
    in_progress = _status(thena, team["id"], "In progress")
    theirs, other_field, untouched = [
        t
        for t in _changeable(sandbox, thena, resolved["id"], 6)
        if t["statusId"] != in_progress["id"]
    ][:3]
    batch = _preview(
        manager,
        team["id"],
        [theirs["id"], other_field["id"], untouched["id"]],
        {"statusId": resolved["id"]},
    )

    sandbox.touch_ticket(theirs["id"], statusId=in_progress["id"])
    sandbox.touch_ticket(other_field["id"], title="Retitled by someone else")
    _confirm_and_run(manager, batch)

    [sent] = _patches(sandbox)
    assert sorted(sent.json["ticketIds"]) == sorted([other_field["id"], untouched["id"]])
    assert sandbox.ticket(theirs["id"])["statusId"] == in_progress["id"]
    assert sandbox.ticket(other_field["id"])["title"] == "Retitled by someone else"
    assert sandbox.ticket(other_field["id"])["statusId"] == resolved["id"]
    items = _items(batch)
    assert items[theirs["id"]].outcome == "skipped"
    assert items[theirs["id"]].message == (
        "Not sent: changed in Thena since the preview: Status (now “In progress”)."
    )
    assert items[other_field["id"]].outcome == "succeeded"
    assert items[untouched["id"]].outcome == "succeeded"
    entries = {e.ticket_id: e for e in _entries(batch)}
    conflict = entries[theirs["id"]]
    assert (conflict.outcome, conflict.current_outcome) == ("conflict", "conflict")
    assert conflict.batch_id == str(batch.pk)
    assert conflict.reason == REASON
    assert items[theirs["id"]].entry_id == conflict.pk
    assert entries[other_field["id"]].current_outcome == "succeeded"
    assert verify_chain().ok


@pytest.mark.django_db(transaction=True)
def test_a_ticket_set_to_the_batchs_value_since_the_preview_is_no_change(manager, sandbox, thena):
    batch, tickets, resolved = _resolving(manager, sandbox, thena)
    sandbox.touch_ticket(tickets[0]["id"], statusId=resolved["id"])

    _confirm_and_run(manager, batch)

    assert _patched(sandbox) == Counter({tickets[1]["id"]: 1})
    assert _outcomes(batch) == {tickets[0]["id"]: "no_change", tickets[1]["id"]: "succeeded"}
    assert [e.ticket_id for e in _entries(batch)] == [tickets[1]["id"]]


@pytest.mark.django_db
def test_a_reason_is_required_when_the_deployment_says_so(manager_client, sandbox, thena, settings):
    settings.THENA_REQUIRE_REASON = True
    team = _team(sandbox)
    resolved = _status(thena, team["id"], "Resolved")
    ids = [t["id"] for t in _of_team(sandbox)[:2]]
    form = {"team": team["id"], "ticket": ids, "statusId": resolved["id"]}

    for reason in ("", "   "):
        response = manager_client.post("/tickets/bulk/", {**form, "reason": reason})
        assert response.status_code == 400
        assert 'id="id_reason_error"' in _html(response)
    assert not Batch.objects.exists()
    response = manager_client.post("/tickets/bulk/", {**form, "reason": "  Because  "})
    assert response.status_code == 302
    assert Batch.objects.get().reason == "Because"


# -- 6. upstream faults, per chunk ----------------------------------------------------------------


def _resolving(manager, sandbox, thena, count: int = 2) -> tuple[Batch, list[dict], dict]:
    """A batch, previewed, setting the support team's "Resolved" status on `count` tickets
    that need it (two: one bulk request)."""
    team = _team(sandbox)
    resolved = _status(thena, team["id"], "Resolved")
    tickets = _changeable(sandbox, thena, resolved["id"], count)
    batch = _preview(manager, team["id"], [t["id"] for t in tickets], {"statusId": resolved["id"]})
    return batch, tickets, resolved


def _status_of(sandbox, tickets) -> list[str]:
    return [sandbox.ticket(t["id"])["statusId"] for t in tickets]


FAULTS = {
    # name: (how Thena fails, applied?, each outcome, part of each message)
    "500 before applying": (
        lambda s: s.fail_next(only="PATCH"),
        False,
        "failed",
        "Reading the ticket back shows it unchanged.",
    ),
    "500 after applying": (
        lambda s: s.fail_next(only="PATCH", applied=True),
        True,
        "succeeded",
        "Reading the ticket back shows the change.",
    ),
    "502 before applying": (
        lambda s: s.fail_next(only="PATCH", status=502),
        False,
        "unknown",  # a gateway's answer is no word from Thena
        "the ticket does not show the change yet",
    ),
    "dropped after applying": (
        lambda s: s.drop_next(only="PATCH", applied=True),
        True,
        "succeeded",
        "Reading the ticket back shows the change.",
    ),
    "dropped before applying": (
        lambda s: s.drop_next(only="PATCH"),
        False,
        "unknown",
        "the ticket does not show the change yet",
    ),
    "odd 2xx, applied": (
        lambda s: s.answer_next({"status": True, "data": []}, only="PATCH"),
        True,
        "succeeded",
        "Reading the ticket back shows the change.",
    ),
    "odd 2xx, not applied": (
        lambda s: s.answer_next({"status": True, "data": []}, only="PATCH", applied=False),
        False,
        "failed",
        "Reading the ticket back shows it unchanged.",
    ),
    "names neither, applied": (
        lambda s: s.answer_next(
            {"status": True, "data": {"updated": [], "skipped": []}}, only="PATCH"
        ),
        True,
        "succeeded",
        "Thena's bulk answer does not name the ticket. Reading the ticket back shows the change.",
    ),
    "names neither, not applied": (
        lambda s: s.answer_next(
            {"status": True, "data": {"updated": [], "skipped": []}}, only="PATCH", applied=False
        ),
        False,
        "failed",
        "Thena's bulk answer does not name the ticket. Reading the ticket back shows it unchanged.",
    ),
}


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.django_db(transaction=True)
def test_a_fault_of_the_bulk_request_is_settled_by_evidence(manager, sandbox, thena, fault):
    cause, applied, outcome, message = FAULTS[fault]
    batch, tickets, resolved = _resolving(manager, sandbox, thena)
    cause(sandbox)

    _confirm_and_run(manager, batch)

    assert len(_patches(sandbox)) == 1  # a write is never sent twice
    assert _patched(sandbox) == Counter({t["id"]: 1 for t in tickets})
    expected = resolved["id"] if applied else None
    assert _status_of(sandbox, tickets) == [expected or t["statusId"] for t in tickets]
    for item in _items(batch).values():
        assert item.outcome == outcome, item.message
        assert message in item.message
    entries = list(_entries(batch))
    assert [e.current_outcome for e in entries] == [outcome, outcome]
    assert batch.state == Batch.State.DONE
    assert verify_chain().ok


@pytest.mark.django_db(transaction=True)
def test_an_unknown_outcome_is_settled_later_by_reading_back(manager, sandbox, thena):
    batch, tickets, resolved = _resolving(manager, sandbox, thena)
    sandbox.drop_next(only="PATCH")
    _confirm_and_run(manager, batch)
    assert set(_outcomes(batch).values()) == {"unknown"}
    # The lost request did arrive for one ticket after all.
    sandbox.touch_ticket(tickets[0]["id"], statusId=resolved["id"])

    call_command("reconcile_audit", "--min-age-seconds", "0", stdout=io.StringIO())

    assert _outcomes(batch) == {tickets[0]["id"]: "succeeded", tickets[1]["id"]: "failed"}
    progress = bulk.batch_progress(batch)
    assert (
        progress.counts["succeeded"],
        progress.counts["failed"],
        progress.counts["unknown"],
    ) == (1, 1, 0)
    assert len(_patches(sandbox)) == 1


@pytest.mark.django_db(transaction=True)
def test_a_ticket_thena_skips_fails_with_thenas_reason(manager, sandbox, thena):
    batch, tickets, _resolved = _resolving(manager, sandbox, thena)
    skipped, updated = tickets
    sandbox.answer_next(
        {
            "status": True,
            "data": {
                "updated": [{"id": updated["id"], "title": updated["title"]}],
                "skipped": [{"id": skipped["id"], "reason": "Locked by a workflow"}],
            },
        },
        only="PATCH",
    )
    _confirm_and_run(manager, batch)

    items = _items(batch)
    assert items[skipped["id"]].outcome == "failed"
    assert items[skipped["id"]].message == "Thena's bulk update skipped it: Locked by a workflow"
    assert items[updated["id"]].outcome == "succeeded"
    entries = {e.ticket_id: e for e in _entries(batch)}
    assert entries[skipped["id"]].current_outcome == "failed"
    assert entries[updated["id"]].current_outcome == "succeeded"


@pytest.mark.django_db(transaction=True)
def test_a_ticket_moved_between_re_read_and_send_is_skipped_by_thena(
    manager, sandbox, thena, monkeypatch
):
    """Our edit locks do not hold Thena: a ticket moved by someone else in the moment
    between the re-read and the bulk request is refused by Thena, with its reason."""
    batch, tickets, _resolved = _resolving(manager, sandbox, thena)
    moved, kept = tickets
    billing = _team(sandbox, "BIL")
    send = bulk._Runner._send

    def moved_meanwhile(self, plans):
        sandbox.put_ticket(moved["id"], teamId=billing["id"])
        send(self, plans)

    monkeypatch.setattr(bulk._Runner, "_send", moved_meanwhile)
    _confirm_and_run(manager, batch)

    [sent] = _patches(sandbox)
    assert sent.path == BULK_PATH
    items = _items(batch)
    assert items[moved["id"]].outcome == "failed"
    assert items[moved["id"]].message.startswith("Thena's bulk update skipped it: ")
    assert "statusId" in items[moved["id"]].message
    assert items[kept["id"]].outcome == "succeeded"
    assert sandbox.ticket(moved["id"])["statusId"] == moved["statusId"]


@pytest.mark.parametrize("sandbox_config", [SandboxConfig(bulk_endpoint=False)], indirect=True)
@pytest.mark.django_db(transaction=True)
def test_without_the_bulk_endpoint_the_tickets_go_one_by_one(manager, sandbox, thena):
    batch, tickets, resolved = _resolving(manager, sandbox, thena)

    _confirm_and_run(manager, batch)

    bulk_requests = [r for r in _patches(sandbox) if r.path == BULK_PATH]
    assert [r.status for r in bulk_requests] == [404]
    assert _single_patches(sandbox) == {t["id"]: {"statusId": resolved["id"]} for t in tickets}
    assert _status_of(sandbox, tickets) == [resolved["id"]] * 2
    assert set(_outcomes(batch).values()) == {"succeeded"}
    for ticket in tickets:
        entries = [e for e in _entries(batch) if e.ticket_id == ticket["id"]]
        # The refused bulk attempt is recorded as failed, the single PATCH as succeeded:
        # no entry says a PATCH applied that did not.
        assert [e.current_outcome for e in entries] == ["failed", "succeeded"]
        assert entries[0].request_body == {"statusId": resolved["id"]}
    assert verify_chain().ok


@pytest.mark.django_db(transaction=True)
def test_over_the_rate_limit_the_worker_waits_and_every_ticket_ends_changed(
    manager, sandbox, thena, settings, sleeps, monkeypatch
):
    settings.BULK_CHUNK_SIZE = 2
    batch, tickets, resolved = _resolving(manager, sandbox, thena, 4)
    # From now on Thena takes 4 requests a second: one chunk (2 reads, 1 bulk PATCH) fits,
    # two do not.
    sandbox.config.rate_limit, sandbox.config.rate_window_seconds = 4, 1
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    monkeypatch.setattr(bulk, "time", SimpleNamespace(monotonic=time.monotonic, sleep=sleep))
    _confirm_and_run(manager, batch)

    assert any(r.status == 429 for r in sandbox.requests)
    assert waits and all(0 < w <= 1.0 for w in waits)  # the worker waited for the reset
    assert set(_outcomes(batch).values()) == {"succeeded"}
    assert _status_of(sandbox, tickets) == [resolved["id"]] * 4
    assert _patched(sandbox, applied_only=True) == Counter({t["id"]: 1 for t in tickets})
    for entry in _entries(batch):
        if entry.current_outcome == "failed":
            assert entry.outcomes.get().status_code == 429
    assert [e.current_outcome for e in _entries(batch) if e.current_outcome != "failed"] == [
        "succeeded"
    ] * 4


# -- 7. cancel --------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_batch_cancelled_before_any_worker_sends_nothing(manager, manager_client, sandbox, thena):
    batch, _tickets, _resolved = _resolving(manager, sandbox, thena)
    url = f"/tickets/bulk/{batch.pk}/"
    manager_client.post(url, {"action": "confirm"})

    response = manager_client.post(url, {"action": "cancel"})
    assert response.status_code == 302
    _run_worker()

    batch.refresh_from_db()
    assert batch.state == Batch.State.CANCELLED
    assert batch.finished_at is not None
    assert {(i.state, i.outcome) for i in batch.items.all()} == {("done", "cancelled")}
    assert not _patches(sandbox)
    assert not AuditEntry.objects.exists()
    text = _text(_html(manager_client.get(url)))
    assert "Cancelled" in text and "Not sent: 2" in text
    assert "Cancel the rest" not in text
    # Nothing more to do: confirming or cancelling again changes nothing.
    manager_client.post(url, {"action": "confirm"})
    manager_client.post(url, {"action": "cancel"})
    _run_worker()
    batch.refresh_from_db()
    assert batch.state == Batch.State.CANCELLED
    assert not _patches(sandbox)


@pytest.mark.django_db(transaction=True)
def test_a_batch_cancelled_while_running_stops_after_the_chunk_in_flight(
    manager, sandbox, thena, settings, monkeypatch
):
    settings.BULK_CHUNK_SIZE = 2
    batch, tickets, _resolved = _resolving(manager, sandbox, thena, 5)
    chunk = bulk._Runner._chunk

    def then_cancel(self, items):
        chunk(self, items)
        bulk.batch_cancel(user=manager, batch=batch)

    monkeypatch.setattr(bulk._Runner, "_chunk", then_cancel)
    _confirm_and_run(manager, batch)

    assert batch.state == Batch.State.CANCELLED
    [sent] = _patches(sandbox)
    first_two = [t["id"] for t in tickets[:2]]
    assert sorted(sent.json["ticketIds"]) == sorted(first_two)
    outcomes = _outcomes(batch)
    assert [outcomes[t["id"]] for t in tickets] == ["succeeded"] * 2 + ["cancelled"] * 3
    assert sorted(e.ticket_id for e in _entries(batch)) == sorted(first_two)
    assert _status_of(sandbox, tickets[2:]) == [t["statusId"] for t in tickets[2:]]


@pytest.mark.django_db(transaction=True)
def test_a_cancel_while_a_chunk_is_read_sends_none_of_it(manager, sandbox, thena, monkeypatch):
    batch, _tickets, _resolved = _resolving(manager, sandbox, thena)
    decide = bulk._Runner._decide

    def cancel_meanwhile(self, plan, fresh):
        bulk.batch_cancel(user=manager, batch=batch)
        decide(self, plan, fresh)

    monkeypatch.setattr(bulk._Runner, "_decide", cancel_meanwhile)
    _confirm_and_run(manager, batch)

    assert batch.state == Batch.State.CANCELLED
    assert not _patches(sandbox)
    assert set(_outcomes(batch).values()) == {"cancelled"}
    assert not AuditEntry.objects.exists()


# -- 8. a worker that dies, and two at once ---------------------------------------------------


class _Died(BaseException):
    """The worker process ends here (killed), past any `except Exception`."""


@pytest.mark.parametrize("sent", [True, False], ids=["died after sending", "died before"])
@pytest.mark.django_db(transaction=True)
def test_a_dead_workers_batch_is_resumed_without_sending_anything_twice(
    manager, sandbox, thena, settings, monkeypatch, sent
):
    settings.BULK_CHUNK_SIZE = 2
    batch, tickets, _resolved = _resolving(manager, sandbox, thena, 5)
    ids = [t["id"] for t in tickets]
    bulk.batch_confirm(user=manager, batch=batch)
    send = bulk._Runner._send

    def die(self, plans):
        if sent:
            send(self, plans)  # the PATCH left and was applied; no outcome was recorded
        raise _Died

    monkeypatch.setattr(bulk._Runner, "_send", die)
    with pytest.raises(_Died):
        bulk.batch_run(str(batch.pk))
    monkeypatch.setattr(bulk._Runner, "_send", send)
    first = Counter(ids[:2]) if sent else Counter()
    assert _patched(sandbox) == first
    items = _items(batch)
    assert [items[i].state for i in ids] == ["sending"] * 2 + ["queued"] * 3
    assert [e.current_outcome for e in _entries(batch)] == ["pending", "pending"]

    # While its claim is live, another run leaves the batch alone.
    assert bulk.batch_run(str(batch.pk)) == "busy"
    assert _patched(sandbox) == first

    # The claim was not renewed within the lease: the next run takes the batch over.
    settings.BULK_LEASE_SECONDS = 1
    Batch.objects.filter(pk=batch.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=5))
    _a_minute_passes()
    _run_worker()

    batch.refresh_from_db()
    assert batch.state == Batch.State.DONE
    assert _patched(sandbox) == first + Counter(ids[2:])  # the interrupted ones not again
    items = _items(batch)
    assert [items[i].outcome for i in ids] == ["unknown"] * 2 + ["succeeded"] * 3
    assert "it was not sent again" in items[ids[0]].message
    runs = DBTaskResult.objects.filter(task_path=tasks.bulk_run.module_path)
    done = [r.return_value for r in runs if r.status == TaskResultStatus.SUCCESSFUL]
    assert done.count("done") == 1, done

    call_command("reconcile_audit", "--min-age-seconds", "0", stdout=io.StringIO())
    settled = "succeeded" if sent else "failed"
    outcomes = _outcomes(batch)
    assert [outcomes[i] for i in ids] == [settled] * 2 + ["succeeded"] * 3
    results = {row.item.ticket_id: row for row in bulk.batch_results(batch)}
    assert f"Settled since by the audit log: {settled}." in results[ids[0]].message
    counts = bulk.batch_progress(batch).counts
    assert (counts["succeeded"], counts[settled], counts["unknown"]) == (
        (5, 5, 0) if sent else (3, 2, 0)
    )
    current = {e.ticket_id: e.current_outcome for e in _entries(batch)}
    assert [current[i] for i in ids] == [settled] * 2 + ["succeeded"] * 3
    _check_audit(batch)


@pytest.mark.django_db(transaction=True)
def test_a_run_slower_than_its_lease_is_taken_over_without_a_second_send(
    manager, sandbox, thena, settings, monkeypatch
):
    """Thena is so slow that a chunk outlasts the lease: another worker takes the batch
    over meanwhile. The slow run still records what it sent, then stops."""
    settings.BULK_CHUNK_SIZE = 2
    batch, tickets, _resolved = _resolving(manager, sandbox, thena, 5)
    ids = [t["id"] for t in tickets]
    bulk.batch_confirm(user=manager, batch=batch)
    send = bulk._Runner._send
    other = []

    def slow_send(self, plans):
        send(self, plans)
        if not other:  # meanwhile the lease ran out and another worker took over
            monkeypatch.setattr(bulk._Runner, "_send", send)
            Batch.objects.filter(pk=batch.pk).update(
                heartbeat_at=timezone.now() - timedelta(seconds=120)
            )
            other.append(bulk.batch_run(str(batch.pk)))

    monkeypatch.setattr(bulk._Runner, "_send", slow_send)
    assert bulk.batch_run(str(batch.pk)) == "taken over"

    assert other == ["done"]
    assert _patched(sandbox) == Counter({i: 1 for i in ids})
    batch.refresh_from_db()
    assert batch.state == Batch.State.DONE
    items = _items(batch)
    assert all(item.state == "done" for item in items.values())
    # The slow run's evidence stands for its chunk (or the audit log settles it).
    call_command("reconcile_audit", "--min-age-seconds", "0", stdout=io.StringIO())
    assert set(_outcomes(batch).values()) == {"succeeded"}
    assert [e.current_outcome for e in _entries(batch)] == ["succeeded"] * 5
    assert verify_chain().ok


@pytest.mark.django_db(transaction=True)
def test_two_runs_at_once_patch_each_ticket_once(manager, sandbox, thena, settings):
    settings.BULK_CHUNK_SIZE = 2
    batch, tickets, _resolved = _resolving(manager, sandbox, thena, 5)
    bulk.batch_confirm(user=manager, batch=batch)
    barrier = threading.Barrier(2)
    results, errors = [], []

    def run():
        try:
            barrier.wait(timeout=20)
            results.append(bulk.batch_run(str(batch.pk)))
        except BaseException as error:  # reported below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert sorted(results) in (["busy", "done"], ["done", "finished"])
    assert _patched(sandbox) == Counter({t["id"]: 1 for t in tickets})
    assert set(_outcomes(batch).values()) == {"succeeded"}
    _check_audit(batch)


# -- 9. the audit log of a batch -----------------------------------------------------------------


def _check_audit(batch: Batch) -> None:
    """Every entry is the batch's, with its reason and request; the chain verifies; each
    item's entry is one of them, and its number is on the results."""
    batch.refresh_from_db()
    entries = list(AuditEntry.objects.order_by("id"))
    assert entries
    for entry in entries:
        assert entry.batch_id == str(batch.pk), entry
        assert entry.reason == batch.reason
        assert entry.request_id == batch.request_id
        assert entry.actor_id == batch.created_by_id
    assert verify_chain().ok
    numbers = {e.pk: e.number for e in entries}
    for row in bulk.batch_results(batch):
        if row.item.entry_id is not None:
            assert row.entry_number == numbers[row.item.entry_id]


@pytest.mark.django_db(transaction=True)
def test_every_entry_of_a_batch_carries_it_and_the_results_link_them(
    manager, manager_client, sandbox, thena
):
    team = _team(sandbox)
    resolved = _status(thena, team["id"], "Resolved")
    in_progress = _status(thena, team["id"], "In progress")
    tickets = [
        t
        for t in _changeable(sandbox, thena, resolved["id"], 8)
        if t["statusId"] != in_progress["id"]
    ][:4]
    batch = _preview(manager, team["id"], [t["id"] for t in tickets], {"statusId": resolved["id"]})
    sandbox.touch_ticket(tickets[0]["id"], statusId=in_progress["id"])  # a conflict
    sandbox.drop_next(only="PATCH")  # unknown, for the rest
    _confirm_and_run(manager, batch)
    call_command("reconcile_audit", "--min-age-seconds", "0", stdout=io.StringIO())

    _check_audit(batch)
    page = _html(manager_client.get(f"/tickets/bulk/{batch.pk}/"))
    rows = _rows(page)
    for row in bulk.batch_results(batch):
        assert row.entry_number is not None
        assert f"#{row.entry_number}" in rows[row.item.ticket_identifier]
        assert f'href="/audit/{row.entry_number}/"' in page
    assert f'href="/audit/?batch={batch.pk}"' in page
    listed = _html(manager_client.get(f"/audit/?batch={batch.pk}"))
    for entry in AuditEntry.objects.all():
        assert f"/audit/{entry.number}/" in listed


# -- 10. hostile input to the pages ------------------------------------------------------------


@pytest.fixture
def draft(manager, sandbox, thena) -> Batch:
    team = _team(sandbox)
    resolved = _status(thena, team["id"], "Resolved")
    ids = [t["id"] for t in _changeable(sandbox, thena, resolved["id"], 2)]
    return _preview(manager, team["id"], ids, {"statusId": resolved["id"]})


@pytest.mark.parametrize(
    "path",
    [
        "/tickets/bulk/not-a-uuid/",
        "/tickets/bulk/00000000-0000-0000-0000-000000000000/",
        "/tickets/bulk/0123456789abcdef0123456789abcdef/",
        "/tickets/bulk/00000000-0000-0000-0000-000000000000.csv",
        "/tickets/bulk/%00/",
        "/tickets/bulk/../../admin/",
        "/tickets/bulk/" + "9" * 5000 + "/",
    ],
)
@pytest.mark.django_db
def test_no_such_batch_is_a_404(manager_client, path):
    assert manager_client.get(path).status_code == 404
    assert manager_client.post(path, {"action": "confirm"}).status_code in (404, 405)


@pytest.mark.django_db
def test_a_previews_csv_is_a_404_and_odd_actions_change_nothing(manager_client, draft):
    url = f"/tickets/bulk/{draft.pk}/"
    assert manager_client.get(f"/tickets/bulk/{draft.pk}.csv").status_code == 404
    # Django's uuid converter takes lower case only: another spelling is not found.
    assert manager_client.get(f"/tickets/bulk/{str(draft.pk).upper()}/").status_code == 404
    for data in ({"action": "launch"}, {}, {"action": "x" * 10_000}, {"action": "Confirm"}):
        response = manager_client.post(url, data)
        assert response.status_code == 302
        assert _messages(response)[-1] == "Unknown action."
    draft.refresh_from_db()
    assert draft.state == Batch.State.DRAFT
    assert manager_client.put(url).status_code == 405
    assert manager_client.delete(url).status_code == 405
    assert manager_client.put("/tickets/bulk/").status_code == 405
    # Confirmed twice (a double click): queued once.
    manager_client.post(url, {"action": "confirm"})
    manager_client.post(url, {"action": "confirm"})
    assert DBTaskResult.objects.filter(task_path=tasks.bulk_run.module_path).count() == 1
    # A confirmed batch cannot be discarded.
    manager_client.post(url, {"action": "discard"})
    assert Batch.objects.filter(pk=draft.pk, state=Batch.State.QUEUED).exists()


@pytest.mark.django_db
def test_discard_and_a_confirm_by_an_author_who_lost_the_right(
    manager, manager_client, draft, sandbox
):
    url = f"/tickets/bulk/{draft.pk}/"
    manager.groups.clear()
    response = manager_client.post(url, {"action": "confirm"})
    assert response.status_code == 403
    draft.refresh_from_db()
    assert draft.state == Batch.State.DRAFT
    assert not DBTaskResult.objects.exists()

    response = manager_client.post(url, {"action": "discard"})
    assert response.status_code == 302
    assert response["Location"] == f"/tickets/?team={draft.team_id}"
    assert not Batch.objects.exists()
    assert not BatchItem.objects.exists()
    assert manager_client.get(url).status_code == 404
    assert not _patches(sandbox)


HOSTILE_IDS = [
    "x" * 10_000,
    "../../v1/teams",
    "a/b",
    "%2F..%2F",
    "NO SUCH\tTICKET",
    "' OR 1=1 --",
    "😀" * 40,
    "bulk",
    "?teamId=x",
]


@pytest.mark.django_db
def test_odd_ticket_ids_are_not_found_and_reach_no_other_route(manager_client, sandbox, thena):
    team = _team(sandbox)
    resolved = _status(thena, team["id"], "Resolved")
    form = _form(team["id"], ticket=HOSTILE_IDS, statusId=resolved["id"])

    response = manager_client.post("/tickets/bulk/", form)

    assert response.status_code == 400
    assert "None of the selected tickets can be edited here." in _html(response)
    assert not Batch.objects.exists()
    assert not _patches(sandbox)
    lookups = re.compile(r"/v1/tickets/(status|priority|type|sentiment)")
    reads = [
        r
        for r in sandbox.requests
        if r.path.startswith("/v1/tickets/") and not lookups.match(r.path)
    ]
    # Every id is read once, but "bulk": it names a route of Thena's, and is not sent.
    assert len(reads) == len(HOSTILE_IDS) - 1
    assert "/v1/tickets/bulk" not in {r.path for r in sandbox.requests}
    assert all(r.status == 404 for r in reads)
    # Each id stayed one path segment: no other route was reached.
    assert {r.path for r in sandbox.requests} <= {r.path for r in reads} | {
        r.path for r in sandbox.requests if r.method == "GET" and r.query.get("teamId")
    } | {
        "/v1/teams",
        "/v1/accounts",
        f"/v1/teams/{team['id']}/members",
        f"/v1/teams/{team['id']}/sub-teams",
    }
    # With one real ticket among them: that one, the rest counted as not found.
    ticket = _changeable(sandbox, thena, resolved["id"], 1)[0]
    response = manager_client.post(
        "/tickets/bulk/", {**form, "ticket": [*HOSTILE_IDS, ticket["id"]]}
    )
    assert response.status_code == 302, _html(response)
    batch = Batch.objects.get()
    assert list(batch.items.values_list("ticket_id", flat=True)) == [ticket["id"]]
    assert batch.excluded == {"not_found": len(HOSTILE_IDS)}


@pytest.mark.django_db
def test_more_fields_than_django_takes_is_a_400(manager_client, sandbox, thena):
    """A hand-made request with more ids than DATA_UPLOAD_MAX_NUMBER_FIELDS: Django's 400."""
    team = _team(sandbox)
    ids = [f"X{n}" for n in range(1001)]

    response = manager_client.post("/tickets/bulk/", _form(team["id"], ticket=ids, statusId="x"))

    assert response.status_code == 400
    assert not Batch.objects.exists()
    assert not [r for r in sandbox.requests if r.path.startswith("/v1/tickets/X")]


@pytest.mark.django_db
def test_ticked_ids_beyond_a_thousand_are_not_silently_dropped(
    manager_client, sandbox, thena, settings
):
    """A deployment that allows more (BULK_MAX_TICKETS and Django's field limit raised):
    the 1001st ticked ticket is either part of the batch, or the request is refused."""
    settings.BULK_MAX_TICKETS = 2000
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = None
    team = _team(sandbox)
    resolved = _status(thena, team["id"], "Resolved")
    last = _changeable(sandbox, thena, resolved["id"], 1)[0]
    ids = [f"X{n}" for n in range(1000)] + [last["id"]]

    response = manager_client.post(
        "/tickets/bulk/", _form(team["id"], ticket=ids, statusId=resolved["id"])
    )

    if response.status_code == 302:
        assert list(Batch.objects.get().items.values_list("ticket_id", flat=True)) == [last["id"]]
    else:
        assert response.status_code == 400
        assert "None of the selected tickets can be edited here." not in _html(response)


@pytest.mark.django_db
def test_an_odd_id_thena_lists_is_no_500(manager_client, sandbox, thena):
    """Thena's own data, hostile: a listed ticket whose id is longer than any column or
    URL takes (ids are at most 64 characters here), or not a string."""
    team = _team(sandbox)
    resolved = _status(thena, team["id"], "Resolved")
    long_one, number, fine = _of_team(sandbox)[:3]
    sandbox.put_ticket(long_one["id"], id="L" * 100)
    sandbox.put_ticket(number["id"], id=12345)
    manager_client.raise_request_exception = False

    response = manager_client.post(
        "/tickets/bulk/", _form(team["id"], all="1", statusId=resolved["id"])
    )

    assert response.status_code == 302, response.status_code
    ids = set(Batch.objects.get().items.values_list("ticket_id", flat=True))
    assert fine["id"] in ids
    assert all(0 < len(i) <= 64 for i in ids)


BAD_VALUES = {
    "a status not offered": ({"statusId": "NOT-A-STATUS"}, "statusId", "Select a valid choice"),
    "another team's status": ({"statusId": "@BIL"}, "statusId", "Select a valid choice"),
    "an odd yes/no": ({"isPrivate": "maybe"}, "isPrivate", "Select a valid choice"),
    "a bad due date": ({"dueDate": "next tuesday"}, "dueDate", ""),
    "a reason too long": ({"statusId": "@ok", "reason": "r" * 1001}, "reason", "at most 1000"),
    "nothing set": ({"reason": "why not"}, None, "Choose at least one field to change."),
}


@pytest.mark.parametrize("case", BAD_VALUES)
@pytest.mark.django_db
def test_bad_values_are_a_form_error_with_the_input_kept(manager_client, sandbox, thena, case):
    data, field, message = BAD_VALUES[case]
    team = _team(sandbox)
    ok = _status(thena, team["id"], "Resolved")["id"]
    bil = _status(thena, _team(sandbox, "BIL")["id"], "Resolved")["id"]
    data = {k: {"@ok": ok, "@BIL": bil}.get(v, v) for k, v in data.items()}
    ids = [t["id"] for t in _of_team(sandbox)[:2]]

    response = manager_client.post("/tickets/bulk/", {"team": team["id"], "ticket": ids, **data})

    assert response.status_code == 400
    html = _html(response)
    if field:
        assert f'id="id_{field}_error"' in html
    assert message in html
    for ticket_id in ids:
        assert f'name="ticket" value="{ticket_id}"' in html
    if "reason" in data:
        assert data["reason"][:50] in html
    if data.get("statusId") == ok:
        assert f'<option value="{ok}" selected>' in html
    assert not Batch.objects.exists()
    assert not _patches(sandbox)


@pytest.mark.parametrize(
    "query",
    [
        "",
        "team=",
        "ticket=&ticket=%20",
        "team=NO-SUCH-TEAM&ticket=X",
        "team=" + "T" * 5000 + "&all=1",
        "team=%00&all=1",
        "all=1",
        "all=yes&team=@SUP",
        "team=@SUP&q=" + "q" * 5000,
    ],
)
@pytest.mark.django_db
def test_odd_selections_go_back_to_the_list_with_a_message(manager_client, sandbox, query):
    query = query.replace("@SUP", _team(sandbox)["id"])
    for response in (
        manager_client.get(f"/tickets/bulk/?{query}"),
        manager_client.post(f"/tickets/bulk/?{query}", {"statusId": "x"}),
    ):
        assert response.status_code == 302
        assert response["Location"].startswith("/tickets/")
        assert _messages(response)
    assert not Batch.objects.exists()


@pytest.mark.django_db
def test_hostile_text_in_the_selection_and_reason_is_shown_as_text(manager_client, sandbox, thena):
    team = _team(sandbox)
    resolved = _status(thena, team["id"], "Resolved")
    ticket = _changeable(sandbox, thena, resolved["id"], 1)[0]
    evil = '"><script>alert(1)</script>'
    sandbox.put_ticket(ticket["id"], title=evil)

    response = manager_client.post(
        "/tickets/bulk/",
        {
            "team": team["id"],
            "ticket": [ticket["id"], evil],
            "q": evil,
            "statusId": resolved["id"],
            "reason": evil,
        },
    )
    assert response.status_code == 302, _html(response)
    page = _html(manager_client.get(response["Location"]))
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    response = manager_client.get(f"/tickets/bulk/?team={team['id']}&all=1&q={evil}")
    assert response.status_code == 200
    assert "<script>alert(1)</script>" not in _html(response)


# -- more of real use ----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_tickets_needing_different_fields_get_one_bulk_request_per_body(manager, sandbox, thena):
    team = _team(sandbox)
    resolved = _status(thena, team["id"], "Resolved")
    both_a, both_b, status_only, private_only = _changeable(sandbox, thena, resolved["id"], 4)
    sandbox.touch_ticket(status_only["id"], isPrivate=True)
    sandbox.touch_ticket(private_only["id"], statusId=resolved["id"])
    ids = [both_a["id"], status_only["id"], both_b["id"], private_only["id"]]
    values = {"statusId": resolved["id"], "isPrivate": True}
    batch = _preview(manager, team["id"], ids, values)

    _confirm_and_run(manager, batch)

    bodies = sorted(
        (sorted(r.json["ticketIds"]), {k: v for k, v in r.json.items() if k != "ticketIds"})
        for r in _patches(sandbox)
    )
    assert all(r.path == BULK_PATH for r in _patches(sandbox))
    assert bodies == sorted(
        [
            (sorted([both_a["id"], both_b["id"]]), values),
            ([status_only["id"]], {"statusId": resolved["id"]}),
            ([private_only["id"]], {"isPrivate": True}),
        ]
    )
    assert set(_outcomes(batch).values()) == {"succeeded"}


@pytest.mark.parametrize("sandbox_config", [SandboxConfig(bulk_max_ids=2)], indirect=True)
@pytest.mark.django_db(transaction=True)
def test_a_chunk_larger_than_thenas_bulk_limit_still_gets_sent(manager, sandbox, thena, settings):
    """Thena documents no limit on ticketIds (the sandbox guesses 100); BULK_CHUNK_SIZE may
    be set up to 500. A bulk request Thena refuses whole (400: too many ids) must not fail
    tickets that a smaller request, or single PATCHes, would change."""
    settings.BULK_CHUNK_SIZE = 3
    batch, tickets, _resolved = _resolving(manager, sandbox, thena, 3)

    _confirm_and_run(manager, batch)

    assert set(_outcomes(batch).values()) == {"succeeded"}, {
        i.ticket_id: i.message for i in batch.items.all()
    }
    assert _patched(sandbox, applied_only=True) == Counter({t["id"]: 1 for t in tickets})


@pytest.mark.django_db(transaction=True)
def test_a_ticket_a_dead_save_still_holds_is_sent_once_its_lease_runs_out(
    manager, sandbox, thena, settings, monkeypatch
):
    """A busy ticket is no fault of its own: it is tried again, not counted as a try, and
    sent once the dead holder's lock expires; the other tickets do not wait for it."""
    monkeypatch.setattr(bulk, "LOCK_WAIT", 0.05)
    batch, tickets, _resolved = _resolving(manager, sandbox, thena)
    busy, free = tickets
    TicketEditLock.objects.create(
        key=locks._key(busy["id"]),
        token="dead",
        expires_at=timezone.now() + timedelta(seconds=0.5),
    )

    _confirm_and_run(manager, batch)

    assert _patched(sandbox) == Counter({free["id"]: 1, busy["id"]: 1})
    items = _items(batch)
    assert {items[t["id"]].outcome for t in tickets} == {"succeeded"}
    assert items[busy["id"]].attempts == 0
    assert not TicketEditLock.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_ticket_busy_for_a_moment_is_sent_once_freed(
    manager, sandbox, thena, settings, monkeypatch
):
    monkeypatch.setattr(bulk, "LOCK_WAIT", 0.05)
    batch, tickets, _resolved = _resolving(manager, sandbox, thena)
    busy, free = tickets
    held = ExitStack()
    held.enter_context(locks.ticket_edit_lock(busy["id"]))
    chunk = bulk._Runner._chunk

    def then_free(self, items):
        chunk(self, items)
        held.close()

    monkeypatch.setattr(bulk._Runner, "_chunk", then_free)
    _confirm_and_run(manager, batch)

    assert _patched(sandbox) == Counter({free["id"]: 1, busy["id"]: 1})
    assert set(_outcomes(batch).values()) == {"succeeded"}
    assert _items(batch)[busy["id"]].attempts == 0  # waiting for a lock is not a try


REVOKED = {
    "bulk permission removed": (
        lambda user, sandbox: user.groups.clear(),
        "Not sent: the author may no longer edit tickets in bulk.",
    ),
    "account deactivated": (
        lambda user, sandbox: type(user).objects.filter(pk=user.pk).update(is_active=False),
        None,  # either message; nothing sent
    ),
    "team taken out of the scope": (
        lambda user, sandbox: TeamScope.objects.create(
            user=user, team_ids=[_team(sandbox, "BIL")["id"]]
        ),
        "Not sent: the team is no longer one of the author's teams.",
    ),
}


@pytest.mark.parametrize("case", REVOKED)
@pytest.mark.django_db(transaction=True)
def test_an_author_who_lost_the_right_sends_nothing_more(
    manager, sandbox, thena, settings, monkeypatch, case
):
    settings.BULK_CHUNK_SIZE = 1
    monkeypatch.setattr(bulk, "AUTHOR_CHECK_SECONDS", 0)  # read before every chunk
    revoke, message = REVOKED[case]
    batch, tickets, _resolved = _resolving(manager, sandbox, thena)
    chunk = bulk._Runner._chunk

    def then_revoke(self, items):
        chunk(self, items)
        revoke(manager, sandbox)

    monkeypatch.setattr(bulk._Runner, "_chunk", then_revoke)
    _confirm_and_run(manager, batch)

    assert batch.state == Batch.State.DONE
    assert _patched(sandbox) == Counter({tickets[0]["id"]: 1})
    items = _items(batch)
    assert items[tickets[0]["id"]].outcome == "succeeded"
    assert items[tickets[1]["id"]].outcome == "skipped"
    if message:
        assert items[tickets[1]["id"]].message == message


@pytest.mark.django_db(transaction=True)
def test_an_author_deleted_mid_run_ends_the_batch_without_sending_more(
    manager, sandbox, thena, settings, monkeypatch
):
    settings.BULK_CHUNK_SIZE = 1
    monkeypatch.setattr(bulk, "AUTHOR_CHECK_SECONDS", 0)  # read before every chunk
    batch, tickets, _resolved = _resolving(manager, sandbox, thena)
    chunk = bulk._Runner._chunk

    def then_delete(self, items):
        chunk(self, items)
        type(manager).objects.filter(pk=manager.pk).delete()

    monkeypatch.setattr(bulk._Runner, "_chunk", then_delete)
    bulk.batch_confirm(user=manager, batch=batch)
    _run_worker()

    [run] = DBTaskResult.objects.filter(
        task_path=tasks.bulk_run.module_path, status__in=["SUCCESSFUL", "FAILED"]
    )
    assert run.status == TaskResultStatus.SUCCESSFUL, run.traceback
    batch.refresh_from_db()
    assert batch.state == Batch.State.DONE
    assert _patched(sandbox) == Counter({tickets[0]["id"]: 1})
    assert _items(batch)[tickets[1]["id"]].outcome == "skipped"


@pytest.mark.django_db(transaction=True)
def test_a_look_at_a_stalled_batch_queues_its_run(
    manager, manager_client, sandbox, thena, settings
):
    """Confirmed while no task could be queued (or its task row was lost), and no worker
    took it up within the lease: a look at its page queues a run (bulk.resume_if_stalled)."""
    settings.BULK_LEASE_SECONDS = 1
    batch, tickets, _resolved = _resolving(manager, sandbox, thena)
    bulk.batch_confirm(user=manager, batch=batch)
    DBTaskResult.objects.all().delete()  # the confirm's task is lost
    Batch.objects.filter(pk=batch.pk).update(confirmed_at=timezone.now() - timedelta(seconds=5))
    runs = DBTaskResult.objects.filter(task_path=tasks.bulk_run.module_path)

    # The page's poll (htmx) does not look; a full page does.
    assert manager_client.get(f"/tickets/bulk/{batch.pk}/", headers={"HX-Request": "true"})
    assert not runs.exists()
    for _ in range(3):
        assert manager_client.get(f"/tickets/bulk/{batch.pk}/").status_code == 200

    assert runs.exists()
    _run_worker()
    batch.refresh_from_db()
    assert batch.state == Batch.State.DONE
    assert _patched(sandbox) == Counter({t["id"]: 1 for t in tickets})


@pytest.mark.django_db(transaction=True)
def test_a_worker_start_resumes_a_batch_whose_run_was_lost(manager, sandbox, thena, settings):
    settings.BULK_LEASE_SECONDS = 1
    batch, tickets, _resolved = _resolving(manager, sandbox, thena)
    bulk.batch_confirm(user=manager, batch=batch)
    DBTaskResult.objects.all().delete()
    Batch.objects.filter(pk=batch.pk).update(confirmed_at=timezone.now() - timedelta(seconds=5))

    out = io.StringIO()
    call_command("schedule_reconcile", stdout=out)
    assert "Resumed 1 bulk edit(s) whose worker had stopped." in out.getvalue()
    _run_worker()

    batch.refresh_from_db()
    assert batch.state == Batch.State.DONE
    assert _patched(sandbox) == Counter({t["id"]: 1 for t in tickets})


@pytest.mark.django_db
def test_a_preview_whose_team_left_the_authors_scope_is_no_500(
    manager, manager_client, draft, sandbox
):
    TeamScope.objects.create(user=manager, team_ids=[_team(sandbox, "BIL")["id"]])
    manager_client.raise_request_exception = False

    response = manager_client.get(f"/tickets/bulk/{draft.pk}/")

    assert response.status_code == 302
    assert _messages(response) == ["Choose one of your teams on the ticket list first."]


THENA_DOWN = {
    "the selection form": lambda team, ids, draft: (
        "get",
        f"/tickets/bulk/?team={team}&ticket={ids[0]}",
    ),
    "the preview request": lambda team, ids, draft: ("post", "/tickets/bulk/"),
    "a preview": lambda team, ids, draft: ("get", f"/tickets/bulk/{draft.pk}/"),
    "a confirmed batch": lambda team, ids, draft: ("get", f"/tickets/bulk/{draft.pk}/"),
    "its results": lambda team, ids, draft: ("get", f"/tickets/bulk/{draft.pk}.csv"),
}


@pytest.mark.parametrize("where", THENA_DOWN)
@pytest.mark.django_db
def test_thena_unreachable_is_no_500(manager_client, draft, sandbox, thena, where):
    from django.core.cache import cache

    team = _team(sandbox)["id"]
    ids = [t["id"] for t in _of_team(sandbox)[:2]]
    if where in ("a confirmed batch", "its results"):
        Batch.objects.filter(pk=draft.pk).update(state=Batch.State.DONE)
    cache.clear()  # nothing known of Thena yet
    method, url = THENA_DOWN[where](team, ids, draft)
    sandbox.fail_next(count=100, status=503)
    manager_client.raise_request_exception = False

    data = _form(team, ticket=ids, statusId=draft.values["statusId"]) if method == "post" else None
    response = getattr(manager_client, method)(url, data)

    assert response.status_code != 500
    assert Batch.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_progress_partial_and_a_formula_in_a_title(manager, manager_client, sandbox, thena):
    batch, tickets, _resolved = _resolving(manager, sandbox, thena)
    sandbox.put_ticket(tickets[0]["id"], title='=HYPERLINK("http://evil")')
    batch.items.filter(ticket_id=tickets[0]["id"]).update(ticket_title='=HYPERLINK("http://evil")')
    bulk.batch_confirm(user=manager, batch=batch)
    url = f"/tickets/bulk/{batch.pk}/"

    partial = _html(manager_client.get(url, headers={"HX-Request": "true"}))
    assert partial.lstrip().startswith('<section id="batch-progress"')
    assert 'hx-trigger="every 1s"' in partial
    assert "Waiting for a worker" in partial
    _run_worker()
    partial = _html(manager_client.get(url, headers={"HX-Request": "true"}))
    assert "hx-trigger" not in partial  # finished: no more polling
    assert "Changed: <strong>2</strong>" in partial

    response = manager_client.get(f"/tickets/bulk/{batch.pk}.csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[1][2] == '\'=HYPERLINK("http://evil")'


@pytest.mark.django_db
def test_previews_never_confirmed_are_forgotten_after_a_day(manager, sandbox, thena):
    team = _team(sandbox)
    resolved = _status(thena, team["id"], "Resolved")
    ids = [t["id"] for t in _of_team(sandbox)[:2]]
    old = _preview(manager, team["id"], ids, {"statusId": resolved["id"]})
    fresh = _preview(manager, team["id"], ids, {"statusId": resolved["id"]})
    confirmed = _preview(manager, team["id"], ids, {"statusId": resolved["id"]})
    Batch.objects.filter(pk__in=[old.pk, confirmed.pk]).update(
        created_at=timezone.now() - timedelta(days=2)
    )
    Batch.objects.filter(pk=confirmed.pk).update(state=Batch.State.DONE)

    bulk.drafts_prune()

    assert set(Batch.objects.values_list("pk", flat=True)) == {fresh.pk, confirmed.pk}
    assert not BatchItem.objects.filter(batch_id=old.pk).exists()
