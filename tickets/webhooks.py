"""/webhooks/thena/: Thena's ticket events in (see tickets/events.py)."""

import json
import logging

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from . import events

logger = logging.getLogger(__name__)

BODY_MAX = 1_000_000  # bytes: a ticket and its previous state fit many times over


def _answer(status: int, message: str, **more) -> JsonResponse:
    return JsonResponse({"message": message, **more}, status=status)


# /webhooks/thena/
@csrf_exempt  # authenticated by the shared secret, not a session
@login_not_required
@require_POST
def thena_webhook(request: HttpRequest) -> JsonResponse:
    """Store one delivery (once per eventId) and leave the work to the task worker, so a
    delivery is answered in milliseconds and a flood only queues."""
    secret = settings.THENA_WEBHOOK_SECRET
    if not secret:
        return _answer(404, "The receiver is off: THENA_WEBHOOK_SECRET is not set.")
    # Served over TLS (DJANGO_HTTPS), a delivery in clear text would have shown the
    # secret to the network: refused rather than redirected (a redirect loses the body).
    if settings.HTTPS and not request.is_secure():
        return _answer(403, "Deliveries are accepted over HTTPS only.")
    try:
        length = int(request.headers.get("Content-Length") or 0)
    except ValueError:
        length = 0
    if length > BODY_MAX:
        return _answer(413, f"A delivery is at most {BODY_MAX} bytes.")
    body = request.body
    if len(body) > BODY_MAX:
        return _answer(413, f"A delivery is at most {BODY_MAX} bytes.")
    if not events.signature_ok(request.headers, body, secret):
        logger.warning("Thena event refused: no valid secret or signature")
        return _answer(401, "No valid secret or signature.")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested beyond reason
        return _answer(400, "The body is not JSON.")
    try:
        new = events.event_store(data)
    except events.BadEvent as error:
        return _answer(400, str(error))
    return _answer(202 if new else 200, "Stored." if new else "Already stored.", new=new)
