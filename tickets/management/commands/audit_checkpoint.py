"""Write a signed checkpoint of the audit chain's head outside the database.

One JSON line: {"v", "rows", "last_id", "last_mac", "legacy_rows", "time", "key_id", "sig"},
`sig` an HMAC-SHA256 (with AUDIT_HMAC_KEY) over the rest. Appended to --output FILE, or
printed for a log shipper. `verify_audit_log --checkpoint FILE` then shows when the newest
rows were deleted. Run it from cron, e.g. every 5 minutes, and keep the file where the
application's database user cannot write.
"""

import os

from django.core.management.base import BaseCommand, CommandError

from tickets.audit import chain


class Command(BaseCommand):
    help = "Verify the audit chain and write a signed checkpoint of its head (one JSON line)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--output",
            metavar="FILE",
            default="-",
            help="append the checkpoint to FILE (default -, standard output)",
        )

    def handle(self, *args, output, **options):
        earlier = []
        if output != "-" and os.path.exists(output):
            # Never sign a shrunken log: the file's own checkpoints must still hold.
            try:
                earlier = chain.read_checkpoints(output)
            except chain.CheckpointError as error:
                raise CommandError(f"Checkpoint file {output}: {error}") from None
        result = chain.verify_chain(earlier)
        if not result.ok:
            raise CommandError(
                f"No checkpoint written: the audit log is broken after {result.count} intact "
                f"rows: {result.first_broken}"
            )
        line = chain.make_checkpoint(result).to_json() + "\n"
        if output == "-":
            self.stdout.write(line, ending="")
            return
        try:
            with open(output, "a", encoding="utf-8") as file:
                file.write(line)
                file.flush()
                os.fsync(file.fileno())
        except OSError as error:
            raise CommandError(f"Cannot write {output} ({error.strerror}).") from None
        if options["verbosity"] > 1:
            self.stderr.write(f"Checkpoint of row #{result.head_id} appended to {output}.")
