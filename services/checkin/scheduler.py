"""The scheduler: notices days ending in each commitment's own time zone.

Each commitment carries ``scheduler_due_at``, the next instant something can change for
it without a request (its local day ends, a missed-check-in grace runs out). A tick takes
the commitments that are due and lets `handlers.run_scheduled` record what became true:
``checkin.missed`` once per missed day, milestones reached by time passing, at-risk
changes. Running two schedulers at once is safe (they race on the stream's version and
the loser derives nothing new); after downtime the first tick catches up on everything.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Row, exists, select

from services.checkin import tables
from services.checkin.handlers import run_scheduled
from shared import config
from shared.clock import Clock, utcnow
from shared.db import read
from shared.schema import keyring

log = logging.getLogger(__name__)


class Scheduler:
    def __init__(
        self,
        engine: Engine,
        *,
        clock: Clock = utcnow,
        interval_s: float | None = None,
        batch_size: int = 500,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.interval_s = config.scheduler_interval_s() if interval_s is None else interval_s
        self.batch_size = batch_size

    def due(self, now: datetime) -> list[Row[Any]]:
        """The commitments due at `now` (id and tenant), the longest due first; none of a
        member erased (their key destroyed, their rows not scrubbed yet: nothing more is
        recorded about them, services.checkin.members)."""
        table = tables.commitments
        erased = exists().where(keyring.c.tenant_id == table.c.tenant_id, keyring.c.member_id == table.c.member_id,
                                keyring.c.wrapped_key.is_(None))
        with read(self.engine) as conn:
            return list(
                conn.execute(
                    select(table.c.commitment_id, table.c.tenant_id)
                    .where(table.c.scheduler_due_at <= now, ~erased)
                    .order_by(table.c.scheduler_due_at)
                    .limit(self.batch_size)
                )
            )

    def tick(self, now: datetime | None = None) -> int:
        """Handle every due commitment; returns how many events were recorded."""
        now = now or self.clock()
        recorded = 0
        while True:
            due = self.due(now)
            for commitment in due:
                try:
                    recorded += len(run_scheduled(self.engine, commitment.tenant_id, commitment.commitment_id, now))
                except Exception:
                    # One broken commitment must not stall every other one; it stays due.
                    log.exception("scheduler: commitment %s failed", commitment.commitment_id)
            if len(due) < self.batch_size:
                return recorded

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("scheduler tick failed")
            stop.wait(self.interval_s)
