"""What an attempt's result means, and when an endpoint is given up on.

The contract: a 2xx answer is success; 410 Gone means "stop sending" and
disables the endpoint at once; anything else (timeouts, refused connections,
5xx, 429, other 4xx, and 3xx, because redirects are never followed: following
them is a classic way around SSRF checks) is retried on the schedule.

Endpoint health: an endpoint whose attempts have all failed for
:data:`DEFAULT_DISABLE_AFTER` (5 days) with no success in between is disabled,
so a dead receiver stops costing us work. The clock is the time of the first
failure since the last success; a success resets it.

What the attempt log keeps of a receiver's reply (`reply_excerpt`): its first KiB, as text
that is safe wherever it is shown (a terminal, a log, a page): the receiver chooses those
bytes, so invalid UTF-8 and control characters are replaced.

Pure: every time is a parameter.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from services.notification.domain.schedule import parse_retry_after

DEFAULT_DISABLE_AFTER = timedelta(days=5)
#: How much of a receiver's reply the attempt log keeps.
EXCERPT_BYTES = 1024
#: Control characters (C0 but tab and line feed, DEL, C1) and the invisible ones that
#: reorder or hide text (bidirectional overrides and isolates, marks).
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
REPLACEMENT = "\ufffd"
#: Statuses whose ``Retry-After`` we honour (RFC 9110 15.6.4, RFC 6585 4).
RETRY_AFTER_STATUSES = frozenset({429, 503})


class Verdict(StrEnum):
    """What the delivery worker does after an attempt."""

    DELIVERED = "delivered"
    RETRY = "retry"
    DISABLE_ENDPOINT = "disable_endpoint"


@dataclass(frozen=True, slots=True)
class Outcome:
    """Classification of one attempt.

    ``reason`` is a short human-readable cause, logged with the attempt and
    shown in the deliveries list. ``retry_after_s`` is set only for 429/503
    answers carrying a usable ``Retry-After``.
    """

    verdict: Verdict
    reason: str
    retry_after_s: float | None = None

    @property
    def is_failure(self) -> bool:
        """True for every outcome that counts against the endpoint's health."""
        return self.verdict is not Verdict.DELIVERED


def classify(
    status_code: int | None,
    error: str | None,
    *,
    retry_after: str | None = None,
    now: datetime,
) -> Outcome:
    """Classify an attempt from its status code or transport error.

    ``error`` wins over a status code: a status with an error attached cannot
    happen from the sender, and when in doubt, retrying is the safe side.
    """
    if error is not None or status_code is None:
        return Outcome(Verdict.RETRY, error or "no response")
    if 200 <= status_code <= 299:
        return Outcome(Verdict.DELIVERED, f"HTTP {status_code}")
    if status_code == 410:
        return Outcome(Verdict.DISABLE_ENDPOINT, "HTTP 410 Gone: receiver asked to stop")
    if 300 <= status_code <= 399:
        return Outcome(Verdict.RETRY, f"HTTP {status_code}: redirects are not followed")
    if status_code in RETRY_AFTER_STATUSES:
        return Outcome(
            Verdict.RETRY,
            f"HTTP {status_code}",
            retry_after_s=parse_retry_after(retry_after, now),
        )
    return Outcome(Verdict.RETRY, f"HTTP {status_code}")


def failing_since(
    first_failure_at: datetime | None, outcome: Outcome, attempted_at: datetime
) -> datetime | None:
    """Return the endpoint's new "failing since" time after an attempt.

    A success resets the clock to None; the first failure after a success
    starts it; later failures keep the original start, so the streak of
    failures is measured from its beginning.
    """
    if not outcome.is_failure:
        return None
    if first_failure_at is None:
        return attempted_at
    return min(first_failure_at, attempted_at)


def should_disable(
    first_failure_at: datetime | None,
    now: datetime,
    threshold: timedelta = DEFAULT_DISABLE_AFTER,
) -> bool:
    """True when the endpoint has failed without a success for ``threshold``."""
    if threshold <= timedelta(0):
        raise ValueError("threshold must be positive")
    if first_failure_at is None:
        return False
    return now - first_failure_at >= threshold


def after_attempt(
    first_failure_at: datetime | None,
    outcome: Outcome,
    attempted_at: datetime,
    threshold: timedelta = DEFAULT_DISABLE_AFTER,
) -> tuple[datetime | None, bool]:
    """Combine :func:`failing_since` and the disable rules for one attempt.

    Returns ``(new_first_failure_at, disable_endpoint)``. 410 disables at once;
    otherwise the endpoint is disabled when its failure streak reaches
    ``threshold``.
    """
    new_since = failing_since(first_failure_at, outcome, attempted_at)
    if outcome.verdict is Verdict.DISABLE_ENDPOINT:
        return new_since, True
    return new_since, should_disable(new_since, attempted_at, threshold)


def reply_excerpt(reply: bytes, limit: int = EXCERPT_BYTES) -> str:
    """The first `limit` bytes of a receiver's reply as plain text: invalid UTF-8 and
    control characters (but tabs and line feeds; CRLF becomes a line feed) replaced by
    U+FFFD, and a character the limit cuts in two dropped rather than garbled."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    text = decoder.decode(reply[:limit], final=len(reply) <= limit)
    return _UNSAFE.sub(REPLACEMENT, text.replace("\r\n", "\n"))
