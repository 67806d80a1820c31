"""The delivery worker: claims due deliveries and runs their attempts in a thread pool.

The loop only claims and hands out; HTTP attempts run in pool threads, outside any
database transaction. A slow or dead endpoint can hold at most ``per_endpoint`` threads
(the claim's cap), so other endpoints and tenants keep being served. On stop, the loop
claims nothing more and waits for the attempts in flight to be recorded.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from services.notification import config
from services.notification.delivery import queue
from services.notification.delivery.sender import AttemptResult, send
from services.notification.domain import signing
from shared import metrics

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
Sender = Callable[..., AttemptResult]

#: How long past the timeout a lease lasts before another worker may retry the delivery.
#: It bounds how long a crashed worker's deliveries stall (timeout + margin), so it is
#: short: an attempt outliving it (a receiver trickling its headers) may be sent again by
#: another worker, with the same webhook-id, which receivers deduplicate anyway.
LEASE_MARGIN = timedelta(seconds=10)


def utcnow() -> datetime:
    return datetime.now(UTC)


class DeliveryWorker:
    """Delivers webhooks until stopped; several may run against one database."""

    def __init__(
        self,
        engine: Engine,
        *,
        threads: int | None = None,
        per_endpoint: int | None = None,
        poll_interval_s: float | None = None,
        timeout_s: float | None = None,
        allow_private: bool | None = None,
        schedule: tuple[int, ...] | None = None,
        disable_after: timedelta | None = None,
        clock: Clock = utcnow,
        sender: Sender = send,
        rng: random.Random | None = None,
    ) -> None:
        # Read (and validated) at construction: a bad setting stops the worker at start.
        self.engine = engine
        self.threads = threads or config.delivery_threads()
        self.per_endpoint = per_endpoint or config.max_in_flight_per_endpoint()
        self.poll_interval_s = poll_interval_s or config.poll_interval_s()
        self.timeout_s = timeout_s or config.timeout_s()
        self.allow_private = config.allow_private() if allow_private is None else allow_private
        self.schedule = schedule or config.retry_schedule()
        self.disable_after = disable_after or config.disable_after()
        self.clock = clock
        self.sender = sender
        self.rng = rng or random.Random()
        self._in_flight = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.timeout_s) + LEASE_MARGIN

    def attempt(self, claim: queue.Claim) -> queue.Recorded | None:
        """Make one attempt of a claimed delivery and record it. Never raises."""
        try:
            timestamp = int(self.clock().timestamp())
            headers = signing.headers(claim.secrets, claim.message_id, timestamp, claim.body)
            result = self.sender(
                claim.url, headers, claim.body, timeout_s=self.timeout_s, allow_private=self.allow_private
            )
        except Exception as error:  # noqa: BLE001 - a broken attempt is recorded, not lost
            result = AttemptResult(None, 0, f"unexpected: {type(error).__name__}: {error}", None, "")
        try:
            recorded = queue.record(
                self.engine,
                claim,
                result,
                now=self.clock(),
                schedule=self.schedule,
                rng=self.rng,
                disable_after=self.disable_after,
            )
        except Exception:
            # The lease expires and the delivery is tried again: at-least-once.
            log.exception("could not record attempt of %s to endpoint %s", claim.message_id, claim.endpoint_id)
            return None
        outcome = "lost_lease" if recorded is None else recorded.state
        metrics.WEBHOOK_ATTEMPTS.labels(outcome).inc()
        log.info(
            "webhook attempt",
            extra={
                "endpoint_id": claim.endpoint_id,
                "message_id": claim.message_id,
                "status_code": result.status_code,
                "error": result.error,
                "duration_ms": result.duration_ms,
                "state": outcome,
            },
        )
        return recorded

    def _run_one(self, claim: queue.Claim) -> None:
        try:
            self.attempt(claim)
        finally:
            with self._lock:
                self._in_flight -= 1
            self._wake.set()

    def run_once(self, pool: ThreadPoolExecutor) -> int:
        """Claim what fits in the free threads and start it; returns how many started."""
        with self._lock:
            free = self.threads - self._in_flight
        if free <= 0:
            return 0
        claims = queue.claim(
            self.engine, now=self.clock(), limit=free, per_endpoint=self.per_endpoint, lease=self.lease
        )
        for claim in claims:
            with self._lock:
                self._in_flight += 1
            pool.submit(self._run_one, claim)
        return len(claims)

    def run(self, stop: threading.Event) -> None:
        """Deliver until ``stop`` is set; attempts in flight finish before returning."""
        with ThreadPoolExecutor(self.threads, thread_name_prefix="webhook") as pool:
            while not stop.is_set():
                try:
                    started = self.run_once(pool)
                except Exception:
                    log.exception("claiming due deliveries failed")
                    started = 0
                if not started:
                    self._wake.wait(self.poll_interval_s)
                    self._wake.clear()

    def drain(self) -> int:
        """Attempt everything due now, synchronously (tests and the CLI)."""
        total = 0
        with ThreadPoolExecutor(self.threads) as pool:
            while True:
                claims = queue.claim(
                    self.engine,
                    now=self.clock(),
                    limit=self.threads,
                    per_endpoint=self.per_endpoint,
                    lease=self.lease,
                )
                if not claims:
                    return total
                list(pool.map(self.attempt, claims))
                total += len(claims)
