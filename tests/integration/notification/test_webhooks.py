"""Webhook delivery end to end: events on the bus -> signed HTTP requests to a receiver.

Real PostgreSQL, real RabbitMQ, real HTTP on loopback (NOCONTACT_WEBHOOK_ALLOW_PRIVATE is
set by the stack fixture); signatures are checked with the ``standardwebhooks`` package.
"""

from __future__ import annotations

import uuid
from typing import Any

from services.notification.domain.messages import message_id
from shared.testing import wait_until
from tests.integration.notification.conftest import commitment_data
from tests.support.receiver import Receiver, Reply


def test_event_is_delivered_signed_with_the_contract_body(
    postgres_url: str, amqp_url: str, receiver: Receiver, start_notification: Any
) -> None:
    harness = start_notification(postgres_url)
    tenant = harness.tenant()
    endpoint = harness.create_endpoint(tenant, receiver.url("/hook"), ["streak.milestone_reached"])
    assert endpoint["status"] == "enabled" and endpoint["secret"].startswith("whsec_")
    data = {
        **commitment_data("m-7"),
        "milestone": 7,
        "run_started_on": "2026-01-01",
        "attempt": 1,
        "reached_on": "2026-01-07",
        "current_days": 7,
        "longest_days": 7,
        "note": "private to the member",
    }
    harness.emit(tenant, "checkin.recorded", {**commitment_data(), "outcome": "kept"})  # not subscribed
    event = harness.emit(tenant, "streak.milestone_reached", data)

    (request,) = wait_until(lambda: receiver.at("/hook"), 15, message="delivery")
    assert request.verifies_with(endpoint["secret"])
    assert request.headers["webhook-id"] == message_id(event.id)
    body = request.json
    assert set(body) == {"type", "timestamp", "data"}
    assert body["type"] == "streak.milestone_reached"
    assert body["data"]["commitment_id"] == data["commitment_id"]
    assert body["data"]["member_id"] == "m-7"
    assert body["data"]["sequence"] == event.stream_version
    assert body["data"]["event_id"] == str(event.id)
    assert body["data"]["current_days"] == 7 and body["data"]["milestone"] == 7
    assert "note" not in body["data"]

    (attempt,) = wait_until(lambda: harness.attempts(tenant, endpoint["id"]), 10, message="attempt log")
    assert attempt["message_id"] == message_id(event.id)
    assert attempt["event_type"] == "streak.milestone_reached"
    assert attempt["attempt"] == 1 and attempt["status_code"] == 200 and attempt["state"] == "succeeded"
    assert attempt["error"] is None and attempt["next_attempt_at"] is None and attempt["duration_ms"] >= 0
    # Only the subscribed type was sent.
    assert len(receiver.requests) == 1


def test_retry_then_success_keeps_the_webhook_id(
    postgres_url: str, amqp_url: str, receiver: Receiver, start_notification: Any
) -> None:
    harness = start_notification(postgres_url)
    tenant = harness.tenant()
    receiver.script("/flaky", Reply(500, b"boom"), Reply(503, b"later"), Reply(200))
    endpoint = harness.create_endpoint(tenant, receiver.url("/flaky"))
    harness.emit(tenant, "checkin.missed", {**commitment_data(), "date": "2026-01-02"})

    wait_until(lambda: len(receiver.at("/flaky")) == 3, 15, message="three attempts")
    requests = receiver.at("/flaky")
    assert len({r.headers["webhook-id"] for r in requests}) == 1
    assert all(r.verifies_with(endpoint["secret"]) for r in requests)
    assert requests[0].body == requests[2].body
    # The schedule "0,1,1" with +-10 % jitter: the retries are about a second apart.
    assert 0.8 <= requests[1].at - requests[0].at < 3

    log = harness.wait_attempts(tenant, endpoint["id"], 3)
    assert [(a["attempt"], a["status_code"], a["state"]) for a in log] == [
        (1, 500, "retrying"),
        (2, 503, "retrying"),
        (3, 200, "succeeded"),
    ]
    assert log[0]["next_attempt_at"] is not None and log[0]["error"] == "HTTP 500"


