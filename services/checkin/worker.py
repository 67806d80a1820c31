"""The check-in service's background parts: relay, inbox, scheduler, erasure (`nocontact worker checkin`)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from sqlalchemy import Engine

from services.checkin.consumers import inbox_consumer
from services.checkin.members import erasure_consumer
from services.checkin.scheduler import Scheduler
from shared.relay import Relay

# The check-in streams and this service's erasure reports (``checkin-erasure:...``, the same
# category, shared.erasure) only: settings.updated feeds this service's own read model, and
# no other component consumes it (shared.topology).
CATEGORIES = ("checkin",)


def parts(engine: Engine) -> dict[str, Callable[[threading.Event], None]]:
    return {
        "relay": Relay(engine, name="relay:checkin", categories=CATEGORIES).run,
        "inbox": inbox_consumer(engine).run,
        "scheduler": Scheduler(engine).run,
        "erasure": erasure_consumer(engine).run,
    }
