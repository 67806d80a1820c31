"""Retry schedule of webhook deliveries.

The schedule is a list of delays in seconds *between* attempts: entry ``i`` is
the wait before attempt ``i + 1`` (the first entry is measured from the moment
the message is queued and is normally 0, i.e. deliver at once). It comes from
``NOCONTACT_WEBHOOK_RETRY_SCHEDULE``, so parsing is strict: a typo must stop the
service at start-up rather than silently retry forever or never.

Jitter spreads retries so that an endpoint coming back after an outage is not
hit by every queued message in the same second. ``Retry-After`` from a 429/503
is honoured within limits: it can only push an attempt later than the schedule
(a receiver cannot make us hammer it) and at most :data:`RETRY_AFTER_CAP`
beyond it (a receiver cannot park messages for days).

Pure: ``now`` and the random source are parameters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Protocol

DEFAULT_SCHEDULE_TEXT = "0,5,300,1800,7200,18000,36000,36000"
DEFAULT_SCHEDULE: tuple[int, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
#: No single wait may exceed a week: a bigger number is almost surely a typo.
MAX_DELAY_S = 7 * 24 * 3600
MAX_ATTEMPTS = 100
#: Jitter as a fraction of the delay (+-10 %).
JITTER_FRACTION = 0.10
#: How much later than the schedule a ``Retry-After`` may push an attempt.
RETRY_AFTER_CAP = timedelta(hours=1)


class ScheduleError(ValueError):
    """The retry schedule setting is malformed."""


class RandomSource(Protocol):
    """What the jitter needs from a random generator (``random.Random`` fits)."""

    def random(self) -> float:
        """Return a float in [0.0, 1.0)."""
        ...


def parse_schedule(text: str) -> tuple[int, ...]:
    """Parse ``"0,5,300"`` into ``(0, 5, 300)``.

    Refuses empty input, empty items, signs, decimals, non-digits, values above
    :data:`MAX_DELAY_S` and more than :data:`MAX_ATTEMPTS` entries, naming the
    offending item so an operator can fix the variable at once.
    """
    if not isinstance(text, str) or not text.strip():
        raise ScheduleError("retry schedule is empty: expected comma-separated seconds, e.g. '0,5,300'")
    items = text.split(",")
    if len(items) > MAX_ATTEMPTS:
        raise ScheduleError(f"retry schedule has {len(items)} entries, at most {MAX_ATTEMPTS} allowed")
    delays: list[int] = []
    for position, raw in enumerate(items, start=1):
        item = raw.strip()
        # isdecimal() also accepts non-ASCII digits; require plain ASCII.
        if not item or not (item.isascii() and item.isdigit()):
            raise ScheduleError(f"retry schedule entry {position} ({raw!r}) is not a whole number of seconds")
        value = int(item)
        if value > MAX_DELAY_S:
            raise ScheduleError(
                f"retry schedule entry {position} ({value}s) exceeds the maximum of {MAX_DELAY_S}s"
            )
        delays.append(value)
    return tuple(delays)


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Return the wait a ``Retry-After`` header asks for, in seconds, or None.

    Accepts delta-seconds and HTTP-dates (RFC 9110 10.2.3). A date in the past
    means "now" (0). Garbage gives None: a malformed header must not break
    scheduling, the plain schedule applies.
    """
    _require_aware(now)
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():
        return float(int(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        # RFC 9110 dates are GMT; "-0000" parses as naive.
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def jittered(delay_s: float, rng: RandomSource, fraction: float = JITTER_FRACTION) -> float:
    """Return ``delay_s`` moved by up to +-``fraction``, never negative; 0 stays 0."""
    if delay_s <= 0:
        return 0.0
    factor = 1.0 + fraction * (2.0 * rng.random() - 1.0)
    return max(0.0, delay_s * factor)


def next_attempt_at(
    attempt_number: int,
    now: datetime,
    schedule: Sequence[int],
    rng: RandomSource,
    retry_after_s: float | None = None,
) -> datetime | None:
    """When attempt number ``attempt_number`` (1-based) should run, or None.

    ``now`` is when the message was queued (attempt 1) or when the previous
    attempt finished. None means the schedule is exhausted: the message has
    failed for good. ``retry_after_s`` is the receiver's ``Retry-After`` (only
    pass it for 429/503); it may delay the attempt beyond the jittered
    schedule, by at most :data:`RETRY_AFTER_CAP`.
    """
    _require_aware(now)
    if isinstance(attempt_number, bool) or not isinstance(attempt_number, int) or attempt_number < 1:
        raise ValueError("attempt_number must be an integer >= 1")
    if attempt_number > len(schedule):
        return None
    delay = jittered(float(schedule[attempt_number - 1]), rng)
    if retry_after_s is not None and math.isfinite(retry_after_s) and retry_after_s > delay:
        delay = min(retry_after_s, delay + RETRY_AFTER_CAP.total_seconds())
    return now + timedelta(seconds=delay)
