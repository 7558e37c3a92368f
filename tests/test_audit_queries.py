import csv
import zoneinfo
from collections import Counter
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from io import StringIO

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from tests.util import FrozenClock, complete_export, write_audit
from tickets import audit
from tickets.audit import (
    AuditFilter,
    AuditFilterForm,
    Cursor,
    RequestMeta,
    audit_daily_counts,
    audit_entry_detail,
    audit_export,
    audit_page,
    queries,
    record_attempt,
    record_outcome,
    verify_chain,
)
from tickets.models import AuditEntry, AuditOutcome, Outcome
from tickets.thena import schema

pytestmark = pytest.mark.django_db

META = RequestMeta(request_id="req-1", client_ip="192.0.2.10", user_agent="pytest")
SUP_1 = {
    "id": "tk_sup_1",
    "ticketIdentifier": "SUP-1",
    "title": "Printer on fire",
    "teamId": "t_sup",
}
SUP_2 = {"id": "tk_sup_2", "ticketIdentifier": "SUP-2", "title": "Login loop", "teamId": "t_sup"}
BIL_7 = {"id": "tk_bil_7", "ticketIdentifier": "BIL-7", "title": "Refund twice", "teamId": "t_bil"}
STATUS = {"statusId": {"before": "st_open", "after": "st_closed"}}
PRIORITY = {"priorityId": {"before": None, "after": "pr_high"}}


@pytest.fixture
def clock(monkeypatch):
    return FrozenClock(monkeypatch, datetime(2025, 3, 10, 12, 0, tzinfo=UTC))


@pytest.fixture
def noah(django_user_model):
    return django_user_model.objects.create_user("noah", email="noah@example.com")


def write(actor, ticket=SUP_1, changes=STATUS, **kwargs):
    return write_audit(actor, ticket, changes, meta=META, **kwargs)


def ids(filters=None, **kwargs) -> list[int]:
    page = audit_page(filters=filters or AuditFilter(), **kwargs)
    return [entry.id for entry in page.entries]


def walk(filters, *, limit, team_ids=None) -> list[AuditEntry]:
    """Every entry of a filter, page by page through the cursor."""
    seen, cursor = [], None
    while True:
        page = audit_page(filters=filters, cursor=cursor, team_ids=team_ids, limit=limit)
        seen += page.entries
        if not page.next_cursor:
            return seen
        assert len(page.entries) == limit
        cursor = Cursor.decode(page.next_cursor)


# Filters


def test_page_is_newest_first_with_current_outcome_and_labels(clock, mia):
    first = write(mia, changes=STATUS | PRIORITY, settle=["succeeded"])
    clock.tick(minutes=1)
    second = write(mia, outcome="conflict")

    page = audit_page(filters=AuditFilter())

    assert [e.id for e in page.entries] == [second.id, first.id]
    assert [e.current_outcome for e in page.entries] == ["conflict", "succeeded"]
    assert page.entries[1].field_labels == ["Status", "Priority"]
    assert page.next_cursor == ""


def test_actor_filter_matches_the_recorded_username(clock, mia, noah):
    mine = write(mia)
    write(noah)
    mia.delete()  # the log keeps the name

    assert ids(AuditFilter(actor="mia")) == [mine.id]
    assert ids(AuditFilter(actor="nobody")) == []


def test_ticket_filter_takes_the_id_or_the_identifier_in_any_case(clock, mia):
    one = write(mia, SUP_1)
    write(mia, SUP_2)

    assert ids(AuditFilter(ticket="tk_sup_1")) == [one.id]
    assert ids(AuditFilter(ticket="sup-1")) == [one.id]
    assert ids(AuditFilter(ticket="SUP-1")) == [one.id]
    assert ids(AuditFilter(ticket="TK_SUP_1")) == []  # ids are exact


def test_a_ticket_whose_id_is_its_identifier_pages_each_entry_once(clock, mia):
    # Both of the ticket's streams hold every entry: the merged first rows repeat each.
    same = {"id": "SUP-9", "ticketIdentifier": "SUP-9", "title": "Twin", "teamId": "t_sup"}
    written = []
    for _ in range(9):
        written.append(write(mia, same))
        clock.tick(seconds=1)
    write(mia, BIL_7)
    newest_first = [entry.id for entry in reversed(written)]

    for limit in (3, 4, 9, 10):
        for team_ids in (None, frozenset({"t_sup"})):
            got = walk(AuditFilter(ticket="SUP-9"), limit=limit, team_ids=team_ids)
            assert [entry.id for entry in got] == newest_first, (limit, team_ids)
        assert walk(AuditFilter(ticket="SUP-9"), limit=limit, team_ids=frozenset({"t_bil"})) == []


