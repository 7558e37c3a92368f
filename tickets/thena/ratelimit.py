"""Thena's rate limit, shared by every process of the deployment.

When Thena says our budget is spent until T (a 429, or `X-RateLimit-Remaining: 0`, with
`X-RateLimit-Reset` T), the pause is kept in Django's default cache, which all processes
and instances share (the database cache unless CACHE_URL names Redis). Before sending,
every ThenaClient looks there, so until T nothing is sent from anywhere: the client waits
when T is near enough, else its caller gets ThenaRateLimited at once (client.py decides).
"""

import hashlib
import logging
import math
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta

from django.core.cache import cache
from django.db import connections

logger = logging.getLogger("tickets.thena")

# A reset further ahead is not believed for longer: after this, one request asks again.
MAX_PAUSE = timedelta(hours=1)
# True in calls client.concurrently runs in its worker threads. They must not touch the
# database, which the default cache is: they read this process's copy of the pause, and
# close the connection a rare write to the cache opened.
SIDE_BY_SIDE = ContextVar("thena_side_by_side", default=False)


def _in_side_by_side_thread() -> bool:
    return SIDE_BY_SIDE.get()


class SharedPause:
    """The pause of requests to `base_url`: kept in the shared cache, copied here."""

    def __init__(self, base_url: str) -> None:
        digest = hashlib.sha256(base_url.encode()).hexdigest()[:16]
        self.key = f"thena:rate-limit-pause:{digest}"
        self._until: datetime | None = None  # this process's copy

    def until(self) -> datetime | None:
        """The end of the current pause; None when requests may be sent."""
        if not _in_side_by_side_thread():
            try:
                stamp = cache.get(self.key)
            except Exception as error:  # the cache is down: Thena will say 429 itself
                logger.warning("Thena rate-limit pause unreadable: %s", type(error).__name__)
            else:
                self._until = _moment(stamp)
        until = self._until
        return until if until is not None and until > datetime.now(UTC) else None

    def note(self, until: datetime) -> None:
        """Thena said: nothing more until `until` (kept if it ends later than the current
        pause)."""
        now = datetime.now(UTC)
        until = min(until, now + MAX_PAUSE)
        if until <= now:
            return
        if self._until is None or until > self._until:
            self._until = until
        try:
            current = _moment(cache.get(self.key))
            if current is None or current < until:
                seconds = math.ceil((until - now).total_seconds()) + 1
                cache.set(self.key, until.timestamp(), seconds)
        except Exception as error:
            logger.warning("Thena rate-limit pause not shared: %s", type(error).__name__)
        finally:
            if _in_side_by_side_thread():
                connections.close_all()


def _moment(stamp) -> datetime | None:
    if not isinstance(stamp, int | float):
        return None
    try:
        return datetime.fromtimestamp(stamp, UTC)
    except (OverflowError, OSError, ValueError):
        return None
