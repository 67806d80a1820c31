"""SOS over HTTP (CONTRACT v1.1, "Between check-ins"), on PostgreSQL + RabbitMQ with the
check-in and notification services and their workers as they run in production:

- ``POST .../sos`` -> 202, ``member.sos`` on the commitment's check-in stream, its message
  sealed; on top of the coach's feed with the message, in subscribed webhooks without it;
- who may send one (the member on their own commitment, an admin), and the per-member limit
  (429 with Retry-After) that keeps a coach's feed from being flooded;
- 50 SOS reach the partner's webhook receiver without waiting for a poll: the check-in
  relay and the delivery worker poll only every POLL_S seconds here, so each SOS arriving
  within WITHIN_S was carried by their wake-ups (CONTRACT: "within a second"; the latency
  itself is a benchmark's figure, ``make bench-e2e``). As the notification side's test
  says: a long transaction of other work on the server holds the relay back; run it alone
  before believing a failure.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from services.checkin import tables
from services.checkin.domain import local_today
from services.notification import tables as notification_tables
from shared import keyring, schema
from shared.db import engine_for, read
from shared.eventstore import read_stream
from shared.relay import Relay
from shared.testing import wait_until
from tests.integration.checkin.support import FOREIGN_CATEGORIES, new_commitment, new_tenant
from tests.integration.notification.test_sos_latency import POLL_S, WITHIN_S, percentile
from tests.support.receiver import Receiver

ZONE = "Europe/Berlin"
MEMBERS = 10  # 5 SOS each: the per-member limit
PER_MEMBER = 5
#: The commitment service's relay (the commitments, the tenant's key) polls as in production.
FOREIGN_POLL_S = 0.05


def where_is(engine: Any, event_id: str) -> dict[str, Any]:
    """Each hop of an SOS on its way to a webhook, as the database has it: a failure says
    where it stopped (the log, the relay's checkpoint, the notification inbox, the queue)."""
    message_id = f"msg_{uuid.UUID(event_id).hex}"
    now = datetime.now(UTC)
    with read(engine) as conn:
        event = conn.execute(select(schema.events.c.position, schema.events.c.xid, schema.events.c.recorded_at)
                             .where(schema.events.c.id == uuid.UUID(event_id))).first()
        checkpoints = conn.execute(select(schema.checkpoints)).mappings().all()
        processed = conn.execute(select(schema.processed_events.c.component, schema.processed_events.c.processed_at)
                                 .where(schema.processed_events.c.event_id == uuid.UUID(event_id))).all()
        dead = conn.execute(select(schema.dead_letters.c.component, schema.dead_letters.c.reason)
                            .where(schema.dead_letters.c.event_id == event_id)).all()
        delivery = conn.execute(select(notification_tables.deliveries)
                                .where(notification_tables.deliveries.c.message_id == message_id)).mappings().all()
        endpoints = conn.execute(select(notification_tables.endpoints.c.id, notification_tables.endpoints.c.status)
                                 ).all()
    return {"now": now, "event": event and dict(event._mapping), "checkpoints": [dict(c) for c in checkpoints],
            "processed": [tuple(p) for p in processed], "dead_letters": [tuple(d) for d in dead],
            "deliveries": [dict(d) for d in delivery], "endpoints": [tuple(e) for e in endpoints]}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A partner's webhook receiver on loopback."""
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def both(postgres_url: str, amqp_url: str, stack_factory: Any) -> Iterator[Any]:
    """The check-in and notification services with their workers, and a relay of the
    commitment service's categories (as the commitment service runs one)."""
    stack = stack_factory(postgres_url, ["checkin", "notification"], env={
        "NOCONTACT_RELAY_POLL_INTERVAL_S": str(POLL_S), "NOCONTACT_WEBHOOK_POLL_INTERVAL_S": str(POLL_S)})
    engine = engine_for(postgres_url)
    stop = threading.Event()
    foreign = Relay(engine, name="relay:test-commitment", categories=FOREIGN_CATEGORIES, poll_interval_s=FOREIGN_POLL_S)
    thread = threading.Thread(target=foreign.run, args=(stop,), daemon=True)
    thread.start()
    yield stack, engine
    stop.set()
    thread.join(timeout=10)


# Alone (make test's exclusive part): with long poll intervals, the wake-ups are all that
# carry an SOS in time, and in parallel runs another test's work on the same server twice
# kept one from arriving within the bound (cause not found yet).
@pytest.mark.exclusive
def test_sos_reaches_the_coach_and_is_pushed_to_webhooks(both, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]
    stack, engine = both
    tenant = new_tenant(engine)
    checkin = httpx.Client(base_url=stack.url("checkin"), timeout=10)
    notification = httpx.Client(base_url=stack.url("notification"), headers=tenant.headers(), timeout=10)
    wait_until(lambda: notification.get("/v1/webhook-endpoints").status_code == 200, 15, message="the key folded")
    created = notification.post("/v1/webhook-endpoints", json={"url": receiver.url("/sos"),
                                                               "event_types": ["member.sos"]})
    assert created.status_code == 201, created.text
    start = local_today(ZONE, datetime.now(UTC)) - timedelta(days=3)
    commitments = {}
    for member_id in [*(f"m-{n}" for n in range(MEMBERS)), "m-warm"]:
        cid, _ = new_commitment(engine, tenant, member_id=member_id, timezone=ZONE, starts_on=start,
                                coach_id="coach-1")
        commitments[member_id] = cid
    wait_until(lambda: all(checkin.get(f"/v1/commitments/{cid}/streak", headers=tenant.headers()).status_code == 200
                           for cid in commitments.values()), 15, message="the commitments at the check-in inbox")
    coach = tenant.headers("coach", "coach-1")
    wait_until(lambda: notification.get("/v1/coaches/coach-1/notifications", headers=coach).status_code == 200, 15,
               message="the coach known to the feed")

    # Who may call for help: the member on their own commitment, or an admin.
    cid0 = commitments["m-0"]
    assert checkin.post(f"/v1/commitments/{cid0}/sos", json={}, headers=coach).status_code == 403
    assert checkin.post(f"/v1/commitments/{cid0}/sos", json={}, headers=tenant.headers("member", "m-1")
                        ).status_code == 404
    assert checkin.post(f"/v1/commitments/{cid0}/sos", json={}, headers=new_tenant(engine).headers()
                        ).status_code in (401, 404)
    too_long = checkin.post(f"/v1/commitments/{cid0}/sos", json={"message": "x" * 501},
                            headers=tenant.headers("member", "m-0"))
    assert too_long.status_code == 422 and "message" in too_long.json()["errors"]

    def sos(member_id: str, message: str) -> float:
        """One SOS over HTTP; returns seconds from just before the request to the receiver."""
        started = time.monotonic()  # the receiver stamps requests with this clock
        sent = checkin.post(f"/v1/commitments/{commitments[member_id]}/sos", json={"message": message},
                            headers=tenant.headers("member", member_id))
        assert sent.status_code == 202, sent.text
        assert sent.json()["coach_id"] == "coach-1"
        sos_id = sent.json()["sos_id"]
        try:
            arrived = wait_until(lambda: next((r for r in receiver.at("/sos") if r.json["data"]["event_id"] == sos_id),
                                              None), WITHIN_S, interval=0.005,
                                 message="the SOS at the receiver without waiting for a poll")
        except AssertionError as late:
            raise AssertionError(f"{late}; where it is: {where_is(engine, sos_id)}") from None
        assert "message" not in arrived.json["data"] and message.encode() not in arrived.body
        return arrived.at - started

    # The first one opens the connections (broker, receiver) the others reuse, as in the
    # notification side's test: not measured.
    sos("m-warm", "first")
    rng = random.Random(15)
    latencies = []
    for round_ in range(PER_MEMBER):
        for n in range(MEMBERS):
            # Requests come when members send them, not in step with any poll of the path.
            time.sleep(rng.uniform(0, 0.1))
            latencies.append(sos(f"m-{n}", f"help {n}-{round_}"))
    # Each arrived before any poll could have carried it: pushed. The figures are for reading.
    print(f"\nSOS (HTTP) -> webhook over {len(latencies)}, pushed: p50 {percentile(latencies, 50) * 1000:.0f} ms, "
          f"p99 {percentile(latencies, 99) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms")

    # The sixth within ten minutes: refused, with when to send again; an admin is limited too.
    limited = checkin.post(f"/v1/commitments/{cid0}/sos", json={"message": "again"},
                           headers=tenant.headers("member", "m-0"))
    assert limited.status_code == 429, limited.text
    assert limited.headers["Content-Type"].startswith("application/problem+json")
    assert 0 < int(limited.headers["Retry-After"]) <= 600
    assert checkin.post(f"/v1/commitments/{cid0}/sos", json={}, headers=tenant.headers()).status_code == 429

    # The coach's feed: every SOS pinned on top, with its message.
    def pinned() -> list[dict[str, Any]] | None:
        items = notification.get("/v1/coaches/coach-1/notifications", headers=coach,
                                 params={"kind": "sos", "limit": 1}).json()["items"]
        return items if len([i for i in items if i["pinned"]]) >= MEMBERS * PER_MEMBER + 1 else None

    items = wait_until(pinned, 15, message="every SOS pinned in the coach's feed")
    assert {i["data"]["message"] for i in items} >= {f"help {n}-4" for n in range(MEMBERS)}

    # In the log and the limit's table: ids and instants, the message sealed.
    with read(engine) as conn:
        stream = read_stream(conn, f"checkin-{cid0}")
        counted = conn.execute(select(tables.sos_calls.c.member_id).where(
            tables.sos_calls.c.tenant_id == tenant.tenant_id)).scalars().all()
    told = [e for e in stream if e.type == "member.sos"]
    assert len(told) == PER_MEMBER and all(keyring.is_sealed(e.data["message"]) for e in told)
    assert "help 0" not in str([e.data for e in stream])
    assert len(counted) == MEMBERS * PER_MEMBER + 1
