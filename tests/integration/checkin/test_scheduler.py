"""The scheduler on the real store (PostgreSQL and SQLite): days end in each member's zone.

Dates lie in 2027 so the wall clock (used when the inbox files a commitment as due) is
always before the instants these tests pretend it is.
"""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta

import pytest

from services.checkin import handlers
from services.checkin.scheduler import Scheduler
from shared.db import read
from shared.eventstore import read_stream
from tests.integration.checkin.support import Tenant, deliver, new_commitment, new_tenant

S = timedelta(seconds=1)


def _setup(engine, zone: str, starts_on: date, created_at: datetime, **kwargs) -> tuple[Tenant, str]:  # type: ignore[no-untyped-def]
    tenant = new_tenant(engine)
    commitment_id, events = new_commitment(engine, tenant, timezone=zone, starts_on=starts_on,
                                           created_at=created_at, **kwargs)
    deliver(engine, tenant.events + events)
    return tenant, commitment_id


def _stream(engine, commitment_id: str):  # type: ignore[no-untyped-def]
    with read(engine) as conn:
        return read_stream(conn, f"checkin-{commitment_id}")


def _of(engine, commitment_id: str, type_: str) -> list[dict]:  # type: ignore[no-untyped-def, type-arg]
    return [e.data for e in _stream(engine, commitment_id) if e.type == type_]


# (zone, day, the UTC instant that day ends there): written out by hand, not computed.
DAY_ENDS = [
    pytest.param("Pacific/Auckland", date(2027, 1, 15), datetime(2027, 1, 15, 11, 0, tzinfo=UTC), id="auckland"),
    pytest.param("America/Los_Angeles", date(2027, 1, 15), datetime(2027, 1, 16, 8, 0, tzinfo=UTC), id="los-angeles"),
    pytest.param("Europe/Berlin", date(2027, 3, 28), datetime(2027, 3, 28, 22, 0, tzinfo=UTC), id="berlin-spring"),
    pytest.param("Europe/Berlin", date(2027, 10, 31), datetime(2027, 10, 31, 23, 0, tzinfo=UTC), id="berlin-fall"),
    pytest.param("Asia/Kolkata", date(2027, 1, 15), datetime(2027, 1, 15, 18, 30, tzinfo=UTC), id="kolkata-0530"),
]


@pytest.mark.parametrize(("zone", "day", "ends_at"), DAY_ENDS)
def test_missed_after_the_grace_in_the_members_zone(engine, zone: str, day: date, ends_at: datetime) -> None:  # type: ignore[no-untyped-def]
    tenant, cid = _setup(engine, zone, day, created_at=ends_at - timedelta(hours=20))
    scheduler = Scheduler(engine)
    deadline = ends_at + timedelta(hours=12)  # the default grace: 12 real hours, DST or not
    scheduler.tick(deadline - S)
    assert _of(engine, cid, "checkin.missed") == []
    scheduler.tick(deadline)
    missed = _of(engine, cid, "checkin.missed")
    assert [m["date"] for m in missed] == [day.isoformat()]
    assert datetime.fromisoformat(missed[0]["deadline"]) == deadline
    assert missed[0]["member_id"] == "m-1" and missed[0]["commitment_id"] == cid
    scheduler.tick(deadline + timedelta(minutes=5))
    assert len(_of(engine, cid, "checkin.missed")) == 1

    # A report made in time is not missed: the next day, reported before its deadline.
    handlers.record_check_in(engine, tenant.admin, tenant.context, cid,
                             {"outcome": "kept", "date": day + timedelta(days=1)}, now=deadline + timedelta(hours=1))
    scheduler.tick(deadline + timedelta(days=1, hours=1))
    assert [m["date"] for m in _of(engine, cid, "checkin.missed")] == [day.isoformat()]


