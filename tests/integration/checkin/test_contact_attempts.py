"""Contact attempts and necessary contact on a kept check-in over HTTP, on PostgreSQL +
RabbitMQ (CONTRACT v1.1): ``held_firm_days`` in the streak and the coach's view, the
necessary contact's exception checked against the commitment's boundaries, its note sealed
in the log and hidden from coaches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from services.checkin import tables
from services.checkin.domain import local_today
from shared import keyring
from shared.db import read
from shared.eventstore import read_stream
from shared.testing import wait_until
from tests.integration.checkin.support import api, body, commitment_event

ZONE = "Europe/Berlin"


def test_held_firm_days_and_necessary_contact(pg_stack) -> None:  # type: ignore[no-untyped-def]
    stack = pg_stack
    tenant = stack.tenant()
    today = local_today(ZONE, datetime.now(UTC))
    start = today - timedelta(days=5)
    cid = stack.commitment(tenant, timezone=ZONE, starts_on=start, member_id="m-1", coach_id="coach-1")
    commitment_event(stack.engine, tenant, cid, "commitment.boundaries_changed", {
        "commitment_id": cid, "member_id": "m-1",
        "exceptions": [{"label": "handover", "channels": ["in_person"]}, {"label": "lawyer", "channels": ["email"]}],
        "places": []})

    def boundaries_known() -> bool:
        with read(stack.engine) as conn:
            row = conn.execute(select(tables.commitments.c.boundaries_version)
                               .where(tables.commitments.c.commitment_id == cid)).scalar_one()
        return row > 1

    wait_until(boundaries_known, 15, message="the boundaries at the check-in inbox")
    url = f"/v1/commitments/{cid}"
    member, coach = tenant.headers("member", "m-1"), tenant.headers("coach", "coach-1")
    attempts = [{"channel": "calls", "answered": False}, {"channel": "texts"}]
    with api(stack.base_url) as client:
        client.headers.update(member)
        held = client.post(f"{url}/check-ins", json=body("kept", start, contact_attempts=attempts))
        assert held.status_code == 201, held.text
        assert held.json()["contact_attempts"] == [{"channel": "calls", "answered": False},
                                                   {"channel": "texts", "answered": False}]
        note = "handover at the school gate"
        necessary = client.post(f"{url}/check-ins", json=body("kept", start + timedelta(1),
                                                              necessary_contact={"exception": 1, "note": note}))
        assert necessary.status_code == 201, necessary.text
        assert necessary.json()["necessary_contact"] == {"exception": 1, "note": note}

        for wrong, field in (
            (body("kept", start + timedelta(2), necessary_contact={"exception": 2}), "necessary_contact.exception"),
            (body("slipped", start + timedelta(2), necessary_contact={"exception": 0}), "necessary_contact"),
            (body("slipped", start + timedelta(2), contact_attempts=attempts), "contact_attempts"),
            (body("kept", start + timedelta(2), contact_attempts=[{"channel": "calls", "answered": True}]),
             "contact_attempts.0.answered"),
            (body("kept", start + timedelta(2), contact_attempts=[{"channel": "owl"}]), "contact_attempts.0.channel"),
        ):
            refused = client.post(f"{url}/check-ins", json=wrong)
            assert refused.status_code == 422, (wrong, refused.text)
            assert field in refused.json()["errors"], (field, refused.json())

        streak = client.get(f"{url}/streak").json()
        assert (streak["held_firm_days"], streak["kept_days"]) == (1, 2)
        view = client.get("/v1/coaches/coach-1/clients", headers=coach).json()["items"][0]["commitments"][0]
        assert view["streak"]["held_firm_days"] == 1
        # The coach sees the day's necessary contact, not its note; the member reads it opened.
        day = (start + timedelta(1)).isoformat()
        assert client.get(f"{url}/check-ins/{day}", headers=coach).json()["necessary_contact"] == {
            "exception": 1, "note": None}
        assert client.get(f"{url}/check-ins", params={"from": day, "to": day}).json()["items"][0][
            "necessary_contact"]["note"] == note

    with read(stack.engine) as conn:
        stream = read_stream(conn, f"checkin-{cid}")
        stored = conn.execute(select(tables.check_ins.c.necessary_contact).where(
            tables.check_ins.c.commitment_id == cid, tables.check_ins.c.day == start + timedelta(1))).scalar_one()
    recorded = [e for e in stream if e.type == "checkin.recorded"]
    assert keyring.is_sealed(recorded[1].data["necessary_contact"]["note"]) and keyring.is_sealed(stored["note"])
    assert note not in str([e.data for e in stream])
    assert recorded[0].data["held_firm_days"] == 1
