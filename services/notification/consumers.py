"""The notification inbox: bus events -> credentials, coach assignments, webhooks, feed.

Everything an event causes happens in the consumer's transaction, together with the
processed_events row (shared.consumer): a redelivered event changes nothing, and a crash
leaves either all of it or none. The inbox batches: the messages already prefetched are
applied in one transaction (`InboxHandler.apply_batch`, the consumer base's batch
option), with the reads its events repeat made once and the queue rows written together.
After a commit that queued deliveries, the delivery worker of this process is woken.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, select, tuple_

from services.notification import config, members, projections
from services.notification.delivery import queue
from services.notification.domain import messages as msgs
from services.notification.tables import CREDENTIALS, coach_assignments
from shared import keyring
from shared.auth import credentials_projection
from shared.clock import Clock, utcnow
from shared.consumer import Consumer, event_log_context
from shared.events import RecordedEvent
from shared.topology import CREDENTIAL_EVENTS, NOTIFICATION_INBOX

CREDENTIALS_PROJECTION = credentials_projection("notification", CREDENTIALS)

#: The most messages applied in one transaction. A backlog is worked off in batches this
#: big; when the inbox keeps up, a batch is what arrived during the previous one. Larger
#: batches would hold their first events back longer before the commit.
MAX_BATCH = 100
#: Unacked messages the broker may send ahead (the base consumer's 50 would cap a batch).
PREFETCH = 200


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
        #: (tenant, member) -> whether the member was erased (their key destroyed).
        self.erased: dict[tuple[str, str], bool] = {}
        #: Set by a batch (which flushes it before committing); None: write at once.
        self.writes: queue.Writes | None = None

    def on(self, conn: Connection) -> _TransactionCache:
        if conn is not self.conn:
            # Holding the last Connection keeps its identity from being reused.
            self.conn = conn
            self.endpoints.clear()
            self.assignments.clear()
            self.erased.clear()
            self.writes = None
        return self

    def tenant_endpoints(self, conn: Connection, tenant_id: str) -> Sequence[Any]:
        rows = self.endpoints.get(tenant_id)
        if rows is None:
            rows = self.endpoints[tenant_id] = queue.endpoints_of(conn, tenant_id)
        return rows

    def prime_assignments(self, conn: Connection, events: Sequence[RecordedEvent]) -> None:
        """Read, in one query, the assignments the feed will look up for these events."""
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

    def prime_erased(self, conn: Connection, events: Sequence[RecordedEvent]) -> None:
        """Read, in one query per tenant, which members these events are about were erased."""
        wanted: dict[str, set[str]] = {}
        for event in events:
            member_id = event.data.get("member_id")
            if event.tenant_id is not None and member_id is not None:
                wanted.setdefault(event.tenant_id, set()).add(str(member_id))
        for tenant_id, member_ids in wanted.items():
            erased = keyring.erased_members(conn, tenant_id, member_ids)
            self.erased.update({(tenant_id, member_id): member_id in erased for member_id in member_ids})

    def is_erased(self, conn: Connection, tenant_id: str, member_id: str) -> bool:
        key = (tenant_id, member_id)
        if key not in self.erased:
            self.erased[key] = bool(keyring.erased_members(conn, tenant_id, [member_id]))
        return self.erased[key]

    def assignment(self, conn: Connection, tenant_id: str, commitment_id: str) -> Any:
        key = (tenant_id, commitment_id)
        if key not in self.assignments:
            self.assignments[key] = projections.read_assignment(conn, tenant_id, commitment_id)
        return self.assignments[key]


class InboxHandler:
    """What the inbox does with an event (``handler(conn, event)``), or with a batch of
    them in one transaction (`apply_batch`). The retry schedule is read (and validated)
    once, here.

    ``on_enqueued`` is called once a transaction that queued deliveries has committed
    (`committed`, the consumer's ``on_commit``): the delivery worker of this process then
    looks for due work at once instead of at its next poll.
    """

    def __init__(
        self,
        *,
        rng: random.Random | None = None,
        clock: Clock = utcnow,
        on_enqueued: Callable[[], None] | None = None,
    ) -> None:
        self.schedule = config.retry_schedule()
        self.rng = rng or random.Random()
        self.clock = clock
        self.on_enqueued = on_enqueued
        self.cache = _TransactionCache()
        # Deliveries were queued since the last commit (a rolled-back batch may leave it
        # set: one needless wake-up, never a missed one).
        self._queued = False

    def __call__(self, conn: Connection, event: RecordedEvent) -> None:
        if event.type in CREDENTIAL_EVENTS:
            CREDENTIALS_PROJECTION.apply(conn, event)
            return
        if event.tenant_id is None:
            return  # every event below belongs to a tenant; one without is not ours to send
        cache = self.cache.on(conn)
        member_id = event.data.get("member_id")
        if (member_id is not None and event.type not in members.ERASURE_EVENTS
                and cache.is_erased(conn, event.tenant_id, str(member_id))):
            return  # an erased member's: nothing of it is copied any more (services.notification.members)
        if event.type in projections.ASSIGNMENT_EVENTS:
            projections.fold_assignment(conn, event)
            cache.assignments.pop((event.tenant_id, str(event.data["commitment_id"])), None)
        queued = queue.enqueue(
            conn,
            event,
            now=self.clock(),
            schedule=self.schedule,
            rng=self.rng,
            tenant_endpoints=cache.tenant_endpoints,
            writes=cache.writes,
        )
        self._queued = self._queued or queued > 0
        kind = msgs.feed_kind(event.type, event.data)
        if kind is not None:
            projections.add_feed_item(conn, event, kind, cache.assignment)

    def apply_batch(self, conn: Connection, events: Sequence[RecordedEvent]) -> None:
        """The events in turn, as `__call__` would apply them, with the assignments they
        look up read in one query and the queue rows inserted together at the end."""
        cache = self.cache.on(conn)
        cache.prime_erased(conn, events)
        cache.prime_assignments(conn, events)
        cache.writes = queue.Writes()
        try:
            for event in events:
                with event_log_context(NOTIFICATION_INBOX.name, event):
                    self(conn, event)
            cache.writes.flush(conn)
        finally:
            cache.writes = None

    def committed(self) -> None:
        if self._queued and self.on_enqueued is not None:
            self.on_enqueued()
        self._queued = False


def inbox(engine: Engine, *, on_enqueued: Callable[[], None] | None = None, **options: Any) -> Consumer:
    """The inbox consumer; ``options`` go to the consumer base (attempts, retry delay)."""
    handler = InboxHandler(on_enqueued=on_enqueued)
    return Consumer(
        engine,
        NOTIFICATION_INBOX,
        handler,
        prefetch=PREFETCH,
        batch_size=MAX_BATCH,
        batch_handler=handler.apply_batch,
        on_commit=handler.committed,
        **options,
    )
