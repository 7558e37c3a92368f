"""No lost update: two saves of one field never both win; the second sees the first.

Eight managers, each with a browser-like session over real HTTP to the live server, load
one ticket and press Save at the same moment (a threading.Barrier). The per-ticket edit
lock (tickets/locks.py) must let exactly one of them through; every other one re-reads
the ticket after the winner, finds the title changed since its page was loaded and gets
the conflict page, without a PATCH. Saves of different fields must all land.

Run against the in-process sandbox and against the sandbox served over real HTTP with
20 ms of latency per request, so the PATCH really takes time and the race window is real.
"""

import threading
import time
from collections import Counter
from dataclasses import dataclass

import pytest
from django.contrib.auth.models import Group

from tests.browser import Data, form_data, replace, to_urlencoded
from tests.conftest import PASSWORD
from tests.util import logged_in, sandbox_over_http
from tickets import services
from tickets.models import AuditEntry
from tickets.thena.sandbox import SandboxApp, SandboxConfig

pytestmark = pytest.mark.django_db(transaction=True)

EDITORS = 8
ROUNDS = 3
SAVED_ONE = "Saved 1 change(s) to Thena."
CONFLICT = "Someone changed this ticket"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture(params=["in-process", "http-20ms"])
def world(request) -> SandboxApp:
    """The sandbox every server thread talks to: the `sandbox` fixture's, in process, or
    a sandbox served over real HTTP (like `manage.py thena_sandbox --latency-ms 20`)."""
    if request.param == "in-process":
        request.getfixturevalue("thena")
        yield request.getfixturevalue("sandbox")
        return
    with sandbox_over_http(SandboxConfig(latency_ms=20)) as app:
        yield app


@pytest.fixture
def editors(manager, django_user_model) -> list[str]:
    """Eight support managers (the `manager` fixture made the groups)."""
    group = Group.objects.get(name="Support managers")
    names = [manager.username]
    for number in range(1, EDITORS):
        user = django_user_model.objects.create_user(f"editor{number}", password=PASSWORD)
        user.groups.add(group)
        names.append(user.username)
    return names


@pytest.fixture
def base_url(live_server, editors):
    """The live server's URL. Each of its request threads has its own database connection,
    as in production (on SQLite because settings make the test database a file)."""
    return live_server.url


@pytest.fixture
def browsers(base_url, editors):
    """One logged-in HTTP client per editor, logged in through the real login form."""
    clients = [logged_in(base_url, username) for username in editors]
    yield clients
    for client in clients:
        client.close()


@pytest.fixture
def ticket(world) -> dict:
    return next(t for t in world.tickets() if t["teamIdentifier"] == "SUP")


@dataclass
class Answer:
    status: int  # of the POST itself
    page_status: int  # of the page shown afterwards (the redirect followed)
    page: str


def _load(browsers, url: str) -> list[Data]:
    forms = []
    for client in browsers:
        response = client.get(url)
        assert response.status_code == 200, response.text
        forms.append(form_data(response.text))
    return forms


