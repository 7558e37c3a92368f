"""The audit list answers questions: who (partial actor names with suggestions), which
changes were reverted or revert others, why (the reason), and when (a chart of changes
per day whose bars are links to their day)."""

import re
from datetime import UTC, date, datetime, timedelta

import pytest
from django.utils import timezone
from pytest_django.asserts import assertContains, assertNotContains

from tests.util import write_audit
from tickets.audit import RequestMeta, record_attempt, record_outcome
from tickets.models import TeamScope

pytestmark = pytest.mark.django_db

META = RequestMeta(request_id="req-list", client_ip="192.0.2.1", user_agent="pytest")
SUP_1 = {"id": "tk_sup_1", "ticketIdentifier": "SUP-1", "title": "Printer", "teamId": "t_sup"}
BIL_7 = {"id": "tk_bil_7", "ticketIdentifier": "BIL-7", "title": "Refund", "teamId": "t_bil"}
STATUS = {"statusId": {"before": "st_open", "after": "st_closed"}}


@pytest.fixture
def clock(monkeypatch):
    """Rows are stamped with timezone.now(), and the chart's today comes from it too."""

    class Clock:
        now = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)

    fake = Clock()
    monkeypatch.setattr(timezone, "now", lambda: fake.now)
    return fake


def write(actor, ticket=SUP_1, **fields):
    return write_audit(actor, ticket, STATUS, meta=META, **fields)


def numbers(response) -> list[int]:
    return [
        int(n)
        for n in re.findall(
            r'<td class="nowrap"><a href="/audit/\d+/">#(\d+)</a>', response.content.decode()
        )
    ]


def bars(response) -> list[str]:
    """The text alternatives of the chart's day links, in order."""
    return re.findall(r'<li><a href="[^"]*" aria-label="([^"]*)"', response.content.decode())


@pytest.fixture
def people(django_user_model, manager):
    make = django_user_model.objects.create_user
    return {
        "manager": manager,
        "amanda": make("amanda", email="amanda@example.com"),
        "joe": make("joe", email="chen.wei@example.com"),  # found by the start of the email
        "olga": make("olga", email="olga@example.com"),
    }


# Who: the actor filter


def test_actor_filter_matches_part_of_a_name_in_any_case(auditor_client, people):
    mine = write(people["manager"])
    hers = write(people["amanda"])
    write(people["joe"])

    for text in ("man", "MAN", "Man"):
        response = auditor_client.get("/audit/", {"actor": text})
        assert numbers(response) == [hers.number, mine.number], text
        assertContains(response, f"Actor “{text}” is amanda, manager.")


def test_a_whole_name_means_that_person_alone_in_any_case(auditor_client, people):
    mine = write(people["manager"])
    write(people["amanda"])

    for text in ("manager", "Manager", " MANAGER "):
        response = auditor_client.get("/audit/", {"actor": text})
        assert numbers(response) == [mine.number], text


def test_actor_filter_finds_deleted_users_and_users_by_email(auditor_client, people):
    gone = write(people["olga"])
    people["olga"].delete()  # the log keeps the name
    joes = write(people["joe"])

    assert numbers(auditor_client.get("/audit/", {"actor": "OLG"})) == [gone.number]
    assert numbers(auditor_client.get("/audit/", {"actor": "chen.w"})) == [joes.number]


def test_actor_filter_that_matches_no_one_says_so(auditor_client, people):
    write(people["manager"])
    response = auditor_client.get("/audit/", {"actor": "zz-nobody"})

    assert numbers(response) == []
    assertContains(response, "No one in the log or among the users matches “zz-nobody”.")
    assertContains(response, "No entries match.")


def test_actor_filter_matching_too_many_people_asks_for_more(auditor_client, django_user_model):
    for n in range(21):
        django_user_model.objects.create_user(f"agent{n:02}", email=f"agent{n:02}@example.com")
    response = auditor_client.get("/audit/", {"actor": "agent"})

    assertContains(response, "“agent” matches 21 people: type more of the name.")
    assertContains(response, "Nothing shown: correct the filters marked above.")


def test_actor_filter_combines_with_the_other_filters(auditor_client, people):
    keep = write(people["amanda"], settle=["failed"])
    write(people["amanda"], settle=["succeeded"])
    also = write(people["manager"], settle=["failed"])
    write(people["amanda"], ticket=BIL_7, settle=["failed"])

    response = auditor_client.get(
        "/audit/", {"actor": "MAN", "outcome": "failed", "ticket": "sup-1", "field": "statusId"}
    )
    assert numbers(response) == [also.number, keep.number]


def test_actor_suggestions_list_recent_actors_for_the_input(auditor_client, people):
    write(people["manager"])
    write(people["amanda"])
    response = auditor_client.get("/audit/")

    assertContains(response, 'list="actor-suggestions"')
    datalist = re.search(
        r'<datalist id="actor-suggestions">(.*?)</datalist>', response.content.decode()
    )
    assert datalist
    assert re.findall(r'<option value="([^"]+)">', datalist.group(1)) == ["amanda", "manager"]


