"""The notification inbox: bus events -> credentials, coach assignments, webhooks, feed.

Everything an event causes happens in the consumer's transaction, together with the
processed_events row (shared.consumer): a redelivered event changes nothing, and a crash
leaves either all of it or none.

Batches (:class:`Inbox`): the messages already prefetched from the broker are applied in
ONE transaction (a commit, i.e. a WAL flush, per message was most of the inbox's cost),
each still recorded in processed_events under its event id, and acked only after that
commit. If anything in a batch fails, the batch is rolled back and its messages are
applied one by one with the base consumer's retries and dead-lettering, so one poison
message costs the batch a second try, never its neighbours' effects. After a commit that
queued deliveries, the delivery worker of this process is woken (``on_enqueued``).
"""

from __future__ import annotations

import logging
import random
import threading
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from kombu import Message, Producer
from sqlalchemy import Connection, Engine, insert, select, tuple_, update

from services.notification import config
from services.notification.delivery import queue
from services.notification.domain import messages as msgs
from services.notification.tables import CREDENTIALS, coach_assignments, coaches, feed_items
from shared import bus, metrics
from shared.auth import credentials_projection
from shared.consumer import Consumer, Handler
from shared.envelope import MalformedEnvelope, decode, versions
from shared.events import RecordedEvent
from shared.logging import bind_context
from shared.projection import Projection
from shared.schema import processed_events
from shared.topology import CREDENTIAL_EVENTS, NOTIFICATION_INBOX

log = logging.getLogger(__name__)

CREDENTIALS_PROJECTION = credentials_projection("notification", CREDENTIALS)

# What this reader understands (newer schema versions are parked, not guessed at).
for _type in (*msgs.WEBHOOK_EVENT_TYPES, "coach.unassigned", *CREDENTIAL_EVENTS):
    versions.register(_type, 1)


def _fold_assignment(conn: Connection, event: RecordedEvent) -> None:
    data = event.data
    tenant, commitment_id = event.tenant_id, str(data["commitment_id"])
    key = (coach_assignments.c.tenant_id == tenant) & (coach_assignments.c.commitment_id == commitment_id)
    if event.type == "coach.assigned":
        coach_id = str(data["coach_id"])
        if conn.execute(select(coach_assignments.c.coach_id).where(key)).first() is None:
            conn.execute(
                insert(coach_assignments).values(
                    tenant_id=tenant,
                    commitment_id=commitment_id,
                    member_id=str(data["member_id"]),
                    coach_id=coach_id,
                )
            )
        else:
            conn.execute(update(coach_assignments).where(key).values(coach_id=coach_id))
        known = (coaches.c.tenant_id == tenant) & (coaches.c.coach_id == coach_id)
        if conn.execute(select(coaches.c.coach_id).where(known)).first() is None:
            conn.execute(insert(coaches).values(tenant_id=tenant, coach_id=coach_id))
    else:
        # Only the coach named: unassigning an older coach never detaches the current one.
        conn.execute(
            update(coach_assignments)
            .where(key, coach_assignments.c.coach_id == str(data["coach_id"]))
            .values(coach_id=None)
        )


