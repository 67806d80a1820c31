"""Kombu plumbing: connections, the declared topology, and publishing with confirms.

The same code runs on RabbitMQ (``amqp://``) and on the embedded ``filesystem://``
transport; only the URL differs. On AMQP the publisher puts its channel in confirm mode
and pipelines: it publishes a whole batch, then waits once for the broker's acks, instead
of one round trip per message.

Partitioned components (see shared.topology) get, on RabbitMQ only, a headers exchange
bound to the topic exchange with the component's routing keys, and N single-active-
consumer quorum queues bound to it by the ``partition_slot`` header every message carries.
The relay publishes exactly as before (one message per event, routing key = event type).
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Sequence

from kombu import Connection, Exchange, Producer, Queue, binding
from kombu.transport import filesystem

from shared import config
from shared.envelope import encode
from shared.events import RecordedEvent
from shared.topology import (
    COMPONENTS,
    DEAD_LETTER_EXCHANGE,
    EXCHANGE,
    PARTITION_HEADER,
    Component,
    parse_partitions,
    partition_of,
    partition_slot,
    slots_of,
)


class _OrderedFilesystemChannel(filesystem.Channel):
    """Kombu's filesystem channel names message files by the millisecond plus a random
    uuid, so two messages published in one millisecond may be read in either order. The
    relay's per-stream order must hold in the embedded setup too: names here are a
    strictly increasing nanosecond counter per process."""

    _last_ns = 0
    _lock = threading.Lock()

    def _put(self, queue, payload, **kwargs):  # type: ignore[no-untyped-def]
        with self._lock:
            stamp = max(time.time_ns(), _OrderedFilesystemChannel._last_ns + 1)
            _OrderedFilesystemChannel._last_ns = stamp
        filename = os.path.join(self.data_folder_out, f"{stamp:020d}_{uuid.uuid4()}.{queue}.msg")
        temporary = filename + ".tmp"
        # Written aside and renamed, so a reader never picks up a half-written file.
        with open(temporary, "wb") as handle:
            handle.write(json.dumps(payload).encode())
        os.replace(temporary, filename)


class OrderedFilesystemTransport(filesystem.Transport):
    Channel = _OrderedFilesystemChannel


class PublishFailed(Exception):
    """The broker refused (nacked) or did not confirm a batch in time."""


def connect(url: str | None = None) -> Connection:
    """A new, not yet connected, Kombu connection to the configured broker."""
    url = url or config.broker_url()
    transport = OrderedFilesystemTransport if url.startswith("filesystem") else None
    return Connection(
        url,
        transport=transport,
        transport_options=config.broker_transport_options(),
        connect_timeout=5,
        heartbeat=0,
    )


def is_amqp(connection: Connection) -> bool:
    return connection.transport.driver_type == "amqp"


def events_exchange() -> Exchange:
    return Exchange(config.bus_prefix() + EXCHANGE, type="topic", durable=True)


def dead_letter_exchange() -> Exchange:
    return Exchange(config.bus_prefix() + DEAD_LETTER_EXCHANGE, type="direct", durable=True)


def queue_arguments(connection: Connection) -> dict[str, object]:
    # Quorum queues replicate and survive node loss; the filesystem transport has no types.
    return {"x-queue-type": "quorum"} if is_amqp(connection) else {}


def component_queue(component: Component, connection: Connection) -> Queue:
    exchange = events_exchange()
    return Queue(
        config.bus_prefix() + component.queue_name,
        bindings=[binding(exchange, routing_key=key) for key in component.routing_keys],
        durable=True,
        auto_delete=False,
        queue_arguments=queue_arguments(connection),
    )


def partition_count(component: Component, connection: Connection) -> int | None:
    """The component's partitions on this transport (None: its one plain queue)."""
    # The filesystem transport has no headers exchange and no single active consumer.
    return component.partition_count() if is_amqp(connection) else None


def partition_exchange(component: Component) -> Exchange:
    return Exchange(config.bus_prefix() + component.partition_exchange_name, type="headers", durable=True)


def partition_queue(component: Component, partition: int, count: int) -> Queue:
    exchange = partition_exchange(component)
    return Queue(
        config.bus_prefix() + component.partition_queue_name(partition),
        bindings=[
            binding(exchange, arguments={"x-match": "all", PARTITION_HEADER: slot})
            for slot in slots_of(partition, count)
        ],
        durable=True,
        auto_delete=False,
        # One consumer at a time per partition keeps each stream in order; the others
        # attached wait as hot standbys and take over when it goes away.
        queue_arguments={"x-queue-type": "quorum", "x-single-active-consumer": True},
    )


