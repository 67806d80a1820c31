"""Background parts of the notification service (``nocontact worker notification``)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from sqlalchemy import Engine

from services.notification.consumers import inbox
from services.notification.delivery.worker import DeliveryWorker
from services.notification.members import SERVICE, erasure_consumer
from services.notification.metrics import with_queue_metrics
from shared.relay import Relay


def parts(engine: Engine) -> dict[str, Callable[[threading.Event], None]]:
    """inbox (bus -> deliveries and feed), delivery (the sender loop, and the retention of
    delivered messages), erasure (a member's erasure: scrub, then report), relay.

    The inbox wakes the delivery loop as soon as it has committed new deliveries. The relay
    publishes this service's erasure reports (the ``notification`` category, shared.erasure)
    only: the ``webhook_endpoint`` events are an audit trail and the source of the
    endpoints table; no component consumes them from the bus.
    """
    delivery = DeliveryWorker(engine)
    return {
        "inbox": inbox(engine, on_enqueued=delivery.poke).run,
        "delivery": with_queue_metrics(engine, delivery.run),
        "erasure": erasure_consumer(engine).run,
        "relay": Relay(engine, name="relay:notification", categories=[SERVICE]).run,
    }
