import importlib
import re
import sqlite3
import threading
from contextlib import closing, contextmanager
from io import StringIO

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, connections, transaction

from tickets.audit import (
    GENESIS_HASH,
    RequestMeta,
    VerifyResult,
    append_many,
    record_attempt,
    record_outcome,
    row_hash,
    verify_chain,
)
from tickets.audit.chain import AlreadySettled
from tickets.models import Action, AuditEntry, AuditField, AuditOutcome, InsertOnlyError, Outcome

triggers = importlib.import_module("tickets.migrations.0002_audit_insert_only_triggers")

META = RequestMeta(request_id="req-1", client_ip="192.0.2.10", user_agent="pytest")
TICKET = {"id": "tk_1", "ticketIdentifier": "SUP-1", "title": "Printer on fire", "teamId": "team_a"}
CHANGES = {
    "statusId": {"before": "st_open", "after": "st_closed"},
    "priorityId": {"before": None, "after": "pr_high"},
}


@contextmanager
def triggers_dropped():
    """Tamper behind the triggers' back: drop them, yield a cursor, put them back.
    (Inside a rolled-back test the drop would be undone anyway; DDL is transactional on
    both SQLite and PostgreSQL.)"""
    with transaction.atomic():
        triggers.drop_triggers(connection)
        with connection.cursor() as cursor:
            yield cursor
        triggers.create_triggers(connection)


@pytest.fixture
def manager(db):
    return User.objects.create_user("mia", email="mia@example.com")


def attempt(actor, ticket=TICKET, changes=CHANGES, action="ticket.update", **kwargs):
    return record_attempt(
        action=action,
        actor=actor,
        ticket=ticket,
        changes=changes,
        request_body={name: change["after"] for name, change in changes.items()},
        meta=META,
        **kwargs,
    )


def assert_broken(fragment):
    result = verify_chain()
    assert not result.ok
    assert fragment in result.first_broken
    with pytest.raises(CommandError, match=re.escape(fragment)):
        call_command("verify_audit_log", stdout=StringIO())


# Writing and chaining


def test_record_attempt_and_outcome_form_one_chain(manager):
    entry = attempt(manager)
    outcome = record_outcome(
        entry=entry,
        outcome="succeeded",
        status_code=200,
        upstream_updated_at="2025-01-02T03:04:05Z",
    )

    assert (entry.id, entry.prev_hash) == (1, GENESIS_HASH)
    assert (outcome.id, outcome.prev_hash) == (2, entry.hash)
    stored = AuditEntry.objects.values(*AuditEntry.CHAIN_FIELDS).get()
    assert row_hash(GENESIS_HASH, stored) == entry.hash
    assert verify_chain().ok


def test_record_attempt_copies_actor_ticket_request_and_changed_fields(manager):
    entry = attempt(manager)

    entry.refresh_from_db()
    assert (entry.actor_username, entry.actor_email) == ("mia", "mia@example.com")
    assert (entry.ticket_id, entry.ticket_identifier, entry.team_id) == ("tk_1", "SUP-1", "team_a")
    assert entry.ticket_title == "Printer on fire"
    assert entry.request_body == {"statusId": "st_closed", "priorityId": "pr_high"}
    assert (entry.request_id, entry.client_ip, entry.user_agent) == (
        "req-1",
        "192.0.2.10",
        "pytest",
    )
    assert entry.outcome == "pending"
    assert sorted(entry.fields.values_list("field", flat=True)) == ["priorityId", "statusId"]
    assert set(entry.fields.values_list("created_at", flat=True)) == {entry.created_at}


def test_non_ticket_action_is_a_single_final_row(manager):
    entry = record_attempt(
        action="audit.export",
        actor=manager,
        ticket=None,
        changes={},
        request_body={"filters": {"outcome": "failed"}},
        outcome="succeeded",
        meta=META,
    )

    assert entry.ticket_id == ""
    assert not entry.fields.exists()
    with pytest.raises(ValueError, match="final"):
        record_outcome(entry=entry, outcome="failed")


