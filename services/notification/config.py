"""Settings of the notification service, read from the environment when needed.

Strict parsing: a malformed value stops the worker at start-up with the variable named,
rather than retrying forever, never, or with a surprising timeout.
"""

from __future__ import annotations

import os
from datetime import timedelta

from services.notification.domain.schedule import parse_schedule
from shared import config


class SettingError(ValueError):
    """An environment variable of the notification service is malformed."""


def _positive_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingError(f"{name}={raw!r} is not a number") from None
    if not value > 0 or value != value or value == float("inf"):
        raise SettingError(f"{name}={raw!r} must be a positive number")
    return value


def _positive_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    if not (raw.strip().isascii() and raw.strip().isdigit()) or int(raw) < 1:
        raise SettingError(f"{name}={raw!r} must be a whole number >= 1")
    return int(raw)


def retry_schedule() -> tuple[int, ...]:
    """NOCONTACT_WEBHOOK_RETRY_SCHEDULE: seconds before each attempt (whole numbers)."""
    return parse_schedule(config.webhook_retry_schedule())


def allow_private() -> bool:
    """NOCONTACT_WEBHOOK_ALLOW_PRIVATE: loopback/private targets (development, tests)."""
    return config.webhook_allow_private()


def timeout_s() -> float:
    """NOCONTACT_WEBHOOK_TIMEOUT_S: per-attempt timeout, default 15 seconds."""
    return _positive_float("NOCONTACT_WEBHOOK_TIMEOUT_S", 15.0)


def disable_after() -> timedelta:
    """NOCONTACT_WEBHOOK_DISABLE_AFTER_DAYS: failing this long disables an endpoint (5)."""
    return timedelta(days=_positive_float("NOCONTACT_WEBHOOK_DISABLE_AFTER_DAYS", 5.0))


def max_in_flight_per_endpoint() -> int:
    """NOCONTACT_WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT: concurrent attempts to one endpoint (16).

    With kept-alive connections one attempt to a healthy receiver takes a round trip, so
    16 in flight carry hundreds per second; a dead endpoint (timeouts) holds 16 threads
    at most, below ``delivery_threads()``, so other endpoints keep theirs.
    """
    return _positive_int("NOCONTACT_WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT", 16)


def delivery_threads() -> int:
    """NOCONTACT_WEBHOOK_WORKERS: attempts in flight per delivery worker process (48).

    Three endpoints' worth of the per-endpoint cap: one or two stuck endpoints never
    starve the rest. The threads mostly wait on sockets.
    """
    return _positive_int("NOCONTACT_WEBHOOK_WORKERS", 48)


def poll_interval_s() -> float:
    """NOCONTACT_WEBHOOK_POLL_INTERVAL_S: how often an idle worker looks for due deliveries (0.1).

    The inbox of the same process wakes the worker at once; the poll finds what other
    processes queued and retries coming due. An idle poll is one small query.
    """
    return _positive_float("NOCONTACT_WEBHOOK_POLL_INTERVAL_S", 0.1)


def retention() -> timedelta:
    """NOCONTACT_RETENTION_DAYS: delivered messages and their attempts are kept this long (90)."""
    return timedelta(days=_positive_float("NOCONTACT_RETENTION_DAYS", 90.0))
