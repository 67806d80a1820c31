"""Background parts of the commitment service (`nocontact worker commitment`).

- ``relay``: publishes the tenant, commitment and member streams to the bus (the
  ``coaching`` stream is internal and stays in the store).
- ``inbox``: the other services' reports of a member's erasure (services.commitment.members).
- ``completions``: every NOCONTACT_SCHEDULER_INTERVAL_S records ``commitment.completed``
  for commitments whose last day is over in their zone.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy import Engine

from shared import config
from shared.clock import Clock, utcnow
from shared.relay import Relay

from .handlers import complete_due
from .members.consumers import inbox

log = logging.getLogger(__name__)


def completions(engine: Engine, clock: Clock = utcnow) -> Callable[[threading.Event], None]:
    def run(stop: threading.Event) -> None:
        interval = config.scheduler_interval_s()
        while not stop.is_set():
            completed = complete_due(engine, now=clock())
            if completed:
                log.info("completions: %d commitment(s) completed", completed)
            stop.wait(interval)

    return run


def parts(engine: Engine) -> dict[str, Callable[[threading.Event], None]]:
    return {
        "relay": Relay(engine, name="relay:commitment", categories=["tenant", "commitment", "member"]).run,
        "completions": completions(engine),
        "inbox": inbox(engine).run,
    }