def test_actor_suggestions_only_name_people_of_the_users_teams(client, auditor, people):
    write(people["manager"])
    write(people["amanda"], ticket=BIL_7)
    TeamScope.objects.create(user=auditor, team_ids=["t_bil"])
    client.force_login(auditor)

    response = client.get("/audit/")

    assertContains(response, '<option value="amanda">', html=False)
    assertNotContains(response, '<option value="manager">')


# Which: reverts


@pytest.fixture
def reverted(manager):
    original = write(manager, settle=["succeeded"])
    other = write(manager, settle=["succeeded"])
    undo = write(manager, revert_of=original.id, reason="Wrong ticket", settle=["succeeded"])
    return original, other, undo


def test_reverts_only_lists_the_entries_that_revert_another(auditor_client, reverted):
    original, _, undo = reverted
    response = auditor_client.get("/audit/", {"revert": "reverts"})

    assert numbers(response) == [undo.number]
    assertContains(
        response, f'Revert of <a href="/audit/{original.number}/">#{original.number}</a>'
    )


def test_reverted_lists_the_entries_another_one_reverts(auditor_client, reverted):
    original, _, _ = reverted
    response = auditor_client.get("/audit/", {"revert": "reverted"})

    assert numbers(response) == [original.number]
    assertContains(
        response, '<option value="reverted" selected>Reverted entries</option>', html=True
    )


def test_revert_filter_refuses_other_values(auditor_client, reverted):
    response = auditor_client.get("/audit/", {"revert": "maybe"})
    assertContains(response, "Select a valid choice.")


# Why: the reason


def test_reason_filter_finds_part_of_a_reason_in_any_case(auditor_client, manager):
    found = write(manager, reason="Duplicate of SUP-2, closing")
    write(manager, reason="Customer asked")
    write(manager)

    response = auditor_client.get("/audit/", {"reason": "DUPLICATE"})

    assert numbers(response) == [found.number]
    assertContains(response, "Reason: Duplicate of SUP-2, closing")


def test_reason_filter_takes_like_wildcards_literally(auditor_client, manager):
    write(manager, reason="Customer asked")
    assert numbers(auditor_client.get("/audit/", {"reason": "%"})) == []
    assert numbers(auditor_client.get("/audit/", {"reason": "_"})) == []


def test_a_long_reason_is_shown_cut_on_one_line(auditor_client, manager):
    write(manager, reason="First line\n" + "word " * 100)
    response = auditor_client.get("/audit/")
    assertContains(response, "Reason: First line word word")
    assertContains(response, "…</span>")


# When: the chart


def test_chart_shows_exactly_the_days_asked_for_with_readable_day_labels(
    auditor_client, manager, clock
):
    clock.now = datetime(2025, 3, 4, 9, tzinfo=UTC)
    write(manager)
    clock.now = datetime(2025, 3, 10, 12, tzinfo=UTC)

    response = auditor_client.get("/audit/", {"since": "2025-03-01", "until": "2025-03-07"})

    assert bars(response) == [
        "Sat 1 Mar 2025: 0 changes",
        "Sun 2 Mar 2025: 0 changes",
        "Mon 3 Mar 2025: 0 changes",
        "Tue 4 Mar 2025: 1 change",
        "Wed 5 Mar 2025: 0 changes",
        "Thu 6 Mar 2025: 0 changes",
        "Fri 7 Mar 2025: 0 changes",
    ]
    assertContains(response, "Changes per day, 1 Mar 2025 \u2013 7 Mar 2025")
    # A week: every day is labelled on the axis.
    assert re.findall(
        r'<span class="tick" aria-hidden="true">([^<]+)</span>', response.content.decode()
    ) == ["1 Mar", "2 Mar", "3 Mar", "4 Mar", "5 Mar", "6 Mar", "7 Mar"]
    assertNotContains(response, "at most 366 days")


def test_default_chart_is_30_days_labelled_on_mondays(auditor_client, manager, clock):
    response = auditor_client.get("/audit/")

    assert len(bars(response)) == 30
    assert bars(response)[-1] == "Mon 10 Mar 2025: 0 changes"
    ticks = re.findall(
        r'<span class="tick" aria-hidden="true">([^<]+)</span>', response.content.decode()
    )
    assert ticks == ["10 Feb", "17 Feb", "24 Feb", "3 Mar", "10 Mar"]


def test_a_long_chart_labels_the_first_of_each_month(auditor_client, manager, clock):
    response = auditor_client.get("/audit/", {"since": "2024-12-01", "until": "2025-03-10"})
    ticks = re.findall(
        r'<span class="tick" aria-hidden="true">([^<]+)</span>', response.content.decode()
    )
    assert ticks == ["Dec 2024", "Jan 2025", "Feb", "Mar"]


def test_a_range_longer_than_the_chart_says_so_plainly(auditor_client, manager, clock):
    response = auditor_client.get("/audit/", {"since": "2020-01-01", "until": "2025-03-10"})

    assert len(bars(response)) == 366
    assertContains(
        response,
        "The chart shows at most 366 days: these are the last 366 of the 1896 asked for. "
        "Narrow the dates to chart the earlier ones; the list below covers them all.",
    )
    assertContains(response, "Changes per day, 10 Mar 2024 \u2013 10 Mar 2025")


