"""The README's append-only PostgreSQL role: it may read and append to the audit tables,
and nothing that would let it change, remove or hide rows."""

import re
import uuid
from pathlib import Path

import pytest
from django.db import DatabaseError, connection, transaction

from tests.test_audit_models import CHANGES, META, TICKET
from tickets.audit import record_attempt, record_outcome, verify_chain
from tickets.models import AuditEntry

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL"),
]

README = Path(__file__).resolve().parent.parent / "README.md"
AUDIT_TABLES = ("tickets_auditentry", "tickets_auditoutcome", "tickets_auditfield")


def readme_sql(role: str, database: str) -> list[str]:
    """The statements of the README's role block, for `role` on `database`."""
    text = README.read_text()
    block = re.search(r"<!-- audit-pg-role -->\n```sql\n(.*?)```", text, re.S).group(1)
    lines = [line for line in block.splitlines() if not line.lstrip().startswith("--")]
    sql = "\n".join(lines).replace("thena_app", role).replace("thena_admin", database)
    return [statement.strip() for statement in sql.split(";") if statement.strip()]


@pytest.fixture
def app_role(db):
    """The role made by the README's SQL (rolled back with the test), as the current role
    for the rest of the test's transaction."""
    role = f"audit_app_{uuid.uuid4().hex[:8]}"
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_database()")
        database = cursor.fetchone()[0]
        for statement in readme_sql(role, f'"{database}"'):
            cursor.execute(statement)
        cursor.execute(f"SET ROLE {role}")
    yield role
    with connection.cursor() as cursor:
        cursor.execute("RESET ROLE")


def attempt():
    """An edit's intent, by no one, as the app role writes it."""
    return record_attempt(
        action="ticket.update",
        actor=None,
        ticket=TICKET,
        changes=CHANGES,
        request_body={},
        meta=META,
    )


def refused(statement: str, params=None) -> None:
    with pytest.raises(DatabaseError) as caught, transaction.atomic():
        connection.cursor().execute(statement, params)
    message = str(caught.value)
    assert "permission denied" in message or "must be owner" in message, message


def test_the_app_role_may_read_and_append(app_role):
    entry = attempt()
    record_outcome(entry=entry, outcome="succeeded")

    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user")
        assert cursor.fetchone()[0] == app_role
    assert AuditEntry.objects.get().fields.count() == 2
    assert verify_chain().ok


@pytest.mark.parametrize("table", AUDIT_TABLES)
def test_the_app_role_cannot_change_remove_or_hide_audit_rows(app_role, table):
    attempt()

    refused(f"UPDATE {table} SET created_at = created_at")
    refused(f"DELETE FROM {table}")
    refused(f"TRUNCATE {table} CASCADE")
    refused(f"ALTER TABLE {table} DISABLE TRIGGER ALL")
    refused(f"DROP TRIGGER IF EXISTS {table}_insert_only ON {table}")
    refused("SET session_replication_role = replica")
    assert verify_chain().ok


def test_the_app_role_reads_the_charts_counts_and_cannot_change_them(app_role):
    attempt()  # the triggers counted it, as the owner

    with connection.cursor() as cursor:
        cursor.execute("SELECT sum(n) FROM tickets_auditcount WHERE field = '' AND outcome = ''")
        assert cursor.fetchone()[0] == 1
    refused("UPDATE tickets_auditcount SET n = n + 1")
    refused("INSERT INTO tickets_auditcount SELECT * FROM tickets_auditcount")
    refused("DELETE FROM tickets_auditcount")


def test_the_app_role_keeps_the_rest_of_the_app_working(app_role):
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO tickets_ticketeditlock (key, token, expires_at) VALUES ('k', 't', now())"
        )
        cursor.execute("UPDATE tickets_ticketeditlock SET token = 'u'")
        cursor.execute("DELETE FROM tickets_ticketeditlock")
        cursor.execute("SELECT count(*) FROM auth_user")
