"""The command pipeline: the one way every service carries out a command.

A command is one transaction (DESIGN, "The write path"):

1. load what the decision needs (a state row, a stream: the command's own reads, through
   ``uow.conn``; reads only: see 3);
2. decide in pure domain code, which returns events or raises a domain error
   (`shared.errors`);
3. record the events with the version the decision was made on (`UnitOfWork.record`);
4. on commit, every stream recorded is appended, each conditioned on its expected
   version, as the transaction's FIRST write; then the service's inline projections are
   written from the recorded events, in the same transaction.

Why the append comes first: appends run in parallel (no lock held through commit), and
tailing readers see the log in transaction order (`shared.eventstore`); that order keeps
each stream's versions in order only if a transaction's id is taken by its append, i.e.
nothing was written before it. The store checks this on PostgreSQL.

A concurrent writer that moved a stream first makes the append (or a read-model row the
projection inserts) fail; the attempt is rolled back
whole and the command is decided again on the fresh state, after a jittered pause
(`RetryPolicy`), so concurrent requests never lose an event and never overwrite each
other. A caller that named the version it decided on (If-Match) gets `PreconditionFailed`
instead of a retry: resolving that conflict is its to do. When the retries run out the
command fails with `Busy` (409 with a retry hint at the HTTP edge), never a 500.

Consumers and schedulers that already hold a transaction use `Pipeline.within`: the same
unit of work, their transaction, their own redelivery as the retry.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError

from shared.clock import Clock, utcnow
from shared.errors import Busy, PreconditionFailed
from shared.events import Metadata, NewEvent, RecordedEvent
from shared.eventstore import ConcurrencyError, append_streams

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Writes a service's inline read models from the events a command has just appended.
Projector = Callable[[Connection, Sequence[RecordedEvent]], None]


#: Writes the caller of a command adds to the command's own transaction, after its append and
#: projections, so that they commit exactly when its effect does (the HTTP edge marks the
#: request's Idempotency-Key as carried out: shared.idempotency). Set per request.
after_append: ContextVar[tuple[Callable[[Connection], None], ...]] = ContextVar("after_append", default=())


def no_projections(_conn: Connection, _events: Sequence[RecordedEvent]) -> None:
    """For commands whose events feed no inline read model."""


@dataclass(frozen=True)
class Context:
    """Who issued a command and why: the metadata of every event it appends."""

    tenant_id: str | None
    actor: str
    correlation_id: str | None = None
    causation_id: str | None = None

    def metadata(self) -> Metadata:
        return Metadata(
            tenant_id=self.tenant_id,
            correlation_id=self.correlation_id,
            causation_id=self.causation_id,
            actor=self.actor,
        )

    @classmethod
    def caused_by(cls, event: RecordedEvent, actor: str) -> Context:
        """A command a consumer issues because of `event`: the request's correlation id
        continues, the event becomes the cause."""
        return cls(
            tenant_id=event.tenant_id,
            actor=actor,
            correlation_id=event.correlation_id,
            causation_id=str(event.id),
        )


@dataclass(frozen=True)
class RetryPolicy:
    """How often a command is decided again after losing a race, and how long it waits.

    Full jitter (a uniform pause up to an exponentially growing cap), so a crowd of writers
    on one stream does not collide again in lock step. 25 attempts absorb dozens of
    simultaneous writers on one commitment.
    """

    attempts: int = 25
    base_delay_s: float = 0.002
    max_delay_s: float = 0.05

    def pause(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        cap = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
        return random.uniform(0, cap)


@dataclass
class UnitOfWork:
    """One attempt of one command: its transaction, its instant, and what it decided."""

    conn: Connection
    context: Context
    now: datetime
    projector: Projector = no_projections
    _decided: dict[str, tuple[int | None, list[NewEvent]]] = field(default_factory=dict)
    recorded: list[RecordedEvent] = field(default_factory=list)

    def record(self, stream_id: str, events: Sequence[NewEvent], *, expected_version: int | None) -> None:
        """Decide to append `events` to `stream_id`, whose version the decision saw was
        `expected_version` (0: a new stream; None: whatever it is, for streams where only
        order matters). Recording more on the same stream continues after the events
        recorded before."""
        if not events:
            return
        if stream_id in self._decided:
            self._decided[stream_id][1].extend(events)
        else:
            self._decided[stream_id] = (expected_version, list(events))

    def commit(self) -> list[RecordedEvent]:
        """Append every stream, then project; the caller's transaction commits both.

        The pipeline calls it after the command. A command may call it itself, to write
        after the append what it computed from the recorded events (a snapshot row, a due
        time): the pipeline's own call then finds nothing left and does nothing."""
        if not self._decided:
            return []
        recorded = append_streams(
            self.conn,
            [(stream_id, events, expected) for stream_id, (expected, events) in self._decided.items()],
            metadata=self.context.metadata(),
            now=self.now,
        )
        self._decided.clear()
        try:
            self.projector(self.conn, recorded)
        except IntegrityError as error:
            # A concurrent command inserted the same read-model row and committed first:
            # the race the append would have reported, reported the same way.
            raise ConcurrencyError(recorded[0].stream_id, recorded[0].stream_version - 1, -1) from error
        for write in after_append.get():
            write(self.conn)
        self.recorded.extend(recorded)
        return recorded


@dataclass(frozen=True)
class Pipeline:
    """A service's way of running commands: its inline projections, its clock, the retries."""

    projector: Projector = no_projections
    clock: Clock = utcnow
    retry: RetryPolicy = RetryPolicy()

    def run(
        self,
        engine: Engine,
        context: Context,
        command: Callable[[UnitOfWork], T],
        *,
        if_match: int | None = None,
        now: datetime | None = None,
    ) -> T:
        """Carry out `command` in its own transaction, deciding again after a lost race.

        `if_match`: the version the caller decided on. A lost race is then reported as
        `PreconditionFailed` rather than retried (the command itself compares the version
        it loads, see `shared.errors.require_version`).
        """
        for attempt in range(1, self.retry.attempts + 1):
            try:
                with engine.begin() as conn:
                    uow = UnitOfWork(conn, context, now or self.clock(), self.projector)
                    result = command(uow)
                    uow.commit()
                return result
            except ConcurrencyError as error:
                if if_match is not None:
                    raise PreconditionFailed(error.actual if error.actual >= 0 else None) from error
                if attempt < self.retry.attempts:
                    time.sleep(self.retry.pause(attempt))
        log.warning("command gave up after %d attempts on a contended stream", self.retry.attempts)
        raise Busy()

    def within(
        self, conn: Connection, context: Context, command: Callable[[UnitOfWork], T], *, now: datetime | None = None
    ) -> T:
        """Carry out `command` in the caller's transaction (a consumer's, a scheduler's):
        no retry here, a lost race propagates and the caller's own retry applies."""
        uow = UnitOfWork(conn, context, now or self.clock(), self.projector)
        result = command(uow)
        uow.commit()
        return result
