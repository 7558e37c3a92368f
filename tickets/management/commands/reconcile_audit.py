from django.core.management.base import BaseCommand

from tickets import audit


class Command(BaseCommand):
    help = (
        "Settle pending and unknown ticket edits in the audit log by reading the tickets back. "
        "Safe to run while the task worker or another copy of this command runs."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--min-age-seconds",
            type=int,
            default=audit.IN_FLIGHT_SECONDS,
            help="Leave younger entries alone: their PATCH may still be in flight "
            f"(default {audit.IN_FLIGHT_SECONDS}).",
        )

    def handle(self, *args, min_age_seconds: int, **options):
        counts = audit.audit_reconcile(min_age_seconds=min_age_seconds)
        self.stdout.write(
            f"Reconciled: {counts['succeeded']} succeeded, {counts['failed']} failed, "
            f"{counts['unknown']} still unknown, "
            f"{counts['skipped']} left unsettled (Thena unreachable), "
            f"{counts['already_settled']} already settled by another run."
        )
