"""The scaffolding of an event-sourced aggregate, written once for every aggregate.

An aggregate is the state of one stream, changed only by applying its events. A command
checks the rules, builds `NewEvent`s, applies them to the aggregate and collects them in
``pending_events``; it never stores or publishes them (the command handler records them
through `shared.commands.UnitOfWork`). So the state after the commands and the state
rebuilt from the stored events are the same by construction.

A subclass is a dataclass that names its stream category and its first event type, and
marks one method per event type it folds with ``@applies(EVENT_TYPE)``. Pure: domain
modules import it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Protocol, Self, TypeVar

from shared.events import NewEvent


class EventLike(Protocol):
    """What folding needs of an event: both `NewEvent` and `RecordedEvent` fit."""

    @property
    def type(self) -> str: ...

    @property
    def data(self) -> dict[str, Any]: ...

    @property
    def occurred_at(self) -> datetime | None: ...


def require_aware(now: datetime) -> None:
    """A naive datetime would silently mean "server local time": a programming error, not
    a client's, hence ValueError and not a domain error."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")


F = TypeVar("F", bound=Callable[..., None])


def applies(event_type: str) -> Callable[[F], F]:
    """Mark an aggregate method as the fold of `event_type`."""

    def mark(method: F) -> F:
        method._applies = event_type  # type: ignore[attr-defined]
        return method

    return mark


@dataclass(eq=True)
class Aggregate:
    """State of one stream: ``version`` counts every event applied (so it is the stream
    version after the last one, including events emitted and not yet stored);
    ``expected_version`` is the version the stream had when it was loaded, which is what
    the append must be conditioned on (and what ``If-Match`` is compared to).
    ``pending_events`` is left out of equality: two aggregates are equal when their state
    is, however they were obtained."""

    #: The stream category: a stream is ``<category>-<id>``.
    category: ClassVar[str]
    #: The event every stream of this aggregate starts with, and only that one.
    created: ClassVar[str]
    _appliers: ClassVar[dict[str, Callable[[Any, EventLike], None]]] = {}

    id: str = ""
    version: int = 0
    pending_events: list[NewEvent] = field(default_factory=list, compare=False, repr=False)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._appliers = {
            method._applies: method
            for klass in reversed(cls.__mro__)
            for method in vars(klass).values()
            if hasattr(method, "_applies")
        }

    @classmethod
    def from_events(cls, events: Iterable[EventLike]) -> Self:
        """Rebuild from the stream, oldest first. ``ValueError`` when the stream is empty or
        does not start with the created event: corrupt data, not a client's mistake."""
        aggregate = cls()
        for event in events:
            aggregate.apply(event)
        if aggregate.version == 0:
            raise ValueError(f"a {cls.__name__} needs at least its {cls.created} event")
        return aggregate

    @classmethod
    def stream_of(cls, aggregate_id: str) -> str:
        """The event-store stream of the aggregate with this id."""
        return f"{cls.category}-{aggregate_id}"

    @property
    def stream_id(self) -> str:
        return self.stream_of(self.id)

    @property
    def expected_version(self) -> int:
        return self.version - len(self.pending_events)

    def apply(self, event: EventLike) -> None:
        """Fold one event into the state; the only place state changes.

        Every event counts towards ``version`` so it stays equal to the stream version,
        but types this code does not know (written by a newer release) change nothing.
        """
        if self.version == 0 and event.type != self.created:
            raise ValueError(f"first event must be {self.created}, got {event.type}")
        if self.version > 0 and event.type == self.created:
            raise ValueError(f"{self.created} may only be the first event")
        applier = self._appliers.get(event.type)
        if applier is not None:
            applier(self, event)
        self.version += 1

    def _emit(self, event_type: str, data: dict[str, Any], now: datetime) -> NewEvent:
        """Apply a new event and keep it for the append."""
        require_aware(now)
        event = NewEvent(type=event_type, data=data, occurred_at=now)
        self.apply(event)
        self.pending_events.append(event)
        return event
