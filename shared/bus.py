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

import contextlib
import fcntl
import json
import os
import threading
import time
import uuid
from collections.abc import Sequence
from queue import Empty

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


class _FilesystemChannel(filesystem.Channel):
    """Kombu's filesystem channel, made to keep order and to lose nothing.

    Order: Kombu names message files by the millisecond plus a random uuid, so two messages
    published in one millisecond may be read in either order. The relay's per-stream order
    must hold in the embedded setup too: names here are a strictly increasing nanosecond
    counter per process.

    Nothing lost: Kombu deletes a message file as it reads it, so a consumer killed between
    reading a message and committing its effect lost it for good. Here reading *claims* the
    file (an atomic rename into this channel's own folder under ``unacked/``, held with an
    flock for as long as the channel lives); an ack deletes it, a requeue or a graceful
    close puts it back. A channel whose process died (kill -9, OOM) leaves its claims and
    its lock behind, and the kernel drops the lock: the next channel that reads from the
    broker (a consumer starting, and every so often a running one) moves them back into
    the queue under their original names, so they are delivered again in their order.
    Consumers are idempotent (`shared.consumer`): a redelivery of a message whose effect
    had committed changes nothing.
    """

    _last_ns = 0
    _lock = threading.Lock()

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self._claimed: dict[str, str] = {}  # delivery tag -> path of the claimed file
        self._owner: tuple[str, int] | None = None  # this channel's claims folder, its lock's fd
        self._recovered_at: float | None = None
        self._no_ack_queues: set[str] = set()  # consumed with no_ack: nothing to keep

    def _put(self, queue, payload, **kwargs):  # type: ignore[no-untyped-def]
        with self._lock:
            stamp = max(time.time_ns(), _FilesystemChannel._last_ns + 1)
            _FilesystemChannel._last_ns = stamp
        filename = os.path.join(self.data_folder_out, f"{stamp:020d}_{uuid.uuid4()}.{queue}.msg")
        temporary = filename + ".tmp"
        # Written aside and renamed, so a reader never picks up a half-written file.
        with open(temporary, "wb") as handle:
            handle.write(json.dumps(payload).encode())
        os.replace(temporary, filename)

    # -- exchange tables ---------------------------------------------------------------------
    # Kombu opens a new exchange table with "wb" before it locks it: two components binding
    # at once (every consumer of a starting worker does) both truncate it and one binding is
    # lost, and the messages meant for that queue with it; a reader meanwhile sees an empty
    # file. Here the table is created without truncating, changed under its lock, and an
    # empty one reads as no bindings yet.

    def _queue_bind(self, exchange, routing_key, pattern, queue):  # type: ignore[no-untyped-def]
        path = self._exchange_file(exchange)
        self.control_folder.mkdir(exist_ok=True)
        entry = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        with os.fdopen(descriptor, "rb+", buffering=0) as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            table = _exchange_table(handle.read())
            if entry not in table:
                table.insert(0, entry)
                handle.seek(0)
                handle.truncate()
                handle.write(json.dumps(table).encode())

    def get_table(self, exchange):  # type: ignore[no-untyped-def]
        try:
            with open(self._exchange_file(exchange), "rb") as handle:
                fcntl.flock(handle.fileno(), fcntl.LOCK_SH)
                return _exchange_table(handle.read())
        except FileNotFoundError:
            return []

    # -- claims --------------------------------------------------------------------------

    @property
    def _unacked_folder(self) -> str:
        return os.path.join(os.path.dirname(os.path.abspath(self.data_folder_in)), "unacked")

    def _claims_folder(self) -> str:
        """This channel's folder of claimed messages, made (and locked) on first use."""
        if self._owner is None:
            os.makedirs(self._unacked_folder, exist_ok=True)
            name = f"{os.getpid()}-{uuid.uuid4().hex}"
            # Locked before it gets the name recovery looks at: never mistaken for a dead one's.
            preparing = os.path.join(self._unacked_folder, name + ".new")
            os.mkdir(preparing)
            descriptor = os.open(os.path.join(preparing, "owner.lock"), os.O_CREAT | os.O_RDWR, 0o600)
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            folder = os.path.join(self._unacked_folder, name)
            os.rename(preparing, folder)
            self._owner = (folder, descriptor)
        return self._owner[0]

    def _recover_orphans(self) -> None:
        """Put back the claims of channels whose process is gone (their lock is free)."""
        self._recovered_at = time.monotonic()
        try:
            owners = os.listdir(self._unacked_folder)
        except FileNotFoundError:
            return
        mine = self._owner[0] if self._owner else None
        for name in owners:
            folder = os.path.join(self._unacked_folder, name)
            if name.endswith(".new") or folder == mine:
                continue
            try:
                descriptor = os.open(os.path.join(folder, "owner.lock"), os.O_RDWR)
            except FileNotFoundError:
                continue  # being recovered (or removed) by someone else
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(descriptor)
                continue  # its channel is alive
            try:
                for filename in sorted(os.listdir(folder)):
                    if filename.endswith(".msg"):
                        os.replace(os.path.join(folder, filename), os.path.join(self.data_folder_in, filename))
                os.unlink(os.path.join(folder, "owner.lock"))
                os.rmdir(folder)
            except FileNotFoundError:
                pass  # another channel recovered it first
            finally:
                os.close(descriptor)

    def _get(self, queue):  # type: ignore[no-untyped-def]
        """Claim the oldest message of `queue` (see the class)."""
        if self._recovered_at is None or time.monotonic() - self._recovered_at > RECOVER_ORPHANS_EVERY_S:
            self._recover_orphans()
        wanted = f"{queue}.msg"
        for filename in sorted(os.listdir(self.data_folder_in)):
            if filename.partition(".")[2] != wanted:
                continue
            claimed = os.path.join(self._claims_folder(), filename)
            try:
                os.rename(os.path.join(self.data_folder_in, filename), claimed)
            except FileNotFoundError:
                continue  # another consumer claimed it first
            with open(claimed, "rb") as handle:
                payload = json.loads(handle.read())
            self._claimed[payload["properties"]["delivery_tag"]] = claimed
            if queue in self._no_ack_queues:
                self._settle(payload["properties"]["delivery_tag"])
            return payload
        raise Empty()

    def _settle(self, delivery_tag: str) -> None:
        """The message is done with (acked, or put back as a new file): drop the claim."""
        path = self._claimed.pop(delivery_tag, None)
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def basic_consume(self, queue, no_ack, callback, consumer_tag, **kwargs):  # type: ignore[no-untyped-def]
        if no_ack:
            self._no_ack_queues.add(queue)
        return super().basic_consume(queue, no_ack, callback, consumer_tag, **kwargs)

    def basic_get(self, queue, no_ack=False, **kwargs):  # type: ignore[no-untyped-def]
        message = super().basic_get(queue, no_ack=no_ack, **kwargs)
        if message is not None and no_ack:
            self._settle(message.delivery_tag)
        return message

    def basic_ack(self, delivery_tag, multiple=False):  # type: ignore[no-untyped-def]
        super().basic_ack(delivery_tag, multiple)
        self._settle(delivery_tag)

    def basic_reject(self, delivery_tag, requeue=False):  # type: ignore[no-untyped-def]
        super().basic_reject(delivery_tag, requeue)  # a requeue puts a copy back first (_restore)
        self._settle(delivery_tag)

    def _restore(self, message):  # type: ignore[no-untyped-def]
        # Requeues and a graceful close's unacked messages: a copy back in the queue, then
        # the claim goes.
        super()._restore(message)
        self._settle(message.delivery_tag)

    def close(self) -> None:
        super().close()  # puts back what is unacked (through _restore)
        if self._owner is not None:
            folder, descriptor = self._owner
            self._owner = None
            # Anything still claimed (a put-back that failed) stays, with the lock file: once
            # the lock is released below, a later channel recovers it.
            if not any(name.endswith(".msg") for name in os.listdir(folder)):
                os.unlink(os.path.join(folder, "owner.lock"))
                os.rmdir(folder)
            os.close(descriptor)


def _exchange_table(content: bytes) -> list[filesystem.exchange_queue_t]:
    return [filesystem.exchange_queue_t(*entry) for entry in json.loads(content)] if content.strip() else []


# How often a running consumer looks for the claims of dead ones (a starting one always does).
RECOVER_ORPHANS_EVERY_S = 10.0


class FilesystemTransport(filesystem.Transport):
    Channel = _FilesystemChannel


class PublishFailed(Exception):
    """The broker refused (nacked) or did not confirm a batch in time."""


def connect(url: str | None = None) -> Connection:
    """A new, not yet connected, Kombu connection to the configured broker."""
    url = url or config.broker_url()
    transport = FilesystemTransport if url.startswith("filesystem") else None
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
    raw = os.environ.get("NOCONTACT_CONSUMER_PARTITIONS", "")
    try:
        return parse_partitions(raw, count)
    except ValueError as error:
        raise config.SettingError(f"NOCONTACT_CONSUMER_PARTITIONS={raw!r}: {error}") from None


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