def test_too_many_requests_honours_retry_after(
    postgres_url: str, amqp_url: str, receiver: Receiver, start_notification: Any
) -> None:
    harness = start_notification(postgres_url, env={"NOCONTACT_WEBHOOK_RETRY_SCHEDULE": "0,1"})
    tenant = harness.tenant()
    receiver.script("/limited", Reply(429, b"slow down", {"Retry-After": "2"}), Reply(200))
    endpoint = harness.create_endpoint(tenant, receiver.url("/limited"))
    harness.emit(tenant, "checkin.corrected", {**commitment_data(), "outcome": "kept", "previous_outcome": "kept"})
    log = harness.wait_attempts(tenant, endpoint["id"], 2)
    first, second = receiver.at("/limited")
    # The schedule says ~1 s; the receiver asked for 2 s, and it is honoured.
    assert second.at - first.at >= 1.9
    assert [(a["status_code"], a["state"]) for a in log] == [(429, "retrying"), (200, "succeeded")]


def test_gone_disables_the_endpoint_and_later_events_are_kept_for_redelivery(
    postgres_url: str, amqp_url: str, receiver: Receiver, start_notification: Any
) -> None:
    harness = start_notification(postgres_url)
    tenant = harness.tenant()
    receiver.script("/gone", Reply(410, b"gone"))
    endpoint = harness.create_endpoint(tenant, receiver.url("/gone"))
    harness.emit(tenant, "client.at_risk", {**commitment_data(), "reasons": ["urge_rising"]})

    def disabled() -> bool:
        return tenant.client.get(f"/v1/webhook-endpoints/{endpoint['id']}").json()["status"] == "disabled"

    wait_until(disabled, 15, message="endpoint disabled by 410")
    assert len(receiver.at("/gone")) == 1
    (attempt,) = harness.attempts(tenant, endpoint["id"])
    assert attempt["status_code"] == 410 and attempt["state"] == "failed"

    # While disabled: recorded, not sent.
    later = harness.emit(tenant, "commitment.ended", {**commitment_data(), "reason": None, "ended_on": "2026-02-01"})

    def skipped() -> list[dict[str, Any]]:
        response = tenant.client.get(
            f"/v1/webhook-endpoints/{endpoint['id']}/messages", params={"state": "skipped_disabled"}
        )
        return response.json()["items"]

    (item,) = wait_until(skipped, 15, message="skipped delivery recorded")
    assert item["message_id"] == message_id(later.id)
    assert len(receiver.at("/gone")) == 1

    # Redelivery is refused while disabled, then works after enabling.
    path = f"/v1/webhook-endpoints/{endpoint['id']}/redeliver-failed"
    assert tenant.client.post(path, json={"since": "2020-01-01T00:00:00Z"}).status_code == 409
    receiver.script("/gone", Reply(200))
    enabled = tenant.client.post(f"/v1/webhook-endpoints/{endpoint['id']}/enable")
    assert enabled.status_code == 200 and enabled.json()["status"] == "enabled"
    response = tenant.client.post(path, json={"since": "2020-01-01T00:00:00Z"})
    assert response.status_code == 202 and response.json() == {"requeued": 2}
    wait_until(lambda: len(receiver.at("/gone")) == 3, 15, message="both redelivered")
    ids = {r.headers["webhook-id"] for r in receiver.at("/gone")[1:]}
    assert message_id(later.id) in ids and len(ids) == 2


def test_timeout_is_retried_and_logged(
    postgres_url: str, amqp_url: str, receiver: Receiver, start_notification: Any
) -> None:
    harness = start_notification(postgres_url, env={"NOCONTACT_WEBHOOK_TIMEOUT_S": "0.5"})
    tenant = harness.tenant()
    receiver.script("/slow", Reply(200, delay_s=2), Reply(200))
    endpoint = harness.create_endpoint(tenant, receiver.url("/slow"))
    harness.emit(tenant, "commitment.created", commitment_data())

    log = harness.wait_attempts(tenant, endpoint["id"], 2)
    assert log[0]["status_code"] is None and log[0]["error"].startswith("timeout")
    assert log[0]["state"] == "retrying" and log[0]["duration_ms"] < 1500
    assert log[1]["status_code"] == 200 and log[1]["state"] == "succeeded"


