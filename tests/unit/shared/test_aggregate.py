"""The aggregate scaffolding (shared.aggregate) on two small aggregates of its own."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar

import pytest

from shared.aggregate import Aggregate, EventLike, applies
from shared.events import NewEvent

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


@dataclass(eq=True)
class Counter(Aggregate):
    category: ClassVar[str] = "counter"
    created: ClassVar[str] = "counter.opened"

    count: int = 0

    @applies("counter.opened")
    def _opened(self, event: EventLike) -> None:
        self.id = event.data["counter_id"]

    @applies("counter.incremented")
    def _incremented(self, event: EventLike) -> None:
        self.count += event.data["by"]

    @classmethod
    def open(cls, counter_id: str, now: datetime) -> Counter:
        counter = cls()
        counter._emit("counter.opened", {"counter_id": counter_id}, now)
        return counter

    def increment(self, by: int, now: datetime) -> list[NewEvent]:
        return [self._emit("counter.incremented", {"by": by}, now)]


@dataclass(eq=True)
class Gauge(Aggregate):
    category: ClassVar[str] = "gauge"
    created: ClassVar[str] = "gauge.opened"

    @applies("gauge.opened")
    def _opened(self, event: EventLike) -> None:
        self.id = event.data["gauge_id"]


def test_commands_apply_and_collect_their_events() -> None:
    counter = Counter.open("c-1", NOW)
    [event] = counter.increment(2, NOW)
    assert (event.type, event.data, event.occurred_at) == ("counter.incremented", {"by": 2}, NOW)
    assert counter.count == 2
    assert [e.type for e in counter.pending_events] == ["counter.opened", "counter.incremented"]
    assert (counter.version, counter.expected_version) == (2, 0)
    assert (counter.stream_id, Counter.stream_of("c-9")) == ("counter-c-1", "counter-c-9")


def test_rebuilt_from_events_equals_the_commanded_state() -> None:
    counter = Counter.open("c-1", NOW)
    counter.increment(2, NOW)
    counter.increment(3, NOW)
    copy = Counter.from_events(counter.pending_events)
    assert copy == counter  # pending events are not state
    assert (copy.count, copy.version, copy.expected_version, copy.pending_events) == (5, 3, 3, [])
    copy.increment(1, NOW)
    assert (copy.version, copy.expected_version) == (4, 3)


def test_unknown_event_types_only_advance_the_version() -> None:
    opened = Counter.open("c-1", NOW).pending_events
    copy = Counter.from_events([*opened, NewEvent("counter.painted", {"colour": "red"})])
    assert (copy.count, copy.version) == (0, 2)


def test_a_stream_must_start_with_its_created_event_and_have_it_once() -> None:
    opened = Counter.open("c-1", NOW).pending_events
    with pytest.raises(ValueError, match="needs at least"):
        Counter.from_events([])
    with pytest.raises(ValueError, match=r"first event must be counter\.opened"):
        Counter.from_events([NewEvent("counter.incremented", {"by": 1})])
    with pytest.raises(ValueError, match="only be the first"):
        Counter.from_events([*opened, *opened])


def test_each_aggregate_folds_only_its_own_event_types() -> None:
    assert set(Counter._appliers) == {"counter.opened", "counter.incremented"}
    assert set(Gauge._appliers) == {"gauge.opened"}
    with pytest.raises(ValueError):
        Gauge.from_events(Counter.open("c-1", NOW).pending_events)


def test_a_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="aware"):
        Counter.open("c-1", datetime(2026, 11, 21, 12, 0))
