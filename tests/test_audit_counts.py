"""AuditCount, the counts the audit chart sums (migration 0016): kept by triggers, they must
always equal what counting the rows gives, whoever writes the rows and however they
settle, and the chart must equal counting the rows for every filter, scope and zone."""

import importlib
import threading
import zoneinfo
from collections import Counter
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection, connections, transaction
from django.utils import timezone

from tests.util import FrozenClock, write_audit
from tickets.audit import (
    AuditFilter,
    RequestMeta,
    append_many,
    audit_daily_counts,
    entry_row,
    queries,
    record_attempt,
    record_outcome,
)
from tickets.models import AuditCount, AuditEntry, AuditField, AuditOutcome, Outcome

META = RequestMeta(request_id="req-1", client_ip="192.0.2.10", user_agent="pytest")
SUP_1 = {"id": "tk_sup_1", "ticketIdentifier": "SUP-1", "title": "Printer", "teamId": "t_sup"}
BIL_7 = {"id": "tk_bil_7", "ticketIdentifier": "BIL-7", "title": "Refund", "teamId": "t_bil"}
STATUS = {"statusId": {"before": "st_open", "after": "st_closed"}}
BOTH = STATUS | {"priorityId": {"before": None, "after": "pr_high"}}
ZONES = ("UTC", "Asia/Kathmandu", "America/St_Johns")  # +5:45 and -3:30: quarter hours


