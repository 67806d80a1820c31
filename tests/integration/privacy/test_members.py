"""Members' data over real HTTP (commitment and notification services on PostgreSQL and
RabbitMQ): the profile sealed at rest, who may read and export it, the erasure and its
status service by service, and what answers afterwards."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select, text

from services.cli import main as cli
from services.commitment.projections import PROJECTIONS
from services.notification.projections import endpoints_projection, feed_projection
from shared import eventstore, keyring
from shared.db import engine_for, read
from shared.erasure import COMPLETED, completed, completion_stream
from shared.events import Metadata
from shared.projection import rebuild
from shared.relay import Relay
from shared.schema import events
from shared.testing import eventually, wait_until
from tests.integration.privacy.conftest import Stack
from tests.support.receiver import Receiver


def _commitment(label: str, motivation: str, member_id: str) -> dict[str, Any]:
    return {"member_id": member_id, "contact": {"label": label, "relationship": "friend"}, "timezone": "UTC",
            "duration_days": 30, "motivation": motivation}


def test_a_profile_is_sealed_at_rest_and_read_by_its_member_or_an_admin(privacy_stack: Stack,
                                                                        postgres_url: str) -> None:
    _, key = privacy_stack.tenant()
    _, other_key = privacy_stack.tenant()
    admin = privacy_stack.client("commitment", key)
    name = f"Sam-{uuid.uuid4().hex}"
    put = admin.put("/v1/members/m-1", json={"display_name": name})
    assert put.status_code == 200, put.text
    assert put.json()["display_name"] == name and put.json()["member_id"] == "m-1"
    member = privacy_stack.client("commitment", privacy_stack.token(key, "member", "m-1"))
    assert member.get("/v1/members/m-1").json()["display_name"] == name
    assert member.put("/v1/members/m-1", json={"display_name": "Sammy"}).status_code == 200
    for who in (privacy_stack.token(key, "member", "m-2"), privacy_stack.token(key, "coach", "c-1")):
        for call in ("get", "put"):
            answer = privacy_stack.client("commitment", who).request(
                call.upper(), "/v1/members/m-1", json={"display_name": "x"} if call == "put" else None)
            assert answer.status_code == 403, answer.text
    assert privacy_stack.client("commitment", other_key).get("/v1/members/m-1").status_code == 404
    assert admin.get("/v1/members/m-nobody").status_code == 404
    for bad in ({}, {"display_name": ""}, {"display_name": "x" * 101}, {"display_name": 7}):
        refused = admin.put("/v1/members/m-1", json=bad)
        assert refused.status_code == 422 and "display_name" in refused.json()["errors"], (bad, refused.text)
    cleared = admin.put("/v1/members/m-1", json={"display_name": None})
    assert cleared.status_code == 200 and cleared.json()["display_name"] is None

    engine = engine_for(postgres_url)
    with read(engine) as conn:
        stored = conn.execute(select(events.c.data).where(events.c.type == "member.profile_updated")).scalars().all()
        row = conn.execute(text("SELECT display_name FROM commitment_members")).scalar()
    assert len(stored) == 3 and all(name not in str(data) for data in stored)
    assert keyring.is_sealed(stored[0]["display_name"]) and row is None


@pytest.fixture
def checkin_relay(postgres_url: str) -> Iterator[None]:
    """A relay of the check-in category (the check-in service is not running here)."""
    stop = threading.Event()
    relay = Relay(engine_for(postgres_url), name="test:checkin", categories=["checkin"], poll_interval_s=0.02)
    thread = threading.Thread(target=relay.run, args=(stop,), daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(timeout=10)


def test_erasing_a_member_everywhere_it_is_held(privacy_stack: Stack, postgres_url: str, receiver: Receiver,
                                                checkin_relay: None) -> None:
    tenant_id, key = privacy_stack.tenant()
    _, other_key = privacy_stack.tenant()
    admin = privacy_stack.client("commitment", key)
    hooks = privacy_stack.client("notification", key)
    endpoint = hooks.post("/v1/webhook-endpoints", json={"url": receiver.url("/hook"), "event_types": ["*"]})
    assert endpoint.status_code == 201, endpoint.text
    marker = f"Marker-{uuid.uuid4().hex}"
    first = admin.post("/v1/commitments", json=_commitment(f"{marker}-label", f"{marker}-why", "m-1"))
    assert first.status_code == 201, first.text
    assert first.json()["contact"]["label"] == f"{marker}-label" and first.json()["motivation"] == f"{marker}-why"
    kept = admin.post("/v1/commitments", json=_commitment("Kim", "mine", "m-2")).json()
    assert admin.put("/v1/coaches/c-1/clients/m-1").status_code == 204
    assert admin.put("/v1/members/m-1", json={"display_name": f"{marker}-name"}).status_code == 200
    ended = admin.post(f"/v1/commitments/{first.json()['id']}/end", json={"reason": f"{marker}-reason"})
    assert ended.status_code == 200, ended.text
    history = admin.get(f"/v1/commitments/{first.json()['id']}/history").json()
    assert history[-1]["data"]["reason"] == f"{marker}-reason"
    # Partners get the values in clear: opened at send time.
    wait_until(lambda: any(f"{marker}-label" in r.body.decode() for r in receiver.at("/hook")), 20,
               message="the commitment.created webhook")
    member = privacy_stack.client("commitment", privacy_stack.token(key, "member", "m-1"))
    exported = member.get("/v1/members/m-1/export")
    assert exported.status_code == 200 and {"member_id", "service", "exported_at", "data"} <= set(exported.json())
    for value in ("label", "why", "name", "reason"):
        assert f"{marker}-{value}" in exported.text, value
    notification_export = eventually(lambda: privacy_stack.client("notification", key).get(
        "/v1/members/m-1/export"), 200).json()
    assert notification_export["service"] == "notification" and f"{marker}-label" in str(notification_export)

    # Bad input: unknown member, another tenant's, not an admin; no erasure yet.
    assert admin.delete("/v1/members/m-nobody").status_code == 404
    assert privacy_stack.client("commitment", other_key).delete("/v1/members/m-1").status_code == 404
    assert member.delete("/v1/members/m-1").status_code == 403
    assert admin.get("/v1/members/m-1/erasure").status_code == 404

    erased = admin.delete("/v1/members/m-1")
    assert erased.status_code == 202 and erased.json() == {"member_id": "m-1", "status": "erasing"}
    status = admin.get("/v1/members/m-1/erasure").json()
    assert status["services"]["commitment"] == "erased" and status["status"] == "erasing"
    status = wait_until(lambda: (lambda s: s if s["services"]["notification"] == "erased" else None)(
        admin.get("/v1/members/m-1/erasure").json()), 20, message="the notification service's report")
    # The check-in service does not erase yet: the erasure says it is pending there.
    assert status == {**status, "status": "erasing", "services": {
        "commitment": "erased", "checkin": "erasing", "notification": "erased"}}
    again = admin.delete("/v1/members/m-1")
    assert again.status_code == 202 and again.json() == erased.json()
    engine = engine_for(postgres_url)
    with read(engine) as conn:
        requests = conn.execute(select(func.count()).where(events.c.type == "member.erasure_requested")).scalar()
    assert requests == 1

    def afterwards() -> None:
        assert admin.get(f"/v1/commitments/{first.json()['id']}").status_code == 404
        assert admin.get(f"/v1/commitments/{first.json()['id']}/history").status_code == 404
        assert admin.get("/v1/commitments", params={"member_id": "m-1"}).json()["items"] == []
        assert admin.get("/v1/members/m-1").status_code == 404
        left = admin.get("/v1/members/m-1/export").json()
        assert left["data"]["commitments"] == [] and left["data"]["profile"] is None
        assert marker not in str(left)
        assert privacy_stack.client("notification", key).get("/v1/members/m-1/export").status_code == 404
        # The second member of the tenant is untouched.
        other = admin.get(f"/v1/commitments/{kept['id']}")
        assert other.status_code == 200 and other.json()["contact"]["label"] == "Kim"

    afterwards()
    # Nothing personal is recorded for an erased member any more.
    assert admin.post("/v1/commitments", json=_commitment("again", "again", "m-1")).status_code == 409
    assert admin.put("/v1/members/m-1", json={"display_name": "again"}).status_code == 409
    # Partners are told, with ids only.
    wait_until(lambda: any(b"member.erasure_requested" in r.body for r in receiver.at("/hook")), 20,
               message="the member.erasure_requested webhook")

    # A rebuild of every read model brings nothing back.
    for projection in (*PROJECTIONS, endpoints_projection(), feed_projection()):
        rebuild(engine, projection)
    afterwards()

    # The check-in service's report, as it will append it: the erasure is then complete.
    with engine.begin() as conn:
        eventstore.append(conn, completion_stream("checkin", tenant_id, "m-1"), [completed("checkin", "m-1")],
                          metadata=Metadata(tenant_id=tenant_id, actor="checkin:erasure"))
    done = wait_until(lambda: (lambda s: s if s["status"] == "erased" else None)(
        admin.get("/v1/members/m-1/erasure").json()), 20, message="member.erased")
    assert set(done["services"].values()) == {"erased"} and done["erased_at"] >= done["requested_at"]
    assert member.get("/v1/members/m-1/erasure").json()["status"] == "erased"
    wait_until(lambda: any(b'"member.erased"' in r.body for r in receiver.at("/hook")), 20,
               message="the member.erased webhook")
    with read(engine) as conn:
        assert conn.execute(select(func.count()).where(events.c.type == "member.erased")).scalar() == 1
        assert conn.execute(select(func.count()).where(events.c.type == COMPLETED)).scalar() == 2


def test_export_and_erasure_answer_404_for_unknown_and_foreign_members(privacy_stack: Stack,
                                                                        postgres_url: str) -> None:
    tenant_id, key = privacy_stack.tenant()
    _, other_key = privacy_stack.tenant()
    created = privacy_stack.client("commitment", key).post("/v1/commitments", json=_commitment("Alex", "x", "m-a"))
    assert created.status_code == 201, created.text
    for credential, member_id in ((key, "m-nobody"), (other_key, "m-a")):
        for service in ("commitment", "notification"):
            answer = privacy_stack.client(service, credential).get(f"/v1/members/{member_id}/export")
            assert answer.status_code == 404, (service, answer.text)
        assert privacy_stack.client("commitment", credential).delete(f"/v1/members/{member_id}").status_code == 404
        assert privacy_stack.client("commitment", credential).get(f"/v1/members/{member_id}/erasure").status_code == 404
    # Another member's token exports nothing of m-a.
    stranger = privacy_stack.token(key, "member", "m-b")
    for service in ("commitment", "notification"):
        assert privacy_stack.client(service, stranger).get("/v1/members/m-a/export").status_code == 403
    answer = privacy_stack.client("commitment", key).get(f"/v1/commitments/{created.json()['id']}")
    assert answer.status_code == 200 and answer.json()["contact"]["label"] == "Alex"
    # The CLI: nothing anywhere is an error, said on stderr; every service has its part (the
    # check-in service, not running here, knows nothing of m-a).
    unknown = CliRunner().invoke(cli, ["members", "export", tenant_id, "m-nobody"])
    assert unknown.exit_code == 1 and "no service holds anything" in unknown.stderr
    known = CliRunner().invoke(cli, ["members", "export", tenant_id, "m-a"])
    assert known.exit_code == 0, known.stderr
    document = json.loads(known.stdout)
    assert document["services"]["commitment"]["data"]["commitments"][0]["contact"]["label"] == "Alex"
    assert document["services"]["notification"] is None and document["services"]["checkin"] is None
    assert document["unavailable"] == {} and "unavailable" not in known.stderr
