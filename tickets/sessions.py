"""Django's database sessions, loaded with one plain statement.

Every request loads its session: Django's store builds a QuerySet for it, which costs
more than running it (as with the user, backends.py). Saving is Django's own.
"""

from django.contrib.sessions.backends import db
from django.db import connections, router
from django.utils import timezone


class SessionStore(db.SessionStore):
    def load(self):
        if self.session_key is None:  # no cookie, or not a valid key
            return {}
        model = self.model
        conn = connections[router.db_for_read(model)]
        q = conn.ops.quote_name
        with conn.cursor() as cursor:
            cursor.execute(
                f"SELECT {q('session_data')} FROM {q(model._meta.db_table)}"
                f" WHERE {q('session_key')} = %s AND {q('expire_date')} > %s",
                [self.session_key, conn.ops.adapt_datetimefield_value(timezone.now())],
            )
            row = cursor.fetchone()
        if row is None:  # unknown or expired: a new session, as Django's store does
            self._session_key = None
            return {}
        return self.decode(row[0])
