"""With the notification inbox partitioned, a commitment's check-in stream is queued in its
commitment stream's partition, behind the coach assignment it followed.

The inbox files a check-in's or an SOS's feed item under the coach that the commitment
stream's ``coach.assigned`` named (services.notification.projections.add_feed_item). In
partitions of their own the two streams are applied in parallel, and an SOS could be
applied first: onto the former coach's feed, or onto none. Here the relays publish as the
services' relays do (the assignment first: the check-in service appends only after it
learnt it), and the partition queues are read as they stand, on real RabbitMQ.
"""

from __future__ import annotations

import uuid
import zlib

import pytest

from services.checkin.domain.between import member_sos_data
from shared import bus
from shared.db import engine_for
from shared.events import NewEvent
from shared.relay import Relay
from shared.topology import NOTIFICATION_INBOX, PARTITION_SLOTS, partition_of
from tests.support.tenants import append_as

# 8, not compose's 4: hashed on their own names, a commitment's two streams fell in one of
# 1, 2 or 4 partitions by an accident of crc32 (for ids of one length, the two slots always
# differ by XOR 60, in bits 2-5), and in different ones of 8.
PARTITIONS = 8


def _commitment_split_by_stream_hashing() -> str:
    """A commitment id whose two streams, hashed on their own names, fall in different
    partitions: the case this test is about."""
    while True:
        commitment_id = str(uuid.uuid4())
        slots = {zlib.crc32(f"{category}-{commitment_id}".encode()) % PARTITION_SLOTS % PARTITIONS
                 for category in ("commitment", "checkin")}
        if len(slots) == 2:
            return commitment_id


def _queued(connection, partition: int) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """(event type, stream) of every message in a partition queue, in queue order. Consumed
    (a single-active-consumer queue refuses basic.get): as many as the queue counts."""
    queue = bus.partition_queue(NOTIFICATION_INBOX, partition, PARTITIONS)(connection.channel())
    ready = queue.queue_declare(passive=True).message_count
    found: list[tuple[str, str]] = []

    def take(_body: object, message) -> None:  # type: ignore[no-untyped-def]
        found.append((message.delivery_info["routing_key"], message.headers["stream_id"]))
        message.ack()

    with connection.Consumer(queue, callbacks=[take], accept=["json"]):
        while len(found) < ready:
            connection.drain_events(timeout=10)
    return found


def test_an_sos_is_queued_behind_the_coach_assignment_it_followed(
        postgres_url: str, amqp_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOCONTACT_NOTIFICATION_INBOX_PARTITIONS", str(PARTITIONS))
    engine = engine_for(postgres_url)
    tenant_id, commitment_id = uuid.uuid4().hex, _commitment_split_by_stream_hashing()
    ids = {"commitment_id": commitment_id, "member_id": "m-1"}
    append_as(engine, f"commitment-{commitment_id}", [
        NewEvent("coach.assigned", {**ids, "coach_id": "coach-a", "previous_coach_id": None}),
        NewEvent("coach.assigned", {**ids, "coach_id": "coach-b", "previous_coach_id": "coach-a"}),
    ], tenant_id)
    Relay(engine, name="relay:commitment", categories=["commitment"]).drain()
    append_as(engine, f"checkin-{commitment_id}", [
        NewEvent("member.sos", member_sos_data(**ids, coach_id="coach-b", message=None)),
    ], tenant_id)
    Relay(engine, name="relay:checkin", categories=["checkin"]).drain()

    with bus.connect() as connection:
        assert bus.partition_count(NOTIFICATION_INBOX, connection) == PARTITIONS
        queued = {partition: _queued(connection, partition) for partition in range(PARTITIONS)}
    home = partition_of(f"commitment-{commitment_id}", PARTITIONS)
    assert queued[home] == [
        ("coach.assigned", f"commitment-{commitment_id}"),
        ("coach.assigned", f"commitment-{commitment_id}"),
        ("member.sos", f"checkin-{commitment_id}"),
    ]
    assert all(not messages for partition, messages in queued.items() if partition != home)
