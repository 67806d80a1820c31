"""Rate limits: the GCRA arithmetic, and over real HTTP one limit per credential across
processes, per credential identity (not spelling), on failed authentication per client
address, with RateLimit-* headers on every answer to a limited credential.

The cross-process tests run two gunicorn processes of the check-in service on one store
(replicas, as a deployment scales out), on PostgreSQL (the buckets in its UNLOGGED table)
and on SQLite (the buckets in the embedded setup's file). Credentials are appended to the
store as the commitment service records them: every service checks them there at once.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from shared.auth import Principal, encode_token, generate_api_key, hash_api_key
from shared.config import REPO_ROOT
from shared.db import engine_for
from shared.events import Metadata, NewEvent
from shared.eventstore import append
from shared.problems import Problem
from shared.ratelimit import FileBuckets, Quota, client_address, judge, key_of, normalise_subject
from shared.testing import bearer, eventually, wait_until
from tests.support.suite import Process, free_port

OPERATOR = "operator-" + uuid.uuid4().hex


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Limiter:
    """One credential bucket of the embedded setup's store, on a clock the test moves."""

    def __init__(self, path: Path) -> None:
        self.clock = Clock()
        self.buckets = FileBuckets(path, self.clock)

    def acquire(self, key: str, limit: int, burst: int) -> float:
        """Spend one request of `key`; 0.0 if allowed, else the seconds until one fits."""
        verdict = self.buckets.judge(address="address", credential=key, failures=None, requests=Quota(limit, burst))
        assert verdict.credential is not None
        return verdict.credential.retry_after_s


@pytest.fixture
def limiter(tmp_path: Path) -> Limiter:
    return Limiter(tmp_path / "buckets.sqlite3")


def test_a_burst_of_the_limit_then_one_request_per_interval(limiter: Limiter) -> None:
    clock = limiter.clock
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


def test_refused_requests_do_not_push_the_window_further(limiter: Limiter) -> None:
    for _ in range(10):
        limiter.acquire("k", 10, 10)
    waits = [limiter.acquire("k", 10, 10) for _ in range(100)]
    assert max(waits) == pytest.approx(6.0)  # hammering while refused does not lengthen the wait
    limiter.clock.now += 6.0
    assert limiter.acquire("k", 10, 10) == 0.0


def test_callers_are_counted_by_key_id_or_subject_never_by_secret() -> None:
    assert key_of(Principal("admin", "t1", credential_id="k1")) == "key:k1"
    assert key_of(Principal("member", "t1", subject_id="m1")) == "member:t1:m1"
    assert key_of(Principal("member", "t2", subject_id="m1")) != key_of(Principal("member", "t1", subject_id="m1"))


def test_a_subject_spelled_differently_is_the_same_bucket() -> None:
    spellings = ["ma1", "ma1 ", " MA1", "Ma1\t", "\uff2d\uff21\uff11"]
    assert {key_of(Principal("member", "t1", subject_id=s)) for s in spellings} == {"member:t1:ma1"}
    assert normalise_subject("Coach  Anna") == normalise_subject("coach anna")
    assert key_of(Principal("coach", "t1", subject_id="ma1")) != key_of(Principal("member", "t1", subject_id="ma1"))


def test_limits_off_with_zero(monkeypatch: pytest.MonkeyPatch, limiter: Limiter) -> None:
    from shared.ratelimit import credential_quota, failure_quota

    monkeypatch.setenv("NOCONTACT_RATE_LIMIT_PER_MINUTE", "0")
    monkeypatch.setenv("NOCONTACT_AUTH_FAILURES_PER_MINUTE", "0")
    assert credential_quota() is None and failure_quota() is None
    for authenticated in (True, False):
        for _ in range(1000):
            verdict = limiter.buckets.judge(address="a", credential="k" if authenticated else None, failures=None,
                                            requests=None)
            assert verdict.blocked is verdict.address is verdict.credential is None


def test_over_the_limit_is_a_problem_with_retry_after_and_ratelimit_headers() -> None:
    quota = Quota(2, 2)
    verdicts = []
    tat = None
    for _ in range(3):
        verdict, _, tat = judge(now=1000.0, address_tat=None, credential_tat=tat, authenticated=True, failures=None,
                                requests=quota)
        verdicts.append(verdict.credential)
        tat = tat if tat is not None else verdicts[-1].tat
    assert [v.allowed for v in verdicts] == [True, True, False]
    assert [v.headers()["RateLimit-Remaining"] for v in verdicts] == ["1", "0", "0"]
    refused: Problem = verdicts[2].refusal("rate limit")
    assert refused.status == 429 and refused.headers["Retry-After"] == "30"
    assert refused.headers["RateLimit-Limit"] == "2" and refused.headers["RateLimit-Reset"] == "60"


