import os

from django.core.management.base import BaseCommand, CommandError

from tickets.thena.sandbox import DEMO_API_KEY, SandboxApp, SandboxConfig
from tickets.thena.sandbox.app import CUSTOM_FIELD_SHAPES
from tickets.thena.sandbox.server import make_server


class Command(BaseCommand):
    help = "Serve the fake Thena API (the sandbox) over HTTP."

    def add_arguments(self, parser):
        parser.add_argument(
            "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
        )
        parser.add_argument("--port", type=int, default=8001, help="port (default 8001)")
        parser.add_argument(
            "--latency-ms",
            type=float,
            default=0,
            help="wait this long before every answer, as a distant Thena would (default 0)",
        )
        parser.add_argument(
            "--fail-rate",
            type=float,
            default=0.0,
            help="share of requests answered 500, from 0 to 1 (default 0)",
        )
        parser.add_argument(
            "--rate-limit",
            type=int,
            default=None,
            help="requests allowed per minute, then 429 until the minute ends (default: no limit)",
        )
        parser.add_argument(
            "--seed", type=int, default=1, help="seed of the generated data (default 1)"
        )
        parser.add_argument(
            "--api-key",
            default=DEMO_API_KEY,
            help=f"the x-api-key it accepts (default {DEMO_API_KEY})",
        )
        parser.add_argument(
            "--echo-write-only",
            action="store_true",
            help="also return the write-only fields (dueDate, metadata...) in tickets",
        )
        parser.add_argument(
            "--custom-field-shape",
            choices=CUSTOM_FIELD_SHAPES,
            default="strings",
            help="customFieldValues in answers: strings (as documented) or objects",
        )
        parser.add_argument(
            "--auto-link-field",
            default=SandboxConfig.auto_link_field,
            help="the auto-link flag's PATCH key, also named in /swagger-json",
        )
        parser.add_argument(
            "--tickets",
            type=int,
            default=SandboxConfig.ticket_count,
            help=f"how many tickets to generate (default {SandboxConfig.ticket_count}; "
            "the first ones are the same whatever the number)",
        )
        parser.add_argument(
            "--bulk-max-ids",
            type=int,
            default=SandboxConfig.bulk_max_ids,
            help="the most ticketIds PATCH /v1/tickets/bulk accepts, then 400 "
            f"(default {SandboxConfig.bulk_max_ids}; Thena documents no limit)",
        )
        parser.add_argument(
            "--no-bulk-endpoint",
            action="store_true",
            help="answer PATCH /v1/tickets/bulk 404, as a Thena without it would",
        )
        parser.add_argument(
            "--events-url",
            default="",
            help="deliver Thena's ticket events to this URL, e.g. "
            "http://127.0.0.1:8000/webhooks/thena/ (default: none)",
        )
        parser.add_argument(
            "--events-secret",
            default=os.getenv("THENA_WEBHOOK_SECRET", ""),
            help="the secret the deliveries are signed with (default: THENA_WEBHOOK_SECRET)",
        )
        parser.add_argument(
            "--events-duplicates",
            type=float,
            default=SandboxConfig.events_duplicate_rate,
            help="share of events delivered twice (default "
            f"{SandboxConfig.events_duplicate_rate:g})",
        )

    def handle(self, *args, **options):
        try:
            config = self._config(options)
        except ValueError as error:  # e.g. --tickets -1
            raise CommandError(str(error)) from None
        server = make_server(SandboxApp(config), options["host"], options["port"], log=self._log)
        host, port = server.server_address[:2]
        self.stdout.write(f"Thena sandbox on http://{host}:{port}  (x-api-key: {config.api_key})")
        self.stdout.write("Quit with CONTROL-C.")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            self.stdout.write("Stopped.")
        finally:
            server.server_close()

    def _config(self, options) -> SandboxConfig:
        return SandboxConfig(
            seed=options["seed"],
            api_key=options["api_key"],
            latency_ms=options["latency_ms"],
            fail_rate=options["fail_rate"],
            rate_limit=options["rate_limit"],
            echo_write_only=options["echo_write_only"],
            custom_field_shape=options["custom_field_shape"],
            auto_link_field=options["auto_link_field"],
            ticket_count=options["tickets"],
            bulk_max_ids=options["bulk_max_ids"],
            bulk_endpoint=not options["no_bulk_endpoint"],
            events_url=options["events_url"],
            events_secret=options["events_secret"],
            events_duplicate_rate=options["events_duplicates"],
        )

    def _log(self, line: str) -> None:
        self.stdout.write(line)
