"""The keyed chain: forging without the key, key rotation, legacy logs, checkpoints, and
JSON that the databases would refuse."""

import hashlib
import itertools
import json
import os
import re
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.test import override_settings
from django.utils import timezone

from tests.test_audit_models import CHANGES, META, TICKET, attempt, triggers_dropped
from tickets.audit import chain
from tickets.audit.chain import (
    GENESIS_HASH,
    Keyring,
    key_id_of,
    record_attempt,
    record_outcome,
    row_hash,
    verify_chain,
)
from tickets.models import Action, AuditEntry, AuditField, AuditOutcome

ROOT = Path(__file__).resolve().parent.parent
KEY_A = "a" * 16 + "-first-audit-key-for-tests-only"
KEY_B = "b" * 16 + "-second-audit-key-for-tests-only"


@pytest.fixture
def manager(db):
    return User.objects.create_user("mia", email="mia@example.com")


def assert_broken(fragment, *args):
    result = verify_chain(*args)
    assert not result.ok
    assert fragment in result.first_broken
    return result


def command_fails(fragment, *args):
    with pytest.raises(CommandError, match=re.escape(fragment)):
        call_command("verify_audit_log", *args, stdout=StringIO())


def rows():
    """Every chained row as (model, values with prev_hash and hash), in id order."""
    found = []
    for model in (AuditEntry, AuditOutcome):
        names = (*model.CHAIN_FIELDS, "prev_hash", "hash")
        for row in model.objects.values_list(*names):
            found.append((model, dict(zip(names, row, strict=True))))
    return sorted(found, key=lambda item: item[1]["id"])


def sql_insert(model, values, verb="INSERT"):
    """A plain SQL INSERT, as anyone with database access can send (triggers allow it)."""
    fields = {f.attname: f for f in model._meta.concrete_fields}
    names = list(values)
    params = [fields[name].get_db_prep_value(values[name], connection) for name in names]
    with connection.cursor() as cursor:
        cursor.execute(
            f"{verb} INTO {model._meta.db_table} ({', '.join(names)}) "
            f"VALUES ({', '.join(['%s'] * len(names))})",
            params,
        )


def forged_outcome(entry, prev, key_id):
    return {
        "id": prev["id"] + 1,
        "entry_id": entry.id,
        "entry_created_at": entry.created_at,
        "created_at": timezone.now(),
        "outcome": "succeeded",
        "status_code": 200,
        "message": "",
        "upstream_updated_at": "",
        "duration_ms": 5,
        "key_id": key_id,
    }


def contents(values):
    return {name: value for name, value in values.items() if name not in ("prev_hash", "hash")}


# (a) A forged row appended with plain SQL


@pytest.mark.parametrize(
    "attacker",
    ["legacy sha256", "sha256 with the key id", "HMAC with a guessed key"],
)
def test_a_forged_outcome_appended_without_the_key_is_detected(manager, attacker):
    entry = attempt(manager)
    record_outcome(entry=entry, outcome="failed", status_code=500)
    head = rows()[-1][1]
    current = chain.keyring().current_id
    forged = forged_outcome(entry, head, None if attacker == "legacy sha256" else current)
    guessed = Keyring(((current, b"a guess at the key"),))
    if attacker == "HMAC with a guessed key":
        mac = row_hash(head["hash"], forged, guessed)
    else:  # the key id does not enter a plain SHA-256
        mac = hashlib.sha256((head["hash"] + chain.canonical_json(forged)).encode()).hexdigest()

    sql_insert(AuditOutcome, {**forged, "prev_hash": head["hash"], "hash": mac})

    if attacker == "legacy sha256":
        assert_broken("tickets_auditoutcome #3: a row without a MAC key after the keyed chain")
    else:
        assert_broken("tickets_auditoutcome #3: hash does not match its contents")
    command_fails("tickets_auditoutcome #3")


# (b) A row altered and every later hash recomputed without the key


