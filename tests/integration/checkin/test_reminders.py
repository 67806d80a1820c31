"""Reminders through the scheduler's command over the real store (CONTRACT v1.1): the tenant's
``reminder_local_time``, ``checkin.reminder_due`` once per unreported day at that time in
the member's zone (a fall-back day included), as the event catalogue documents it."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from services.checkin import handlers
from services.checkin.scheduler import Scheduler
from shared.db import read
from shared.eventstore import read_stream
from tests.integration.checkin.support import deliver, new_commitment, new_tenant
from tests.support.catalogue import problems

DAY = date(2027, 10, 31)  # New York falls back on 2027-11-07; Berlin on 10-31 (03:00 -> 02:00)


def test_a_reminder_once_per_unreported_day(engine) -> None:  # type: ignore[no-untyped-def]
    tenant = new_tenant(engine)
    created = datetime(2027, 10, 20, tzinfo=UTC)
    cid, events = new_commitment(engine, tenant, timezone="Europe/Berlin", starts_on=date(2027, 10, 25),
                                 created_at=created)
    deliver(engine, tenant.events + events)
    handlers.update_settings(engine, tenant.admin, tenant.context, {"reminder_local_time": "02:30"}, now=created)
    # The member reports 11-01 before its reminder; the scheduler ticks every 10 minutes.
    handlers.record_check_in(engine, tenant.admin, tenant.context, cid, {"outcome": "kept", "date": date(2027, 11, 1)},
                             now=datetime(2027, 11, 1, 0, 5, tzinfo=UTC))
    scheduler = Scheduler(engine, interval_s=0)
    at = datetime(2027, 10, 30, tzinfo=UTC)
    while at < datetime(2027, 11, 2, tzinfo=UTC):
        scheduler.tick(at)
        at += timedelta(minutes=10)
    with read(engine) as conn:
        stream = read_stream(conn, f"checkin-{cid}")
    reminders = [e for e in stream if e.type == "checkin.reminder_due"]
    # 02:30 comes twice on 10-31 (00:30 and 01:30 UTC): one reminder, at the first.
    assert [(e.data["date"], e.occurred_at) for e in reminders] == [
        ("2027-10-30", datetime(2027, 10, 30, 0, 30, tzinfo=UTC)),
        ("2027-10-31", datetime(2027, 10, 31, 0, 30, tzinfo=UTC)),
    ]
    assert all(problems("checkin.reminder_due", {**e.data, "event_id": str(e.id), "sequence": e.stream_version})
               == [] for e in reminders)
    assert DAY.isoformat() == reminders[1].data["date"]
