"""The per-process cache of API-key lookups: saves the query, never stretches a revocation.

Against the real credentials tables (PostgreSQL and SQLite), with the cache's TTL set per test.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, event, insert, update

from services.checkin.tables import CREDENTIALS
from shared import auth
from shared.auth import API_KEY_CACHE, ApiKeyCache, Principal, authenticate, credentials_projection, hash_api_key
from shared.db import engine_for, read
from shared.events import RecordedEvent
from shared.problems import Problem
from shared.testing import wait_until

KEY = "nck_" + "a" * 43


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    API_KEY_CACHE.clear()
    yield
    API_KEY_CACHE.clear()


@pytest.fixture
def store(database_url: str) -> Engine:
    return engine_for(database_url)


def _issue(engine: Engine, key: str = KEY, key_id: str = "k1", tenant_id: str = "t1") -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(CREDENTIALS.api_keys).values(
                key_id=key_id, tenant_id=tenant_id, key_hash=hash_api_key(key), prefix=key[:8],
                issued_at=datetime.now(UTC),
            )
        )


def _revoke_row(engine: Engine, key_id: str = "k1") -> None:
    """Revoke behind the cache's back (as another process's fold would)."""
    with engine.begin() as conn:
        conn.execute(
            update(CREDENTIALS.api_keys).where(CREDENTIALS.api_keys.c.key_id == key_id).values(
                revoked_at=datetime.now(UTC)
            )
        )


def _auth(engine: Engine, key: str = KEY) -> Principal:
    with read(engine) as conn:
        return authenticate(conn, CREDENTIALS, f"Bearer {key}")


def _refused(engine: Engine, key: str = KEY) -> bool:
    try:
        _auth(engine, key)
    except Problem as problem:
        assert problem.status == 401
        return True
    return False


class _Queries:
    """Counts the lookups of API keys an engine runs (to see the cache spare them)."""

    def __init__(self, engine: Engine) -> None:
        self.count = 0
        self.engine = engine
        event.listen(engine, "before_cursor_execute", self._count)

    def _count(self, _conn: object, _cursor: object, statement: str, *_args: object) -> None:
        self.count += CREDENTIALS.api_keys.name in statement

    def close(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._count)


def test_a_hit_runs_no_query_and_a_revocation_elsewhere_lands_within_the_ttl(
    store: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOCONTACT_AUTH_CACHE_TTL_S", "0.3")
    _issue(store)
    assert _auth(store) == Principal(role="admin", tenant_id="t1", credential_id="k1")
    queries = _Queries(store)
    try:
        for _ in range(5):
            assert _auth(store).credential_id == "k1"
        assert queries.count == 0, "a cached key still queried the database"
    finally:
        queries.close()
    _revoke_row(store)
    revoked_at = time.monotonic()
    wait_until(lambda: _refused(store), 2, message="the revoked key to be refused")
    assert time.monotonic() - revoked_at < 0.3 + 0.2


def test_folding_a_revocation_forgets_the_key_at_once(store: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOCONTACT_AUTH_CACHE_TTL_S", "60")
    _issue(store)
    assert _auth(store).credential_id == "k1"
    projection = credentials_projection("checkin", CREDENTIALS)
    now = datetime.now(UTC)
    revoked = RecordedEvent(
        uuid.uuid4(), "api_key.revoked", 1, "tenant-t1", 2, 2, {"tenant_id": "t1", "key_id": "k1"},
        "t1", None, None, "test", now, now,
    )
    with store.begin() as conn:
        projection.apply(conn, revoked)
    assert _refused(store), "a 60 s cache outlived the revocation this process folded"


def test_a_lookup_racing_the_revocation_is_not_cached(store: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fold forgets before its transaction commits: a lookup reading the old row meanwhile
    must not put the key back for another TTL."""
    monkeypatch.setenv("NOCONTACT_AUTH_CACHE_TTL_S", "60")
    _issue(store)
    auth.forget_api_key("k1")  # the fold ran, its transaction has not committed yet
    assert _auth(store).credential_id == "k1"  # the row still reads as valid
    _revoke_row(store)  # ... and now it commits
    assert _refused(store)


def test_failures_are_not_cached(store: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOCONTACT_AUTH_CACHE_TTL_S", "60")
    assert _refused(store)
    _issue(store)  # the key's issue is folded: it works at once
    assert _auth(store).credential_id == "k1"


def test_ttl_zero_turns_the_cache_off(store: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOCONTACT_AUTH_CACHE_TTL_S", "0")
    _issue(store)
    assert _auth(store).credential_id == "k1"
    _revoke_row(store)
    assert _refused(store)


def test_entries_are_per_database(postgres_url: str, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """One process may serve several stores (tests, a service per schema): a key valid in
    one is not valid in another because it was cached there."""
    monkeypatch.setenv("NOCONTACT_AUTH_CACHE_TTL_S", "60")
    first, second = engine_for(postgres_url), engine_for(sqlite_url)
    _issue(first)
    assert _auth(first).credential_id == "k1"
    assert _refused(second)


def test_the_cache_is_bounded_and_thread_safe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOCONTACT_AUTH_CACHE_TTL_S", "60")
    cache = ApiKeyCache(max_entries=100)
    errors: list[BaseException] = []

    def hammer(worker: int) -> None:
        try:
            for i in range(2000):
                key = (worker, i)
                cache.put(key, Principal("admin", "t", credential_id=f"k{worker}-{i}"), cache.generation())
                cache.get(key)
                if i % 97 == 0:
                    cache.forget(f"k{worker}-{i}")
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=hammer, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(cache._entries) <= 100
    # The newest entries survive, the oldest were evicted.
    cache.put("last", Principal("admin", "t", credential_id="last"), cache.generation())
    assert cache.get("last") is not None


def test_the_owner_of_revocation_reads_through_the_cache(store: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """cache=False (the commitment service): a revocation by another worker counts at once."""
    monkeypatch.setenv("NOCONTACT_AUTH_CACHE_TTL_S", "60")
    _issue(store)
    with read(store) as conn:
        assert authenticate(conn, CREDENTIALS, f"Bearer {KEY}", cache=False).credential_id == "k1"
    _revoke_row(store)
    with read(store) as conn, pytest.raises(Problem) as refused:
        authenticate(conn, CREDENTIALS, f"Bearer {KEY}", cache=False)
    assert refused.value.status == 401
