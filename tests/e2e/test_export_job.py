"""A large audit export as a user meets it: the link leads to a progress page, the page
follows the worker by itself (htmx), then offers the file, which is complete."""

import pytest
from playwright.sync_api import expect

from tests.util import write_audit
from tickets.audit import RequestMeta, export_verify
from tickets.audit.jobs import export_run
from tickets.models import ExportJob

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("thena")]

PASSWORD = "correct horse battery"
META = RequestMeta(request_id="", client_ip=None, user_agent="")
TICKET = {"id": "tk_1", "ticketIdentifier": "SUP-1", "title": "t", "teamId": "T_SUP"}


def test_a_large_export_shows_its_progress_then_its_file(
    page, live_server, auditor, login, settings, shot
):
    settings.EXPORT_BACKGROUND_ROWS = 5
    for n in range(8):
        write_audit(auditor, TICKET, {"title": {"before": "t", "after": f"v{n}"}}, meta=META)
    login(auditor.username, PASSWORD)
    page.goto(f"{live_server.url}/audit/")
    page.get_by_role("link", name="Export these entries (CSV)").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Audit export (CSV)")
    expect(page.get_by_text("Waiting for a worker…")).to_be_visible()
    shot("export-job-waiting")
    export_run(str(ExportJob.objects.get().pk))  # what the worker does

    link = page.get_by_role("link", name="Download the file")
    expect(link).to_be_visible(timeout=5000)  # the page polls: no reload
    expect(page.get_by_text("8 entries")).to_be_visible()
    shot("export-job-ready")
    with page.expect_download() as download:
        link.click()
    data = download.value.path().read_bytes()
    assert export_verify(data) == (True, 8, "")
