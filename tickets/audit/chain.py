"""Writing and verifying the audit log's MAC chain.

One chain runs through AuditEntry and AuditOutcome in id order (ids are the chain
positions, shared by both tables). Each row stores `prev_hash` and
`hash = HMAC-SHA256(key, prev_hash + canonical_json(row))`, where the key is
settings.AUDIT_HMAC_KEY, kept outside the database, and `key_id` (hashed with the row)
names the key: so someone who can write to the database but lacks the key cannot append,
alter or re-link a row and recompute the chain. Key rotation: new rows use the current
key; verification also knows AUDIT_HMAC_OLD_KEYS (oldest first), and a row may never use
an older key than the row before it (a leaked old key cannot append to the end).

Legacy rows (written before the key existed, `key_id` NULL) are plain SHA-256 and are never
rewritten: they form a prefix of the chain, and the first keyed row is an anchor entry
(Action.CHAIN_ANCHOR) whose MAC covers the legacy head and count. A legacy row after the
anchor is refused, so forged rows cannot pass as legacy. Removing the newest rows leaves
no trace in the chain itself: signed checkpoints of the head, kept outside the database
(`manage.py audit_checkpoint`), catch that (`verify_audit_log --checkpoint FILE`).

Appending takes the chain lock inside the write transaction so two writers never link
onto the same predecessor:
- PostgreSQL: a transaction-level advisory lock;
- SQLite: settings open every transaction with BEGIN IMMEDIATE, which takes the database
  write lock up front, so writers are already serialised. (Under DEFERRED they still
  could not fork the chain: WAL refuses a write from a stale snapshot with SQLITE_BUSY.)

record_attempt and record_outcome commit their own transaction. Call them outside any
outer transaction when a PATCH follows: the intent must be committed before the request
leaves, and the outcome must be kept whatever happens to the caller's transaction.
"""

import functools
import hashlib
import heapq
import hmac
import ipaddress
import itertools
import json
import re
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, models, transaction
from django.http import HttpRequest
from django.utils import timezone

from .. import observability
from ..models import (
    ENTRY_OUTCOMES,
    INSERT_ONLY_MESSAGE,
    SETTLED_OUTCOMES,
    Action,
    AuditEntry,
    AuditField,
    AuditOutcome,
    InsertOnlyError,
    Outcome,
)

GENESIS_HASH = "0" * 64
# Columns added later count only when set, so older rows still verify.
OPTIONAL_CHAIN_FIELDS = frozenset(
    {"base_updated_at", "key_id", "reason", "revert_of", "team_name", "batch_id", "drift_of"}
)
# The entry that starts the keyed chain after legacy rows (Action.CHAIN_ANCHOR, written by
# _prepare_append, never by callers) names the legacy part in its request_body:
# {"legacy_rows": n, "legacy_head": hash}.
CHECKPOINT_VERSION = 1
# Domain separation: a row's MAC input starts with 64 hex digits, a checkpoint's with this.
CHECKPOINT_CONTEXT = b"thena-admin audit checkpoint v1\n"
FIELD_NAME_MAX = 64  # AuditField.field
# Any fixed bigint; it only has to be the same for every writer of this database.
CHAIN_LOCK_ID = 0x7468656E61  # "thena"
ACTION_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
USER_AGENT_MAX = 500


@dataclass(frozen=True)
class RequestMeta:
    request_id: str
    client_ip: str | None
    user_agent: str

    @classmethod
    def of(cls, request: HttpRequest) -> "RequestMeta":
        # The id RequestIdMiddleware gave the request (also in its logs and sent to Thena).
        request_id = getattr(request, "request_id", None) or ""
        request_id = request_id or request.headers.get("X-Request-ID", "").strip()
        if not REQUEST_ID_RE.match(request_id):
            request_id = uuid.uuid4().hex
        return cls(
            request_id=request_id,
            client_ip=_normalise_ip(client_ip(request)),
            user_agent=request.headers.get("User-Agent", "")[:USER_AGENT_MAX],
        )


def client_ip(request: HttpRequest) -> str | None:
    """REMOTE_ADDR; behind DJANGO_PROXY_COUNT proxies, the address the outermost proxy
    saw (each proxy appends its client to X-Forwarded-For). Also used by django-axes."""
    count = settings.PROXY_COUNT
    if count:
        hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        hops = [hop for hop in hops if hop]
        if len(hops) >= count:
            return hops[-count]
    return request.META.get("REMOTE_ADDR")


# Keys


