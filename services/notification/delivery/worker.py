"""The delivery worker: claims due deliveries in batches, attempts them in a thread pool.

One loop owns the database work: each turn records every attempt finished since the last
turn in ONE transaction, then claims what fits in the free threads in ONE transaction.
HTTP attempts run in pool threads, outside any transaction, over kept-alive connections
(``sender.ClientPool``). A slow or dead endpoint can hold at most ``per_endpoint`` threads
(the claim's cap, counted in the database), and ``threads`` is larger than that cap, so
other endpoints and tenants keep being served. On stop, the loop claims nothing more,
waits for the attempts in flight and records them.

A finished attempt waits in memory until the loop records it (milliseconds); a crash in
between leaves its lease to expire and the delivery is tried again with the same
webhook-id (at-least-once, as for a crash during the attempt). Secrets stay sealed until
the thread that signs opens them.

The loop sleeps until woken: by a finished attempt, by ``poke()`` (the inbox in the same
process calls it after committing new deliveries), or after ``poll_interval_s`` (work
queued by other processes, retries coming due).

Housekeeping: at start and then every ``HOUSEKEEPING_INTERVAL``, messages delivered longer
ago than ``NOCONTACT_RETENTION_DAYS`` are deleted with their attempt log
(`queue.forget_delivered`); several workers doing it at once delete each message once.
"""

from __future__ import annotations

import logging
import queue as queues
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from sqlalchemy import Engine

from services.notification import config, handlers
from services.notification.delivery import queue
from services.notification.delivery.sender import AttemptResult, ClientPool, send
from services.notification.domain import signing
from services.notification.domain.endpoints import secret_associated_data
from shared import crypto, metrics
from shared.clock import Clock, utcnow

log = logging.getLogger(__name__)

Sender = Callable[..., AttemptResult]

#: The most outcomes recorded in one transaction (a turn records the rest next).
RECORD_BATCH = 200

#: How long past the timeout a lease lasts before another worker may retry the delivery.
#: It bounds how long a crashed worker's deliveries stall (timeout + margin), so it is
#: short: an attempt outliving it (a receiver trickling its headers) may be sent again by
#: another worker, with the same webhook-id, which receivers deduplicate anyway.
LEASE_MARGIN = timedelta(seconds=10)

