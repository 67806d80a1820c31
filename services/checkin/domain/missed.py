"""Missed check-ins: past days nobody reported once the grace period after them is over.

The scheduler calls this on every tick with the current instant and emits one
``checkin.missed`` event per returned day it has not emitted before.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date, datetime, timedelta

from shared.calendar import date_range, day_bounds, local_today

__all__ = ["CHECKIN_MISSED", "missed_check_in_data", "missed_days", "missed_deadline"]

CHECKIN_MISSED = "checkin.missed"


def missed_deadline(tz: str, day: date, grace_hours: float) -> datetime:
    """The UTC instant from which an unreported ``day`` counts as missed.

    The end of the local day (the next local midnight) plus ``grace_hours`` of elapsed
    time: on a daylight-saving night 12 grace hours are still 12 real hours, so the
    local clock reads 11:00 or 13:00 instead of 12:00.
    """
    if grace_hours < 0:
        raise ValueError("grace_hours must be >= 0")
    _, end = day_bounds(tz, day)
    return end + timedelta(hours=grace_hours)


def missed_days(
    *,
    reported_days: Collection[date],
    starts_on: date,
    ends_on: date | None,
    tz: str,
    now: datetime,
    grace_hours: float,
    not_before: date | None = None,
) -> list[date]:
    """The unreported days of the commitment whose deadline (`missed_deadline`) is <= ``now``.

    Days run from ``max(starts_on, not_before)`` to ``ends_on`` (or open-ended), oldest
    first. ``not_before`` lets the scheduler skip days it has already handled.
    """
    first = starts_on if not_before is None else max(starts_on, not_before)
    last = local_today(tz, now)
    if ends_on is not None:
        last = min(last, ends_on)
    missed = []
    for day in date_range(first, last):
        if missed_deadline(tz, day, grace_hours) > now:
            break  # deadlines only grow with the day: later days are not due either
        if day not in reported_days:
            missed.append(day)
    return missed


def missed_check_in_data(
    *, commitment_id: str, member_id: str, day: date, deadline: datetime
) -> dict[str, str]:
    """The ``data`` of a ``checkin.missed`` event.

    Fields: ``commitment_id``, ``member_id``, ``date`` (the local day nobody reported,
    ``YYYY-MM-DD``) and ``deadline`` (ISO 8601 UTC instant it became missed). A later
    backdated report of that day is simply a ``checkin.recorded``; the miss is not undone.
    """
    return {
        "commitment_id": commitment_id,
        "member_id": member_id,
        "date": day.isoformat(),
        "deadline": deadline.isoformat(),
    }