def test_record_attempt_refuses_undotted_action_and_unknown_outcome(manager):
    with pytest.raises(ValueError, match="dotted"):
        attempt(manager, action="update")
    with pytest.raises(ValueError, match="cannot start"):
        attempt(manager, outcome="unknown")
    assert not AuditEntry.objects.exists()


def test_settled_entry_cannot_be_settled_again_but_unknown_can(manager):
    entry = attempt(manager)
    record_outcome(entry=entry, outcome="unknown", message="timeout after sending")
    record_outcome(entry=entry, outcome="succeeded", message="reconciled")

    with pytest.raises(ValueError, match="already settled"):
        record_outcome(entry=entry, outcome="failed")


def test_ipv6_client_ip_is_stored_in_canonical_form_and_verifies(manager):
    meta = RequestMeta(request_id="r", client_ip="2001:DB8:0:0::1", user_agent="")
    entry = record_attempt(
        action="ticket.update", actor=manager, ticket=TICKET, changes={}, request_body={}, meta=meta
    )

    entry.refresh_from_db()
    assert entry.client_ip == "2001:db8::1"
    assert verify_chain().ok


def unsaved(actor, **values):
    """An entry as append_many takes it: built, not linked."""
    return AuditEntry(
        **{
            "action": Action.TICKET_UPDATE,
            "actor_id": actor.pk,
            "actor_username": actor.username,
            "ticket_id": TICKET["id"],
            "changes": CHANGES,
            "request_body": {name: change["after"] for name, change in CHANGES.items()},
            "client_ip": "192.0.2.10",
            "outcome": Outcome.PENDING,
            **values,
        }
    )


def test_append_many_links_numbers_and_indexes_the_rows_it_is_given(manager):
    before = attempt(manager)
    first, second = unsaved(manager), unsaved(manager, changes={"title": {"after": "New"}})

    append_many(
        [
            first,
            AuditOutcome(entry=first, outcome=Outcome.UNKNOWN),
            second,
            AuditOutcome(entry=first, outcome=Outcome.SUCCEEDED, status_code=200),
        ]
    )

    assert (first.id, second.id, first.number, second.number) == (2, 4, 2, 3)
    assert set(first.fields.values_list("field", flat=True)) == set(CHANGES)
    assert list(second.fields.values_list("field", flat=True)) == ["title"]
    current = AuditEntry.objects.with_current_outcome().in_bulk([before.pk, first.pk, second.pk])
    assert [current[pk].current_outcome for pk in (before.pk, first.pk, second.pk)] == [
        "pending",
        "succeeded",
        "pending",
    ]
    assert first.outcomes.get(outcome="unknown").entry_created_at == first.created_at
    after = attempt(manager)  # the chain goes on
    assert (after.id, after.number) == (6, 4)
    assert (verify_chain().ok, verify_chain().count) == (True, 6)


def test_append_many_links_each_row_before_it_draws_the_next(manager):
    def rows():
        undone = unsaved(manager)
        yield undone
        yield unsaved(manager, revert_of=undone.id, reason=f"Revert #{undone.number}")

    append_many(rows())

    undone, revert = AuditEntry.objects.order_by("id")
    assert (revert.revert_of, revert.reason) == (undone.id, "Revert #1")
    assert verify_chain().ok


def test_append_many_refuses_what_record_attempt_and_record_outcome_refuse(manager):
    settled = attempt(manager)
    record_outcome(entry=settled, outcome="succeeded")
    denied = unsaved(manager, outcome=Outcome.DENIED)

    with pytest.raises(ValueError, match="dotted"):
        append_many([unsaved(manager), unsaved(manager, action="update")])
    with pytest.raises(ValueError, match="cannot start"):
        append_many([unsaved(manager, outcome=Outcome.UNKNOWN)])
    with pytest.raises(ValueError, match="dotted"):
        append_many([unsaved(manager, action=Action.CHAIN_ANCHOR)])
    with pytest.raises(AlreadySettled, match=r"already settled \(succeeded\)"):
        append_many([AuditOutcome(entry_id=settled.pk, outcome=Outcome.FAILED)])
    with pytest.raises(ValueError, match=r"final when written \(denied\)"):
        append_many([denied, AuditOutcome(entry=denied, outcome=Outcome.FAILED)])
    with pytest.raises(ValueError, match="must be in the log"):
        append_many([AuditOutcome(entry=unsaved(manager), outcome=Outcome.FAILED)])

    assert AuditEntry.objects.count() == 1  # a refused batch writes nothing
    assert verify_chain().ok