def test_failed_authentications_block_the_address_then_refill() -> None:
    failures = Quota(3, 3)
    address_tat = None
    answers = []
    for _ in range(4):
        verdict, new_tat, _ = judge(now=0.0, address_tat=address_tat, credential_tat=None, authenticated=False,
                                    failures=failures, requests=None)
        answers.append(verdict.address.allowed if verdict.address else "blocked")
        address_tat = new_tat if new_tat is not None else address_tat
    assert answers == [True, True, True, "blocked"]
    # Blocked: even a valid credential is refused, and nothing is spent from its bucket.
    verdict, _, spent = judge(now=0.0, address_tat=address_tat, credential_tat=None, authenticated=True,
                              failures=failures, requests=Quota(100, 100))
    assert verdict.blocked is not None and spent is None
    assert verdict.blocked.refusal("too many").headers["Retry-After"] == "20"
    verdict, _, _ = judge(now=20.0, address_tat=address_tat, credential_tat=None, authenticated=True,
                          failures=failures, requests=Quota(100, 100))
    assert verdict.blocked is None and verdict.credential is not None and verdict.credential.allowed


@pytest.mark.parametrize(("environ", "hops", "client"), [
    ({"REMOTE_ADDR": "192.0.2.1"}, 0, "192.0.2.1"),
    ({"REMOTE_ADDR": "192.0.2.1", "HTTP_X_FORWARDED_FOR": "198.51.100.7"}, 0, "192.0.2.1"),  # not trusted
    ({"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": "forged, 198.51.100.7"}, 1, "198.51.100.7"),
    ({"REMOTE_ADDR": "10.0.0.2"}, 1, "10.0.0.2"),  # no header: the peer
    ({"REMOTE_ADDR": "2001:db8:1:2:3:4:5:6"}, 0, "2001:db8:1:2::/64"),  # one subscriber's block
    ({"REMOTE_ADDR": "::ffff:192.0.2.9"}, 0, "192.0.2.9"),
])
def test_the_client_address(monkeypatch: pytest.MonkeyPatch, environ: dict[str, str], hops: int,
                            client: str) -> None:
    monkeypatch.setenv("NOCONTACT_TRUSTED_PROXIES", str(hops))
    assert client_address(environ) == client


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
        # The first 200 spends one of the five.
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


# -- several processes of one service ---------------------------------------------------------


class Replicas:
    """gunicorn processes of the check-in service, one worker each, on one store."""

    def __init__(self, database_url: str, log_dir: Path) -> None:
        self.database_url = database_url
        self.log_dir = log_dir
        self.processes: list[Process] = []

    def start(self, count: int, env: dict[str, str]) -> list[str]:
        urls = []
        for _ in range(count):
            port = free_port()
            command = [str(Path(sys.executable).parent / "gunicorn"), "-c",
                       str(REPO_ROOT / "infra" / "gunicorn.conf.py"), "--bind", f"127.0.0.1:{port}", "--workers", "1",
                       "services.checkin.wsgi:app"]
            process = Process(f"checkin-{port}", command,
                              {**os.environ, "NOCONTACT_DATABASE_URL": self.database_url, **env},
                              self.log_dir / f"checkin-{port}.log")
            process.start()
            self.processes.append(process)
            urls.append(f"http://127.0.0.1:{port}")
        for url in urls:
            wait_until(lambda u=url: _answers(u), 60, interval=0.1, message=f"{url}/healthz")
        return urls

    def stop(self) -> None:
        for process in self.processes:
            if process.popen is not None and process.popen.poll() is None:
                process.popen.terminate()
                process.popen.wait(30)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def replicas(database_url: str, tmp_path: Path) -> Iterator[Replicas]:
    running = Replicas(database_url, tmp_path)
    yield running
    running.stop()


def _tenant(engine: Engine) -> tuple[str, str, str]:
    """A tenant and an admin key, recorded as the commitment service records them."""
    tenant_id, key_id, key = uuid.uuid4().hex, uuid.uuid4().hex, generate_api_key()
    with engine.begin() as conn:
        append(conn, f"tenant-{tenant_id}", [
            NewEvent("tenant.created", {"tenant_id": tenant_id, "name": "Limits"}),
            NewEvent("api_key.issued", {"tenant_id": tenant_id, "key_id": key_id, "key_hash": hash_api_key(key),
                                        "prefix": key[:12], "role": "admin"}),
        ], metadata=Metadata(tenant_id=tenant_id, actor="test"))
    return tenant_id, key_id, key


def _token(tenant_id: str, key_id: str, subject: str) -> str:
    now = datetime.now(UTC)
    return encode_token(tenant_id=tenant_id, role="member", subject_id=subject, key_id=key_id,
                        token_id=uuid.uuid4().hex, issued_at=now, expires_at=now + timedelta(hours=1))


Get = Callable[..., httpx.Response]


def _round_robin(urls: list[str]) -> Get:
    turn = iter(range(10**6))

    def get(path: str, **kwargs: object) -> httpx.Response:
        return httpx.get(urls[next(turn) % len(urls)] + path, timeout=15, **kwargs)  # type: ignore[arg-type]

    return get


