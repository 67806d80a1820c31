"""Background parts of the notification service (``nocontact worker notification``)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from sqlalchemy import Engine

from services.notification import events
from services.notification.consumers import inbox
from services.notification.delivery.worker import DeliveryWorker
from shared.relay import Relay


def parts(engine: Engine) -> dict[str, Callable[[threading.Event], None]]:
    """inbox (bus -> deliveries and feed), delivery (the sender loop), relay (audit events).

    The inbox wakes the delivery loop as soon as it has committed new deliveries.
    """
    delivery = DeliveryWorker(engine)
    return {
        "inbox": inbox(engine, on_enqueued=delivery.poke).run,
        "delivery": delivery.run,
        "relay": Relay(engine, name="relay:notification", categories=[events.CATEGORY]).run,
    }
