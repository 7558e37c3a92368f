"""Cache writes of what the audit pages compute (chart counts, actor names), which may be
lost: in the database cache on PostgreSQL they skip the commit's flush to disk (4-5 ms
each on a cold page); a crash costs only a recount."""

from django.core.cache import cache
from django.db import connection, transaction


def cache_set(key: str, value, timeout: int) -> None:
    # Only in a transaction of its own: SET LOCAL must never reach a caller's, which may
    # hold audit rows.
    if (
        connection.vendor != "postgresql"
        or "DatabaseCache" not in type(cache).__name__
        or connection.in_atomic_block
    ):
        cache.set(key, value, timeout)
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit = off")
        cache.set(key, value, timeout)
