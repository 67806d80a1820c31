"""The coach notification feed: what a coach's clients did, newest first, theirs only."""

from __future__ import annotations

from typing import Any

from shared.testing import wait_until
from tests.integration.notification.conftest import commitment_data


def test_feed_of_a_coach(postgres_url: str, amqp_url: str, start_notification: Any) -> None:
    harness = start_notification(postgres_url)
    tenant, other_tenant = harness.tenant("A"), harness.tenant("B")
    mine = commitment_data("m-1")
    theirs = commitment_data("m-2")
    harness.emit(tenant, "coach.assigned", {**mine, "coach_id": "coach-1", "previous_coach_id": None})
    harness.emit(tenant, "coach.assigned", {**theirs, "coach_id": "coach-2", "previous_coach_id": None})
    slip = {
        **mine,
        "date": "2026-01-05",
        "outcome": "slipped",
        "urge": 8,
        "mood": 2,
        "slip": {"channel": "texts", "initiated_by": "me"},
        "note": "I texted them at 2am",
    }
    harness.emit(tenant, "checkin.recorded", {**mine, "date": "2026-01-04", "outcome": "kept", "note": "ok"})
    harness.emit(tenant, "checkin.recorded", slip)
    harness.emit(tenant, "checkin.missed", {**mine, "date": "2026-01-06", "deadline": "2026-01-07T12:00:00+01:00"})
    harness.emit(tenant, "client.at_risk", {**mine, "reasons": ["urge_rising"]})
    harness.emit(tenant, "streak.milestone_reached", {**mine, "milestone": 3, "current_days": 3})
    harness.emit(tenant, "checkin.missed", {**theirs, "date": "2026-01-06"})  # coach-2's client

    coach = harness.token_client(tenant, "coach", "coach-1")
    path = "/v1/coaches/coach-1/notifications"

    def four() -> list[dict[str, Any]] | None:
        items = coach.get(path).json()["items"]
        return items if len(items) >= 4 else None

    items = wait_until(four, 15, message="feed items")
    assert [i["kind"] for i in items] == ["milestone", "at_risk", "missed_day", "slip"]
    slipped = items[3]
    assert slipped["commitment_id"] == mine["commitment_id"] and slipped["member_id"] == "m-1"
    assert slipped["data"]["urge"] == 8 and "note" not in slipped["data"]
    assert items[0]["data"]["current_days"] == 3

    # Pagination, newest first, without overlap.
    page1 = coach.get(path, params={"limit": 3}).json()
    page2 = coach.get(path, params={"limit": 3, "cursor": page1["next_cursor"]}).json()
    assert [i["id"] for i in page1["items"] + page2["items"]] == [i["id"] for i in items]
    assert page2["next_cursor"] is None
    assert [i["kind"] for i in coach.get(path, params={"kind": "slip"}).json()["items"]] == ["slip"]

    # Who may read it.
    assert tenant.client.get(path).status_code == 200  # the tenant's admin
    assert harness.token_client(tenant, "coach", "coach-2").get(path).status_code == 403
    assert harness.token_client(tenant, "member", "m-1").get(path).status_code == 403
    assert other_tenant.client.get(path).status_code == 404
    assert tenant.client.get("/v1/coaches/nobody/notifications").status_code == 404
    # A coach of the same name in another tenant sees nothing of this one.
    assert harness.token_client(other_tenant, "coach", "coach-1").get(path).json()["items"] == []
    assert coach.get(path, params={"limit": 0}).status_code == 422
    # The other coach got only their client's news.
    other_coach = harness.token_client(tenant, "coach", "coach-2")
    assert [i["member_id"] for i in other_coach.get("/v1/coaches/coach-2/notifications").json()["items"]] == ["m-2"]


def test_unassigned_coach_stops_receiving_news(postgres_url: str, amqp_url: str, start_notification: Any) -> None:
    harness = start_notification(postgres_url)
    tenant = harness.tenant()
    client = commitment_data("m-1")
    harness.emit(tenant, "coach.assigned", {**client, "coach_id": "coach-1", "previous_coach_id": None})
    harness.emit(tenant, "checkin.missed", {**client, "date": "2026-01-01"})
    harness.emit(tenant, "coach.unassigned", {**client, "coach_id": "coach-1"})
    harness.emit(tenant, "checkin.missed", {**client, "date": "2026-01-02"})
    harness.emit(tenant, "coach.assigned", {**client, "coach_id": "coach-3", "previous_coach_id": None})
    harness.emit(tenant, "checkin.missed", {**client, "date": "2026-01-03"})

    wait_until(lambda: tenant.client.get("/v1/coaches/coach-3/notifications").json().get("items"), 15)
    feed = tenant.client.get("/v1/coaches/coach-1/notifications").json()["items"]
    assert [i["data"]["date"] for i in feed] == ["2026-01-01"]
    feed3 = tenant.client.get("/v1/coaches/coach-3/notifications").json()["items"]
    assert [i["data"]["date"] for i in feed3] == ["2026-01-03"]
