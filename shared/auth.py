"""Credentials, accepted alike by every service.

- The operator token (NOCONTACT_OPERATOR_TOKEN) creates tenants.
- API keys (role admin, one tenant) are issued and revoked by the commitment service as
  events (`api_key.issued`, `api_key.revoked`). Every service folds those events into its
  own credentials read model (inline in the commitment service, from the bus in the
  others), so a revocation reaches all three within the relay's latency and no service
  reads another's tables. Keys are looked up by their SHA-256: they carry 256 random bits,
  so a slow KDF would add latency to every request and no security.
- Scoped tokens (role coach or member) are JWTs signed with NOCONTACT_SECRET_KEY: any
  service verifies them without a lookup, and they expire.

Successful API-key lookups are remembered per process for NOCONTACT_AUTH_CACHE_TTL_S
(default 0.25 s; 0 turns it off): the lookup was ~10% of a check-in request. The revocation
bound stays: the bus takes ~100-200 ms to bring `api_key.revoked` to the other services, the
cache adds at most the TTL, well within the 1 s the suite promises. The process that folds
a revocation forgets the key at once (see `forget_api_key`); another process of the same
service (a second gunicorn worker) may accept it for at most the TTL. Failures are never
cached, so a newly issued key works as soon as its event is folded.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jwt
from sqlalchemy import Column, Connection, MetaData, String, Table, insert, select, update

from shared import config
from shared.events import RecordedEvent
from shared.problems import Problem
from shared.projection import Projection
from shared.schema import UtcDateTime
from shared.topology import CREDENTIAL_EVENTS

API_KEY_PREFIX = "nck_"
# 32 random bytes = 256 bits, encoded url-safe base64 without padding: 43 characters.
_API_KEY_RANDOM_BYTES = 32
_API_KEY_FORMAT = re.compile(r"nck_[A-Za-z0-9_-]{43}", re.ASCII)
TOKEN_ALGORITHM = "HS256"
# Roles a scoped token may carry. Admin power comes only from API keys: a token cannot be
# revoked, so an admin token would be a standing key that survives every revocation.
TOKEN_ROLES: tuple[str, ...] = ("coach", "member")


@dataclass(frozen=True)
class Principal:
    """Who is calling: a tenant's admin key, a coach or member token, or the operator."""

    role: str  # operator | admin | coach | member
    tenant_id: str | None
    subject_id: str | None = None
    credential_id: str | None = None

    @property
    def actor(self) -> str:
        """How the caller is recorded in event metadata (never the secret itself)."""
        if self.role == "operator":
            return "operator"
        if self.role == "admin":
            return f"api_key:{self.credential_id}"
        return f"{self.role}:{self.subject_id}"


# -- API keys ---------------------------------------------------------------------------


def generate_api_key() -> str:
    """A new API key: ``nck_`` + 43 url-safe characters from ``secrets`` (256 bits).

    The fixed prefix tells an API key from a JWT without trying to decode it, and lets
    secret scanners recognise leaked keys.
    """
    return API_KEY_PREFIX + secrets.token_urlsafe(_API_KEY_RANDOM_BYTES)


def is_api_key_format(credential: str) -> bool:
    """True when `credential` is shaped like a key from `generate_api_key`."""
    return _API_KEY_FORMAT.fullmatch(credential) is not None


def hash_api_key(api_key: str) -> str:
    """The stored form of a key, and what it is looked up by: sha256, hex.

    Deterministic, so a key is found by one indexed query. A slow KDF (bcrypt, argon2)
    would only add latency: KDFs slow down guessing low-entropy passwords, and these keys
    carry 256 random bits, so no dictionary or brute force against a leaked hash works.
    """
    return hashlib.sha256(api_key.encode()).hexdigest()


# -- read model ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CredentialTables:
    tenants: Table
    api_keys: Table


