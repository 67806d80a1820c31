"""A coach's client list: every commitment's label, status, streak, last 30 days, urges, risk."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.checkin.domain import local_today
from tests.integration.checkin.support import api, body

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