@dataclass(frozen=True)
class Keyring:
    """The MAC keys by id, oldest first; the last one is the current key."""

    keys: tuple[tuple[str, bytes], ...]

    @property
    def current_id(self) -> str:
        return self.keys[-1][0]

    @functools.cached_property
    def _by_id(self) -> dict[str, tuple[int, bytes]]:
        return {kid: (rank, key) for rank, (kid, key) in enumerate(self.keys)}

    def key(self, key_id: str) -> bytes | None:
        found = self._by_id.get(key_id)
        return found[1] if found else None

    def rank(self, key_id: str) -> int:
        return self._by_id[key_id][0]

    def describe(self) -> str:
        return ", ".join(
            f"{kid} (current)" if kid == self.current_id else f"{kid} (old)" for kid, _ in self.keys
        )


def key_id_of(key: str | bytes) -> str:
    """The public name of a key: the first 8 hex digits of its SHA-256."""
    raw = key.encode() if isinstance(key, str) else key
    return hashlib.sha256(raw).hexdigest()[:8]


def keyring() -> Keyring:
    """From settings.AUDIT_HMAC_KEY and AUDIT_HMAC_OLD_KEYS (oldest first)."""
    return _keyring(settings.AUDIT_HMAC_KEY, tuple(getattr(settings, "AUDIT_HMAC_OLD_KEYS", ())))


@functools.lru_cache(maxsize=8)
def _keyring(current: str, old: tuple[str, ...]) -> Keyring:
    if not current:
        raise ImproperlyConfigured("AUDIT_HMAC_KEY is empty: the audit log needs its MAC key.")
    keys: dict[str, bytes] = {}
    for key in (*old, current):
        kid = key_id_of(key)
        if kid in keys and keys[kid] != key.encode():
            raise ImproperlyConfigured(f"Two audit MAC keys share the key id {kid}.")
        keys.pop(kid, None)  # a key listed twice counts where it appears last
        keys[kid] = key.encode()
    return Keyring(tuple(keys.items()))


# Writing


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    count: int  # chained rows checked (entries and outcomes)
    first_broken: str | None = None
    head: str = GENESIS_HASH  # MAC of the last row checked
    head_id: int = 0
    legacy_rows: int = 0  # rows #1..#legacy_rows are legacy (plain SHA-256, no key)
    key_ids: tuple[str, ...] = ()  # the keys that made the keyed rows, in chain order
    checkpoints: int = 0  # checkpoints whose head was found intact in the chain


def record_attempt(**fields: Any) -> AuditEntry:
    """Append and commit one entry (the arguments of `entry_row`). Any JSON is accepted:
    text the databases cannot store (NUL, lone surrogates) is replaced by U+FFFD and
    over-long text is cut to its column, before the row is hashed (see _sanitise)."""
    entry = entry_row(**fields)
    with transaction.atomic():
        lock_chain()
        _append(entry)
        _write_fields(entry)
    if entry.outcome != Outcome.PENDING:
        observability.audit_outcome(entry=entry, outcome=entry.outcome)
    return entry


def entry_row(
    *,
    action: str,
    actor: AbstractBaseUser | None,
    ticket: dict[str, Any] | None,
    changes: dict[str, Any],
    request_body: dict[str, Any],
    outcome: str = Outcome.PENDING,
    message: str = "",
    meta: RequestMeta,
    base_updated_at: str | None = None,
    reason: str = "",
    revert_of: int | None = None,
    batch_id: str | None = None,
    actor_label: str = "",
    actor_email: str = "",
    drift_of: int | None = None,
) -> AuditEntry:
    """An entry, unsaved, for record_attempt or append_many. `ticket` has Thena's keys
    (id, ticketIdentifier, title, teamId, and teamName when known), or is None for
    actions on no ticket. Without `actor` (a change made in Thena), `actor_label` and
    `actor_email` say who made it."""
    _check_entry(action, outcome)
    ticket = ticket or {}
    return AuditEntry(
        action=action,
        actor_id=actor.pk if actor else None,
        actor_username=actor.get_username() if actor else actor_label,
        actor_email=(getattr(actor, "email", "") or "") if actor else actor_email,
        ticket_id=str(ticket.get("id") or ""),
        ticket_identifier=str(ticket.get("ticketIdentifier") or ""),
        ticket_title=str(ticket.get("title") or ""),
        team_id=str(ticket.get("teamId") or ""),
        team_name=str(ticket.get("teamName") or "") or None,
        changes=_plain_json(changes),
        request_body=_plain_json(request_body),
        request_id=meta.request_id,
        client_ip=_normalise_ip(meta.client_ip),
        user_agent=meta.user_agent[:USER_AGENT_MAX],
        outcome=outcome,
        message=message,
        base_updated_at=base_updated_at or None,
        reason=reason.strip() or None,
        revert_of=revert_of,
        batch_id=str(batch_id) if batch_id else None,
        drift_of=drift_of,
    )


class AlreadySettled(ValueError):
    """The entry was settled by another writer first; nothing was written."""


