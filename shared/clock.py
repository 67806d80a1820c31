"""The one clock of every service: what "now" is, injected, never read inside a domain.

Domains take ``now`` as an argument. Everything else gets it from a `Clock`: the web layer
from the app's config (``NOCONTACT_CLOCK``, see `shared.web.now`), workers and the command
pipeline from the clock they were built with. Tests put a fixed or moving clock there to
stand anywhere in time.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The current instant, timezone-aware in UTC: the system clock."""
    return datetime.now(UTC)


def fixed(instant: datetime) -> Clock:
    """A clock that always reads `instant` (aware)."""
    if instant.tzinfo is None:
        raise ValueError("a clock reads aware instants")
    return lambda: instant