def credential_tables(metadata: MetaData, service: str) -> CredentialTables:
    """The credentials read model of one service (tables prefixed with its name)."""
    tenants = Table(
        f"{service}_tenants",
        metadata,
        Column("tenant_id", String(64), primary_key=True),
        Column("name", String(200), nullable=False),
        Column("created_at", UtcDateTime(), nullable=False),
    )
    api_keys = Table(
        f"{service}_api_keys",
        metadata,
        Column("key_id", String(64), primary_key=True),
        Column("tenant_id", String(64), nullable=False, index=True),
        Column("key_hash", String(64), nullable=False, unique=True),
        Column("prefix", String(32)),
        Column("issued_at", UtcDateTime(), nullable=False),
        Column("revoked_at", UtcDateTime()),
    )
    return CredentialTables(tenants, api_keys)


def credentials_projection(service: str, tables: CredentialTables) -> Projection:
    def apply(conn: Connection, event: RecordedEvent) -> None:
        data = event.data
        if event.type == "tenant.created":
            exists = conn.execute(
                select(tables.tenants.c.tenant_id).where(tables.tenants.c.tenant_id == data["tenant_id"])
            ).first()
            if not exists:
                conn.execute(
                    insert(tables.tenants).values(
                        tenant_id=data["tenant_id"], name=data["name"], created_at=event.occurred_at
                    )
                )
        elif event.type == "api_key.issued":
            exists = conn.execute(
                select(tables.api_keys.c.key_id).where(tables.api_keys.c.key_id == data["key_id"])
            ).first()
            if not exists:
                conn.execute(
                    insert(tables.api_keys).values(
                        key_id=data["key_id"],
                        tenant_id=event.tenant_id or data.get("tenant_id"),
                        key_hash=data["key_hash"],
                        prefix=data.get("prefix"),
                        issued_at=event.occurred_at,
                    )
                )
        elif event.type == "api_key.revoked":
            forget_api_key(data["key_id"])
            conn.execute(
                update(tables.api_keys)
                .where(tables.api_keys.c.key_id == data["key_id"], tables.api_keys.c.revoked_at.is_(None))
                .values(revoked_at=event.occurred_at)
            )

    return Projection(
        name=f"{service}.credentials",
        tables=[tables.api_keys, tables.tenants],
        event_types=CREDENTIAL_EVENTS,
        apply=apply,
    )


# -- tokens ----------------------------------------------------------------------------


def encode_token(*, tenant_id: str, role: str, subject_id: str, expires_at: datetime,
                 issued_at: datetime) -> str:
    payload = {
        "tid": tenant_id,
        "role": role,
        "sub": subject_id,
        "iat": int(issued_at.timestamp()),
        "exp": int(expires_at.timestamp()),
    }
    return jwt.encode(payload, config.secret_key(), algorithm=TOKEN_ALGORITHM)


def token_principal(token: str) -> Principal:
    """The coach or member a scoped token names; a 401 problem when it is not a token this
    suite signed, has expired, or claims something no issued token claims."""
    try:
        claims = jwt.decode(
            token,
            config.secret_key(),
            algorithms=[TOKEN_ALGORITHM],
            options={"require": ["exp", "iat", "sub", "tid", "role"]},
        )
    except jwt.ExpiredSignatureError as error:
        raise unauthorized("the token has expired") from error
    except jwt.PyJWTError as error:
        raise unauthorized("the credential is not valid") from error
    # Only coach and member tokens are ever issued. An "admin" token would be an admin
    # credential that no revocation reaches (admin rights belong to revocable API keys).
    if claims.get("role") not in TOKEN_ROLES:
        raise unauthorized("the token's role is not valid")
    tenant_id, subject_id = claims.get("tid"), claims.get("sub")
    if not (isinstance(tenant_id, str) and tenant_id and isinstance(subject_id, str) and subject_id):
        raise unauthorized("the credential is not valid")
    return Principal(role=claims["role"], tenant_id=tenant_id, subject_id=subject_id)


# -- authentication ----------------------------------------------------------------------


