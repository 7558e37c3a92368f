"""PATCH /v1/tickets/bulk end to end: the sandbox's endpoint through the real client
(ThenaClient.bulk_update_tickets), its spec entry and its check, and the sandbox's
ticket count."""

import time
from datetime import UTC, datetime
from io import StringIO

import httpx
import pytest
from django.core.management import CommandError, call_command

from tests.util import PassingTime
from tickets.thena.client import (
    SANDBOX_BASE_URL,
    BulkUpdate,
    ThenaClient,
    _path_template,
    sandbox_transport,
)
from tickets.thena.errors import (
    ThenaError,
    ThenaNotFound,
    ThenaRateLimited,
    ThenaUnavailable,
    ThenaValidationError,
)
from tickets.thena.sandbox import DEMO_API_KEY, SandboxApp, SandboxConfig

BULK = "/v1/tickets/bulk"
FIXED_NOW = datetime(2025, 6, 15, 12, 0, 0, tzinfo=UTC)


def tickets_of(sandbox, identifier: str, count: int = 2) -> list[dict]:
    """Public (not private) tickets of the team `identifier`, so isPrivate=True changes them."""
    found = [
        t for t in sandbox.tickets() if t["teamIdentifier"] == identifier and not t["isPrivate"]
    ]
    return found[:count]


def other_than(items: list[dict], value) -> dict:
    return next(item for item in items if item["id"] != value)


def raw(sandbox) -> httpx.Client:
    """Plain HTTP to the sandbox, to read its answers as sent."""
    return httpx.Client(
        base_url=SANDBOX_BASE_URL,
        transport=sandbox_transport(sandbox),
        headers={"x-api-key": DEMO_API_KEY},
    )


# Applied


def test_bulk_applies_the_fields_to_every_ticket_and_bumps_updated_at(thena, sandbox):
    before = tickets_of(sandbox, "SUP", 3)
    ids = [t["id"] for t in before]
    team_id = before[0]["teamId"]
    status = other_than(thena.statuses(team_id), before[0]["statusId"])
    priority = other_than(thena.priorities(team_id), before[0]["priorityId"])
    kind = other_than(thena.types(team_id), before[0]["typeId"])
    agent = other_than(thena.team_members(team_id), before[0]["assignedAgentId"])
    fields = {
        "statusId": status["id"],
        "typeId": kind["id"],
        "priorityId": priority["id"],
        "assignedAgentId": agent["id"],
        "isPrivate": True,
    }

    result = thena.bulk_update_tickets(ids, fields)

    assert result == BulkUpdate(updated=frozenset(ids), skipped={})
    request = sandbox.requests[-1]
    assert (request.method, request.path, request.json) == (
        "PATCH",
        BULK,
        {"ticketIds": ids, **fields},
    )
    stamps = []
    for old in before:
        new = sandbox.ticket(old["id"])
        assert {key: new[key] for key in fields} == fields
        # The display names follow the ids, as after a single PATCH.
        assert (new["status"], new["priority"], new["type"], new["assignedAgent"]) == (
            status["name"],
            priority["name"],
            kind["name"],
            agent["name"],
        )
        assert new["updatedAt"] > old["updatedAt"]
        assert new["title"] == old["title"]
        stamps.append(new["updatedAt"])
    assert len(set(stamps)) == len(stamps)  # strictly increasing, one per ticket
    assert sorted(stamps) == stamps


def test_bulk_answers_the_documented_envelope_with_each_id_once(thena, sandbox):
    first, second = tickets_of(sandbox, "SUP")

    response = raw(sandbox).patch(
        BULK,
        json={"ticketIds": [first["id"], second["id"], first["id"], "NOSUCH", "NOSUCH"]},
    )

    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["message"]) == (True, "Success")
    assert body["timestamp"]
    assert body["data"] == {
        "updated": [
            {"id": first["id"], "title": first["title"]},
            {"id": second["id"], "title": second["title"]},
        ],
        "skipped": [{"id": "NOSUCH", "reason": "Ticket not found"}],
    }


def test_the_metric_label_of_the_bulk_path_is_the_path_itself():
    assert _path_template(BULK) == BULK


# Skipped


def _status_of_sup(thena, sup, bil):
    return {"statusId": other_than(thena.statuses(sup["teamId"]), sup["statusId"])["id"]}


def _agent_of_sup_only(thena, sup, bil):
    theirs = {m["id"] for m in thena.team_members(bil["teamId"])}
    agent = next(m for m in thena.team_members(sup["teamId"]) if m["id"] not in theirs)
    return {"assignedAgentId": agent["id"]}