def record_outcome(
    *,
    entry: AuditEntry,
    outcome: str,
    status_code: int | None = None,
    message: str = "",
    upstream_updated_at: str | datetime | None = None,
    duration_ms: int | None = None,
    current: str | None = None,
) -> AuditOutcome:
    """Append and commit the settlement of a pending entry. An entry may be settled again
    only while its current outcome is unknown (reconciliation). `current` is the outcome
    the caller decided from ("pending" or "unknown"): if another writer has settled the
    entry since, AlreadySettled is raised and nothing is written. The check and the
    append run under the chain lock, so of two concurrent settlements one wins."""
    _check_settlement(outcome, entry.pk, entry.outcome)
    if isinstance(upstream_updated_at, datetime):
        upstream_updated_at = _iso(upstream_updated_at)
    row = AuditOutcome(
        entry=entry,
        entry_created_at=entry.created_at,
        outcome=outcome,
        status_code=status_code,
        message=message,
        upstream_updated_at=upstream_updated_at or "",
        duration_ms=duration_ms,
    )
    with transaction.atomic():
        lock_chain()
        latest = _latest_outcome(entry.pk)
        changed = current is not None and current != (latest or Outcome.PENDING)
        if latest not in (None, Outcome.UNKNOWN) or changed:
            raise AlreadySettled(f"Entry #{entry.pk} is already settled ({latest}).")
        _append(row)
    observability.audit_outcome(entry=entry, outcome=outcome, status_code=status_code)
    return row


def _check_entry(action: str, outcome: str) -> None:
    if not ACTION_RE.match(action) or action == Action.CHAIN_ANCHOR:
        raise ValueError(f"Audit action must be a dotted code like ticket.update, not {action!r}.")
    if outcome not in ENTRY_OUTCOMES:
        raise ValueError(f"An entry cannot start as {outcome!r}.")


def _check_settlement(
    outcome: str, entry_id: int, written: str, current: str = Outcome.PENDING
) -> None:
    """`outcome` may settle the entry written as `written`, now at `current`."""
    if outcome not in SETTLED_OUTCOMES:
        raise ValueError(
            f"An outcome must be one of {', '.join(SETTLED_OUTCOMES)}, not {outcome!r}."
        )
    if written != Outcome.PENDING:
        raise ValueError(f"Entry #{entry_id} was final when written ({written}).")
    if current not in (Outcome.PENDING, Outcome.UNKNOWN):
        raise AlreadySettled(f"Entry #{entry_id} is already settled ({current}).")


