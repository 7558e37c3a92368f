"""GET /swagger-json in the sandbox, `manage.py thena_check` and the flag in /healthz,
end to end through the sandbox and the real client."""

import copy
import json
import socket
from io import StringIO

import httpx
import pytest
from django.core.management import CommandError, call_command

from tests.util import sandbox_over_http
from tickets.thena import documented
from tickets.thena.client import SANDBOX_BASE_URL, ThenaClient, sandbox_transport, set_client
from tickets.thena.errors import ThenaAuthError
from tickets.thena.sandbox import DEMO_API_KEY, SandboxApp, SandboxConfig

WRITE_ONLY = ("dueDate", "metadata", "attachmentUrls", "isProactive", "proactiveChannels")


class DoctoredSpec(httpx.BaseTransport):
    """The sandbox, except that GET /swagger-json answers what `doctor(spec)` returns:
    a changed document, or an httpx.Response."""

    def __init__(self, sandbox, doctor):
        self.inner = sandbox_transport(sandbox)
        self.doctor = doctor

    def handle_request(self, request):
        response = self.inner.handle_request(request)
        if request.url.path != "/swagger-json" or response.status_code != 200:
            return response
        response.read()
        answer = self.doctor(copy.deepcopy(response.json()))
        if isinstance(answer, httpx.Response):
            return answer
        return httpx.Response(200, json=answer, request=request)


def serve_doctored(sandbox, doctor, key=DEMO_API_KEY):
    set_client(ThenaClient(SANDBOX_BASE_URL, key, transport=DoctoredSpec(sandbox, doctor)))


def run_check(*args) -> tuple[str, CommandError | None]:
    out = StringIO()
    try:
        call_command("thena_check", *args, stdout=out)
    except CommandError as error:
        return out.getvalue(), error
    return out.getvalue(), None


def body_of(spec: dict) -> dict:
    return spec["components"]["schemas"]["UpdateTicketBody"]["properties"]


# GET /swagger-json


