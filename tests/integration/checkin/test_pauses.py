"""Pauses (CONTRACT v1.1, "Between check-ins") over the real store and over HTTP (PostgreSQL +
RabbitMQ, SQLite + the filesystem broker): excused days in the streak, no missed check-in
for them, the rules (422 naming the field), who may do what, the reason sealed, and the
state rows and the pauses' rows a rebuild gives equal to those the commands keep."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select

from services.checkin import handlers, tables
from services.checkin.domain import local_today
from services.checkin.projections import own_projection
from services.checkin.rebuild import CheckinRebuild
from shared import keyring
from shared.db import read
from shared.eventstore import read_stream
from shared.projection import rebuild, rebuild_aside
from tests.integration.checkin.support import api, body, deliver, new_commitment, new_tenant
from tests.integration.checkin.test_rebuild import snapshot

NOW = datetime(2027, 6, 30, 12, 0, tzinfo=UTC)
START = date(2027, 6, 1)


def _play(engine, policy: str):  # type: ignore[no-untyped-def]
    """Reports of June 1-29 but for 10-14, paused (June 1 held firm); a pause scheduled then
    cancelled; the scheduler's pass."""
    tenant = new_tenant(engine)
    cid, events = new_commitment(engine, tenant, timezone="Europe/Berlin", starts_on=START, duration_days=60,
                                 created_at=datetime(2027, 5, 31, tzinfo=UTC), coach_id="coach")
    deliver(engine, tenant.events + events)
    handlers.update_settings(engine, tenant.admin, tenant.context, {"backdate_days": 365, "streak_policy": policy,
                                                                    "milestones": [1, 3, 7, 14, 21]}, now=NOW)
    admin, context = tenant.admin, tenant.context
    for offset in (*range(0, 9), *range(14, 29)):
        attempts = [{"channel": "calls", "answered": False}] if offset == 0 else []
        handlers.record_check_in(engine, admin, context, cid, {"outcome": "kept", "date": START + timedelta(offset),
                                                               "contact_attempts": attempts}, now=NOW)
    handlers.schedule_pause(engine, admin, context, cid, {"from_": date(2027, 6, 10), "to": date(2027, 6, 14),
                                                          "reason": "hospital"}, now=NOW)
    other = handlers.schedule_pause(engine, admin, context, cid, {"from_": date(2027, 7, 2), "to": date(2027, 7, 3)},
                                    now=NOW)
    handlers.cancel_pause(engine, admin, context, cid, other.data["pause_id"], now=NOW)
    handlers.run_scheduled(engine, tenant.tenant_id, cid, NOW)
    return tenant, cid


def test_excused_days_in_the_state_and_rebuild_equals_incremental(engine) -> None:  # type: ignore[no-untyped-def]
    _, cid = _play(engine, "since_last_slip")
    _play(engine, "verified")
    with read(engine) as conn:
        state = conn.execute(select(tables.streaks).where(tables.streaks.c.commitment_id == cid)).one()
        stream = read_stream(conn, f"checkin-{cid}")
        pauses = list(conn.execute(select(tables.pauses).where(tables.pauses.c.commitment_id == cid)
                                   .order_by(tables.pauses.c.first_day)))
    # June 10-14 unreported and paused: excused, the run goes on over them (9 + 15 days).
    assert state.days[:1] == "h" and state.held_firm_days == 1
    assert state.days[9:14] == "xxxxx" and state.excused_days == 5
    assert (state.current_days, state.longest_days, state.unreported_days) == (24, 24, 0)
    assert not [e for e in stream if e.type == "checkin.missed" and "2027-06-1" in e.data["date"]]
    scheduled = next(e for e in stream if e.type == "pause.scheduled")
    assert keyring.is_sealed(scheduled.data["reason"]) and keyring.is_sealed(pauses[0].reason)
    assert [p.cancelled_at is None for p in pauses] == [True, False]

    def rows() -> dict[str, list[tuple]]:  # type: ignore[type-arg]
        with read(engine) as conn:
            return {**snapshot(engine), "pauses": [tuple(row) for row in conn.execute(
                select(tables.pauses).order_by(tables.pauses.c.pause_id))]}

    before = rows()
    assert len(before["pauses"]) == 4
    rebuild(engine, own_projection(lambda: NOW))
    assert rows() == before
    rebuild_aside(engine, CheckinRebuild(lambda: NOW))
    assert rows() == before


def _today(zone: str) -> date:
    return local_today(zone, datetime.now(UTC))


