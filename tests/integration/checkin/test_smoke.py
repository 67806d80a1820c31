"""One path end to end on each backend pair: an event from the commitment service reaches the
inbox over the bus, a check-in is recorded, the streak answers, the relay publishes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from services.checkin.domain import local_today
from shared import bus
from shared.testing import wait_until
from shared.topology import NOTIFICATION_INBOX
from tests.integration.checkin.support import api, body


def _published_types(broker_url: str | None = None) -> list[str]:
    seen: list[str] = []
    with bus.connect(broker_url) as connection:
        queue = bus.component_queue(NOTIFICATION_INBOX, connection)
        with connection.Consumer([queue], callbacks=[lambda b, m: (seen.append(json.loads(m.body)["type"]),
                                                                       m.ack())], accept=["json"]):
            for _ in range(10):
                try:
                    connection.drain_events(timeout=0.3)
                except TimeoutError:
                    break
    return seen


@pytest.mark.parametrize("which", ["pg_stack", "embedded_stack"])
def test_check_in_and_streak_over_the_bus(which: str, request: pytest.FixtureRequest) -> None:
    stack = request.getfixturevalue(which)
    tenant = stack.tenant()
    today = local_today("Pacific/Auckland", datetime.now(UTC))
    commitment_id = stack.commitment(tenant, timezone="Pacific/Auckland", starts_on=today - timedelta(days=2),
                                     member_id="m-7")
    with api(stack.base_url) as client:
        member = tenant.headers("member", "m-7")
        created = client.post(f"/v1/commitments/{commitment_id}/check-ins", json=body("kept", urge=3),
                              headers=member)
        assert created.status_code == 201, created.text
        assert created.json()["date"] == today.isoformat()
        assert created.headers["Location"].endswith(f"/check-ins/{today.isoformat()}")
        streak = client.get(f"/v1/commitments/{commitment_id}/streak", headers=member).json()
        assert streak["current_days"] == 3
        assert streak["as_of"] == today.isoformat()
        assert streak["milestones_reached"] == [1, 3]
        spec = client.get("/openapi.json").json()
        assert "/v1/commitments/{commitment_id}/check-ins" in spec["paths"]
        assert "/v1/coaches/{coach_id}/clients" in spec["paths"]
        assert client.get("/readyz").status_code == 200

    seen: list[str] = []

    def published() -> bool:
        seen.extend(_published_types())
        return "checkin.recorded" in seen and "streak.milestone_reached" in seen

    wait_until(published, timeout=15, message="the relay to publish the check-in stream")
