import json
import re

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from tickets.thena import schema, speccheck
from tickets.thena.client import SANDBOX_BASE_URL, get_client

LABELS = {speccheck.BREAKING: "BREAKING", speccheck.WARNING: "warning", speccheck.INFO: "info"}


class Command(BaseCommand):
    help = (
        "Compare the configured Thena's live spec (GET /swagger-json) with what this "
        "product assumes. Exits non-zero on a breaking difference."
    )

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="print the report as JSON")

    def handle(self, *args, **options):
        client = get_client()
        report = speccheck.check(client, fields=schema.fields(), auto_link=schema.auto_link_name())
        if options["json"]:
            text = json.dumps(report.as_dict(), indent=2)
        else:
            where = "the in-process sandbox" if client.base_url == SANDBOX_BASE_URL else None
            text = "\n".join(_lines(report, where or client.base_url))
        self.stdout.write(_redacted(text))
        if report.ok:
            return
        problems = sum(f.level == speccheck.BREAKING for f in report.findings)
        if report.health != "ok" or report.spec_error:
            raise CommandError("Thena's health or spec could not be read.")
        raise CommandError(f"{problems} breaking difference(s) with Thena's spec.")


def _lines(report: speccheck.Report, where: str) -> list[str]:
    lines = [f"Thena: {where}", f"Health: {report.health}"]
    if report.spec_error:
        return [*lines, f"Spec (/swagger-json): could not be read: {report.spec_error}"]

    lines += ["", "Auto-link flag (PATCH key)"]
    if report.auto_link_found:
        lines += [
            f"  Thena's spec names it: {report.auto_link_found}",
            f"  THENA_AUTO_LINK_FIELD={report.auto_link_found}",
        ]
    if report.auto_link_found == report.auto_link_configured:
        lines.append("  The configured THENA_AUTO_LINK_FIELD matches.")
    lines += _findings(report.section("auto-link"))

    lines += ["", "Update body (PATCH /v1/tickets/{id}) against our fields"]
    lines += _findings(report.section("update body")) or ["  no differences"]

    lines += ["", "Ticket response against the documented ticket"]
    lines += _findings(report.section("ticket response")) or ["  no differences"]

    write_only = [f.message for f in report.section("write-only")]
    lines += ["", "Write-only fields (not in Thena's ticket: shown empty, sent only when set)"]
    lines.append(f"  {', '.join(write_only)}" if write_only else "  none")

    lines += ["", "Endpoints we call"]
    lines += _findings(report.section("paths")) or ["  all in the spec"]

    breaking = sum(f.level == speccheck.BREAKING for f in report.findings)
    lines += ["", f"Result: {breaking} breaking difference(s)." if breaking else "Result: OK."]
    return lines


def _findings(findings: list[speccheck.Finding]) -> list[str]:
    return [f"  {LABELS[f.level]}: {f.message}" for f in findings]


def _redacted(text: str) -> str:
    # The client already redacts what Thena echoes; this also covers the spec's text.
    key = settings.THENA_API_KEY
    return re.sub(re.escape(key), "[redacted]", text, flags=re.IGNORECASE) if key else text