class _TransactionCache:
    """Reads the inbox repeats for every event, kept for ONE transaction.

    A batch of a hundred events of one tenant asked for the same endpoints and the same
    coach assignments a hundred times. The cache belongs to the connection it was filled
    on: a new transaction (a new Connection object) starts empty, so nothing read in one
    transaction is trusted in another. Assignments the inbox itself changes are dropped
    from it at once; endpoints are only changed by the API, and the batch uses them as of
    its first read (as if its events had been applied a few milliseconds earlier).
    """

    def __init__(self) -> None:
        self.conn: Connection | None = None
        self.endpoints: dict[str, Sequence[Any]] = {}
        self.assignments: dict[tuple[str, str], Any] = {}
        #: Set by a batch (which flushes it before committing); None: write at once.
        self.writes: queue.Writes | None = None

    def on(self, conn: Connection) -> _TransactionCache:
        if conn is not self.conn:
            # Holding the last Connection keeps its identity from being reused.
            self.conn = conn
            self.endpoints.clear()
            self.assignments.clear()
            self.writes = None
        return self

    def tenant_endpoints(self, conn: Connection, tenant_id: str) -> Sequence[Any]:
        rows = self.endpoints.get(tenant_id)
        if rows is None:
            rows = self.endpoints[tenant_id] = queue.endpoints_of(conn, tenant_id)
        return rows

    def prime_assignments(self, conn: Connection, events: Sequence[RecordedEvent]) -> None:
        """Read, in one query, the assignments the feed will look up for these events."""
        self.on(conn)
        wanted = {
            (str(e.tenant_id), str(e.data["commitment_id"]))
            for e in events
            if e.tenant_id is not None
            and e.data.get("commitment_id") is not None
            and msgs.feed_kind(e.type, e.data) is not None
        }
        wanted -= self.assignments.keys()
        if not wanted:
            return
        for key in wanted:
            self.assignments[key] = None  # unassigned unless found below
        found = conn.execute(
            select(
                coach_assignments.c.tenant_id,
                coach_assignments.c.commitment_id,
                coach_assignments.c.coach_id,
                coach_assignments.c.member_id,
            ).where(tuple_(coach_assignments.c.tenant_id, coach_assignments.c.commitment_id).in_(sorted(wanted)))
        )
        for row in found:
            self.assignments[(row.tenant_id, row.commitment_id)] = row

    def assignment(self, conn: Connection, tenant_id: str, commitment_id: str) -> Any:
        key = (tenant_id, commitment_id)
        if key not in self.assignments:
            self.assignments[key] = conn.execute(
                select(coach_assignments.c.coach_id, coach_assignments.c.member_id).where(
                    coach_assignments.c.tenant_id == tenant_id,
                    coach_assignments.c.commitment_id == commitment_id,
                )
            ).first()
        return self.assignments[key]


def _add_feed_item(conn: Connection, event: RecordedEvent, kind: str, cache: _TransactionCache) -> None:
    commitment_id = event.data.get("commitment_id")
    if commitment_id is None:
        return
    assignment = cache.assignment(conn, str(event.tenant_id), str(commitment_id))
    if assignment is None or assignment.coach_id is None:
        return
    conn.execute(
        insert(feed_items).values(
            tenant_id=event.tenant_id,
            coach_id=assignment.coach_id,
            event_id=str(event.id),
            position=event.position,
            kind=kind,
            event_type=event.type,
            commitment_id=str(commitment_id),
            member_id=str(event.data.get("member_id") or assignment.member_id),
            data={**msgs.public_data(event.data), "sequence": event.stream_version},
            occurred_at=event.occurred_at,
        )
    )


def make_handler(
    *,
    rng: random.Random | None = None,
    on_enqueue: Callable[[int], None] | None = None,
    cache: _TransactionCache | None = None,
) -> Handler:
    """The inbox handler; the retry schedule is read (and validated) once, here.

    ``on_enqueue(count)`` is told, inside the transaction, how many deliveries an event
    queued (the caller wakes the delivery worker once the transaction has committed).
    ``cache``: the per-transaction reads, shared with a caller that primes it.
    """
    schedule = config.retry_schedule()
    jitter = rng or random.Random()
    transaction_cache = cache or _TransactionCache()

    def handle(conn: Connection, event: RecordedEvent) -> None:
        if event.type in CREDENTIAL_EVENTS:
            CREDENTIALS_PROJECTION.apply(conn, event)
            return
        if event.tenant_id is None:
            return  # every event below belongs to a tenant; one without is not ours to send
        cache = transaction_cache.on(conn)
        if event.type in ("coach.assigned", "coach.unassigned"):
            _fold_assignment(conn, event)
            cache.assignments.pop((event.tenant_id, str(event.data["commitment_id"])), None)
        queued = queue.enqueue(
            conn,
            event,
            now=datetime.now(UTC),
            schedule=schedule,
            rng=jitter,
            tenant_endpoints=cache.tenant_endpoints,
            writes=cache.writes,
        )
        if queued and on_enqueue is not None:
            on_enqueue(queued)
        kind = msgs.feed_kind(event.type, event.data)
        if kind is not None:
            _add_feed_item(conn, event, kind, cache)

    return handle


