"""Local-day arithmetic in a member's IANA time zone, for every service.

Every day of a commitment is a date in the member's own zone: "today", "yesterday" and
"when a day is over" are decided there, across daylight-saving changes. Nothing here
reads a clock: the current instant is always passed in, as an aware datetime. Pure:
domain modules import it.

One zone validation for all services (`is_valid_timezone`): a zone the commitment
service accepts must be one the check-in service can compute days in, or the
commitment would be dead-lettered there and never usable.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

__all__ = [
    "MAX_TIMEZONE_LENGTH",
    "UnknownTimeZone",
    "date_range",
    "day_bounds",
    "is_valid_timezone",
    "local_today",
    "zone",
]

# Names the tz database ships that are not places a member lives in ("Factory" has the
# abbreviation "-00" and no real offset; the others depend on the host's configuration).
_NOT_MEMBER_ZONES = frozenset({"localtime", "posixrules", "Factory"})
# The longest IANA name is ~32 characters: refuse junk before looking it up.
MAX_TIMEZONE_LENGTH = 64


class UnknownTimeZone(ValueError):
    """The name is not an IANA time zone this system knows."""

    def __init__(self, name: object) -> None:
        super().__init__(f"unknown time zone: {name!r}")
        self.name = name


@lru_cache(maxsize=1)
def _known_zones() -> frozenset[str]:
    # Scanning the tz database is slow-ish: do it once per process.
    return frozenset(available_timezones()) - _NOT_MEMBER_ZONES


def is_valid_timezone(name: object) -> bool:
    """True when ``name`` is an IANA zone name (``Europe/Berlin``), not a path or alias file."""
    return isinstance(name, str) and 0 < len(name) <= MAX_TIMEZONE_LENGTH and name in _known_zones()


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    """The ``ZoneInfo`` for ``name``; raises `UnknownTimeZone` instead of a bare KeyError."""
    if not is_valid_timezone(name):
        raise UnknownTimeZone(name)
    try:
        return ZoneInfo(name)
    except (
        ZoneInfoNotFoundError,
        ValueError,
    ) as exc:  # pragma: no cover - listed but unreadable
        raise UnknownTimeZone(name) from exc


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be an aware datetime (a naive one has no instant)")


def local_today(tz: str, now: datetime) -> date:
    """The member's local date at the instant ``now`` (an aware datetime, usually UTC)."""
    _require_aware(now)
    return now.astimezone(zone(tz)).date()


def _local_date(instant: datetime, tzinfo: ZoneInfo) -> date:
    return instant.astimezone(tzinfo).date()


def _start_of_day(tzinfo: ZoneInfo, day: date) -> datetime:
    """The first UTC instant whose local date is ``day``.

    Usually local midnight. Where midnight is ambiguous (a fall-back at midnight) the
    first occurrence wins; where it does not exist (a spring-forward at midnight, e.g.
    America/Santiago) the day begins at the transition itself.
    """
    candidates = []
    for fold in (0, 1):
        local = datetime.combine(day, time(0), tzinfo=tzinfo).replace(fold=fold)
        candidates.append(local.astimezone(UTC))
    exact = [
        c for c in candidates if c.astimezone(tzinfo).replace(tzinfo=None) == datetime.combine(day, time(0))
    ]
    if exact:
        return min(exact)
    # Midnight falls in a gap: find the transition between the two readings.
    low, high = min(candidates), max(candidates)
    if _local_date(low, tzinfo) >= day:  # pragma: no cover - defensive, not seen in tzdata
        return low
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if _local_date(middle, tzinfo) >= day:
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0)


def day_bounds(tz: str, day: date) -> tuple[datetime, datetime]:
    """The half-open UTC interval ``[start, end)`` that is ``day`` in zone ``tz``.

    Its length is 24 hours except on daylight-saving days (23 or 25 hours in
    Europe/Berlin); ``end`` is the start of the next local day.
    """
    tzinfo = zone(tz)
    return _start_of_day(tzinfo, day), _start_of_day(tzinfo, day + timedelta(days=1))


def date_range(first: date, last: date) -> Iterator[date]:
    """Every date from ``first`` to ``last`` inclusive (nothing when ``last < first``)."""
    for offset in range((last - first).days + 1):
        yield first + timedelta(days=offset)
