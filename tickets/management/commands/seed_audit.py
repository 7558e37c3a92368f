"""Synthetic audit entries for benchmarks and demos: a valid, continuing hash chain.

Rows are built in Python as plain column values, linked and MACed in one tight loop with
the chain's own functions (row_hash over each model's CHAIN_FIELDS, with the current
AUDIT_HMAC_KEY), and written batch by batch: each batch is one transaction under the
chain lock that starts from the chain's head as it then is (anchoring a legacy log
first, as append_many does), so a real edit that lands between two batches simply
becomes part of the chain. PostgreSQL takes each table's rows through one COPY, SQLite
through one executemany of prepared tuples: Django's bulk_create spent four fifths of
the run building SQL. Every value made here is plain ASCII within its column's length,
so it is stored as it is hashed (what append_many's _sanitise would make of it).

created_at is spread over the last `--days` days in increasing order and ends a few
seconds before now. The same seed gives the same entries (ids and times aside).

The chart's counts (AuditCount) follow by themselves: the triggers of migration 0016 see
the COPY (once per statement on PostgreSQL) and the executemany (per row on SQLite).
"""

import gc
import io
import json
import random
import sys
import time
from bisect import bisect
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from operator import itemgetter

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, connection, connections, models, transaction
from psycopg import Copy
from psycopg.copy import FileWriter

from tickets.audit.chain import (
    _next_number,
    _prepare_append,
    clean_text,
    keyring,
    lock_chain,
    row_hash,
)
from tickets.models import SETTLED_OUTCOMES, Action, AuditEntry, AuditField, AuditOutcome, Outcome
from tickets.thena import schema
from tickets.thena.sandbox import SandboxApp

ACTORS = [
    "amelia.hart",
    "bruno.costa",
    "chen.wei",
    "dana.okafor",
    "elif.yilmaz",
    "felix.brandt",
    "grace.mensah",
    "hiro.tanaka",
    "ines.moreau",
    "jonas.berg",
    "kavya.rao",
    "liam.walsh",
]
# (field, weight): the fields managers really touch most.
FIELD_WEIGHTS = {
    "statusId": 30,
    "priorityId": 18,
    "assignedAgentId": 16,
    "description": 6,
    "title": 5,
    "typeId": 5,
    "dueDate": 4,
    "subTeamId": 3,
    "isPrivate": 2,
    "metadata": 2,
    "customFieldValues": 2,
    "sentimentId": 1,
}
# (outcome, weight) of ticket.update entries; conflict and denied are single rows.
OUTCOME_WEIGHTS = {
    Outcome.SUCCEEDED: 900,
    Outcome.FAILED: 35,
    Outcome.UNKNOWN: 12,
    Outcome.CONFLICT: 25,
    Outcome.DENIED: 15,
    Outcome.PENDING: 3,
}
FAILURES = [
    (400, "statusId 'ST0BADID' not found"),
    (422, "dueDate must be a valid ISO 8601 date-time"),
    (429, "Rate limit exceeded, retry after 12 seconds"),
    (500, "Internal server error"),
    (503, "Service temporarily unavailable"),
]
TEXT = (
    "customer reports the export fails after the upgrade and the invoice totals look wrong "
    "when the plan changes mid cycle please check the logs and reply with a workaround "
    "escalated to engineering because the mobile app crashes on login for some accounts"
)
WORDS = TEXT.split()
ID_CHARS = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"
AGENTS = ["Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0", "Mozilla/5.0 (Macintosh) Safari/17.4"]
# Reasons as managers type them; about one edit in four has one, and a few are reverts.
REASONS = [
    "Customer asked for an escalation on the call",
    "Duplicate of an older ticket",
    "Reassigned after the on-call handover",
    "SLA breach risk, raising priority",
    "Customer confirmed the fix works",
    "Wrong team picked at intake",
    "Billing dispute settled by finance",
    "Closing as agreed with the account owner",
]
REASON_SHARE = 0.25
REVERT_SHARE = 0.004


