"""The command pipeline: the one way every service carries out a command.

A command is one transaction (DESIGN, "The write path"):

1. load what the decision needs (a state row, a stream: the command's own reads, through
   ``uow.conn``);
2. decide in pure domain code, which returns events or raises a domain error
   (`shared.errors`);
3. record the events with the version the decision was made on (`UnitOfWork.record`);
4. on commit, the service's inline projections are written from the events as they will
   be recorded (`PendingEvent`: everything but the position), then the events are
   appended, each stream conditioned on its expected version. The append comes last so
   whatever the store holds while appending is held for the shortest time.

A concurrent writer that moved a stream first makes the append (or a read-model row the
projection inserts, such as the same day's check-in) fail; the attempt is rolled back
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
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError

from shared.clock import Clock, utcnow
from shared.errors import Busy, PreconditionFailed
from shared.events import Metadata, NewEvent, PendingEvent, RecordedEvent
from shared.eventstore import ConcurrencyError, append

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Writes a service's inline read models from the events a command is about to append.
Projector = Callable[[Connection, Sequence[PendingEvent]], None]


def no_projections(_conn: Connection, _events: Sequence[PendingEvent]) -> None:
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
    _pending: list[PendingEvent] = field(default_factory=list)
    _expected: dict[str, int | None] = field(default_factory=dict)
    recorded: list[RecordedEvent] = field(default_factory=list)

    def record(
        self, stream_id: str, events: Sequence[NewEvent], *, expected_version: int | None
    ) -> list[PendingEvent]:
        """Decide to append `events` to `stream_id`, whose version the decision saw was
        `expected_version` (0: a new stream; None: append whatever it is, for streams
        where order is all that matters). Recording more on the same stream continues
        from the events recorded before. Returns the events as they will be recorded."""
        if not events:
            return []
        before = [e for e in self._pending if e.stream_id == stream_id]
        if before:
            version = before[-1].stream_version
        else:
            self._expected[stream_id] = expected_version
            version = expected_version or 0
        metadata = self.context.metadata()
        pending = [
            PendingEvent(
                id=event.id,
                type=event.type,
                schema_version=event.schema_version,
                stream_id=stream_id,
                stream_version=version + offset,
                data=event.data,
                tenant_id=metadata.tenant_id,
                correlation_id=metadata.correlation_id,
                causation_id=metadata.causation_id,
                actor=metadata.actor,
                occurred_at=event.occurred_at or self.now,
                recorded_at=self.now,
            )
            for offset, event in enumerate(events, start=1)
        ]
        self._pending.extend(pending)
        return pending

    @property
    def pending(self) -> list[PendingEvent]:
        """Everything recorded so far in this attempt, in order."""
        return list(self._pending)

    def commit(self) -> list[RecordedEvent]:
        """Project, then append every stream; the caller's transaction commits both."""
        if not self._pending:
            return []
        try:
            self.projector(self.conn, self._pending)
        except IntegrityError as error:
            # A concurrent command inserted the same read-model row (the same day's
            # check-in, a first state row) and committed first: the race the append would
            # have reported, reported the same way.
            stream = self._pending[0].stream_id
            raise ConcurrencyError(stream, self._expected.get(stream) or 0, -1) from error
        metadata = self.context.metadata()
        for stream_id, expected in self._expected.items():
            events = [e for e in self._pending if e.stream_id == stream_id]
            self.recorded.extend(
                append(
                    self.conn,
                    stream_id,
                    [NewEvent(e.type, e.data, e.schema_version, e.id, e.occurred_at) for e in events],
                    expected_version=expected,
                    metadata=metadata,
                    now=self.now,
                )
            )
        self._pending.clear()
        self._expected.clear()
        return self.recorded


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
