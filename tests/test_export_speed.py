"""The export's fast path (tickets/audit/export.py) writes the file the plain one did: its
change words and JSON against words.change_lines and json, a varied log against rows
built from model instances the way the export used to build them, and its shape: a few
queries per chunk whatever the number of rows, pieces of bounded size. The speed itself
is measured by bench/export_speed.py."""

import csv
import json
from datetime import UTC, datetime, timedelta
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import dateformat, timezone
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.util import complete_export, write_audit
from tickets.audit import (
    EXPORT_COLUMNS,
    AuditFilter,
    RequestMeta,
    audit_export,
    record_attempt,
    record_outcome,
    revert_numbers,
    words,
)
from tickets.audit import export as export_module
from tickets.audit.chain import _iso
from tickets.audit.export import CHANGE_TEXT, _describe, _dumps, _loads, csv_cell
from tickets.audit.queries import _in_form_order
from tickets.audit.words import change_lines
from tickets.models import AuditEntry, AuditOutcome, Outcome

pytestmark = pytest.mark.django_db

META = RequestMeta(request_id="req-1", client_ip="192.0.2.10", user_agent="pytest")
TICKET = {"id": "tk_1", "ticketIdentifier": "SUP-1", "title": "Printer", "teamId": "t_sup"}
LONG = "word " * 60 + "\n\n  tail\twith   spaces"
CUSTOM_NEW = {
    "before": [{"customFieldId": "cf1", "data": [{"value": "free"}]}],
    "after": [{"customFieldId": "cf1", "data": [{"value": "pro"}]}],
    "fields": {
        "cf1": {"name": "Plan", "before": "free", "after": "pro"},
        "cf2": {"name": "", "after": ["x", "y"]},
        "cf3": "not a dict",
    },
}
CUSTOM_OLD = {
    "before": [{"customFieldId": "CF1", "data": [{"value": "yes"}]}],
    "after": [{"customFieldId": "CF2", "data": [{"value": "no"}, {"value": 3}]}],
}

# Every kind of change the log holds, and some it should not but might.
CHANGES = [
    {},
    {"statusId": {"before": "st_open", "after": "st_closed"}},
    {
        "statusId": {
            "before": "st_1",
            "after": "st_2",
            "before_label": "Open",
            "after_label": "Done",
        }
    },
    {"priorityId": {"before": None, "after": "pr_high", "after_label": ""}},
    {"priorityId": {"before": "a", "after": "b", "before_label": 5, "after_label": None}},
    {"dueDate": {"after": "2026-12-24T09:30:00Z"}},  # write-only: no "before"
    {"dueDate": {"before": "2026-12-24T09:30:59.999Z", "after": "2026-12-24T09:30:00+05:30"}},
    {"closedAt": {"before": "2026-12-24T09:30:00", "after": "soon"}},  # no offset; no date
    {"dueDate": {"before": "0001-01-01T00:30:00+01:00", "after": "9999-12-31T23:59:00-05:00"}},
    {"dueDate": {"before": "0099-03-01T10:00:00Z", "after": ""}},
    {"dueDate": {"before": 12, "after": ["2026-01-01T00:00:00Z"]}},
    {"isPrivate": {"before": False, "after": True}},
    {"proactiveChannels": {"before": ["email", "slack"], "after": []}},
    {"attachmentUrls": {"before": [1, "a"], "after": [{"url": "x"}]}},
    {"metadata": {"before": {"plan": "free"}, "after": {"seats": 3, "plan": "pro", "é": "ü"}}},
    {"metadata": {"before": {}, "after": 1.5}},
    {"description": {"before": LONG, "after": LONG.upper()}},
    {"title": "only the new value"},
    {"zzz": {"before": 1}, "title": {"before": "a", "after": "b"}, "aaa": {}, "statusId": None},
    {"customFieldValues": CUSTOM_NEW},
    {"customFieldValues": CUSTOM_OLD},
    {"customFieldValues": {"before": [], "after": []}},
    {"customFieldValues": "raw"},
    {"=SUM(A1)": {"before": "\tx", "after": "=1+1"}, "@x": {"before": "", "after": "@me"}},
    {"title": {"before": "→ ünïcødé 🎉", "after": "\u00a0nbsp"}},
]


@pytest.mark.parametrize("changes", CHANGES)
def test_change_cells_are_the_fields_in_form_order_and_change_lines(changes):
    expected = (
        ", ".join(_in_form_order(changes)),
        "; ".join(change_lines(changes, limit=CHANGE_TEXT, tz=UTC)),
    )
    assert _describe(changes) == expected


@pytest.mark.parametrize("changes", [[], ["statusId"], ["title", "statusId"], "ab"])
def test_change_cells_of_changes_that_are_no_dict(changes):
    assert _describe(changes) == (", ".join(_in_form_order(changes)), "")


