"""An SOS wakes every hop of its way to a partner's webhook receiver that would otherwise
wait for a poll (CONTRACT v1.1, "Between check-ins": within a second).

The whole delivery path as it runs in production, on PostgreSQL and RabbitMQ: each
``member.sos`` is appended to the store as the check-in service's command appends it (one
transaction on the commitment's check-in stream, its message sealed), published by a relay
of the check-in service's categories, consumed by the notification inbox, queued, and sent
by the delivery worker (the notification service's own worker parts) to a receiver on
loopback.

What is asserted is the mechanism, not a sub-second margin: the relay and the delivery
worker poll only every POLL_S seconds here, and each wake-up starts their wait afresh (the
previous SOS's, a fraction of a second before), so an SOS that arrives within WITHIN_S was
carried by the relay's wake-up (the append's NOTIFY) and the inbox's wake-up of the
delivery worker, every time. (The broker pushes to the inbox's consumer; this test would
not notice a consumer that polled every second.) How fast the whole way is under a
sustained load is a benchmark's figure: ``make bench-e2e`` reports SOS-to-webhook latency
beside the check-ins'. This test prints what it saw, for the curious.

The relay reads an event once every older transaction on the server has ended (its feed is
gated on the snapshot's xmin: shared.eventstore); woken, it looks again at doubling
intervals of at most a second, so an SOS held back by a transaction of other work on the
server (another test's: make test runs two at once) goes out within a second of its end.
WITHIN_S tolerates such a hold of most of a minute; a failure after a longer one is the
server's, not the path's: run it alone before believing it.
"""

from __future__ import annotations

import math
import random
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from services.checkin.worker import CATEGORIES as CHECKIN_CATEGORIES
from shared import eventstore, keyring
from shared.db import engine_for
from shared.events import Metadata, NewEvent
from shared.relay import Relay
from shared.testing import wait_until
from tests.support.receiver import Receiver
from tests.support.tenants import new_tenant

SOS_COUNT = 50
#: The commitment service's relay, for the tenant's key (the check-in service's relays the SOS).
COMMITMENT_CATEGORIES = ("tenant", "commitment", "member")
#: How long the check-in relay and the delivery worker wait between polls here: far longer
#: than any SOS may take, so only the pushed path can carry one in time.
POLL_S = 120.0
#: How long an SOS may take here: half the poll interval, room for a loaded machine.
WITHIN_S = POLL_S / 2


def percentile(values: list[float], p: float) -> float:
    """The nearest-rank percentile: the smallest value that p % of the values do not exceed."""
    ordered = sorted(values)
    return ordered[max(math.ceil(p / 100 * len(ordered)), 1) - 1]


@pytest.fixture
def relays(postgres_url: str) -> Iterator[None]:
    engine = engine_for(postgres_url)
    stop = threading.Event()
    threads = [
        # The commitment service's relay polls as usual (the tenant's key must reach the
        # inbox before the first SOS); the check-in relay hears of an SOS only when woken.
        threading.Thread(target=Relay(engine, name=name, categories=categories, poll_interval_s=poll_s).run,
                         args=(stop,), daemon=True)
        for name, categories, poll_s in (("relay:checkin", CHECKIN_CATEGORIES, POLL_S),
                                         ("relay:commitment", COMMITMENT_CATEGORIES, None))
    ]
    for thread in threads:
        thread.start()
    yield
    stop.set()
    for thread in threads:
        thread.join(timeout=10)


# Alone (make test's exclusive part): with long poll intervals, the wake-ups are all that
# carry an SOS in time, and in parallel runs another test's work on the same server twice
# kept one from arriving within the bound (cause not found yet).
@pytest.mark.exclusive
def test_an_sos_is_pushed_to_a_webhook_at_every_hop(postgres_url: str, amqp_url: str, stack_factory: Any,
                                                     relays: None, receiver: Receiver) -> None:
    stack = stack_factory(postgres_url, ["notification"], env={"NOCONTACT_WEBHOOK_POLL_INTERVAL_S": str(POLL_S)})
    engine = engine_for(postgres_url)
    tenant = new_tenant(engine)
    tenant_id = tenant.tenant_id
    admin = httpx.Client(base_url=stack.url("notification"), headers=tenant.headers(), timeout=10)
    wait_until(lambda: admin.get("/v1/webhook-endpoints").status_code == 200, 15, message="the key folded")
    created = admin.post("/v1/webhook-endpoints", json={"url": receiver.url("/sos"), "event_types": ["member.sos"]})
    assert created.status_code == 201, created.text
    commitment_id, member_id = str(uuid.uuid4()), "m-1"
    keyring.ensure_key(engine, tenant_id, member_id, now=datetime.now(UTC))

    def sos() -> float:
        """One SOS, as the check-in service appends it; returns seconds to the receiver."""
        sos_id = uuid.uuid4().hex
        data = {"commitment_id": commitment_id, "member_id": member_id, "sos_id": sos_id, "message": "call me"}
        started = time.monotonic()  # the receiver stamps requests with this clock (Request.at)
        with engine.begin() as conn:
            event = keyring.seal_event(keyring.member_key(conn, tenant_id, member_id), NewEvent("member.sos", data),
                                       ("message",))
            eventstore.append(conn, f"checkin-{commitment_id}", [event],
                              metadata=Metadata(tenant_id=tenant_id, actor=f"member:{member_id}"))
        arrived = wait_until(lambda: next((r for r in receiver.at("/sos") if r.json["data"]["sos_id"] == sos_id),
                                          None), WITHIN_S, interval=0.005,
                             message="the SOS at the receiver without waiting for a poll")
        assert "message" not in arrived.json["data"]
        return arrived.at - started

    sos()  # the first one opens the connections (broker, receiver) the others reuse
    rng = random.Random(15)
    latencies = []
    for _ in range(SOS_COUNT):
        # Requests come when members send them, not in step with anything on the path.
        time.sleep(rng.uniform(0, 0.2))
        latencies.append(sos())
    # Every one of them arrived before any poll could have carried it (sos() waits at most
    # WITHIN_S): pushed. The figures are for reading; the benchmark's are the ones to trust.
    print(f"\nSOS -> webhook over {SOS_COUNT}, pushed: p50 {percentile(latencies, 50) * 1000:.0f} ms, "
          f"p99 {percentile(latencies, 99) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms")

