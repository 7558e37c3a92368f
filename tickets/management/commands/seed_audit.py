"""Synthetic audit entries for benchmarks and demos: a valid, continuing hash chain.

Rows are built in Python and appended batch by batch with audit.append_many (each batch
one transaction under the chain lock, linked and MACed with the current AUDIT_HMAC_KEY),
so a real edit that lands between two batches simply becomes part of the chain.
created_at is spread over the last `--days` days in increasing order and ends a few
seconds before now.
"""

import gc
import random
from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from tickets.audit import append_many
from tickets.models import SETTLED_OUTCOMES, Action, AuditEntry, AuditOutcome, Outcome
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
            default=5000,
            help="entries per transaction, under the chain lock (default 5000)",
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
        written = 0
        while written < count:
            size = min(batch, count - written)
            # Every row of a batch lives until it is inserted, so the cyclic GC would walk
            # them again and again (a fifth of the run) and find nothing to free.
            gc.disable()
            try:
                append_many(maker.batch(size))
            finally:
                gc.enable()
            written += size
            if options["verbosity"] > 1 or written == count:
                self.stdout.write(f"{written} entries written.")


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


class _Maker:
    def __init__(self, rng, actors, tickets, count, days):
        self.rng, self.actors, self.tickets = rng, actors, tickets
        self.ticket_weights = [1 / (rank + 1) ** 0.6 for rank in range(len(tickets))]
        self.actor_weights = [rng.uniform(0.3, 1.0) for _ in actors]
        known = schema.field_map()
        self.fields = [name for name in FIELD_WEIGHTS if name in known]
        self.field_weights = [FIELD_WEIGHTS[name] for name in self.fields]
        self.kinds = {name: known[name].kind for name in self.fields}
        self.outcomes = list(OUTCOME_WEIGHTS)
        self.step = timedelta(days=days) / count
        self.start = datetime.now(UTC) - timedelta(seconds=5) - self.step * count
        self.number = 0
        self.clock = self.start
        self.later = deque()  # (chain id due, entry) for reconciling unknowns
        self.why = random.Random(0)
        self.edits = deque(maxlen=500)  # recent edits, which a revert may undo

    def batch(self, size: int) -> Iterator[AuditEntry | AuditOutcome]:
        """The next `size` entries and their outcomes, in chain order. append_many links
        each row before it draws the next, so the rows already given have their ids and
        numbers (a revert names one; a reconciliation is due at a chain id)."""
        for _ in range(size):
            # Jitter within the first half of each slot: increasing, and never past now.
            self.clock = self.start + self.step * (self.number + self.rng.uniform(0, 0.5))
            self.number += 1
            entry, settles_as = self.entry()
            self.explain(entry)
            yield entry
            head_id = entry.id
            settle = settles_as and self.settle(entry, settles_as)
            rows = [settle] if settle else []
            while self.later and self.later[0][0] <= head_id:
                rows.append(self.reconcile(self.later.popleft()[1]))
            for row in rows:
                yield row
                head_id = row.id
            if settle and settle.outcome == Outcome.UNKNOWN and self.rng.random() < 0.6:
                self.later.append((head_id + self.rng.randint(20, 400), entry))

    def entry(self) -> tuple[AuditEntry, str | None]:
        """A new entry and, for an edit that will be answered, its outcome."""
        rng = self.rng
        actor = rng.choices(self.actors, self.actor_weights)[0]
        created = self.clock
        if rng.random() < 0.003:
            return self.export(actor, created), None
        ticket = rng.choices(self.tickets, self.ticket_weights)[0]
        names = set()
        for _ in range(rng.choice((1, 1, 1, 2, 2, 3))):
            names.add(rng.choices(self.fields, self.field_weights)[0])
        changes = {name: self.change(name) for name in names}
        outcome = rng.choices(self.outcomes, list(OUTCOME_WEIGHTS.values()))[0]
        written = outcome if outcome in (Outcome.CONFLICT, Outcome.DENIED) else Outcome.PENDING
        message = {
            Outcome.CONFLICT: "Changed in Thena meanwhile: " + ", ".join(sorted(changes)),
            Outcome.DENIED: "The user may not edit tickets of this team.",
        }.get(outcome, "")
        entry = AuditEntry(
            created_at=created,
            action=Action.TICKET_UPDATE,
            actor_id=actor.pk,
            actor_username=actor.username,
            actor_email=actor.email,
            ticket_id=ticket["id"],
            ticket_identifier=ticket["ticketIdentifier"],
            ticket_title=ticket["title"],
            team_id=ticket["teamId"],
            changes=changes,
            request_body={name: change["after"] for name, change in changes.items()},
            request_id=f"{rng.getrandbits(64):016x}",
            client_ip=f"10.{rng.randint(0, 3)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
            user_agent=rng.choice(AGENTS),
            outcome=written,
            message=message,
        )
        return entry, outcome if outcome in SETTLED_OUTCOMES else None

    def explain(self, entry: AuditEntry) -> None:
        """A reason for some edits; a few edits revert a recent one (their reason says so)."""
        if entry.action != Action.TICKET_UPDATE or not entry.changes:
            return
        why = self.why
        if self.edits and why.random() < REVERT_SHARE:
            undone = why.choice(self.edits)
            entry.revert_of = undone.id
            entry.reason = f"Revert #{undone.number}: {why.choice(REASONS).lower()}"
        elif why.random() < REASON_SHARE:
            entry.reason = why.choice(REASONS)
        self.edits.append(entry)

    def export(self, actor, created) -> AuditEntry:
        filters = self.rng.choice([{}, {"outcome": "failed"}, {"field": "statusId"}])
        return AuditEntry(
            created_at=created,
            action=Action.AUDIT_EXPORT,
            actor_id=actor.pk,
            actor_username=actor.username,
            actor_email=actor.email,
            changes={},
            request_body={"filters": filters},
            request_id=f"{self.rng.getrandbits(64):016x}",
            client_ip="10.0.0.7",
            user_agent=AGENTS[0],
            outcome=Outcome.SUCCEEDED,
        )

    def settle(self, entry: AuditEntry, outcome: str) -> AuditOutcome:
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
            updated = _iso_z(entry.created_at + timedelta(milliseconds=duration))
        return AuditOutcome(
            entry_id=entry.id,
            created_at=entry.created_at + timedelta(milliseconds=duration),
            outcome=outcome,
            status_code=status,
            message=message,
            upstream_updated_at=updated,
            duration_ms=duration,
        )

    def reconcile(self, entry: AuditEntry) -> AuditOutcome:
        applied = self.rng.random() < 0.7
        return AuditOutcome(
            entry_id=entry.id,
            created_at=self.clock + timedelta(milliseconds=1),
            outcome=Outcome.SUCCEEDED if applied else Outcome.FAILED,
            message="Reconciled: the values are on the ticket."
            if applied
            else "Reconciled: the values are not on the ticket.",
        )

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
            return name[:2].upper() + "".join(
                rng.choices("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789", k=8)
            )
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