def _save_at_once(browsers, url: str, bodies: list[Data]) -> list[Answer]:
    """Every browser POSTs its form at the same moment; redirects are followed after."""
    barrier = threading.Barrier(len(browsers))
    answers: list[Answer | BaseException | None] = [None] * len(browsers)

    def save(index: int) -> None:
        client = browsers[index]
        try:
            barrier.wait(timeout=10)
            response = client.post(url, content=to_urlencoded(bodies[index]), headers=FORM)
            shown = response
            if response.status_code == 302:
                shown = client.get(response.headers["location"])
            answers[index] = Answer(response.status_code, shown.status_code, shown.text)
        except BaseException as error:  # reported below
            answers[index] = error

    threads = [threading.Thread(target=save, args=(i,)) for i in range(len(browsers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for answer in answers:
        if not isinstance(answer, Answer):
            raise AssertionError(f"a save did not complete: {answer!r}")
    return answers


def _patches(world: SandboxApp) -> list[dict]:
    return [r.json for r in world.requests if r.method == "PATCH"]


def _last_entry_id() -> int:
    return AuditEntry.objects.order_by("-id").values_list("id", flat=True).first() or 0


def test_one_field_saved_at_once_by_eight_editors_has_exactly_one_winner(
    world, browsers, editors, ticket
):
    url = f"/tickets/{ticket['id']}/"
    started = time.monotonic()
    for number in range(ROUNDS):
        before = world.ticket(ticket["id"])["title"]
        forms = _load(browsers, url)
        titles = [f"Round {number} title by {name}" for name in editors]
        bodies = [replace(data, "title", title) for data, title in zip(forms, titles, strict=True)]
        patches, last_id = len(_patches(world)), _last_entry_id()

        answers = _save_at_once(browsers, url, bodies)

        saved = [i for i, a in enumerate(answers) if SAVED_ONE in a.page]
        assert len(saved) == 1, [(a.status, a.page_status) for a in answers]
        (winner,) = saved
        assert (answers[winner].status, answers[winner].page_status) == (302, 200)
        for index, answer in enumerate(answers):
            if index != winner:
                assert (answer.status, answer.page_status) == (200, 200)
                assert CONFLICT in answer.page
                assert SAVED_ONE not in answer.page
        sent = _patches(world)[patches:]
        assert sent == [{"title": titles[winner]}]
        assert world.ticket(ticket["id"])["title"] == titles[winner]

        entries = list(
            AuditEntry.objects.filter(ticket_id=ticket["id"], id__gt=last_id)
            .with_current_outcome()
            .order_by("id")
        )
        outcomes = Counter(entry.current_outcome for entry in entries)
        assert outcomes == {"succeeded": 1, "conflict": EDITORS - 1}
        (won,) = [entry for entry in entries if entry.current_outcome == "succeeded"]
        assert won.actor_username == editors[winner]
        assert won.changes["title"] == {"before": before, "after": titles[winner]}
        assert won.request_body == {"title": titles[winner]}
        for entry in entries:
            if entry.current_outcome == "conflict":
                assert entry.request_body == {"title": titles[editors.index(entry.actor_username)]}
                assert "Title" in entry.message
    assert time.monotonic() - started < 30


def test_different_fields_saved_at_once_all_land_and_none_is_reverted(
    world, browsers, editors, ticket
):
    url = f"/tickets/{ticket['id']}/"
    original = world.ticket(ticket["id"])
    priorities = services.team_choices_load(ticket["teamId"]).priorities
    other_priority = next(pid for pid, _ in priorities if pid != original["priorityId"])
    changes = [  # (input name, value typed, value expected on the ticket)
        ("title", "Everyone saved at once", "Everyone saved at once"),
        ("description", "Described by everyone at once", "Described by everyone at once"),
        ("source", "email", "email"),
        ("aiGeneratedTitle", "A robot's title", "A robot's title"),
        ("aiGeneratedSummary", "A robot's summary", "A robot's summary"),
        ("isPrivate", None if original["isPrivate"] else "on", not original["isPrivate"]),
        ("submitterEmail", "submitter@example.com", "submitter@example.com"),
        ("priorityId", other_priority, other_priority),
    ]
    assert len(changes) == EDITORS
    assert original["source"] != "email"
    forms = _load(browsers, url)
    bodies = [
        replace(data, name, typed) for data, (name, typed, _) in zip(forms, changes, strict=True)
    ]
    patches, last_id = len(_patches(world)), _last_entry_id()

    answers = _save_at_once(browsers, url, bodies)

    for answer in answers:
        assert (answer.status, answer.page_status) == (302, 200), answer.page[:2000]
        assert SAVED_ONE in answer.page
        assert CONFLICT not in answer.page
    sent = _patches(world)[patches:]
    assert len(sent) == EDITORS
    assert all(len(body) == 1 for body in sent)  # each save sent only its own field
    assert {next(iter(body)) for body in sent} == {name for name, _, _ in changes}
    final = world.ticket(ticket["id"])
    for name, _, expected in changes:
        assert final[name] == expected, name
    entries = AuditEntry.objects.filter(ticket_id=ticket["id"], id__gt=last_id)
    outcomes = Counter(entry.current_outcome for entry in entries.with_current_outcome())
    assert outcomes == {"succeeded": EDITORS}
