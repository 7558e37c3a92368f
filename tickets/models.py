"""The audit log (insert-only, hash-chained) and team scopes.

Audit rows are written only by the functions in tickets/audit/chain.py, which take the chain
lock, link each row to its predecessor and commit. Nothing here writes audit rows on
its own: no `save()` overrides that add behaviour, no signals.
"""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Exists, F, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce


class Outcome(models.TextChoices):
    PENDING = "pending"  # intent committed, PATCH not yet answered
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"  # the PATCH may have reached Thena (timeout after sending)
    CONFLICT = "conflict"  # no PATCH: the user's fields changed upstream
    DENIED = "denied"  # no PATCH: the user lacks permission or scope


class Action(models.TextChoices):
    """What an audit entry records, as a dotted code (kept in the log and hashed: never
    renamed) with the label people see."""

    TICKET_UPDATE = "ticket.update", "Ticket edit"
    # A change made in Thena itself (its app, an automation, another integration), from
    # one of Thena's ticket events (tickets/events.py).
    TICKET_EXTERNAL = "ticket.external", "Change in Thena"
    AUDIT_EXPORT = "audit.export", "Audit export"
    # Starts the keyed chain after legacy rows; written by tickets/audit/chain.py alone.
    CHAIN_ANCHOR = "audit.chain_anchor", "Chain anchor"


# An entry starts pending (two-phase: an AuditOutcome settles it) or with a final outcome
# (single-row actions: conflict, denied, or e.g. a succeeded audit.export).
ENTRY_OUTCOMES = (
    Outcome.PENDING,
    Outcome.SUCCEEDED,
    Outcome.FAILED,
    Outcome.CONFLICT,
    Outcome.DENIED,
)
SETTLED_OUTCOMES = (Outcome.SUCCEEDED, Outcome.FAILED, Outcome.UNKNOWN)

INSERT_ONLY_MESSAGE = "The audit log is insert-only: rows cannot be changed or deleted."


class InsertOnlyError(Exception):
    pass


class InsertOnlyQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise InsertOnlyError(INSERT_ONLY_MESSAGE)

    def delete(self):
        raise InsertOnlyError(INSERT_ONLY_MESSAGE)

    def _raw_delete(self, using):
        raise InsertOnlyError(INSERT_ONLY_MESSAGE)


class InsertOnlyModel(models.Model):
    """Refuses UPDATE and DELETE in Python; the triggers of migration 0002 refuse them in
    the database too, for whatever bypasses the ORM."""

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise InsertOnlyError(INSERT_ONLY_MESSAGE)
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise InsertOnlyError(INSERT_ONLY_MESSAGE)


class AuditEntryQuerySet(InsertOnlyQuerySet):
    def newest_first(self):
        return self.order_by("-created_at", "-id")

    def for_ticket(self, ticket_id: str):
        return self.filter(ticket_id=ticket_id).newest_first()

    def with_current_outcome(self):
        """Annotate `current_outcome`: the latest settlement, else the entry's own outcome.
        One probe of the (entry, id) index per row, so cheap for a page of entries."""
        latest = AuditOutcome.objects.filter(entry=OuterRef("pk")).order_by("-id")
        return self.annotate(
            current_outcome=Coalesce(Subquery(latest.values("outcome")[:1]), F("outcome"))
        )

    def for_outcome(self, outcome: str):
        """Entries whose current outcome is `outcome`. Fine for exports and for common
        outcomes; pages of rare ones should drive from AuditOutcome (see its docstring)."""
        if outcome in (Outcome.CONFLICT, Outcome.DENIED):
            return self.filter(outcome=outcome)
        settled = AuditOutcome.objects.current().filter(entry=OuterRef("pk"))
        if outcome == Outcome.PENDING:
            return self.filter(~Exists(settled), outcome=outcome)
        if outcome == Outcome.UNKNOWN:
            return self.filter(Exists(settled.filter(outcome=outcome)))
        return self.filter(Q(outcome=outcome) | Exists(settled.filter(outcome=outcome)))