def test_swagger_json_answers_the_document_bare(thena):
    spec = thena.spec()
    assert spec["openapi"].startswith("3.0")
    assert set(spec["paths"]["/v1/tickets/{id}"]) == {"get", "patch"}
    patch = spec["paths"]["/v1/tickets/{id}"]["patch"]
    schema = patch["requestBody"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/UpdateTicketBody"}
    answer = patch["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer == {"$ref": "#/components/schemas/CommonTicketResponse"}


def test_swagger_json_needs_the_key(sandbox):
    client = ThenaClient(SANDBOX_BASE_URL, "wrong-key", transport=sandbox_transport(sandbox))
    with pytest.raises(ThenaAuthError):
        client.spec()
    assert sandbox.requests[-1].path == "/swagger-json"
    assert sandbox.requests[-1].status == 401


def test_swagger_json_update_body_is_the_documented_one(thena, sandbox):
    body = body_of(thena.spec())
    names = [name for name, *_ in documented.UPDATE_BODY]
    assert list(body) == [*names, "autoLinkSlackChannel"]
    for name, kind, detail, description in documented.UPDATE_BODY:
        assert body[name]["type"] == kind, name
        assert body[name]["description"] == description, name
        if kind == "string":
            assert body[name].get("format", "") == detail, name
    assert body["attachmentUrls"]["items"] == {"type": "string"}
    assert body["proactiveChannels"]["items"] == {"type": "string", "enum": ["email"]}
    item = body["customFieldValues"]["items"]
    assert item == {"$ref": "#/components/schemas/ExternalCustomFieldValuesDto"}
    dto = thena.spec()["components"]["schemas"]["ExternalCustomFieldValuesDto"]
    assert dto["properties"] == {}
    assert body["autoLinkSlackChannel"] == {
        "type": "boolean",
        "description": documented.AUTO_LINK_DESCRIPTION,
    }


def test_swagger_json_follows_the_sandbox_config(thena, sandbox):
    sandbox.config.proactive_channels = ("email", "slack")
    sandbox.config.auto_link_field = "linkSlackChannelToAccount"
    spec = thena.spec()
    body = body_of(spec)
    assert "linkSlackChannelToAccount" in body and "autoLinkSlackChannel" not in body
    assert body["proactiveChannels"]["items"]["enum"] == ["email", "slack"]
    ticket = spec["components"]["schemas"]["TicketResponseDto"]["properties"]
    assert list(ticket) == list(documented.TICKET_KEYS)
    assert ticket["ticketId"] == {"type": "number"}
    assert ticket["teamIsActive"] == {"type": "boolean"}
    assert ticket["customFieldValues"]["items"] == {"type": "string"}

    sandbox.config.echo_write_only = True
    sandbox.config.custom_field_shape = "objects"
    ticket = thena.spec()["components"]["schemas"]["TicketResponseDto"]["properties"]
    assert list(ticket) == [*documented.TICKET_KEYS, *documented.WRITE_ONLY]
    assert ticket["dueDate"]["format"] == "date-time"
    assert ticket["metadata"]["type"] == "object"
    assert ticket["customFieldValues"]["items"] == {"type": "object"}


def test_swagger_json_lists_exactly_the_routes_the_sandbox_serves(thena, sandbox):
    ticket, team = sandbox.tickets()[0], sandbox.teams()[0]
    account = thena.accounts()[0]
    values = {"{teamId}": team["id"], "{collection}": "tickets"}
    http = httpx.Client(
        base_url=SANDBOX_BASE_URL,
        transport=sandbox_transport(sandbox),
        headers={"x-api-key": DEMO_API_KEY},
    )
    spec = thena.spec()
    for template, operations in spec["paths"].items():
        path = template
        for param, value in values.items():
            path = path.replace(param, value)
        the_id = account["id"] if path.startswith("/v1/accounts") else ticket["id"]
        path = path.replace("{id}", the_id)
        for method in operations:
            response = http.request(method.upper(), path, json={} if method == "patch" else None)
            assert "Cannot" not in str(response.json().get("message")), (method, template)
    assert set(spec["paths"]) == {
        "/health",
        "/swagger-json",
        "/v1/tickets",
        "/v1/tickets/{id}",
        "/v1/tickets/bulk",
        *(f"/v1/tickets/{kind}" for kind in ("status", "priority", "type", "sentiment")),
        "/v1/teams",
        "/v1/teams/{teamId}",
        "/v1/teams/{teamId}/sub-teams",
        "/v1/teams/{teamId}/members",
        "/v1/accounts",
        "/v1/accounts/{id}",
        "/v1/forms",
        "/v1/custom-field",
        "/v1/search/tickets",
        "/v1/search/accounts",
    }
    assert "security" not in spec["paths"]["/health"]["get"]
    assert spec["paths"]["/swagger-json"]["get"]["security"] == [{"ApiKey": []}]


# manage.py thena_check


@pytest.mark.usefixtures("thena")
def test_check_passes_on_the_default_sandbox():
    out, error = run_check()
    assert error is None, out
    assert "Health: ok" in out
    assert "THENA_AUTO_LINK_FIELD=autoLinkSlackChannel" in out
    assert "The configured THENA_AUTO_LINK_FIELD matches." in out
    write_only = out.split("Write-only fields")[1].splitlines()[1]
    assert sorted(write_only.strip().split(", ")) == sorted(WRITE_ONLY)
    assert "BREAKING" not in out and "warning" not in out
    assert "Result: OK." in out


def test_check_finds_another_flag_name_until_the_setting_follows(settings):
    settings.THENA_AUTO_LINK_FIELD = "autoLinkSlackChannel"
    with sandbox_over_http(SandboxConfig(auto_link_field="linkSlackChannelToAccount")):
        out, error = run_check()
        assert error is not None
        assert "Thena's spec names it: linkSlackChannelToAccount" in out
        assert "THENA_AUTO_LINK_FIELD=linkSlackChannelToAccount" in out
        assert "BREAKING: THENA_AUTO_LINK_FIELD is 'autoLinkSlackChannel'" in out
        # The real flag is not reported again as a field we do not offer.
        assert "linkSlackChannelToAccount: in Thena's update body" not in out

        settings.THENA_AUTO_LINK_FIELD = "linkSlackChannelToAccount"
        out, error = run_check()
        assert error is None, out
        assert "The configured THENA_AUTO_LINK_FIELD matches." in out


def _drop_title(spec):
    del body_of(spec)["title"]
    return spec


def _private_as_string(spec):
    body_of(spec)["isPrivate"] = {"type": "string", "description": "Whether private"}
    return spec


def _no_members_path(spec):
    del spec["paths"]["/v1/teams/{teamId}/members"]
    return spec


def _no_update_time(spec):
    del spec["components"]["schemas"]["TicketResponseDto"]["properties"]["updatedAt"]
    return spec


def _no_flag(spec):
    del body_of(spec)["autoLinkSlackChannel"]
    return spec


@pytest.mark.parametrize(
    "doctor, expected",
    [
        (_drop_title, "BREAKING: title: not in Thena's update body"),
        (_private_as_string, "BREAKING: isPrivate: Thena's spec says string, we send boolean"),
        (_no_members_path, "BREAKING: GET /v1/teams/{id}/members: not in the spec"),
        (_no_update_time, "BREAKING: updatedAt: not in Thena's ticket"),
        (_no_flag, "BREAKING: Thena's update body has no boolean whose description mentions"),
    ],
)
def test_check_reports_a_breaking_difference_and_fails(sandbox, doctor, expected):
    serve_doctored(sandbox, doctor)
    out, error = run_check()
    assert expected in out
    assert error is not None and "1 breaking difference" in str(error)


def test_check_only_warns_about_the_guessed_sentiment_path(sandbox):
    def doctor(spec):
        del spec["paths"]["/v1/tickets/sentiment"]
        spec["paths"]["/v1/search/{collection}"] = spec["paths"].pop("/v1/search/tickets")
        del spec["paths"]["/v1/search/accounts"]
        body_of(spec)["deDuplicationKey"] = {"type": "string"}
        return spec

    serve_doctored(sandbox, doctor)
    out, error = run_check()
    assert error is None, out
    assert "warning: GET /v1/tickets/sentiment: not in the spec" in out
    assert "/v1/search" not in out  # one template serves both searches
    assert "info: deDuplicationKey: in Thena's update body, not offered here" in out


def test_check_finds_the_body_and_ticket_through_the_paths_when_named_otherwise(sandbox):
    def doctor(spec):
        text = json.dumps(spec).replace("UpdateTicketBody", "UpdateTicketDto")
        return json.loads(text.replace("TicketResponseDto", "TicketDto"))

    serve_doctored(sandbox, doctor)
    out, error = run_check("--json")
    assert error is None, out
    report = json.loads(out)
    assert report["ok"] is True
    assert report["auto_link_found"] == "autoLinkSlackChannel"
    write_only = [f["message"] for f in report["findings"] if f["section"] == "write-only"]
    assert sorted(write_only) == sorted(WRITE_ONLY)


def test_check_notes_custom_field_objects_and_echoed_write_only_fields(thena, sandbox):
    sandbox.config.custom_field_shape = "objects"
    sandbox.config.echo_write_only = True
    out, error = run_check()
    assert error is None, out
    assert "customFieldValues: Thena's spec says array<object>, the docs say array<string>" in out
    assert "info: dueDate: in Thena's ticket, not in the documented one" in out
    assert out.split("Write-only fields")[1].splitlines()[1].strip() == "none"


def test_check_fails_readably_when_thena_is_unreachable():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    set_client(ThenaClient(f"http://127.0.0.1:{port}", DEMO_API_KEY))
    out, error = run_check()
    assert "Health: Thena is not reachable right now" in out
    assert "Spec (/swagger-json): could not be read: Thena is not reachable" in out
    assert error is not None and "could not be read" in str(error)


@pytest.mark.parametrize(
    "answer, expected",
    [
        (httpx.Response(404, json={"message": "Cannot GET /swagger-json"}), "could not find"),
        (httpx.Response(200, json={"status": True, "data": []}), "did not expect"),
    ],
)
def test_check_fails_without_a_readable_spec(sandbox, answer, expected):
    serve_doctored(sandbox, lambda spec: answer)
    out, error = run_check()
    assert "Health: ok" in out
    assert "Spec (/swagger-json): could not be read" in out and expected in out
    assert error is not None


def test_check_never_prints_the_key(settings):
    key = "Very-Secret-Key-42"
    settings.THENA_API_KEY = key
    sandbox = SandboxApp(SandboxConfig(api_key=key))

    def doctor(spec):
        body_of(spec)[key.upper()] = {"type": "boolean"}  # an echo of the key, in any case
        return spec

    serve_doctored(sandbox, doctor, key=key)
    for args in ((), ("--json",)):
        out, error = run_check(*args)
        assert "[redacted]" in out  # the echo arrived and was masked
        assert key.lower() not in out.lower()
        assert error is None or key.lower() not in str(error).lower()


# /healthz


@pytest.mark.django_db
def test_healthz_reports_the_flag_and_reads_the_spec_once(client, thena, sandbox):
    response = client.get("/healthz")
    assert response.json()["auto_link_field"] == "ok"
    client.get("/healthz")
    assert [r.path for r in sandbox.requests].count("/swagger-json") == 1


@pytest.mark.django_db
def test_healthz_reports_a_flag_missing_from_the_spec(client, thena, settings):
    settings.THENA_AUTO_LINK_FIELD = "autoLinkSlackChannelToAccount"
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["ok"] is True
    expected = "not in Thena's spec: set THENA_AUTO_LINK_FIELD=autoLinkSlackChannel"
    assert response.json()["auto_link_field"] == expected


@pytest.mark.django_db
def test_healthz_stays_ok_when_the_spec_cannot_be_read(client, sandbox):
    serve_doctored(sandbox, lambda spec: httpx.Response(500, json={"message": "boom"}))
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["ok"] is True
    assert response.json()["auto_link_field"].startswith("unknown:")