@pytest.mark.parametrize("zone", [None, UTC, ZoneInfo("Asia/Kolkata"), ZoneInfo("Europe/Paris")])
@settings(max_examples=200, deadline=None)
@given(moment=st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)))
def test_a_date_time_in_words_is_djangos_dateformat(zone, moment):
    """words._moment writes dateformat's "j M Y H:i" (" T" with a zone) out by hand."""
    value = moment.replace(tzinfo=UTC).isoformat()
    shown = moment.replace(tzinfo=UTC).astimezone(zone or ZoneInfo("America/St_Johns"))
    with timezone.override("America/St_Johns"):
        expected = dateformat.format(shown, "j M Y H:i" + (" T" if zone else ""))
        if zone and expected.endswith(" "):
            # In the hour a clock goes back, dateformat names no zone; the words still do.
            expected += shown.tzname()
        assert words._moment(value, zone) == expected


@pytest.mark.parametrize(
    "value",
    [
        {},
        {"b": 1, "a": [1, 2.5, -0.0, 1e300, None, True, False]},
        {"é": "ü 🎉", "quote": 'a "b" \\ c', "control": "\x01\n\t", "nested": {"z": {}, "y": []}},
        [{"b": 1, "a": 2}],
        "text",
        12345678901234567890,
    ],
)
def test_json_helpers_are_json_loads_and_dumps(value):
    text = json.dumps(value)  # as Django writes it: ASCII, keys in the order given
    assert _loads(text) == json.loads(text)
    assert _dumps(_loads(text)) == json.dumps(value, ensure_ascii=False, sort_keys=True)


@pytest.fixture
def log(django_user_model, monkeypatch):
    """A varied log: every change of CHANGES, reverts, entries with no outcome row, one or
    two, formula text, a batch, a deleted user's entries."""
    start = timezone.now() - timedelta(days=3)
    moments = iter(start + timedelta(minutes=n) for n in range(1000))
    monkeypatch.setattr(timezone, "now", lambda: next(moments))
    mia = django_user_model.objects.create_user("mia", email="mia@example.com")
    evil = django_user_model.objects.create_user("=cmd", email="@evil.example")
    written = []
    for n, changes in enumerate(CHANGES):
        body = {name: c.get("after") if isinstance(c, dict) else c for name, c in changes.items()}
        entry = record_attempt(
            action="ticket.update",
            actor=evil if n % 3 == 0 else mia,
            ticket={**TICKET, "title": ["-minus", "ok", "+plus"][n % 3], "teamName": "Support"},
            changes=changes,
            request_body=body,
            meta=META,
            reason="@why" if n % 4 == 0 else "",
            batch_id="0b5e2d8e-0000-4000-8000-000000000000" if n % 5 == 0 else None,
        )
        written.append(entry)
        if n % 2 == 0:
            record_outcome(entry=entry, outcome=Outcome.UNKNOWN, message="=timeout")
        if n % 4 != 1:
            record_outcome(
                entry=entry,
                outcome=Outcome.SUCCEEDED,
                status_code=200,
                upstream_updated_at="2026-11-28T10:00:00.000Z",
                duration_ms=n,
            )
    revert = write_audit(
        mia,
        TICKET,
        {"title": {"before": "b", "after": "a"}},
        meta=META,
        revert_of=written[1].id,
        settle=["failed"],
    )
    write_audit(
        mia,
        TICKET,
        {"title": {"before": "a", "after": "b"}},
        meta=META,
        revert_of=revert.id,
        outcome=Outcome.CONFLICT,
        message="-changed",
    )
    mia.delete()
    return written


def _export(actor, filters=None) -> str:
    """The file without its trailer (which must say it is complete)."""
    text = "".join(audit_export(actor=actor, filters=filters or AuditFilter(), meta=META))
    return complete_export(text)


