"""The aside-and-swap rebuild of the check-in read models, on PostgreSQL and SQLite.

- it gives the very tables incremental (inline) processing keeps, and the same table, index
  and primary-key names as the migrations made, with no shadow left behind;
- while it runs, check-ins keep being appended (a writer thread) and the service keeps
  answering reads over HTTP; none of those check-ins is lost by the swap;
- a rebuild that fails leaves the live tables alone and drops its shadows.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Connection, Engine, Table, func, inspect, select

from services.checkin import handlers, tables
from services.checkin.projections import OWN_EVENTS, own_projection
from services.checkin.rebuild import CheckinRebuild
from shared.db import engine_for, read
from shared.eventstore import Checkpoint
from shared.projection import SHADOW_SUFFIX, rebuild, rebuild_aside
from shared.schema import events
from shared.testing import wait_until
from tests.integration.checkin.support import deliver, new_commitment, new_tenant
from tests.integration.checkin.test_rebuild import NOW, START, play, snapshot

LIVE = (tables.check_ins, tables.streaks, tables.settings)


def layout(engine: Engine) -> dict[str, Any]:
    """Table names, index names and columns, primary-key names: what the swap must keep."""
    with engine.connect() as conn:
        inspector = inspect(conn)
        names = sorted(inspector.get_table_names())
        return {
            "tables": [n for n in names if n.startswith("checkin_")],
            **{
                t.name: (
                    sorted((i["name"], tuple(i["column_names"]), i["unique"]) for i in inspector.get_indexes(t.name)),
                    inspector.get_pk_constraint(t.name),
                    [(c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(t.name)],
                )
                for t in LIVE
            },
        }


def test_aside_equals_incremental_and_keeps_the_layout(engine: Engine) -> None:
    ops = [(n, "slipped" if n % 6 == 5 else "kept", n % 4 == 0) for n in range(25)] + [(3, "slipped", False)]
    play(engine, ops, "since_last_slip")
    play(engine, [(n, "kept", False) for n in range(0, 20, 2)], "verified")
    before, shape = snapshot(engine), layout(engine)
    assert before["checkin_check_ins"] and before["checkin_streaks"] and before["checkin_settings"]

    report = rebuild_aside(engine, CheckinRebuild(lambda: NOW))

    assert snapshot(engine) == before
    assert layout(engine) == shape
    assert not [n for n in shape["tables"] if n.endswith(SHADOW_SUFFIX)]
    with read(engine) as conn:
        own = conn.execute(select(func.count()).where(events.c.type.in_(OWN_EVENTS))).scalar()
    assert report.events == own > len(before["checkin_check_ins"])
    assert report.paused_seconds < report.seconds and report.events_per_second > 0
    with read(engine) as conn:
        assert Checkpoint("projection:checkin.read_models").get(conn) > 0
    # A second rebuild over the swapped-in tables (their renamed indexes) works the same way.
    rebuild_aside(engine, CheckinRebuild(lambda: NOW))
    assert snapshot(engine) == before and layout(engine) == shape


def test_corrupted_read_model_is_repaired(engine: Engine) -> None:
    play(engine, [(n, "kept", False) for n in range(10)], "since_last_slip")
    before = snapshot(engine)
    with engine.begin() as conn:
        conn.execute(tables.check_ins.delete().where(tables.check_ins.c.day > START + timedelta(days=4)))
        conn.execute(tables.streaks.update().values(current_days=999))
    assert snapshot(engine) != before
    rebuild_aside(engine, CheckinRebuild(lambda: NOW))
    assert snapshot(engine) == before


class FailingRebuild(CheckinRebuild):
    def catch_up(self, conn: Connection, shadows: Mapping[str, Table], after: int, *, final: bool) -> tuple[int, int]:
        if final:
            raise RuntimeError("boom in the paused window")
        return super().catch_up(conn, shadows, after, final=final)


def test_a_failed_rebuild_leaves_the_live_tables_and_no_shadow(engine: Engine) -> None:
    play(engine, [(n, "kept", False) for n in range(5)], "since_last_slip")
    before, shape = snapshot(engine), layout(engine)
    with pytest.raises(RuntimeError, match="boom"):
        rebuild_aside(engine, FailingRebuild(lambda: NOW))
    assert snapshot(engine) == before and layout(engine) == shape


class Traffic:
    """A writer appending check-ins (and corrections, and a settings change) through the
    handlers, and a reader asking the running service over HTTP, both until stopped."""

    def __init__(self, engine: Engine, base_url: str) -> None:
        self.engine = engine
        self.base_url = base_url
        self.tenant = new_tenant(engine)
        self.commitments: list[str] = []
        for member in range(16):
            cid, events = new_commitment(engine, self.tenant, member_id=f"m-{member}", starts_on=START,
                                         duration_days=60, created_at=datetime(2027, 5, 31, tzinfo=UTC))
            deliver(engine, events)
            self.commitments.append(cid)
        deliver(engine, self.tenant.events)
        handlers.update_settings(engine, self.tenant.admin, self.tenant.context, {"backdate_days": 365}, now=NOW)
        self.committed: dict[tuple[str, str], str] = {}  # (commitment, day) -> the outcome last committed
        self.writes = 0  # check-ins and corrections committed
        self.first = 60  # check-ins made before the rebuild starts
        self.exhausted = False  # every day of every commitment reported: nothing left to write
        self.capacity = len(self.commitments) * 30  # one per commitment and day of June 2027
        self.reads: list[int] = []  # HTTP statuses
        self.errors: list[BaseException] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._guard(self._write), daemon=True),
                        threading.Thread(target=self._guard(self._read), daemon=True)]

    def _guard(self, target):  # type: ignore[no-untyped-def]
        def run() -> None:
            try:
                target()
            except BaseException as error:  # surfaced by the test, not lost in the thread
                self.errors.append(error)
        return run

    def _report(self, n: int) -> dict[str, Any]:
        outcome = "slipped" if n % 7 == 3 else "kept"
        report: dict[str, Any] = {"outcome": outcome, "urge": n % 11}
        if outcome == "slipped":
            report["slip"] = {"channel": "texts", "initiated_by": "them"}
        return report

    def _key(self, n: int) -> tuple[str, date]:
        return self.commitments[n % len(self.commitments)], START + timedelta(days=n // len(self.commitments))

    def write_one(self, n: int) -> None:
        """Check-in n goes to a day nobody reported yet, so a check-in the swap lost would stay
        lost (no later write to the same day could put the row back)."""
        cid, day = self._key(n)
        report = self._report(n)
        handlers.record_check_in(self.engine, self.tenant.admin, self.tenant.context, cid, {**report, "date": day},
                                 now=NOW)
        self.committed[(cid, day.isoformat())] = report["outcome"]
        self.writes += 1

    def correct_one(self, n: int, of: int) -> None:
        """Correct check-in `of` (made before the rebuild began: its row is in the fill)."""
        cid, day = self._key(of)
        report = self._report(n + 1)
        handlers.correct_check_in(self.engine, self.tenant.admin, self.tenant.context, cid, day, report, now=NOW)
        self.committed[(cid, day.isoformat())] = report["outcome"]
        self.writes += 1

    def _write(self) -> None:
        n = self.first
        while not self.stop.is_set() and n < self.capacity:
            self.write_one(n)
            if n % 5 == 0:
                self.correct_one(n, of=n % self.first)
            if n == self.first + 30:  # re-projects every streak of the tenant, during the rebuild
                handlers.update_settings(self.engine, self.tenant.admin, self.tenant.context,
                                         {"streak_policy": "verified"}, now=NOW)
            n += 1
        self.exhausted = n >= self.capacity

    def _read(self) -> None:
        headers = {"Authorization": f"Bearer {self.tenant.api_key}"}
        with httpx.Client(base_url=self.base_url, timeout=10, headers=headers) as client:
            while not self.stop.is_set():
                for cid in self.commitments:
                    self.reads.append(client.get(f"/v1/commitments/{cid}/check-ins").status_code)
                    self.reads.append(client.get(f"/v1/commitments/{cid}/streak").status_code)

    def __enter__(self) -> Traffic:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)


class SlowFill(CheckinRebuild):
    """Holds the rebuild between its fill and its catch-ups until the traffic has appended
    (and read) more, so the test cannot pass by the rebuild simply being quick."""

    def __init__(self, traffic: Traffic) -> None:
        super().__init__(lambda: NOW)
        self.traffic = traffic
        self.during: tuple[int, int] = (0, 0)

    def fill(self, engine: Engine, shadows: Mapping[str, Table], up_to: int) -> int:
        writes, reads = self.traffic.writes, len(self.traffic.reads)
        count = super().fill(engine, shadows, up_to)
        # The shadows exist and are full: appends and reads must still flow.
        wait_until(lambda: len(self.traffic.reads) >= reads + 20, timeout=30, message="reads during the rebuild")
        wait_until(lambda: self.traffic.writes >= writes + 60 or self.traffic.errors, timeout=60,
                   message="appends during the rebuild")
        self.during = (self.traffic.writes - writes, len(self.traffic.reads) - reads)
        return count


@pytest.mark.parametrize("unlocked_catch_ups", [0, 3], ids=["all-in-the-pause", "caught-up-first"])
def test_rebuild_while_check_ins_are_appended_and_read(database_url: str, stack_factory,  # type: ignore[no-untyped-def]
                                                       unlocked_catch_ups: int) -> None:
    engine = engine_for(database_url)
    # The API only (no scheduler: it would move the snapshots with the wall clock, not NOW).
    stack = stack_factory(database_url, ["checkin"], workers=False, env={"NOCONTACT_RATE_LIMIT_PER_MINUTE": "0"})
    traffic = Traffic(engine, stack.url("checkin", ""))
    for n in range(traffic.first):  # something to rebuild before the traffic starts
        traffic.write_one(n)

    projection = SlowFill(traffic)
    with traffic:
        report = rebuild_aside(engine, projection, unlocked_catch_ups=unlocked_catch_ups)
        swapped_at = traffic.writes
        wait_until(lambda: traffic.writes >= swapped_at + 20 or traffic.exhausted or traffic.errors, timeout=60,
                   message="appends after the swap")
    assert not traffic.errors, traffic.errors
    appended_during, read_during = projection.during
    assert appended_during >= 60 and read_during >= 20
    assert set(traffic.reads) == {200}
    assert report.events >= traffic.first + appended_during
    if not unlocked_catch_ups:  # what was appended during the fill, all applied in the paused window
        assert report.events_in_pause >= appended_during

    # No committed check-in lost: each (commitment, day) holds the outcome last committed.
    with read(engine) as conn:
        rows = {(r.commitment_id, r.day.isoformat()): r.outcome
                for r in conn.execute(select(tables.check_ins.c.commitment_id, tables.check_ins.c.day,
                                             tables.check_ins.c.outcome))}
    assert rows == traffic.committed
    # And the tables are those incremental processing gives (the lock-based replay, proven
    # equal to the inline path in test_rebuild, is the reference).
    after = snapshot(engine)
    rebuild(engine, own_projection(lambda: NOW))
    assert snapshot(engine) == after
