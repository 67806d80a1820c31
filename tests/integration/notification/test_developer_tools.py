"""What a partner's developer works with: the event catalogue, test events, a message with
the payload as sent, an endpoint's statistics, answers that say what to do. The service
over real HTTP with its workers, on PostgreSQL and RabbitMQ; a receiver on loopback."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from services.commitment import personal
from services.notification.domain.messages import WEBHOOK_EVENT_TYPES, message_id
from services.notification.tables import messages
from shared import catalogue, eventstore, keyring
from shared.db import engine_for, read
from shared.events import Metadata, NewEvent
from shared.testing import wait_until
from tests.integration.notification.conftest import Tenant, commitment_data
from tests.support.catalogue import problems
from tests.support.receiver import Receiver, Reply


def _message(tenant: Tenant, endpoint_id: str, message: str) -> dict[str, Any]:
    response = tenant.client.get(f"/v1/webhook-endpoints/{endpoint_id}/messages/{message}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def _delivered(tenant: Tenant, endpoint_id: str, message: str) -> dict[str, Any]:
    """The message (GET .../messages/{id}) once its delivery is recorded as succeeded."""

    def succeeded() -> dict[str, Any] | None:
        # 404 until the inbox has queued it.
        shown = tenant.client.get(f"/v1/webhook-endpoints/{endpoint_id}/messages/{message}")
        return shown.json() if shown.status_code == 200 and shown.json()["state"] == "succeeded" else None

    return wait_until(succeeded, 15, message=f"{message} delivered")


def _refs(document: Any) -> set[str]:
    if isinstance(document, dict):
        found = {document["$ref"]} if isinstance(document.get("$ref"), str) else set()
        return found.union(*(_refs(value) for value in document.values()))
    if isinstance(document, list):
        return set().union(*(_refs(value) for value in document))
    return set()


def test_the_event_catalogue_is_served_to_any_credential_of_the_tenant(
    postgres_url: str, amqp_url: str, start_notification: Any
) -> None:
    harness = start_notification(postgres_url, workers=True)
    tenant = harness.tenant()
    listed = tenant.client.get("/v1/event-types")
    assert listed.status_code == 200, listed.text
    items = listed.json()["items"]
    assert [item["type"] for item in items] == list(WEBHOOK_EVENT_TYPES)
    assert items == catalogue.describe_all()
    for credential in (harness.token_client(tenant, "coach", "c-1"), harness.token_client(tenant, "member", "m-1")):
        assert credential.get("/v1/event-types").json() == listed.json()
    anonymous = harness.token_client(tenant, "member", "m-1").get("/v1/event-types", headers={"Authorization": ""})
    assert anonymous.status_code == 401 and anonymous.headers["content-type"] == "application/problem+json"

    # The OpenAPI document has the same schemas, and the answers reference them.
    document = tenant.client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    for entry in catalogue.EVENT_TYPES:
        assert schemas[entry.component] == catalogue.openapi_schema(entry.schema)
        assert schemas[entry.webhook_component]["example"] == entry.example
    assert {"$ref": f"#/components/schemas/{catalogue.PAYLOAD_COMPONENT}"} in (
        schemas["EventType"]["properties"]["example"]["allOf"]
    )
    assert {"$ref": f"#/components/schemas/{catalogue.PAYLOAD_COMPONENT}"} in (
        schemas["Message"]["properties"]["payload"]["allOf"]
    )
    unresolved = {ref for ref in _refs(document) if ref.removeprefix("#/components/schemas/") not in schemas
                  and ref.removeprefix("#/components/responses/") not in document["components"].get("responses", {})}
    assert not unresolved
    test_operation = document["paths"]["/v1/webhook-endpoints/{endpoint_id}/test"]["post"]
    assert {"202", "401", "403", "404", "409", "422", "429"} <= set(test_operation["responses"])
    assert test_operation["requestBody"]["content"]["application/json"]["example"] == {
        "event_type": "streak.milestone_reached"
    }
    for path in ("/v1/webhook-endpoints/{endpoint_id}/messages/{message_id}",
                 "/v1/webhook-endpoints/{endpoint_id}/stats", "/v1/event-types"):
        operation = document["paths"][path]["get"]
        assert "example" in operation["responses"]["200"]["content"]["application/json"], path
        assert {"401", "429"} <= set(operation["responses"]), path


def test_a_test_event_is_signed_delivered_and_logged_like_any_message(
    postgres_url: str, amqp_url: str, receiver: Receiver, start_notification: Any
) -> None:
    harness = start_notification(postgres_url)
    tenant = harness.tenant()
    # Subscribed to another type: a test event is sent whatever the endpoint subscribed to.
    endpoint = harness.create_endpoint(tenant, receiver.url("/hook"), ["checkin.missed"])
    path = f"/v1/webhook-endpoints/{endpoint['id']}"

    sent = tenant.client.post(f"{path}/test", json={"event_type": "streak.milestone_reached"})

    assert sent.status_code == 202, sent.text
    queued = sent.json()
    assert sent.headers["Location"] == f"{path}/messages/{queued['message_id']}"
    example = catalogue.CATALOGUE["streak.milestone_reached"].example
    payload = queued["payload"]
    assert payload["test"] is True and payload["type"] == "streak.milestone_reached"
    assert payload["data"] == {**example["data"], "event_id": queued["event_id"]}
    assert queued["event_id"] != example["data"]["event_id"]  # a message of its own: its own webhook-id
    assert queued["message_id"] == message_id(queued["event_id"])
    assert queued["test"] is True and queued["event_type"] == "streak.milestone_reached"
    assert queued["state"] == "pending" and queued["attempts"] == []

    (request,) = wait_until(lambda: receiver.at("/hook"), 15, message="the test event")
    assert request.verifies_with(endpoint["secret"])
    assert request.headers["webhook-id"] == queued["message_id"]
    assert request.json == payload
    assert problems("streak.milestone_reached", request.json["data"]) == []

    shown = _delivered(tenant, endpoint["id"], queued["message_id"])
    (attempt,) = shown["attempts"]
    assert (attempt["attempt"], attempt["status_code"], attempt["state"]) == (1, 200, "succeeded")
    assert shown["payload"] == payload and shown["test"] is True
    log = harness.attempts(tenant, endpoint["id"])
    assert [a["message_id"] for a in log] == [queued["message_id"]]
    listed = tenant.client.get(f"{path}/messages").json()["items"]
    assert [m["message_id"] for m in listed] == [queued["message_id"]]

    # Another test event is another message (a receiver deduplicating on webhook-id keeps both).
    again = tenant.client.post(f"{path}/test", json={"event_type": "commitment.created"}).json()
    assert again["message_id"] != queued["message_id"]
    wait_until(lambda: len(receiver.at("/hook")) == 2, 15, message="the second test event")
    assert receiver.at("/hook")[1].json["data"]["contact"] == {"label": "Alex (ex)", "relationship": "romantic"}

    stats = tenant.client.get(f"{path}/stats")
    assert stats.status_code == 200, stats.text
    hour = stats.json()["windows"]["1h"]
    wait_until(lambda: tenant.client.get(f"{path}/stats").json()["windows"]["1h"]["successes"] == 2, 15,
               message="both attempts in the statistics")
    assert set(stats.json()["windows"]) == {"1h", "24h", "7d"} and hour["failures"] == 0


def test_a_test_event_is_refused_for_an_unknown_type_and_a_disabled_endpoint(
    postgres_url: str, amqp_url: str, receiver: Receiver, start_notification: Any
) -> None:
    harness = start_notification(postgres_url)
    tenant, other = harness.tenant("A"), harness.tenant("B")
    endpoint = harness.create_endpoint(tenant, receiver.url("/hook"))
    path = f"/v1/webhook-endpoints/{endpoint['id']}/test"
    for body in ({"event_type": "urge.loged"}, {"event_type": "*"}, {"event_type": "webhook_endpoint.created"}, {}):
        refused = tenant.client.post(path, json=body)
        assert refused.status_code == 422, (body, refused.text)
        assert refused.headers["content-type"] == "application/problem+json"
        assert list(refused.json()["errors"]) == ["event_type"], refused.json()
    assert other.client.post(path, json={"event_type": "checkin.recorded"}).status_code == 404
    assert tenant.client.post(f"/v1/webhook-endpoints/{uuid.uuid4()}/test",
                              json={"event_type": "checkin.recorded"}).status_code == 404
    member = harness.token_client(tenant, "member", "m-1")
    assert member.post(path, json={"event_type": "checkin.recorded"}).status_code == 403

    assert tenant.client.post(f"/v1/webhook-endpoints/{endpoint['id']}/disable").status_code == 200
    disabled = tenant.client.post(path, json={"event_type": "checkin.recorded"})
    assert disabled.status_code == 409
    detail = disabled.json()["detail"]
    assert "disabled (disabled by api_key:" in detail and "enable it before sending a test event" in detail
    assert receiver.requests == []
    assert tenant.client.get(f"/v1/webhook-endpoints/{endpoint['id']}/messages").json()["items"] == []


def test_a_message_shows_the_payload_as_sent_its_personal_values_opened_and_null_once_erased(
    postgres_url: str, amqp_url: str, receiver: Receiver, start_notification: Any
) -> None:
    harness = start_notification(postgres_url)
    tenant, other = harness.tenant("A"), harness.tenant("B")
    endpoint = harness.create_endpoint(tenant, receiver.url("/hook"), ["commitment.created"])
    other_endpoint = harness.create_endpoint(other, receiver.url("/other"))
    engine = engine_for(postgres_url)
    data = {**commitment_data("m-9"), "contact": {"label": "Sam, my ex", "relationship": "romantic"},
            "channels": ["texts"], "timezone": "Europe/Berlin", "starts_on": "2026-11-01", "duration_days": None,
            "ends_on": None, "motivation": "For my sleep"}
    now = datetime.now(UTC)
    # As the commitment service records it: personal values sealed under the member's key.
    keyring.ensure_key(engine, tenant.id, "m-9", now=now)
    with engine.begin() as conn:
        sealed = keyring.seal_events(conn, tenant.id, [NewEvent("commitment.created", data)], personal.EVENT_FIELDS)
        (event,) = eventstore.append(conn, f"commitment-{data['commitment_id']}", sealed,
                                     metadata=Metadata(tenant_id=tenant.id, actor="test"))
    message = message_id(event.id)

    shown = _delivered(tenant, endpoint["id"], message)
    (request,) = receiver.at("/hook")
    assert shown["payload"] == request.json  # as sent
    assert shown["payload"]["data"]["contact"]["label"] == "Sam, my ex"
    assert shown["payload"]["data"]["motivation"] == "For my sleep"
    assert shown["test"] is False and shown["event_id"] == str(event.id)
    assert problems("commitment.created", shown["payload"]["data"]) == []
    with read(engine) as conn:
        at_rest = conn.execute(select(messages.c.body).where(messages.c.id == message)).scalar_one()
    assert "Sam, my ex" not in at_rest and keyring.PREFIX in at_rest

    # Another tenant, or another endpoint, does not see it.
    assert other.client.get(f"/v1/webhook-endpoints/{endpoint['id']}/messages/{message}").status_code == 404
    assert other.client.get(f"/v1/webhook-endpoints/{other_endpoint['id']}/messages/{message}").status_code == 404
    assert tenant.client.get(f"/v1/webhook-endpoints/{endpoint['id']}/messages/msg_nope").status_code == 404

    # The member's key destroyed (the erasure's first step): their values read null, as a send would carry them.
    with engine.begin() as conn:
        keyring.destroy(conn, tenant.id, "m-9", now=now)
    erased = wait_until(
        lambda: (lambda s: s if s["payload"]["data"]["contact"]["label"] is None else None)(
            _message(tenant, endpoint["id"], message)), 10, message="the erased values")
    assert erased["payload"]["data"]["motivation"] is None
    assert erased["payload"]["data"]["contact"]["relationship"] == "romantic"
    assert problems("commitment.created", erased["payload"]["data"]) == []


def test_the_receivers_reply_is_kept_capped_and_as_plain_text(
    postgres_url: str, amqp_url: str, receiver: Receiver, start_notification: Any
) -> None:
    harness = start_notification(postgres_url, env={"NOCONTACT_WEBHOOK_RETRY_SCHEDULE": "0"})
    tenant = harness.tenant()
    reply = b"<script>alert(1)</script>\x00\x1b[2J\r\n\xff\xfe" + "\u202e".encode() + b"x" * 4000
    receiver.script("/hook", Reply(500, reply))
    endpoint = harness.create_endpoint(tenant, receiver.url("/hook"))
    sent = tenant.client.post(f"/v1/webhook-endpoints/{endpoint['id']}/test", json={"event_type": "checkin.missed"})
    assert sent.status_code == 202

    (attempt,) = harness.wait_attempts(tenant, endpoint["id"], 1)
    excerpt = attempt["response_excerpt"]
    assert excerpt.startswith("<script>alert(1)</script>\ufffd\ufffd[2J\n\ufffd\ufffd\ufffdxxx")
    assert len(excerpt.encode()) <= 1024 + 6 * 2  # 1 KiB of the reply; U+FFFD is wider than what it replaces
    assert all(ch in "\n\t" or ch.isprintable() for ch in excerpt)
    shown = tenant.client.get(f"/v1/webhook-endpoints/{endpoint['id']}/messages/{sent.json()['message_id']}")
    assert shown.json()["attempts"][0]["response_excerpt"] == excerpt
    assert shown.headers["content-type"] == "application/json"
    assert shown.headers["x-content-type-options"] == "nosniff"


def test_a_refused_url_says_how_development_allows_private_addresses(
    postgres_url: str, amqp_url: str, start_notification: Any
) -> None:
    harness = start_notification(postgres_url, env={"NOCONTACT_WEBHOOK_ALLOW_PRIVATE": "false"})
    tenant = harness.tenant()

    def create(url: str) -> Any:
        return tenant.client.post("/v1/webhook-endpoints", json={"url": url, "event_types": ["*"]})

    for url in ("http://127.0.0.1:8000/hooks", "http://localhost:3000/hooks", "http://192.168.1.20/hooks",
                "https://1.1.1.1:22/hooks", "http://1.1.1.1:6/"):
        refused = create(url)
        assert refused.status_code == 422, (url, refused.text)
        (message,) = refused.json()["errors"]["url"]
        assert "NOCONTACT_WEBHOOK_ALLOW_PRIVATE=true" in message and "never in production" in message, message
    assert "not a webhook port (80, 443 or 1024-65535)" in create("https://1.1.1.1:22/hooks").json()["detail"]
    # What development does not allow either is not said to be allowed by it.
    for url in ("http://169.254.169.254/latest/", "ftp://1.1.1.1/"):
        refused = create(url)
        assert refused.status_code == 422 and "NOCONTACT_WEBHOOK_ALLOW_PRIVATE" not in refused.text, url
    for url in ("https://1.1.1.1/hooks", "http://1.1.1.1:80/", "https://1.1.1.1:1024/", "https://1.1.1.1:65535/"):
        assert create(url).status_code == 201, url
    patched = tenant.client.patch(f"/v1/webhook-endpoints/{create('https://1.1.1.1/').json()['id']}",
                                  json={"url": "https://1.1.1.1:25/"})
    assert patched.status_code == 422 and "url" in patched.json()["errors"]
    assert json.loads(patched.text)["errors"]["url"][0].startswith("refused: port 25 is not a webhook port")
