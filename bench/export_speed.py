"""The CSV export's speed against a plain read of the same rows. Prints; asserts nothing.

    .venv/bin/python bench/export_speed.py [--db PATH] [--count 200000] [--reps 3]
    DATABASE_URL=postgres://postgres@127.0.0.1:5440/db_bench .venv/bin/python bench/export_speed.py

SQLite by default: a database file in a temp dir that is removed afterwards, or the file
at --db, which is kept and reused (only the missing entries are seeded). With
DATABASE_URL pointing at PostgreSQL, that database instead (seeded the same way, then
VACUUM ANALYZE). Seeding 200,000 entries takes about a minute.

A is the export as served: GET /audit/export.csv in-process through Django's test Client
as an auditor (every middleware, the view, the streaming response), its body read to the
end. B is one plain SELECT of the same rows and columns (every entry with its latest
outcome row, newest first) read with fetchmany into csv.writer over a StringIO; B' the
same without the outcome join, for reference. They run --reps times, alternating, and
each run is timed by the clock and in CPU seconds (this process's, plus on PostgreSQL
those of its server process, read from /proc): on a busy machine the clock stretches
with the load, CPU time much less. Target: A at least half of B's rows/s.

Then memory, each measure in a fresh process: the export of about half the entries (a
`since` filter) and of all of them, once with tracemalloc (the peak of Python's heap
while the body is read) and once without (the process's max RSS after a warm-up export
of nothing, then after the export). Constant in the number of rows means the two lines
come out the same.
"""

import argparse
import csv
import io
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

from audit_db import audit_environment, audit_log_ready

TARGET = 0.5
FETCH = 2000