def test_append_many_makes_rows_storable_before_it_hashes_them(manager):
    entry = unsaved(
        manager, ticket_title="nul\x00here", ticket_id="x" * 100, client_ip="2001:DB8::1"
    )

    append_many([entry])

    entry.refresh_from_db()
    assert (entry.ticket_title, entry.ticket_id) == ("nul\ufffdhere", "x" * 64)
    assert entry.client_ip == "2001:db8::1"
    assert verify_chain().ok


# Reading


def test_current_outcome_is_latest_settlement_else_own_outcome(manager):
    pending = attempt(manager)
    reconciled = attempt(manager)
    record_outcome(entry=reconciled, outcome="unknown")
    record_outcome(entry=reconciled, outcome="succeeded")
    failed = attempt(manager)
    record_outcome(entry=failed, outcome="failed", status_code=400)
    conflict = attempt(manager, outcome="conflict")

    current = dict(AuditEntry.objects.with_current_outcome().values_list("id", "current_outcome"))

    assert current == {
        pending.id: "pending",
        reconciled.id: "succeeded",
        failed.id: "failed",
        conflict.id: "conflict",
    }


def test_for_outcome_filters_by_current_outcome(manager):
    pending = attempt(manager)
    unknown = attempt(manager)
    record_outcome(entry=unknown, outcome="unknown")
    reconciled = attempt(manager)
    record_outcome(entry=reconciled, outcome="unknown")
    record_outcome(entry=reconciled, outcome="succeeded")
    denied = attempt(manager, outcome="denied")
    export = record_attempt(
        action="audit.export",
        actor=manager,
        ticket=None,
        changes={},
        request_body={},
        outcome="succeeded",
        meta=META,
    )

    def ids(outcome):
        return set(AuditEntry.objects.for_outcome(outcome).values_list("id", flat=True))

    assert ids("pending") == {pending.id}
    assert ids("unknown") == {unknown.id}
    assert ids("succeeded") == {reconciled.id, export.id}
    assert ids("denied") == {denied.id}
    assert ids("failed") == set()


def test_for_ticket_lists_newest_first(manager):
    first = attempt(manager)
    attempt(manager, ticket={**TICKET, "id": "tk_other"})
    second = attempt(manager)

    assert list(AuditEntry.objects.for_ticket("tk_1")) == [second, first]


def test_str_is_readable(manager):
    entry = attempt(manager)

    assert "mia ticket.update SUP-1: pending" in str(entry)


def test_an_entry_names_its_action_for_people(manager):
    entry = attempt(manager)
    assert (entry.action, entry.action_label) == ("ticket.update", "Ticket edit")
    assert AuditEntry(action="bulk.something").action_label == "bulk.something"


# Insert-only


@pytest.fixture
def one_of_each(manager):
    entry = attempt(manager)
    return {
        AuditEntry: entry,
        AuditOutcome: record_outcome(entry=entry, outcome="succeeded"),
        AuditField: entry.fields.first(),
    }


@pytest.mark.parametrize("model", [AuditEntry, AuditOutcome, AuditField])
def test_saving_or_deleting_a_stored_row_is_refused(one_of_each, model):
    row = model.objects.get(pk=one_of_each[model].pk)

    with pytest.raises(InsertOnlyError):
        row.save()
    with pytest.raises(InsertOnlyError):
        row.delete()
    with pytest.raises(InsertOnlyError):
        model.objects.filter(pk=row.pk).update(created_at=row.created_at)
    with pytest.raises(InsertOnlyError):
        model.objects.all().delete()
    assert verify_chain().ok