class AuditEntry(InsertOnlyModel):
    """One attempt or action: who did what to which ticket, and how it started.

    The primary key is the row's position in the single hash chain that runs across
    AuditEntry and AuditOutcome (ids are drawn from one counter under the chain lock, so
    an entry and an outcome never share an id, and the ids of the two tables together
    are 1, 2, 3, ... with no gap). Using the id as the sequence number puts the id, and
    so every reference to it, under the hash, at no extra column or index.

    `outcome` is the outcome the row was written with and never changes: "pending" for
    an edit whose PATCH is about to be sent (settled later by AuditOutcome rows), or
    final for single-row actions (conflict, denied, or e.g. a succeeded audit.export).
    `actor` has no database constraint and DO_NOTHING: deleting a user must not touch
    the log (SET_NULL would be an UPDATE, which the triggers refuse); `actor_username`
    and `actor_email` keep the record readable afterwards.

    Keyset pages go newest first on (created_at, id); every filter has an index that
    ends in (created_at, id) so a page is a short backwards index range scan. "Reverts
    only" and the reason search read partial indexes of (created_at, id) that hold only
    the rows with a revert_of or a reason; a partial actor name is first resolved to
    usernames (audit/actors.py), each read through the actor index; the list's chart
    counts changes on (action, created_at, id). Write the
    cursor as `created_at <= c AND (created_at < c OR id < i)`: the bare OR form gives
    neither SQLite nor PostgreSQL an index bound and scans from the newest row. Filters
    held in another table (field, settled outcome) page fastest when the page is picked
    from that table's index (filter, cursor, order, [:51]) and the entries are then
    fetched by pk: an EXISTS per entry scans the whole log when few rows match.
    """

    id = models.BigIntegerField(primary_key=True)
    created_at = models.DateTimeField()
    action = models.CharField(max_length=64)  # an Action code: ticket.update, audit.export
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,  # covered by the (actor, created_at, id) index
        null=True,
        related_name="audit_entries",
    )
    actor_username = models.CharField(max_length=150, blank=True)
    actor_email = models.CharField(max_length=254, blank=True)
    ticket_id = models.CharField(max_length=64, blank=True)
    ticket_identifier = models.CharField(max_length=64, blank=True)  # e.g. SUP-12
    ticket_title = models.TextField(blank=True)
    team_id = models.CharField(max_length=64, blank=True)
    changes = models.JSONField(default=dict)  # {field: {"before": x, "after": y}}
    request_body = models.JSONField(default=dict)  # the exact PATCH body
    request_id = models.CharField(max_length=64, blank=True)
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=500, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    message = models.TextField(blank=True)
    # The ticket's updatedAt as re-read just before the PATCH: if Thena still has it, the
    # edit did not apply. Nullable so that adding it is a plain ALTER TABLE on SQLite (a
    # table rebuild would drop the insert-only triggers); rows before it hash without it.
    base_updated_at = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001
    # Which AUDIT_HMAC_KEY made `hash` (an HMAC-SHA256); NULL on legacy rows written before
    # the key existed, whose `hash` is a plain SHA-256 (see tickets/audit/chain.py).
    key_id = models.CharField(max_length=16, null=True, blank=True)  # noqa: DJ001
    # Why the change was made, as the user typed it (NULL when none was given).
    reason = models.TextField(null=True, blank=True)  # noqa: DJ001
    # The entry (its id) whose change this entry reverts.
    revert_of = models.BigIntegerField(null=True, blank=True)
    # The team's name when the entry was written (team_id is what is hashed and scoped
    # by; a team renamed later keeps its old name here). NULL when it was not at hand.
    team_name = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001
    # The bulk edit (Batch id) this entry is part of; NULL for single edits.
    batch_id = models.CharField(max_length=36, null=True, blank=True)  # noqa: DJ001
    # On a change made in Thena: the dashboard's succeeded edit (its id) of one of the same
    # fields shortly before, which this change undid or overrode (a tug of war).
    drift_of = models.BigIntegerField(null=True, blank=True)
    # What people call the entry: 1, 2, 3, ... over entries alone (ids count outcomes
    # too). Derived from the chain order like AuditField, so not hashed: verify_audit_log
    # checks that the numbers are exactly 1..N in id order.
    number = models.BigIntegerField(null=True, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    objects = AuditEntryQuerySet.as_manager()

    # Every meaningful column, in the order they are hashed (see audit.row_hash).
    CHAIN_FIELDS = (
        "id",
        "created_at",
        "action",
        "actor_id",
        "actor_username",
        "actor_email",
        "ticket_id",
        "ticket_identifier",
        "ticket_title",
        "team_id",
        "changes",
        "request_body",
        "request_id",
        "client_ip",
        "user_agent",
        "outcome",
        "message",
        "base_updated_at",
        "key_id",
        "reason",
        "revert_of",
        "team_name",
        "batch_id",
        "drift_of",
    )

    class Meta:
        verbose_name = "audit entry"
        verbose_name_plural = "audit entries"
        indexes = [
            models.Index(fields=["created_at", "id"], name="audit_entry_created"),
            models.Index(fields=["actor", "created_at", "id"], name="audit_entry_actor"),
            # The audit list filters by the username as recorded, which still finds the
            # entries of a deleted or renamed user.
            models.Index(
                fields=["actor_username", "created_at", "id"], name="audit_entry_actor_name"
            ),
            models.Index(fields=["ticket_id", "created_at", "id"], name="audit_entry_ticket"),
            models.Index(
                fields=["ticket_identifier", "created_at", "id"], name="audit_entry_identifier"
            ),
            models.Index(fields=["outcome", "created_at", "id"], name="audit_entry_outcome"),
            models.Index(fields=["number"], name="audit_entry_number"),
            models.Index(fields=["revert_of"], name="audit_entry_revert_of"),
            # An entry by id with its created_at and username, for probes from rows that
            # point at entries (a field row, a revert): read from this index alone, not
            # the table's row (migration 0018).
            models.Index(fields=["id", "created_at", "actor_username"], name="audit_entry_by_id"),
            # The list's chart counts changes (ticket.update) per day from this index alone.
            models.Index(fields=["action", "created_at", "id"], name="audit_entry_action"),
            # Partial: only the rows that have a value, in keyset order, so "reverts only"
            # pages like any other filter and the reason search reads only entries with one.
            models.Index(
                fields=["created_at", "id"],
                condition=Q(revert_of__isnull=False),
                name="audit_entry_reverts",
            ),
            models.Index(
                fields=["created_at", "id"],
                condition=Q(reason__isnull=False),
                name="audit_entry_reasons",
            ),
            models.Index(
                fields=["batch_id", "created_at", "id"],
                condition=Q(batch_id__isnull=False),
                name="audit_entry_batch",
            ),
        ]

    def __str__(self) -> str:
        who = self.actor_username or "(no user)"
        what = f" {self.ticket_identifier or self.ticket_id}" if self.ticket_id else ""
        when = f"{self.created_at:%Y-%m-%d %H:%M:%S} " if self.created_at else ""
        return f"#{self.number or self.id} {when}{who} {self.action}{what}: {self.outcome}"

    @property
    def action_label(self) -> str:
        """The action as people read it; a code this version does not know, as it is."""
        return Action(self.action).label if self.action in Action.values else self.action


class AuditOutcomeQuerySet(InsertOnlyQuerySet):
    def current(self):
        """Outcomes not superseded by a later outcome of the same entry."""
        later = AuditOutcome.objects.filter(entry=OuterRef("entry"), id__gt=OuterRef("id"))
        return self.filter(~Exists(later))


class AuditOutcome(InsertOnlyModel):
    """One settlement of a pending entry: succeeded, failed or unknown. Reconciliation may
    add another row settling an unknown; the latest row (highest id) is the current one.

    Current outcome without updates: an entry's current outcome is its latest AuditOutcome
    if it has one, else its own `outcome`. For a page of entries that is one probe of the
    (entry, id) index per row (`AuditEntry.objects.with_current_outcome()`). Filtering by a
    settled outcome drives from the (outcome, entry_created_at, entry) index, newest entry
    first, keeping the rows with no later outcome (a NOT EXISTS probe of the (entry, id)
    index): `entry_created_at` is copied from the entry so this index runs in the entry
    list's keyset order. Entries written with a final succeeded/failed (single-row
    actions) have no AuditOutcome; they come from the entries' (outcome, created_at, id)
    index, so a page of "succeeded" merges two such index-ordered streams.
    Filtering "pending" walks that entry index too and keeps entries without any outcome;
    when fewer than a page are pending it reads every pending-at-write entry (about a
    second at 1,000,000 entries), so bound it with a date range where possible.
    """

    id = models.BigIntegerField(primary_key=True)  # position in the chain, see AuditEntry
    entry = models.ForeignKey(
        AuditEntry,
        on_delete=models.PROTECT,
        db_index=False,  # covered by the (entry, id) index
        related_name="outcomes",
    )
    entry_created_at = models.DateTimeField()
    created_at = models.DateTimeField()
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    message = models.TextField(blank=True)
    upstream_updated_at = models.CharField(max_length=64, blank=True)  # as Thena sent it
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    key_id = models.CharField(max_length=16, null=True, blank=True)  # noqa: DJ001 - see AuditEntry
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    objects = AuditOutcomeQuerySet.as_manager()

    CHAIN_FIELDS = (
        "id",
        "entry_id",
        "entry_created_at",
        "created_at",
        "outcome",
        "status_code",
        "message",
        "upstream_updated_at",
        "duration_ms",
        "key_id",
    )

    class Meta:
        indexes = [
            models.Index(fields=["entry", "id"], name="audit_outcome_entry"),
            models.Index(
                fields=["outcome", "entry_created_at", "entry"], name="audit_outcome_outcome"
            ),
        ]

    def __str__(self) -> str:
        status = f" ({self.status_code})" if self.status_code else ""
        return f"#{self.id} entry #{self.entry_id}: {self.outcome}{status}"


class AuditField(InsertOnlyModel):
    """One row per field an entry changed, so "entries that changed field X" is a range
    scan of (field, created_at, entry) in keyset order (`created_at` is the entry's).

    Not part of the hash chain: it is an index derived from `AuditEntry.changes`, which
    is; verify_audit_log checks that these rows match the entries' changes exactly.
    """

    entry = models.ForeignKey(
        AuditEntry,
        on_delete=models.PROTECT,
        db_index=False,  # covered by the (entry, field) unique constraint
        related_name="fields",
    )
    field = models.CharField(max_length=64)
    created_at = models.DateTimeField()

    objects = InsertOnlyQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["entry", "field"], name="audit_field_unique"),
        ]
        indexes = [
            models.Index(fields=["field", "created_at", "entry"], name="audit_field_field"),
        ]

    def __str__(self) -> str:
        return f"entry #{self.entry_id}: {self.field}"