def test_an_altered_row_with_every_later_hash_recomputed_is_detected(manager):
    for _ in range(3):
        record_outcome(entry=attempt(manager), outcome="failed", status_code=500)
    current = chain.keyring().current_id
    guessed = Keyring(((current, b"not the key"),))
    prev_hash = None
    with triggers_dropped() as cursor:
        for model, values in rows():
            if values["id"] < 2:
                continue
            if values["id"] == 2:
                values["outcome"] = "succeeded"  # a failed edit now claims success
            values["prev_hash"] = prev_hash or values["prev_hash"]
            values["hash"] = prev_hash = row_hash(values["prev_hash"], contents(values), guessed)
            cursor.execute(
                f"UPDATE {model._meta.db_table} SET outcome = %s, prev_hash = %s, hash = %s "
                "WHERE id = %s",
                [values["outcome"], values["prev_hash"], values["hash"], values["id"]],
            )

    # Every link is consistent; only the MACs betray the rewrite, from the first one on.
    links = rows()
    assert all(b["prev_hash"] == a["hash"] for (_, a), (_, b) in itertools.pairwise(links))
    assert_broken("tickets_auditoutcome #2: hash does not match its contents")


# (c) The newest rows deleted: only a checkpoint shows it


def test_deleting_the_newest_rows_shows_against_a_checkpoint(manager, tmp_path):
    for _ in range(3):
        record_outcome(entry=attempt(manager), outcome="succeeded")
    file = tmp_path / "checkpoints.jsonl"
    call_command("audit_checkpoint", output=str(file), stdout=StringIO())

    with triggers_dropped() as cursor:
        cursor.execute("DELETE FROM tickets_auditoutcome WHERE id = 6")
        cursor.execute("DELETE FROM tickets_auditfield WHERE entry_id = 5")
        cursor.execute("DELETE FROM tickets_auditentry WHERE id = 5")

    assert verify_chain().ok  # the chain alone cannot tell
    checkpoints = chain.read_checkpoints(file)
    assert_broken("the log has shrunk", checkpoints)
    command_fails("saw rows up to #6, the database now ends at #4", "--checkpoint", str(file))
    # Nor will a new checkpoint bless the shorter log.
    with pytest.raises(CommandError, match=r"No checkpoint written.*shrunk"):
        call_command("audit_checkpoint", output=str(file), stdout=StringIO())
    assert len(file.read_text().splitlines()) == 1


def test_rows_deleted_and_written_again_differ_from_the_checkpoint(manager, tmp_path):
    entry = attempt(manager)
    record_outcome(entry=entry, outcome="failed", status_code=500)
    file = tmp_path / "checkpoints.jsonl"
    call_command("audit_checkpoint", output=str(file), stdout=StringIO())
    with triggers_dropped() as cursor:
        cursor.execute("DELETE FROM tickets_auditoutcome WHERE id = 2")
    record_outcome(entry=AuditEntry.objects.get(), outcome="succeeded")  # id 2 again

    assert verify_chain().ok
    command_fails("row #2 is not the row the checkpoint", "--checkpoint", str(file))


def test_a_growing_log_keeps_its_checkpoints(manager, tmp_path):
    file = tmp_path / "checkpoints.jsonl"
    call_command("audit_checkpoint", output=str(file), stdout=StringIO())  # empty log
    attempt(manager)
    call_command("audit_checkpoint", output=str(file), stdout=StringIO())
    attempt(manager)
    out = StringIO()

    call_command("verify_audit_log", checkpoint=str(file), stdout=out)

    assert [json.loads(line)["rows"] for line in file.read_text().splitlines()] == [0, 1]
    assert "Checkpoints: 2 checked; the newest" in out.getvalue()
    assert "still heads row #1 (1 rows written since)" in out.getvalue()