@pytest.mark.parametrize(
    ("table", "assignment"),
    [
        ("tickets_auditentry", "message = 'rewritten'"),
        ("tickets_auditoutcome", "message = 'rewritten'"),
        ("tickets_auditfield", "field = 'rewritten'"),
    ],
)
def test_raw_sql_update_and_delete_are_refused_by_triggers(one_of_each, table, assignment):
    for statement in (f"UPDATE {table} SET {assignment}", f"DELETE FROM {table}"):
        with pytest.raises(DatabaseError, match="insert-only"), transaction.atomic():
            connection.cursor().execute(statement)

    assert verify_chain().ok


@pytest.mark.skipif(connection.vendor != "postgresql", reason="TRUNCATE is PostgreSQL's")
def test_truncate_of_a_non_empty_audit_table_is_refused(one_of_each):
    connection.cursor().execute("SET CONSTRAINTS ALL IMMEDIATE")  # no pending FK checks
    with pytest.raises(DatabaseError, match="insert-only"), transaction.atomic():
        connection.cursor().execute("TRUNCATE tickets_auditentry CASCADE")

    assert verify_chain().ok


def test_deleting_a_user_keeps_their_entries(manager):
    entry = attempt(manager)

    manager.delete()

    entry = AuditEntry.objects.get(pk=entry.pk)
    assert entry.actor_username == "mia"
    assert "mia" in str(entry)
    assert verify_chain().ok


# Verification


def test_verify_counts_an_intact_log(manager):
    for _ in range(3):
        record_outcome(entry=attempt(manager), outcome="succeeded")
    out = StringIO()

    call_command("verify_audit_log", stdout=out)

    assert verify_chain().count == 6
    assert "Audit log intact: 6 rows." in out.getvalue()


def test_verify_an_empty_log_is_intact(db):
    assert verify_chain() == VerifyResult(ok=True, count=0, first_broken=None, head=GENESIS_HASH)


def test_verify_detects_an_altered_row(manager):
    attempt(manager)
    entry = attempt(manager)
    attempt(manager)

    with triggers_dropped() as cursor:
        cursor.execute(
            "UPDATE tickets_auditentry SET ticket_title = 'nothing to see' WHERE id = %s",
            [entry.id],
        )

    assert_broken(f"tickets_auditentry #{entry.id}: hash does not match")


def test_verify_detects_an_altered_outcome(manager):
    outcome = record_outcome(entry=attempt(manager), outcome="failed", status_code=500)
    attempt(manager)

    with triggers_dropped() as cursor:
        cursor.execute("UPDATE tickets_auditoutcome SET outcome = 'succeeded'")

    assert_broken(f"tickets_auditoutcome #{outcome.id}: hash does not match")


def test_verify_detects_a_deleted_row_and_names_the_gap(manager):
    first = attempt(manager)
    outcome = record_outcome(entry=first, outcome="succeeded")
    after = attempt(manager)

    with triggers_dropped() as cursor:
        cursor.execute("DELETE FROM tickets_auditoutcome WHERE id = %s", [outcome.id])

    assert_broken(f"tickets_auditentry #{after.id}: the rows before it are missing (#{outcome.id})")


def test_verify_detects_an_inserted_forged_row(manager):
    entry = attempt(manager)
    record_outcome(entry=entry, outcome="failed", status_code=500)
    # A well-formed outcome claiming success, hashed onto the entry instead of the last row.
    forged = {
        "id": 3,
        "entry_id": entry.id,
        "entry_created_at": entry.created_at,
        "created_at": entry.created_at,
        "outcome": "succeeded",
        "status_code": 200,
        "message": "",
        "upstream_updated_at": "",
        "duration_ms": 5,
    }
    AuditOutcome(**forged, prev_hash=entry.hash, hash=row_hash(entry.hash, forged)).save()

    assert_broken("tickets_auditoutcome #3: prev_hash does not match the hash of row #2")