def canonical_json(values: dict[str, Any]) -> str:
    """The serialisation every MAC covers: sorted keys, no spaces, UTF-8, datetimes as
    UTC ISO 8601 with microseconds; optional columns only when set."""
    return json.dumps(
        {
            name: _iso(value) if isinstance(value, datetime) else value
            for name, value in values.items()
            if not (value is None and name in OPTIONAL_CHAIN_FIELDS)
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )


def row_hash(prev_hash: str, values: dict[str, Any], keys: Keyring | None = None) -> str:
    """The MAC of one row: HMAC-SHA256 with the key its `key_id` names (from `keys`,
    default the configured ones). A row without `key_id` is legacy: plain SHA-256, which
    verify_chain accepts only before the anchor."""
    message = (prev_hash + canonical_json(values)).encode()
    key_id = values.get("key_id")
    if key_id is None:
        return hashlib.sha256(message).hexdigest()
    key = (keys or keyring()).key(key_id)
    if key is None:
        raise UnknownKeyError(key_id)
    return hmac.new(key, message, hashlib.sha256).hexdigest()


class UnknownKeyError(LookupError):
    def __str__(self) -> str:
        return (
            f"its MAC key {self.args[0]} is neither AUDIT_HMAC_KEY nor one of AUDIT_HMAC_OLD_KEYS."
        )


# Checkpoints


class CheckpointError(ValueError):
    pass


@dataclass(frozen=True)
class Checkpoint:
    """A signed record of the chain's head, kept outside the database."""

    rows: int
    last_id: int
    last_mac: str
    legacy_rows: int
    time: str
    key_id: str
    sig: str = ""
    line: int = 0  # where it was read from, for messages

    def fields(self) -> dict[str, Any]:
        return {
            "v": CHECKPOINT_VERSION,
            "rows": self.rows,
            "last_id": self.last_id,
            "last_mac": self.last_mac,
            "legacy_rows": self.legacy_rows,
            "time": self.time,
            "key_id": self.key_id,
        }

    def to_json(self) -> str:
        return json.dumps({**self.fields(), "sig": self.sig}, separators=(",", ":"))

    def describe(self) -> str:
        return (
            f"checkpoint of {self.time} (line {self.line}, {self.rows} rows up to #{self.last_id})"
        )


def _checkpoint_sig(fields: dict[str, Any], key: bytes) -> str:
    payload = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(key, CHECKPOINT_CONTEXT + payload, hashlib.sha256).hexdigest()


def make_checkpoint(result: VerifyResult, keys: Keyring | None = None) -> Checkpoint:
    """A checkpoint of the head that `result` (an intact verify_chain) reached, signed
    with the current key."""
    if not result.ok:
        raise CheckpointError(f"The chain is broken: {result.first_broken}")
    keys = keys or keyring()
    unsigned = Checkpoint(
        rows=result.count,
        last_id=result.head_id,
        last_mac=result.head,
        legacy_rows=result.legacy_rows,
        time=_iso(timezone.now()),
        key_id=keys.current_id,
    )
    key = keys.key(keys.current_id)
    return Checkpoint(**{**unsigned.__dict__, "sig": _checkpoint_sig(unsigned.fields(), key)})


def parse_checkpoint(text: str, line: int = 0, keys: Keyring | None = None) -> Checkpoint:
    """One JSON line as audit_checkpoint wrote it; its signature must hold."""
    keys = keys or keyring()
    try:
        data = json.loads(text)
        fields = {
            name: data[name]
            for name in ("v", *Checkpoint.__dataclass_fields__)
            if name not in ("line",)
        }
    except (ValueError, KeyError, TypeError):
        raise CheckpointError(f"line {line} is not a checkpoint.") from None
    if fields.pop("v") != CHECKPOINT_VERSION:
        raise CheckpointError(f"line {line} is a checkpoint of an unknown version.")
    sig = fields.pop("sig")
    try:
        checkpoint = Checkpoint(**fields, line=line)
    except TypeError:
        raise CheckpointError(f"line {line} is not a checkpoint.") from None
    key = keys.key(str(checkpoint.key_id))
    if key is None:
        raise CheckpointError(
            f"line {line}: the checkpoint's key {checkpoint.key_id} is neither AUDIT_HMAC_KEY "
            "nor one of AUDIT_HMAC_OLD_KEYS."
        )
    if not isinstance(sig, str) or not hmac.compare_digest(
        sig, _checkpoint_sig(checkpoint.fields(), key)
    ):
        raise CheckpointError(f"line {line}: the checkpoint's signature does not hold (forged?).")
    return Checkpoint(**{**checkpoint.__dict__, "sig": sig})


def read_checkpoints(path: str | Path, keys: Keyring | None = None) -> list[Checkpoint]:
    """Every checkpoint of a file (one JSON line each, oldest first), all signatures
    checked, and each one's head at or after the one before."""
    keys = keys or keyring()
    try:
        with open(path, encoding="utf-8") as file:
            lines = [(number, text) for number, text in enumerate(file, 1) if text.strip()]
    except OSError as error:
        raise CheckpointError(f"{path} cannot be read ({error.strerror}).") from None
    except UnicodeDecodeError:
        raise CheckpointError(f"{path} is not a checkpoint file.") from None
    checkpoints = [parse_checkpoint(text, number, keys) for number, text in lines]
    for before, after in itertools.pairwise(checkpoints):
        if after.rows < before.rows:
            raise CheckpointError(
                f"{after.describe()} has fewer rows than the {before.describe()}: "
                "the log had shrunk when it was taken."
            )
    return checkpoints


# Verifying


def verify_chain(checkpoints: Sequence[Checkpoint] = ()) -> VerifyResult:
    """Walk the chain in id order and report the first broken link.

    Streams both tables (merged by id) and the AuditField rows (ordered by entry), so
    memory stays flat however long the log is. Detects a changed row (its MAC), a
    removed or inserted row (a gap in the ids, or a `prev_hash` that does not match the
    row before), a row not made with a configured key, a legacy row after the anchor, and
    AuditField rows that do not match their entry's changes. Removing the last rows leaves
    no trace in the chain itself: pass the `checkpoints` (read_checkpoints) to catch it:
    each one's head must still be in the chain, with its MAC, and the chain no shorter.
    """
    keys = keyring()
    head_id = _chain_head()[0]
    chain = heapq.merge(
        _stream(AuditEntry, head_id), _stream(AuditOutcome, head_id), key=lambda row: row[1]["id"]
    )
    fields = _FieldRows(head_id)
    numbers = _Numbers(head_id)
    walk = _Walk(keys)
    wanted = {checkpoint.last_id for checkpoint in checkpoints}
    seen: dict[int, str] = {}

    def result(problem: str | None) -> VerifyResult:
        return VerifyResult(
            ok=problem is None,
            count=walk.count,
            first_broken=problem,
            head=walk.prev_hash,
            head_id=walk.prev_id,
            legacy_rows=walk.legacy,
            key_ids=tuple(walk.key_ids),
        )

    for model, values in chain:
        problem = walk.check(model, values) or (
            (fields.check(values) or numbers.check(values)) if model is AuditEntry else None
        )
        if problem:
            return result(f"{model._meta.db_table} #{values['id']}: {problem}")
        if values["id"] in wanted:
            seen[values["id"]] = values["hash"]
        walk.advance(values)
    if problem := fields.leftover():
        return result(problem)
    for checkpoint in reversed(checkpoints):  # the newest first
        if problem := _check_checkpoint(checkpoint, walk, seen):
            return result(problem)
    return VerifyResult(**{**result(None).__dict__, "checkpoints": len(checkpoints)})


def _check_checkpoint(checkpoint: Checkpoint, walk: "_Walk", seen: dict[int, str]) -> str | None:
    if walk.count < checkpoint.rows or (checkpoint.last_id and checkpoint.last_id not in seen):
        return (
            f"the log has shrunk: the {checkpoint.describe()} saw rows up to "
            f"#{checkpoint.last_id}, the database now ends at #{walk.prev_id} "
            "(the newest rows were deleted)."
        )
    if checkpoint.last_id and not hmac.compare_digest(
        seen[checkpoint.last_id], checkpoint.last_mac
    ):
        return (
            f"row #{checkpoint.last_id} is not the row the {checkpoint.describe()} saw "
            "(its MAC differs: the log was cut there and rewritten)."
        )
    if walk.legacy != checkpoint.legacy_rows:
        return (
            f"the legacy part is {walk.legacy} rows, but the {checkpoint.describe()} "
            f"recorded {checkpoint.legacy_rows}."
        )
    return None


class _Walk:
    """The state of a walk along the chain: the previous link, and which part we are in
    (legacy, then keyed from the anchor on)."""

    def __init__(self, keys: Keyring):
        self.keys = keys
        self.prev_id, self.prev_hash, self.count = 0, GENESIS_HASH, 0
        self.legacy = 0
        self.keyed = False
        self.key_ids: list[str] = []

    def check(self, model, values: dict[str, Any]) -> str | None:
        row_id, prev_id = values["id"], self.prev_id
        if row_id <= prev_id:
            return f"its id is used twice (row #{row_id} appears again)."
        if row_id != prev_id + 1:
            gap = f"#{prev_id + 1}" if row_id == prev_id + 2 else f"#{prev_id + 1} to #{row_id - 1}"
            return f"the rows before it are missing ({gap})."
        if values["prev_hash"] != self.prev_hash:
            return f"prev_hash does not match the hash of row #{prev_id}."
        key_id = values["key_id"]
        if key_id is None:
            if self.keyed:
                return (
                    "a row without a MAC key after the keyed chain began: legacy rows may "
                    "only come before the anchor (forged?)."
                )
        else:
            if problem := self.check_key(model, values):
                return problem
        contents = {
            name: value for name, value in values.items() if name not in ("prev_hash", "hash")
        }
        try:
            mac = row_hash(self.prev_hash, contents, self.keys)
        except UnknownKeyError as error:
            return str(error)
        if not hmac.compare_digest(mac, values["hash"]):
            return "hash does not match its contents (the row was changed or forged)."
        return None

    def check_key(self, model, values: dict[str, Any]) -> str | None:
        key_id = values["key_id"]
        if self.keyed:
            if values.get("action") == Action.CHAIN_ANCHOR:
                return "a second chain anchor."
        elif self.legacy and not _is_anchor(model, values, self.legacy, self.prev_hash):
            return (
                f"the keyed chain must begin with the anchor entry ({Action.CHAIN_ANCHOR}) that "
                f"covers the {self.legacy} legacy rows before it."
            )
        if self.keys.key(key_id) is None:
            return str(UnknownKeyError(key_id))
        if self.key_ids and self.keys.rank(key_id) < self.keys.rank(self.key_ids[-1]):
            return (
                f"made with the old key {key_id} after rows made with the newer key "
                f"{self.key_ids[-1]}."
            )
        return None

    def advance(self, values: dict[str, Any]) -> None:
        self.prev_id, self.prev_hash = values["id"], values["hash"]
        self.count += 1
        key_id = values["key_id"]
        if key_id is None:
            self.legacy += 1
        else:
            self.keyed = True
            if not self.key_ids or self.key_ids[-1] != key_id:
                self.key_ids.append(key_id)


def _is_anchor(model, values: dict[str, Any], legacy: int, legacy_head: str) -> bool:
    return (
        model is AuditEntry
        and values["action"] == Action.CHAIN_ANCHOR
        and values["request_body"] == {"legacy_rows": legacy, "legacy_head": legacy_head}
    )


class _FieldRows:
    """Walks AuditField in entry order alongside the chain: each entry's rows must be
    exactly the keys of its `changes` (cut to the column), with its created_at."""

    def __init__(self, head_id: int):
        self.rows = (
            AuditField.objects.filter(entry_id__lte=head_id)
            .order_by("entry_id", "id")
            .values_list("id", "entry_id", "field", "created_at")
            .iterator(chunk_size=2000)
        )
        self.current = next(self.rows, None)

    def check(self, entry: dict[str, Any]) -> str | None:
        names = set()
        expected = _field_names(entry["changes"])
        while self.current and self.current[1] <= entry["id"]:
            field_id, entry_id, name, created_at = self.current
            if entry_id != entry["id"]:
                return f"{AuditField._meta.db_table} #{field_id} points at no entry (#{entry_id})."
            if name not in expected or name in names or created_at != entry["created_at"]:
                return f"{AuditField._meta.db_table} #{field_id} ({name}) does not match the entry."
            names.add(name)
            self.current = next(self.rows, None)
        if missing := sorted(expected - names):
            return f"{AuditField._meta.db_table} rows are missing for {', '.join(missing)}."
        return None

    def leftover(self) -> str | None:
        if self.current:
            field_id, entry_id = self.current[:2]
            return f"{AuditField._meta.db_table} #{field_id} points at no entry (#{entry_id})."
        return None


# Appending


def append_many(rows: Iterable[AuditEntry | AuditOutcome]) -> None:
    """Append `rows`, in their order, and commit them: one transaction under the chain
    lock and one bulk INSERT per table (entries, outcomes, the entries' AuditField rows).
    For synthetic history and imports (seed_audit), where a record_attempt per row would
    cost a transaction each.

    Build the rows unsaved, with what record_attempt and record_outcome would give them
    (`changes` and `request_body` plain JSON); they are checked as those check theirs
    and made storable the same way (_sanitise). What the chain owns is set here,
    replacing anything the caller set: id, number (entries), prev_hash, key_id, hash,
    and an outcome's entry_created_at. `created_at` is kept when set (history: give
    increasing times), else it is now. An outcome names its entry by the object, which
    may come earlier in `rows`, or by id, and must settle an entry written pending and
    not settled for good since (AlreadySettled otherwise). `rows` may be a generator:
    each row is linked before the next is drawn, so a row can name the id or number of
    one before it (revert_of). No metrics are counted.
    """
    with transaction.atomic():
        lock_chain()
        keys = keyring()
        last_id, last_hash = _prepare_append(keys)
        number = _next_number()
        # [outcome written, current outcome, created_at] by entry id; read in one query for
        # the entries a list's outcomes settle.
        states = _entry_states(rows) if isinstance(rows, list | tuple) else {}
        now = timezone.now()
        entries, outcomes, fields = [], [], []
        for row in rows:
            if isinstance(row, AuditEntry):
                _check_entry(row.action, row.outcome)
                row.client_ip = _normalise_ip(row.client_ip)
                row.number, number = number, number + 1
            else:
                if row.entry_id is None:  # named by the object: an entry earlier in `rows`
                    row.entry_id = row.entry.pk
                state = states.get(row.entry_id) or _entry_state(row.entry_id)
                if state is None:
                    raise ValueError(
                        f"Outcome of entry #{row.entry_id}: the entry must be in the log or "
                        "come before the outcome."
                    )
                _check_settlement(row.outcome, row.entry_id, *state[:2])
                row.entry_created_at = state[2]
                state[1] = row.outcome
                states[row.entry_id] = state
            _sanitise(row)
            row.created_at = row.created_at or now
            _link(row, last_id, last_hash, keys)
            last_id, last_hash = row.id, row.hash
            if isinstance(row, AuditEntry):
                states[row.id] = [row.outcome, row.outcome, row.created_at]
                entries.append(row)
                fields += [
                    AuditField(entry_id=row.id, field=name, created_at=row.created_at)
                    for name in sorted(_field_names(row.changes))
                ]
            else:
                outcomes.append(row)
        AuditEntry.objects.bulk_create(entries)
        AuditOutcome.objects.bulk_create(outcomes)
        AuditField.objects.bulk_create(fields)


def _entry_states(rows: Sequence[AuditEntry | AuditOutcome]) -> dict[int, list]:
    ids = {row.entry_id for row in rows if isinstance(row, AuditOutcome) and row.entry_id}
    found = (
        AuditEntry.objects.filter(pk__in=ids)
        .with_current_outcome()
        .values_list("pk", "outcome", "current_outcome", "created_at")
    )
    return {pk: [outcome, current, created] for pk, outcome, current, created in found}


def _entry_state(entry_id: int | None) -> list | None:
    """[outcome written, current outcome, created_at] of an entry in the log, or None."""
    found = (
        AuditEntry.objects.filter(pk=entry_id)
        .with_current_outcome()
        .values_list("outcome", "current_outcome", "created_at")
        .first()
    )
    return list(found) if found else None


def _append(row: AuditEntry | AuditOutcome) -> None:
    """Link `row` to the chain's last row and insert it. The caller holds the chain lock."""
    keys = keyring()
    if isinstance(row, AuditEntry):
        last_id, last_hash, row.number = _chain_tail(keys)
    else:
        last_id, last_hash = _prepare_append(keys)
    _sanitise(row)
    row.created_at = timezone.now()
    _link(row, last_id, last_hash, keys)
    _insert(row)


def _insert(row: AuditEntry | AuditOutcome) -> None:
    """row.save(force_insert=True) as one plain INSERT of every column, each value
    prepared by its field as the ORM's insert prepares it, without the ORM compiling the
    statement anew each time (that was half of an edit's audit writing). Audit models
    have no save signals to send: audit writes happen here, never in signals."""
    if not row._state.adding:
        raise InsertOnlyError(INSERT_ONLY_MESSAGE)
    row._prepare_related_fields_for_save(operation_name="save")
    sql, fields = _insert_sql(type(row))
    with connection.cursor() as cursor:
        cursor.execute(
            sql, [field.get_db_prep_save(field.pre_save(row, True), connection) for field in fields]
        )
    row._state.adding = False
    row._state.db = connection.alias


@functools.cache
def _insert_sql(model) -> tuple[str, tuple[models.Field, ...]]:
    fields = tuple(field for field in model._meta.local_concrete_fields if not field.generated)
    quote = connection.ops.quote_name
    columns = ", ".join(quote(field.column) for field in fields)
    marks = ", ".join("%s" for _ in fields)
    return f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES ({marks})", fields


def _chain_tail(keys: Keyring) -> tuple[int, str, int]:
    """_prepare_append and then _next_number, in one query unless the anchor is due: the
    id and MAC to link the next entry to, and its number. The caller holds the chain lock."""
    entries, outcomes = AuditEntry._meta.db_table, AuditOutcome._meta.db_table
    number = connection.ops.quote_name("number")
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id, hash, key_id, (SELECT MAX({number}) FROM {entries}) FROM {entries} "
            f"WHERE id = (SELECT MAX(id) FROM {entries}) "
            f"UNION ALL SELECT id, hash, key_id, NULL FROM {outcomes} "
            f"WHERE id = (SELECT MAX(id) FROM {outcomes})"
        )
        rows = cursor.fetchall()
    last_id, last_hash, last_key, _ = max(rows, default=(0, GENESIS_HASH, None, None))
    if last_id != 0 and last_key is None:  # legacy rows end the chain: the anchor first
        last_id, last_hash = _prepare_append(keys)
        return last_id, last_hash, _next_number()
    last_number = next((row[3] for row in rows if row[3] is not None), None)
    return last_id, last_hash, (last_number or 0) + 1


