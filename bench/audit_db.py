"""The seeded audit log the audit benchmarks (audit_scale.py, export_speed.py) run on:
production settings, SQLite in a temp dir unless --db names a file to keep (or
DATABASE_URL names PostgreSQL), filled by seed_audit."""

import os
import secrets
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AUDIT_TABLES = ("tickets_auditentry", "tickets_auditoutcome", "tickets_auditfield")


@contextmanager
def audit_environment(db: Path | None, *, sqlite: bool = True, **env: str) -> Iterator[None]:
    """The environment of a benchmark's Django, before django.setup(): on SQLite (unless
    `sqlite` is off, or DATABASE_URL names PostgreSQL) the file `db`, kept, or one in a
    temp dir removed afterwards; `env` on top."""
    postgres = os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))
    temp = None
    if sqlite and not postgres:
        if db is None:
            temp = Path(tempfile.mkdtemp(prefix="thena-audit-bench-"))
        path = (db or temp / "audit.sqlite3").resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        os.environ["DATABASE_URL"] = f"sqlite:///{path}"
    os.environ.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(40))
    os.environ.setdefault("AUDIT_HMAC_KEY", secrets.token_urlsafe(48))
    os.environ["DJANGO_DEBUG"] = "false"
    os.environ.setdefault("DJANGO_LOG_LEVEL", "WARNING")  # no log line per request
    os.environ["DJANGO_ALLOWED_HOSTS"] = "testserver"
    os.environ["DJANGO_SETTINGS_MODULE"] = "thena_admin.settings"
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    warnings.filterwarnings("ignore", message="No directory at")
    try:
        yield
    finally:
        if temp:
            shutil.rmtree(temp, ignore_errors=True)


def audit_log_ready(count: int, *, batch: int = 20_000) -> None:
    """After django.setup(): migrated, `count` entries (exports aside) seeded, and on
    PostgreSQL VACUUM ANALYZE of the audit tables and the counts, as autovacuum would."""
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    _fill(count, batch)
    if connection.vendor == "postgresql":
        started = time.perf_counter()
        with connection.cursor() as cursor:
            for table in (*AUDIT_TABLES, "tickets_auditcount"):
                cursor.execute(f"VACUUM ANALYZE {table}")
        print(f"VACUUM ANALYZE in {time.perf_counter() - started:.0f} s.")


def _fill(count: int, batch: int) -> None:
    from django.core.management import call_command
    from django.db.models import Max

    from tickets.audit.chain import _chain_head
    from tickets.models import Action, AuditEntry, AuditField

    # Once, for the benchmark's own bookkeeping; the exports a benchmark makes are extra.
    have = AuditEntry.objects.exclude(action=Action.AUDIT_EXPORT).count()
    if have >= count:
        return
    print(f"Seeding {count - have} audit entries (have {have})…")
    head = _chain_head()[0]
    fields = AuditField.objects.aggregate(last=Max("id"))["last"] or 0
    started = time.perf_counter()
    call_command("seed_audit", count=count - have, batch=batch, force=True)
    seconds = time.perf_counter() - started
    rows = _chain_head()[0] - head  # entries and their outcomes: the chain's rows
    # AuditField ids come from the table's sequence: the new rows, with one writer.
    fields = (AuditField.objects.aggregate(last=Max("id"))["last"] or 0) - fields
    print(
        f"Seeded in {seconds:.0f} s: {(count - have) / seconds:,.0f} entries/s, "
        f"{rows / seconds:,.0f} chain rows/s ({rows} rows), "
        f"{(rows + fields) / seconds:,.0f} rows/s with the {fields} AuditField rows "
        "(the counts the triggers keep not included)."
    )
