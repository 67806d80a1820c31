"""The check-in API over real HTTP on PostgreSQL + RabbitMQ: rules, conflicts, settings."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from services.checkin import tables
from services.checkin.domain import local_today
from shared.db import read
from shared.eventstore import read_stream
from shared.testing import wait_until
from tests.integration.checkin.support import api, body, new_commitment

ZONE = "America/Los_Angeles"


def today_in(zone: str = ZONE):  # type: ignore[no-untyped-def]
    return local_today(zone, datetime.now(UTC))


def test_check_in_rules_in_the_commitments_zone(pg_stack) -> None:  # type: ignore[no-untyped-def]
    tenant = pg_stack.tenant()
    today = today_in()
    cid = pg_stack.commitment(tenant, timezone=ZONE, starts_on=today - timedelta(days=20), duration_days=60)
    fresh = pg_stack.commitment(tenant, timezone=ZONE, starts_on=today, duration_days=30)
    url = f"/v1/commitments/{cid}/check-ins"
    with api(pg_stack.base_url) as client:
        client.headers.update(tenant.headers())

        def refused(path: str, payload: dict, field: str) -> None:  # type: ignore[type-arg]
            response = client.post(path, json=payload)
            assert response.status_code == 422, response.text
            assert response.headers["Content-Type"].startswith("application/problem+json")
            assert field in response.json()["errors"], response.json()

        refused(url, body("kept", today + timedelta(days=1)), "date")  # tomorrow in Los Angeles
        refused(f"/v1/commitments/{fresh}/check-ins", body("kept", today - timedelta(days=1)), "date")  # before start
        refused(url, body("kept", today - timedelta(days=8)), "date")  # outside the 7-day window
        refused(url, {"outcome": "slipped"}, "slip")
        refused(url, body("kept", slip={"channel": "texts", "initiated_by": "me"}), "slip")
        refused(url, body("slipped", slip={"channel": "email", "initiated_by": "me"}), "slip.channel")
        refused(url, body("slipped", slip={"channel": "pigeon", "initiated_by": "me"}), "slip.channel")
        refused(url, body("slipped", slip={"channel": "texts", "initiated_by": "nobody"}), "slip.initiated_by")
        refused(url, body("kept", urge=11), "urge")
        refused(url, body("kept", mood=0), "mood")
        refused(url, body("kept", note="x" * 2001), "note")
        refused(url, body("maybe"), "outcome")
        refused(url, body("kept", colour="blue"), "colour")
        assert client.post(url, content=b"{not json", headers={"Content-Type": "application/json"}).status_code == 400
        assert client.post(url, content=b"outcome=kept",
                           headers={"Content-Type": "application/x-www-form-urlencoded"}).status_code == 415

        # Within the window: a backdated slip, then today kept.
        slipped_on = today - timedelta(days=7)
        assert client.post(url, json=body("slipped", slipped_on, urge=9)).status_code == 201
        first = client.post(url, json=body("kept", urge=2, mood=4, note="calm"))
        assert first.status_code == 201
        assert first.json()["note"] == "calm"
        duplicate = client.post(url, json=body("slipped"))
        assert duplicate.status_code == 409
        assert "PUT" in duplicate.json()["detail"]

        streak = client.get(f"/v1/commitments/{cid}/streak").json()
        assert streak["current_days"] == 7 and streak["last_slip_on"] == slipped_on.isoformat()
        assert streak["streak_started_on"] == (slipped_on + timedelta(days=1)).isoformat()

        # Correct the old slip to kept: the streak is as if it never happened.
        corrected = client.put(f"{url}/{slipped_on.isoformat()}", json={"outcome": "kept", "urge": 1})
        assert corrected.status_code == 200, corrected.text
        assert corrected.json()["outcome"] == "kept" and corrected.json()["version"] > 1
        streak = client.get(f"/v1/commitments/{cid}/streak").json()
        assert streak["current_days"] == 21 and streak["slipped_days"] == 0 and streak["last_slip_on"] is None
        assert client.put(f"{url}/{(today - timedelta(days=3)).isoformat()}", json=body("kept")).status_code == 404
        assert client.put(f"{url}/yesterday", json=body("kept")).status_code == 422

        listed = client.get(url, params={"from": (today - timedelta(days=7)).isoformat(), "to": today.isoformat()})
        assert [item["date"] for item in listed.json()["items"]] == [slipped_on.isoformat(), today.isoformat()]
        assert client.get(url, params={"from": today.isoformat(), "to": slipped_on.isoformat()}).status_code == 422

        # The events carry ids and streak figures, so a webhook needs no lookup.
        with read(pg_stack.engine) as conn:
            stream = read_stream(conn, f"checkin-{cid}")
        types = [e.type for e in stream]
        assert types.count("checkin.recorded") == 2 and types.count("checkin.corrected") == 1
        assert "streak.reset" in types and "streak.milestone_reached" in types
        for event in stream:
            assert event.data["commitment_id"] == cid and event.data["member_id"] == "m-1"
            assert event.tenant_id == tenant.tenant_id
            assert "current_days" in event.data
        reset = next(e for e in stream if e.type == "streak.reset")
        assert reset.data["ended_run_days"] == 13  # starts_on .. the day before the slip
        corrected_event = next(e for e in stream if e.type == "checkin.corrected")
        assert corrected_event.data["previous_outcome"] == "slipped" and corrected_event.data["current_days"] == 21


def test_unknown_commitment_is_404_until_its_event_arrives(pg_stack) -> None:  # type: ignore[no-untyped-def]
    tenant = pg_stack.tenant()
    with api(pg_stack.base_url) as client:
        client.headers.update(tenant.headers())
        missing = client.post(f"/v1/commitments/{uuid.uuid4()}/check-ins", json=body("kept"))
        assert missing.status_code == 404
        assert missing.json()["status"] == 404
        commitment_id, _ = new_commitment(pg_stack.engine, tenant, starts_on=today_in("Europe/Berlin"))

        def accepted() -> bool:
            return client.post(f"/v1/commitments/{commitment_id}/check-ins", json=body("kept")).status_code == 201

        wait_until(accepted, timeout=15, message="the check-in to be accepted once commitment.created arrived")


def test_ended_or_completed_commitment_takes_no_check_ins_after_its_last_day(pg_stack) -> None:  # type: ignore[no-untyped-def]
    tenant = pg_stack.tenant()
    today = today_in()
    over = pg_stack.commitment(tenant, timezone=ZONE, starts_on=today - timedelta(days=10), duration_days=5)
    with api(pg_stack.base_url) as client:
        client.headers.update(tenant.headers())
        # ends_on passed in its zone: completed, even before commitment.completed arrives.
        response = client.post(f"/v1/commitments/{over}/check-ins", json=body("kept"))
        assert response.status_code == 409
        # CONTRACT v1.1 (this test asserted 409 before): its own last day, late but within the
        # backdating window, is still reported.
        last_day = client.post(f"/v1/commitments/{over}/check-ins", json=body("kept", today - timedelta(days=6)))
        assert last_day.status_code == 201, last_day.text


def test_settings_change_reprojects_the_tenants_streaks(pg_stack) -> None:  # type: ignore[no-untyped-def]
    tenant = pg_stack.tenant()
    other = pg_stack.tenant()
    today = today_in()
    cid = pg_stack.commitment(tenant, timezone=ZONE, starts_on=today - timedelta(days=5), duration_days=None)
    with api(pg_stack.base_url) as client:
        client.headers.update(tenant.headers())
        assert client.post(f"/v1/commitments/{cid}/check-ins", json=body("kept")).status_code == 201
        assert client.get(f"/v1/commitments/{cid}/streak").json()["current_days"] == 6

        settings = client.get("/v1/settings")
        assert settings.status_code == 200
        assert settings.json()["streak_policy"] == "since_last_slip" and settings.json()["backdate_days"] == 7
        changed = client.put("/v1/settings", json={"streak_policy": "verified", "milestones": [1, 2, 5]})
        assert changed.status_code == 200, changed.text
        assert changed.json()["milestones"] == [1, 2, 5] and changed.json()["backdate_days"] == 7
        assert client.put("/v1/settings", json={"milestones": [0]}).status_code == 422
        assert client.put("/v1/settings", json={"streak_policy": "lenient"}).status_code == 422
        assert client.put("/v1/settings", json={"backdate_days": 3}, headers={"If-Match": '"0"'}).status_code == 412

        streak = client.get(f"/v1/commitments/{cid}/streak").json()
        assert streak["policy"] == "verified" and streak["current_days"] == 1
        assert streak["milestones_reached"] == [1] and streak["next_milestone"] == 2
        with read(pg_stack.engine) as conn:
            row = conn.execute(select(tables.streaks).where(tables.streaks.c.commitment_id == cid)).one()
        assert row.policy == "verified" and row.current_days == 1  # the snapshot was re-projected too

        # Tenants never see each other's settings.
        assert client.get("/v1/settings", headers=other.headers()).json()["streak_policy"] == "since_last_slip"
