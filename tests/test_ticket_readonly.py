"""The ticket page for someone who may view but not edit: every field of the edit form,
grouped as the form groups them, as values to read (issue 14)."""

import re
from datetime import UTC, datetime
from html.parser import HTMLParser

import pytest
from django.utils import dateformat, timezone
from pytest_django.asserts import assertContains, assertNotContains

from tests.util import OBJECTS, SANDBOX_VARIANTS
from tickets.forms import option_pairs
from tickets.thena import wire

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("thena")]

WRITE_ONLY = "Not readable from Thena"


@pytest.fixture
def ticket(sandbox):
    """A SUP ticket with a type, an assignee, an account and custom field values."""
    return next(
        t
        for t in sandbox.tickets()
        if t["teamIdentifier"] == "SUP"
        and t.get("typeId")
        and t.get("assignedAgentId")
        and t.get("accountId")
        and t.get("subTeamId")
        and len(t.get("customFieldValues") or []) >= 2
    )


class _ReadOnly(HTMLParser):
    """The read-only groups of a page: [(title, {label: text})], a <br> read as a line
    break; and every form control of the page."""

    def __init__(self):
        super().__init__()
        self.groups: list[tuple[str, dict[str, str]]] = []
        self.controls: list[dict] = []
        self._in = None  # "h2", "dt" or "dd" of a read-only group
        self._label = ""
        self._text: list[str] = []
        self._depth = 0  # open elements inside the current read-only section

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("input", "select", "textarea"):
            self.controls.append({"tag": tag, **attrs})
        if tag == "section" and "read-only" in (attrs.get("class") or "").split():
            self.groups.append(("", {}))
            self._depth = 1
            return
        if not self._depth:
            return
        if tag == "br":
            self._text.append("\n")
            return
        self._depth += 1
        if tag in ("h2", "dt", "dd"):
            self._in, self._text = tag, []

    def handle_endtag(self, tag):
        if not self._depth or tag == "br":
            return
        self._depth -= 1
        if tag != self._in:
            return
        text = "".join(self._text).strip()
        _, values = self.groups[-1]
        if tag == "h2":
            self.groups[-1] = (text, values)
        elif tag == "dt":
            self._label = text
        else:
            values[self._label] = text
        self._in = None

    def handle_data(self, data):
        if self._in:
            self._text.append(data)


def _read(response) -> _ReadOnly:
    assert response.status_code == 200
    parser = _ReadOnly()
    parser.feed(response.content.decode())
    return parser


def _values(page: _ReadOnly) -> dict[str, str]:
    return {label: text for _, values in page.groups for label, text in values.items()}


def _local(moment: datetime, fmt: str) -> str:
    return dateformat.format(timezone.localtime(moment), fmt)


# -- who sees what -----------------------------------------------------------------------


def test_anonymous_is_sent_to_login(client, url):
    assert client.get(url)["Location"] == f"/accounts/login/?next={url}"


@pytest.mark.parametrize(
    "sandbox_config",
    [SANDBOX_VARIANTS["documented"], OBJECTS],
    ids=["documented", "object-custom-fields"],
    indirect=True,
)
def test_viewer_sees_the_forms_groups_in_the_forms_order(viewer_client, manager_client, url):
    form = manager_client.get(url).content.decode()
    legends = re.findall(r'<fieldset class="group group-\w+">\s*<legend>([^<]+)</legend>', form)
    page = _read(viewer_client.get(url))
    assert [title for title, _ in page.groups] == legends
    assert legends[:2] == ["Basics", "People"]


@pytest.mark.parametrize("sandbox_config", [OBJECTS], indirect=True)
def test_viewer_reads_every_field_with_the_edit_forms_names(viewer_client, url, ticket, thena):
    page = _read(viewer_client.get(url))
    values = _values(page)

    assert values["Title"] == ticket["title"]
    assert values["Description"] == ticket["description"]
    assert values["Status"] == ticket["status"]
    assert values["Priority"] == ticket["priority"]
    assert values["Type"] == ticket["type"]
    assert values["Sentiment"] == (ticket["sentiment"] or "—")
    # Names, never ids: the assignee as the form's option reads ("Name <email>").
    assert values["Assignee"].startswith(ticket["assignedAgent"])
    assert ticket["assignedAgentId"] not in str(page.groups)
    assert values["Account"] == ticket["account"]
    assert values["Sub-team"] == ticket["subTeamName"]
    assert values["Private"] == ("Yes" if ticket["isPrivate"] else "No")

    # Custom fields under their own names, in a group of their own.
    custom = dict(page.groups)["Custom fields"]
    definitions = {d["uid"]: d for d in thena.custom_fields(ticket["teamId"])}
    for item in ticket["customFieldValues"]:
        definition = definitions[item["customFieldId"]]
        [raw] = [d["value"] for d in item["data"]]
        expected = {"true": "Yes", "false": "No"}.get(raw, raw)
        if wire.cf_kind(definition) in ("choice", "multichoice"):
            expected = dict(option_pairs(definition)).get(raw, raw)
        assert custom[definition["name"]] == expected, definition


