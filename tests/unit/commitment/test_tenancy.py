"""Tenants, API keys and scoped-token claims."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.commitment.domain.tenancy import (
    API_KEY_ISSUED,
    API_KEY_REVOKED,
    TENANT_CREATED,
    TTL_MAX_SECONDS,
    ApiKeyNotFound,
    InvalidTenant,
    InvalidTokenRequest,
    Tenant,
    TenantConflict,
    TokenClaims,
    api_key_display_prefix,
    may_read_commitment,
    may_write_commitment,
    require_may_open_commitment,
    require_may_write_commitment,
)
from shared.auth import Principal, generate_api_key, hash_api_key, is_api_key_format
from shared.errors import Forbidden

from ._support import record

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def new_tenant() -> Tenant:
    return Tenant.create(tenant_id="t-1", name="Acme Support", now=NOW)


# ------------------------------------------------------------------ API keys


def test_generated_keys_are_prefixed_unique_and_high_entropy() -> None:
    keys = {generate_api_key() for _ in range(50)}
    assert len(keys) == 50
    for key in keys:
        assert key.startswith("nck_")
        assert len(key) == 4 + 43
        assert is_api_key_format(key)


def test_key_format_check() -> None:
    assert not is_api_key_format("nck_short")
    assert not is_api_key_format("eyJhbGciOiJIUzI1NiJ9.e30.sig")
    assert not is_api_key_format(generate_api_key() + "x")


def test_hash_is_sha256_hex() -> None:
    key = generate_api_key()
    digest = hash_api_key(key)
    assert digest == hashlib.sha256(key.encode()).hexdigest()
    assert len(digest) == 64
    assert hash_api_key(generate_api_key()) != digest


# -------------------------------------------------------------------- tenant


def test_create_tenant() -> None:
    t = new_tenant()
    [event] = t.pending_events
    assert event.type == TENANT_CREATED
    assert event.data == {"tenant_id": "t-1", "name": "Acme Support"}
    assert (t.id, t.name, t.version, t.stream_id) == (
        "t-1",
        "Acme Support",
        1,
        "tenant-t-1",
    )


@pytest.mark.parametrize("name", ["", "   ", "n" * 201, None, 3])
def test_tenant_name_rules(name: object) -> None:
    with pytest.raises(InvalidTenant) as exc:
        Tenant.create(tenant_id="t-1", name=name, now=NOW)
    assert exc.value.field == "name"


def test_tenant_name_edges() -> None:
    assert Tenant.create(tenant_id="t", name="A", now=NOW).name == "A"
    assert Tenant.create(tenant_id="t", name="n" * 200, now=NOW).version == 1


def test_issue_key_stores_only_hash_and_prefix() -> None:
    t = new_tenant()
    key = generate_api_key()
    [event] = t.issue_api_key(key_id="k-1", api_key=key, now=NOW)

    assert event.type == API_KEY_ISSUED
    assert event.data == {
        "tenant_id": "t-1",
        "key_id": "k-1",
        "key_hash": hash_api_key(key),
        "prefix": key[:12],
        "role": "admin",
    }
    assert key not in repr(event.data)
    assert api_key_display_prefix(key) == key[:12]
    assert [(k.key_id, k.key_hash, k.revoked) for k in t.api_keys.values()] == [("k-1", hash_api_key(key), False)]


def test_issue_key_rules() -> None:
    t = new_tenant()
    key = generate_api_key()
    t.issue_api_key(key_id="k-1", api_key=key, now=NOW)
    with pytest.raises(TenantConflict):
        t.issue_api_key(key_id="k-1", api_key=generate_api_key(), now=NOW)
    with pytest.raises(TenantConflict):
        t.issue_api_key(key_id="k-2", api_key=key, now=NOW)
    with pytest.raises(InvalidTenant) as exc:
        t.issue_api_key(key_id="k-3", api_key="hunter2", now=NOW)
    assert exc.value.field == "api_key"
    with pytest.raises(InvalidTenant) as exc:
        t.issue_api_key(key_id="", api_key=generate_api_key(), now=NOW)
    assert exc.value.field == "key_id"
    assert t.version == 2


def test_revoke_key() -> None:
    t = new_tenant()
    key = generate_api_key()
    t.issue_api_key(key_id="k-1", api_key=key, now=NOW)
    [event] = t.revoke_api_key("k-1", now=NOW + timedelta(hours=1))

    assert event.type == API_KEY_REVOKED
    assert event.data == {"tenant_id": "t-1", "key_id": "k-1"}
    assert t.api_keys["k-1"].revoked
    assert t.api_keys["k-1"].revoked_at == NOW + timedelta(hours=1)
    assert t.api_keys["k-1"].key_hash == hash_api_key(key)


def test_revoking_unknown_or_revoked_key_is_an_error() -> None:
    t = new_tenant()
    with pytest.raises(ApiKeyNotFound):
        t.revoke_api_key("k-404", now=NOW)
    t.issue_api_key(key_id="k-1", api_key=generate_api_key(), now=NOW)
    t.revoke_api_key("k-1", now=NOW)
    with pytest.raises(TenantConflict):
        t.revoke_api_key("k-1", now=NOW)
    assert t.version == 3


def test_tenant_rebuilt_from_events_equals_commanded_state() -> None:
    t = new_tenant()
    first, second = generate_api_key(), generate_api_key()
    t.issue_api_key(key_id="k-1", api_key=first, now=NOW)
    t.issue_api_key(key_id="k-2", api_key=second, now=NOW + timedelta(minutes=1))
    t.revoke_api_key("k-1", now=NOW + timedelta(minutes=2))

    copy = Tenant.from_events(record(t.pending_events, t.stream_id))
    assert copy == t
    assert copy.version == 4
    assert copy.expected_version == 4
    assert t.expected_version == 0
    assert copy.api_keys["k-2"].key_hash == hash_api_key(second) and not copy.api_keys["k-2"].revoked
    assert copy.api_keys["k-1"].key_hash == hash_api_key(first) and copy.api_keys["k-1"].revoked


def test_tenant_from_events_refuses_bad_streams() -> None:
    with pytest.raises(ValueError):
        Tenant.from_events([])
    t = new_tenant()
    t.issue_api_key(key_id="k-1", api_key=generate_api_key(), now=NOW)
    with pytest.raises(ValueError):
        Tenant.from_events(record(t.pending_events[1:], t.stream_id))


# -------------------------------------------------------------------- tokens


def issue(**overrides: Any) -> TokenClaims:
    kwargs: dict[str, Any] = {
        "tenant_id": "t-1",
        "role": "member",
        "subject_id": "m-1",
        "ttl_seconds": 3600,
        "now": NOW,
    }
    kwargs.update(overrides)
    return TokenClaims.issue(**kwargs)


def test_token_claims() -> None:
    claims = issue(now=NOW + timedelta(microseconds=500))
    assert claims.issued_at == NOW
    assert claims.expires_at == NOW + timedelta(hours=1)
    assert (claims.tenant_id, claims.role, claims.subject_id) == ("t-1", "member", "m-1")


@pytest.mark.parametrize("role", ["coach", "member"])
def test_every_scoped_role_may_be_issued(role: str) -> None:
    assert issue(role=role).role == role


def test_admin_tokens_are_refused() -> None:
    # Admin power comes from revocable API keys only; a token cannot be revoked.
    with pytest.raises(InvalidTokenRequest) as exc:
        issue(role="admin")
    assert exc.value.field == "role"


@pytest.mark.parametrize(
    ("ttl", "ok"),
    [(59, False), (60, True), (TTL_MAX_SECONDS, True), (TTL_MAX_SECONDS + 1, False)],
)
def test_ttl_bounds(ttl: int, ok: bool) -> None:
    if ok:
        assert issue(ttl_seconds=ttl).expires_at == NOW + timedelta(seconds=ttl)
    else:
        with pytest.raises(InvalidTokenRequest) as exc:
            issue(ttl_seconds=ttl)
        assert exc.value.field == "ttl_seconds"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"role": "operator"}, "role"),
        ({"role": None}, "role"),
        ({"subject_id": ""}, "subject_id"),
        ({"subject_id": "s" * 129}, "subject_id"),
        ({"subject_id": 7}, "subject_id"),
        ({"ttl_seconds": "3600"}, "ttl_seconds"),
        ({"ttl_seconds": True}, "ttl_seconds"),
        ({"ttl_seconds": None}, "ttl_seconds"),
    ],
)
def test_token_request_violations_name_the_field(
    overrides: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidTokenRequest) as exc:
        issue(**overrides)
    assert exc.value.field == field


def test_subject_id_edge() -> None:
    assert issue(subject_id="s" * 128).subject_id == "s" * 128


def test_access_rules_on_the_shared_principal() -> None:
    admin = Principal(role="admin", tenant_id="t-1", credential_id="k-1")
    member = Principal(role="member", tenant_id="t-1", subject_id="m-1")
    coach = Principal(role="coach", tenant_id="t-1", subject_id="coach-1")

    assert may_write_commitment(admin, "m-9") and may_read_commitment(admin, "m-9", None)
    assert may_write_commitment(member, "m-1")
    assert not may_write_commitment(member, "m-2")
    assert not may_read_commitment(member, "m-2", "m-1")
    assert may_read_commitment(coach, "m-1", "coach-1")
    assert not may_read_commitment(coach, "m-1", "coach-2")
    assert not may_read_commitment(coach, "m-1", None)
    assert not may_write_commitment(coach, "m-1")
    # A coach whose subject id happens to equal a member id is still not that member.
    assert not may_write_commitment(Principal(role="coach", tenant_id="t-1", subject_id="m-1"), "m-1")


def test_who_may_open_and_change_a_commitment() -> None:
    admin = Principal(role="admin", tenant_id="t-1", credential_id="k-1")
    member = Principal(role="member", tenant_id="t-1", subject_id="m-1")
    coach = Principal(role="coach", tenant_id="t-1", subject_id="coach-1")
    operator = Principal(role="operator", tenant_id=None)

    require_may_open_commitment(admin, "m-9")
    require_may_open_commitment(member, "m-1")
    require_may_write_commitment(member, "m-1")
    for caller, member_id in ((member, "m-2"), (coach, "m-1"), (operator, "m-1")):
        with pytest.raises(Forbidden):
            require_may_open_commitment(caller, member_id)
    with pytest.raises(Forbidden):
        require_may_write_commitment(coach, "m-1")
