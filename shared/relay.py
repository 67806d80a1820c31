"""The relay: tails the event store and publishes every event to the broker.

No dual writes: a request only appends to the store; this loop is the one path from the
store to RabbitMQ. It advances its checkpoint only after the broker confirmed the batch,
so a crash or an outage between publish and checkpoint republishes (consumers are
idempotent) and never loses. While the broker is down it retries with backoff and the
store keeps accepting appends; when it returns, the backlog goes out in the feed's order
(commit order, see shared.eventstore), hence in version order within every stream.

The active copy keeps its checkpoint (a cursor in the feed) in memory and persists it after
each confirmed batch with one UPDATE, so the hot loop costs one read of the log per batch;
it reads the stored one back once per LAG_INTERVAL_S (an operator may have moved it). The
lag gauge needs the head of the log: that is read at most once per LAG_INTERVAL_S too.

Urgent appends wake it (PostgreSQL, the active copy): an event someone waits on
(``member.sos``: its coach, a partner's webhook within a second) notifies `URGENT_CHANNEL`
as its transaction commits (migration latency_0001); the relay LISTENs on its leadership
connection and reads at once instead of at its next poll. If the event is not readable yet
(an older transaction anywhere on the server still holds the feed back, see
shared.eventstore) it looks again after `RETRY_AFTER_WAKE_S`, doubling up to
`RETRY_AFTER_WAKE_MAX_S`, for `RETRY_AFTER_WAKE_FOR_S` (or a poll interval, if longer),
also when other events went out meanwhile: an SOS held back for less than that goes out
within a second of the hold's end, however long the poll interval.
Other events are published within the poll interval, as before: a NOTIFY on every append
would serialise the appends' commits (PostgreSQL takes one lock for it). Waiting costs no
more than the plain sleep it replaces (a select() on the connection's socket), so the poll
interval can be raised to save idle CPU without making an SOS wait.
"""

from __future__ import annotations

import contextlib
import logging
import select
import threading
import time
from collections.abc import Iterable

from kombu import Connection
from sqlalchemy import Connection as DbConnection
from sqlalchemy import Engine, text

from shared import bus, config, metrics
from shared.db import read
from shared.eventstore import Checkpoint, LogCursor, head_position, read_feed, wait_settled

log = logging.getLogger(__name__)

RELAY_LOCK_CLASS = 0x72656C  # "rel": advisory lock class of relay leadership
STANDBY_POLL_S = 2.0
LAG_INTERVAL_S = 1.0
#: Where an urgent append notifies ``<schema>:<category>`` (migration latency_0001).
URGENT_CHANNEL = "nocontact_urgent"
#: How soon the relay looks again when an urgent append woke it and nothing was readable yet,
#: and the longest it then goes between looks (doubling from the first to the second: a
#: hold of a transaction's length is short, a long one costs a query a second).
RETRY_AFTER_WAKE_S = 0.002
RETRY_AFTER_WAKE_MAX_S = 1.0
#: How long after a wake-up it keeps looking so (the event that woke it is not known).
RETRY_AFTER_WAKE_FOR_S = 60.0
#: The longest a waiting relay goes without looking at its stop event.
STOP_CHECK_S = 0.25


def next_look_after_wake(last_s: float, since_wake_s: float, poll_interval_s: float) -> float | None:
    """After an urgent append woke the relay, while the event that woke it may still be held
    back: how long until it looks again (double the last wait, at most RETRY_AFTER_WAKE_MAX_S
    or a poll interval), or None once RETRY_AFTER_WAKE_FOR_S (or a poll interval, if longer)
    has gone by since the wake-up (the plain poll takes over)."""
    if since_wake_s >= max(poll_interval_s, RETRY_AFTER_WAKE_FOR_S):
        return None
    return min(last_s * 2, RETRY_AFTER_WAKE_MAX_S, poll_interval_s)


def try_leadership(engine: Engine, name: str) -> DbConnection | None:
    """A connection holding the PostgreSQL session lock that makes a copy of relay `name`
    the active one (until it is unlocked or closed), or None while another session holds it.
    The relay takes it to publish; `nocontact relay reset-checkpoint` to move the checkpoint
    while no copy publishes."""
    conn = engine.connect()
    try:
        held = conn.execute(
            text("SELECT pg_try_advisory_lock(:class, hashtext(current_schema() || :name))"),
            {"class": RELAY_LOCK_CLASS, "name": name},
        ).scalar()
        conn.commit()
    except Exception:
        conn.close()
        raise
    if not held:
        conn.close()
        return None
    return conn