class Command(BaseCommand):
    help = (
        "Write N synthetic audit entries (with outcomes and fields) continuing the chain, "
        "for benchmarks and demos. Entries cannot be deleted, so it runs only with "
        "DJANGO_DEBUG=true unless --force is given."
    )

    def add_arguments(self, parser):
        parser.add_argument("--count", type=int, required=True, help="how many entries to write")
        parser.add_argument(
            "--batch",
            type=int,
            default=20_000,
            help="entries per transaction, under the chain lock (default 20000)",
        )
        parser.add_argument(
            "--days",
            type=int,
            default=180,
            help="spread the entries over this many days up to now (default 180)",
        )
        parser.add_argument(
            "--seed", type=int, default=1, help="random seed: the same seed, the same entries"
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="run with DJANGO_DEBUG off too (benchmarks, tests): the fake entries join "
            "the real audit log for good",
        )

    def handle(self, *args, count, batch, days, seed, force, **options):
        if not settings.DEBUG and not force:
            raise CommandError(
                "seed_audit adds fake entries to the audit log, which can never be deleted, "
                "so it runs only with DJANGO_DEBUG=true; add --force for a benchmark database."
            )
        if count < 1 or batch < 1 or days < 1:
            raise CommandError("--count, --batch and --days must be positive.")
        maker = _Maker(random.Random(seed), _actors(), SandboxApp().tickets(), count, days)
        # Reasons and reverts draw from their own generator: the rest stays as it was.
        maker.why = random.Random(seed + 1)
        started = time.perf_counter()

        def progress(written: int, rows: int) -> None:
            if options["verbosity"] > 1 or written == count:
                seconds = time.perf_counter() - started
                self.stdout.write(
                    f"{written} entries written ({rows} chain rows) in {seconds:.1f} s: "
                    f"{written / seconds:,.0f} entries/s."
                )

        # Every row lives until its batch is written, and none is in a cycle: the cyclic
        # GC would walk them again and again and find nothing to free.
        gc.disable()
        try:
            _seed(maker, count, batch, progress)
        finally:
            gc.enable()


def _actors():
    User = get_user_model()
    users = []
    for username in ACTORS:
        user, created = User.objects.get_or_create(
            username=username, defaults={"email": f"{username}@example.com"}
        )
        if created:
            user.set_unusable_password()
            user.save()
        users.append(user)
    return users


Head = tuple[int, str, int]  # the chain's last id and MAC, and the next entry number


def _seed(maker: "_Maker", count: int, batch: int, progress) -> None:
    """Write `count` entries in batches of `batch`.

    SQLite runs in this process, so each batch is built and written in turn, under the
    chain lock. On PostgreSQL each batch is built, and formatted as COPY data, while a
    thread writes the one before on this same connection (so inside the caller's
    transaction too): the server indexes rows on one core while Python makes the next
    ones on the other. That thread holds the GIL only between 128 kB blocks of COPY data.

    A batch is built on the head the previous batch will leave. Its writer checks that
    head under the chain lock; if another writer appended meanwhile, nothing of it is
    written: the maker goes back to its state before that batch and builds it again,
    under the lock, on the real head (and the batch built on top of it is dropped)."""
    writer = _Writer()
    if connection.vendor != "postgresql":
        done = rows = 0
        while done < count:
            size = min(batch, count - done)
            rows += writer.write_fresh(maker, size)[1]
            done += size
            progress(done, rows)
        return
    shared = connections[DEFAULT_DB_ALIAS]
    shared.inc_thread_sharing()
    switch = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)  # hand the GIL to the writer soon after it asks
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="seed_audit")
    try:
        pool.submit(_use, shared).result()
        head = pool.submit(_head_locked).result()
        done = made = rows = 0
        queued = None  # (the write, the maker's state before its batch, its size)
        while done < count:
            built = None
            if made < count:
                size = min(batch, count - made)
                state = maker.state()
                link = _Link(head, keyring())
                built = (writer.copy_data(maker.batch(size, link)), head, state, size)
                head = link.head
                made += size
            if queued:
                future, state, size = queued
                queued = None
                written = future.result()
                if written is None:  # the chain moved on: build that batch again
                    maker.restore(state)
                    head, written = pool.submit(writer.write_fresh, maker, size).result()
                    built, made = None, done + size
                done += size
                rows += written
                progress(done, rows)
            if built:
                data, at, state, size = built
                queued = (pool.submit(writer.write_copy, data, at), state, size)
    finally:
        pool.shutdown(wait=True)
        sys.setswitchinterval(switch)
        shared.dec_thread_sharing()