def test_verify_detects_a_forged_row_reusing_an_id(manager):
    entry = attempt(manager)
    # The tables have separate primary keys, so only the chain sees the reused id 1.
    forged = {
        "id": entry.id,
        "entry_id": entry.id,
        "entry_created_at": entry.created_at,
        "created_at": entry.created_at,
        "outcome": "succeeded",
        "status_code": 200,
        "message": "",
        "upstream_updated_at": "",
        "duration_ms": 5,
    }
    AuditOutcome(**forged, prev_hash=entry.hash, hash=row_hash(entry.hash, forged)).save()

    assert_broken(f"tickets_auditoutcome #{entry.id}: its id is used twice")


def test_verify_detects_tampered_field_rows(manager):
    entry = attempt(manager)
    attempt(manager)

    with triggers_dropped() as cursor:
        cursor.execute("DELETE FROM tickets_auditfield WHERE field = 'statusId'")

    assert_broken(
        f"tickets_auditentry #{entry.id}: tickets_auditfield rows are missing for statusId"
    )


def test_verify_detects_a_forged_field_row(manager):
    entry = attempt(manager, changes={"statusId": CHANGES["statusId"]})
    attempt(manager)

    AuditField(entry=entry, field="assignedAgentId", created_at=entry.created_at).save()

    assert_broken("(assignedAgentId) does not match the entry")


# Concurrency


@pytest.fixture
def writer_connections(transactional_db, tmp_path):
    """Yields `connect()`, which each thread calls first. On PostgreSQL every thread has
    its own connection anyway. SQLite's in-memory test database uses a shared cache,
    where a second writer fails at once ("database table is locked") instead of waiting
    for the lock as on a database file; so on SQLite the threads use a file copy."""
    if connection.vendor != "sqlite":
        yield lambda: None
        return
    original = connections["default"]
    original.ensure_connection()
    path = tmp_path / "writers.sqlite3"
    with closing(sqlite3.connect(path)) as copy:
        original.connection.backup(copy)
    settings_dict = {**original.settings_dict, "NAME": str(path)}

    def connect():
        connections["default"] = original.__class__(settings_dict, "default")

    connect()
    yield connect
    connections["default"].close()
    connections["default"] = original


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_keep_one_unbroken_chain(writer_connections):
    user = User.objects.create_user("writer")
    errors = []

    def write():
        writer_connections()
        try:
            for _ in range(5):
                entry = attempt(user)
                record_outcome(entry=entry, outcome="succeeded")
        except Exception as error:  # reported by the assert below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=write) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    result = verify_chain()
    assert (result.ok, result.count) == (True, 40)
    prev_hashes = [
        *AuditEntry.objects.values_list("prev_hash", flat=True),
        *AuditOutcome.objects.values_list("prev_hash", flat=True),
    ]
    assert len(set(prev_hashes)) == 40  # no two rows link onto the same predecessor


# Permissions and request metadata


def test_migrations_create_groups_with_their_permissions(db):
    def codenames(name):
        group = Group.objects.get(name=name)
        return sorted(f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.all())

    assert codenames("Support managers") == [
        "tickets.bulk_edit",
        "tickets.edit_ticket",
        "tickets.view_auditentry",
    ]
    assert codenames("Auditors") == ["tickets.view_auditentry"]
    user = User.objects.create_user("sam")
    user.groups.add(Group.objects.get(name="Support managers"))
    assert user.has_perms(["tickets.bulk_edit", "tickets.edit_ticket", "tickets.view_auditentry"])


def test_request_meta_reads_request_id_ip_and_user_agent(rf):
    request = rf.get(
        "/", headers={"X-Request-ID": "abc-123", "User-Agent": "x" * 600}, REMOTE_ADDR="192.0.2.7"
    )

    meta = RequestMeta.of(request)

    assert meta == RequestMeta(request_id="abc-123", client_ip="192.0.2.7", user_agent="x" * 500)


def test_request_meta_replaces_an_insane_request_id_and_missing_ip(rf):
    request = rf.get("/", headers={"X-Request-ID": "<script>"}, REMOTE_ADDR="")

    meta = RequestMeta.of(request)

    assert len(meta.request_id) == 32
    assert meta.request_id != "<script>"
    assert meta.client_ip is None
    assert meta.user_agent == ""
