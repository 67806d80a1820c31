"""Rate limiting per credential: the GCRA arithmetic, and 429 + Retry-After over real HTTP."""

from __future__ import annotations

import uuid

import httpx
import pytest

from shared.auth import Principal
from shared.problems import Problem
from shared.ratelimit import RateLimiter, key_of
from shared.testing import eventually

OPERATOR = "operator-" + uuid.uuid4().hex


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_of_the_limit_then_one_request_per_interval() -> None:
    clock = Clock()
    limiter = RateLimiter(clock)
    assert [limiter.acquire("k", 60, 60) for _ in range(60)] == [0.0] * 60
    wait = limiter.acquire("k", 60, 60)
    assert wait == pytest.approx(1.0)  # 60/min: the next one fits a second later
    clock.now += 0.5
    assert limiter.acquire("k", 60, 60) == pytest.approx(0.5)
    clock.now += 0.5
    assert limiter.acquire("k", 60, 60) == 0.0
    assert limiter.acquire("k", 60, 60) > 0
    # Other keys are not affected, and a full minute of quiet refills the whole burst.
    assert limiter.acquire("other", 60, 60) == 0.0
    clock.now += 60
    assert [limiter.acquire("k", 60, 60) for _ in range(60)] == [0.0] * 60


def test_refused_requests_do_not_push_the_window_further() -> None:
    clock = Clock()
    limiter = RateLimiter(clock)
    for _ in range(10):
        limiter.acquire("k", 10, 10)
    waits = [limiter.acquire("k", 10, 10) for _ in range(100)]
    assert max(waits) == pytest.approx(6.0)  # hammering while refused does not lengthen the wait
    clock.now += 6.0
    assert limiter.acquire("k", 10, 10) == 0.0


def test_callers_are_counted_by_key_id_or_subject_never_by_secret() -> None:
    assert key_of(Principal("admin", "t1", credential_id="k1")) == "key:k1"
    assert key_of(Principal("member", "t1", subject_id="m1")) == "member:t1:m1"
    assert key_of(Principal("member", "t2", subject_id="m1")) != key_of(Principal("member", "t1", subject_id="m1"))


def test_limit_off_with_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOCONTACT_RATE_LIMIT_PER_MINUTE", "0")
    limiter = RateLimiter(Clock())
    for _ in range(10_000):
        limiter.check(Principal("admin", "t", credential_id="k"))


def test_over_the_limit_is_a_problem_with_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOCONTACT_RATE_LIMIT_PER_MINUTE", "2")
    limiter = RateLimiter(Clock())
    caller = Principal("admin", "t", credential_id="k")
    limiter.check(caller)
    limiter.check(caller)
    with pytest.raises(Problem) as refused:
        limiter.check(caller)
    assert refused.value.status == 429 and refused.value.headers["Retry-After"] == "30"


def test_every_service_answers_429_per_key_with_retry_after(postgres_url: str, amqp_url: str,
                                                            stack_factory) -> None:  # type: ignore[no-untyped-def]
    """Real HTTP: the 6th request of a key within the minute is refused; another key is not."""
    stack = stack_factory(postgres_url, ["commitment", "checkin", "notification"], env={
        "NOCONTACT_OPERATOR_TOKEN": OPERATOR,
        "NOCONTACT_RATE_LIMIT_PER_MINUTE": "5",
    })
    headers = {"Authorization": f"Bearer {OPERATOR}"}
    first = httpx.post(stack.url("commitment", "/v1/tenants"), json={"name": "A"}, headers=headers)
    second = httpx.post(stack.url("commitment", "/v1/tenants"), json={"name": "B"}, headers=headers)
    assert first.status_code == second.status_code == 201
    key_a = {"Authorization": f"Bearer {first.json()['api_key']}"}
    key_b = {"Authorization": f"Bearer {second.json()['api_key']}"}

    for service, path in (("commitment", "/v1/commitments"), ("checkin", "/v1/settings"),
                          ("notification", "/v1/webhook-endpoints")):
        # The bus carries the keys to checkin/notification; until then they answer 401, which
        # is not counted (authentication comes first). The first 200 spends one of the five.
        for key in (key_a, key_b):
            eventually(lambda s=service, p=path, k=key: httpx.get(stack.url(s, p), headers=k, timeout=10), 200)
        statuses = [httpx.get(stack.url(service, path), headers=key_a, timeout=10).status_code for _ in range(5)]
        assert statuses == [200, 200, 200, 200, 429], (service, statuses)
        refused = httpx.get(stack.url(service, path), headers=key_a, timeout=10)
        assert refused.status_code == 429
        assert refused.headers["Content-Type"] == "application/problem+json"
        assert refused.json()["status"] == 429 and "rate limit" in refused.json()["detail"]
        assert 1 <= int(refused.headers["Retry-After"]) <= 12
        # Another tenant's key has its own bucket.
        assert httpx.get(stack.url(service, path), headers=key_b, timeout=10).status_code == 200