def _use(shared) -> None:
    """Makes the calling thread use the connection `shared` (as LiveServerThread does)."""
    connections[DEFAULT_DB_ALIAS] = shared


def _head() -> Head:
    """Where the next row goes, anchoring a legacy chain first. Holds the chain lock."""
    last_id, last_hash = _prepare_append(keyring())
    return last_id, last_hash, _next_number()


def _head_locked() -> Head:
    with transaction.atomic():
        lock_chain()
        return _head()


class _Link:
    """The chain's head while a batch is built: links each row to the one before (its
    id, prev_hash, key_id and MAC, as chain._link does) and numbers the entries. A row
    holds exactly its model's CHAIN_FIELDS when it is hashed, then gets the rest."""

    def __init__(self, head: Head, keys):
        self.last_id, self.last_hash, self.number = head
        self.keys, self.key_id = keys, keys.current_id

    @property
    def head(self) -> Head:
        return self.last_id, self.last_hash, self.number

    def entry(self, row: dict) -> None:
        self._link(row)
        row["number"], self.number = self.number, self.number + 1

    def _link(self, row: dict) -> None:
        prev = self.last_hash
        row["id"] = self.last_id = self.last_id + 1
        row["key_id"] = self.key_id
        self.last_hash = row_hash(prev, row, self.keys)
        row["prev_hash"], row["hash"] = prev, self.last_hash

    outcome = _link


class _Table:
    """One audit table: its columns in order, the values of those a row does not hold
    (the model's defaults), and how the database takes the values Python holds."""

    def __init__(self, model, *, auto_id: bool = False):
        fields = [
            field
            for field in model._meta.concrete_fields
            if not (auto_id and field.primary_key)  # the table's sequence numbers them
        ]
        self.name = connection.ops.quote_name(model._meta.db_table)
        self.columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)
        self.width = len(fields)
        self.pairs = [(field.attname, _default(field)) for field in fields]
        self.adapters = []  # (position, function), for the columns that need one
        for index, field in enumerate(fields):
            if isinstance(field, models.JSONField):
                self.adapters.append((index, json.dumps))
            elif isinstance(field, models.DateTimeField) and connection.vendor == "sqlite":
                # As Django stores them there: naive, in the connection's time zone.
                zone = connection.timezone
                self.adapters.append(
                    (
                        index,
                        lambda value, zone=zone: str(value.astimezone(zone).replace(tzinfo=None)),
                    )
                )

    def values(self, rows: list[dict]) -> Iterator[list]:
        pairs, adapters = self.pairs, self.adapters
        if rows and all(name in rows[0] for name, _ in pairs):  # as the maker makes them
            take = itemgetter(*(name for name, _ in pairs))
        else:  # a column the maker does not know of: its default

            def take(row):
                return [row.get(name, default) for name, default in pairs]

        for row in rows:
            values = list(take(row))
            for index, adapt in adapters:
                values[index] = adapt(values[index])
            yield values