@pytest.mark.parametrize(
    "fields_for, reason",
    [
        (_status_of_sup, "statusId '{}' not found"),
        (_agent_of_sup_only, "assignedAgentId '{}' not found"),
    ],
    ids=["status-of-another-team", "agent-of-another-team"],
)
def test_bulk_skips_unknown_tickets_and_values_the_ticket_refuses(
    thena, sandbox, fields_for, reason
):
    (sup,) = tickets_of(sandbox, "SUP", 1)
    (bil,) = tickets_of(sandbox, "BIL", 1)
    fields = {**fields_for(thena, sup, bil), "isPrivate": True}
    (value,) = (v for k, v in fields.items() if k != "isPrivate")

    result = thena.bulk_update_tickets([sup["id"], "NOSUCHTICKET", bil["id"]], fields)

    assert result.updated == {sup["id"]}
    assert result.skipped == {
        "NOSUCHTICKET": "Ticket not found",
        bil["id"]: reason.format(value),
    }
    # A skipped ticket is left whole: not even the valid isPrivate is applied.
    assert sandbox.ticket(bil["id"]) == bil
    assert sandbox.ticket(sup["id"])["isPrivate"] is True


# Refused whole (400)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"title": "x"}, "property title should not exist"),
        ({"autoLinkSlackChannel": True}, "property autoLinkSlackChannel should not exist"),
        ({"isPrivate": "yes"}, "isPrivate must be a boolean value"),
        ({"statusId": None}, "statusId should not be null"),
        ({"priorityId": 7}, "priorityId must be a string"),
    ],
)
def test_a_bad_field_refuses_the_whole_request(thena, sandbox, fields, message):
    before = tickets_of(sandbox, "SUP")

    with pytest.raises(ThenaValidationError) as caught:
        thena.bulk_update_tickets([t["id"] for t in before], {"isPrivate": True, **fields})

    error = caught.value
    assert error.status_code == 400
    assert not error.outcome_unknown
    assert message in error.detail
    assert [sandbox.ticket(t["id"]) for t in before] == before
    assert len(sandbox.requests) == 1  # a 400 is not retried


def test_null_clears_an_assignee_and_a_type_as_a_single_patch_would(thena, sandbox):
    (ticket,) = tickets_of(sandbox, "SUP", 1)

    result = thena.bulk_update_tickets([ticket["id"]], {"assignedAgentId": None, "typeId": None})

    assert result.updated == {ticket["id"]}
    after = sandbox.ticket(ticket["id"])
    assert (after["assignedAgentId"], after["assignedAgent"], after["typeId"]) == (None, None, None)


@pytest.mark.parametrize(
    "ticket_ids, message",
    [
        ([], "ticketIds should not be empty"),
        ([1, 2], "each value in ticketIds must be a string"),
        ([f"T{i}" for i in range(101)], "ticketIds must contain no more than 100 elements"),
    ],
)
def test_ticket_ids_must_be_a_non_empty_list_of_at_most_100_strings(thena, ticket_ids, message):
    with pytest.raises(ThenaValidationError) as caught:
        thena.bulk_update_tickets(ticket_ids, {"isPrivate": True})

    assert caught.value.status_code == 400
    assert message in caught.value.detail


def test_the_largest_batch_is_configurable(thena, sandbox):
    ids = [t["id"] for t in sandbox.tickets()[:4]]
    sandbox.config.bulk_max_ids = 3

    with pytest.raises(ThenaValidationError) as caught:
        thena.bulk_update_tickets(ids, {"isPrivate": True})

    assert caught.value.detail == "ticketIds must contain no more than 3 elements"
    assert thena.bulk_update_tickets(ids[:3], {"isPrivate": True}).updated == set(ids[:3])


