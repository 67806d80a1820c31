"""The scheduler: notices days ending in each commitment's own time zone.

Each commitment carries ``scheduler_due_at``, the next instant something can change for
it without a request (its local day ends, a missed-check-in grace runs out). A tick takes
the commitments that are due and lets `handlers.run_scheduled` record what became true:
``checkin.missed`` once per missed day, milestones reached by time passing, at-risk
changes. Running two schedulers at once is safe (they race on the stream's version and
the loser derives nothing new); after downtime the first tick catches up on everything.

A commitment the scheduler cannot process (its command raises) is skipped for the rest of
the tick, logged, counted (``nocontact_scheduler_failures_total{scheduler="checkin"}``) and
filed as due again `RETRY_AFTER` later: it never holds the others back (a batch full of
failing commitments would otherwise be taken again and again), nor is it taken at every
tick for ever.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, Row, exists, select, update

from services.checkin import tables
from services.checkin.handlers import run_scheduled
from shared import config, metrics
from shared.clock import Clock, utcnow
from shared.db import read
from shared.schema import keyring

log = logging.getLogger(__name__)

RETRY_AFTER = timedelta(minutes=5)
"""How long a commitment the scheduler could not process waits before it is tried again."""


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

    def due(self, now: datetime, skip: Collection[str] = ()) -> list[Row[Any]]:
        """The commitments due at `now` (id and tenant), the longest due first, but those of
        `skip` (failed in this tick); none of a member erased (their key destroyed, their rows
        not scrubbed yet: nothing more is recorded about them, services.checkin.members)."""
        table = tables.commitments
        erased = exists().where(keyring.c.tenant_id == table.c.tenant_id, keyring.c.member_id == table.c.member_id,
                                keyring.c.wrapped_key.is_(None))
        query = select(table.c.commitment_id, table.c.tenant_id).where(table.c.scheduler_due_at <= now, ~erased)
        if skip:
            query = query.where(table.c.commitment_id.not_in(sorted(skip)))
        with read(self.engine) as conn:
            return list(conn.execute(query.order_by(table.c.scheduler_due_at).limit(self.batch_size)))

    def tick(self, now: datetime | None = None) -> int:
        """Handle every due commitment; returns how many events were recorded."""
        now = now or self.clock()
        recorded = 0
        failed: set[str] = set()
        while True:
            due = self.due(now, failed)
            for commitment in due:
                try:
                    recorded += len(run_scheduled(self.engine, commitment.tenant_id, commitment.commitment_id, now))
                except Exception:
                    # One broken commitment must not stall every other one (see the module docstring).
                    log.exception("scheduler: commitment %s failed; skipped, tried again after %s",
                                  commitment.commitment_id, RETRY_AFTER)
                    metrics.SCHEDULER_FAILURES.labels("checkin").inc()
                    failed.add(commitment.commitment_id)
                    self._postpone(commitment.commitment_id, now)
            if len(due) < self.batch_size:
                return recorded

    def _postpone(self, commitment_id: str, now: datetime) -> None:
        """File a commitment that failed as due `RETRY_AFTER` from `now` (unless something made
        it due later meanwhile)."""
        table = tables.commitments
        try:
            with self.engine.begin() as conn:
                conn.execute(update(table)
                             .where(table.c.commitment_id == commitment_id, table.c.scheduler_due_at <= now)
                             .values(scheduler_due_at=now + RETRY_AFTER))
        except Exception:
            log.exception("scheduler: commitment %s could not be postponed", commitment_id)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("scheduler tick failed")
            stop.wait(self.interval_s)
