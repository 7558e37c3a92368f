"""Who the audit list's actor filter means: typed text to the usernames it matches, and
the names the filter suggests.

A case-insensitive partial match cannot use the (actor_username, created_at, id) index,
so the text is first resolved to the few usernames it matches (actor_names), and the
entries are then read per username through that index (queries._streams), as for any
other exact filter. The usernames come from two small sets: the users table (username
or email) and every username the log records, which also holds deleted and renamed
users (logged_actors: one index probe per distinct name, cached and topped up).
"""

import hashlib

from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connection
from django.db.models import Q

from ..models import AuditEntry
from .cached import cache_set

ACTOR_MATCH_MAX = 20  # more matching names than this: the user is asked to type more
SUGGESTIONS_MAX = 50
SUGGESTIONS_SCAN = 1000  # the newest entries whose actors are suggested
SUGGESTIONS_SECONDS = 60
LOGGED_ACTORS_KEY = "audit-actors:v1"
LOGGED_ACTORS_SECONDS = 24 * 3600
# Topping up reads the entries written since the cached set by primary key; past this
# many it is cheaper to walk the index again.
LOGGED_ACTORS_TOP_UP_MAX = 20_000


class TooManyActors(ValueError):
    def __init__(self, text: str, count: int):
        super().__init__(f"“{text}” matches {count} people: type more of the name.")
        self.count = count


def actor_names(text: str) -> tuple[str, ...]:
    """The recorded usernames `text` means, sorted: those equal to it, or whose user's
    email is, else every username that contains it and every user whose email starts
    with it (all ignoring case; an email's domain would match everyone). Empty when none
    does; TooManyActors past ACTOR_MATCH_MAX. Picking a suggestion ("ann") therefore
    finds that person alone, not "joanna" too."""
    text = text.strip()
    if not text:
        return ()
    needle = text.casefold()
    logged = logged_actors()
    users = (
        get_user_model()
        .objects.filter(Q(username__icontains=text) | Q(email__istartswith=text))
        .values_list("username", "email")[: ACTOR_MATCH_MAX * 10]
    )
    known = {name for name in logged if needle in name.casefold()}
    exact = {name for name in logged if name.casefold() == needle}
    for username, email in users:
        known.add(username)
        if needle in (username.casefold(), email.casefold()):
            exact.add(username)
    names = tuple(sorted(exact or known))
    if len(names) > ACTOR_MATCH_MAX:
        raise TooManyActors(text, len(names))
    return names


def logged_actors() -> frozenset[str]:
    """Every username the log records (not ""), whoever still exists.

    Cached with the newest entry id it covers; a request tops it up from the entries
    written since (a primary-key range), so a new name is matched at once. A cold cache
    walks the actor index once per distinct name (a loose index scan), so it costs
    milliseconds for a thousand people whatever the size of the log."""
    head = AuditEntry.objects.order_by("-id").values_list("id", flat=True).first() or 0
    cached = cache.get(LOGGED_ACTORS_KEY)
    if cached and cached[0] == head:
        return cached[1]
    if cached and cached[0] < head <= cached[0] + LOGGED_ACTORS_TOP_UP_MAX:
        new = AuditEntry.objects.filter(id__gt=cached[0], id__lte=head).exclude(actor_username="")
        names = cached[1] | frozenset(new.values_list("actor_username", flat=True).distinct())
    else:  # cold, far behind, or another database (tests)
        names = frozenset(distinct_values("actor_username"))
    cache_set(LOGGED_ACTORS_KEY, (head, names), LOGGED_ACTORS_SECONDS)
    return names


def distinct_values(column: str) -> list[str]:
    """The distinct non-empty values of an indexed text column of the entries (actor
    usernames, action codes), sorted: a loose index scan, where each step asks the
    column's index for the next value after the last one. SELECT DISTINCT would read
    the whole index; this costs one probe per value."""
    table = connection.ops.quote_name(AuditEntry._meta.db_table)
    name = connection.ops.quote_name(AuditEntry._meta.get_field(column).column)
    sql = f"""
        WITH RECURSIVE found(value) AS (
            SELECT MIN({name}) FROM {table} WHERE {name} > ''
            UNION ALL
            SELECT (SELECT MIN({name}) FROM {table} WHERE {name} > found.value)
            FROM found WHERE found.value IS NOT NULL
        )
        SELECT value FROM found WHERE value IS NOT NULL
    """
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return [value for (value,) in cursor.fetchall()]


def actor_suggestions(*, team_ids: frozenset[str] | None) -> list[str]:
    """Up to SUGGESTIONS_MAX usernames for the actor input's list, sorted: the actors of
    the newest SUGGESTIONS_SCAN entries, of those the user may see (queries.visible_to's
    rule, applied here after the read). A fixed, small read, never a scan of the log:
    a user scoped to a quiet team may be offered no one, and typing still finds them.
    Kept for SUGGESTIONS_SECONDS per scope: only suggestions, and typing finds anyone."""
    scope = "all" if team_ids is None else ",".join(sorted(team_ids))
    key = "audit-actor-suggestions:" + hashlib.sha256(scope.encode()).hexdigest()[:32]
    names = cache.get(key)
    if names is None:
        recent = AuditEntry.objects.newest_first().values_list("actor_username", "team_id")
        names = {
            name
            for name, team in recent[:SUGGESTIONS_SCAN]
            if name and (team_ids is None or team in team_ids)
        }
        names = sorted(names, key=str.casefold)[:SUGGESTIONS_MAX]
        cache_set(key, names, SUGGESTIONS_SECONDS)
    return names