@pytest.mark.parametrize("which", ["pg_stack", "embedded_stack"])
def test_pauses_over_http(which: str, request: pytest.FixtureRequest) -> None:
    stack = request.getfixturevalue(which)
    tenant = stack.tenant()
    zone = "Europe/Berlin"
    today = _today(zone)
    start = today - timedelta(days=10)
    cid = stack.commitment(tenant, timezone=zone, starts_on=start, duration_days=60, member_id="m-1",
                           coach_id="coach-1")
    url = f"/v1/commitments/{cid}"
    member = tenant.headers("member", "m-1")
    with api(stack.base_url) as client:
        client.headers.update(tenant.headers())
        assert client.put("/v1/settings", json={"backdate_days": 14}).status_code == 200
        # (The reminder time of CONTRACT v1.1 is a setting too: HH:MM or null.)
        wrong_time = client.put("/v1/settings", json={"reminder_local_time": "24:00"})
        assert wrong_time.status_code == 422 and "reminder_local_time" in wrong_time.json()["errors"]
        assert client.put("/v1/settings", json={"reminder_local_time": "20:00"}).json()["reminder_local_time"] == \
            "20:00"
        for offset in (0, 1, 2, 3, 7, 8, 9):
            assert client.post(f"{url}/check-ins", json=body("kept", start + timedelta(offset)),
                               headers=member).status_code == 201
        assert client.get(f"{url}/streak").json()["current_days"] == 10  # 4-6 unreported count as kept

        first, last = start + timedelta(4), start + timedelta(6)
        created = client.post(f"{url}/pauses", json={"from": first.isoformat(), "to": last.isoformat(),
                                                     "reason": "funeral"}, headers=member)
        assert created.status_code == 201, created.text
        pause = created.json()
        assert pause["reason"] == "funeral" and pause["from"] == first.isoformat() and pause["cancelled_at"] is None
        assert created.headers["Location"] == f"{url}/pauses/{pause['pause_id']}"
        streak = client.get(f"{url}/streak").json()
        assert (streak["current_days"], streak["excused_days"], streak["unreported_days"]) == (7, 3, 0)
        clients = client.get("/v1/coaches/coach-1/clients").json()["items"][0]["commitments"][0]
        assert clients["streak"]["excused_days"] == 3
        assert [d["state"] for d in clients["last_30_days"]][3:8] == ["kept", "excused", "excused", "excused",
                                                                     "kept"]

        # Who sees and does what: the coach reads without the reason and cannot pause.
        coach = tenant.headers("coach", "coach-1")
        assert client.get(f"{url}/pauses", headers=coach).json()["items"][0]["reason"] is None
        assert client.get(f"{url}/pauses", headers=member).json()["items"][0]["reason"] == "funeral"
        assert client.post(f"{url}/pauses", json={"from": today.isoformat(), "to": today.isoformat()},
                           headers=coach).status_code == 403
        assert client.get(f"{url}/pauses", headers=tenant.headers("member", "m-2")).status_code == 404
        other = stack.tenant()
        assert client.get(f"{url}/pauses", headers=other.headers()).status_code == 404
        assert client.get(f"{url}/pauses/{pause['pause_id']}", headers=other.headers()).status_code == 404

        # The rules, each naming its field.
        for wrong, field in (
            ({"from": (first + timedelta(2)).isoformat(), "to": (today + timedelta(3)).isoformat()}, "from"),
            ({"from": today.isoformat(), "to": (today + timedelta(30)).isoformat()}, "to"),
            ({"from": (today - timedelta(15)).isoformat(), "to": (today - timedelta(14)).isoformat()}, "from"),
            ({"from": today.isoformat(), "to": (today - timedelta(1)).isoformat()}, "to"),
            ({"from": today.isoformat(), "to": today.isoformat(), "reason": "x" * 201}, "reason"),
            ({"to": today.isoformat()}, "from"),
        ):
            refused = client.post(f"{url}/pauses", json=wrong, headers=member)
            assert refused.status_code == 422, (wrong, refused.text)
            assert refused.headers["Content-Type"].startswith("application/problem+json")
            assert field in refused.json()["errors"], (wrong, refused.json())

        # The reason is sealed in the log; cancelling counts the days again.
        with read(stack.engine) as conn:
            stream = read_stream(conn, f"checkin-{cid}")
        assert "funeral" not in str([e.data for e in stream])
        assert client.delete(f"{url}/pauses/{pause['pause_id']}", headers=member).status_code == 204
        assert client.get(f"{url}/pauses/{pause['pause_id']}").json()["cancelled_at"] is not None
        assert client.delete(f"{url}/pauses/{pause['pause_id']}", headers=member).status_code == 404
        streak = client.get(f"{url}/streak").json()
        assert (streak["current_days"], streak["excused_days"]) == (10, 0)