RAW_SQL = """
SELECT e.number, e.created_at, e.actor_username, e.actor_email, e.action, e.ticket_id,
       e.ticket_identifier, e.ticket_title, e.team_id, e.team_name, e.changes,
       e.request_body, e.reason, e.revert_of, e.request_id, e.client_ip, e.user_agent,
       e.outcome, e.message, e.hash, e.id, e.batch_id,
       o.outcome, o.status_code, o.message, o.upstream_updated_at, o.duration_ms
FROM tickets_auditentry e
LEFT JOIN tickets_auditoutcome o
       ON o.id = (SELECT MAX(x.id) FROM tickets_auditoutcome x WHERE x.entry_id = e.id)
ORDER BY e.created_at DESC, e.id DESC
"""
RAW_ENTRIES_SQL = """
SELECT e.number, e.created_at, e.actor_username, e.actor_email, e.action, e.ticket_id,
       e.ticket_identifier, e.ticket_title, e.team_id, e.team_name, e.changes,
       e.request_body, e.reason, e.revert_of, e.request_id, e.client_ip, e.user_agent,
       e.outcome, e.message, e.hash, e.id, e.batch_id
FROM tickets_auditentry e
ORDER BY e.created_at DESC, e.id DESC
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", type=Path, help="SQLite file to reuse (kept); default: a temp one")
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--reps", type=int, default=3, help="timed runs of A and of B")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory measures")
    # A memory measure in a fresh process (the parent runs these).
    parser.add_argument("--probe", choices=["heap", "rss"], help=argparse.SUPPRESS)
    parser.add_argument("--query", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()

    # A probe is given the parent's DATABASE_URL. The export is streamed, whatever the
    # count: a background job writes the same pieces to a file.
    with audit_environment(args.db, sqlite=not args.probe, EXPORT_BACKGROUND_ROWS=str(10**9)):
        if args.probe:
            probe(args.probe, args.query)
        else:
            run(args)


def run(args) -> None:
    import django

    django.setup()
    from django.db import connection

    audit_log_ready(args.count, batch=10_000)
    if connection.vendor == "postgresql":
        version = f"{connection.pg_version // 10000}.{connection.pg_version % 10000}"
    else:
        import sqlite3

        version = sqlite3.sqlite_version
    client = auditor_client()

    print(f"\n{connection.vendor} {version}, {args.reps} runs of each, alternating")
    print(f"  {'':<18} {'rows':>8} {'MB':>7} {'wall s':>7} {'CPU s':>7}")
    runs = {name: [] for name in ("A export", "B raw SELECT", "B' entries alone")}
    for _ in range(args.reps):
        for name, timed in (
            ("A export", lambda: export_rows(client)),
            ("B raw SELECT", lambda: raw_rows(RAW_SQL)),
            ("B' entries alone", lambda: raw_rows(RAW_ENTRIES_SQL)),
        ):
            cpu, started = cpu_seconds(), time.perf_counter()
            rows, size = timed()
            elapsed, spent = time.perf_counter() - started, cpu_seconds() - cpu
            runs[name].append((rows / elapsed, rows / spent))
            print(f"  {name:<18} {rows:>8} {size / 1e6:7.1f} {elapsed:7.2f} {spent:7.2f}")

    print(f"\n{'best of each':<18} {'rows/s':>9} {'rows/CPU-s':>11}")
    best = {
        name: [max(column) for column in zip(*speeds, strict=True)] for name, speeds in runs.items()
    }
    for name, (wall, cpu) in best.items():
        print(f"{name:<18} {wall:9.0f} {cpu:11.0f}")
    a, b, alone = best["A export"], best["B raw SELECT"], best["B' entries alone"]
    paired = statistics.median(
        x[0] / y[0] for x, y in zip(runs["A export"], runs["B raw SELECT"], strict=True)
    )
    print(
        f"\nA / B, wall: {a[0] / b[0]:.2f} (best / best), {paired:.2f} (median of the runs' pairs)"
    )
    print(f"A / B, CPU:  {a[1] / b[1]:.2f}   target >= {TARGET}")
    print(f"A / B' (no outcome join), wall {a[0] / alone[0]:.2f}, CPU {a[1] / alone[1]:.2f}")

    if not args.no_memory:
        memory()


def auditor_client():
    from django.contrib.auth.models import Group, User
    from django.test import Client

    user, _ = User.objects.get_or_create(username="bench-auditor")
    user.groups.add(Group.objects.get(name="Auditors"))
    client = Client()
    client.force_login(user)
    return client


def cpu_seconds() -> float:
    """CPU time of this process, and on PostgreSQL of its server process as well (on this
    machine, read from /proc): a loaded machine stretches wall time, much less CPU time."""
    from django.db import connection

    spent = time.process_time()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            pid = cursor.fetchone()[0]
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        spent += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return spent


def export_rows(client, query: str = "") -> tuple[int, int]:
    """The export read to the end: its rows (as its own audit entry counted them) and bytes."""
    from tickets.models import Action, AuditEntry

    agent = f"export-bench-{secrets.token_hex(8)}"  # finds this export's entry
    response = client.get("/audit/export.csv" + query, headers={"User-Agent": agent})
    if response.status_code != 200:
        raise SystemExit(f"export: {response.status_code}")
    size = sum(len(part) for part in response.streaming_content)
    response.close()
    entry = AuditEntry.objects.get(action=Action.AUDIT_EXPORT, user_agent=agent)
    return int(entry.outcomes.get().message.split()[0]), size


def raw_rows(sql: str) -> tuple[int, int]:
    """`sql` read in batches into csv.writer, as a plain script would."""
    from django.db import connection

    rows = size = 0
    out = io.StringIO()
    writer = csv.writer(out)
    with connection.cursor() as cursor:
        cursor.execute(sql)
        while batch := cursor.fetchmany(FETCH):
            writer.writerows(batch)
            rows += len(batch)
            size += out.tell()
            out.seek(0)
            out.truncate()
    return rows, size


def memory() -> None:
    from datetime import timedelta

    from django.utils import timezone

    from tickets.models import AuditEntry

    entries = AuditEntry.objects.order_by("-created_at", "-id")
    middle = entries.values_list("created_at", flat=True)[entries.count() // 2]
    since = timezone.localtime(middle).date() + timedelta(days=1)
    print("\nMemory, each in a fresh process (max RSS: after a warm-up export of nothing, then")
    print("after the export)")
    print(f"{'export':<18} {'rows':>8} {'heap peak MB':>13} {'max RSS MB':>16}")
    for name, query in ((f"since={since}", f"?since={since}"), ("everything", "")):
        heap = run_probe("heap", query)
        rss = run_probe("rss", query)
        grown = f"{rss['before']:.0f} -> {rss['mb']:.0f}"
        print(f"{name:<18} {heap['rows']:>8} {heap['mb']:13.1f} {grown:>16}")


def run_probe(kind: str, query: str) -> dict:
    command = [sys.executable, __file__, "--probe", kind, "--query", query]
    done = subprocess.run(command, capture_output=True, text=True, env=os.environ, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def probe(kind: str, query: str) -> None:
    import tracemalloc

    import django

    django.setup()
    client = auditor_client()
    export_rows(client, "?since=9998-01-01")  # warm: imports, first queries, the session
    before = peak_rss_mb()
    if kind == "heap":
        tracemalloc.start()
        rows, _ = export_rows(client, query)
        mb = tracemalloc.get_traced_memory()[1] / 2**20
    else:
        rows, _ = export_rows(client, query)
        mb = peak_rss_mb()
    print(json.dumps({"rows": rows, "mb": mb, "before": before}))


def peak_rss_mb() -> float:
    """The process's peak RSS. Not getrusage's ru_maxrss, which a process started from
    this one inherits across fork and exec (the parent's peak, from B's reads)."""
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) / 1024


if __name__ == "__main__":
    main()