def test_reason_search_reads_percent_and_underscore_as_text(clock, mia):
    literal = write(mia, reason="Refund 100% of it_now")
    write(mia, reason="Refund 1000 of itanow")

    assert ids(AuditFilter(reason="0% OF IT_")) == [literal.id]
    assert ids(AuditFilter(reason="%")) == [literal.id]
    assert ids(AuditFilter(reason="_")) == [literal.id]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite's LIKE folds ASCII alone")
def test_reason_search_ignores_case_beyond_ascii_on_postgresql(clock, mia):
    echec = write(mia, reason="ÉCHEC du paiement, Straße gesperrt")
    write(mia, reason="echec sans accent")

    assert ids(AuditFilter(reason="échec")) == [echec.id]
    assert ids(AuditFilter(reason="STRASSE")) == []  # folded by case, not transliterated
    assert ids(AuditFilter(reason="straße")) == [echec.id]


def test_field_filter_finds_entries_that_changed_the_field(clock, mia):
    both = write(mia, changes=STATUS | PRIORITY)
    write(mia, changes=STATUS)

    assert ids(AuditFilter(field="priorityId")) == [both.id]
    assert len(ids(AuditFilter(field="statusId"))) == 2
    assert ids(AuditFilter(field="title")) == []


def test_outcome_filter_uses_the_current_outcome(clock, mia):
    pending = write(mia)
    succeeded = write(mia, settle=["succeeded"])
    failed = write(mia, settle=["failed"])
    unknown = write(mia, settle=["unknown"])
    reconciled = write(mia, settle=["unknown", "succeeded"])
    conflict = write(mia, outcome="conflict")
    denied = write(mia, outcome="denied")
    export = record_attempt(
        action="audit.export",
        actor=mia,
        ticket=None,
        changes={},
        request_body={"filters": {}},
        outcome="succeeded",
        meta=META,
    )

    assert ids(AuditFilter(outcome="pending")) == [pending.id]
    assert ids(AuditFilter(outcome="succeeded")) == [export.id, reconciled.id, succeeded.id]
    assert ids(AuditFilter(outcome="failed")) == [failed.id]
    assert ids(AuditFilter(outcome="unknown")) == [unknown.id]
    assert ids(AuditFilter(outcome="conflict")) == [conflict.id]
    assert ids(AuditFilter(outcome="denied")) == [denied.id]


def test_date_range_is_inclusive_days_in_the_users_time_zone(clock, mia):
    new_york = zoneinfo.ZoneInfo("America/New_York")
    clock.now = datetime(2025, 3, 10, 3, 30, tzinfo=UTC)  # 9 March, 23:30 in New York
    late_on_9th = write(mia)
    clock.now = datetime(2025, 3, 10, 4, 30, tzinfo=UTC)  # 10 March, 00:30 in New York
    early_on_10th = write(mia)
    clock.now = datetime(2025, 3, 12, 3, 59, tzinfo=UTC)  # 11 March, 23:59 in New York
    late_on_11th = write(mia)

    with timezone.override(new_york):
        assert ids(AuditFilter(since=date(2025, 3, 10))) == [late_on_11th.id, early_on_10th.id]
        assert ids(AuditFilter(until=date(2025, 3, 9))) == [late_on_9th.id]
        on_10th = AuditFilter(since=date(2025, 3, 10), until=date(2025, 3, 10))
        assert ids(on_10th) == [early_on_10th.id]
    with timezone.override(UTC):
        assert ids(AuditFilter(until=date(2025, 3, 9))) == []


