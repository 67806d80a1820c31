"""Urges logged between check-ins over HTTP, on PostgreSQL + RabbitMQ (CONTRACT v1.1):
POST and GET (paged, by local days), ``urge.logged`` without the note and with the trigger
and coping sealed, the note sealed in its row and hidden from coaches, and the standing an
urge that ended in reaching out gives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from services.checkin import tables
from services.checkin.domain import local_today
from shared import keyring
from shared.db import read
from shared.eventstore import read_stream
from tests.integration.checkin.support import api, body

ZONE = "Asia/Tokyo"


def test_urges_over_http(pg_stack) -> None:  # type: ignore[no-untyped-def]
    stack = pg_stack
    tenant = stack.tenant()
    now = datetime.now(UTC)
    today = local_today(ZONE, now)
    start = today - timedelta(days=5)
    cid = stack.commitment(tenant, timezone=ZONE, starts_on=start, member_id="m-1", coach_id="coach-1")
    url = f"/v1/commitments/{cid}"
    member, coach = tenant.headers("member", "m-1"), tenant.headers("coach", "coach-1")
    with api(stack.base_url) as client:
        client.headers.update(member)
        for offset in range(5):
            assert client.post(f"{url}/check-ins", json=body("kept", start + timedelta(offset))).status_code == 201
        ats = [now - timedelta(days=3, hours=n) for n in range(4)]
        for n, at in enumerate(ats):
            logged = client.post(f"{url}/urges", json={"at": at.isoformat(), "intensity": 2 + n, "outcome": "passed",
                                                       "trigger": "saw their car", "note": f"secret {n}"})
            assert logged.status_code == 201, logged.text
            assert logged.json()["note"] == f"secret {n}" and logged.json()["trigger"] == "saw their car"
        assert client.get(f"{url}/streak").status_code == 200
        assert not client.get("/v1/coaches/coach-1/clients", headers=coach).json()["items"][0]["reasons"]
        now_one = client.post(f"{url}/urges", json={"intensity": 9, "outcome": "reached_out", "coping": "cried"})
        assert now_one.status_code == 201, now_one.text

        # Newest first, a page at a time; coaches see no note.
        first = client.get(f"{url}/urges", params={"limit": 2})
        assert first.status_code == 200
        page = first.json()
        assert [u["intensity"] for u in page["items"]] == [9, 2] and page["next_cursor"]
        rest = client.get(f"{url}/urges", params={"limit": 3, "cursor": page["next_cursor"]}).json()
        assert [u["intensity"] for u in rest["items"]] == [3, 4, 5] and rest["next_cursor"] is None
        assert client.get(f"{url}/urges", params={"cursor": "forged"}).status_code == 422
        # The ends of the calendar: an answer, not a 500.
        for bounds in ({"from": "0001-01-01"}, {"to": "9999-12-31"}, {"from": "0001-01-01", "to": "9999-12-31"}):
            assert client.get(f"{url}/urges", params=bounds).status_code == 200, bounds
        for at in ("0001-01-01T00:00:00Z", "9999-12-31T23:00:00-12:00"):
            far = client.post(f"{url}/urges", json={"intensity": 3, "outcome": "passed", "at": at})
            assert far.status_code == 422 and "at" in far.json()["errors"], far.text
        day = local_today(ZONE, ats[0]).isoformat()
        on_day = client.get(f"{url}/urges", params={"from": day, "to": day}).json()["items"]
        assert {u["urge_id"] for u in on_day} <= {u["urge_id"] for u in page["items"] + rest["items"]}
        assert on_day and all(u["outcome"] == "passed" for u in on_day)
        coached = client.get(f"{url}/urges", headers=coach).json()["items"]
        # A coach reads levels, times and outcomes, never the member's own words.
        assert coached and all(u["note"] is None and u["trigger"] is None and u["coping"] is None for u in coached)
        assert client.get(f"{url}/urges").json()["items"][-1]["trigger"] == "saw their car"
        assert client.post(f"{url}/urges", json={"intensity": 3, "outcome": "passed"}, headers=coach).status_code == 403
        assert client.get(f"{url}/urges", headers=tenant.headers("member", "m-2")).status_code == 404
        assert client.get(f"{url}/urges", headers=stack.tenant().headers()).status_code == 404
        for wrong, field in (({"intensity": 11, "outcome": "passed"}, "intensity"),
                             ({"intensity": 3, "outcome": "maybe"}, "outcome"),
                             ({"intensity": 3, "outcome": "passed", "at": (now + timedelta(hours=1)).isoformat()},
                              "at"),
                             ({"intensity": 3, "outcome": "passed", "note": "x" * 2001}, "note")):
            refused = client.post(f"{url}/urges", json=wrong)
            assert refused.status_code == 422 and field in refused.json()["errors"], refused.text

        # The fifth urge within a week, and one that ended in reaching out: at risk, at once.
        reasons = client.get("/v1/coaches/coach-1/clients", headers=coach).json()["items"][0]["reasons"]
        assert reasons == ["frequent_urges", "urge_reached_out"]
        # The same from the rows when the snapshot is not today's (a lagging scheduler).
        with stack.engine.begin() as conn:
            conn.execute(tables.streaks.update().where(tables.streaks.c.commitment_id == cid)
                         .values(as_of=today - timedelta(days=1)))
        assert client.get("/v1/coaches/coach-1/clients", headers=coach).json()["items"][0]["reasons"] == reasons

    with read(stack.engine) as conn:
        stream = read_stream(conn, f"checkin-{cid}")
        notes = conn.execute(select(tables.urges.c.note).where(tables.urges.c.commitment_id == cid)).scalars().all()
    urges = [e for e in stream if e.type == "urge.logged"]
    assert len(urges) == 5 and all("note" not in e.data for e in urges)
    assert keyring.is_sealed(urges[0].data["trigger"]) and keyring.is_sealed(urges[-1].data["coping"])
    assert all(keyring.is_sealed(note) for note in notes if note is not None) and "secret" not in str(notes)
    assert "saw their car" not in str([e.data for e in stream])
    # Partners hear of a standing once the first check-in deadline (of the day it was made) passed.
    assert not [e for e in stream if e.type == "client.at_risk"]
