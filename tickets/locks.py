"""The per-ticket edit lock: saves of one ticket, through any process or instance on the
same database, run one at a time from the re-read to the outcome (invariant 2)."""

import hashlib
import time
import uuid
from contextlib import contextmanager
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from .models import TicketEditLock
from .thena.client import budget_remaining

POLL_SECONDS = 0.02
MAX_WAIT_SECONDS = 15.0  # without a request budget (commands, tests)


class EditBusy(Exception):
    """Another save of the ticket held the lock for longer than this request can wait."""


def _key(ticket_id: str) -> str:
    # Any ticket id, however long or odd, fits the column.
    return hashlib.sha256(ticket_id.encode("utf-8", "surrogatepass")).hexdigest()


def _lease() -> timedelta:
    """Longer than any holder may keep it: a dead process frees the ticket after this.
    Holders keep it for one request's Thena calls (a page, or a bulk edit's chunk), which
    end within THENA_REQUEST_BUDGET_SECONDS."""
    budget = settings.THENA_REQUEST_BUDGET_SECONDS
    return timedelta(seconds=(budget if budget > 0 else MAX_WAIT_SECONDS) + 10)


def _sql(template: str) -> str:
    """`template` with the lock table's quoted names: {table}, {key}, {token}, {expires}."""
    names = {"table": TicketEditLock._meta.db_table, "key": "key", "token": "token"}
    names["expires"] = "expires_at"
    return template.format(**{k: connection.ops.quote_name(v) for k, v in names.items()})


def _try_acquire(key: str, token: str) -> bool:
    """One statement, on SQLite and PostgreSQL alike: take the row if it is free or its
    lease has run out; a live lease of another holder leaves it untouched."""
    now = timezone.now()
    stamp = connection.ops.adapt_datetimefield_value
    with connection.cursor() as cursor:
        cursor.execute(
            _sql(
                "INSERT INTO {table} ({key}, {token}, {expires}) VALUES (%s, %s, %s) "
                "ON CONFLICT ({key}) DO UPDATE SET {token} = excluded.{token}, "
                "{expires} = excluded.{expires} WHERE {table}.{expires} < %s"
            ),
            [key, token, stamp(now + _lease()), stamp(now)],
        )
        return cursor.rowcount == 1


def _release(key: str, token: str) -> None:
    # One autocommit statement (QuerySet.delete() would wrap it in a transaction).
    with connection.cursor() as cursor:
        cursor.execute(_sql("DELETE FROM {table} WHERE {key} = %s AND {token} = %s"), [key, token])


@contextmanager
def ticket_edit_lock(ticket_id: str, *, wait: float | None = None):
    """Hold the ticket's lock for the block; wait for it within the request's budget (or
    at most `wait` seconds)."""
    key, token = _key(ticket_id), uuid.uuid4().hex
    remaining = budget_remaining()
    if wait is None:
        wait = MAX_WAIT_SECONDS if remaining is None else min(remaining - 1.0, MAX_WAIT_SECONDS)
    deadline = time.monotonic() + wait
    while not _try_acquire(key, token):
        if time.monotonic() >= deadline:
            raise EditBusy()
        time.sleep(POLL_SECONDS)
    try:
        yield
    finally:
        _release(key, token)


def _try_acquire_many(keys: list[str], token: str) -> set[str]:
    """_try_acquire for many keys in one statement: the keys taken."""
    now = timezone.now()
    stamp = connection.ops.adapt_datetimefield_value
    expires = stamp(now + _lease())
    rows = ", ".join("(%s, %s, %s)" for _ in keys)
    with connection.cursor() as cursor:
        cursor.execute(
            _sql(
                f"INSERT INTO {{table}} ({{key}}, {{token}}, {{expires}}) VALUES {rows} "
                "ON CONFLICT ({key}) DO UPDATE SET {token} = excluded.{token}, "
                "{expires} = excluded.{expires} WHERE {table}.{expires} < %s RETURNING {key}"
            ),
            [value for key in keys for value in (key, token, expires)] + [stamp(now)],
        )
        return {key for (key,) in cursor.fetchall()}


@contextmanager
def ticket_edit_locks(ticket_ids: list[str], *, wait: float):
    """Hold the locks of as many of `ticket_ids` as can be had within `wait` seconds,
    taken together (a bulk edit's chunk: one statement per try); yields the ids held."""
    keys = {_key(ticket_id): ticket_id for ticket_id in ticket_ids}
    token, held = uuid.uuid4().hex, set()
    deadline = time.monotonic() + wait
    try:
        while free := [key for key in keys if key not in held]:
            held |= _try_acquire_many(free, token)
            if len(held) == len(keys) or time.monotonic() >= deadline:
                break
            time.sleep(POLL_SECONDS)
        yield {keys[key] for key in held}
    finally:
        if held:
            marks = ", ".join("%s" for _ in held)
            with connection.cursor() as cursor:
                cursor.execute(
                    _sql(f"DELETE FROM {{table}} WHERE {{token}} = %s AND {{key}} IN ({marks})"),
                    [token, *held],
                )