def test_one_limit_per_credential_across_processes(replicas: Replicas, database_url: str) -> None:
    """Five a minute for a key, whichever of two processes answers: the sixth is refused by
    both. Every answer to the key says where it stands (RateLimit-*), refusals included."""
    get = _round_robin(replicas.start(2, {"NOCONTACT_RATE_LIMIT_PER_MINUTE": "5"}))
    _, _, key = _tenant(engine_for(database_url))
    _, _, other = _tenant(engine_for(database_url))
    answers = [get("/v1/settings", headers=bearer(key)) for _ in range(5)]
    assert [a.status_code for a in answers] == [200] * 5
    assert [a.headers["RateLimit-Remaining"] for a in answers] == ["4", "3", "2", "1", "0"]
    assert {a.headers["RateLimit-Limit"] for a in answers} == {"5"}
    assert all(1 <= int(a.headers["RateLimit-Reset"]) <= 60 for a in answers)
    for _ in range(2):  # once from each process
        refused = get("/v1/settings", headers=bearer(key))
        assert refused.status_code == 429, refused.text
        assert refused.headers["Content-Type"] == "application/problem+json"
        assert 1 <= int(refused.headers["Retry-After"]) <= 12 and refused.headers["RateLimit-Remaining"] == "0"
    assert get("/v1/settings", headers=bearer(other)).status_code == 200


def test_every_answer_to_a_limited_credential_carries_the_headers(replicas: Replicas, database_url: str) -> None:
    get = _round_robin(replicas.start(1, {"NOCONTACT_RATE_LIMIT_PER_MINUTE": "50"}))
    tenant_id, key_id, key = _tenant(engine_for(database_url))
    answers = [
        get("/v1/settings", headers=bearer(key)),  # 200
        get(f"/v1/commitments/{uuid.uuid4()}/streak", headers=bearer(key)),  # 404
        get("/v1/commitments/x/check-ins", headers=bearer(key), params={"limit": "0"}),  # 4xx of validation
        get("/v1/settings", headers=bearer(_token(tenant_id, key_id, "m-1"))),  # a member token: 403
    ]
    assert [a.status_code for a in answers][:2] == [200, 404]
    remaining = [int(a.headers["RateLimit-Remaining"]) for a in answers[:3]]
    assert remaining == [49, 48, 47], remaining
    assert answers[3].headers["RateLimit-Remaining"] == "49"  # the member's own bucket
    unauthenticated = get("/v1/settings")
    assert unauthenticated.status_code == 401 and "RateLimit-Remaining" not in unauthenticated.headers


def test_a_token_subject_spelled_differently_is_not_a_fresh_bucket(replicas: Replicas, database_url: str) -> None:
    get = _round_robin(replicas.start(2, {"NOCONTACT_RATE_LIMIT_PER_MINUTE": "5"}))
    tenant_id, key_id, _ = _tenant(engine_for(database_url))
    spellings = ["ma1", "ma1 ", "MA1", " Ma1", "\uff2d\uff21\uff11"]
    statuses = [get("/v1/settings", headers=bearer(_token(tenant_id, key_id, s))).status_code for s in spellings]
    assert 429 not in statuses, statuses
    again = [get("/v1/settings", headers=bearer(_token(tenant_id, key_id, s))).status_code for s in spellings]
    assert again == [429] * len(spellings), again
    assert get("/v1/settings", headers=bearer(_token(tenant_id, key_id, "ma2"))).status_code != 429


def test_failed_authentications_are_limited_per_client_address(replicas: Replicas, database_url: str) -> None:
    """Five failures a minute per address over both processes; then the address is refused
    whatever it presents (a valid key too: a list of leaked keys is not tried at speed),
    while a valid key from elsewhere works."""
    urls = replicas.start(2, {"NOCONTACT_AUTH_FAILURES_PER_MINUTE": "5", "NOCONTACT_TRUSTED_PROXIES": "1"})
    get = _round_robin(urls)
    _, _, key = _tenant(engine_for(database_url))
    attacker = {"X-Forwarded-For": "198.51.100.66"}
    statuses = [get("/v1/settings", headers={**attacker, **bearer(generate_api_key())}).status_code
                for _ in range(5)]
    assert statuses == [401] * 5
    for headers in (bearer(generate_api_key()), bearer("not-a-token"), {}, bearer(key)):
        refused = get("/v1/settings", headers={**attacker, **headers})
        assert refused.status_code == 429, refused.text
        assert refused.headers["Content-Type"] == "application/problem+json"
        assert 1 <= int(refused.headers["Retry-After"]) <= 12
    # Another client (another forwarded address, or the proxy's own peer address) is not blocked.
    assert get("/v1/settings", headers={"X-Forwarded-For": "198.51.100.67", **bearer(key)}).status_code == 200
    assert get("/v1/settings", headers=bearer(generate_api_key())).status_code == 401
    # Without a trusted proxy, what a client writes in X-Forwarded-For is not its address.
    direct = replicas.start(1, {"NOCONTACT_AUTH_FAILURES_PER_MINUTE": "5"})[0]
    for n in range(6):
        forged = {"X-Forwarded-For": f"203.0.113.{n}", **bearer(generate_api_key())}
        answer = httpx.get(direct + "/v1/settings", headers=forged, timeout=15)
    assert answer.status_code == 429, "a forged X-Forwarded-For escaped the address's limit"