def test_checkpoint_is_one_signed_json_line_on_stdout(manager):
    attempt(manager)
    out = StringIO()

    call_command("audit_checkpoint", stdout=out)

    line = out.getvalue()
    assert line.count("\n") == 1
    data = json.loads(line)
    entry = AuditEntry.objects.get()
    assert {k: data[k] for k in ("v", "rows", "last_id", "last_mac", "legacy_rows", "key_id")} == {
        "v": 1,
        "rows": 1,
        "last_id": 1,
        "last_mac": entry.hash,
        "legacy_rows": 0,
        "key_id": chain.keyring().current_id,
    }
    assert chain.parse_checkpoint(line).sig == data["sig"]


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda data: {**data, "rows": 1}, "signature does not hold"),
        (lambda data: {**data, "key_id": "00000000"}, "key 00000000 is neither"),
        (lambda data: {**data, "v": 2}, "unknown version"),
        (lambda data: "not json", "is not a checkpoint"),
    ],
)
def test_a_forged_or_edited_checkpoint_is_refused(manager, tmp_path, tamper, message):
    record_outcome(entry=attempt(manager), outcome="succeeded")
    file = tmp_path / "checkpoints.jsonl"
    call_command("audit_checkpoint", output=str(file), stdout=StringIO())
    data = tamper(json.loads(file.read_text()))
    file.write_text((data if isinstance(data, str) else json.dumps(data)) + "\n")

    command_fails(message, "--checkpoint", str(file))


def test_verify_refuses_an_empty_or_missing_checkpoint_file(db, tmp_path):
    (tmp_path / "empty").write_text("")
    command_fails("holds no checkpoint", "--checkpoint", str(tmp_path / "empty"))
    command_fails("cannot be read", "--checkpoint", str(tmp_path / "missing"))


# (d) SQLite: INSERT OR REPLACE rewrites a row past the triggers


@pytest.mark.skipif(connection.vendor != "sqlite", reason="INSERT OR REPLACE is SQLite's")
def test_insert_or_replace_rewriting_an_outcome_is_detected(manager):
    entry = attempt(manager)
    record_outcome(entry=entry, outcome="failed", status_code=500)
    attempt(manager)
    _, stored = rows()[1]
    rewritten = {**stored, "outcome": "succeeded", "status_code": 200}
    rewritten["hash"] = hashlib.sha256(
        (stored["prev_hash"] + chain.canonical_json(contents(rewritten))).encode()
    ).hexdigest()

    # REPLACE deletes the old row without firing the DELETE trigger (no recursive_triggers).
    sql_insert(AuditOutcome, rewritten, verb="INSERT OR REPLACE")

    assert AuditOutcome.objects.get().outcome == "succeeded"
    assert_broken("tickets_auditoutcome #2: hash does not match its contents")


@pytest.mark.skipif(connection.vendor != "postgresql", reason="ON CONFLICT is PostgreSQL's")
def test_insert_on_conflict_update_is_refused_by_the_triggers(manager):
    entry = attempt(manager)
    record_outcome(entry=entry, outcome="failed", status_code=500)
    _, _stored = rows()[1]

    with pytest.raises(DatabaseError, match="insert-only"), transaction.atomic():
        connection.cursor().execute(
            "INSERT INTO tickets_auditoutcome (id, entry_id, entry_created_at, created_at, "
            "outcome, message, upstream_updated_at, prev_hash, hash) "
            "SELECT id, entry_id, entry_created_at, created_at, outcome, message, "
            "upstream_updated_at, prev_hash, hash FROM tickets_auditoutcome WHERE id = 2 "
            "ON CONFLICT (id) DO UPDATE SET outcome = 'succeeded'"
        )
    assert verify_chain().ok


# Key rotation