class AuditCount(models.Model):
    """How many entries (field "") and AuditField rows (field = its name) there are per
    15-minute UTC bucket of the entry's created_at, team, action and current outcome: what
    the audit list's chart sums per local day (every real zone offset is a multiple of 15
    minutes), instead of counting index entries.

    A derived index, not part of the MAC chain: database triggers keep it (migration
    0016_audit_counts), in the transaction of every insert into the audit tables, whatever
    writes them (chain.py, seed_audit's COPY, a raw import): an entry adds itself, a field
    row adds itself under its entry's current outcome, an outcome row moves its entry (and
    the entry's fields) from the outcome it had to the new current one. Every row is
    counted twice: under its outcome and under "" (any outcome, never moved). A count that
    reaches 0 is deleted. Never written by Python.
    """

    # A chart names the field ("" for entries) and the outcome ("" for any), so that its
    # buckets lie together in the key.
    pk = models.CompositePrimaryKey("field", "outcome", "bucket", "team_id", "action")
    field = models.CharField(max_length=64, blank=True)  # "": the entry itself
    bucket = models.DateTimeField()  # the start of the entry's 15-minute UTC slot
    team_id = models.CharField(max_length=64, blank=True)
    action = models.CharField(max_length=64)
    outcome = models.CharField(max_length=16)  # the current outcome; "": any (a total)
    n = models.BigIntegerField()

    def __str__(self) -> str:
        return f"{self.bucket:%Y-%m-%d %H:%M} {self.action} {self.outcome} {self.field}: {self.n}"