def _latest_outcome(entry_id: int) -> str | None:
    """The outcome of the entry's latest AuditOutcome row, or None (no settlement yet)."""
    table = AuditOutcome._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT outcome FROM {table} WHERE entry_id = %s ORDER BY id DESC LIMIT 1",
            [entry_id],
        )
        found = cursor.fetchone()
    return found[0] if found else None


def _link(row: AuditEntry | AuditOutcome, last_id: int, last_hash: str, keys: Keyring) -> None:
    """Make `row` the next row after #last_id: its id, prev_hash, key_id and MAC."""
    row.id = last_id + 1
    row.prev_hash = last_hash
    row.key_id = keys.current_id
    row.hash = row_hash(last_hash, {name: getattr(row, name) for name in row.CHAIN_FIELDS}, keys)


def _next_number() -> int:
    """The number of the next entry (1, 2, 3, ...). The caller holds the chain lock."""
    last = AuditEntry.objects.aggregate(last=models.Max("number"))["last"]
    return (last or 0) + 1


def _prepare_append(keys: Keyring) -> tuple[int, str]:
    """The id and MAC to link the next row to. When the chain ends in legacy rows, first
    appends the anchor entry that starts the keyed chain. The caller holds the chain lock."""
    last_id, last_hash, last_key = _chain_head(with_key=True)
    if last_id == 0 or last_key is not None:
        return last_id, last_hash
    anchor = AuditEntry(
        created_at=timezone.now(),
        action=Action.CHAIN_ANCHOR,
        request_body={"legacy_rows": last_id, "legacy_head": last_hash},
        outcome=Outcome.SUCCEEDED,
        message=(
            f"The keyed chain begins here. Rows #1 to #{last_id} were written before the "
            "MAC key and carry plain SHA-256 hashes; this row's MAC covers their head."
        ),
        number=_next_number(),
    )
    _link(anchor, last_id, last_hash, keys)
    anchor.save(force_insert=True)
    return anchor.id, anchor.hash


