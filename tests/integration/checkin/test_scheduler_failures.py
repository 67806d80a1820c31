"""A commitment the scheduler cannot process is skipped and reported, on the real store
(PostgreSQL and SQLite): it holds no other commitment back, even when a whole batch fails,
it is logged and counted, and it is tried again later rather than at every tick."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, date, datetime

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select

from services.checkin import tables
from services.checkin.scheduler import RETRY_AFTER, Scheduler
from shared.db import read
from shared.eventstore import read_stream
from tests.integration.checkin.support import deliver, new_commitment, new_tenant

NOW = datetime(2027, 6, 10, 12, tzinfo=UTC)
CREATED = datetime(2027, 5, 31, tzinfo=UTC)


def _failures() -> float:
    return REGISTRY.get_sample_value("nocontact_scheduler_failures_total", {"scheduler": "checkin"}) or 0.0


def test_a_failing_commitment_is_skipped_and_reported(engine, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    tenant = new_tenant(engine)
    broken, broken_events = new_commitment(engine, tenant, timezone="Europe/Berlin", starts_on=date(2027, 6, 1),
                                           created_at=CREATED)
    deliver(engine, tenant.events + broken_events)
    healthy = []
    for _ in range(2):
        cid, events = new_commitment(engine, tenant, timezone="Europe/Berlin", starts_on=date(2027, 6, 1),
                                     created_at=CREATED)
        deliver(engine, events)
        healthy.append(cid)
    with engine.begin() as conn:
        # A row no command can decide on (a zone no calendar knows), due first, as after downtime.
        conn.execute(tables.commitments.update().where(tables.commitments.c.commitment_id == broken)
                     .values(timezone="Mars/Olympus_Mons", scheduler_due_at=datetime(2027, 1, 1, tzinfo=UTC)))
    before = _failures()

    # A batch of one: the broken commitment fills it. Before the fix this tick never returned.
    scheduler = Scheduler(engine, batch_size=1, interval_s=0)
    done = threading.Event()
    thread = threading.Thread(target=lambda: (scheduler.tick(NOW), done.set()), daemon=True)
    with caplog.at_level(logging.ERROR, logger="services.checkin.scheduler"):
        thread.start()
        thread.join(timeout=60)
    assert done.is_set(), "the tick never ended"
    assert any(broken in record.getMessage() for record in caplog.records)
    assert _failures() == before + 1
    with read(engine) as conn:
        for cid in healthy:
            assert [e for e in read_stream(conn, f"checkin-{cid}") if e.type == "checkin.missed"]
        due = conn.execute(select(tables.commitments.c.scheduler_due_at)
                           .where(tables.commitments.c.commitment_id == broken)).scalar_one()
    assert due == NOW + RETRY_AFTER

    # Not taken again until then; then tried (and reported) again.
    assert scheduler.tick(NOW + RETRY_AFTER / 2) == 0 and _failures() == before + 1
    scheduler.tick(NOW + RETRY_AFTER)
    assert _failures() == before + 2