def test_a_body_that_is_no_object_or_lacks_ticket_ids_is_refused(sandbox):
    http = raw(sandbox)

    for body, messages in [
        ([], ["request body must be a JSON object"]),
        ({"isPrivate": True}, ["ticketIds must be an array", "ticketIds should not be empty"]),
    ]:
        response = http.patch(BULK, json=body)
        assert response.status_code == 400
        assert response.json()["message"] == messages
    response = http.patch(BULK, content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400


def test_ticket_ids_cannot_also_be_a_field(thena):
    with pytest.raises(ValueError, match="ticketIds"):
        thena.bulk_update_tickets(["A"], {"ticketIds": ["B"]})


# An older Thena without the endpoint


@pytest.mark.parametrize("sandbox_config", [SandboxConfig(bulk_endpoint=False)], indirect=True)
def test_without_the_endpoint_the_path_is_an_unknown_route(thena, sandbox):
    ticket = sandbox.tickets()[0]

    with pytest.raises(ThenaNotFound) as caught:
        thena.bulk_update_tickets([ticket["id"]], {"isPrivate": not ticket["isPrivate"]})

    assert caught.value.status_code == 404
    assert caught.value.detail == f"Cannot PATCH {BULK}"
    assert [r.status for r in sandbox.requests] == [404]
    assert sandbox.ticket(ticket["id"]) == ticket
    # An unknown route answers before the key is checked, as any other does.
    assert (
        httpx.Client(transport=sandbox_transport(sandbox))
        .patch(SANDBOX_BASE_URL + BULK, json={"ticketIds": [ticket["id"]]})
        .json()["message"]
        == f"Cannot PATCH {BULK}"
    )
    # The single-ticket PATCH still works.
    assert thena.update_ticket(ticket["id"], {"title": "Still editable"})["title"]


# Odd answers, faults, latency and the rate limit, as for any request


@pytest.mark.parametrize(
    "data",
    [
        [],
        {"updated": []},
        {"updated": [], "skipped": "none"},
        {"updated": [{"title": "no id"}], "skipped": []},
        {"updated": [{"id": 12}], "skipped": []},
        {"updated": [], "skipped": ["A"]},
    ],
)
def test_an_odd_2xx_leaves_the_outcome_unknown(thena, sandbox, sleeps, data):
    (ticket,) = tickets_of(sandbox, "SUP", 1)
    sandbox.answer_next({"status": True, "data": data}, only="PATCH")

    with pytest.raises(ThenaError) as caught:
        thena.bulk_update_tickets([ticket["id"]], {"isPrivate": True})

    assert isinstance(caught.value, ThenaUnavailable)
    assert caught.value.outcome_unknown
    assert caught.value.status_code == 200
    assert len(sandbox.requests) == 1 and sleeps == []  # a write is not sent again
    assert sandbox.ticket(ticket["id"])["isPrivate"] is True  # it was carried out


def test_ids_not_asked_for_are_ignored_and_a_missing_reason_is_named(thena, sandbox):
    first, second = tickets_of(sandbox, "SUP")
    data = {
        "updated": [{"id": first["id"], "title": "t"}, {"id": "NOT-ASKED", "title": "t"}],
        "skipped": [{"id": second["id"]}, {"id": "ALSO-NOT-ASKED", "reason": "x"}],
    }
    sandbox.answer_next({"status": True, "message": "Success", "data": data}, only="PATCH")

    result = thena.bulk_update_tickets([first["id"], second["id"]], {"isPrivate": True})

    assert result == BulkUpdate(
        updated=frozenset({first["id"]}), skipped={second["id"]: "Thena gave no reason"}
    )


@pytest.mark.parametrize(
    "fault, applied",
    [
        (lambda s: s.fail_next(status=500, applied=True, only="PATCH"), True),
        (lambda s: s.fail_next(status=502, only="PATCH"), False),
        (lambda s: s.drop_next(applied=True, only="PATCH"), True),
        (lambda s: s.drop_next(only="PATCH"), False),
    ],
    ids=["500-after-applying", "502-before", "dropped-after-applying", "dropped-before"],
)
def test_faults_leave_the_outcome_unknown_without_a_retry(thena, sandbox, sleeps, fault, applied):
    (ticket,) = tickets_of(sandbox, "SUP", 1)
    fault(sandbox)

    with pytest.raises(ThenaUnavailable) as caught:
        thena.bulk_update_tickets([ticket["id"]], {"isPrivate": True})

    assert caught.value.outcome_unknown
    assert [r.path for r in sandbox.requests] == [BULK] and sleeps == []
    assert sandbox.ticket(ticket["id"])["isPrivate"] is applied


@pytest.mark.parametrize("sandbox_config", [SandboxConfig(latency_ms=60)], indirect=True)
def test_the_configured_latency_applies(thena, sandbox):
    (ticket,) = tickets_of(sandbox, "SUP", 1)

    started = time.monotonic()
    thena.bulk_update_tickets([ticket["id"]], {"isPrivate": True})

    assert time.monotonic() - started >= 0.06


def test_over_the_rate_limit_it_is_429_and_nothing_changes(sandbox, sleeps):
    (ticket,) = tickets_of(sandbox, "SUP", 1)
    sandbox.config.rate_limit = 1
    raw(sandbox).get("/v1/teams")  # another client spends the budget
    client = ThenaClient(
        SANDBOX_BASE_URL, DEMO_API_KEY, transport=sandbox_transport(sandbox), sleep=sleeps.append
    )

    with pytest.raises(ThenaRateLimited) as caught:
        client.bulk_update_tickets([ticket["id"]], {"isPrivate": True})

    assert caught.value.status_code == 429
    assert not caught.value.outcome_unknown
    assert 50 <= caught.value.retry_after_seconds <= 60
    assert [r.status for r in sandbox.requests] == [200, 429]
    assert sandbox.ticket(ticket["id"]) == ticket
    assert sleeps == []


def test_after_a_429_the_bulk_update_is_sent_again_at_the_reset():
    clock = PassingTime()
    sandbox = SandboxApp(SandboxConfig(rate_limit=1, rate_window_seconds=5), clock=clock.now)
    (ticket,) = tickets_of(sandbox, "SUP", 1)
    raw(sandbox).get("/v1/teams")
    client = ThenaClient(
        SANDBOX_BASE_URL, DEMO_API_KEY, transport=sandbox_transport(sandbox), sleep=clock.sleep
    )

    result = client.bulk_update_tickets([ticket["id"]], {"isPrivate": True})

    assert result.updated == {ticket["id"]}
    assert [r.status for r in sandbox.requests] == [200, 429, 200]
    assert len(clock.sleeps) == 1 and 0 < clock.sleeps[0] <= 5
    assert sandbox.ticket(ticket["id"])["isPrivate"] is True


# The spec and its check


def test_the_spec_lists_the_bulk_path_with_its_body(thena):
    spec = thena.spec()

    patch = spec["paths"][BULK]["patch"]
    ref = patch["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    body = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert body["required"] == ["ticketIds"]
    assert set(body["properties"]) == {
        "ticketIds",
        "statusId",
        "typeId",
        "priorityId",
        "assignedAgentId",
        "isPrivate",
    }
    assert body["properties"]["ticketIds"]["items"] == {"type": "string"}
    assert body["properties"]["isPrivate"]["type"] == "boolean"
    assert patch["security"] == [{"ApiKey": []}]


@pytest.mark.parametrize("sandbox_config", [SandboxConfig(bulk_endpoint=False)], indirect=True)
def test_without_the_endpoint_the_spec_omits_it_and_the_check_only_warns(thena):
    spec = thena.spec()
    assert BULK not in spec["paths"]
    assert "BulkUpdateTicketsBody" not in spec["components"]["schemas"]

    out = StringIO()
    call_command("thena_check", stdout=out)

    text = out.getvalue()
    assert (
        f"warning: PATCH {BULK}: not in the spec (bulk edits fall back to one PATCH per ticket)"
        in text
    )
    assert "BREAKING" not in text


@pytest.mark.usefixtures("thena")
def test_the_check_is_quiet_about_bulk_when_thena_has_it():
    out = StringIO()
    call_command("thena_check", stdout=out)

    assert BULK not in out.getvalue()


# The number of tickets


def test_the_ticket_count_is_configurable_and_keeps_the_first_tickets():
    default = SandboxApp(clock=lambda: FIXED_NOW)
    big = SandboxApp(SandboxConfig(ticket_count=1000), clock=lambda: FIXED_NOW)

    assert len(default.tickets()) == 240
    many = big.tickets()
    assert len(many) == 1000
    assert many[:240] == default.tickets()
    assert len({t["id"] for t in many}) == 1000
    assert len({t["ticketIdentifier"] for t in many}) == 1000
    # Same seed, same world; and the default world is the one tests have always had.
    again = SandboxApp(SandboxConfig(ticket_count=1000), clock=lambda: FIXED_NOW)
    assert again.tickets() == many
    assert (many[0]["id"], many[0]["ticketIdentifier"]) == (
        "OT0GS44O0XZHUO8SAFI4OHX6BCM8M",
        "SUP-1",
    )
    assert many[239]["id"] == "FOUXBBKO5XM0N2VOH5L64HH5SL4RN"


@pytest.mark.parametrize("sandbox_config", [SandboxConfig(ticket_count=1000)], indirect=True)
def test_a_big_sandbox_serves_its_tickets_and_bulk_updates(thena, sandbox):
    team_id = sandbox.tickets()[0]["teamId"]
    listed, page = [], 0
    while rows := thena.list_tickets(team_id=team_id, page=page, limit=100):
        listed += rows
        page += 1
    assert len(listed) == sum(1 for t in sandbox.tickets() if t["teamId"] == team_id) > 240 // 3

    ids = [t["id"] for t in sandbox.tickets()[-100:]]
    assert thena.bulk_update_tickets(ids, {"isPrivate": True}).updated == set(ids)


def test_an_empty_sandbox_still_answers():
    sandbox = SandboxApp(SandboxConfig(ticket_count=0))

    response = raw(sandbox).get("/v1/tickets")

    assert response.json()["data"] == []


@pytest.mark.parametrize(
    "option", [["--tickets", "-1"], ["--bulk-max-ids", "0"]], ids=["tickets", "bulk-max-ids"]
)
def test_the_sandbox_command_refuses_impossible_numbers(option):
    with pytest.raises(CommandError):
        call_command("thena_sandbox", *option)
