"""Scoped tokens as the commitment service issues them and every service reads them
(`shared.auth`): the claims on the wire, expiry, and what is never accepted."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest

from services.commitment.handlers import issue_token
from shared import config
from shared.auth import TOKEN_ALGORITHM, Principal, encode_token, token_principal
from shared.clock import utcnow
from shared.problems import Problem

ADMIN = Principal(role="admin", tenant_id="t-1", credential_id="k-1")


def _signed(payload: dict[str, Any]) -> str:
    return jwt.encode(payload, config.secret_key(), algorithm=TOKEN_ALGORITHM)


def _refused(token: str) -> bool:
    with pytest.raises(Problem) as refused:
        token_principal(token)
    return refused.value.status == 401


def test_an_issued_token_carries_its_claims_and_names_its_principal() -> None:
    now = utcnow().replace(microsecond=0)
    token, expires_at = issue_token(ADMIN, role="member", subject_id="m-1", ttl_seconds=3600,
                                    now=now + timedelta(microseconds=500))
    issued = int(now.timestamp())
    claims = jwt.decode(token, options={"verify_signature": False})
    # Contract v1.1: a token names the key that minted it and has an id of its own.
    assert claims == {"sub": "m-1", "role": "member", "tid": "t-1", "iat": issued, "exp": issued + 3600,
                      "key_id": "k-1", "jti": claims["jti"]}
    assert str(uuid.UUID(claims["jti"])) == claims["jti"]
    assert issue_token(ADMIN, role="member", subject_id="m-1", ttl_seconds=3600, now=now)[0] != token
    assert expires_at == datetime.fromtimestamp(issued + 3600, UTC)
    assert token_principal(token) == Principal(role="member", tenant_id="t-1", subject_id="m-1")


def test_expired_tokens_are_refused() -> None:
    now = utcnow()
    expired = encode_token(tenant_id="t-1", role="member", subject_id="m-1", key_id="k-1", token_id="j-1",
                           issued_at=now - timedelta(hours=2), expires_at=now - timedelta(seconds=1))
    assert _refused(expired)
    alive = encode_token(tenant_id="t-1", role="member", subject_id="m-1", key_id="k-1", token_id="j-2",
                         issued_at=now, expires_at=now + timedelta(seconds=60))
    assert token_principal(alive).subject_id == "m-1"


def test_admin_tokens_are_never_accepted() -> None:
    # Admin power comes from revocable API keys only; a token cannot be revoked.
    now = utcnow()
    admin = encode_token(tenant_id="t-1", role="admin", subject_id="a", key_id="k-1", token_id="j-1",
                         issued_at=now, expires_at=now + timedelta(hours=1))
    assert _refused(admin)


def test_malformed_claims_are_refused() -> None:
    now = int(utcnow().timestamp())
    payload: dict[str, Any] = {"sub": "m-1", "role": "member", "tid": "t-1", "iat": now, "exp": now + 60,
                               "key_id": "k-1", "jti": "j-1"}
    assert token_principal(_signed(payload)).tenant_id == "t-1"
    for broken in (
        {k: v for k, v in payload.items() if k != "tid"},
        # Minted before contract v1.1: no key to revoke it with, no id to revoke it by.
        {k: v for k, v in payload.items() if k != "key_id"},
        {k: v for k, v in payload.items() if k != "jti"},
        {**payload, "jti": ""},
        {**payload, "role": "root"},
        {**payload, "sub": ""},
        {**payload, "tid": ""},
        {**payload, "exp": "tomorrow"},
    ):
        assert _refused(_signed(broken)), broken
    assert _refused(jwt.encode(payload, "not the key of this suite, however long", algorithm=TOKEN_ALGORITHM))