class _Writer:
    """Appends a batch's rows to the three audit tables in one transaction under the
    chain lock: COPY on PostgreSQL, executemany on SQLite."""

    def __init__(self):
        self.tables = (_Table(AuditEntry), _Table(AuditOutcome), _Table(AuditField, auto_id=True))

    def write_fresh(self, maker: "_Maker", size: int) -> tuple[Head, int]:
        """Build the next batch on the chain's head and write it, all under the lock."""
        with transaction.atomic():
            lock_chain()
            maker.forget_settled()
            link = _Link(_head(), keyring())
            rows = maker.batch(size, link)
            if connection.vendor == "postgresql":
                self._copy(self.copy_data(rows))
            else:
                self._executemany(rows)
            return link.head, len(rows[0]) + len(rows[1])

    def write_copy(self, data: tuple[tuple[bytes, int], ...], at: Head) -> int | None:
        """Write a batch's COPY data (copy_data) built on `at`: the number of chain rows
        written, or None (nothing written) if the chain's head is no longer `at`."""
        with transaction.atomic():
            lock_chain()
            if _head() != at:
                return None
            return self._copy(data)

    def copy_data(self, rows: tuple[list, ...]) -> tuple[tuple[bytes, int], ...]:
        """Each table's rows as COPY text, formatted by psycopg as COPY itself would, and
        how many rows that is. Needs no server round trip."""
        connection.ensure_connection()
        data = []
        with connection.connection.cursor() as cursor:
            for table, table_rows in zip(self.tables, rows, strict=True):
                buffer = io.BytesIO()
                with Copy(cursor, binary=False, writer=FileWriter(buffer)) as copy:
                    for values in table.values(table_rows):
                        copy.write_row(values)
                data.append((buffer.getvalue(), len(table_rows)))
        return tuple(data)

    def _copy(self, data: tuple[tuple[bytes, int], ...]) -> int:
        connection.ensure_connection()
        with connection.connection.cursor() as cursor:
            for table, (text, _) in zip(self.tables, data, strict=True):
                if text:
                    with cursor.copy(f"COPY {table.name} ({table.columns}) FROM STDIN") as copy:
                        copy.write(text)
        return data[0][1] + data[1][1]

    def _executemany(self, rows: tuple[list, ...]) -> None:
        connection.ensure_connection()
        for table, table_rows in zip(self.tables, rows, strict=True):
            if table_rows:
                marks = ", ".join("?" * table.width)
                connection.connection.executemany(
                    f"INSERT INTO {table.name} ({table.columns}) VALUES ({marks})",
                    table.values(table_rows),
                )


def _default(field):
    return None if field.primary_key else field.get_default()


def _chain_defaults(model) -> dict:
    """What a row holds before it is linked: every CHAIN_FIELDS column (those added
    later too) but the id and key, at the model's default."""
    fields = {field.attname: field for field in model._meta.concrete_fields}
    return {
        name: fields[name].get_default()
        for name in model.CHAIN_FIELDS
        if name not in ("id", "key_id")
    }


def _picker(rng, population, weights):
    """rng.choices(population, weights)[0], with the cumulative weights made once: the
    same draw from the same state."""
    cum = list(accumulate(weights))
    total, hi, random_ = cum[-1] + 0.0, len(cum) - 1, rng.random
    return lambda: population[bisect(cum, random_() * total, 0, hi)]


