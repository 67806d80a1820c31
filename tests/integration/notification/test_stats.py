"""An endpoint's statistics (GET /v1/webhook-endpoints/{id}/stats), computed in SQL, on
PostgreSQL and SQLite alike, from an attempt log of known durations and times."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert

from services.notification import handlers, queries
from services.notification.domain.endpoints import EndpointNotFound
from services.notification.tables import attempts, deliveries
from shared.commands import Context

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
TENANT = "t-stats"
URL = "https://1.1.1.1/hooks"  # an IP literal: vetted without a resolver


def _endpoint(engine: Any, tenant_id: str = TENANT) -> str:
    admin = Context(tenant_id, "api_key:k")
    endpoint_id, _secret = handlers.create_endpoint(
        engine, admin, url=URL, event_types=["*"], description="", now=NOW - timedelta(days=30)
    )
    return endpoint_id


def _log(engine: Any, endpoint_id: str, rows: list[tuple[timedelta, int, str]], tenant_id: str = TENANT) -> None:
    """Attempts `ago` before NOW, of `duration_ms`, leaving their delivery in `state`."""
    with engine.begin() as conn:
        conn.execute(insert(attempts), [
            {
                "tenant_id": tenant_id, "endpoint_id": endpoint_id, "delivery_id": index, "message_id": f"msg_{index}",
                "event_type": "checkin.recorded", "attempt": 1, "duration_ms": duration,
                "status_code": 200 if state == "succeeded" else 500,
                "error": None if state == "succeeded" else "HTTP 500", "state": state,
                "attempted_at": NOW - ago,
            }
            for index, (ago, duration, state) in enumerate(rows)
        ])


def nearest_rank(values: list[int], percent: int) -> int:
    """The reference: the smallest value that `percent` % of the values do not exceed."""
    ordered = sorted(values)
    return ordered[math.ceil(percent / 100 * len(ordered)) - 1]


def test_counts_and_latency_percentiles_per_window(engine: Any) -> None:
    endpoint_id = _endpoint(engine)
    def minutes(n: int) -> timedelta:
        return timedelta(minutes=n)

    def hours(n: int) -> timedelta:
        return timedelta(hours=n)

    def days(n: int) -> timedelta:
        return timedelta(days=n)

    last_hour = [(minutes(5 * d), d, "succeeded" if d <= 8 else "retrying") for d in range(1, 11)]  # 1..10 ms
    boundary = [(hours(1), 50, "succeeded")]  # exactly an hour ago: the day's, not the hour's
    earlier_today = [(hours(2), 100 + n, "failed") for n in range(90)]  # 100..189 ms
    this_week = [(days(3), 5000, "retrying")]
    outside = [(days(8), 1, "succeeded"), (minutes(-1), 1, "succeeded")]  # too old; after NOW
    _log(engine, endpoint_id, last_hour + boundary + earlier_today + this_week + outside)
    other_endpoint = _endpoint(engine)
    _log(engine, other_endpoint, [(minutes(1), 99999, "failed")])
    other_tenant = _endpoint(engine, "t-other")
    _log(engine, other_tenant, [(minutes(1), 99999, "failed")], tenant_id="t-other")

    stats = queries.endpoint_stats(engine, TENANT, endpoint_id, NOW)

    assert stats["endpoint_id"] == endpoint_id and stats["as_of"] == NOW and stats["pending"] == 0
    assert list(stats["windows"]) == ["1h", "24h", "7d"]
    hour, day, week = (stats["windows"][name] for name in ("1h", "24h", "7d"))
    assert hour == {"since": NOW - hours(1), "attempts": 10, "successes": 8, "failures": 2,
                    "latency_ms": {"p50": 5, "p90": 9, "p99": 10}}
    # 1..10, 50, 100..189: 101 attempts; ranks 51, 91 and 100.
    assert day == {"since": NOW - hours(24), "attempts": 101, "successes": 9, "failures": 92,
                   "latency_ms": {"p50": 139, "p90": 179, "p99": 188}}
    # and 5000: 102 attempts; ranks 51, 92 and 101.
    assert week == {"since": NOW - days(7), "attempts": 102, "successes": 9, "failures": 93,
                    "latency_ms": {"p50": 139, "p90": 180, "p99": 189}}
    # The SQL agrees with the textbook definition on these data.
    durations = [d for _ago, d, _s in last_hour + boundary + earlier_today + this_week]
    assert [week["latency_ms"][f"p{p}"] for p in (50, 90, 99)] == [nearest_rank(durations, p) for p in (50, 90, 99)]


@pytest.mark.parametrize("count", [1, 2, 3, 7, 100, 101, 250])
def test_the_percentiles_are_the_nearest_rank_for_any_count(engine: Any, count: int) -> None:
    endpoint_id = _endpoint(engine)
    durations = [(n * 37) % 1009 for n in range(count)]  # distinct, in no order
    _log(engine, endpoint_id, [(timedelta(minutes=1), d, "succeeded") for d in durations])
    latency = queries.endpoint_stats(engine, TENANT, endpoint_id, NOW)["windows"]["1h"]["latency_ms"]
    assert latency == {f"p{p}": nearest_rank(durations, p) for p in (50, 90, 99)}


def test_an_endpoint_without_attempts_has_zeros_and_no_latency(engine: Any) -> None:
    endpoint_id = _endpoint(engine)
    stats = queries.endpoint_stats(engine, TENANT, endpoint_id, NOW)
    for window in stats["windows"].values():
        assert window["attempts"] == window["successes"] == window["failures"] == 0
        assert window["latency_ms"] == {"p50": None, "p90": None, "p99": None}


def test_another_tenants_endpoint_has_no_stats(engine: Any) -> None:
    endpoint_id = _endpoint(engine, "t-other")
    with pytest.raises(EndpointNotFound):
        queries.endpoint_stats(engine, TENANT, endpoint_id, NOW)
    with pytest.raises(EndpointNotFound):
        queries.endpoint_stats(engine, TENANT, "not-a-uuid", NOW)


def test_pending_counts_the_deliveries_waiting_at_the_endpoint_now(engine: Any) -> None:
    endpoint_id, other = _endpoint(engine), _endpoint(engine)
    with engine.begin() as conn:
        conn.execute(insert(deliveries), [
            {"tenant_id": TENANT, "endpoint_id": endpoint, "message_id": f"msg_{index}", "event_type": "checkin.missed",
             "state": state, "attempts": 0, "schedule_step": 0, "created_at": NOW, "updated_at": NOW}
            for index, (endpoint, state) in enumerate([
                (endpoint_id, "pending"), (endpoint_id, "pending"), (endpoint_id, "succeeded"),
                (endpoint_id, "failed"), (other, "pending"),
            ])
        ])
    assert queries.endpoint_stats(engine, TENANT, endpoint_id, NOW)["pending"] == 2
