from django.core.management.base import BaseCommand

from tickets import bulk, tasks


class Command(BaseCommand):
    help = (
        "Start the background sweep that settles pending and unknown audit entries, unless "
        "one is already queued, and resume bulk edits whose worker stopped. Run it before "
        "starting `db_worker`; running it again, or on several hosts at once, queues nothing "
        "more."
    )

    def handle(self, *args, **options):
        result = tasks.schedule_sweep()
        if result is None:
            self.stdout.write("A reconciliation sweep is already queued.")
        else:
            self.stdout.write(f"Queued a reconciliation sweep (task {result.id}).")
        resumed = bulk.resume_stalled()
        if resumed:
            self.stdout.write(f"Resumed {resumed} bulk edit(s) whose worker had stopped.")