def test_combined_filters_all_apply(clock, mia, noah):
    target = write(mia, SUP_1, STATUS | PRIORITY, settle=["failed"])
    write(mia, SUP_1, STATUS | PRIORITY, settle=["succeeded"])  # other outcome
    write(noah, SUP_1, STATUS | PRIORITY, settle=["failed"])  # other actor
    other_ticket = write(mia, SUP_2, STATUS | PRIORITY, settle=["failed"])
    write(mia, SUP_1, STATUS, settle=["failed"])  # other field
    clock.tick(days=1)
    tomorrow = write(mia, SUP_1, STATUS | PRIORITY, settle=["failed"])
    today = date(2025, 3, 10)

    combined = AuditFilter(
        actor="mia", ticket="SUP-1", field="priorityId", outcome="failed", since=today, until=today
    )
    assert ids(combined) == [target.id]
    assert ids(AuditFilter(actor="mia", field="priorityId", outcome="failed")) == [
        tomorrow.id,
        other_ticket.id,
        target.id,
    ]
    assert (
        ids(AuditFilter(actor="mia", ticket="sup-1", outcome="failed", until=today))
        == [
            e.id
            for e in AuditEntry.objects.filter(ticket_id="tk_sup_1", actor_username="mia")
            if e.pk not in (tomorrow.pk,) and e.outcomes.get().outcome == "failed"
        ][::-1]
    )
    assert ids(combined, team_ids=frozenset({"t_bil"})) == []


def test_team_ids_limit_every_query_to_those_teams(clock, mia):
    sup = write(mia, SUP_1, settle=["failed"])
    bil = write(mia, BIL_7, settle=["failed"])

    assert ids(team_ids=frozenset({"t_bil"})) == [bil.id]
    assert ids(team_ids=frozenset()) == []
    assert ids(AuditFilter(outcome="failed"), team_ids=frozenset({"t_sup"})) == [sup.id]
    assert ids(AuditFilter(field="statusId"), team_ids=frozenset({"t_sup"})) == [sup.id]
    counts = audit_daily_counts(filters=AuditFilter(), team_ids=frozenset({"t_sup"}))
    assert sum(day.count for day in counts) == 1
    with pytest.raises(AuditEntry.DoesNotExist):
        audit_entry_detail(number=sup.number, team_ids=frozenset({"t_bil"}))


# Keyset pages


def test_cursor_pages_have_no_duplicates_and_no_gaps_while_entries_arrive(clock, mia):
    written = []
    for index in range(12):
        written.append(write(mia, settle=["succeeded"] if index % 2 else ()))
        if index % 3:
            clock.tick(seconds=1)  # some share a created_at: the id breaks the tie
    assert ids(limit=100) == [entry.id for entry in reversed(written)]

    for filters in (AuditFilter(), AuditFilter(field="statusId"), AuditFilter(outcome="pending")):
        wanted = ids(filters, limit=100)
        seen, cursor = [], None
        while True:
            page = audit_page(filters=filters, cursor=cursor, limit=5)
            seen += [entry.id for entry in page.entries]
            clock.tick(seconds=1)
            write(mia)  # newer than every page: never shows up in later pages
            if not page.next_cursor:
                break
            cursor = Cursor.decode(page.next_cursor)
        assert seen == wanted


def test_cursor_round_trips_and_garbage_decodes_to_none(clock, mia):
    entry = write(mia)
    cursor = Cursor.after(entry)
    assert Cursor.decode(cursor.encode()) == cursor
    for garbage in (
        "",
        "zzz",
        "!!!",
        "bm90IGEgY3Vyc29y",
        "MS4y.3",
        "LTEuLTE",
        "OTk5OTk5OTk5OTk5OTk5OTk5OTkuMQ",
    ):
        assert Cursor.decode(garbage) is None


def test_pages_and_counts_match_a_plain_scan_for_every_filter_on_seeded_data():
    call_command("seed_audit", count=400, batch=97, days=20, seed=3, force=True, stdout=StringIO())
    actor = AuditEntry.objects.first().actor
    write(actor, settle=["unknown"])  # real writes continue the seeded chain
    write(actor)
    undone = AuditEntry.objects.filter(action="ticket.update").order_by("id")[100]
    write(actor, revert_of=undone.id, reason="Undo: a Duplicate after all", settle=["failed"])
    assert verify_chain().ok
    with timezone.override(zoneinfo.ZoneInfo("Asia/Kolkata")):  # days start at 18:30 UTC
        _check_against_a_plain_scan()


