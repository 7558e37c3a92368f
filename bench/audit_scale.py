"""The audit log's pages at a million entries, against the Django admin. Prints; asserts nothing.

    .venv/bin/python bench/audit_scale.py [--db PATH] [--count 1000000] [--reps 40]
        [--pages "actor=e + field,revert=reverted"]

SQLite by default: a database file in a temp dir that is removed afterwards, or the file
at --db, which is kept and reused (only the missing entries are seeded). With
DATABASE_URL pointing at PostgreSQL, that database instead (seeded the same way, then
VACUUM ANALYZE, as autovacuum would). Seeding prints its speed (entries, chain rows:
entries and their outcomes, and every row: with AuditField too); 1,000,000 entries take
about two minutes on 2 cores. The chart's counts (AuditCount) are kept by triggers as
the rows are written.

Each page is requested in-process through Django's test Client (every middleware, the
session, the template) as an auditor who is also staff, and the median server time is
compared with the same page of a stock Django admin changelist of AuditEntry: a
throwaway ModelAdmin on a private AdminSite with list_filter and search on the same
columns and ordering ("-created_at", "-id"), given the equivalent query string.
Then every page again with the cache emptied before each request (the chart's per-day
counts, the actor names: a first visit). Targets: every ratio <= 0.1 and every audit
page under 50 ms, warm and cold. --pages times only the pages named (as printed,
comma-separated), warm and cold, to compare changes quickly.
"""

import argparse
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

from audit_db import audit_environment, audit_log_ready

RATIO_TARGET = 0.1
MS_TARGET = 50.0
ACTOR = "chen.wei"  # one of seed_audit's actors
REASON = "duplicate"  # in one of seed_audit's reasons
FIELD = "description"
PAGES = 50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", type=Path, help="SQLite file to reuse (kept); default: a temp one")
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=40, help="timed requests per audit page")
    parser.add_argument("--admin-reps", type=int, default=7, help="timed requests per admin page")
    parser.add_argument(
        "--cold-reps", type=int, default=7, help="timed requests per page with the cache emptied"
    )
    parser.add_argument("--pages", default="", help="only these pages, comma-separated names")
    args = parser.parse_args()

    with audit_environment(args.db):
        run(args)


def run(args) -> None:
    import django

    django.setup()
    from django.test.utils import override_settings

    audit_log_ready(args.count)

    with override_settings(
        ROOT_URLCONF=__name__,
        STORAGES={
            "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
            "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
        },
    ):
        measure(args)


def build_urls():
    """The private admin site and this script's URLconf (ROOT_URLCONF is this module)."""
    from django.contrib import admin
    from django.urls import include, path

    from tickets.models import AuditEntry

    class BenchAuditAdmin(admin.ModelAdmin):
        list_display = ("id", "created_at", "actor_username", "action", "ticket_identifier")
        list_filter = ("actor_username", "fields__field", "outcome", "created_at")
        search_fields = ("ticket_id", "ticket_identifier")
        ordering = ("-created_at", "-id")
        list_per_page = PAGES

    site = admin.AdminSite(name="bench_admin")
    site.register(AuditEntry, BenchAuditAdmin)
    return [path("bench-admin/", site.urls), path("", include("thena_admin.urls"))]