class Ticket(models.Model):  # noqa: DJ008 - never instantiated
    """Holds the `tickets.edit_ticket` permission and nothing else.

    Tickets live in Thena, so there is no local ticket table (managed = False, never
    queried); Django hangs permissions on a model's content type, and this is that model.
    """

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [
            ("edit_ticket", "Can edit Thena tickets"),
            ("bulk_edit", "Can edit Thena tickets in bulk"),
        ]


class TicketEditLock(models.Model):
    """A lease on one ticket's edits, held from the re-read to the outcome so that saves
    of one ticket through any process or instance run one after the other. A row in the
    shared database works the same on SQLite and PostgreSQL and outlives the short
    transactions the audit log commits in between; `expires_at` frees the ticket if the
    process holding it dies."""

    key = models.CharField(max_length=64, primary_key=True)  # a digest of the ticket id
    token = models.CharField(max_length=32)
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"edit lock {self.key} until {self.expires_at:%H:%M:%S}"


class TeamScope(models.Model):
    """Limits a user to the listed Thena teams. No row means the user is not limited."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="team_scope"
    )
    team_ids = models.JSONField(default=list)

    def __str__(self) -> str:
        return f"{self.user}: {', '.join(map(str, self.team_ids)) or 'no teams'}"


class Batch(models.Model):
    """A bulk edit: the values to set on a list of tickets (its items), previewed by its
    author, then run in the background (tickets/bulk.py) by whichever worker claims it.

    Not part of the audit log (its rows change as the batch runs): every edit it makes is
    an audit entry carrying its id. `runner` and `heartbeat_at` are the claim of the
    worker running it; a claim not renewed within BULK_LEASE_SECONDS belongs to a dead
    worker, and the next run takes the batch over.
    """

    class State(models.TextChoices):
        DRAFT = "draft", "Preview"
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        CANCELLED = "cancelled", "Cancelled"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    team_id = models.CharField(max_length=64)
    team_name = models.CharField(max_length=200, blank=True)
    # {input name: PATCH JSON}, as TicketUpdateForm.edits() gives them (cf__<uid> for a
    # custom field), and the same inputs as people read them.
    values = models.JSONField(default=dict)
    value_labels = models.JSONField(default=dict)
    reason = models.TextField(blank=True)
    # Tickets of the selection left out at preview: {"out_of_scope": n, "other_team": n}.
    excluded = models.JSONField(default=dict)
    state = models.CharField(max_length=16, choices=State.choices, default=State.DRAFT)
    # The request that confirmed it, for the audit entries' request id, IP and agent.
    request_id = models.CharField(max_length=64, blank=True)
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=500, blank=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    runner = models.CharField(max_length=32, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["state", "heartbeat_at"], name="batch_state")]

    def __str__(self) -> str:
        return f"bulk edit {self.id} ({self.state})"


class BatchItem(models.Model):
    """One ticket of a batch: what the preview showed, then how its edit ended.

    `state` is the batch's own bookkeeping: queued, then "sending" from the moment its
    audit intent is committed (the PATCH may leave at any time after), then done. An item
    found "sending" by the next runner is never sent again: its outcome is unknown until
    the audit log settles it (reconcile_audit), and pages read the entry's current
    outcome for that.
    """

    class State(models.TextChoices):
        QUEUED = "queued"
        SENDING = "sending"
        DONE = "done"

    class Outcome(models.TextChoices):
        SUCCEEDED = "succeeded", "Changed"
        NO_CHANGE = "no_change", "No change"
        SKIPPED = "skipped", "Skipped"
        FAILED = "failed", "Failed"
        UNKNOWN = "unknown", "Unknown"
        CANCELLED = "cancelled", "Not sent (cancelled)"

    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="items")
    position = models.PositiveIntegerField()
    ticket_id = models.CharField(max_length=64)
    ticket_identifier = models.CharField(max_length=64, blank=True)
    ticket_title = models.TextField(blank=True)
    # The batch's inputs on the ticket as the preview showed them ({name: PATCH JSON}):
    # a ticket changed since in one of them, to another value, is a conflict.
    before = models.JSONField(default=dict)
    before_labels = models.JSONField(default=dict)
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, blank=True)
    message = models.TextField(blank=True)
    entry = models.ForeignKey(
        AuditEntry, on_delete=models.DO_NOTHING, db_constraint=False, null=True, related_name="+"
    )
    attempts = models.PositiveSmallIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["batch", "ticket_id"], name="batch_item_ticket")
        ]
        indexes = [
            models.Index(fields=["batch", "state", "position"], name="batch_item_state"),
            models.Index(fields=["batch", "position"], name="batch_item_position"),
        ]

    def __str__(self) -> str:
        return f"{self.ticket_identifier or self.ticket_id}: {self.outcome or self.state}"


class SavedView(models.Model):
    """A user's named ticket list filter: the list's query string, as its URL holds it."""

    NAME_MAX = 60

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="saved_views"
    )
    name = models.CharField(max_length=NAME_MAX)
    query = models.CharField(max_length=2000, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "name"], name="saved_view_name_unique")
        ]

    def __str__(self) -> str:
        return self.name


class ThenaEvent(models.Model):
    """A platform event Thena delivered to /webhooks/thena/, stored once per eventId as it
    came, then processed by the task worker (tickets/events.py)."""

    class State(models.TextChoices):
        RECEIVED = "received"  # stored, not processed yet
        RECORDED = "recorded"  # written to the audit log as a change made in Thena
        ECHO = "echo"  # our own edit, echoed back: linked to its entry, not written again
        EVIDENCE = "evidence"  # no change of its own (the same change as another event)
        IGNORED = "ignored"  # about no ticket, or changing nothing we record

    event_id = models.CharField(max_length=200, unique=True)
    event_type = models.CharField(max_length=100, blank=True)
    ticket_id = models.CharField(max_length=64, blank=True)
    # When Thena says the change happened (the event's timestamp, else the ticket's
    # updatedAt); events arrive out of order and are processed in this order.
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField()
    payload = models.JSONField()
    state = models.CharField(max_length=16, choices=State.choices, default=State.RECEIVED)
    # The audit entry it was recorded as, echoes, or settled.
    entry_id = models.BigIntegerField(null=True, blank=True)
    note = models.TextField(blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["state", "occurred_at"], name="event_state"),
            models.Index(fields=["ticket_id", "occurred_at"], name="event_ticket"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id}"


class TicketFieldSeen(models.Model):
    """The latest value Thena's events showed of a field its ticket responses lack
    (a write-only field such as dueDate): the form shows it as "as of <time>"."""

    ticket_id = models.CharField(max_length=64)
    field = models.CharField(max_length=64)
    value = models.JSONField(null=True)
    seen_at = models.DateTimeField()
    event_id = models.CharField(max_length=200)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["ticket_id", "field"], name="field_seen_unique")
        ]

    def __str__(self) -> str:
        return f"{self.ticket_id}.{self.field}"


class ExportJob(models.Model):
    """An audit export too large to stream (more than EXPORT_BACKGROUND_ROWS entries):
    written to storage by the task worker, then downloaded (tickets/audit/jobs.py)."""

    class State(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="export_jobs"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    format = models.CharField(max_length=8)  # "csv" or "jsonl"
    filters = models.JSONField(default=dict)  # AuditFilter.as_params()
    team_ids = models.JSONField(null=True)  # the requester's scope; None: every team
    entry_id = models.BigIntegerField()  # the export's own audit entry
    state = models.CharField(max_length=8, choices=State.choices, default=State.QUEUED)
    rows_expected = models.BigIntegerField(null=True)  # at least this many
    rows_done = models.BigIntegerField(default=0)
    heartbeat_at = models.DateTimeField(null=True)
    file_name = models.CharField(max_length=200, blank=True)
    size = models.BigIntegerField(null=True)
    sha256 = models.CharField(max_length=64, blank=True)
    finished_at = models.DateTimeField(null=True)
    expires_at = models.DateTimeField(null=True)  # the file is deleted after
    message = models.TextField(blank=True)

    class Meta:
        indexes = [models.Index(fields=["state", "expires_at"], name="export_job_state")]

    def __str__(self) -> str:
        return f"export {self.id} ({self.state})"