def test_rotation_keeps_old_rows_verifiable_and_refuses_old_keys_after_new(manager, tmp_path):
    file = tmp_path / "checkpoints.jsonl"
    with override_settings(AUDIT_HMAC_KEY=KEY_A, AUDIT_HMAC_OLD_KEYS=[]):
        entry = attempt(manager)
        call_command("audit_checkpoint", output=str(file), stdout=StringIO())
    with override_settings(AUDIT_HMAC_KEY=KEY_B, AUDIT_HMAC_OLD_KEYS=[KEY_A]):
        record_outcome(entry=entry, outcome="succeeded")
        result = verify_chain(chain.read_checkpoints(file))
        assert (result.ok, result.key_ids) == (True, (key_id_of(KEY_A), key_id_of(KEY_B)))
        out = StringIO()
        call_command("verify_audit_log", checkpoint=str(file), stdout=out)
        assert f"HMAC-SHA256 with key {key_id_of(KEY_A)}, {key_id_of(KEY_B)}" in out.getvalue()
        assert AuditOutcome.objects.get().key_id == key_id_of(KEY_B)

    # Without the old key, its rows (and its checkpoints) cannot be verified.
    with override_settings(AUDIT_HMAC_KEY=KEY_B, AUDIT_HMAC_OLD_KEYS=[]):
        assert_broken(f"tickets_auditentry #1: its MAC key {key_id_of(KEY_A)} is neither")
        with pytest.raises(chain.CheckpointError, match="is neither"):
            chain.read_checkpoints(file)

    # Someone holding the leaked old key A appends a row: refused, B came before.
    with override_settings(AUDIT_HMAC_KEY=KEY_B, AUDIT_HMAC_OLD_KEYS=[KEY_A]):
        head = rows()[-1][1]
        forged = forged_outcome(entry, head, key_id_of(KEY_A))
        leaked = Keyring(((key_id_of(KEY_A), KEY_A.encode()),))
        mac = row_hash(head["hash"], forged, leaked)
        sql_insert(AuditOutcome, {**forged, "prev_hash": head["hash"], "hash": mac})
        assert_broken(f"made with the old key {key_id_of(KEY_A)} after rows made with the newer")


def test_row_mac_is_hmac_sha256_of_the_canonical_row_with_the_current_key(manager):
    with override_settings(AUDIT_HMAC_KEY=KEY_A, AUDIT_HMAC_OLD_KEYS=[]):
        entry = attempt(manager)
    stored = AuditEntry.objects.values(*AuditEntry.CHAIN_FIELDS).get()

    payload = chain.canonical_json(stored)
    assert entry.key_id == key_id_of(KEY_A) == hashlib.sha256(KEY_A.encode()).hexdigest()[:8]
    assert (
        entry.hash
        == chain.hmac.new(
            KEY_A.encode(), (GENESIS_HASH + payload).encode(), hashlib.sha256
        ).hexdigest()
    )


# A log from before the key


def write_legacy_log(count):
    """Rows as the unkeyed chain wrote them: no key_id, sha256(prev_hash + canonical row)."""
    prev = GENESIS_HASH
    for number in range(1, count + 1):
        entry = AuditEntry(
            id=number,
            created_at=timezone.now(),
            action="ticket.update",
            actor_username="old",
            ticket_id="tk_1",
            changes={"statusId": {"before": "a", "after": "b"}},
            request_body={"statusId": "b"},
            request_id=f"legacy-{number}",
            outcome="succeeded",
            prev_hash=prev,
            number=number,  # as migration 0008 numbered existing entries
        )
        values = {name: getattr(entry, name) for name in AuditEntry.CHAIN_FIELDS}
        payload = json.dumps(
            {k: v for k, v in values.items() if k not in chain.OPTIONAL_CHAIN_FIELDS},
            default=lambda moment: chain._iso(moment),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )
        entry.hash = prev = hashlib.sha256((prev + payload).encode()).hexdigest()
        assert row_hash(entry.prev_hash, values) == entry.hash  # legacy rows verify unchanged
        entry.save()
        AuditField(entry=entry, field="statusId", created_at=entry.created_at).save()
    return prev


def test_a_legacy_log_is_anchored_not_rewritten(manager, tmp_path):
    legacy_head = write_legacy_log(3)
    before = rows()
    file = tmp_path / "checkpoints.jsonl"
    call_command("audit_checkpoint", output=str(file), stdout=StringIO())
    assert json.loads(file.read_text())["legacy_rows"] == 3

    entry = attempt(manager)

    assert rows()[:3] == before
    anchor = AuditEntry.objects.get(id=4)
    assert (anchor.action, anchor.prev_hash) == (Action.CHAIN_ANCHOR, legacy_head)
    assert anchor.request_body == {"legacy_rows": 3, "legacy_head": legacy_head}
    assert (entry.id, entry.prev_hash) == (5, anchor.hash)
    result = verify_chain(chain.read_checkpoints(file))
    assert (result.ok, result.count, result.legacy_rows) == (True, 5, 3)
    out = StringIO()
    call_command("verify_audit_log", checkpoint=str(file), stdout=out)
    assert "Legacy rows #1 to #3: plain SHA-256" in out.getvalue()
    assert "the keyed anchor #4 vouches for them" in out.getvalue()
    assert "Keyed rows #4 to #5: HMAC-SHA256" in out.getvalue()