def measure(args) -> None:
    from django.contrib.auth.models import Group, User
    from django.db import connection
    from django.test import Client
    from django.utils import timezone

    from tickets import audit

    global urlpatterns
    urlpatterns = build_urls()

    user, _ = User.objects.get_or_create(username="bench-auditor", defaults={"is_staff": True})
    user.groups.add(Group.objects.get(name="Auditors"))
    client = Client()
    client.force_login(user)

    today = timezone.localdate()
    since, until = today - timedelta(days=60), today - timedelta(days=31)
    start = datetime.combine(since, datetime.min.time(), tzinfo=UTC)
    end = datetime.combine(until + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    cursor = None
    for _ in range(PAGES - 1):
        page = audit.audit_page(filters=audit.AuditFilter(), cursor=cursor)
        cursor = audit.Cursor.decode(page.next_cursor)
    ours = {
        "first page": "/audit/",
        "actor + field + 30 days": "/audit/?"
        + urlencode({"actor": ACTOR, "field": FIELD, "since": since, "until": until}),
        f"page {PAGES} by cursor": "/audit/?" + urlencode({"cursor": cursor.encode()}),
    }
    theirs = {
        "first page": "/bench-admin/tickets/auditentry/",
        "actor + field + 30 days": "/bench-admin/tickets/auditentry/?"
        + urlencode(
            {
                "actor_username": ACTOR,
                "fields__field": FIELD,
                "created_at__gte": str(start),
                "created_at__lt": str(end),
            }
        ),
        f"page {PAGES} by cursor": f"/bench-admin/tickets/auditentry/?p={PAGES}",
    }

    vendor = connection.vendor
    if vendor == "postgresql":
        version = f"{connection.pg_version // 10000}.{connection.pg_version % 10000}"
    else:
        import sqlite3

        version = sqlite3.sqlite_version
    newest = audit.audit_page(filters=audit.AuditFilter(), limit=1).entries[0]
    print(f"\n{vendor} {version}, entries up to #{newest.id}, {args.reps} timed requests per page")
    chosen = {name.strip() for name in args.pages.split(",")} if args.pages else None
    if chosen:
        ours = {name: url for name, url in ours.items() if name in chosen}
    print(f"{'page':<26} {'audit ms':>9} {'admin ms':>9} {'ratio':>7}  target")
    for name, url in ours.items():
        mine = median_ms(client, url, args.reps)
        admin_ms = median_ms(client, theirs[name], args.admin_reps)
        ratio = mine / admin_ms
        ok = "ok" if ratio <= RATIO_TARGET and mine < MS_TARGET else "MISSED"
        print(f"{name:<26} {mine:9.1f} {admin_ms:9.1f} {ratio:7.3f}  {ok}")

    others = {
        "outcome=failed": "/audit/?outcome=failed",
        "outcome=unknown": "/audit/?outcome=unknown",
        "outcome=succeeded": "/audit/?outcome=succeeded",
        "outcome=pending": "/audit/?outcome=pending",
        "outcome=conflict": "/audit/?outcome=conflict",
        "outcome=denied": "/audit/?outcome=denied",
        "ticket=SUP-1": "/audit/?ticket=SUP-1",
        "field=description": f"/audit/?field={FIELD}",
        "field=statusId": "/audit/?field=statusId",
        "actor=CHEN (partial)": "/audit/?actor=CHEN",
        "actor=a (12 names)": "/audit/?actor=a",
        "actor=e + field": f"/audit/?actor=e&field={FIELD}",
        "revert=reverts": "/audit/?revert=reverts",
        "revert=reverted": "/audit/?revert=reverted",
        "reverts + outcome=failed": "/audit/?revert=reverts&outcome=failed",
        f"reason={REASON}": f"/audit/?reason={REASON}",
        "reason + 30 days": "/audit/?"
        + urlencode({"reason": REASON, "since": since, "until": until}),
        "reason=zebra + 30 days": "/audit/?"
        + urlencode({"reason": "zebra", "since": since, "until": until}),
        "chart of 366 days": "/audit/?" + urlencode({"since": today - timedelta(days=365)}),
        "htmx fragment": ("/audit/?" + urlencode({"actor": ACTOR}), {"HX-Request": "true"}),
        "entry detail": f"/audit/{newest.number}/",
    }
    if chosen:
        others = {name: target for name, target in others.items() if name in chosen}
    print(f"\nOther audit pages (no admin equivalent; target {MS_TARGET:.0f} ms)")
    for name, target in others.items():
        url, headers = target if isinstance(target, tuple) else (target, {})
        print(f"{name:<26} {median_ms(client, url, args.reps, headers):9.1f}")

    # Rare on purpose: "zebra" is in no reason, so it reads every reason in the range.
    print("\nUnbounded text searches (a reason search reads every reason: bound it with dates)")
    for name, url in {"reason=zebra": "/audit/?reason=zebra"}.items():
        if not chosen or name in chosen:
            print(f"{name:<26} {median_ms(client, url, 5):9.1f}")

    # The chart caches the counts of days before today; a cold cache counts them all.
    # Every page, as a first visit after the cache was emptied would see it.
    print(f"\nWith the cache emptied before every request (target {MS_TARGET:.0f} ms)")
    for name, target in {**ours, **others}.items():
        url, headers = target if isinstance(target, tuple) else (target, {})
        mine = median_ms(client, url, args.cold_reps, headers, cold=True)
        print(f"{name:<26} {mine:9.1f}  {'ok' if mine < MS_TARGET else 'MISSED'}")


def median_ms(client, url: str, reps: int, headers=None, *, cold=False) -> float:
    from django.core.cache import cache

    times = []
    for index in range(reps + 2):
        if cold:
            cache.clear()
        started = time.perf_counter()
        response = client.get(url, headers=headers or {})
        body = response.content
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise SystemExit(f"{url}: {response.status_code}\n{body[:1500].decode()}")
        if index >= 2:  # two warm-up requests
            times.append(elapsed)
    return statistics.median(times)


urlpatterns: list = []

if __name__ == "__main__":
    main()