def _reference(rows: list[AuditEntry]) -> str:
    """The file as the export wrote it before the fast path: from model instances, a
    line at a time, through words.change_lines."""
    out = StringIO()
    writer = csv.writer(out)
    writer.writerow(EXPORT_COLUMNS)
    numbers = revert_numbers(rows)
    for entry in rows:
        outcome = AuditOutcome.objects.filter(entry=entry).order_by("id").last()
        row = [
            entry.number,
            _iso(entry.created_at),
            entry.actor_username,
            entry.actor_email,
            entry.action,
            entry.ticket_id,
            entry.ticket_identifier,
            entry.ticket_title,
            entry.team_id,
            entry.team_name or "",
            ", ".join(_in_form_order(entry.changes)),
            json.dumps(entry.changes, ensure_ascii=False, sort_keys=True),
            "; ".join(change_lines(entry.changes, limit=CHANGE_TEXT, tz=UTC)),
            entry.reason or "",
            numbers.get(entry.revert_of, "") if entry.revert_of else "",
            json.dumps(entry.request_body, ensure_ascii=False, sort_keys=True),
            entry.request_id,
            entry.client_ip or "",
            entry.user_agent,
            outcome.outcome if outcome else entry.outcome,
            outcome.status_code if outcome and outcome.status_code is not None else "",
            outcome.message if outcome else entry.message,
            outcome.upstream_updated_at if outcome else "",
            outcome.duration_ms if outcome and outcome.duration_ms is not None else "",
            entry.hash,
            entry.id,
            entry.batch_id or "",
        ]
        writer.writerow([csv_cell(value) for value in row])
    return out.getvalue()


@pytest.mark.parametrize("chunk", [1, 3, 5000])
def test_export_is_the_file_the_model_instances_give(log, auditor, monkeypatch, chunk):
    monkeypatch.setattr(export_module, "EXPORT_CHUNK", chunk)
    text = _export(auditor)
    export = AuditEntry.objects.get(action="audit.export")
    rows = list(AuditEntry.objects.filter(id__lt=export.id).newest_first())
    assert len(rows) > 20
    assert text == _reference(rows)


@pytest.mark.parametrize(
    "filters",
    [
        AuditFilter(outcome="succeeded"),
        AuditFilter(revert="reverted"),
        AuditFilter(field="dueDate"),
        AuditFilter(ticket="SUP-1", reason="why"),
    ],
)
def test_a_filtered_export_is_the_same_file_too(log, auditor, monkeypatch, filters):
    monkeypatch.setattr(export_module, "EXPORT_CHUNK", 2)
    text = _export(auditor, filters)
    numbers = [int(row[0]) for row in csv.reader(StringIO(text)) if row[0].isdigit()]
    assert numbers
    rows = sorted(
        AuditEntry.objects.filter(number__in=numbers),
        key=lambda entry: (entry.created_at, entry.id),
        reverse=True,
    )
    assert text == _reference(rows)


def test_export_reads_a_chunk_in_a_few_queries_whatever_its_rows(auditor, monkeypatch):
    def queries(n: int) -> int:
        for _ in range(n):
            entry = write_audit(
                auditor,
                TICKET,
                {"title": {"before": "a", "after": "b"}},
                meta=META,
                settle=["unknown", "succeeded"],
            )
            write_audit(
                auditor,
                TICKET,
                {"title": {"before": "b", "after": "a"}},
                meta=META,
                revert_of=entry.id,
            )
        lines = audit_export(actor=auditor, filters=AuditFilter(), meta=META)
        with CaptureQueriesContext(connection) as context:
            for _ in lines:
                pass
        return len(context)

    monkeypatch.setattr(export_module, "EXPORT_CHUNK", 1000)
    assert queries(5) == queries(50)  # labels, outcomes and reverted numbers: no N+1


def test_export_leaves_in_pieces_of_bounded_size(auditor, monkeypatch):
    for _ in range(60):
        write_audit(auditor, TICKET, {"description": {"before": LONG, "after": LONG}}, meta=META)
    monkeypatch.setattr(export_module, "PIECE_CHARS", 2000)
    pieces = list(audit_export(actor=auditor, filters=AuditFilter(), meta=META))
    longest_line = max(len(line) for line in "".join(pieces).splitlines(keepends=True))
    assert 60 / 10 < len(pieces) < 60  # rows go out together, not one by one
    assert max(len(piece) for piece in pieces) < 2000 + longest_line


@pytest.mark.parametrize("chunk", [1, 5000])
def test_an_export_of_the_reverted_holds_each_reverted_entry_once(log, auditor, monkeypatch, chunk):
    """Read as the page reads them (by id, queries._reverted_page), chunk after chunk, and
    within the scope."""
    monkeypatch.setattr(export_module, "EXPORT_CHUNK", chunk)
    reverted = AuditEntry.objects.filter(
        id__in=AuditEntry.objects.exclude(revert_of=None).values("revert_of")
    ).newest_first()
    assert reverted.count() == 2

    def numbers(team_ids):
        filters = AuditFilter(revert="reverted")
        text = complete_export(
            "".join(audit_export(actor=auditor, filters=filters, team_ids=team_ids, meta=META))
        )
        return [int(row[0]) for row in csv.reader(StringIO(text)) if row[0].isdigit()]

    assert numbers(None) == [entry.number for entry in reverted]
    assert numbers(frozenset({TICKET["teamId"]})) == [entry.number for entry in reverted]
    assert numbers(frozenset({"t_other"})) == []