def test_redirect_is_not_followed(
    postgres_url: str, amqp_url: str, receiver: Receiver, start_notification: Any
) -> None:
    harness = start_notification(postgres_url, env={"NOCONTACT_WEBHOOK_RETRY_SCHEDULE": "0"})
    tenant = harness.tenant()
    receiver.script("/moved", Reply(302, b"", {"Location": receiver.url("/target")}))
    endpoint = harness.create_endpoint(tenant, receiver.url("/moved"))
    harness.emit(tenant, "commitment.completed", {**commitment_data(), "ends_on": "2026-01-30"})

    (attempt,) = wait_until(lambda: harness.attempts(tenant, endpoint["id"]), 15)
    assert attempt["status_code"] == 302 and attempt["state"] == "failed"
    assert "redirect" in attempt["error"]
    assert receiver.at("/target") == []


def test_rotation_signs_with_both_secrets_for_the_overlap(
    postgres_url: str, amqp_url: str, receiver: Receiver, start_notification: Any
) -> None:
    harness = start_notification(postgres_url)
    tenant = harness.tenant()
    endpoint = harness.create_endpoint(tenant, receiver.url("/rot"))
    rotated = tenant.client.post(f"/v1/webhook-endpoints/{endpoint['id']}/rotate-secret")
    assert rotated.status_code == 200
    new_secret = rotated.json()["secret"]
    assert new_secret.startswith("whsec_") and new_secret != endpoint["secret"]
    assert rotated.json()["previous_secret_expires_at"] is not None
    assert "secret" not in tenant.client.get(f"/v1/webhook-endpoints/{endpoint['id']}").json()

    harness.emit(tenant, "coach.assigned", {**commitment_data(), "coach_id": "c-1", "previous_coach_id": None})
    (request,) = wait_until(lambda: receiver.at("/rot"), 15)
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    assert request.verifies_with(endpoint["secret"]) and request.verifies_with(new_secret)


def test_refused_urls_and_bad_input_are_problems_naming_the_field(
    postgres_url: str, amqp_url: str, start_notification: Any
) -> None:
    harness = start_notification(postgres_url, env={"NOCONTACT_WEBHOOK_ALLOW_PRIVATE": "false"})
    tenant = harness.tenant()
    for url in (
        "http://127.0.0.1:9/x",
        "http://169.254.169.254/latest",
        "http://[::1]/",
        "ftp://example.com/",
        "http://user:pw@example.com/",
        "http://10.1.2.3/",
    ):
        response = tenant.client.post("/v1/webhook-endpoints", json={"url": url, "event_types": ["*"]})
        assert response.status_code == 422, url
        assert response.headers["content-type"] == "application/problem+json"
        assert "url" in response.json()["errors"], url
    url = "https://example.com/"
    response = tenant.client.post("/v1/webhook-endpoints", json={"url": url, "event_types": ["nope"]})
    assert response.status_code == 422 and "event_types.0" in response.json()["errors"]
    response = tenant.client.post("/v1/webhook-endpoints", json={"url": url, "event_types": []})
    assert response.status_code == 422 and "event_types" in response.json()["errors"]
    response = tenant.client.post("/v1/webhook-endpoints", content=b"{", headers={"content-type": "application/json"})
    assert response.status_code == 400
    missing = f"/v1/webhook-endpoints/{uuid.uuid4()}"
    assert tenant.client.get(missing).status_code == 404
    assert tenant.client.get("/v1/webhook-endpoints/not-a-uuid").status_code == 404
    assert tenant.client.get("/v1/webhook-endpoints", params={"cursor": "%%%"}).status_code == 422