def test_a_legacy_only_log_verifies_and_says_so(db):
    write_legacy_log(2)
    out = StringIO()

    call_command("verify_audit_log", stdout=out)

    assert "Legacy rows #1 to #2" in out.getvalue()
    assert "Keyed rows" not in out.getvalue()


def test_seed_audit_anchors_a_legacy_log(db):
    write_legacy_log(2)
    call_command("seed_audit", count=20, batch=7, force=True, stdout=StringIO())

    result = verify_chain()
    assert (result.ok, result.legacy_rows) == (True, 2)
    assert AuditEntry.objects.get(id=3).action == Action.CHAIN_ANCHOR


def test_a_rewritten_legacy_row_breaks_the_anchor(manager):
    write_legacy_log(3)
    attempt(manager)
    prev = GENESIS_HASH
    with triggers_dropped() as cursor:  # rewrite #2 and re-hash the legacy part after it
        for _, values in rows()[:3]:
            if values["id"] == 2:
                values["request_body"] = {"statusId": "forged"}
                values["changes"] = {"statusId": {"before": "a", "after": "forged"}}
            values["prev_hash"] = prev
            values["hash"] = prev = row_hash(prev, contents(values))
            cursor.execute(
                "UPDATE tickets_auditentry SET prev_hash = %s, hash = %s, request_body = %s, "
                "changes = %s WHERE id = %s",
                [
                    values["prev_hash"],
                    values["hash"],
                    json.dumps(values["request_body"]),
                    json.dumps(values["changes"]),
                    values["id"],
                ],
            )

    assert_broken("tickets_auditentry #4: prev_hash does not match the hash of row #3")


def test_a_legacy_looking_row_after_the_anchor_is_refused(manager):
    write_legacy_log(2)
    entry = attempt(manager)
    head = rows()[-1][1]
    forged = forged_outcome(entry, head, None)
    sql_insert(
        AuditOutcome, {**forged, "prev_hash": head["hash"], "hash": row_hash(head["hash"], forged)}
    )

    assert_broken("tickets_auditoutcome #5: a row without a MAC key after the keyed chain began")


def test_keyed_rows_after_legacy_rows_must_start_with_the_anchor(db):
    head = write_legacy_log(2)
    # Even with the key (a bug, or a stolen key), a keyed row cannot skip the anchor.
    row = AuditEntry(
        id=3,
        created_at=timezone.now(),
        action="ticket.update",
        outcome="succeeded",
        prev_hash=head,
        key_id=chain.keyring().current_id,
    )
    row.hash = row_hash(head, {name: getattr(row, name) for name in AuditEntry.CHAIN_FIELDS})
    row.save()

    assert_broken("must begin with the anchor entry")


def test_record_attempt_refuses_the_anchor_action(manager):
    with pytest.raises(ValueError, match="dotted"):
        attempt(manager, action=Action.CHAIN_ANCHOR)


# JSON the databases would refuse, and over-long text


