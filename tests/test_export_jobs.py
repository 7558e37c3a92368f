"""Exports of any size: a trailer that makes a cut-off file recognisable, JSON Lines, and
the background path for large exports (a job, its file in storage, its download)."""

import csv
import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.tasks import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from tests.util import complete_export, db_worker, write_audit
from tickets import audit
from tickets.audit import jobs
from tickets.audit.chain import RequestMeta
from tickets.models import AuditEntry, ExportJob, TeamScope

pytestmark = pytest.mark.django_db

META = RequestMeta(request_id="", client_ip=None, user_agent="")
SUP = {"id": "tk_1", "ticketIdentifier": "SUP-1", "title": "t", "teamId": "T_SUP"}
BIL = {"id": "tk_2", "ticketIdentifier": "BIL-1", "title": "t", "teamId": "T_BIL"}


def _write(actor, n: int, ticket=SUP, title="New title"):
    return [
        write_audit(
            actor,
            ticket,
            {"title": {"before": "t", "after": title}},
            meta=META,
            settle=["succeeded"],
        )
        for _ in range(n)
    ]


def _body(response) -> bytes:
    if hasattr(response, "streaming_content"):
        return b"".join(response.streaming_content)
    return response.content


def _export_entry() -> AuditEntry:
    return AuditEntry.objects.with_current_outcome().filter(action="audit.export").latest("id")


# -- the trailer ------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_every_file_ends_with_a_trailer_and_a_cut_one_is_recognised(auditor_client, auditor, fmt):
    _write(auditor, 12)
    data = _body(auditor_client.get(f"/audit/export.{fmt}"))

    complete, rows, why = audit.export_verify(data)
    assert (complete, rows, why) == (True, 12, "")
    entry = _export_entry()
    assert entry.current_outcome == "succeeded"
    sha = hashlib.sha256(complete_export(data).encode()).hexdigest()
    assert entry.outcomes.get().message == f"12 rows exported; SHA-256 {sha}."

    # Cut anywhere (even at a line's end) or changed by a byte: never taken as complete.
    last_newline = data.rstrip(b"\r\n").rfind(b"\n")
    for cut in (len(data) // 3, len(data) // 2, last_newline + 1, len(data) - 5):
        assert audit.export_verify(data[:cut])[0] is False, cut
    tampered = data.replace(b"New title", b"New titlf", 1)
    assert audit.export_verify(tampered) == (
        False,
        12,
        "the SHA-256 does not match: the file was changed or cut",
    )


def test_json_lines_hold_the_same_entries_with_values_as_they_are(auditor_client, auditor):
    _write(auditor, 3, ticket={**SUP, "title": "=HYPERLINK(1)"})
    text_csv = complete_export(_body(auditor_client.get("/audit/export.csv")))
    text_jsonl = complete_export(_body(auditor_client.get("/audit/export.jsonl")))

    rows = list(csv.DictReader(StringIO(text_csv)))
    lines = [json.loads(line) for line in text_jsonl.splitlines()]
    # The JSON Lines export came second: it also holds the CSV export's own entry.
    assert [r["number"] for r in rows] == [str(line["number"]) for line in lines[1:]]
    assert list(lines[0]) == list(audit.EXPORT_COLUMNS)
    # A spreadsheet would run the CSV's formula, so it is quoted there; not in JSON.
    assert (rows[0]["ticket_title"], lines[1]["ticket_title"]) == (
        "'=HYPERLINK(1)",
        "=HYPERLINK(1)",
    )


# -- the background path ------------------------------------------------------------------


@pytest.fixture
def small_limit(settings):
    settings.EXPORT_BACKGROUND_ROWS = 5


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_large_export_is_written_in_the_background_then_downloaded(
    auditor_client, auditor, small_limit, fmt
):
    _write(auditor, 9)
    response = auditor_client.get(f"/audit/export.{fmt}", {"field": "title"})

    job = ExportJob.objects.get()
    assert response["Location"] == f"/audit/exports/{job.pk}/"
    assert (job.state, job.format, job.filters) == ("queued", fmt, {"field": "title"})
    assert _export_entry().current_outcome == "pending"
    page = auditor_client.get(response["Location"]).content.decode()
    assert "Waiting for a worker" in page and "<progress" in page
    queued = DBTaskResult.objects.filter(status=TaskResultStatus.READY)
    assert [t.task_path for t in queued] == ["tickets.tasks.export_run"]

    db_worker().run()

    job.refresh_from_db()
    assert (job.state, job.rows_done, job.rows_expected) == ("done", 9, 9)
    page = auditor_client.get(f"/audit/exports/{job.pk}/").content.decode()
    assert "Download the file" in page and job.sha256 in page
    download = auditor_client.get(f"/audit/exports/{job.pk}/download")
    data = _body(download)
    assert download["Content-Disposition"].startswith("attachment; filename=")
    assert audit.export_verify(data) == (True, 9, "")
    assert job.sha256 in data.decode().splitlines()[-1]
    entry = _export_entry()
    assert entry.current_outcome == "succeeded"
    assert entry.request_body == {"filters": {"field": "title"}, "format": fmt, "background": True}
    assert (
        entry.outcomes.get().message == f"9 rows exported in the background; SHA-256 {job.sha256}."
    )
    # The file holds the entries before the export's own, as the database has them.
    text = complete_export(data)
    count = len(list(csv.DictReader(StringIO(text)))) if fmt == "csv" else len(text.splitlines())
    assert count == AuditEntry.objects.filter(action="ticket.update").count()


def test_a_small_export_still_streams(auditor_client, auditor, small_limit):
    _write(auditor, 5)
    response = auditor_client.get("/audit/export.csv")
    assert response.streaming and not ExportJob.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_job_that_fails_midway_leaves_no_file_and_says_failed(
    auditor_client, auditor, small_limit, monkeypatch
):
    _write(auditor, 9)
    monkeypatch.setattr(audit.export, "EXPORT_CHUNK", 2)
    real, calls = audit.export._entries, []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) > 2:
            raise RuntimeError("disk gone")
        return real(*args, **kwargs)

    monkeypatch.setattr(audit.export, "_entries", flaky)
    auditor_client.get("/audit/export.csv")
    db_worker().run()

    job = ExportJob.objects.get()
    assert (job.state, job.file_name) == ("failed", "")
    assert "failed after 4 rows (RuntimeError)" in job.message
    assert _export_entry().current_outcome == "failed"
    assert auditor_client.get(f"/audit/exports/{job.pk}/download").status_code == 404
    assert "Failed" in auditor_client.get(f"/audit/exports/{job.pk}/").content.decode()