def test_catches_up_after_downtime_and_never_repeats(engine) -> None:  # type: ignore[no-untyped-def]
    start = date(2027, 5, 3)
    _, cid = _setup(engine, "Australia/Adelaide", start, created_at=datetime(2027, 5, 2, 15, 0, tzinfo=UTC))
    scheduler = Scheduler(engine)
    later = datetime(2027, 5, 9, 12, 0, tzinfo=UTC)  # six days of nobody running the scheduler
    scheduler.tick(later)
    missed = [m["date"] for m in _of(engine, cid, "checkin.missed")]
    # Adelaide is +09:30: 5 May ends at 14:30 UTC, due at 02:30 UTC on the 9th with 12 h grace; the 8th is not.
    assert missed == [(start + timedelta(days=n)).isoformat() for n in range(6)]
    scheduler.tick(later)
    scheduler.tick(later + timedelta(minutes=1))
    assert [m["date"] for m in _of(engine, cid, "checkin.missed")] == missed


def test_milestones_and_risk_by_time_passing(engine) -> None:  # type: ignore[no-untyped-def]
    start = date(2027, 2, 1)
    zone = "America/Los_Angeles"  # PST: local midnight is 08:00 UTC
    _, cid = _setup(engine, zone, start, created_at=datetime(2027, 2, 1, 9, 0, tzinfo=UTC), coach_id="c-1")
    scheduler = Scheduler(engine)

    def midnight(day: date) -> datetime:
        return datetime(day.year, day.month, day.day, 8, 0, tzinfo=UTC)

    scheduler.tick(midnight(start + timedelta(days=1)) - S)
    assert _of(engine, cid, "streak.milestone_reached") == []
    scheduler.tick(midnight(start + timedelta(days=1)))
    hits = _of(engine, cid, "streak.milestone_reached")
    assert [(h["milestone"], h["run_started_on"], h["attempt"]) for h in hits] == [(1, start.isoformat(), 1)]
    assert hits[0]["current_days"] == 1
    scheduler.tick(midnight(start + timedelta(days=3)))
    assert [h["milestone"] for h in _of(engine, cid, "streak.milestone_reached")] == [1, 3]
    # Two finished days without any report: at risk, once.
    risk = _of(engine, cid, "client.at_risk")
    assert [(r["at_risk"], r["reasons"]) for r in risk] == [(True, ["not_checking_in"])]


def test_verified_policy_reaches_no_milestone_by_time(engine) -> None:  # type: ignore[no-untyped-def]
    start = date(2027, 2, 1)
    tenant, cid = _setup(engine, "Europe/Berlin", start, created_at=datetime(2027, 1, 31, 23, 30, tzinfo=UTC))
    handlers.update_settings(engine, tenant.admin, tenant.context, {"streak_policy": "verified"},
                             now=datetime(2027, 2, 1, tzinfo=UTC))
    Scheduler(engine).tick(datetime(2027, 2, 10, tzinfo=UTC))
    assert _of(engine, cid, "streak.milestone_reached") == []
    assert len(_of(engine, cid, "checkin.missed")) == 8


def test_two_schedulers_at_once_record_each_fact_once(postgres_url: str) -> None:
    from shared.db import engine_for

    engine = engine_for(postgres_url)
    commitments = [
        _setup(engine, zone, date(2027, 4, 1), created_at=datetime(2027, 3, 31, 12, 0, tzinfo=UTC))
        for zone in ("Pacific/Auckland", "America/Los_Angeles", "Europe/Berlin", "Asia/Kolkata")
    ]
    now = datetime(2027, 4, 15, 12, 0, tzinfo=UTC)
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            for tenant, commitment_id in commitments:
                handlers.run_scheduled(engine, tenant.tenant_id, commitment_id, now)
            Scheduler(engine).tick(now)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for _, commitment_id in commitments:
        stream = _stream(engine, commitment_id)
        missed = [e.data["date"] for e in stream if e.type == "checkin.missed"]
        assert len(missed) == len(set(missed)) >= 13
        hits = [(e.data["milestone"], e.data["run_started_on"]) for e in stream if e.type == "streak.milestone_reached"]
        assert len(hits) == len(set(hits)) and {h[0] for h in hits} == {1, 3, 7, 14}
        assert [e.stream_version for e in stream] == list(range(1, len(stream) + 1))
