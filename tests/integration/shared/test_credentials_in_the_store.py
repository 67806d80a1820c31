"""Credentials are checked in the store itself: a key or token counts, or stops counting, on
every service the moment the event that issued or revoked it is committed. No process
remembers a lookup, and the lookups are index probes, not scans of the log.

Against the real event store (PostgreSQL and SQLite), as `shared.auth.lookup` reads it, and
against a service's credentials read model (what a service with a database of its own uses).
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from services.checkin.tables import CREDENTIALS
from shared.auth import (
    TOKEN_REVOKED,
    Principal,
    _found_parameters,
    _found_sql,
    credentials_projection,
    encode_token,
    generate_api_key,
    hash_api_key,
    lookup,
    present,
)
from shared.db import engine_for, read
from shared.events import Metadata, NewEvent, RecordedEvent
from shared.eventstore import append


@pytest.fixture
def store(database_url: str) -> Engine:
    return engine_for(database_url)


def _append(engine: Engine, tenant_id: str, event_type: str, data: dict[str, object]) -> RecordedEvent:
    with engine.begin() as conn:
        (event,) = append(conn, f"tenant-{tenant_id}", [NewEvent(event_type, {"tenant_id": tenant_id, **data})],
                          metadata=Metadata(tenant_id=tenant_id, actor="test"))
    return event


def _issue(engine: Engine, tenant_id: str) -> tuple[str, str]:
    key, key_id = generate_api_key(), uuid.uuid4().hex
    _append(engine, tenant_id, "api_key.issued", {"key_id": key_id, "key_hash": hash_api_key(key),
                                                  "prefix": key[:12], "role": "admin"})
    return key, key_id


def _token(tenant_id: str, key_id: str, subject: str = "m-1") -> tuple[str, str]:
    now, token_id = datetime.now(UTC), uuid.uuid4().hex
    token = encode_token(tenant_id=tenant_id, role="member", subject_id=subject, key_id=key_id, token_id=token_id,
                         issued_at=now, expires_at=now + timedelta(hours=1))
    return token, token_id


def _who(engine: Engine, credential: str, tables: object = None) -> Principal | None:
    with read(engine) as conn:
        return lookup(conn, present(f"Bearer {credential}"), tables)  # type: ignore[arg-type]


def test_a_key_counts_from_its_event_and_stops_at_its_revocation(store: Engine) -> None:
    tenant = uuid.uuid4().hex
    key, key_id = _issue(store, tenant)
    assert _who(store, key) == Principal(role="admin", tenant_id=tenant, credential_id=key_id)
    other, _ = _issue(store, tenant)
    _append(store, tenant, "api_key.revoked", {"key_id": key_id})
    assert _who(store, key) is None
    assert _who(store, other) is not None, "revoking one key revoked another"
    assert _who(store, generate_api_key()) is None


def test_a_token_dies_with_its_key_or_by_its_own_revocation(store: Engine) -> None:
    tenant = uuid.uuid4().hex
    _, key_id = _issue(store, tenant)
    first, first_id = _token(tenant, key_id)
    second, _ = _token(tenant, key_id, "m-2")
    assert _who(store, first) == Principal(role="member", tenant_id=tenant, subject_id="m-1")
    _append(store, tenant, TOKEN_REVOKED, {"token_id": first_id, "key_id": key_id,
                                           "expires_at": datetime.now(UTC).isoformat()})
    assert _who(store, first) is None
    assert _who(store, second) is not None, "revoking one token revoked another of the same key"
    _append(store, tenant, "api_key.revoked", {"key_id": key_id})
    assert _who(store, second) is None


def test_the_read_model_of_a_service_with_its_own_database_says_the_same(store: Engine) -> None:
    """Folded from the same events (over the bus when the databases are split)."""
    tenant = uuid.uuid4().hex
    projection = credentials_projection("checkin", CREDENTIALS)
    key, key_id = generate_api_key(), uuid.uuid4().hex
    now = datetime.now(UTC)
    token, token_id = _token(tenant, key_id)
    other, _ = _token(tenant, key_id, "m-2")
    events = [
        ("api_key.issued", {"key_id": key_id, "key_hash": hash_api_key(key), "prefix": key[:12], "role": "admin"}),
        (TOKEN_REVOKED, {"token_id": token_id, "key_id": key_id, "expires_at": now.isoformat()}),
        ("api_key.revoked", {"key_id": key_id}),
    ]
    seen: list[tuple[Principal | None, ...]] = []
    for event_type, data in events:
        event = _append(store, tenant, event_type, data)
        with store.begin() as conn:
            projection.apply(conn, event)
        seen.append(tuple(_who(store, credential, CREDENTIALS) for credential in (key, token, other)))
    key_principal = Principal(role="admin", tenant_id=tenant, credential_id=key_id)
    member = Principal(role="member", tenant_id=tenant, subject_id="m-1")
    member_2 = Principal(role="member", tenant_id=tenant, subject_id="m-2")
    assert seen == [(key_principal, member, member_2), (key_principal, None, member_2), (None, None, None)]


def test_what_can_never_be_valid_is_not_looked_up(store: Engine) -> None:
    for header in (None, "", "Basic dXNlcjpwYXNz", "Bearer", "Bearer not-a-token"):
        presented = present(header)
        assert presented.refusal, header
        with read(store) as conn:
            assert lookup(conn, presented) is None


@pytest.mark.parametrize("credential", ["api key", "token"])
def test_each_lookup_is_an_index_probe(store: Engine, credential: str) -> None:
    """The queries of `shared.auth` spell each expression as the migration's indexes do: a
    lookup costs the same with ten events in the store or ten million."""
    tenant = uuid.uuid4().hex
    key, key_id = _issue(store, tenant)
    if credential == "api key":
        presented, indexes = present(f"Bearer {key}"), ["events_api_key_issued", "events_api_key_revoked"]
    else:
        presented, indexes = present(f"Bearer {_token(tenant, key_id)[0]}"), ["events_api_key_revoked",
                                                                               "events_token_revoked"]
    sql = _found_sql(presented, store.dialect.name, None)
    with read(store) as conn:
        if store.dialect.name == "postgresql":
            conn.execute(text("SET LOCAL enable_seqscan = off"))  # a tiny table would be scanned anyway
            plan = "\n".join(conn.execute(text(f"EXPLAIN {sql}"), _found_parameters(presented)).scalars())
        else:
            rows = conn.execute(text(f"EXPLAIN QUERY PLAN {sql}"), _found_parameters(presented))
            plan = "\n".join(str(row[-1]) for row in rows)
    for index in indexes:
        assert index in plan, plan
    assert "Seq Scan" not in plan and not re.search(r"\bSCAN [ir]\b", plan), plan