def _check_against_a_plain_scan():
    entries = list(AuditEntry.objects.all())
    latest = {o.entry_id: o.outcome for o in AuditOutcome.objects.order_by("id")}
    current = {e.id: latest.get(e.id, e.outcome) for e in entries}
    assert set(current.values()) == set(Outcome.values)
    days = sorted({timezone.localtime(e.created_at).date() for e in entries})
    some = entries[len(entries) // 2]
    team = frozenset({some.team_id})
    logged = {e.actor_username for e in entries if e.actor_username}
    reverted = {e.revert_of for e in entries if e.revert_of}
    assert reverted and any(e.reason for e in entries)
    undone = timezone.localtime(next(e for e in entries if e.id in reverted).created_at).date()
    one_day = timedelta(days=1)
    grid = [
        AuditFilter(),
        AuditFilter(actor=some.actor_username),
        AuditFilter(ticket=some.ticket_identifier.lower()),
        AuditFilter(field="statusId"),
        AuditFilter(field="description", outcome="succeeded"),
        AuditFilter(actor=some.actor_username, field="priorityId", since=days[3], until=days[12]),
        AuditFilter(since=days[5], until=days[5]),
        AuditFilter(ticket=some.ticket_id, field="statusId", outcome="succeeded"),
        *(AuditFilter(outcome=outcome) for outcome in Outcome.values),
        *(AuditFilter(outcome=o, actor=some.actor_username) for o in Outcome.values),
        AuditFilter(outcome="failed", since=days[2], until=days[15]),
        # Partial, case-insensitive actors: one name exactly, or every name holding it.
        AuditFilter(actor=some.actor_username.upper()),
        AuditFilter(actor="A"),
        AuditFilter(actor="an", field="statusId"),
        AuditFilter(actor="e", outcome="failed"),
        AuditFilter(actor="o", outcome="pending", since=days[4]),
        AuditFilter(actor="a", ticket=some.ticket_identifier.lower()),
        AuditFilter(revert="reverts"),
        AuditFilter(revert="reverted"),
        AuditFilter(revert="reverts", field="statusId", outcome="failed"),
        AuditFilter(revert="reverted", actor="a", since=days[1]),
        # Three days: read from the range's entries, not by id (queries._reverted).
        AuditFilter(revert="reverted", since=undone - one_day, until=undone + one_day),
        AuditFilter(reason="DUPLICATE"),
        AuditFilter(reason="escalation", actor="e"),
        AuditFilter(reason="team", outcome="succeeded", field="priorityId"),
        AuditFilter(reason="undo", revert="reverts"),
    ]

    def actors(text):
        exact = {name for name in logged if name.casefold() == text.casefold()}
        return exact or {name for name in logged if text.casefold() in name.casefold()}

    def expected(filters, team_ids=None):
        rows = [
            e
            for e in entries
            if (not filters.actor or e.actor_username in actors(filters.actor))
            and (filters.revert != "reverts" or e.revert_of is not None)
            and (filters.revert != "reverted" or e.id in reverted)
            and (not filters.reason or filters.reason.casefold() in (e.reason or "").casefold())
            and (not filters.ticket or filters.ticket in (e.ticket_id, e.ticket_identifier.lower()))
            and (not filters.field or filters.field in e.changes)
            and (not filters.outcome or current[e.id] == filters.outcome)
            and (not filters.since or timezone.localtime(e.created_at).date() >= filters.since)
            and (not filters.until or timezone.localtime(e.created_at).date() <= filters.until)
            and (team_ids is None or e.team_id in team_ids)
        ]
        return sorted(rows, key=lambda e: (e.created_at, e.id), reverse=True)

    for filters in grid:
        for team_ids in (None, team):
            want = expected(filters, team_ids)
            got = walk(filters, limit=7, team_ids=team_ids)
            assert [e.id for e in got] == [e.id for e in want], filters
            assert [e.current_outcome for e in got] == [current[e.id] for e in want]
            bounded = replace(
                filters, since=filters.since or days[0], until=filters.until or days[-1]
            )
            counts = audit_daily_counts(filters=bounded, team_ids=team_ids)
            # The chart counts changes: ticket edits, not exports.
            per_day = Counter(
                timezone.localtime(e.created_at).date() for e in want if e.action == "ticket.update"
            )
            assert {c.day: c.count for c in counts if c.count} == dict(per_day), filters


# Counts per day


def test_daily_counts_cover_the_last_30_days_by_default(clock, mia):
    clock.now = datetime(2025, 3, 10, 9, tzinfo=UTC)
    write(mia)
    write(mia)
    clock.now = datetime(2025, 3, 8, 9, tzinfo=UTC)
    write(mia)
    clock.now = datetime(2025, 1, 1, 9, tzinfo=UTC)  # outside the default range
    write(mia)
    clock.now = datetime(2025, 3, 10, 18, tzinfo=UTC)

    counts = audit_daily_counts(filters=AuditFilter())

    assert len(counts) == 30
    assert (counts[0].day, counts[-1].day) == (date(2025, 2, 9), date(2025, 3, 10))
    assert [(c.day, c.count) for c in counts if c.count] == [
        (date(2025, 3, 8), 1),
        (date(2025, 3, 10), 2),
    ]


def test_daily_counts_follow_the_filtered_range_capped_at_366_days(clock, mia):
    write(mia, changes=PRIORITY)
    write(mia, changes=STATUS)

    week = AuditFilter(field="priorityId", since=date(2025, 3, 4), until=date(2025, 3, 10))
    assert [c.count for c in audit_daily_counts(filters=week)] == [0, 0, 0, 0, 0, 0, 1]
    years = audit_daily_counts(filters=AuditFilter(since=date(2020, 1, 1)))
    assert len(years) == 366
    assert years[-1] == audit.DayCount(date(2025, 3, 10), 2)


# One entry


def test_detail_has_a_word_diff_for_long_text_and_indented_json(clock, mia):
    before = "The printer on the third floor is on fire.\nNobody has called facilities yet."
    after = "The printer on the third floor was on fire.\nFacilities put it out this morning."
    entry = write(
        mia,
        changes={
            "description": {"before": before, "after": after},
            "metadata": {"before": {"plan": "pro"}, "after": {"plan": "pro", "seats": 5}},
            "isPrivate": {"before": False, "after": True},
            "title": {"before": "Printer", "after": "<b>Printer</b>"},
        },
        settle=["unknown", "succeeded"],
    )

    detail = audit_entry_detail(number=entry.number)

    changes = {change.name: change for change in detail.changes}
    description = changes["description"]
    assert description.label == "Description"
    assert ("del", "is") in description.diff
    assert ("ins", "was") in description.diff
    assert "".join(t for op, t in description.diff if op != "ins") == before
    assert "".join(t for op, t in description.diff if op != "del") == after
    assert changes["metadata"].code
    assert changes["metadata"].after == '{\n  "plan": "pro",\n  "seats": 5\n}'
    assert (changes["isPrivate"].before, changes["isPrivate"].after) == ("false", "true")
    assert changes["title"].diff == []  # short: shown as before and after
    assert changes["title"].after == "<b>Printer</b>"  # the template escapes it
    assert detail.request_body.startswith('{\n  "description": ')
    assert [o.outcome for o in detail.outcomes] == ["unknown", "succeeded"]
    assert detail.current_outcome == "succeeded"


# Export


def _export(actor, filters=None) -> list[list[str]]:
    filters = filters or AuditFilter()
    return list(
        csv.reader(
            StringIO(
                complete_export("".join(audit_export(actor=actor, filters=filters, meta=META)))
            )
        )
    )


def test_export_has_the_header_and_every_row_of_the_filter_and_is_recorded(clock, mia, monkeypatch):
    monkeypatch.setattr(audit.export, "EXPORT_CHUNK", 3)  # several keyset chunks
    written = [write(mia, settle=["failed"]) for _ in range(7)]
    write(mia, settle=["succeeded"])
    record_outcome(entry=write(mia), outcome="failed", status_code=422, message="bad dueDate")
    failed = [written[i].id for i in reversed(range(7))]

    rows = _export(mia, AuditFilter(outcome="failed"))

    assert rows[0] == list(audit.EXPORT_COLUMNS)
    body = [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]
    assert [int(row["chain_id"]) for row in body][1:] == failed
    newest = body[0]
    assert (newest["current_outcome"], newest["status_code"], newest["message"]) == (
        "failed",
        "422",
        "bad dueDate",
    )
    assert newest["created_at_utc"] == "2025-03-10T12:00:00.000000+00:00"
    assert newest["fields_changed"] == "statusId"
    assert newest["actor_email"] == "mia@example.com"
    assert newest["client_ip"] == "192.0.2.10"
    export = AuditEntry.objects.filter(action="audit.export").get()
    # Written pending, settled once the whole file was streamed.
    assert (export.outcome, export.actor_username) == ("pending", "mia")
    assert export.outcomes.get().outcome == "succeeded"
    assert export.request_body == {"filters": {"outcome": "failed"}, "format": "csv"}
    assert (export.request_id, export.user_agent) == ("req-1", "pytest")
    assert verify_chain().ok


def test_export_neutralises_cells_a_spreadsheet_would_run(clock, django_user_model):
    evil = django_user_model.objects.create_user("=cmd|' /C calc'!A0", email="@evil.example")
    ticket = {
        "id": "tk_1",
        "ticketIdentifier": "-SUP-1",
        "title": '=HYPERLINK("x")',
        "teamId": "+t",
    }
    write(
        evil,
        ticket,
        {"=SUM(A1)": {"before": "\tx", "after": "=1+1"}, "@x": {"before": "", "after": "@me"}},
        outcome="conflict",
        message="\r=evil",
    )

    header, row = _export(evil)[:2]
    cells = dict(zip(header, row, strict=True))

    assert cells["actor"] == "'=cmd|' /C calc'!A0"
    assert cells["actor_email"] == "'@evil.example"
    assert cells["ticket_identifier"] == "'-SUP-1"
    assert cells["ticket_title"] == '\'=HYPERLINK("x")'
    assert cells["team_id"] == "'+t"
    assert cells["fields_changed"] == "'=SUM(A1), @x"
    assert cells["message"] == "'\r=evil"
    assert cells["changes_json"].startswith("{")
    for value in row:
        assert not value.startswith(audit.FORMULA_STARTS), value


# The filter form


def test_filter_form_offers_the_27_patch_fields_and_rejects_bad_values():
    form = AuditFilterForm()
    choices = form.fields["field"].choices
    assert choices[0] == ("", "Any field")
    assert choices[1:] == [(f.name, f.label) for f in schema.fields()]
    assert len(choices) == 28

    bad = AuditFilterForm(
        {"field": "apiKey", "outcome": "maybe", "since": "2025-13-01", "until": "yesterday"}
    )
    assert not bad.is_valid()
    assert set(bad.errors) == {"field", "outcome", "since", "until"}
    backwards = AuditFilterForm({"since": "2025-03-10", "until": "2025-03-01"})
    assert not backwards.is_valid()
    assert "before the start" in backwards.errors["until"][0]

    good = AuditFilterForm(
        {"actor": " mia ", "ticket": "sup-1", "field": "title", "since": "2025-03-01"}
    )
    assert good.is_valid()
    assert good.filters() == AuditFilter(
        actor="mia", ticket="sup-1", field="title", since=date(2025, 3, 1)
    )
    assert good.filters().as_params() == {
        "actor": "mia",
        "ticket": "sup-1",
        "field": "title",
        "since": "2025-03-01",
    }


def test_daily_counts_reuse_closed_days_and_count_today_live(clock, mia, django_assert_num_queries):
    # A reason search is counted from indexes (the counts table cannot answer it): cached.
    reason = AuditFilter(reason="fire")
    clock.now = datetime(2025, 3, 9, 9, tzinfo=UTC)
    write(mia, reason="Fire drill")
    clock.now = datetime(2025, 3, 10, 9, tzinfo=UTC)
    write(mia, reason="Fire drill")
    assert [c.count for c in audit_daily_counts(filters=reason)][-2:] == [1, 1]

    clock.tick(minutes=5)
    write(mia, reason="Fire again")
    # Today is counted; the 29 days before come from the cache, after one probe of the
    # rows written since they were counted (none of which is dated before today), and
    # one look at the actions in the log (on PostgreSQL in a savepoint that turns off
    # JIT and parallel workers: three statements more).
    with django_assert_num_queries(3 if connection.vendor == "sqlite" else 6):
        counts = audit_daily_counts(filters=reason)
    assert [c.count for c in counts][-2:] == [1, 2]


def test_a_page_that_holds_every_match_counts_the_chart_and_it_stays_exact(clock, mia, monkeypatch):
    # Days before today (2025-03-10): a rare reason, a match made by an export, and others.
    clock.now = datetime(2025, 3, 6, 9, tzinfo=UTC)
    write(mia, BIL_7, reason="Zebra crossing")
    clock.now = datetime(2025, 3, 8, 9, tzinfo=UTC)
    write(mia, reason="zebra again")
    write(mia, reason="Horse")
    record_attempt(
        action="audit.export",
        actor=mia,
        ticket=None,
        changes={},
        request_body={},
        outcome=Outcome.SUCCEEDED,
        meta=META,
        reason="zebra export",
    )
    clock.now = datetime(2025, 3, 10, 12, tzinfo=UTC)
    filters = AuditFilter(reason="zebra", since=date(2025, 3, 1), until=date(2025, 3, 9))
    counted = []
    original = queries._count_days
    monkeypatch.setattr(
        queries, "_count_days", lambda days, *a: counted.append(days) or original(days, *a)
    )

    def chart(team_ids=None):
        days = audit_daily_counts(filters=filters, team_ids=team_ids)
        return {c.day: c.count for c in days if c.count}

    assert len(audit_page(filters=filters).entries) == 3
    assert chart() == {date(2025, 3, 6): 1, date(2025, 3, 8): 1}  # changes, not the export
    assert counted == [[]]  # every day came from the page
    # Another scope is another chart: counted, and without the other team's entry.
    assert len(audit_page(filters=filters, team_ids=frozenset({"t_sup"})).entries) == 1
    assert chart(frozenset({"t_sup"})) == {date(2025, 3, 8): 1}
    assert chart(frozenset({"t_bil"})) == {date(2025, 3, 6): 1}
    assert counted[-1] == [date(2025, 3, 1) + timedelta(days=n) for n in range(9)]
    # Written after the page, dated in its days (a clock behind): the chart counts again.
    clock.now = datetime(2025, 3, 7, 9, tzinfo=UTC)
    write(mia, reason="ZEBRA late")
    clock.now = datetime(2025, 3, 10, 12, tzinfo=UTC)
    assert chart() == {date(2025, 3, 6): 1, date(2025, 3, 7): 1, date(2025, 3, 8): 1}
    # A page with more to come fills nothing.
    cache.clear()
    assert audit_page(filters=filters, limit=2).next_cursor
    chart()
    assert len(counted[-1]) == 9


def test_daily_counts_the_counts_table_answers_take_one_query(
    clock, mia, django_assert_num_queries
):
    clock.now = datetime(2025, 3, 9, 9, tzinfo=UTC)
    write(mia, settle=["succeeded"])
    clock.now = datetime(2025, 3, 10, 9, tzinfo=UTC)
    write(mia, changes=PRIORITY, settle=["failed"])
    for filters, last_two in (
        (AuditFilter(), [1, 1]),
        (AuditFilter(outcome="failed"), [0, 1]),
        (AuditFilter(field="statusId", source="dashboard"), [1, 0]),
        (AuditFilter(since=date(2024, 3, 1)), [1, 1]),
    ):
        with django_assert_num_queries(1 if connection.vendor == "sqlite" else 4):
            counts = audit_daily_counts(filters=filters)
        assert [c.count for c in counts][-2:] == last_two, filters


# Synthetic volume


def test_seed_audit_continues_the_chain_with_realistic_entries(mia):
    real = write(mia)
    call_command("seed_audit", count=300, batch=128, days=90, force=True, stdout=StringIO())

    assert verify_chain().ok
    ids = [
        *AuditEntry.objects.values_list("id", flat=True),
        *AuditOutcome.objects.values_list("id", flat=True),
    ]
    assert sorted(ids) == list(range(1, len(ids) + 1))
    seeded = list(AuditEntry.objects.filter(id__gt=real.id).order_by("id"))
    assert len(seeded) == 300
    times = [entry.created_at for entry in seeded]
    assert times == sorted(times)
    assert timezone.now() - timedelta(days=91) < times[0] < times[-1] < timezone.now()
    assert len({entry.actor_username for entry in seeded}) == 12
    assert len({entry.team_id for entry in seeded if entry.team_id}) == 3
    fields = set(schema.field_map())
    assert all(set(entry.changes) <= fields for entry in seeded)
    current = Counter(e.current_outcome for e in AuditEntry.objects.with_current_outcome())
    assert current["succeeded"] > 250