#: How often a worker deletes the delivered messages past their retention.
HOUSEKEEPING_INTERVAL = timedelta(hours=1)


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
        retention: timedelta | None = None,
        clock: Clock = utcnow,
        sender: Sender | None = None,
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
        self.retention = retention or config.retention()
        self.clock = clock
        # Kept-alive connections for the default sender; an injected sender brings its own.
        self.pool = ClientPool()
        self.sender: Sender = sender or self._pooled_send
        self.rng = rng or random.Random()
        self._in_flight = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._finished: queues.SimpleQueue[queue.Outcome] = queues.SimpleQueue()
        self._housekeeping_due = 0.0

    def _pooled_send(self, url: str, headers: dict[str, str], body: bytes, **kwargs: object) -> AttemptResult:
        return send(url, headers, body, pool=self.pool, **kwargs)  # type: ignore[arg-type]

    def poke(self) -> None:
        """New deliveries were committed: look for due work now, not at the next poll."""
        self._wake.set()

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.timeout_s) + LEASE_MARGIN

    def _send(self, claim: queue.Claim) -> queue.Outcome:
        """Make one attempt of a claimed delivery. Never raises."""
        try:
            timestamp = int(self.clock().timestamp())
            associated_data = secret_associated_data(claim.endpoint_id)
            secrets = [crypto.unseal_text(sealed, associated_data) for sealed in claim.secrets]
            headers = signing.headers(secrets, claim.message_id, timestamp, claim.body)
            result = self.sender(
                claim.url, headers, claim.body, timeout_s=self.timeout_s, allow_private=self.allow_private
            )
        except Exception as error:  # noqa: BLE001 - a broken attempt is recorded, not lost
            result = AttemptResult(None, 0, f"unexpected: {type(error).__name__}: {error}", None, "")
        return queue.Outcome(claim, result, self.clock())

    def record(self, outcomes: list[queue.Outcome]) -> list[queue.Recorded | None]:
        """Record finished attempts in one transaction, then disable the endpoints they
        gave up on (each a command on its stream). Never raises."""
        if not outcomes:
            return []
        try:
            recorded = queue.record_many(
                self.engine, outcomes, schedule=self.schedule, rng=self.rng, disable_after=self.disable_after
            )
        except Exception:
            # The leases expire and the deliveries are tried again: at-least-once.
            log.exception("could not record %d webhook attempts", len(outcomes))
            return [None] * len(outcomes)
        for item, done in zip(outcomes, recorded, strict=True):
            if done is not None and done.disable_reason is not None:
                self._disable(item, done.disable_reason)
        for item, done in zip(outcomes, recorded, strict=True):
            state = "lost_lease" if done is None else done.state
            metrics.WEBHOOK_ATTEMPTS.labels(state).inc()
            result = item.result
            log.info(
                "webhook attempt",
                extra={
                    "endpoint_id": item.claim.endpoint_id,
                    "message_id": item.claim.message_id,
                    "status_code": result.status_code,
                    "error": result.error,
                    "duration_ms": result.duration_ms,
                    "state": state,
                },
            )
        return recorded

    def _disable(self, item: queue.Outcome, reason: str) -> None:
        claim = item.claim
        try:
            handlers.disable_failing_endpoint(self.engine, claim.tenant_id, claim.endpoint_id, reason, now=item.at)
        except Exception:
            # The attempts are recorded; the endpoint's next failing attempt decides again.
            log.exception("could not disable webhook endpoint %s (%s)", claim.endpoint_id, reason)

    def _run_one(self, claim: queue.Claim) -> None:
        try:
            self._finished.put(self._send(claim))
        finally:
            with self._lock:
                self._in_flight -= 1
            self._wake.set()

    def _record_finished(self) -> int:
        outcomes: list[queue.Outcome] = []
        while len(outcomes) < RECORD_BATCH:
            try:
                outcomes.append(self._finished.get_nowait())
            except queues.Empty:
                break
        self.record(outcomes)
        return len(outcomes)

    def housekeep(self) -> int:
        """Delete the messages delivered longer ago than the retention; returns how many."""
        forgotten = queue.forget_delivered(self.engine, before=self.clock() - self.retention)
        if forgotten:
            log.info("retention: %d delivered message(s) older than %s deleted", forgotten, self.retention)
        return forgotten

    def _housekeep_when_due(self) -> None:
        if time.monotonic() < self._housekeeping_due:
            return
        self._housekeeping_due = time.monotonic() + HOUSEKEEPING_INTERVAL.total_seconds()
        try:
            self.housekeep()
        except Exception:
            # The next turn of the interval tries again; deliveries go on meanwhile.
            log.exception("deleting delivered messages past their retention failed")

    def run_once(self, pool: ThreadPoolExecutor) -> int:
        """Record finished attempts, claim what fits in the free threads and start it.

        Returns how many attempts were recorded or started (0: nothing to do).
        """
        recorded = self._record_finished()
        with self._lock:
            free = self.threads - self._in_flight
        if free <= 0:
            return recorded
        claims = queue.claim(
            self.engine, now=self.clock(), limit=free, per_endpoint=self.per_endpoint, lease=self.lease
        )
        for claim in claims:
            with self._lock:
                self._in_flight += 1
            pool.submit(self._run_one, claim)
        return recorded + len(claims)

    def run(self, stop: threading.Event) -> None:
        """Deliver until ``stop`` is set; attempts in flight finish and are recorded first."""
        # ``stop`` must end the idle wait too, not only the next poll (which may be long).
        threading.Thread(target=lambda: (stop.wait(), self._wake.set()), daemon=True).start()
        try:
            with ThreadPoolExecutor(self.threads, thread_name_prefix="webhook") as pool:
                while not stop.is_set():
                    self._housekeep_when_due()
                    # Cleared before looking: a wake-up arriving during the turn is kept.
                    self._wake.clear()
                    try:
                        busy = self.run_once(pool)
                    except Exception:
                        log.exception("claiming due deliveries failed")
                        busy = 0
                    if not busy:
                        self._wake.wait(self.poll_interval_s)
            while self._record_finished():
                pass
        finally:
            self.pool.close()

    def drain(self) -> int:
        """Attempt everything due now, synchronously (tests and the CLI)."""
        total = 0
        try:
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
                    self.record(list(pool.map(self._send, claims)))
                    total += len(claims)
        finally:
            self.pool.close()
