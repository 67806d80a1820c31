"""Two check-ins for the same day at once: exactly one wins, the others get 409, nothing half-written."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import func, select

from services.checkin import tables
from services.checkin.domain import local_today
from shared.db import read
from shared.eventstore import read_stream
from tests.integration.checkin.support import body


def test_same_day_race_over_http(pg_stack) -> None:  # type: ignore[no-untyped-def]
    tenant = pg_stack.tenant()
    zone = "Pacific/Auckland"
    today = local_today(zone, datetime.now(UTC))
    cid = pg_stack.commitment(tenant, timezone=zone, starts_on=today - timedelta(days=5))
    url = f"{pg_stack.base_url}/v1/commitments/{cid}/check-ins"
    for round_, day in enumerate([today, today - timedelta(days=1), today - timedelta(days=2)]):
        barrier = threading.Barrier(6)
        statuses: list[int] = []

        def post(outcome: str, barrier: threading.Barrier = barrier, day=day, statuses=statuses) -> None:  # type: ignore[no-untyped-def]
            barrier.wait()
            response = httpx.post(url, json=body(outcome, day), headers=tenant.headers(), timeout=20)
            statuses.append(response.status_code)

        threads = [threading.Thread(target=post, args=("kept" if i % 2 else "slipped",)) for i in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(statuses) == [201, 409, 409, 409, 409, 409], (round_, statuses)

    with read(pg_stack.engine) as conn:
        stream = read_stream(conn, f"checkin-{cid}")
        rows = conn.execute(
            select(func.count()).select_from(tables.check_ins).where(tables.check_ins.c.commitment_id == cid)
        ).scalar()
    recorded = [e.data["date"] for e in stream if e.type == "checkin.recorded"]
    assert sorted(recorded) == sorted({d for d in recorded}) and len(recorded) == 3
    assert rows == 3
    assert [e.stream_version for e in stream] == list(range(1, len(stream) + 1))