def release_leadership(conn: DbConnection) -> None:
    """Give up the lock `try_leadership` took, and the connection."""
    # Closing a pooled connection only returns it to the pool, session and lock intact:
    # unlock explicitly, and discard a connection that cannot say so.
    try:
        conn.execute(text("SELECT pg_advisory_unlock_all()"))
        conn.commit()
        conn.close()
    except Exception:  # noqa: BLE001 - a dead session has already freed the lock
        conn.invalidate()


class Relay:
    """Publishes the log (optionally only some stream categories) after a named checkpoint."""

    def __init__(
        self,
        engine: Engine,
        *,
        name: str = "relay",
        categories: Iterable[str] | None = None,
        batch_size: int = 500,
        broker_url: str | None = None,
        poll_interval_s: float | None = None,
    ) -> None:
        self.engine = engine
        self.checkpoint = Checkpoint(name)
        self.name = name
        self.categories = list(categories) if categories is not None else None
        self.batch_size = batch_size
        self.broker_url = broker_url
        self.poll_interval_s = (
            config.relay_poll_interval_s() if poll_interval_s is None else poll_interval_s
        )
        self._connection: Connection | None = None
        self._publisher: bus.ConfirmingPublisher | None = None
        self._leadership: DbConnection | None = None
        # Where this copy has read to; None: read it from the store first.
        self._cursor: LogCursor | None = None
        # The checkpoint as this copy last read or stored it. `_cursor` is ahead of it after
        # moving past other categories' events only, stored at most once a second (`run_once`).
        self._stored: LogCursor | None = None
        self._lag_due = 0.0
        # The schema whose urgent appends wake this copy (None: not listening).
        self._schema: str | None = None

    def _lead(self) -> bool:
        """Whether this copy is the active relay of its name.

        Two copies of one relay would publish every event twice (harmless, consumers are
        idempotent, but wasteful), so on PostgreSQL one copy holds a session advisory lock
        on a connection of its own and the others wait as hot standbys; when the active
        copy dies, its connection closes, the lock is freed and a standby takes over.
        SQLite is one machine's embedded store: one relay per name by construction.
        """
        if self.engine.dialect.name != "postgresql":
            return True
        if self._leadership is not None:
            return True
        conn = try_leadership(self.engine, self.name)
        if conn is None:
            return False
        # No transaction around its statements: LISTEN takes effect at once, and
        # notifications are delivered while it waits.
        self._leadership = conn.execution_options(isolation_level="AUTOCOMMIT")
        # Another copy may have moved the checkpoint while this one stood by.
        self._cursor = None
        self._schema = conn.exec_driver_sql("SELECT current_schema()").scalar_one()
        conn.exec_driver_sql(f"LISTEN {URGENT_CHANNEL}")
        log.info("relay %s is active", self.name)
        return True

    def _resign(self) -> None:
        self._cursor = None
        self._schema = None
        if self._leadership is not None:
            # The connection goes back to the pool: it must not keep collecting notifications.
            with contextlib.suppress(Exception):
                self._leadership.exec_driver_sql(f"UNLISTEN {URGENT_CHANNEL}")
            release_leadership(self._leadership)
            self._leadership = None

    def _wait(self, stop: threading.Event, timeout_s: float) -> bool:
        """Wait `timeout_s`, or less if an urgent append of this relay's categories commits
        (True then). Without a listening connection (SQLite), just waits."""
        if self._leadership is None or self._schema is None:
            stop.wait(timeout_s)
            return False
        listener = self._leadership.connection.driver_connection
        deadline = time.monotonic() + timeout_s
        while not stop.is_set():
            # Those psycopg received already, and those waiting on the socket now.
            for notify in list(listener.notifies(timeout=0)):
                schema, _, category = notify.payload.rpartition(":")
                if schema == self._schema and (self.categories is None or category in self.categories):
                    return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            # On the socket itself (psycopg's own timed wait costs several times the CPU), in
            # slices short enough to see `stop` soon with a long poll interval.
            select.select([listener.fileno()], [], [], min(remaining, STOP_CHECK_S))
        return False

    def _ensure_publisher(self) -> bus.ConfirmingPublisher:
        if self._publisher is None:
            connection = bus.connect(self.broker_url)
            connection.connect()
            bus.declare_topology(connection)
            self._connection = connection
            self._publisher = bus.ConfirmingPublisher(connection)
        return self._publisher

    def _reset(self) -> None:
        if self._publisher is not None:
            self._publisher.close()
        if self._connection is not None:
            try:
                self._connection.release()
            except Exception:  # noqa: BLE001 - the connection is already broken
                pass
        self._publisher = None
        self._connection = None

    def run_once(self) -> int:
        """Publish one batch after the checkpoint; returns how many events went out."""
        now = time.monotonic()
        want_lag = now >= self._lag_due
        last = 0
        if want_lag:
            self._save()  # before reading the stored value back, below
        with read(self.engine) as conn:
            if self._cursor is None or want_lag:
                # Read back once a second as well: an operator may move the checkpoint (reset
                # it to republish); the stored value is never behind ours, _persist commits first.
                self._cursor = self._stored = self.checkpoint.cursor(conn)
            after = self._cursor
            batch, cursor = read_feed(conn, after, limit=self.batch_size, categories=self.categories)
            if want_lag:
                last = head_position(conn)
                self._lag_due = now + LAG_INTERVAL_S
        if batch:
            self._ensure_publisher().publish(batch)
        if cursor != after:
            self._cursor = cursor
            # A move past other categories' events only is stored with the next publish or
            # within a second (`_save`). Storing each move was a write transaction per poll
            # for every relay whose categories were quiet (a check-in moves the commitment
            # and notification relays' feeds too); if this copy stops before storing it, the
            # next one skips those events again, publishing nothing.
            if batch:
                self._persist(cursor)
        if batch:
            metrics.RELAY_PUBLISHED.labels(self.name).inc(len(batch))
        if want_lag:
            metrics.RELAY_LAG.labels(self.name).set(max(last - cursor.position, 0))
        return len(batch)

    def _save(self) -> None:
        """Store the cursor if it moved on past the stored checkpoint (past other categories' events)."""
        if self._cursor is not None and self._cursor != self._stored:
            self._persist(self._cursor)

    def _persist(self, cursor: LogCursor) -> None:
        """Store the checkpoint once the broker confirmed everything up to `cursor`."""
        try:
            with self.engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    # No wait for the WAL flush: a checkpoint lost in a server crash only
                    # republishes a few events, and consumers are idempotent.
                    conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
                self.checkpoint.set(conn, cursor)
        except BaseException:
            # Unknown whether it was stored: read it back before relying on it again.
            self._cursor = None
            raise
        self._stored = cursor

    def run(self, stop: threading.Event) -> None:
        """Relay until `stop` is set, backing off while the broker or database is away."""
        backoff = 0.5
        # Set after an urgent append woke the relay (at woken_at): how soon to look again if it
        # found nothing.
        retry_s: float | None = None
        woken_at = 0.0
        while not stop.is_set():
            try:
                if not self._lead():
                    stop.wait(STANDBY_POLL_S)
                    continue
                published = self.run_once()
                backoff = 0.5
                if published >= self.batch_size:
                    continue
                if retry_s is not None:
                    # Woken, and the event may not be readable yet (whatever else went out):
                    # look again soon, then less often; another urgent append starts afresh.
                    if self._wait(stop, retry_s):
                        retry_s, woken_at = RETRY_AFTER_WAKE_S, time.monotonic()
                    else:
                        retry_s = next_look_after_wake(retry_s, time.monotonic() - woken_at, self.poll_interval_s)
                    continue
                retry_s = RETRY_AFTER_WAKE_S if self._wait(stop, self.poll_interval_s) else None
                woken_at = time.monotonic()
            except Exception as error:  # noqa: BLE001 - any failure: reconnect and retry
                log.warning("relay %s: %s; retrying in %.1fs", self.name, error, backoff)
                metrics.RELAY_ERRORS.labels(self.name).inc()
                self._reset()
                self._resign()
                retry_s = None
                stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
        try:
            self._save()
        except Exception as error:  # noqa: BLE001 - stopping anyway; the next copy skips them again
            log.warning("relay %s: checkpoint not stored on stop: %s", self.name, error)
        self._reset()
        self._resign()

    def drain(self, timeout_s: float = 30.0) -> None:
        """Publish from the stored checkpoint until every event committed before this call
        has gone out (tests and the CLI). Those events are first waited for to settle (see
        shared.eventstore): until then a batch can come back empty."""
        wait_settled(self.engine, timeout_s)
        self._cursor = None
        deadline = time.monotonic() + timeout_s
        while self.run_once():
            if time.monotonic() > deadline:
                raise TimeoutError("relay did not catch up in time")
        self._save()
