"""The consumer base: bus messages applied exactly once in effect, poison never blocks.

For each message: decode the envelope (a malformed body goes straight to the dead-letter
queue with the reason; Kombu's own decoding, which acks and drops on error, is bypassed),
then apply the handler and record the event id as processed in ONE database transaction,
then ack. A redelivery finds the id recorded and changes nothing. A handler that keeps
failing is retried a bounded number of times, then dead-lettered; the queue moves on.

Batches (``batch_size`` > 1): the messages already prefetched from the broker are applied
in ONE transaction (a commit, i.e. a WAL flush, per message can be most of a consumer's
cost), each still recorded in processed_events under its event id, and acked only after
that commit. If anything in a batch fails, the batch is rolled back and its messages are
applied one by one with the retries and dead-lettering above, so one poison message costs
the batch a second try, never its neighbours' effects. ``batch_handler`` applies a batch
with exactly the effects ``handler`` would have had on each event in turn, only cheaper
(reads shared, writes grouped).

Remembering is bounded: a consumer forgets the processed_events rows older than the
dedup window (``NOCONTACT_DEDUP_WINDOW_DAYS``, shared.config), a small batch at a time
between messages, so the table holds weeks of events, not the whole log's history.

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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta

from kombu import Message, Producer
from sqlalchemy import Connection as DbConnection
from sqlalchemy import Engine, bindparam, delete, insert, select
from sqlalchemy.exc import IntegrityError

from shared import bus, config, metrics
from shared.clock import utcnow
from shared.db import DriverSelect, DriverWrite, read
from shared.envelope import MalformedEnvelope, decode, versions
from shared.events import RecordedEvent
from shared.eventstore import ConcurrencyError
from shared.logging import bind_context
from shared.schema import dead_letters, processed_events
from shared.topology import Component

# Which of a batch's events the component applied already: built once, not per batch; on
# the driver on PostgreSQL (every batch asks).
_PROCESSED_AMONG = DriverSelect(select(processed_events.c.event_id).where(
    processed_events.c.component == bindparam("component"),
    processed_events.c.event_id.in_(bindparam("event_ids", expanding=True)),
))
log = logging.getLogger(__name__)

Handler = Callable[[DbConnection, RecordedEvent], None]
#: Applies several events in one transaction, in order, as a `Handler` would one by one.
BatchHandler = Callable[[DbConnection, Sequence[RecordedEvent]], None]

#: How long a batching consumer waits for a further message that may be on its way before
#: applying what it holds. Only the socket read waits; prefetched messages are in hand.
GATHER_S = 0.002
#: How long a consumer with nothing in hand waits for a message before it looks up from the
#: socket (to flush, to forget, to see `stop`).
IDLE_WAIT_S = 0.5


class UnknownSchemaVersion(Exception):
    """An event newer than this reader understands: parked, not guessed at."""


def already_processed(conn: DbConnection, component: str, event: RecordedEvent) -> bool:
    found = conn.execute(
        select(processed_events.c.event_id).where(
            processed_events.c.component == component, processed_events.c.event_id == event.id
        )
    ).first()
    return found is not None


class AppliedConcurrently(Exception):
    """Another transaction recorded the same event as processed first."""


_MARK_PROCESSED = DriverWrite(insert(processed_events))


def mark_processed(conn: DbConnection, component: str, events: Sequence[RecordedEvent]) -> None:
    """Record `events` as processed; `AppliedConcurrently` if one already is (the caller's
    transaction must then roll back: the other one's effects are the ones that count)."""
    now = utcnow()
    try:
        _MARK_PROCESSED.many(
            conn,
            [
                {
                    "component": component,
                    "event_id": event.id,
                    "stream_id": event.stream_id,
                    "stream_version": event.stream_version,
                    "processed_at": now,
                }
                for event in events
            ],
        )
    except IntegrityError as error:
        raise AppliedConcurrently() from error


#: How many processed_events rows past the dedup window a consumer deletes in one
#: transaction: a short one, between two messages (a long transaction anywhere on the server
#: would hold back every tailer of the log: shared.eventstore).
FORGET_BATCH = 1000
#: How often a consumer looks for rows past the window; after a full batch (a backlog, say
#: the first run after an upgrade), it takes the next one this much later.
FORGET_EVERY_S = 3600.0
FORGET_AGAIN_S = 1.0


def forget_processed(engine: Engine, component: str, *, before: datetime, limit: int) -> int:
    """Delete the oldest `limit` of `component`'s processed_events rows recorded before
    `before`, in one transaction; returns how many went."""
    oldest = (
        select(processed_events.c.event_id)
        .where(processed_events.c.component == component, processed_events.c.processed_at < before)
        .order_by(processed_events.c.processed_at)
        .limit(limit)
    )
    with engine.begin() as conn:
        deleted = conn.execute(delete(processed_events).where(
            processed_events.c.component == component, processed_events.c.event_id.in_(oldest.scalar_subquery())
        ))
    return deleted.rowcount or 0


def apply_once(engine: Engine, component: str, handler: Handler, event: RecordedEvent) -> bool:
    """Apply `event` unless already applied; returns False for a duplicate.

    "Already applied?" is a read, and the processed_events row is written AFTER the
    handler: a handler may append to the store, and an append must be its transaction's
    first write (shared.commands). A duplicate running concurrently passes the read too,
    then fails on that row's key (on PostgreSQL it waits for the first transaction to
    commit) and its whole transaction rolls back: exactly once in effect.
    """
    try:
        with engine.begin() as conn:
            if already_processed(conn, component, event):
                return False
            handler(conn, event)
            mark_processed(conn, component, [event])
    except AppliedConcurrently:
        return False
    except (ConcurrencyError, IntegrityError):
        # The handler lost a race on its own append or read-model row. To a concurrent copy
        # of this very event? PostgreSQL made us wait for that copy's transaction to end,
        # so its processed_events row is visible now: then this one is a duplicate.
        with read(engine) as conn:
            if already_processed(conn, component, event):
                return False
        raise
    return True


@contextmanager
def event_log_context(component: str, event: RecordedEvent) -> Iterator[None]:
    """While `event` is handled, every log line carries its ids and the request's
    correlation id."""
    with bind_context(
        component=component,
        event_id=str(event.id),
        event_type=event.type,
        stream_id=event.stream_id,
        correlation_id=event.correlation_id,
        causation_id=event.causation_id,
        tenant_id=event.tenant_id,
    ):
        yield


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
        batch_size: int = 1,
        batch_handler: BatchHandler | None = None,
        on_commit: Callable[[], None] | None = None,
        dedup_window: timedelta | None = None,
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
        # At most what the broker sends ahead: a batch is made of prefetched messages.
        self.batch_size = max(1, min(batch_size, prefetch))
        self.batch_handler = batch_handler or self._apply_each
        # Told after every commit that applied events (e.g. to wake a worker that acts on
        # what they wrote); it may also hear of a rolled-back batch's events, never miss one.
        self.on_commit = on_commit
        # Read (and validated) here: a malformed setting stops the worker at start.
        self.dedup_window = config.dedup_window() if dedup_window is None else dedup_window
        self._forget_due = 0.0  # monotonic time of the next look for rows past the window
        self._dead_letter_producer: Producer | None = None
        self._stopping: threading.Event | None = None
        self._pending: list[Message] = []
        # RabbitMQ acks a whole batch with one frame; Kombu's virtual transports ignore
        # ``multiple``, so there each message is acked.
        self._ack_multiple = False

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
        with event_log_context(self.component.name, event):
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
            if applied and self.on_commit is not None:
                self.on_commit()
            self._note_lag([event])
            return "applied" if applied else "duplicate"
        self.dead_letter(body, last_error, headers, attempts=self.max_attempts, event=event)
        return "failed"

    def _note_lag(self, events: Sequence[RecordedEvent]) -> None:
        newest = max(event.recorded_at for event in events)
        metrics.CONSUMER_LAG.labels(self.component.name).set(max((utcnow() - newest).total_seconds(), 0.0))

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
                    failed_at=utcnow(),
                )
            )

    def _handle(self, message: Message) -> None:
        outcome = self.handle_body(message.body, dict(message.headers or {}))
        metrics.CONSUMED.labels(self.component.name, outcome).inc()
        message.ack()

    def _on_message(self, message: Message) -> None:
        if self._stopping is not None and self._stopping.is_set():
            # Stopping: cancelling the subscription waits for the broker's cancel-ok, and
            # the prefetched deliveries that arrive meanwhile are dispatched here. Handing
            # them back untouched keeps shutdown to the message(s) in hand; the next
            # consumer gets them, in order.
            message.requeue()
            return
        if self.batch_size > 1:
            self._pending.append(message)
        else:
            self._handle(message)

    # -- batches -----------------------------------------------------------------------

    def _apply_each(self, conn: DbConnection, events: Sequence[RecordedEvent]) -> None:
        for event in events:
            with event_log_context(self.component.name, event):
                self.handler(conn, event)

    def apply_batch(self, events: Sequence[RecordedEvent]) -> list[str] | None:
        """Apply `events` in one transaction: each one's outcome ("applied", "duplicate"),
        or None if the transaction rolled back (nothing of the batch was committed)."""
        name = self.component.name
        fresh: dict[object, RecordedEvent] = {}
        outcomes: list[str] = []
        try:
            with self.engine.begin() as conn:
                done = {row.event_id for row in _PROCESSED_AMONG.all(conn, {
                    "component": name, "event_ids": sorted({event.id for event in events}),
                })}
                for event in events:
                    if event.id in done or event.id in fresh:
                        outcomes.append("duplicate")
                    else:
                        fresh[event.id] = event
                        outcomes.append("applied")
                if fresh:
                    self.batch_handler(conn, list(fresh.values()))
                    # After the handler, as in apply_once (a handler's append comes first).
                    mark_processed(conn, name, list(fresh.values()))
        except Exception as error:  # noqa: BLE001 - retried message by message
            log.warning(
                "%s: batch of %d failed (%s); applying one by one",
                name, len(events), "".join(traceback.format_exception_only(error)).strip(),
            )
            return None
        if fresh and self.on_commit is not None:
            self.on_commit()
        return outcomes

    def flush(self) -> None:
        """Apply the gathered messages (one transaction if all goes well), then ack them."""
        batch, self._pending = self._pending, []
        if not batch:
            return
        events: list[RecordedEvent] = []
        for message in batch:
            try:
                event = decode(message.body)
            except MalformedEnvelope:
                event = None
            if event is None or not versions.is_known(event):
                events = []
                break  # parked by the one-by-one path, which says why
            events.append(versions.upcast(event))
        outcomes = self.apply_batch(events) if events else None
        if outcomes is None:
            # Nothing of the batch was committed: each message on its own (retries, dead
            # letters, duplicates found in processed_events).
            for message in batch:
                self._handle(message)
            return
        for outcome in outcomes:
            metrics.CONSUMED.labels(self.component.name, outcome).inc()
        if self._ack_multiple:
            # One frame for the batch: every delivery before it on this channel is in the
            # batch (or was already settled), since a batch takes all messages in hand.
            batch[-1].ack(multiple=True)
        else:
            for message in batch:
                message.ack()
        self._note_lag(events)

    def forget_when_due(self) -> int:
        """Delete a batch of this component's processed_events rows past the dedup window,
        if it is time to look; returns how many went. Called between messages, also when
        the queue never goes quiet (a consumer that is never idle must forget too)."""
        if time.monotonic() < self._forget_due:
            return 0
        batch = FORGET_BATCH
        try:
            forgotten = forget_processed(self.engine, self.component.name, before=utcnow() - self.dedup_window,
                                         limit=batch)
        except Exception:
            # Messages go on meanwhile; the next look tries again.
            log.exception("%s: forgetting processed events past the dedup window failed", self.component.name)
            forgotten = 0
        if forgotten:
            log.info("%s: %d processed event(s) older than %s forgotten", self.component.name, forgotten,
                     self.dedup_window)
        self._forget_due = time.monotonic() + (FORGET_AGAIN_S if forgotten >= batch else FORGET_EVERY_S)
        return forgotten

    # -- the loop ----------------------------------------------------------------------

    def run(self, stop: threading.Event, ready: threading.Event | None = None) -> None:
        """Consume until `stop` is set; reconnects with backoff when the broker goes away.

        The message (or batch) being handled when SIGTERM sets `stop` is finished and
        acked first.
        """
        backoff = 0.5
        self._stopping = stop
        while not stop.is_set():
            try:
                with bus.connect(self.broker_url) as connection:
                    connection.connect()
                    self._ack_multiple = bus.is_amqp(connection)
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
                                # Waiting long only with nothing in hand; with messages in
                                # hand, only for ones already arriving.
                                connection.drain_events(timeout=GATHER_S if self._pending else IDLE_WAIT_S)
                            except TimeoutError:
                                self.flush()
                            else:
                                if len(self._pending) >= self.batch_size:
                                    self.flush()
                            # Between messages (also when the queue never goes quiet), never
                            # with some in hand.
                            if not self._pending:
                                self.forget_when_due()
                        self.flush()
            except Exception as error:  # noqa: BLE001 - reconnect on any broker failure
                # Unacked messages of a lost connection are redelivered by the broker.
                self._pending = []
                log.warning("%s: broker connection lost (%s); retrying in %.1fs", self.component.name, error, backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
            finally:
                self._dead_letter_producer = None


def forget_member_dead_letters(conn: DbConnection, components: Sequence[str], tenant_id: str, member_id: str) -> int:
    """Delete the parked messages of `components` about one member of one tenant (their
    erasure, shared.erasure); returns how many. A body that is not an envelope names no
    tenant or member for sure and is kept; its personal values, if any, are sealed under
    the member's destroyed key anyway."""
    candidates = conn.execute(
        select(dead_letters.c.id, dead_letters.c.body).where(
            dead_letters.c.component.in_(list(components)),
            dead_letters.c.body.contains(member_id, autoescape=True),
        )
    ).all()
    doomed = []
    for row in candidates:
        try:
            raw = json.loads(row.body)
        except ValueError:
            continue
        data = raw.get("data") if isinstance(raw, dict) else None
        if isinstance(data, dict) and raw.get("tenant_id") == tenant_id and data.get("member_id") == member_id:
            doomed.append(row.id)
    if doomed:
        conn.execute(delete(dead_letters).where(dead_letters.c.id.in_(doomed)))
    return len(doomed)


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
