"""Use cases. The only callers of the Thena client."""

from django.db import connection


def health_check() -> dict:
    report: dict = {"ok": True, "database": "ok", "thena": "unknown"}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as error:  # noqa: BLE001 - any failure means "down"
        report.update(ok=False, database=f"error: {type(error).__name__}")
    return report