#: The most messages applied in one transaction. A backlog is worked off in batches this
#: big; when the inbox keeps up, a batch is what arrived during the previous one. Larger
#: batches would hold their first events back longer before the commit.
MAX_BATCH = 100
#: Unacked messages the broker may send ahead (the base consumer's 50 would cap a batch).
PREFETCH = 200
#: How long to wait for a further message that may be on its way before applying a batch.
#: Only the socket read waits; prefetched messages are already in our buffer.
GATHER_S = 0.002


class Inbox(Consumer):
    """The notification inbox consumer: prefetched messages applied in one transaction."""

    def __init__(
        self,
        engine: Engine,
        *,
        on_enqueued: Callable[[], None] | None = None,
        max_batch: int = MAX_BATCH,
        **kwargs: object,
    ) -> None:
        self._queued = False
        kwargs.setdefault("prefetch", PREFETCH)
        self.cache = _TransactionCache()
        handler = make_handler(on_enqueue=self._note_queued, cache=self.cache)
        super().__init__(engine, NOTIFICATION_INBOX, handler, **kwargs)  # type: ignore[arg-type]
        self.on_enqueued = on_enqueued
        self.max_batch = max(1, min(max_batch, self.prefetch))
        self._pending: list[Message] = []
        # RabbitMQ acks a whole batch with one frame; Kombu's virtual transports ignore
        # ``multiple``, so there each message is acked.
        self._ack_multiple = False

    def _note_queued(self, count: int) -> None:
        self._queued = True

    def _wake_delivery(self) -> None:
        if self._queued and self.on_enqueued is not None:
            self.on_enqueued()
        self._queued = False

    # -- batching ----------------------------------------------------------------------

    def _on_message(self, message: Message) -> None:
        if self._stopping is not None and self._stopping.is_set():
            message.requeue()  # see Consumer._on_message: hand back what we did not start
            return
        self._pending.append(message)

    def flush(self) -> None:
        """Apply the gathered messages (one transaction if all goes well), then ack them."""
        batch, self._pending = self._pending, []
        if not batch:
            return
        events: list[tuple[Message, RecordedEvent]] = []
        for message in batch:
            try:
                event = decode(message.body)
            except MalformedEnvelope:
                event = None
            if event is None or not versions.is_known(event):
                events = []
                break  # parked by the one-by-one path, which says why
            events.append((message, versions.upcast(event)))
        outcomes = self._apply_batch(events) if events else None
        if outcomes is None:
            # Nothing of the batch was committed: each message on its own, as the base
            # consumer does it (retries, dead letters, duplicates found in processed_events).
            for message in batch:
                outcome = self.handle_body(message.body, dict(message.headers or {}))
                self._wake_delivery()
                metrics.CONSUMED.labels(self.component.name, outcome).inc()
                message.ack()
            return
        self._wake_delivery()
        for outcome in outcomes:
            metrics.CONSUMED.labels(self.component.name, outcome).inc()
        if self._ack_multiple:
            # One frame for the batch: every delivery before it on this channel is in the
            # batch (or was already settled), since a batch takes all messages in hand.
            events[-1][0].ack(multiple=True)
        else:
            for message, _event in events:
                message.ack()
        newest = max(event.recorded_at for _, event in events)
        metrics.CONSUMER_LAG.labels(self.component.name).set(max((datetime.now(UTC) - newest).total_seconds(), 0.0))

    def _apply_batch(self, events: list[tuple[Message, RecordedEvent]]) -> list[str] | None:
        """Apply the events in one transaction; their outcomes, or None if it rolled back."""
        name = self.component.name
        outcomes: list[str] = []
        try:
            with self.engine.begin() as conn:
                ids = list({event.id for _, event in events})
                done = set(
                    conn.execute(
                        select(processed_events.c.event_id).where(
                            processed_events.c.component == name, processed_events.c.event_id.in_(ids)
                        )
                    ).scalars()
                )
                fresh: dict[object, RecordedEvent] = {}
                for _, event in events:
                    if event.id not in done and event.id not in fresh:
                        fresh[event.id] = event
                if fresh:
                    # Recorded first, as apply_once does: a concurrent duplicate waits on
                    # these rows, then fails (and is retried, finding them).
                    now = datetime.now(UTC)
                    conn.execute(
                        insert(processed_events),
                        [
                            {
                                "component": name,
                                "event_id": event.id,
                                "stream_id": event.stream_id,
                                "stream_version": event.stream_version,
                                "processed_at": now,
                            }
                            for event in fresh.values()
                        ],
                    )
                batch = list(fresh.values())
                self.cache.prime_assignments(conn, batch)  # binds the cache to this transaction
                writes = self.cache.writes = queue.Writes.prime(conn, batch) if batch else None
                for _, event in events:
                    if fresh.pop(event.id, None) is None:
                        outcomes.append("duplicate")
                        continue
                    with bind_context(
                        component=name,
                        event_id=str(event.id),
                        event_type=event.type,
                        stream_id=event.stream_id,
                        correlation_id=event.correlation_id,
                        causation_id=event.causation_id,
                        tenant_id=event.tenant_id,
                    ):
                        self.handler(conn, event)
                    outcomes.append("applied")
                if writes is not None:
                    writes.flush(conn)
        except Exception as error:  # noqa: BLE001 - retried message by message
            self._queued = False
            self.cache.writes = None  # rows of the rolled-back transaction
            log.warning(
                "%s: batch of %d failed (%s); applying one by one",
                name,
                len(events),
                "".join(traceback.format_exception_only(error)).strip(),
            )
            return None
        return outcomes

    # -- the loop (Consumer.run, gathering prefetched messages between reads) ----------

    def run(self, stop: threading.Event, ready: threading.Event | None = None) -> None:
        """Consume until ``stop`` is set; the batch in hand is applied and acked first."""
        backoff = 0.5
        self._stopping = stop
        while not stop.is_set():
            try:
                with bus.connect(self.broker_url) as connection:
                    connection.connect()
                    self._ack_multiple = bus.is_amqp(connection)
                    bus.declare_topology(connection, [self.component])
                    self._dead_letter_producer = Producer(
                        connection.channel(), exchange=bus.dead_letter_exchange(), auto_declare=False
                    )
                    queues = bus.component_queues(self.component, connection, self.partitions)
                    with connection.Consumer(queues, on_message=self._on_message, prefetch_count=self.prefetch):
                        if ready is not None:
                            ready.set()
                        backoff = 0.5
                        while not stop.is_set():
                            try:
                                # Waiting long only with nothing in hand; with messages in
                                # hand, only for ones already arriving.
                                connection.drain_events(timeout=GATHER_S if self._pending else 0.5)
                            except TimeoutError:
                                self.flush()
                                continue
                            if len(self._pending) >= self.max_batch:
                                self.flush()
                        self.flush()
            except Exception as error:  # noqa: BLE001 - reconnect on any broker failure
                # Unacked messages of a lost connection are redelivered by the broker.
                self._pending = []
                log.warning("%s: broker connection lost (%s); retrying in %.1fs", self.component.name, error, backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
            finally:
                self._dead_letter_producer = None


def inbox(engine: Engine, *, on_enqueued: Callable[[], None] | None = None) -> Inbox:
    return Inbox(engine, on_enqueued=on_enqueued)


def _fold_feed(conn: Connection, event: RecordedEvent, cache: _TransactionCache) -> None:
    """Coach assignments and feed items of one event, as the inbox folds them."""
    if event.tenant_id is None:
        return
    cache = cache.on(conn)
    if event.type in ("coach.assigned", "coach.unassigned"):
        _fold_assignment(conn, event)
        cache.assignments.pop((event.tenant_id, str(event.data["commitment_id"])), None)
    kind = msgs.feed_kind(event.type, event.data)
    if kind is not None:
        _add_feed_item(conn, event, kind, cache)


def feed_projection() -> Projection:
    """The coach feed and the assignments it hangs on, rebuildable from the store.

    The inbox folds the same events from the bus (with the same `_fold_assignment` and
    `_add_feed_item`); deliveries and attempts are not rebuilt: they are the record of what
    was sent, not a view of the log.
    """
    cache = _TransactionCache()
    return Projection(
        name="notification.feed",
        tables=[coach_assignments, coaches, feed_items],
        event_types=tuple(sorted({"coach.assigned", "coach.unassigned", *msgs.WEBHOOK_EVENT_TYPES})),
        apply=lambda conn, event: _fold_feed(conn, event, cache),
    )