def test_chart_counts_changes_not_exports(auditor_client, manager, clock):
    write(manager, settle=["succeeded"])
    write(manager, outcome="denied")
    export = record_attempt(
        action="audit.export", actor=manager, ticket=None, changes={}, request_body={}, meta=META
    )
    record_outcome(entry=export, outcome="succeeded")

    response = auditor_client.get("/audit/")

    assert bars(response)[-1] == "Mon 10 Mar 2025: 2 changes"
    assertContains(response, "<strong>2</strong> in all")
    assertContains(response, "exports are not changes")
    assert len(numbers(response)) == 3  # the list still shows every entry


def test_chart_is_never_stale_after_an_entry_settles(auditor_client, manager, clock):
    clock.now = datetime(2025, 3, 9, 10, tzinfo=UTC)
    entry = write(manager)  # pending, yesterday
    clock.now = datetime(2025, 3, 10, 12, tzinfo=UTC)

    def yesterday(outcome):
        return bars(auditor_client.get("/audit/", {"outcome": outcome}))[-2]

    assert yesterday("pending") == "Sun 9 Mar 2025: 1 change"
    assert yesterday("succeeded") == "Sun 9 Mar 2025: 0 changes"

    record_outcome(entry=entry, outcome="succeeded")  # settled today, for yesterday's entry

    assert yesterday("pending") == "Sun 9 Mar 2025: 0 changes"
    assert yesterday("succeeded") == "Sun 9 Mar 2025: 1 change"


def test_chart_is_never_stale_after_a_revert(auditor_client, manager, clock):
    clock.now = datetime(2025, 3, 9, 10, tzinfo=UTC)
    original = write(manager, settle=["succeeded"])
    clock.now = datetime(2025, 3, 10, 12, tzinfo=UTC)

    def yesterday():
        return bars(auditor_client.get("/audit/", {"revert": "reverted"}))[-2]

    assert yesterday() == "Sun 9 Mar 2025: 0 changes"
    write(manager, revert_of=original.id)
    assert yesterday() == "Sun 9 Mar 2025: 1 change"


def test_each_day_links_to_the_list_of_that_day_keeping_the_filters(auditor_client, manager, clock):
    clock.now = datetime(2025, 3, 8, 9, tzinfo=UTC)
    that_day = write(manager)
    clock.now = datetime(2025, 3, 10, 9, tzinfo=UTC)
    write(manager)

    response = auditor_client.get("/audit/", {"actor": "manag"})
    link = re.search(
        r'<a href="([^"]+)" aria-label="Sat 8 Mar 2025: 1 change"', response.content.decode()
    )
    assert link
    href = link.group(1).replace("&amp;", "&")
    assert href == "/audit/?actor=manag&since=2025-03-08&until=2025-03-08"

    day = auditor_client.get(href)
    assert numbers(day) == [that_day.number]
    assertContains(day, 'value="2025-03-08"', count=2)  # the form shows the day it lists
    assertContains(response, '<a class="skip-days" href="#audit-table">Skip the 30 days</a>')


def test_chart_days_are_in_the_users_time_zone(auditor_client, manager, clock):
    clock.now = datetime(2025, 3, 9, 23, 30, tzinfo=UTC)  # 10 March in Tokyo
    write(manager)
    auditor_client.cookies["tz"] = "Asia/Tokyo"

    response = auditor_client.get("/audit/", {"since": "2025-03-09", "until": "2025-03-10"})

    assert bars(response) == ["Sun 9 Mar 2025: 0 changes", "Mon 10 Mar 2025: 1 change"]


def test_a_scoped_user_sees_counts_of_their_teams_only(client, auditor, manager, clock):
    write(manager)
    write(manager, ticket=BIL_7)
    TeamScope.objects.create(user=auditor, team_ids=["t_bil"])
    client.force_login(auditor)

    assert bars(client.get("/audit/"))[-1] == "Mon 10 Mar 2025: 1 change"


def test_chart_span_of_a_future_since_is_that_one_day(clock):
    from tickets.audit import AuditFilter, chart_span

    span = chart_span(AuditFilter(since=date(2025, 4, 1)))
    assert (span.since, span.until, span.cut) == (date(2025, 4, 1), date(2025, 4, 1), False)
    assert chart_span(AuditFilter()).since == date(2025, 3, 10) - timedelta(days=29)


def test_chart_is_never_stale_after_an_entry_dated_in_the_past(auditor_client, manager, clock):
    assert bars(auditor_client.get("/audit/"))[-2] == "Sun 9 Mar 2025: 0 changes"

    clock.now = datetime(2025, 3, 9, 10, tzinfo=UTC)  # seed_audit, or a clock behind
    write(manager)
    clock.now = datetime(2025, 3, 10, 12, tzinfo=UTC)

    assert bars(auditor_client.get("/audit/"))[-2] == "Sun 9 Mar 2025: 1 change"