class _Maker:
    def __init__(self, rng, actors, tickets, count, days):
        self.rng = rng
        # Every column a row does not set (those added later too) as the model would.
        self.entry_defaults = _chain_defaults(AuditEntry)
        self.outcome_defaults = _chain_defaults(AuditOutcome)
        actor_weights = [rng.uniform(0.3, 1.0) for _ in actors]
        self.actor = _picker(
            rng,
            [(actor.pk, actor.username, actor.email) for actor in actors],
            actor_weights,
        )
        ticket_weights = [1 / (rank + 1) ** 0.6 for rank in range(len(tickets))]
        self.ticket = _picker(
            rng,
            [
                (
                    clean_text(str(ticket["id"]))[:64],
                    clean_text(str(ticket["ticketIdentifier"]))[:64],
                    clean_text(str(ticket["title"])),
                    clean_text(str(ticket["teamId"]))[:64],
                )
                for ticket in tickets
            ],
            ticket_weights,
        )
        known = schema.field_map()
        names = [name for name in FIELD_WEIGHTS if name in known]
        self.field = _picker(rng, names, [FIELD_WEIGHTS[name] for name in names])
        self.kinds = {name: known[name].kind for name in names}
        self.outcome = _picker(rng, list(OUTCOME_WEIGHTS), list(OUTCOME_WEIGHTS.values()))
        self.step = timedelta(days=days) / count
        self.start = datetime.now(UTC) - timedelta(seconds=5) - self.step * count
        self.number = 0
        self.clock = self.start
        self.later = deque()  # (chain id due, entry, its unknown outcome's id) to reconcile
        self.why = random.Random(0)
        self.edits = deque(maxlen=500)  # recent edits, which a revert may undo

    def state(self) -> tuple:
        """What the next batch depends on, for restore()."""
        return (
            self.rng.getstate(),
            self.why.getstate(),
            self.number,
            self.clock,
            tuple(self.later),
            tuple(self.edits),
        )

    def restore(self, state: tuple) -> None:
        rng, why, self.number, self.clock, later, edits = state
        self.rng.setstate(rng)
        self.why.setstate(why)
        self.later = deque(later)
        self.edits = deque(edits, maxlen=self.edits.maxlen)

    def forget_settled(self) -> None:
        """Drop the entries waiting to be reconciled that something else settled between
        two batches (reconcile_audit): an unknown is settled again once, as append_many
        would insist."""
        if not self.later:
            return
        ours = [unknown_id for _, _, unknown_id in self.later]
        entry_ids = [entry["id"] for _, entry, _ in self.later]
        others = set(
            AuditOutcome.objects.filter(entry_id__in=entry_ids)
            .exclude(id__in=ours)
            .values_list("entry_id", flat=True)
        )
        if others:
            self.later = deque(item for item in self.later if item[1]["id"] not in others)

    def batch(self, size: int, link: _Link) -> tuple[list[dict], list[dict], list[dict]]:
        """The next `size` entries, their outcomes and their AuditField rows, linked in
        chain order (a revert names an earlier entry's id and number; a reconciliation
        is due at a chain id)."""
        rng = self.rng
        entries, outcomes, fields = [], [], []
        for _ in range(size):
            # Jitter within the first half of each slot: increasing, and never past now.
            self.clock = self.start + self.step * (self.number + rng.uniform(0, 0.5))
            self.number += 1
            entry, settles_as = self.entry()
            self.explain(entry)
            link.entry(entry)
            entries.append(entry)
            created = entry["created_at"]
            fields += [
                {"entry_id": entry["id"], "field": name, "created_at": created}
                for name in sorted(entry["changes"])
            ]
            head_id = entry["id"]
            settle = settles_as and self.settle(entry, settles_as)
            rows = [settle] if settle else []
            while self.later and self.later[0][0] <= head_id:
                rows.append(self.reconcile(self.later.popleft()[1]))
            for row in rows:
                link.outcome(row)
                outcomes.append(row)
                head_id = row["id"]
            if settle and settle["outcome"] == Outcome.UNKNOWN and rng.random() < 0.6:
                self.later.append((head_id + rng.randint(20, 400), entry, settle["id"]))
        return entries, outcomes, fields

    def entry(self) -> tuple[dict, str | None]:
        """A new entry and, for an edit that will be answered, its outcome."""
        rng = self.rng
        actor_id, username, email = self.actor()
        created = self.clock
        if rng.random() < 0.003:
            return self.export(actor_id, username, email, created), None
        ticket_id, identifier, title, team_id = self.ticket()
        names = {}  # in the order drawn (a set's order would change with the hash seed)
        for _ in range(rng.choice((1, 1, 1, 2, 2, 3))):
            names[self.field()] = None
        changes = {name: self.change(name) for name in names}
        outcome = self.outcome()
        written = outcome if outcome in (Outcome.CONFLICT, Outcome.DENIED) else Outcome.PENDING
        if outcome == Outcome.CONFLICT:
            message = "Changed in Thena meanwhile: " + ", ".join(sorted(changes))
        elif outcome == Outcome.DENIED:
            message = "The user may not edit tickets of this team."
        else:
            message = ""
        entry = {
            **self.entry_defaults,
            "created_at": created,
            "action": Action.TICKET_UPDATE.value,
            "actor_id": actor_id,
            "actor_username": username,
            "actor_email": email,
            "ticket_id": ticket_id,
            "ticket_identifier": identifier,
            "ticket_title": title,
            "team_id": team_id,
            "changes": changes,
            "request_body": {name: change["after"] for name, change in changes.items()},
            "request_id": f"{rng.getrandbits(64):016x}",
            "client_ip": f"10.{rng.randint(0, 3)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
            "user_agent": rng.choice(AGENTS),
            "outcome": str(written),
            "message": message,
        }
        return entry, outcome if outcome in SETTLED_OUTCOMES else None

    def explain(self, entry: dict) -> None:
        """A reason for some edits; a few edits revert a recent one (their reason says so)."""
        if entry["action"] != Action.TICKET_UPDATE or not entry["changes"]:
            return
        why = self.why
        if self.edits and why.random() < REVERT_SHARE:
            undone = why.choice(self.edits)
            entry["revert_of"] = undone["id"]
            entry["reason"] = f"Revert #{undone['number']}: {why.choice(REASONS).lower()}"
        elif why.random() < REASON_SHARE:
            entry["reason"] = why.choice(REASONS)
        self.edits.append(entry)

    def export(self, actor_id, username, email, created) -> dict:
        filters = self.rng.choice([{}, {"outcome": "failed"}, {"field": "statusId"}])
        return {
            **self.entry_defaults,
            "created_at": created,
            "action": Action.AUDIT_EXPORT.value,
            "actor_id": actor_id,
            "actor_username": username,
            "actor_email": email,
            "ticket_id": "",
            "ticket_identifier": "",
            "ticket_title": "",
            "team_id": "",
            "changes": {},
            "request_body": {"filters": filters},
            "request_id": f"{self.rng.getrandbits(64):016x}",
            "client_ip": "10.0.0.7",
            "user_agent": AGENTS[0],
            "outcome": Outcome.SUCCEEDED.value,
            "message": "",
        }

    def settle(self, entry: dict, outcome: str) -> dict:
        rng = self.rng
        # Keep the outcome before the next entry's time so created_at grows with the id.
        budget = int(self.step.total_seconds() * 400)  # 0.4 of a slot, in ms
        duration = min(int(rng.lognormvariate(5.5, 0.6)), budget)
        status, message, updated = 200, "", ""
        if outcome == Outcome.FAILED:
            status, message = rng.choice(FAILURES)
        elif outcome == Outcome.UNKNOWN:
            status, message = None, "Timed out after sending; Thena may have applied it."
            duration = min(10_000, budget)
        else:
            updated = _iso_z(entry["created_at"] + timedelta(milliseconds=duration))
        return {
            **self.outcome_defaults,
            "entry_id": entry["id"],
            "entry_created_at": entry["created_at"],
            "created_at": entry["created_at"] + timedelta(milliseconds=duration),
            "outcome": str(outcome),
            "status_code": status,
            "message": message,
            "upstream_updated_at": updated,
            "duration_ms": duration,
        }

    def reconcile(self, entry: dict) -> dict:
        applied = self.rng.random() < 0.7
        return {
            **self.outcome_defaults,
            "entry_id": entry["id"],
            "entry_created_at": entry["created_at"],
            "created_at": self.clock + timedelta(milliseconds=1),
            "outcome": Outcome.SUCCEEDED.value if applied else Outcome.FAILED.value,
            "status_code": None,
            "message": "Reconciled: the values are on the ticket."
            if applied
            else "Reconciled: the values are not on the ticket.",
            "upstream_updated_at": "",
            "duration_ms": None,
        }

    def change(self, name: str) -> dict:
        rng, kind = self.rng, self.kinds[name]
        if kind == "boolean":
            before = rng.random() < 0.5
            return {"before": before, "after": not before}
        if kind == "text":  # an edit of the old text, as people make them
            before = self.value(kind, name)
            words = before.split(" ")
            for _ in range(rng.randint(1, 3)):
                words[rng.randrange(len(words))] = rng.choice(WORDS)
            return {"before": before, "after": " ".join(words) + " Customer confirmed."}
        return {"before": self.value(kind, name), "after": self.value(kind, name)}

    def value(self, kind: str, name: str):
        rng = self.rng
        if kind == "id":
            return name[:2].upper() + "".join(rng.choices(ID_CHARS, k=8))
        if kind == "text":
            return " ".join(rng.choices(WORDS, k=rng.randint(12, 60))).capitalize() + "."
        if kind == "string":
            return " ".join(rng.choices(WORDS, k=rng.randint(3, 8))).capitalize()
        if kind == "datetime":
            return _iso_z(self.clock + timedelta(days=rng.randint(1, 30)))
        if kind == "json_object":
            return {"plan": rng.choice(["free", "pro", "enterprise"]), "seats": rng.randint(1, 500)}
        if kind == "object_list":
            return [
                {"customFieldId": "CF" + str(rng.randint(100, 999)), "data": [{"value": "yes"}]}
            ]
        return None


def _iso_z(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
