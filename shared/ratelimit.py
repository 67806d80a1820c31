"""Rate limiting per credential: 429 with Retry-After, as application/problem+json.

Algorithm: GCRA (the generic cell rate algorithm, a token bucket kept as one timestamp per
key). A key may spend `limit` requests at once (a minute's worth of burst), then one every
60/limit seconds; the answer to a refused request says exactly when the next one fits.
One float per active key, O(1) per request, no background refill.

Where the state lives: in the memory of each API process. That is exact for one process
and approximate for the suite: each service counts separately (a key's limit applies per
service), and gunicorn's W workers of a service each count separately, so a caller spread
over all of them gets up to W times the limit. We accept that because the limiter is an
abuse guard (a runaway integration, a client stuck in a retry loop), not a billing quota:
the bound stays proportional to the limit, and a counter shared between processes would
have to live in PostgreSQL (Redis is not part of the stack), which means a write, and a
contended row lock per key, on every read request of every service - the database is the
bottleneck we protect. Operators who need an exact suite-wide quota put it at the gateway.

Configuration (read per request, so tests and operators change it without a restart of
the code path): NOCONTACT_RATE_LIMIT_PER_MINUTE (default 600; 0 turns limiting off) and
NOCONTACT_RATE_LIMIT_BURST (default: the per-minute limit).
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable

from shared.auth import Principal
from shared.problems import Problem

DEFAULT_PER_MINUTE = 600
# Forgetting keys whose bucket is full again bounds memory to the keys active in the last
# minute or so; sweeping only when the table has grown keeps the common path O(1).
_SWEEP_ABOVE = 10_000


def per_minute() -> int:
    return int(os.environ.get("NOCONTACT_RATE_LIMIT_PER_MINUTE", DEFAULT_PER_MINUTE))


def burst(limit: int) -> int:
    raw = os.environ.get("NOCONTACT_RATE_LIMIT_BURST")
    return max(int(raw), 1) if raw else limit


def key_of(caller: Principal) -> str:
    """Whom a request is counted against: the API key, the token's subject, the operator.

    An API key is counted by its id, never its secret. Tokens carry no id; a coach or
    member is counted per tenant and subject, so reissuing tokens does not reset the count.
    """
    if caller.role == "admin":
        return f"key:{caller.credential_id}"
    if caller.role == "operator":
        return "operator"
    return f"{caller.role}:{caller.tenant_id}:{caller.subject_id}"


class RateLimiter:
    """GCRA buckets in memory, safe across the threads of one process."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tat: dict[str, float] = {}  # theoretical arrival time of the next request
        self._lock = threading.Lock()

    def acquire(self, key: str, limit: int, burst_size: int) -> float:
        """Spend one request of `key`; returns 0.0 if allowed, else seconds until one fits."""
        interval = 60.0 / limit
        tolerance = interval * (burst_size - 1)
        with self._lock:
            now = self._clock()
            tat = max(self._tat.get(key, now), now)
            wait = tat - tolerance - now
            if wait > 0:
                return wait
            self._tat[key] = tat + interval
            if len(self._tat) > _SWEEP_ABOVE:
                self._tat = {k: v for k, v in self._tat.items() if v > now}
            return 0.0

    def check(self, caller: Principal) -> None:
        """Raise a 429 problem with Retry-After if `caller` is over the configured limit."""
        limit = per_minute()
        if limit <= 0:
            return
        wait = self.acquire(key_of(caller), limit, burst(limit))
        if wait > 0:
            seconds = max(math.ceil(wait), 1)
            raise Problem(
                429,
                f"rate limit of {limit} requests per minute exceeded for this credential; "
                f"retry in {seconds} s",
                headers={"Retry-After": str(seconds)},
            )

