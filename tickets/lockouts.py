"""Login lockouts (django-axes) with two limits, each over the last AXES_COOLOFF_TIME:

- PAIR_LIMIT failures for one username from one address lock that pair;
- ADDRESS_LIMIT failures from one address, whatever the usernames, lock the address
  (password spraying: many usernames, a few guesses each).

axes counts every combination of AXES_LOCKOUT_PARAMETERS (here the pair, then the
address) and compares the largest count, always the address's, with one limit:
`failure_limit` answers PAIR_LIMIT once the pair has reached it, else ADDRESS_LIMIT.
A successful login forgives its own pair only (`LockoutHandler`): with axes' own reset,
one account the attacker owns would wipe the address's count.
"""

from axes.attempts import get_cool_off_threshold
from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_client_username
from axes.models import AccessAttempt
from django.db.models import Sum

PAIR_LIMIT = 5
ADDRESS_LIMIT = 30


def _pair(request, credentials):
    return AccessAttempt.objects.filter(
        username=get_client_username(request, credentials),
        ip_address=request.axes_ip_address,
    )


def failure_limit(request, credentials) -> int:
    """AXES_FAILURE_LIMIT: the limit the address's failure count is compared with."""
    recent = _pair(request, credentials).filter(attempt_time__gte=get_cool_off_threshold(request))
    failures = recent.aggregate(n=Sum("failures_since_start"))["n"] or 0
    return PAIR_LIMIT if failures >= PAIR_LIMIT else ADDRESS_LIMIT


class LockoutHandler(AxesDatabaseHandler):
    def reset_user_attempts(self, request, credentials=None) -> int:
        count, _ = _pair(request, credentials).delete()
        return count
