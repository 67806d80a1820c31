"""The delivery queue's gauges, read from the deliveries table at scrape time (PostgreSQL and
SQLite): backlog, what is due and how late, per-endpoint figures bounded to the top
endpoints with the rest summed, failing endpoints."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry
from sqlalchemy import insert

from services.notification.metrics import OTHER_ENDPOINTS, DeliveryQueueCollector, with_queue_metrics
from services.notification.tables import deliveries, endpoints, failing_endpoints
from shared.clock import fixed
from shared.db import engine_for

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def _queue(database_url: str) -> None:
    """ep-a (t1): 3 due, one a success long ago; ep-b (t1): a retry not yet due, one leased;
    ep-c (t2, disabled): one pending, the oldest, never due; ep-a and ep-b failing."""
    engine = engine_for(database_url)
    endpoint_rows = [
        {"id": endpoint_id, "tenant_id": tenant, "url": "https://example.com/hook", "description": "",
         "event_types": [], "status": status, "secret": "sealed", "created_at": _ago(9000),
         "updated_at": _ago(9000), "version": 1}
        for endpoint_id, tenant, status in (("ep-a", "t1", "enabled"), ("ep-b", "t1", "enabled"),
                                            ("ep-c", "t2", "disabled"))
    ]
    delivery_rows = [
        # (endpoint, tenant, state, created s ago, next attempt s ago (negative: ahead), leased for s)
        ("ep-a", "t1", "pending", 100, 30, None),
        ("ep-a", "t1", "pending", 50, 10, None),
        ("ep-a", "t1", "pending", 40, 10, None),
        ("ep-a", "t1", "succeeded", 5000, None, None),
        ("ep-b", "t1", "pending", 500, -300, None),
        ("ep-b", "t1", "pending", 20, 5, 20),
        ("ep-c", "t2", "pending", 2000, 1000, None),
    ]
    with engine.begin() as conn:
        conn.execute(insert(endpoints), endpoint_rows)
        conn.execute(insert(deliveries), [
            {"tenant_id": tenant, "endpoint_id": endpoint_id, "message_id": f"msg_{i}",
             "event_type": "checkin.recorded", "state": state, "attempts": 0, "schedule_step": 0,
             "next_attempt_at": None if due is None else _ago(due),
             "leased_until": None if leased is None else NOW + timedelta(seconds=leased),
             "created_at": _ago(created), "updated_at": _ago(created)}
            for i, (endpoint_id, tenant, state, created, due, leased) in enumerate(delivery_rows)
        ])
        conn.execute(insert(failing_endpoints), [{"endpoint_id": "ep-b", "failing_since": _ago(7200)},
                                                 {"endpoint_id": "ep-a", "failing_since": _ago(60)}])


def _registry(database_url: str, limit: int | None = None) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(DeliveryQueueCollector(engine_for(database_url), clock=fixed(NOW), limit=limit))
    return registry


def test_backlog_due_and_how_late(database_url: str) -> None:
    _queue(database_url)
    registry = _registry(database_url)
    value = registry.get_sample_value
    assert value("nocontact_webhook_deliveries_pending") == 6
    assert value("nocontact_webhook_oldest_pending_age_seconds") == 2000
    # Due: ep-a's three (not the retry ahead, not the leased one, not the disabled endpoint's).
    assert value("nocontact_webhook_deliveries_due") == 3
    assert value("nocontact_webhook_oldest_due_wait_seconds") == 30
    assert value("nocontact_webhook_endpoint_pending", {"tenant_id": "t1", "endpoint_id": "ep-a"}) == 3
    assert value("nocontact_webhook_endpoint_pending", {"tenant_id": "t1", "endpoint_id": "ep-b"}) == 2
    assert value("nocontact_webhook_endpoint_pending", {"tenant_id": "t2", "endpoint_id": "ep-c"}) == 1
    assert value("nocontact_webhook_endpoint_pending", {"tenant_id": "", "endpoint_id": OTHER_ENDPOINTS}) == 0
    assert value("nocontact_webhook_endpoints_failing") == 2
    assert value("nocontact_webhook_endpoint_failing_seconds", {"tenant_id": "t1", "endpoint_id": "ep-b"}) == 7200
    assert value("nocontact_webhook_endpoint_failing_seconds", {"tenant_id": "t1", "endpoint_id": "ep-a"}) == 60


def test_per_endpoint_series_are_bounded_and_the_rest_summed(database_url: str) -> None:
    _queue(database_url)
    registry = _registry(database_url, limit=1)
    pending = {sample.labels["endpoint_id"]: sample.value for family in registry.collect()
               if family.name == "nocontact_webhook_endpoint_pending" for sample in family.samples}
    assert pending == {"ep-a": 3, OTHER_ENDPOINTS: 3}
    failing = [sample.labels["endpoint_id"] for family in registry.collect()
               if family.name == "nocontact_webhook_endpoint_failing_seconds" for sample in family.samples]
    assert failing == ["ep-b"]  # the one failing longest
    assert registry.get_sample_value("nocontact_webhook_endpoints_failing") == 2


def test_an_empty_queue_reads_zero(database_url: str) -> None:
    value = _registry(database_url).get_sample_value
    assert value("nocontact_webhook_deliveries_pending") == 0
    assert value("nocontact_webhook_oldest_pending_age_seconds") == 0
    assert value("nocontact_webhook_oldest_due_wait_seconds") == 0


def test_a_scrape_without_the_database_reports_nothing_and_does_not_fail(tmp_path: Path) -> None:
    empty = tmp_path / "empty.sqlite3"
    empty.touch()
    registry = _registry(f"sqlite:///{empty}")
    assert [family for family in registry.collect() if family.samples] == []


def test_registered_while_the_delivery_part_runs(sqlite_url: str) -> None:
    registry = CollectorRegistry()
    seen: list[float | None] = []

    def delivery(_stop: threading.Event) -> None:
        seen.append(registry.get_sample_value("nocontact_webhook_deliveries_pending"))

    with_queue_metrics(engine_for(sqlite_url), delivery, registry=registry)(threading.Event())
    assert seen == [0]
    assert registry.get_sample_value("nocontact_webhook_deliveries_pending") is None
