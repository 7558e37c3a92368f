from django.core.management.base import BaseCommand, CommandError

from tickets.audit import verify_chain


class Command(BaseCommand):
    help = "Walk the audit log's hash chain; exit status 1 naming the first broken row."

    def handle(self, *args, **options):
        result = verify_chain()
        if not result.ok:
            raise CommandError(
                f"Audit log broken after {result.count} intact rows: {result.first_broken}"
            )
        self.stdout.write(self.style.SUCCESS(f"Audit log intact: {result.count} rows."))
        self.stdout.write(f"Head hash (record it elsewhere to anchor the log): {result.head}")
