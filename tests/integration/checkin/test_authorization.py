"""Who sees what: admin, the member, their coach, other members and coaches, other tenants."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.checkin.domain import local_today
from tests.integration.checkin.support import api, body

ZONE = "Europe/Berlin"


def test_authorization_matrix(pg_stack) -> None:  # type: ignore[no-untyped-def]
    tenant = pg_stack.tenant()
    intruder = pg_stack.tenant()
    today = local_today(ZONE, datetime.now(UTC))
    cid = pg_stack.commitment(tenant, timezone=ZONE, starts_on=today - timedelta(days=3), member_id="m-1",
                              coach_id="coach-1")
    yesterday = (today - timedelta(days=1)).isoformat()
    paths = {
        "list": ("GET", f"/v1/commitments/{cid}/check-ins", None),
        "streak": ("GET", f"/v1/commitments/{cid}/streak", None),
        "day": ("GET", f"/v1/commitments/{cid}/check-ins/{yesterday}", None),
        "post": ("POST", f"/v1/commitments/{cid}/check-ins", body("kept", today - timedelta(days=2))),
        "put": ("PUT", f"/v1/commitments/{cid}/check-ins/{yesterday}", {"outcome": "kept", "note": "private"}),
    }
    callers = {
        "admin": tenant.headers(),
        "member": tenant.headers("member", "m-1"),
        "other member": tenant.headers("member", "m-2"),
        "coach": tenant.headers("coach", "coach-1"),
        "other coach": tenant.headers("coach", "coach-2"),
        "other tenant admin": intruder.headers(),
        "other tenant member": intruder.headers("member", "m-1"),
        "other tenant coach": intruder.headers("coach", "coach-1"),
        "nobody": {},
        "forged": {"Authorization": "Bearer not-a-token"},
    }
    expected = {
        "admin": {"list": 200, "streak": 200, "day": 200, "post": 201, "put": 200},
        "member": {"list": 200, "streak": 200, "day": 200, "post": 409, "put": 200},
        "coach": {"list": 200, "streak": 200, "day": 200, "post": 403, "put": 403},
    }
    denied = {"list": 404, "streak": 404, "day": 404, "post": 404, "put": 404}
    with api(pg_stack.base_url) as client:
        seed = body("kept", today - timedelta(days=1), note="private")
        seeded = client.post(f"/v1/commitments/{cid}/check-ins", json=seed, headers=tenant.headers())
        assert seeded.status_code == 201
        for caller, headers in callers.items():
            for name, (method, path, payload) in paths.items():
                response = client.request(method, path, json=payload, headers=headers)
                if caller in ("nobody", "forged"):
                    want = 401
                else:
                    want = expected.get(caller, denied)[name]
                assert response.status_code == want, f"{caller} {name}: {response.status_code} {response.text}"
                assert response.status_code < 400 or response.headers["Content-Type"].startswith(
                    "application/problem+json")

        # A coach reads the day but not the member's private note.
        assert client.get(paths["day"][1], headers=callers["coach"]).json()["note"] is None
        assert client.get(paths["day"][1], headers=callers["member"]).json()["note"] == "private"

        # Settings: anyone in the tenant reads, only the admin key changes.
        for caller in ("member", "coach"):
            assert client.get("/v1/settings", headers=callers[caller]).status_code == 200
            assert client.put("/v1/settings", json={"backdate_days": 3}, headers=callers[caller]).status_code == 403

        # A coach's client list: admin or that coach; another tenant sees nothing of it.
        clients = "/v1/coaches/coach-1/clients"
        assert client.get(clients, headers=callers["admin"]).status_code == 200
        assert client.get(clients, headers=callers["coach"]).status_code == 200
        assert client.get(clients, headers=callers["other coach"]).status_code == 403
        assert client.get(clients, headers=callers["member"]).status_code == 403
        assert client.get(clients, headers=callers["other tenant admin"]).json()["items"] == []
        assert client.get(clients, headers=callers["other tenant coach"]).json()["items"] == []
