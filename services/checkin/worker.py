"""The check-in service's background parts: relay, inbox, scheduler (`nocontact worker checkin`)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from sqlalchemy import Engine

from services.checkin import handlers  # noqa: F401 - registers the event types
from services.checkin.consumers import inbox_consumer
from services.checkin.scheduler import Scheduler
from shared.relay import Relay

CATEGORIES = ("checkin", "settings")


def parts(engine: Engine) -> dict[str, Callable[[threading.Event], None]]:
    return {
        "relay": Relay(engine, name="relay:checkin", categories=CATEGORIES).run,
        "inbox": inbox_consumer(engine).run,
        "scheduler": Scheduler(engine).run,
    }
