"""The consumer base: bus messages applied exactly once in effect, poison never blocks.

For each message: decode the envelope (a malformed body goes straight to the dead-letter
queue with the reason; Kombu's own decoding, which acks and drops on error, is bypassed),
then apply the handler and record the event id as processed in ONE database transaction,
then ack. A redelivery finds the id recorded and changes nothing. A handler that keeps
failing is retried a bounded number of times, then dead-lettered; the queue moves on.

While a message is handled, its correlation id, causation id and event id are bound to
the log context, so every log line of the handler (and of what it calls) carries the
correlation id that the HTTP request started. A partitioned component (shared.topology)
is consumed from the partitions this process was given (default: all), one at a time per
partition across all processes (RabbitMQ's single active consumer).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from kombu import Message, Producer
from sqlalchemy import Connection as DbConnection
from sqlalchemy import Engine, insert, select

from shared import bus, metrics
from shared.envelope import MalformedEnvelope, decode, versions
from shared.events import RecordedEvent
from shared.logging import bind_context
from shared.schema import dead_letters, processed_events
from shared.topology import Component

log = logging.getLogger(__name__)

Handler = Callable[[DbConnection, RecordedEvent], None]


class UnknownSchemaVersion(Exception):
    """An event newer than this reader understands: parked, not guessed at."""


def already_processed(conn: DbConnection, component: str, event: RecordedEvent) -> bool:
    found = conn.execute(
        select(processed_events.c.event_id).where(
            processed_events.c.component == component, processed_events.c.event_id == event.id
        )
    ).first()
    return found is not None


def mark_processed(conn: DbConnection, component: str, event: RecordedEvent) -> None:
    conn.execute(
        insert(processed_events).values(
            component=component,
            event_id=event.id,
            stream_id=event.stream_id,
            stream_version=event.stream_version,
            processed_at=datetime.now(UTC),
        )
    )


def apply_once(engine: Engine, component: str, handler: Handler, event: RecordedEvent) -> bool:
    """Apply `event` unless already applied; returns False for a duplicate."""
    with engine.begin() as conn:
        if already_processed(conn, component, event):
            return False
        # Recorded first: on PostgreSQL a concurrent duplicate waits on this row, then fails.
        mark_processed(conn, component, event)
        handler(conn, event)
    return True


class Consumer:
    """Consumes one component's queue until stopped."""

    def __init__(
        self,
        engine: Engine,
        component: Component,
        handler: Handler,
        *,
        max_attempts: int = 5,
        prefetch: int = 50,
        broker_url: str | None = None,
        retry_delay_s: float = 0.2,
        partitions: Sequence[int] | None = None,
    ) -> None:
        self.engine = engine
        self.component = component
        self.handler = handler
        self.max_attempts = max_attempts
        self.prefetch = prefetch
        self.broker_url = broker_url
        self.retry_delay_s = retry_delay_s
        # Which partitions of a partitioned component to consume (None: the environment's
        # NOCONTACT_CONSUMER_PARTITIONS, else all); ignored for unpartitioned components.
        self.partitions = partitions
        self._dead_letter_producer: Producer | None = None
        self._stopping: threading.Event | None = None

    # -- one message -------------------------------------------------------------------

    def handle_body(self, body: bytes | str, headers: dict | None = None) -> str:  # type: ignore[type-arg]
        """Apply one message body; returns the outcome. Never raises."""
        try:
            event = decode(body)
        except MalformedEnvelope as error:
            self.dead_letter(body, str(error), headers, attempts=1, event=None)
            return "malformed"
        if not versions.is_known(event):
            reason = (
                f"{event.type} schema version {event.schema_version} is newer than this reader "
                f"knows ({versions.current_version(event.type)})"
            )
            self.dead_letter(body, reason, headers, attempts=1, event=event)
            return "unknown_version"
        event = versions.upcast(event)
        with bind_context(
            component=self.component.name,
            event_id=str(event.id),
            event_type=event.type,
            stream_id=event.stream_id,
            correlation_id=event.correlation_id,
            causation_id=event.causation_id,
            tenant_id=event.tenant_id,
        ):
            return self._apply_with_retries(body, headers, event)

    def _apply_with_retries(
        self,
        body: bytes | str,
        headers: dict | None,  # type: ignore[type-arg]
        event: RecordedEvent,
    ) -> str:
        last_error = ""
        for attempt in range(1, self.max_attempts + 1):
            try:
                applied = apply_once(self.engine, self.component.name, self.handler, event)
            except Exception as error:  # noqa: BLE001 - any handler failure is retried, then parked
                last_error = "".join(traceback.format_exception_only(error)).strip()
                log.warning(
                    "%s: %s %s failed (attempt %d/%d): %s",
                    self.component.name, event.type, event.id, attempt, self.max_attempts, last_error,
                )
                if attempt < self.max_attempts:
                    time.sleep(min(self.retry_delay_s * 2 ** (attempt - 1), 5.0))
                continue
            age = (datetime.now(UTC) - event.recorded_at).total_seconds()
            metrics.CONSUMER_LAG.labels(self.component.name).set(max(age, 0.0))
            return "applied" if applied else "duplicate"
        self.dead_letter(body, last_error, headers, attempts=self.max_attempts, event=event)
        return "failed"

    def dead_letter(
        self,
        body: bytes | str,
        reason: str,
        headers: dict | None,  # type: ignore[type-arg]
        *,
        attempts: int,
        event: RecordedEvent | None,
    ) -> None:
        """Park a message: on the component's dead-letter queue and in the dead_letters table."""
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        log.error("%s: dead-lettering message: %s", self.component.name, reason)
        metrics.DEAD_LETTERS.labels(self.component.name).inc()
        if self._dead_letter_producer is not None:
            self._dead_letter_producer.publish(
                text.encode(),
                routing_key=self.component.name,
                delivery_mode=2,
                content_type="application/json",
                content_encoding="utf-8",
                headers={**(headers or {}), "x-dead-letter-reason": reason[:1000], "x-attempts": attempts},
            )
        with self.engine.begin() as conn:
            conn.execute(
                insert(dead_letters).values(
                    component=self.component.name,
                    event_id=str(event.id) if event else _guess_id(text),
                    event_type=event.type if event else None,
                    reason=reason,
                    body=text,
                    headers=_jsonable(headers),
                    attempts=attempts,
                    failed_at=datetime.now(UTC),
                )
            )

    def _on_message(self, message: Message) -> None:
        if self._stopping is not None and self._stopping.is_set():
            # Stopping: cancelling the subscription waits for the broker's cancel-ok, and
            # the prefetched deliveries that arrive meanwhile are dispatched here. Handing
            # them back untouched keeps shutdown to the one message in hand; the next
            # consumer gets them, in order.
            message.requeue()
            return
        outcome = self.handle_body(message.body, dict(message.headers or {}))
        metrics.CONSUMED.labels(self.component.name, outcome).inc()
        message.ack()

    # -- the loop ----------------------------------------------------------------------

    def run(self, stop: threading.Event, ready: threading.Event | None = None) -> None:
        """Consume until `stop` is set; reconnects with backoff when the broker goes away.

        The message being handled when SIGTERM sets `stop` is finished and acked first.
        """
        backoff = 0.5
        self._stopping = stop
        while not stop.is_set():
            try:
                with bus.connect(self.broker_url) as connection:
                    connection.connect()
                    bus.declare_topology(connection, [self.component])
                    # Made (and its exchange known) before consuming: a declare inside a
                    # message callback would wait on the socket and dispatch the next
                    # delivery re-entrantly.
                    self._dead_letter_producer = Producer(
                        connection.channel(), exchange=bus.dead_letter_exchange(), auto_declare=False
                    )
                    queues = bus.component_queues(self.component, connection, self.partitions)
                    with connection.Consumer(
                        queues, on_message=self._on_message, prefetch_count=self.prefetch
                    ):
                        if ready is not None:
                            ready.set()
                        backoff = 0.5
                        while not stop.is_set():
                            try:
                                connection.drain_events(timeout=0.5)
                            except TimeoutError:
                                pass
            except Exception as error:  # noqa: BLE001 - reconnect on any broker failure
                log.warning("%s: broker connection lost (%s); retrying in %.1fs", self.component.name, error, backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
            finally:
                self._dead_letter_producer = None


def _guess_id(text: str) -> str | None:
    try:
        value = json.loads(text).get("id")
    except Exception:  # noqa: BLE001 - it is malformed; the id is only a courtesy
        return None
    return str(value)[:64] if value is not None else None


def _jsonable(headers: dict | None) -> dict | None:  # type: ignore[type-arg]
    if headers is None:
        return None
    return json.loads(json.dumps(headers, default=str))