def bucket(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    return moment.replace(minute=moment.minute // 15 * 15, second=0, microsecond=0)


def current_outcomes() -> dict[int, str]:
    latest = dict(AuditOutcome.objects.order_by("id").values_list("entry_id", "outcome"))
    return {e.id: latest.get(e.id, e.outcome) for e in AuditEntry.objects.all()}


def counted_from_rows() -> Counter:
    """What AuditCount must hold, counted from the audit rows themselves."""
    current = current_outcomes()
    fields = {}
    for entry_id, name in AuditField.objects.values_list("entry_id", "field"):
        fields.setdefault(entry_id, []).append(name)
    want = Counter()
    for e in AuditEntry.objects.all():
        for field in ("", *fields.get(e.id, ())):
            for outcome in (current[e.id], ""):
                want[(field, bucket(e.created_at), e.team_id, e.action, outcome)] += 1
    return want


def counts_table() -> Counter:
    rows = AuditCount.objects.values_list("field", "bucket", "team_id", "action", "outcome", "n")
    counts = Counter()
    for *key, n in rows:
        assert n > 0, key  # a count that reaches 0 is deleted
        counts[(key[0], bucket(key[1]), *key[2:])] = n
    return counts


def assert_exact():
    assert counts_table() == counted_from_rows()


@pytest.fixture
def clock(monkeypatch):
    # Noon three days ago: within every chart, and the seeded entries come later.
    noon = (datetime.now(UTC) - timedelta(days=3)).replace(hour=12, minute=0, second=0)
    return FrozenClock(monkeypatch, noon.replace(microsecond=0))


def write(actor, ticket=SUP_1, changes=STATUS, **kwargs):
    return write_audit(actor, ticket, changes, meta=META, **kwargs)


def every_kind_of_write(clock, actor):
    """Entries of each action and outcome, settled, settled again and reverted, at times
    on both sides of 15-minute and day boundaries."""
    first = write(actor, changes=BOTH, settle=["succeeded"])
    clock.tick(minutes=14, seconds=59)
    write(actor, ticket=BIL_7, settle=["failed"])
    clock.tick(seconds=2)  # the next quarter hour
    unknown = write(actor, changes=BOTH, settle=["unknown"])
    write(actor, outcome=Outcome.CONFLICT, message="changed meanwhile")
    write(actor, ticket=BIL_7, outcome=Outcome.DENIED)
    pending = write(actor, ticket=BIL_7, changes=BOTH)
    clock.tick(hours=11, minutes=50)  # past midnight in UTC
    record_outcome(entry=unknown, outcome="succeeded", current="unknown")
    record_attempt(
        action="audit.export",
        actor=actor,
        ticket=None,
        changes={},
        request_body={"filters": {}},
        outcome=Outcome.SUCCEEDED,
        meta=META,
    )
    record_attempt(
        action="ticket.external",
        actor=None,
        actor_label="thena-bot",
        ticket=BIL_7,
        changes=STATUS,
        request_body={"statusId": "st_closed"},
        outcome=Outcome.SUCCEEDED,
        meta=META,
    )
    write(actor, revert_of=first.id, reason="Undo", settle=["unknown", "failed"])
    return pending


# The table equals the rows


@pytest.mark.django_db
def test_counts_equal_the_rows_after_every_kind_of_write(clock, mia):
    assert AuditCount.objects.count() == 0
    pending = every_kind_of_write(clock, mia)
    assert_exact()
    assert AuditCount.objects.filter(outcome="pending", field="").get().n == 1
    record_outcome(entry=pending, outcome="failed")
    assert_exact()
    assert not AuditCount.objects.filter(outcome="pending").exists()  # 0: deleted


@pytest.mark.django_db
def test_counts_equal_the_rows_after_bulk_writes_and_seeding(clock, mia):
    unknown = write(mia, settle=["unknown"])
    entry = entry_row(
        action="ticket.update", actor=mia, ticket=SUP_1, changes=BOTH, request_body={}, meta=META
    )
    # One statement per table: an entry settled twice in the batch that wrote it, and an
    # earlier one settled again.
    append_many(
        [
            entry,
            AuditOutcome(entry=entry, outcome="unknown"),
            AuditOutcome(entry=entry, outcome="succeeded"),
            AuditOutcome(entry_id=unknown.id, outcome="failed"),
        ]
    )
    assert_exact()
    call_command("seed_audit", count=600, batch=97, days=3, seed=7, force=True, stdout=StringIO())
    assert_exact()
    outcomes = set(current_outcomes().values())
    assert outcomes == set(Outcome.values)


@pytest.mark.django_db
def test_the_migrations_backfill_counts_what_the_triggers_count(clock, mia):
    every_kind_of_write(clock, mia)
    call_command("seed_audit", count=300, batch=128, days=2, force=True, stdout=StringIO())
    kept = counts_table()
    migration = importlib.import_module("tickets.migrations.0016_audit_counts")
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM tickets_auditcount")
        cursor.execute(migration._backfill(connection.vendor))
    assert counts_table() == kept == counted_from_rows()


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_keep_the_counts_exact(django_user_model):
    users = [django_user_model.objects.create_user(f"writer{n}") for n in range(4)]
    errors = []

    def writer(user):
        try:
            for n in range(12):
                entry = write(
                    user, ticket=(SUP_1, BIL_7)[n % 2], changes=(STATUS, BOTH)[n % 3 == 0]
                )
                if n % 4:
                    record_outcome(entry=entry, outcome=("succeeded", "unknown", "failed")[n % 3])
        except Exception as error:  # reported below
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=writer, args=(user,)) for user in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert AuditEntry.objects.count() == 48
    assert_exact()


# The chart equals counting the rows


def varied_log(clock, actor, *, count: int, batch: int, days: int, seed: int) -> None:
    """Every kind of write, then seeded entries over `days` days, the clock back to now."""
    every_kind_of_write(clock, actor)
    call_command(
        "seed_audit", count=count, batch=batch, days=days, seed=seed, force=True, stdout=StringIO()
    )
    clock.now = datetime.now(UTC)


def chart_from_rows(filters: AuditFilter, team_ids=None) -> dict[date, int]:
    current = current_outcomes()
    fields = set(AuditField.objects.values_list("entry_id", "field"))
    names = set(filters.names()) if filters.actor else None
    reverted = set(AuditEntry.objects.exclude(revert_of=None).values_list("revert_of", flat=True))
    per_day = Counter()
    for e in AuditEntry.objects.filter(action__in=queries.CHANGES):
        day = timezone.localtime(e.created_at).date()
        if (
            (team_ids is None or e.team_id in team_ids)
            and (not filters.since or day >= filters.since)
            and (not filters.until or day <= filters.until)
            and (not filters.outcome or current[e.id] == filters.outcome)
            and (not filters.field or (e.id, filters.field) in fields)
            and (filters.source != "thena" or e.action == "ticket.external")
            and (filters.source != "dashboard" or e.action != "ticket.external")
            and (names is None or e.actor_username in names)
            and (not filters.ticket or filters.ticket in (e.ticket_id, e.ticket_identifier))
            and (filters.revert != "reverted" or e.id in reverted)
        ):
            per_day[day] += 1
    return dict(per_day)


def charted(filters: AuditFilter, team_ids=None) -> dict[date, int]:
    counts = audit_daily_counts(filters=filters, team_ids=team_ids)
    return {c.day: c.count for c in counts if c.count}


COUNTED_FILTERS = [
    AuditFilter(),
    *(AuditFilter(outcome=outcome) for outcome in Outcome.values),
    AuditFilter(field="statusId"),
    AuditFilter(field="priorityId", outcome="succeeded"),
    AuditFilter(field="statusId", outcome="pending"),
    AuditFilter(source="thena"),
    AuditFilter(source="dashboard", outcome="failed"),
    AuditFilter(source="thena", field="statusId"),
]


@pytest.mark.django_db
@pytest.mark.parametrize("zone", ZONES)
def test_the_chart_equals_counting_the_rows_for_every_filter_scope_and_zone(clock, mia, zone):
    varied_log(clock, mia, count=400, batch=111, days=6, seed=3)
    with timezone.override(zoneinfo.ZoneInfo(zone)):
        since = timezone.localdate() - timedelta(days=30)
        for filters in COUNTED_FILTERS:
            assert queries._counted(filters)
            filters = AuditFilter(**{**filters.__dict__, "since": since})
            for team_ids in (None, frozenset({"t_bil"}), frozenset()):
                assert charted(filters, team_ids) == chart_from_rows(filters, team_ids), (
                    filters,
                    team_ids,
                )


@pytest.mark.django_db
def test_the_chart_of_an_actor_who_matches_most_people_takes_the_others_from_the_total(
    django_user_model, monkeypatch
):
    call_command("seed_audit", count=500, batch=200, days=5, seed=4, force=True, stdout=StringIO())
    everyone = AuditFilter(actor="a")  # 10 of the 12 seeded names
    names = everyone.names()
    assert 6 < len(names) < 12
    counted = []
    original = queries._count_days
    monkeypatch.setattr(
        queries, "_count_days", lambda *a, **k: counted.append(a[1]) or original(*a, **k)
    )
    assert charted(everyone) == chart_from_rows(everyone)
    # The others were counted (fewer names), not the names themselves.
    others = set(queries.logged_actors()) - set(names)
    assert any(set(f.names()) - {""} == others for f in counted[1:])
    for filters in (
        AuditFilter(actor="a", outcome="failed"),
        AuditFilter(actor="a", field="statusId"),  # the field's rows drive: fewer
        AuditFilter(actor="chen", field="statusId", source="dashboard"),
    ):
        assert charted(filters) == chart_from_rows(filters), filters


@pytest.mark.django_db
@pytest.mark.parametrize("zone", ZONES)
def test_actor_and_field_charts_equal_counting_the_rows_for_every_scope_and_zone(clock, mia, zone):
    varied_log(clock, mia, count=400, batch=111, days=6, seed=5)
    some = AuditEntry.objects.filter(action="ticket.update").order_by("id")[50]
    grid = (
        AuditFilter(actor=some.actor_username, field="statusId"),  # one name
        AuditFilter(actor="e", field="statusId"),  # several
        AuditFilter(actor="a", field="description", outcome="succeeded"),
        AuditFilter(actor="mia", field="priorityId"),
    )
    with timezone.override(zoneinfo.ZoneInfo(zone)):
        today = timezone.localdate()
        for filters in grid:
            assert len(filters.names()) >= 1
            filters = replace(filters, since=today - timedelta(days=30))
            for team_ids in (None, frozenset({some.team_id}), frozenset()):
                want = chart_from_rows(filters, team_ids)
                assert charted(filters, team_ids) == want, (filters, team_ids)
                # Days apart (the others cached): each counted alone, in one statement.
                days = [today - timedelta(days=n) for n in range(8, -1, -2)]
                alone = queries._count_days(days, filters, team_ids)
                assert alone == {day: want.get(day, 0) for day in days}, (filters, team_ids)


@pytest.mark.django_db
def test_an_actor_chart_stays_exact_when_someone_new_writes_while_it_counts(
    clock, mia, django_user_model, monkeypatch
):
    for name in ("ann", "dan", "jan"):
        write(django_user_model.objects.create_user(name), settle=["succeeded"])
    stale = queries.logged_actors()
    newcomer = django_user_model.objects.create_user("nat")

    def logged_then_a_write():
        write(newcomer)  # lands after the names were read, before the counting
        return stale

    monkeypatch.setattr(queries, "logged_actors", logged_then_a_write)
    filters = AuditFilter(actor="an", actor_names=("ann", "dan", "jan"))  # "an": three of four
    assert charted(filters) == chart_from_rows(filters) == {timezone.localdate(clock.now): 3}


@pytest.mark.django_db
def test_ticket_and_reverted_charts_equal_counting_the_rows(clock, mia):
    varied_log(clock, mia, count=300, batch=128, days=4, seed=9)
    undone = AuditEntry.objects.filter(action="ticket.update").order_by("id")[40]
    write(mia, revert_of=undone.id, reason="undo")
    since = timezone.localdate() - timedelta(days=30)
    for filters in (
        AuditFilter(ticket="SUP-1", since=since),
        AuditFilter(ticket="tk_sup_1", outcome="succeeded", since=since),
        AuditFilter(revert="reverted", since=since),
        AuditFilter(revert="reverted", field="statusId", since=since),
        # A few days: read from the range's entries, not by id (queries._reverted).
        AuditFilter(revert="reverted", since=timezone.localdate() - timedelta(days=3)),
    ):
        for team_ids in (None, frozenset({"t_sup"})):
            assert charted(filters, team_ids) == chart_from_rows(filters, team_ids), filters


@pytest.mark.django_db
@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's roles")
def test_a_role_that_may_only_append_and_read_the_counts_still_keeps_them(clock, mia):
    """The triggers run as the table's owner (SECURITY DEFINER), so the app's role needs
    no right to change the counts: nothing but the triggers can."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE ROLE counts_app_test")
        cursor.execute("GRANT USAGE ON SCHEMA public TO counts_app_test")
        cursor.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO counts_app_test")
        cursor.execute("GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO counts_app_test")
        cursor.execute(
            "GRANT INSERT ON tickets_auditentry, tickets_auditoutcome, tickets_auditfield "
            "TO counts_app_test"
        )
        cursor.execute("SET ROLE counts_app_test")
    try:
        every_kind_of_write(clock, mia)
        assert_exact()
        with pytest.raises(Exception, match="permission denied"), transaction.atomic():
            connection.cursor().execute("UPDATE tickets_auditcount SET n = n + 1")
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET ROLE")
