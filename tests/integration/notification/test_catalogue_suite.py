"""The event catalogue against what partners really receive: the whole suite (commitment,
checkin and notification, their workers) on PostgreSQL and RabbitMQ, a member's story told
through the API, and every webhook body delivered checked against its type's schema,
closed: a field sent and not in the catalogue fails here, naming it."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx

from shared.testing import bearer, eventually, wait_until
from tests.integration.commitment.conftest import OPERATOR
from tests.integration.notification.conftest import FAST_ENV
from tests.support.catalogue import problems
from tests.support.receiver import Receiver

#: What the story below makes the services tell partners, at least. Others may follow and
#: are checked as well: ``client.at_risk`` (told at once, or only after the commitment's
#: first deadline, depending on the checkin service's version), ``member.erased`` (once
#: every service reported its part of the erasure).
TOLD = {
    "commitment.created", "coach.assigned", "checkin.recorded", "checkin.corrected", "streak.milestone_reached",
    "streak.reset", "commitment.extended", "commitment.completed", "commitment.ended", "member.erasure_requested",
}


def test_every_webhook_delivered_in_a_members_story_matches_the_catalogue(
    postgres_url: str, amqp_url: str, receiver: Receiver, stack_factory: Any
) -> None:
    stack = stack_factory(postgres_url, ["commitment", "checkin", "notification"],
                          env={**FAST_ENV, "NOCONTACT_OPERATOR_TOKEN": OPERATOR})

    def client(service: str, credential: str) -> httpx.Client:
        return httpx.Client(base_url=stack.url(service), headers=bearer(credential), timeout=30)

    created = client("commitment", OPERATOR).post("/v1/tenants", json={"name": "Partner"})
    assert created.status_code == 201, created.text
    key = created.json()["api_key"]
    commitments, checkins, notifications = (client(s, key) for s in ("commitment", "checkin", "notification"))
    endpoint = eventually(lambda: notifications.post(
        "/v1/webhook-endpoints", json={"url": receiver.url("/hooks"), "event_types": ["*"]}), 201).json()
    assert commitments.put("/v1/coaches/coach-1/clients/m-1").status_code == 204

    today = datetime.now(UTC).date()
    # UTC, so that "today" is the test's; six days ago, so that the days can still be reported.
    story = commitments.post("/v1/commitments", json={
        "member_id": "m-1", "contact": {"label": "Alex (ex)", "relationship": "romantic"},
        "channels": ["calls", "texts"], "timezone": "UTC", "starts_on": str(today - timedelta(days=6)),
        "duration_days": 30, "motivation": "I want my peace back.",
    })
    assert story.status_code == 201, story.text
    commitment_id = story.json()["id"]

    def report(day: date, outcome: str, **more: Any) -> httpx.Response:
        return checkins.post(f"/v1/commitments/{commitment_id}/check-ins",
                             json={"date": str(day), "outcome": outcome, "urge": 3, "mood": 4,
                                   "note": "private to the member", **more})

    eventually(lambda: report(today - timedelta(days=6), "kept"), 201)  # once the checkin service knows it
    for back in range(5, -1, -1):
        assert report(today - timedelta(days=back), "kept").status_code == 201
    slipped = {"outcome": "slipped", "urge": 9, "mood": 1, "slip": {"channel": "texts", "initiated_by": "me"},
               "note": "I texted them"}
    corrected = checkins.put(f"/v1/commitments/{commitment_id}/check-ins/{today - timedelta(days=2)}", json=slipped)
    assert corrected.status_code == 200, corrected.text
    told = set(TOLD)
    checkin_paths = checkins.get("/openapi.json").json()["paths"]
    if "delete" in checkin_paths.get("/v1/commitments/{commitment_id}/check-ins/{day}", {}):
        # Withdrawals (CONTRACT v1.1): today's report taken back unmakes today's milestone.
        withdrawn = checkins.delete(f"/v1/commitments/{commitment_id}/check-ins/{today}")
        assert withdrawn.status_code in (200, 204), withdrawn.text
        told |= {"checkin.withdrawn", "streak.milestone_revoked"}
    extended = commitments.post(f"/v1/commitments/{commitment_id}/extend", json={"additional_days": 10})
    assert extended.status_code == 200, extended.text
    ended = commitments.post(f"/v1/commitments/{commitment_id}/end", json={"reason": "a new plan"})
    assert ended.status_code == 200, ended.text

    # Another member's commitment, over already (the scheduler completes it), then erased.
    over = commitments.post("/v1/commitments", json={
        "member_id": "m-2", "contact": {"label": "Jo", "relationship": "friend"}, "timezone": "UTC",
        "starts_on": str(today - timedelta(days=10)), "duration_days": 3,
    })
    assert over.status_code == 201, over.text

    def received() -> dict[str, list[dict[str, Any]]]:
        by_type: dict[str, list[dict[str, Any]]] = {}
        for request in receiver.at("/hooks"):
            by_type.setdefault(request.json["type"], []).append(request.json)
        return by_type

    wait_until(lambda: "commitment.completed" in received(), 30, message="m-2's commitment completed")
    assert commitments.delete("/v1/members/m-2").status_code == 202
    wait_until(lambda: told <= received().keys(), 60,
               message=f"every type of the story delivered; missing: {sorted(told - received().keys())}")

    failures = []
    for request in receiver.at("/hooks"):
        assert request.verifies_with(endpoint["secret"])
        body = request.json
        assert set(body) == {"type", "timestamp", "data"}, body
        assert datetime.fromisoformat(body["timestamp"]).tzinfo is not None
        failures += problems(body["type"], body["data"])
    assert not failures, "delivered webhooks that the catalogue does not describe:\n" + "\n".join(
        sorted(set(failures)))
    by_type = received()
    created_data = by_type["commitment.created"][0]["data"]
    assert created_data["contact"]["label"] in ("Alex (ex)", "Jo")  # personal values reach partners in clear
    assert all("note" not in body["data"] for bodies in by_type.values() for body in bodies)
    assert {body["data"]["milestone"] for body in by_type["streak.milestone_reached"]} >= {1, 3}
    assert uuid.UUID(created_data["event_id"]) and created_data["sequence"] == 1
