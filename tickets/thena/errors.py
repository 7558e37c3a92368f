"""The one error hierarchy for everything that can go wrong talking to Thena.

Every error carries a `user_message` a support manager can act on, the HTTP
`status_code` when there was an answer, and `detail`: the upstream message, safe
to show. The API key never appears in any of them (the client redacts `detail`).
"""

import math
import re
from collections.abc import Collection, Sequence
from datetime import UTC, datetime


class ThenaError(Exception):
    default_message = (
        "Thena answered with an unexpected error. Try again, and tell your administrator "
        "if it keeps happening."
    )
    # True when a write may have reached Thena although no answer came back.
    outcome_unknown: bool = False

    def __init__(
        self,
        user_message: str | None = None,
        *,
        status_code: int | None = None,
        detail: str = "",
        outcome_unknown: bool = False,
    ) -> None:
        self.user_message = user_message or self.default_message
        self.status_code = status_code
        self.detail = detail
        self.outcome_unknown = outcome_unknown
        super().__init__(self.user_message)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status_code={self.status_code!r}, detail={self.detail!r}, "
            f"outcome_unknown={self.outcome_unknown!r})"
        )


# class-validator (NestJS) messages start with the property path, or with "property X"
# (whitelist) or "each value in X" (arrays). All guesses (thena-api.md §1: error body).
_PREFIXED = re.compile(r"^(?:property|each value in) (\S+)")


def _property_of(message: str) -> str:
    match = _PREFIXED.match(message)
    first = match.group(1) if match else message.split(" ", 1)[0]
    return first.split(".", 1)[0]


class ThenaValidationError(ThenaError):
    """400/422: Thena refused the values. `field_errors` maps PATCH property names
    (as the upstream message names them) to messages; the rest are in `non_field`."""

    def __init__(
        self,
        messages: Sequence[str] = (),
        *,
        known_fields: Collection[str] = (),
        status_code: int | None = 400,
    ) -> None:
        self.field_errors: dict[str, list[str]] = {}
        self.non_field: list[str] = []
        for message in messages:
            name = _property_of(message)
            if name in known_fields:
                self.field_errors.setdefault(name, []).append(message)
            else:
                self.non_field.append(message)
        detail = "; ".join(messages)
        user_message = (
            f"Thena did not accept the request: {detail}"
            if detail
            else "Thena did not accept the request. Check the values and try again."
        )
        super().__init__(user_message, status_code=status_code, detail=detail)


class ThenaAuthError(ThenaError):
    def __init__(self, *, status_code: int | None = 401, detail: str = "") -> None:
        if status_code == 403:
            message = (
                "Thena accepted the API key but refused access to this. The key's user may "
                "not belong to the team, or the organisation's plan may not include it. Ask "
                "your administrator to check."
            )
        else:
            message = "Thena rejected the API key. Ask your administrator to check THENA_API_KEY."
        super().__init__(message, status_code=status_code, detail=detail)


class ThenaNotFound(ThenaError):
    default_message = (
        "Thena could not find this. It may have been deleted, or the API key's user cannot see it."
    )


class ThenaRateLimited(ThenaError):
    def __init__(
        self,
        *,
        retry_at: datetime | None = None,
        status_code: int | None = 429,
        detail: str = "",
        outcome_unknown: bool = False,
    ) -> None:
        self.retry_at = retry_at
        self.retry_after_seconds: int | None = None
        if retry_at is None:
            message = "Thena is receiving too many requests from us. Try again in a minute."
        else:
            seconds = (retry_at - datetime.now(UTC)).total_seconds()
            self.retry_after_seconds = max(0, math.ceil(seconds))
            message = (
                "Thena is receiving too many requests from us. Try again in "
                f"{self.retry_after_seconds} seconds (at {retry_at:%H:%M:%S} UTC)."
            )
        super().__init__(
            message, status_code=status_code, detail=detail, outcome_unknown=outcome_unknown
        )


_MAYBE_SAVED = (
    " The change may or may not have been saved: reload the ticket to check before trying again."
)


class ThenaUnavailable(ThenaError):
    """5xx, a refused or dropped connection, or an answer we cannot read."""

    def __init__(
        self,
        user_message: str | None = None,
        *,
        status_code: int | None = None,
        detail: str = "",
        outcome_unknown: bool = False,
    ) -> None:
        if user_message is None:
            user_message = "Thena is not reachable right now. Try again in a few minutes."
            if outcome_unknown:
                user_message = "The connection to Thena failed after sending." + _MAYBE_SAVED
        super().__init__(
            user_message, status_code=status_code, detail=detail, outcome_unknown=outcome_unknown
        )


class ThenaTimeout(ThenaError):
    def __init__(self, *, detail: str = "", outcome_unknown: bool = False) -> None:
        user_message = "Thena did not answer in time. Try again in a moment."
        if outcome_unknown:
            user_message = "Thena did not answer in time after the change was sent." + _MAYBE_SAVED
        super().__init__(user_message, detail=detail, outcome_unknown=outcome_unknown)
