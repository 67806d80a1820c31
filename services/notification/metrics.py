"""Gauges of the delivery queue, read from the database when Prometheus scrapes.

The queue's truth is ``notification_deliveries`` (services.notification.delivery.queue),
shared by every delivery process; counting it at scrape time gives the same figures
whichever process is scraped, with nothing to keep in step. Registered for as long as a
process runs the delivery part (`with_queue_metrics`), so a scaled-out deployment reports
the same figures once per delivery replica: aggregate them with ``max``, not ``sum``.

Endpoints belong to tenants, so per-endpoint series are bounded: only the
`endpoint_limit()` endpoints with the most pending deliveries, and as many of those failing
longest, get series of their own; the rest of the backlog is one series
(``endpoint_id="_other"``), so the per-endpoint figures still add up to the total.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from prometheus_client.core import REGISTRY, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select

from services.notification.delivery.queue import PENDING, due
from services.notification.domain.endpoints import Status
from services.notification.tables import deliveries, endpoints, failing_endpoints
from shared import config
from shared.clock import Clock, utcnow
from shared.db import read

log = logging.getLogger(__name__)

Part = Callable[[threading.Event], None]

#: Endpoints that get series of their own (NOCONTACT_WEBHOOK_METRICS_ENDPOINTS).
ENDPOINT_LIMIT_DEFAULT = 20
OTHER_ENDPOINTS = "_other"


@config.setting
def endpoint_limit() -> int:
    return config.number("NOCONTACT_WEBHOOK_METRICS_ENDPOINTS", ENDPOINT_LIMIT_DEFAULT, minimum=0)


def _families() -> dict[str, GaugeMetricFamily]:
    return {
        "pending": GaugeMetricFamily(
            "nocontact_webhook_deliveries_pending",
            "Webhook deliveries not yet succeeded or given up (waiting for an attempt or a retry)",
        ),
        "due": GaugeMetricFamily(
            "nocontact_webhook_deliveries_due",
            "Pending deliveries to enabled endpoints whose next attempt is due now",
        ),
        "oldest_age": GaugeMetricFamily(
            "nocontact_webhook_oldest_pending_age_seconds",
            "Age of the oldest pending delivery (0: none pending)",
        ),
        "due_wait": GaugeMetricFamily(
            "nocontact_webhook_oldest_due_wait_seconds",
            "How long the delivery due longest has waited past its attempt time (0: none due): "
            "how far behind the delivery workers are",
        ),
        "endpoint_pending": GaugeMetricFamily(
            "nocontact_webhook_endpoint_pending",
            "Pending deliveries of the endpoints with the most of them (the rest: endpoint_id=\"_other\")",
            labels=["tenant_id", "endpoint_id"],
        ),
        "failing": GaugeMetricFamily(
            "nocontact_webhook_endpoints_failing",
            "Endpoints whose every attempt has failed since their last success",
        ),
        "endpoint_failing": GaugeMetricFamily(
            "nocontact_webhook_endpoint_failing_seconds",
            "How long every attempt to an endpoint has failed, for the endpoints failing longest",
            labels=["tenant_id", "endpoint_id"],
        ),
    }


def _seconds_since(then: datetime | None, now: datetime) -> float:
    return max((now - then).total_seconds(), 0.0) if then is not None else 0.0


class DeliveryQueueCollector(Collector):
    """The delivery queue's gauges, queried on each scrape (a few indexed aggregates)."""

    def __init__(self, engine: Engine, *, clock: Clock = utcnow, limit: int | None = None) -> None:
        self.engine = engine
        self.clock = clock
        self.limit = endpoint_limit() if limit is None else limit

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Registering calls describe(), not collect(): no query at start-up.
        return iter(_families().values())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            families = self._read()
        except Exception as error:  # noqa: BLE001 - a scrape must not fail with the database
            log.warning("delivery queue metrics unavailable: %s", error)
            return iter(())
        return iter(families.values())

    def _read(self) -> dict[str, GaugeMetricFamily]:
        now = self.clock()
        families = _families()
        with read(self.engine) as conn:
            pending, oldest = conn.execute(
                select(func.count(), func.min(deliveries.c.created_at)).where(deliveries.c.state == PENDING)
            ).one()
            due_count, due_since = conn.execute(
                select(func.count(), func.min(deliveries.c.next_attempt_at))
                .join(endpoints, endpoints.c.id == deliveries.c.endpoint_id)
                .where(due(deliveries), endpoints.c.status == Status.ENABLED),
                {"now": now},
            ).one()
            by_endpoint = conn.execute(
                select(deliveries.c.tenant_id, deliveries.c.endpoint_id, func.count().label("pending"))
                .where(deliveries.c.state == PENDING)
                .group_by(deliveries.c.tenant_id, deliveries.c.endpoint_id)
                .order_by(func.count().desc(), deliveries.c.endpoint_id)
                .limit(self.limit)
            ).all() if self.limit else []
            failing = conn.execute(select(func.count()).select_from(failing_endpoints)).scalar_one()
            longest_failing = conn.execute(
                select(endpoints.c.tenant_id, failing_endpoints.c.endpoint_id, failing_endpoints.c.failing_since)
                .join(endpoints, endpoints.c.id == failing_endpoints.c.endpoint_id)
                .order_by(failing_endpoints.c.failing_since, failing_endpoints.c.endpoint_id)
                .limit(self.limit)
            ).all() if self.limit else []
        families["pending"].add_metric([], pending)
        families["due"].add_metric([], due_count)
        families["oldest_age"].add_metric([], _seconds_since(oldest, now))
        families["due_wait"].add_metric([], _seconds_since(due_since, now))
        for row in by_endpoint:
            families["endpoint_pending"].add_metric([row.tenant_id, row.endpoint_id], row.pending)
        rest = pending - sum(row.pending for row in by_endpoint)
        families["endpoint_pending"].add_metric(["", OTHER_ENDPOINTS], rest)
        families["failing"].add_metric([], failing)
        for row in longest_failing:
            families["endpoint_failing"].add_metric(
                [row.tenant_id, row.endpoint_id], _seconds_since(row.failing_since, now)
            )
        return families


def with_queue_metrics(engine: Engine, part: Part, *, clock: Clock = utcnow,
                       registry: Any = REGISTRY) -> Part:
    """`part` (the delivery loop), with the queue's gauges registered while it runs: the
    process that delivers is the one scraped for them (NOCONTACT_WORKER_METRICS_PORT)."""

    def run(stop: threading.Event) -> None:
        collector = DeliveryQueueCollector(engine, clock=clock)
        registry.register(collector)
        try:
            part(stop)
        finally:
            registry.unregister(collector)

    return run