def auth_cache_ttl_s() -> float:
    """How long a successful API-key lookup is reused (NOCONTACT_AUTH_CACHE_TTL_S; 0: never)."""
    try:
        return max(float(os.environ.get("NOCONTACT_AUTH_CACHE_TTL_S", "0.25")), 0.0)
    except ValueError:
        return 0.25


class ApiKeyCache:
    """Per-process, thread-safe, bounded memory of successful API-key lookups.

    Entries expire after the TTL (read when stored, so a test or an operator can change
    it without a restart). `forget` drops a revoked key's entries and refuses, for a while,
    to store it again: a lookup that read the row just before the revocation committed
    must not put it back for another TTL. Lookups that began before a `forget` are not
    stored either (the generation counter), whichever key they were for.
    """

    def __init__(self, max_entries: int = 10_000, tombstone_s: float = 5.0) -> None:
        self.max_entries = max_entries
        self.tombstone_s = tombstone_s
        self._entries: OrderedDict[Any, tuple[float, Principal]] = OrderedDict()
        self._revoked: dict[str, float] = {}
        self._generation = 0
        self._lock = threading.Lock()

    def generation(self) -> int:
        return self._generation

    def get(self, key: Any) -> Principal | None:
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[0] <= now:
                del self._entries[key]
                return None
            return entry[1]

    def put(self, key: Any, principal: Principal, generation: int) -> None:
        ttl = auth_cache_ttl_s()
        if ttl <= 0:
            return
        now = time.monotonic()
        with self._lock:
            if generation != self._generation:
                return
            until = self._revoked.get(principal.credential_id or "")
            if until is not None and until > now:
                return
            self._entries[key] = (now + ttl, principal)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def forget(self, key_id: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._generation += 1
            for key in [k for k, (_, p) in self._entries.items() if p.credential_id == key_id]:
                del self._entries[key]
            self._revoked = {k: t for k, t in self._revoked.items() if t > now}
            self._revoked[key_id] = now + self.tombstone_s

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._entries.clear()
            self._revoked.clear()


API_KEY_CACHE = ApiKeyCache()


def forget_api_key(key_id: str) -> None:
    """Stop accepting `key_id` from this process's cache (called as a revocation is folded)."""
    API_KEY_CACHE.forget(key_id)


def unauthorized(detail: str) -> Problem:
    return Problem(401, detail, headers={"WWW-Authenticate": 'Bearer realm="nocontact"'})


def authenticate(conn: Connection, tables: CredentialTables, authorization: str | None,
                 *, cache: bool = True) -> Principal:
    """The principal behind an Authorization header; raises a 401 problem otherwise.

    `cache=False` for the service that owns revocation (commitment): there a revoked key
    must stop working at once, on every one of its workers.
    """
    if not authorization:
        raise unauthorized("an Authorization: Bearer credential is required")
    scheme, _, credential = authorization.strip().partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        raise unauthorized("the Authorization header must be 'Bearer <credential>'")
    operator = config.operator_token()
    if operator and hmac.compare_digest(credential.encode(), operator.encode()):
        return Principal(role="operator", tenant_id=None)
    if credential.startswith(API_KEY_PREFIX):
        key_hash = hash_api_key(credential)
        # The engine's URL and the table tell services (and test schemas) of one process apart.
        cache_key = (conn.engine.url, tables.api_keys.name, key_hash)
        found = API_KEY_CACHE.get(cache_key) if cache else None
        if found is not None:
            return found
        started = API_KEY_CACHE.generation()
        row = conn.execute(
            select(tables.api_keys.c.key_id, tables.api_keys.c.tenant_id).where(
                tables.api_keys.c.key_hash == key_hash,
                tables.api_keys.c.revoked_at.is_(None),
            )
        ).first()
        if row is None:
            raise unauthorized("the API key is not valid")
        found = Principal(role="admin", tenant_id=row.tenant_id, credential_id=row.key_id)
        if cache:
            API_KEY_CACHE.put(cache_key, found, started)
        return found
    return token_principal(credential)
