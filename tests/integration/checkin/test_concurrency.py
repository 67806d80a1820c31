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


def _in_parallel(requests: list[tuple[str, str, dict]]) -> list[httpx.Response]:  # type: ignore[type-arg]
    """Send every (method, url, body) at once, one thread each; the responses in that order."""
    barrier = threading.Barrier(len(requests))
    responses: list[httpx.Response | None] = [None] * len(requests)

    def send(index: int, method: str, url: str, payload: dict, headers: dict) -> None:  # type: ignore[type-arg]
        barrier.wait()
        responses[index] = httpx.request(method, url, json=payload, headers=headers, timeout=60)

    threads = [threading.Thread(target=send, args=(i, *request)) for i, request in enumerate(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(response is not None for response in responses)
    return responses  # type: ignore[return-value]


def test_a_crowd_on_one_commitment_gets_2xx_or_409_and_each_2xx_is_stored_once(pg_stack) -> None:  # type: ignore[no-untyped-def]
    """20 check-ins of distinct days at once, then 20 corrections at once, on one commitment:
    a writer that keeps losing the race is told to retry (409), never a 500, and every
    answered write is in the store exactly once, at the version it answered with."""
    tenant = pg_stack.tenant()
    zone = "Europe/Berlin"
    today = local_today(zone, datetime.now(UTC))
    cid = pg_stack.commitment(tenant, timezone=zone, starts_on=today - timedelta(days=25))
    headers = tenant.headers()
    assert httpx.put(f"{pg_stack.base_url}/v1/settings", json={"backdate_days": 30}, headers=headers,
                     timeout=20).status_code == 200
    url = f"{pg_stack.base_url}/v1/commitments/{cid}/check-ins"
    days = [today - timedelta(days=n) for n in range(20)]

    posted = _in_parallel([("POST", url, body("kept", day), headers) for day in days])
    assert {r.status_code for r in posted} <= {201, 409}, [(r.status_code, r.text) for r in posted]
    recorded = {r.json()["date"]: r.json()["version"] for r in posted if r.status_code == 201}
    assert recorded

    reported = sorted(recorded)
    corrections = _in_parallel([("PUT", f"{url}/{day}", {"outcome": "kept", "note": f"second look at {day}"},
                                 headers) for day in reported])
    assert {r.status_code for r in corrections} <= {200, 409}, [(r.status_code, r.text) for r in corrections]
    corrected = {r.json()["date"]: r.json()["version"] for r in corrections if r.status_code == 200}
    assert corrected

    with read(pg_stack.engine) as conn:
        stream = read_stream(conn, f"checkin-{cid}")
    for type_, answered, asked in (("checkin.recorded", recorded, [d.isoformat() for d in days]),
                                   ("checkin.corrected", corrected, reported)):
        stored: dict[str, list[int]] = {}
        for event in stream:
            if event.type == type_:
                stored.setdefault(event.data["date"], []).append(event.stream_version)
        # Every 2xx once, at the version it answered; a 409 left nothing behind.
        assert stored == {day: [version] for day, version in answered.items()}, (type_, stored, answered)
        assert set(stored) <= set(asked)
    assert [e.stream_version for e in stream] == list(range(1, len(stream) + 1))