def _write_fields(entry: AuditEntry) -> None:
    """The entry's AuditField rows, in one INSERT (bulk_create's, without its overhead)."""
    names = sorted(_field_names(entry.changes))
    if not names:
        return
    created_at = AuditField._meta.get_field("created_at").get_db_prep_save(
        entry.created_at, connection
    )
    quote = connection.ops.quote_name
    columns = ", ".join(quote(column) for column in ("entry_id", "field", "created_at"))
    rows = ", ".join("(%s, %s, %s)" for _ in names)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {quote(AuditField._meta.db_table)} ({columns}) VALUES {rows}",
            [value for name in names for value in (entry.pk, name, created_at)],
        )


def _field_names(changes: dict[str, Any]) -> set[str]:
    return {name[:FIELD_NAME_MAX] for name in changes}


def lock_chain() -> None:
    """Take the chain lock in the caller's transaction, until it ends. A transaction that
    appends after taking other locks (rows another appender may wait on) takes it first,
    or two such transactions deadlock."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CHAIN_LOCK_ID])


def _chain_head(with_key: bool = False):
    """The id and MAC (and with_key, the key id) of the chain's last row, whichever table
    holds it (one query)."""
    entries, outcomes = AuditEntry._meta.db_table, AuditOutcome._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id, hash, key_id FROM {entries} WHERE id = (SELECT MAX(id) FROM {entries}) "
            f"UNION ALL SELECT id, hash, key_id FROM {outcomes} "
            f"WHERE id = (SELECT MAX(id) FROM {outcomes})"
        )
        head = max(cursor.fetchall(), default=(0, GENESIS_HASH, None))
    return tuple(head) if with_key else tuple(head[:2])


class _Numbers:
    """Entry numbers, read beside the chain walk: 1, 2, 3, ... in id order."""

    def __init__(self, head_id: int) -> None:
        self.rows = (
            AuditEntry.objects.filter(id__lte=head_id)
            .order_by("id")
            .values_list("id", "number")
            .iterator(chunk_size=2000)
        )
        self.expected = 1

    def check(self, entry: dict[str, Any]) -> str | None:
        entry_id, number = next(self.rows, (None, None))
        if entry_id != entry["id"] or number != self.expected:
            return f"its number is {number}, not {self.expected} (entries are numbered 1, 2, 3...)."
        self.expected += 1
        return None


def _stream(model, head_id: int) -> Iterator[tuple[type, dict[str, Any]]]:
    rows = (
        model.objects.filter(id__lte=head_id)
        .order_by("id")
        .values_list(*model.CHAIN_FIELDS, "prev_hash", "hash")
        .iterator(chunk_size=2000)
    )
    names = (*model.CHAIN_FIELDS, "prev_hash", "hash")
    for row in rows:
        yield model, dict(zip(names, row, strict=True))


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _plain_json(value: dict[str, Any]) -> dict[str, Any]:
    # What the database gives back must hash like what was written: no tuples, no
    # non-string keys, no objects that only a custom encoder understands.
    return json.loads(json.dumps(value, allow_nan=False))


# Text both databases store and give back unchanged (PostgreSQL's text and jsonb refuse
# NUL; lone surrogates cannot be encoded as UTF-8, nor stored in jsonb).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def clean_text(value: str) -> str:
    """NUL and lone surrogates become U+FFFD; a valid surrogate pair becomes its
    character."""
    if not _UNSTORABLE.search(value):
        return value
    value = value.replace("\x00", REPLACEMENT)
    return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def clean_json(value: Any) -> Any:
    """`value` (plain JSON) as PostgreSQL's jsonb will give it back: clean text (keys too),
    no negative zero, and integral floats beyond 2**53 as integers (jsonb prints 1e16 as
    10000000000000000, which reads back as an int)."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(name): clean_json(item) for name, item in value.items()}
    if isinstance(value, list):
        return [clean_json(item) for item in value]
    if isinstance(value, float):
        if value == 0:
            return 0.0
        if value.is_integer() and abs(value) >= 2**53:
            return int(value)
    return value


def _sanitise(row: AuditEntry | AuditOutcome) -> None:
    """Make `row` storable as is on both databases, before it is hashed: clean text and
    JSON, and text cut to its column's max_length."""
    for attname, max_length in _columns(type(row)):
        value = getattr(row, attname)
        if isinstance(value, str):
            clean = clean_text(value)
            if max_length:
                clean = clean[:max_length]
            if clean is not value:
                setattr(row, attname, clean)
        elif isinstance(value, dict | list):
            setattr(row, attname, clean_json(value))


@functools.cache
def _columns(model) -> tuple[tuple[str, int | None], ...]:
    """The attribute name and max_length (None when it has none) of each column that
    holds text or JSON."""
    return tuple(
        (field.attname, getattr(field, "max_length", None))
        for field in model._meta.concrete_fields
        if isinstance(
            field,
            models.CharField | models.TextField | models.GenericIPAddressField | models.JSONField,
        )
    )


def _normalise_ip(value: str | None) -> str | None:
    # PostgreSQL returns inet values in canonical form; hash that form from the start.
    try:
        return str(ipaddress.ip_address((value or "").strip()))
    except ValueError:
        return None
