from django.core.management.base import BaseCommand

from tickets import services


class Command(BaseCommand):
    help = "Settle pending and unknown ticket edits in the audit log by reading the tickets back."

    def add_arguments(self, parser):
        parser.add_argument(
            "--min-age-seconds",
            type=int,
            default=60,
            help="Leave younger entries alone: their PATCH may still be in flight (default 60).",
        )

    def handle(self, *args, min_age_seconds: int, **options):
        counts = services.audit_reconcile(min_age_seconds=min_age_seconds)
        self.stdout.write(
            f"Reconciled: {counts['succeeded']} succeeded, {counts['failed']} failed, "
            f"{counts['skipped']} left unsettled (Thena unreachable or nothing to compare)."
        )
