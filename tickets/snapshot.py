"""The signed record of what an edit page showed: the ticket as read, and a fingerprint of
the text rendered into each input. Signed once when the page is rendered and read once
per request; everything a re-rendered page needs comes from it, so no failure path has
to ask Thena again.
"""

from dataclasses import dataclass, field
from functools import cached_property

from django.core import signing

from .thena import wire

SALT = "tickets.edit.snapshot.v2"


class SnapshotError(Exception):
    """A snapshot that cannot be trusted; the message says what to do."""


@dataclass(frozen=True)
class Snapshot:
    ticket: dict  # as Thena returned it
    inputs: dict[str, str] = field(default_factory=dict)  # input name -> digest of its text
    # After a conflict: what the user first saw of each clashing input, to choose it again.
    originals: dict = field(default_factory=dict)

    @property
    def team_id(self) -> str:
        return self.ticket.get("teamId") or ""

    @cached_property
    def values(self) -> dict:
        """The PATCH JSON of every field as the page's ticket held it."""
        return wire.ticket_values(self.ticket)

    def sign(self) -> str:
        data = {"t": self.ticket, "i": self.inputs, "o": self.originals}
        return signing.dumps(data, salt=SALT, compress=True)

    @classmethod
    def load(cls, token: str, *, ticket_id: str) -> "Snapshot":
        """No age limit: an old form is safe, because a save re-reads the ticket and any
        field changed since the page was shown is a conflict, not an overwrite."""
        try:
            data = signing.loads(token or "", salt=SALT)
        except signing.BadSignature:
            raise SnapshotError(
                "This form was changed outside the page or comes from another server. "
                "Reload the ticket to edit it."
            ) from None
        ticket = data.get("t")
        if not isinstance(ticket, dict) or ticket.get("id") != ticket_id:
            raise SnapshotError("This form belongs to another ticket. Reload the page.")
        return cls(ticket=ticket, inputs=data.get("i") or {}, originals=data.get("o") or {})
