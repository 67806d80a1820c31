"""Background parts of the notification service (``nocontact worker notification``)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from sqlalchemy import Engine

from services.notification.consumers import inbox
from services.notification.delivery.worker import DeliveryWorker


def parts(engine: Engine) -> dict[str, Callable[[threading.Event], None]]:
    """inbox (bus -> deliveries and feed), delivery (the sender loop).

    The inbox wakes the delivery loop as soon as it has committed new deliveries. The
    ``webhook_endpoint`` events are an audit trail and the source of the endpoints table;
    no component consumes them from the bus, so no relay publishes them.
    """
    delivery = DeliveryWorker(engine)
    return {
        "inbox": inbox(engine, on_enqueued=delivery.poke).run,
        "delivery": delivery.run,
    }
