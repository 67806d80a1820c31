"""A coach's client list: every commitment's label, status, streak, last 30 days, urges, risk."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select

from services.checkin import handlers, queries, tables
from services.checkin.domain import local_today
from shared.db import read
from tests.integration.checkin.support import api, body, deliver, new_commitment, new_tenant

ZONE = "Asia/Kolkata"


def test_clients_with_risk_reasons(pg_stack) -> None:  # type: ignore[no-untyped-def]
    tenant = pg_stack.tenant()
    today = local_today(ZONE, datetime.now(UTC))
    steady = pg_stack.commitment(tenant, timezone=ZONE, starts_on=today - timedelta(days=40), duration_days=None,
                                 member_id="m-steady", coach_id="coach-1")
    shaky = pg_stack.commitment(tenant, timezone=ZONE, starts_on=today - timedelta(days=5), member_id="m-shaky",
                                coach_id="coach-1")
    silent = pg_stack.commitment(tenant, timezone=ZONE, starts_on=today - timedelta(days=6), member_id="m-silent",
                                 coach_id="coach-1")
    pg_stack.commitment(tenant, timezone=ZONE, starts_on=today, member_id="m-elsewhere", coach_id="coach-2")
    with api(pg_stack.base_url) as client:
        client.headers.update(tenant.headers())
        for offset in range(3, -1, -1):
            assert client.post(f"/v1/commitments/{steady}/check-ins",
                               json=body("kept", today - timedelta(days=offset), urge=2)).status_code == 201
        posts = [
            body("slipped", today - timedelta(days=3), urge=9),
            body("kept", today - timedelta(days=2), urge=5),
            body("kept", today - timedelta(days=1), urge=8),
        ]
        for payload in posts:
            assert client.post(f"/v1/commitments/{shaky}/check-ins", json=payload).status_code == 201
        assert client.post(f"/v1/commitments/{silent}/check-ins",
                           json=body("kept", today - timedelta(days=5))).status_code == 201

        response = client.get("/v1/coaches/coach-1/clients", headers=tenant.headers("coach", "coach-1"))
        assert response.status_code == 200
        clients = {item["member_id"]: item for item in response.json()["items"]}
    assert set(clients) == {"m-steady", "m-shaky", "m-silent"}

    assert clients["m-steady"]["at_risk"] is False and clients["m-steady"]["reasons"] == []
    view = clients["m-steady"]["commitments"][0]
    assert view["contact_label"] == "Alex (ex)" and view["status"] == "active"
    assert view["streak"]["current_days"] == 41 and view["last_check_in_on"] == today.isoformat()
    assert len(view["last_30_days"]) == 30
    assert [d["state"] for d in view["last_30_days"][-4:]] == ["kept"] * 4
    assert view["last_30_days"][0]["state"] == "unreported"
    assert [u["urge"] for u in view["recent_urges"]] == [2, 2, 2, 2]

    shaky_view = clients["m-shaky"]["commitments"][0]
    assert set(shaky_view["reasons"]) == {"recent_slip", "high_urges"}
    assert clients["m-shaky"]["at_risk"] is True
    assert [d["state"] for d in shaky_view["last_30_days"]] == ["unreported", "unreported", "slipped", "kept", "kept"]

    assert clients["m-silent"]["reasons"] == ["not_checking_in"]


def test_served_from_the_snapshots_as_computed_from_the_rows(engine) -> None:  # type: ignore[no-untyped-def]
    """The client list and GET streak read the streak snapshots while they are today's; what
    they serve then is what computing from the check-in rows gives (PostgreSQL and SQLite)."""
    now = datetime(2027, 3, 10, 12, 0, tzinfo=UTC)
    today = local_today(ZONE, now)
    tenant = new_tenant(engine)
    deliver(engine, tenant.events)
    handlers.update_settings(engine, tenant.admin, tenant.context, {"backdate_days": 30}, now=now)
    ids = []
    for member, start in (("m-a", today - timedelta(days=40)), ("m-b", today - timedelta(days=5)),
                          ("m-b", today - timedelta(days=3)), ("m-c", today - timedelta(days=6))):
        cid, events = new_commitment(engine, tenant, member_id=member, timezone=ZONE, starts_on=start,
                                     duration_days=None, coach_id="coach-1", created_at=now - timedelta(days=50))
        deliver(engine, events)
        ids.append(cid)
    reports = [(ids[0], today - timedelta(days=n), "kept", 2) for n in range(12)] + [
        (ids[1], today - timedelta(days=3), "slipped", 9), (ids[1], today - timedelta(days=1), "kept", 8),
        (ids[2], today, "kept", None), (ids[3], today - timedelta(days=5), "kept", 1),
    ]
    for cid, day, outcome, urge in reports:
        handlers.record_check_in(engine, tenant.admin, tenant.context, cid, {**body(outcome, day), "urge": urge,
                                                                            "date": day}, now=now)

    def served() -> tuple[list[dict], dict[str, dict]]:  # type: ignore[type-arg]
        with read(engine) as conn:
            clients = queries.coach_clients(conn, tenant.tenant_id, "coach-1", now)
            streaks = {}
            for cid in ids:
                commitment = queries.load_commitment(conn, cid)
                assert commitment is not None
                streaks[cid] = queries.streak_document(conn, commitment, now)
        return clients, streaks

    with read(engine) as conn:
        snapshots = conn.execute(select(tables.streaks.c.as_of).where(tables.streaks.c.commitment_id.in_(ids)))
        assert [row.as_of for row in snapshots] == [today] * len(ids)  # current: the snapshots are served
    from_snapshots = served()
    with engine.begin() as conn:
        conn.execute(delete(tables.streaks).where(tables.streaks.c.tenant_id == tenant.tenant_id))
    assert served() == from_snapshots
    clients = {client["member_id"]: client for client in from_snapshots[0]}
    assert [c["commitment_id"] for c in clients["m-b"]["commitments"]] == ids[1:3]
    assert set(clients["m-b"]["reasons"]) == {"recent_slip", "high_urges"}
    assert clients["m-c"]["reasons"] == ["not_checking_in"] and clients["m-a"]["reasons"] == []
    assert [u["urge"] for u in clients["m-a"]["commitments"][0]["recent_urges"]] == [2] * 7
