"""Retry schedule parsing, jitter and Retry-After handling."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.notification.domain.schedule import (
    DEFAULT_SCHEDULE,
    DEFAULT_SCHEDULE_TEXT,
    RETRY_AFTER_CAP,
    ScheduleError,
    next_attempt_at,
    parse_retry_after,
    parse_schedule,
)

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


class Fixed:
    """A random source that always returns the same value."""

    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


def test_default_text_parses_to_default_schedule() -> None:
    assert parse_schedule(DEFAULT_SCHEDULE_TEXT) == DEFAULT_SCHEDULE


def test_spaces_around_items_are_tolerated() -> None:
    assert parse_schedule(" 0, 5 ,60 ") == (0, 5, 60)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "0,,5",
        "0,5,",
        "a,b",
        "1.5",
        "-5",
        "+5",
        "5s",
        "0x10",
        "١٢",
        "99999999",
    ],
)
def test_garbage_is_refused_with_a_clear_error(text: str) -> None:
    with pytest.raises(ScheduleError, match="retry schedule"):
        parse_schedule(text)


def test_too_many_entries_refused() -> None:
    with pytest.raises(ScheduleError, match="entries"):
        parse_schedule(",".join(["1"] * 101))


def test_first_attempt_is_immediate() -> None:
    assert next_attempt_at(1, NOW, DEFAULT_SCHEDULE, Fixed(0.999)) == NOW


def test_exhausted_schedule_gives_none() -> None:
    rng = random.Random(1)
    assert next_attempt_at(len(DEFAULT_SCHEDULE), NOW, DEFAULT_SCHEDULE, rng) is not None
    assert next_attempt_at(len(DEFAULT_SCHEDULE) + 1, NOW, DEFAULT_SCHEDULE, rng) is None


@pytest.mark.parametrize(("value", "expected"), [(0.0, 270.0), (0.5, 300.0), (0.99999, 330.0)])
def test_jitter_bounds(value: float, expected: float) -> None:
    when = next_attempt_at(3, NOW, DEFAULT_SCHEDULE, Fixed(value))
    assert when is not None
    assert (when - NOW).total_seconds() == pytest.approx(expected, abs=0.01)


@given(
    schedule=st.lists(st.integers(0, 604800), min_size=1, max_size=10),
    seed=st.integers(),
    data=st.data(),
)
def test_jitter_is_within_ten_percent_and_never_negative(
    schedule: list[int], seed: int, data: st.DataObject
) -> None:
    attempt = data.draw(st.integers(1, len(schedule)))
    when = next_attempt_at(attempt, NOW, schedule, random.Random(seed))
    assert when is not None
    delay = (when - NOW).total_seconds()
    base = schedule[attempt - 1]
    assert 0 <= delay
    assert base * 0.9 - 1e-6 <= delay <= base * 1.1 + 1e-6


def test_retry_after_later_than_schedule_is_honoured() -> None:
    when = next_attempt_at(2, NOW, DEFAULT_SCHEDULE, Fixed(0.5), retry_after_s=120)
    assert when == NOW + timedelta(seconds=120)


def test_retry_after_never_makes_an_attempt_earlier() -> None:
    when = next_attempt_at(4, NOW, DEFAULT_SCHEDULE, Fixed(0.5), retry_after_s=1)
    assert when == NOW + timedelta(seconds=1800)


def test_retry_after_is_capped_beyond_the_schedule() -> None:
    when = next_attempt_at(2, NOW, DEFAULT_SCHEDULE, Fixed(0.5), retry_after_s=10**9)
    assert when == NOW + timedelta(seconds=5) + RETRY_AFTER_CAP


def test_retry_after_does_not_extend_an_exhausted_schedule() -> None:
    assert next_attempt_at(9, NOW, DEFAULT_SCHEDULE, Fixed(0.5), retry_after_s=60) is None


@pytest.mark.parametrize("attempt", [0, -1])
def test_attempt_numbers_start_at_one(attempt: int) -> None:
    with pytest.raises(ValueError, match="attempt_number"):
        next_attempt_at(attempt, NOW, DEFAULT_SCHEDULE, Fixed(0.5))


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_attempt_at(1, datetime(2024, 1, 1), DEFAULT_SCHEDULE, Fixed(0.5))


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("Wed, 01 May 2024 12:05:00 GMT", 300.0),
        ("Wed, 01 May 2024 11:00:00 GMT", 0.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
        ("1.5", None),
    ],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header, NOW) == expected
