"""Thena's ticket events: register this dashboard as their receiver, and see what came."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db.models import Count, Max

from tickets.models import ThenaEvent

EVENTS = (
    "ticket:updated",
    "ticket:status:changed",
    "ticket:assigned",
    "ticket:custom_field_value:changed",
)


class Command(BaseCommand):
    help = (
        "register|status|unregister the /webhooks/thena/ receiver. Thena registers apps "
        "and their webhooks through its API, which it does not document (thena-api.md "
        "§10): register and unregister print the steps to take in Thena; status reports "
        "what has been received."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "action",
            choices=("register", "status", "unregister"),
            help="register/unregister: print the steps to take in Thena; status: what came",
        )
        parser.add_argument(
            "--url",
            default="",
            help="the receiver's public URL, e.g. https://admin.example.com/webhooks/thena/",
        )

    def handle(self, *args, action, url, **options):
        getattr(self, f"_{action}")(url or "https://<this dashboard's host>/webhooks/thena/")

    def _register(self, url: str) -> None:
        if not settings.THENA_WEBHOOK_SECRET:
            raise CommandError(
                "Set THENA_WEBHOOK_SECRET (at least 16 characters) first: deliveries "
                "without it are refused."
            )
        self.stdout.write(
            "Thena does not document its app and webhook API, so this cannot be done for "
            "you. In Thena (or with its support), register an app whose webhook:\n"
            f"  - is delivered by POST to {url}\n"
            f"  - is subscribed to: {', '.join(EVENTS)}\n"
            "  - carries the shared secret, either as the header "
            "X-Thena-Webhook-Secret: <THENA_WEBHOOK_SECRET>\n"
            "    or Authorization: Bearer <THENA_WEBHOOK_SECRET>, or signs the body with it:\n"
            "    X-Thena-Signature: sha256=<hex HMAC-SHA256 of the body>\n"
            "Then run `manage.py thena_webhook status` after a change in Thena: it should "
            "show the delivery."
        )

    def _unregister(self, url: str) -> None:
        self.stdout.write(
            f"In Thena, remove the app's webhook to {url}. To refuse deliveries at once, "
            "unset THENA_WEBHOOK_SECRET: the receiver then answers 404. Stored events and "
            "the audit entries made from them stay."
        )

    def _status(self, url: str) -> None:
        secret = "set" if settings.THENA_WEBHOOK_SECRET else "NOT SET (receiver off: 404)"
        self.stdout.write(f"Receiver: {url}  secret: {secret}")
        latest = ThenaEvent.objects.aggregate(Max("received_at"))["received_at__max"]
        self.stdout.write(f"Last delivery: {latest.isoformat() if latest else 'none yet'}")
        counts = dict(ThenaEvent.objects.values_list("state").annotate(n=Count("id")).order_by())
        for state in ThenaEvent.State:
            self.stdout.write(f"  {state.label:<10} {counts.get(state.value, 0)}")
        if counts.get(ThenaEvent.State.RECEIVED):
            self.stdout.write("Events waiting: is `manage.py db_worker` running?")