def _done_job(user, team_ids=None, **fields) -> ExportJob:
    name = jobs.storage().save(f"test-{uuid.uuid4()}.csv", StringIO("x\n"))
    return ExportJob.objects.create(
        created_by=user,
        format="csv",
        team_ids=team_ids,
        entry_id=0,
        state="done",
        file_name=name,
        expires_at=datetime.now(UTC) + timedelta(hours=1),
        **fields,
    )


def test_the_file_is_for_its_requester_and_readers_of_its_teams(client, auditor, django_user_model):
    from django.contrib.auth.models import Group

    job = _done_job(auditor, team_ids=["T_SUP"])
    group = Group.objects.get(name="Auditors")

    def reader(name, scope):
        user = django_user_model.objects.create_user(name)
        user.groups.add(group)
        if scope is not None:
            TeamScope.objects.create(user=user, team_ids=scope)
        client.force_login(user)
        return client.get(f"/audit/exports/{job.pk}/download").status_code

    assert reader("unscoped", None) == 200
    assert reader("same_team", ["T_SUP", "T_BIL"]) == 200
    assert reader("other_team", ["T_BIL"]) == 404
    client.force_login(django_user_model.objects.create_user("no_role"))
    assert client.get(f"/audit/exports/{job.pk}/download").status_code == 403


def test_an_expired_file_is_deleted_and_no_longer_served(auditor_client, auditor):
    job = _done_job(auditor)
    ExportJob.objects.filter(pk=job.pk).update(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert jobs.storage().exists(job.file_name)
    assert auditor_client.get(f"/audit/exports/{job.pk}/download").status_code == 404
    assert "was deleted" in auditor_client.get(f"/audit/exports/{job.pk}/").content.decode()

    assert jobs.exports_prune() == 1
    assert not jobs.storage().exists(job.file_name)


def test_a_job_whose_worker_died_is_settled_failed(auditor):
    entry = audit.record_attempt(
        action="audit.export", actor=auditor, ticket=None, changes={}, request_body={}, meta=META
    )
    job = ExportJob.objects.create(
        created_by=auditor,
        format="csv",
        entry_id=entry.pk,
        state="running",
        rows_done=1234,
        heartbeat_at=datetime.now(UTC) - timedelta(minutes=10),
    )
    jobs.exports_prune()
    job.refresh_from_db()
    assert job.state == "failed" and "stopped after 1234 rows" in job.message
    assert AuditEntry.objects.with_current_outcome().get(pk=entry.pk).current_outcome == "failed"


def test_an_unknown_job_is_404(auditor_client):
    assert auditor_client.get(f"/audit/exports/{uuid.uuid4()}/").status_code == 404


def test_an_outcome_recorded_by_someone_else_stands(auditor, caplog):
    """A worker taken for dead (the sweep settled its export failed) that finishes after
    all: its outcome is not recorded over the sweep's, for either kind of export."""
    from tickets.audit import export

    entry = audit.record_attempt(
        action="audit.export", actor=auditor, ticket=None, changes={}, request_body={}, meta=META
    )
    audit.record_outcome(entry=entry, outcome="failed", message="The worker stopped.")
    export.settle(entry, "succeeded", 0.0, "10 rows exported.")

    settled = AuditEntry.objects.with_current_outcome().get(pk=entry.pk)
    assert settled.current_outcome == "failed"
    assert settled.outcomes.count() == 1
    assert "settled by someone else" in caplog.text
