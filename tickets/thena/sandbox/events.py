"""Platform events as Thena emits them to registered apps (thena-api.md §10), after every
change the sandbox applies: `ticket:updated` with the ticket and `previousTicket` (as
stored, write-only fields included), plus `ticket:status:changed` and `ticket:assigned`
when those changed. Each has an `eventId` and an `actor {id, type, email}`.

Every event is kept in `Outbox.events`. With a URL, a thread also delivers each one after
a random delay (so they arrive out of order), sometimes twice, signed with
`X-Thena-Signature: sha256=<HMAC-SHA256 of the body>` (Thena's scheme is undocumented;
tickets/events.py accepts this and other forms).
"""

import copy
import hashlib
import heapq
import hmac
import json
import logging
import random
import threading
import time
import uuid
from dataclasses import dataclass

import httpx

logger = logging.getLogger(__name__)

KEPT = 10_000  # events kept in memory for tests and tools


@dataclass(frozen=True)
class Delivery:
    url: str = ""
    secret: str = ""
    delay_ms: tuple[float, float] = (20, 400)
    duplicate_rate: float = 0.1
    seed: int = 1


class Outbox:
    def __init__(self, delivery: Delivery | None = None) -> None:
        self.delivery = delivery or Delivery()
        self.events: list[dict] = []
        self.delivered = 0
        self._rng = random.Random(self.delivery.seed)
        self._queue: list[tuple[float, int, bytes]] = []
        self._wake = threading.Condition()
        self._sequence = 0
        if self.delivery.url:
            threading.Thread(target=self._deliver_forever, daemon=True, name="events").start()

    def changed(self, previous: dict, ticket: dict, actor: dict, at: str) -> None:
        """Emit the events of one applied change."""
        events = [("ticket:updated", {"ticket": ticket, "previousTicket": previous})]
        if previous.get("statusId") != ticket.get("statusId"):
            events.append(("ticket:status:changed", {"ticket": ticket}))
        if previous.get("assignedAgentId") != ticket.get("assignedAgentId"):
            events.append(("ticket:assigned", {"ticket": ticket}))
        for kind, payload in events:
            event = {
                "eventId": str(uuid.uuid4()),
                "eventType": kind,
                "timestamp": at,
                "actor": dict(actor),
                "payload": copy.deepcopy(payload),
            }
            self.events.append(event)
            if len(self.events) > KEPT:
                del self.events[: KEPT // 10]
            if self.delivery.url:
                self._send_later(event)

    def _send_later(self, event: dict) -> None:
        body = json.dumps(event).encode()
        low, high = self.delivery.delay_ms
        copies = 2 if self._rng.random() < self.delivery.duplicate_rate else 1
        with self._wake:
            for _ in range(copies):
                due = time.monotonic() + self._rng.uniform(low, high) / 1000
                self._sequence += 1
                heapq.heappush(self._queue, (due, self._sequence, body))
            self._wake.notify()

    def _deliver_forever(self) -> None:
        with httpx.Client(timeout=5) as client:
            while True:
                with self._wake:
                    while not self._queue or self._queue[0][0] > time.monotonic():
                        wait = self._queue[0][0] - time.monotonic() if self._queue else None
                        self._wake.wait(wait)
                    _, _, body = heapq.heappop(self._queue)
                self._post(client, body)

    def _post(self, client: httpx.Client, body: bytes) -> None:
        mac = hmac.new(self.delivery.secret.encode(), body, hashlib.sha256).hexdigest()
        headers = {"Content-Type": "application/json", "X-Thena-Signature": f"sha256={mac}"}
        for attempt in range(3):  # a receiver that is down is tried again, briefly
            try:
                response = client.post(self.delivery.url, content=body, headers=headers)
            except httpx.HTTPError as error:
                logger.info("Event delivery failed (%s), attempt %d", error, attempt + 1)
            else:
                if response.status_code < 500:
                    self.delivered += 1
                    return
            time.sleep(0.2 * (attempt + 1))
