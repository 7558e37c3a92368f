from django.core.management.base import BaseCommand, CommandError

from tickets.audit import chain


class Command(BaseCommand):
    help = (
        "Walk the audit log's MAC chain and, with --checkpoint, check that the heads of the "
        "signed checkpoints are still in it; exit status 1 naming the first problem."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--checkpoint",
            metavar="FILE",
            help="a file of checkpoints written by audit_checkpoint (catches deleted newest rows)",
        )

    def handle(self, *args, checkpoint=None, **options):
        checkpoints = []
        if checkpoint:
            try:
                checkpoints = chain.read_checkpoints(checkpoint)
            except chain.CheckpointError as error:
                raise CommandError(f"Checkpoint file {checkpoint}: {error}") from None
            if not checkpoints:
                raise CommandError(f"Checkpoint file {checkpoint} holds no checkpoint.")
        result = chain.verify_chain(checkpoints)
        if not result.ok:
            raise CommandError(
                f"Audit log broken after {result.count} intact rows: {result.first_broken}"
            )
        self.stdout.write(self.style.SUCCESS(f"Audit log intact: {result.count} rows."))
        for line in describe(result):
            self.stdout.write(line)
        if checkpoints:
            newest = checkpoints[-1]
            grown = result.count - newest.rows
            self.stdout.write(
                f"Checkpoints: {len(checkpoints)} checked; the newest, of {newest.time}, "
                f"still heads row #{newest.last_id} ({grown} rows written since)."
            )
        else:
            self.stdout.write(
                "No checkpoint checked: deleting the newest rows would not show. Run "
                "audit_checkpoint regularly and pass its file with --checkpoint."
            )


def describe(result: chain.VerifyResult) -> list[str]:
    """Which part of the chain is legacy (plain SHA-256) and which is keyed."""
    lines = []
    legacy, count = result.legacy_rows, result.count
    if legacy:
        lines.append(
            f"Legacy rows #1 to #{legacy}: plain SHA-256, written before the MAC key; only "
            + (
                f"the keyed anchor #{legacy + 1} vouches for them."
                if count > legacy
                else "a checkpoint can vouch for them until the first keyed row anchors them."
            )
        )
    if count > legacy:
        keys = ", ".join(result.key_ids)
        lines.append(f"Keyed rows #{legacy + 1} to #{count}: HMAC-SHA256 with key {keys}.")
    lines.append(f"Head: #{result.head_id} {result.head}")
    return lines