def consumed_partitions(component: Component, connection: Connection, chosen: Sequence[int] | None = None) -> list[int]:
    """Which partitions this process consumes: `chosen`, else NOCONTACT_CONSUMER_PARTITIONS, else all."""
    count = partition_count(component, connection)
    if count is None:
        return []
    if chosen is not None:
        return parse_partitions(",".join(str(p) for p in chosen), count)
    return parse_partitions(os.environ.get("NOCONTACT_CONSUMER_PARTITIONS", ""), count)


def component_queues(
    component: Component, connection: Connection, partitions: Sequence[int] | None = None
) -> list[Queue]:
    """The queues a consumer of `component` reads: its one queue, or its chosen partitions."""
    count = partition_count(component, connection)
    if count is None:
        return [component_queue(component, connection)]
    return [partition_queue(component, p, count) for p in consumed_partitions(component, connection, partitions)]


def queue_for_stream(component: Component, connection: Connection, stream_id: str | None) -> str:
    """Name of the queue that holds `stream_id`'s messages for `component` (for requeues)."""
    count = partition_count(component, connection)
    if count is None:
        return config.bus_prefix() + component.queue_name
    return config.bus_prefix() + component.partition_queue_name(partition_of(stream_id or "", count))


def dead_letter_queue(component: Component, connection: Connection) -> Queue:
    return Queue(
        config.bus_prefix() + component.dead_letter_queue_name,
        exchange=dead_letter_exchange(),
        routing_key=component.name,
        durable=True,
        auto_delete=False,
        queue_arguments=queue_arguments(connection),
    )


def declare_topology(connection: Connection, components: Sequence[Component] = COMPONENTS) -> None:
    """Declare the exchanges and every component's queues and bindings (idempotent)."""
    channel = connection.default_channel
    events_exchange()(channel).declare()
    dead_letter_exchange()(channel).declare()
    for component in components:
        count = partition_count(component, connection)
        if count is None:
            component_queue(component, connection)(channel).declare()
        else:
            exchange = partition_exchange(component)(channel)
            exchange.declare()
            for key in component.routing_keys:
                exchange.bind_to(events_exchange(), routing_key=key)
            for partition in range(count):
                partition_queue(component, partition, count)(channel).declare()
        dead_letter_queue(component, connection)(channel).declare()


def message_properties(event: RecordedEvent) -> dict[str, object]:
    return {
        "routing_key": event.type,
        "delivery_mode": 2,  # persistent
        "content_type": "application/json",
        "content_encoding": "utf-8",
        "message_id": str(event.id),
        "correlation_id": event.correlation_id,
        "headers": {
            "stream_id": event.stream_id,
            "stream_version": event.stream_version,
            "tenant_id": event.tenant_id,
            PARTITION_HEADER: partition_slot(event.stream_id),
        },
    }


class ConfirmingPublisher:
    """Publishes batches of events and returns only once the broker has confirmed them all."""

    def __init__(self, connection: Connection, confirm_timeout_s: float = 30.0) -> None:
        self._connection = connection
        self._timeout = confirm_timeout_s
        self._channel = connection.channel()
        self._confirms = is_amqp(connection)
        self._outstanding: set[int] = set()
        self._nacked: set[int] = set()
        self._next_tag = 1
        if self._confirms:
            self._channel.confirm_select()
            self._channel.events["basic_ack"].add(self._on_ack)
            self._channel.events["basic_nack"].add(self._on_nack)
        self._producer = Producer(self._channel, exchange=events_exchange())

    def _settle(self, delivery_tag: int, multiple: bool) -> set[int]:
        settled = {tag for tag in self._outstanding if tag <= delivery_tag} if multiple else {delivery_tag}
        self._outstanding -= settled
        return settled

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        self._settle(delivery_tag, multiple)

    def _on_nack(self, delivery_tag: int, multiple: bool) -> None:
        self._nacked |= self._settle(delivery_tag, multiple)

    def publish(self, events: Sequence[RecordedEvent]) -> None:
        """Publish in order; raises PublishFailed or a connection error if not all confirmed."""
        for event in events:
            self._producer.publish(encode(event), **message_properties(event))
            if self._confirms:
                self._outstanding.add(self._next_tag)
                self._next_tag += 1
        if not self._confirms:
            return  # the filesystem transport has written the files synchronously
        deadline = time.monotonic() + self._timeout
        while self._outstanding:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PublishFailed(f"{len(self._outstanding)} messages not confirmed in time")
            try:
                self._connection.drain_events(timeout=min(remaining, 1.0))
            except TimeoutError:
                continue
        if self._nacked:
            count = len(self._nacked)
            self._nacked.clear()
            raise PublishFailed(f"broker refused {count} messages")

    def close(self) -> None:
        try:
            self._channel.close()
        except Exception:  # noqa: BLE001 - closing a dead channel is not an error worth raising
            pass