def test_viewer_gets_no_form_control_of_the_ticket(viewer_client, url):
    page = _read(viewer_client.get(url))
    assert page.groups
    # The only controls left are the log-out form's token.
    assert [c for c in page.controls if c.get("name") != "csrfmiddlewaretoken"] == []
    assert all(c["tag"] == "input" and c.get("type") == "hidden" for c in page.controls)


def test_write_only_fields_say_thena_does_not_return_them(viewer_client, url):
    values = _values(_read(viewer_client.get(url)))
    for label in ("Due date", "Metadata", "Attachment URLs", "Proactive", "Proactive channels"):
        assert values[label] == WRITE_ONLY, label
    assert values["Title"] != WRITE_ONLY
    # Names to look up and the auto-link action are ways to write, not values.
    assert "Status name" not in values
    assert "Link the Slack channel to this account" not in values


@pytest.mark.parametrize(
    "sandbox_config", [SANDBOX_VARIANTS["echo-write-only"]], ids=["echo"], indirect=True
)
def test_write_only_values_thena_does_return_are_shown(viewer_client, url, ticket, sandbox):
    sandbox.touch_ticket(
        ticket["id"],
        dueDate="2026-12-24T17:30:00.000Z",
        metadata={"plan": "enterprise"},
        attachmentUrls=["https://files.example/a.pdf", "https://files.example/b.pdf"],
        isProactive=True,
    )
    values = _values(_read(viewer_client.get(url)))
    due = datetime(2026, 12, 24, 17, 30, tzinfo=UTC)
    assert values["Due date"] == _local(due, "j M Y, H:i")
    assert '"plan": "enterprise"' in values["Metadata"]
    assert values["Attachment URLs"] == "https://files.example/a.pdf\nhttps://files.example/b.pdf"
    assert values["Proactive"] == "Yes"
    assert WRITE_ONLY not in values.values()


def test_description_keeps_its_line_breaks_and_is_escaped(viewer_client, url, ticket, sandbox):
    sandbox.touch_ticket(ticket["id"], description="Steps:\n1. <b>open</b>\n2. upload")
    response = viewer_client.get(url)
    assert _values(_read(response))["Description"] == "Steps:\n1. <b>open</b>\n2. upload"
    assertContains(response, "Steps:<br>1. &lt;b&gt;open&lt;/b&gt;<br>2. upload")


def test_dates_are_formatted_in_the_time_zone(viewer_client, url, ticket, sandbox):
    sandbox.touch_ticket(ticket["id"], closedAt="2026-03-01T09:05:00.000Z")
    values = _values(_read(viewer_client.get(url)))
    closed = datetime(2026, 3, 1, 9, 5, tzinfo=UTC)
    assert values["Closed at"] == _local(closed, "j M Y, H:i")
    assert values["AI-generated title"] in ("—", ticket.get("aiGeneratedTitle"))


def test_custom_values_read_without_their_fields_are_listed(viewer_client, url, ticket):
    """Thena as documented sends custom values as bare strings: shown one a line."""
    values = _values(_read(viewer_client.get(url)))
    shown = values["Custom field values"].splitlines()
    assert shown == [d["value"] for item in ticket["customFieldValues"] for d in item["data"]]


def test_manager_gets_the_form_and_not_the_read_only_view(manager_client, url):
    response = manager_client.get(url)
    assertContains(response, 'id="edit-form"')
    assertContains(response, 'id="save"')
    assertContains(response, 'href="#save"')
    assertNotContains(response, WRITE_ONLY)
    assert _read(response).groups == []


def test_recent_changes_link_only_where_the_history_is(viewer_client, auditor_client, url):
    link = '<a class="to-history" href="#history-panel">Recent changes</a>'
    assertNotContains(viewer_client.get(url), link)
    response = auditor_client.get(url)
    assertContains(response, link)
    assertContains(response, 'id="history-panel"')
    assert _read(response).groups  # an auditor may not edit either
    assertNotContains(response, 'href="#save"')
