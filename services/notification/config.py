"""Settings of the notification service, read from the environment when needed.

Strict parsing (shared.config.number): a malformed value stops the process at start-up
with the variable named (shared.config.check), rather than retrying forever, never, or
with a surprising timeout.
"""

from __future__ import annotations

from datetime import timedelta

from services.notification.domain.schedule import ScheduleError, parse_schedule
from shared import config


@config.setting
def retry_schedule() -> tuple[int, ...]:
    """NOCONTACT_WEBHOOK_RETRY_SCHEDULE: seconds before each attempt (whole numbers)."""
    try:
        return parse_schedule(config.webhook_retry_schedule())
    except ScheduleError as error:
        raise ScheduleError(f"NOCONTACT_WEBHOOK_RETRY_SCHEDULE: {error}") from None


def allow_private() -> bool:
    """NOCONTACT_WEBHOOK_ALLOW_PRIVATE: loopback/private targets (development, tests)."""
    return config.webhook_allow_private()


@config.setting
def timeout_s() -> float:
    """NOCONTACT_WEBHOOK_TIMEOUT_S: per-attempt timeout, default 15 seconds."""
    return config.number("NOCONTACT_WEBHOOK_TIMEOUT_S", 15.0, above=0)


@config.setting
def disable_after() -> timedelta:
    """NOCONTACT_WEBHOOK_DISABLE_AFTER_DAYS: failing this long disables an endpoint (5)."""
    return timedelta(days=config.number("NOCONTACT_WEBHOOK_DISABLE_AFTER_DAYS", 5.0, above=0, below=config.MAX_DAYS))


@config.setting
def max_in_flight_per_endpoint() -> int:
    """NOCONTACT_WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT: concurrent attempts to one endpoint (16).

    With kept-alive connections one attempt to a healthy receiver takes a round trip, so
    16 in flight carry hundreds per second; a dead endpoint (timeouts) holds 16 threads
    at most, below ``delivery_threads()``, so other endpoints keep theirs.
    """
    return config.number("NOCONTACT_WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT", 16, minimum=1)


@config.setting
def delivery_threads() -> int:
    """NOCONTACT_WEBHOOK_WORKERS: attempts in flight per delivery worker process (48).

    Three endpoints' worth of the per-endpoint cap: one or two stuck endpoints never
    starve the rest. The threads mostly wait on sockets.
    """
    return config.number("NOCONTACT_WEBHOOK_WORKERS", 48, minimum=1)


@config.setting
def poll_interval_s() -> float:
    """NOCONTACT_WEBHOOK_POLL_INTERVAL_S: how often an idle worker looks for due deliveries (0.1).

    The inbox of the same process wakes the worker at once; the poll finds what other
    processes queued and retries coming due. An idle poll is one small query.
    """
    return config.number("NOCONTACT_WEBHOOK_POLL_INTERVAL_S", 0.1, above=0)


@config.setting
def retention() -> timedelta:
    """NOCONTACT_RETENTION_DAYS: delivered messages and their attempts are kept this long (90)."""
    return timedelta(days=config.number("NOCONTACT_RETENTION_DAYS", 90.0, above=0, below=config.MAX_DAYS))