def test_nul_surrogates_and_odd_numbers_are_stored_and_verify(manager):
    awkward = {
        "title": {"before": "nul\x00here", "after": "lone \ud800 and pair \ud83d\ude00"},
        "key\x00with nul": {"before": None, "after": "\udfff"},
        "metadata": {
            "before": {"big": 1e16, "neg_zero": -0.0, "tiny": 1e-7, "list": [1.5, "\x00"]},
            "after": {"big": 2**70, "float": 0.1},
        },
    }
    entry = record_attempt(
        action="ticket.update",
        actor=manager,
        ticket={**TICKET, "title": "title\x00 \ud800"},
        changes=awkward,
        request_body={"title\x00": "\ud800x"},
        message="msg\x00",
        meta=META,
    )
    record_outcome(entry=entry, outcome="failed", message="upstream said \x00\udc00")

    stored = AuditEntry.objects.get()
    assert stored.changes == entry.changes
    assert stored.changes["title"] == {
        "before": "nul\ufffdhere",
        "after": "lone \ufffd and pair 😀",
    }
    assert stored.changes["key\ufffdwith nul"] == {"before": None, "after": "\ufffd"}
    assert stored.changes["metadata"]["before"] == {
        "big": 10**16,
        "neg_zero": 0.0,
        "tiny": 1e-7,
        "list": [1.5, "\ufffd"],
    }
    assert stored.request_body == {"title\ufffd": "\ufffdx"}
    assert (stored.ticket_title, stored.message) == ("title\ufffd \ufffd", "msg\ufffd")
    assert AuditOutcome.objects.get().message == "upstream said \ufffd\ufffd"
    assert sorted(stored.fields.values_list("field", flat=True)) == sorted(entry.changes)
    assert verify_chain().ok


def test_over_long_identifiers_are_cut_to_their_columns_before_hashing(db):
    actor = User(pk=None, username="u" * 150, email="e" * 300)
    long_field = "f" * 80
    entry = record_attempt(
        action="ticket.update",
        actor=actor,
        ticket={
            "id": "i" * 100,
            "ticketIdentifier": "S" * 100,
            "title": "t" * 5000,
            "teamId": "m" * 70,
        },
        changes={long_field: {"before": 1, "after": 2}, **CHANGES},
        request_body={},
        meta=META,
        base_updated_at="2025-01-01T00:00:00Z" + "9" * 100,
    )

    stored = AuditEntry.objects.get()
    assert (stored.ticket_id, stored.ticket_identifier, stored.team_id) == (
        "i" * 64,
        "S" * 64,
        "m" * 64,
    )
    assert (stored.actor_username, stored.actor_email) == ("u" * 150, "e" * 254)
    assert stored.ticket_title == "t" * 5000
    assert len(stored.base_updated_at) == 64
    assert entry.ticket_id == stored.ticket_id
    assert "f" * 64 in stored.fields.values_list("field", flat=True)
    assert verify_chain().ok


# Settings


def _manage(*args, **env):
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "THENA_", "AUDIT_")) and k not in ("PYTEST_VERSION",)
    }
    base.pop("DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**base, "DJANGO_SECRET_KEY": "s" * 50, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_key_is_required_when_debug_is_off():
    result = _manage("check", DJANGO_DEBUG="false")
    assert result.returncode != 0
    assert "AUDIT_HMAC_KEY or AUDIT_HMAC_KEY_FILE must be set" in result.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"AUDIT_HMAC_KEY": "short"}, "at least 32 characters"),
        ({"AUDIT_HMAC_KEY": KEY_A, "AUDIT_HMAC_KEY_FILE": "/x"}, "not both"),
        ({"AUDIT_HMAC_KEY_FILE": "/nonexistent/key"}, "cannot be read"),
    ],
)
def test_bad_key_settings_are_refused(env, message):
    result = _manage("check", DJANGO_DEBUG="false", **env)
    assert result.returncode != 0
    assert message in result.stderr


def test_keys_are_read_from_files(tmp_path):
    (tmp_path / "key").write_text(KEY_B + "\n")
    (tmp_path / "old").write_text(f"{KEY_A}\n")
    result = _manage(
        "shell",
        "-c",
        "from django.conf import settings as s; print(s.AUDIT_HMAC_KEY, s.AUDIT_HMAC_OLD_KEYS)",
        DJANGO_DEBUG="false",
        AUDIT_HMAC_KEY_FILE=str(tmp_path / "key"),
        AUDIT_HMAC_OLD_KEYS_FILE=str(tmp_path / "old"),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == f"{KEY_B} ['{KEY_A}']"
