"""Credentials, accepted alike by every service, and honoured at once by every service.

- The operator token (NOCONTACT_OPERATOR_TOKEN) creates tenants and issues keys to them.
- API keys (role admin, one tenant) are issued and revoked by the commitment service as
  events of the tenant's stream (`api_key.issued`, `api_key.revoked`). Keys are looked up
  by their SHA-256: they carry 256 random bits, so a slow KDF would add latency to every
  request and no security.
- Scoped tokens (role coach or member) are JWTs signed with NOCONTACT_SECRET_KEY. Each
  names the key that minted it (`key_id`) and has an id of its own (`jti`): revoking the
  key revokes its tokens, and `token.revoked` revokes one token. A token without them
  (minted before contract v1.1) is refused: it could not be revoked.

Where a request's credential is checked (`admit`): in the event store itself, which every
service may read (DESIGN), when the service shares the commitment service's database (the
default): the tenant streams' events, through partial expression indexes on ``events``
(migration security_0001), so a key issued or revoked counts on every service as soon as
the commitment service's response has been sent. No process remembers a lookup: there is
nothing to forget when a key is revoked. The same single statement spends the request
from the credential's rate-limit bucket (`shared.ratelimit`), so checking the credential
costs one round trip to PostgreSQL, as the key lookup alone did before.

A service given a database of its own (NOCONTACT_<SERVICE>_DATABASE_URL) has no tenant
events in it: it checks credentials against its credentials read model, which its consumer
folds from the bus (`credentials_projection`). There a new key works, and a revocation
counts, only once the bus has brought the event (typically well under a second): the
contract's "at once" holds for the shared database only, and an operator who splits the
databases trades it away.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt
from sqlalchemy import Column, Connection, Dialect, Engine, MetaData, String, Table, insert, select, text, update

from shared import config, ratelimit
from shared.db import driver_execute, read
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
# Roles a scoped token may carry. Admin power comes only from API keys: an admin token
# would be an admin credential that outlives the revocation of every key but its own.
TOKEN_ROLES: tuple[str, ...] = ("coach", "member")
TOKEN_REVOKED = "token.revoked"


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
    revoked_tokens: Table


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
    revoked_tokens = Table(
        f"{service}_revoked_tokens",
        metadata,
        Column("token_id", String(64), primary_key=True),
        Column("tenant_id", String(64), nullable=False),
        Column("key_id", String(64), nullable=False),
        Column("expires_at", UtcDateTime(), nullable=False),
        Column("revoked_at", UtcDateTime(), nullable=False),
    )
    return CredentialTables(tenants, api_keys, revoked_tokens)


def _insert_once(conn: Connection, table: Table, key: str, values: dict[str, Any]) -> None:
    """Insert the row unless one with the same `key` exists: folding an event twice (a
    redelivery, a replay) changes nothing."""
    column = table.c[key]
    if conn.execute(select(column).where(column == values[key])).first() is None:
        conn.execute(insert(table).values(**values))


def credentials_projection(service: str, tables: CredentialTables) -> Projection:
    def apply(conn: Connection, event: RecordedEvent) -> None:
        data = event.data
        if event.type == "tenant.created":
            _insert_once(conn, tables.tenants, "tenant_id", {
                "tenant_id": data["tenant_id"], "name": data["name"], "created_at": event.occurred_at})
        elif event.type == "api_key.issued":
            _insert_once(conn, tables.api_keys, "key_id", {
                "key_id": data["key_id"], "tenant_id": event.tenant_id or data.get("tenant_id"),
                "key_hash": data["key_hash"], "prefix": data.get("prefix"), "issued_at": event.occurred_at})
        elif event.type == "api_key.revoked":
            conn.execute(
                update(tables.api_keys)
                .where(tables.api_keys.c.key_id == data["key_id"], tables.api_keys.c.revoked_at.is_(None))
                .values(revoked_at=event.occurred_at)
            )
        elif event.type == TOKEN_REVOKED:
            _insert_once(conn, tables.revoked_tokens, "token_id", {
                "token_id": data["token_id"], "tenant_id": data["tenant_id"], "key_id": data["key_id"],
                "expires_at": datetime.fromisoformat(data["expires_at"]), "revoked_at": event.occurred_at})

    return Projection(
        name=f"{service}.credentials",
        tables=[tables.api_keys, tables.tenants, tables.revoked_tokens],
        event_types=CREDENTIAL_EVENTS,
        apply=apply,
    )


# -- tokens ----------------------------------------------------------------------------


class InvalidToken(Exception):
    """Not a token this suite signed, or one that no longer (or never could) work."""


@dataclass(frozen=True)
class SignedToken:
    """What a verified token says: whom it names, which key minted it, its own id."""

    tenant_id: str
    role: str
    subject_id: str
    key_id: str
    token_id: str
    expires_at: datetime

    @property
    def principal(self) -> Principal:
        return Principal(role=self.role, tenant_id=self.tenant_id, subject_id=self.subject_id)


def encode_token(*, tenant_id: str, role: str, subject_id: str, key_id: str, token_id: str,
                 expires_at: datetime, issued_at: datetime) -> str:
    """A signed scoped token; `key_id` is the API key that mints it, `token_id` its own id."""
    payload = {
        "tid": tenant_id,
        "role": role,
        "sub": subject_id,
        "key_id": key_id,
        "jti": token_id,
        "iat": int(issued_at.timestamp()),
        "exp": int(expires_at.timestamp()),
    }
    return jwt.encode(payload, config.secret_key(), algorithm=TOKEN_ALGORITHM)


def read_token(token: str, *, allow_expired: bool = False) -> SignedToken:
    """The claims of a token this suite signed; `InvalidToken` says why it is not one.

    `allow_expired` reads an expired token too (to revoke it, which then changes nothing).
    """
    try:
        claims = jwt.decode(
            token,
            config.secret_key(),
            algorithms=[TOKEN_ALGORITHM],
            options={"require": ["exp", "iat", "sub", "tid", "role"], "verify_exp": not allow_expired},
        )
    except jwt.ExpiredSignatureError as error:
        raise InvalidToken("the token has expired") from error
    except jwt.PyJWTError as error:
        raise InvalidToken("the credential is not valid") from error
    # Only coach and member tokens are ever issued: see TOKEN_ROLES.
    if claims.get("role") not in TOKEN_ROLES:
        raise InvalidToken("the token's role is not valid")
    names = [claims.get(name) for name in ("tid", "sub", "key_id", "jti")]
    if not all(isinstance(value, str) and value for value in names[:2]):
        raise InvalidToken("the credential is not valid")
    if not all(isinstance(value, str) and value for value in names[2:]):
        raise InvalidToken("the token names no key and no id of its own (minted before contract v1.1); "
                           "mint a new one")
    if not isinstance(claims["exp"], int):
        raise InvalidToken("the credential is not valid")
    tenant_id, subject_id, key_id, token_id = names
    return SignedToken(tenant_id, claims["role"], subject_id, key_id, token_id,
                       datetime.fromtimestamp(claims["exp"], UTC))


def token_principal(token: str) -> Principal:
    """The coach or member a token names, by its signature and claims alone (revocations
    are the store's to tell: see `admit`); a 401 problem when it is not a valid token."""
    try:
        return read_token(token).principal
    except InvalidToken as error:
        raise unauthorized(str(error)) from error


# -- what a request presents -----------------------------------------------------------


@dataclass(frozen=True)
class Presented:
    """What an Authorization header presents, before anything is looked up.

    Exactly one of: the operator (`operator`), an API key (`key_hash`), a verified token
    (`token`), or nothing that can be valid (`refusal`, the reason).
    """

    operator: bool = False
    key_hash: str | None = None
    token: SignedToken | None = None
    refusal: str | None = None


def present(authorization: str | None) -> Presented:
    if not authorization:
        return Presented(refusal="an Authorization: Bearer credential is required")
    scheme, _, credential = authorization.strip().partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        return Presented(refusal="the Authorization header must be 'Bearer <credential>'")
    operator = config.operator_token()
    if operator and hmac.compare_digest(credential.encode(), operator.encode()):
        return Presented(operator=True)
    if credential.startswith(API_KEY_PREFIX):
        return Presented(key_hash=hash_api_key(credential))
    try:
        return Presented(token=read_token(credential))
    except InvalidToken as error:
        return Presented(refusal=str(error))


def unauthorized(detail: str) -> Problem:
    return Problem(401, detail, headers={"WWW-Authenticate": 'Bearer realm="nocontact"'})


# -- where credentials are checked ------------------------------------------------------


def holds_credentials(service: str) -> bool:
    """Whether the service's database holds the tenant streams (it shares the commitment
    service's): then credentials are checked in the store; else in its read model."""
    return config.database_url(service) == config.database_url("commitment")


def _field(alias: str, name: str, dialect: str) -> str:
    """A field of an event's data, spelled as the indexes of migration security_0001 are."""
    if dialect == "postgresql":
        return f"({alias}.data ->> '{name}')"
    return f"json_extract({alias}.data, '$.{name}')"


def _found_sql(presented: Presented, dialect: str, tables: CredentialTables | None) -> str:
    """SELECT key_id, tenant_id of the credential presented, if it is valid: no row if not.

    `tables` None: from the store (the events of the tenant streams); else from the read
    model. Event types are literals so that the partial indexes apply.
    """
    def f(alias: str, name: str) -> str:
        return _field(alias, name, dialect)

    if presented.key_hash is not None:
        if tables is None:
            return (f"SELECT {f('i', 'key_id')} AS key_id, {f('i', 'tenant_id')} AS tenant_id FROM events AS i "
                    f"WHERE i.type = 'api_key.issued' AND {f('i', 'key_hash')} = :key_hash "
                    f"AND NOT EXISTS (SELECT 1 FROM events AS r WHERE r.type = 'api_key.revoked' "
                    f"AND {f('r', 'key_id')} = {f('i', 'key_id')}) LIMIT 1")
        keys = tables.api_keys.name
        return (f"SELECT k.key_id, k.tenant_id FROM {keys} AS k "
                f"WHERE k.key_hash = :key_hash AND k.revoked_at IS NULL")
    if presented.token is not None:
        if tables is None:
            key_revoked = (f"SELECT 1 FROM events AS r WHERE r.type = 'api_key.revoked' "
                           f"AND {f('r', 'key_id')} = :key_id")
            token_revoked = (f"SELECT 1 FROM events AS r WHERE r.type = '{TOKEN_REVOKED}' "
                             f"AND {f('r', 'token_id')} = :token_id")
        else:
            key_revoked = (f"SELECT 1 FROM {tables.api_keys.name} AS r "
                           f"WHERE r.key_id = :key_id AND r.revoked_at IS NOT NULL")
            token_revoked = f"SELECT 1 FROM {tables.revoked_tokens.name} AS r WHERE r.token_id = :token_id"
        return (f"SELECT CAST(:key_id AS TEXT) AS key_id, CAST(:tenant_id AS TEXT) AS tenant_id "
                f"WHERE NOT EXISTS ({key_revoked}) AND NOT EXISTS ({token_revoked})")
    nothing = "SELECT CAST(NULL AS TEXT) AS key_id, CAST(NULL AS TEXT) AS tenant_id"
    return nothing if presented.operator else nothing + " WHERE 1 = 0"


def _found_parameters(presented: Presented) -> dict[str, Any]:
    if presented.token is not None:
        token = presented.token
        return {"key_id": token.key_id, "token_id": token.token_id, "tenant_id": token.tenant_id}
    return {"key_hash": presented.key_hash}


def _principal(presented: Presented, key_id: str | None, tenant_id: str | None) -> Principal:
    if presented.operator:
        return Principal(role="operator", tenant_id=None)
    if presented.token is not None:
        return presented.token.principal
    return Principal(role="admin", tenant_id=tenant_id, credential_id=key_id)


def lookup(conn: Connection, presented: Presented, tables: CredentialTables | None = None) -> Principal | None:
    """The principal behind what was presented, if its credential is valid now; None if not.

    `tables`: check against that read model instead of the store (see `holds_credentials`).
    """
    if presented.refusal is not None:
        return None
    sql = _found_sql(presented, conn.dialect.name, tables)
    row = conn.execute(text(sql), _found_parameters(presented)).first()
    return None if row is None else _principal(presented, row.key_id, row.tenant_id)


# -- admission: the credential and the rate limits, in one round trip -------------------


@dataclass(frozen=True)
class Admission:
    """An authenticated request: who, and its credential's rate-limit bucket (None: the
    limit is off), whose RateLimit-* headers its response carries."""

    principal: Principal
    rate_limit: ratelimit.Decision | None


# One statement: the clock, the address's failure bucket, the credential (`{found}`), then
# either the credential's bucket is spent (valid) or the address's (not valid), neither when
# the address is blocked. `allowed` is set from the row as it was before this update, so
# the answer comes back with the bucket; the arithmetic is `shared.ratelimit.spend`.
_ADMIT_POSTGRESQL = """
WITH clock AS (
    SELECT extract(epoch FROM clock_timestamp())::float8 AS now
), gate AS (
    SELECT clock.now, address.tat AS address_tat,
           coalesce(address.tat - clock.now > CAST(:failure_tolerance AS float8), false) AS blocked
    FROM clock LEFT JOIN rate_limits AS address ON address.bucket = :address
), found AS (
    SELECT f.key_id, f.tenant_id, coalesce(CAST(:bucket AS text), :scope || 'key:' || f.key_id) AS bucket
    FROM ({found}) AS f
), spent AS (
    INSERT INTO rate_limits AS b (bucket, tat, allowed)
    SELECT found.bucket, gate.now + CAST(:interval AS float8), true FROM found, gate
    WHERE CAST(:interval AS float8) IS NOT NULL AND NOT gate.blocked
    ON CONFLICT (bucket) DO UPDATE SET
        allowed = b.tat - (excluded.tat - CAST(:interval AS float8)) <= CAST(:tolerance AS float8),
        tat = CASE WHEN b.tat - (excluded.tat - CAST(:interval AS float8)) <= CAST(:tolerance AS float8)
                   THEN greatest(b.tat, excluded.tat - CAST(:interval AS float8)) + CAST(:interval AS float8)
                   ELSE b.tat END
    RETURNING b.tat, b.allowed
), failed AS (
    INSERT INTO rate_limits AS b (bucket, tat, allowed)
    SELECT :address, gate.now + CAST(:failure_interval AS float8), true FROM gate
    WHERE CAST(:failure_interval AS float8) IS NOT NULL AND NOT gate.blocked AND NOT EXISTS (SELECT FROM found)
    ON CONFLICT (bucket) DO UPDATE SET
        allowed = b.tat - (excluded.tat - CAST(:failure_interval AS float8)) <= CAST(:failure_tolerance AS float8),
        tat = CASE WHEN b.tat - (excluded.tat - CAST(:failure_interval AS float8))
                        <= CAST(:failure_tolerance AS float8)
                   THEN greatest(b.tat, excluded.tat - CAST(:failure_interval AS float8))
                        + CAST(:failure_interval AS float8)
                   ELSE b.tat END
    RETURNING b.tat, b.allowed
)
SELECT gate.now, gate.address_tat, gate.blocked, found.key_id, found.tenant_id,
       found.bucket IS NOT NULL AS authenticated,
       spent.tat AS credential_tat, spent.allowed AS credential_allowed,
       failed.tat AS failure_tat, failed.allowed AS failure_allowed
FROM gate LEFT JOIN found ON true LEFT JOIN spent ON true LEFT JOIN failed ON true
"""

_statements: dict[str, str] = {}


def _admit_statement(found: str, dialect: Dialect) -> str:
    """The admission statement around `found`, as the driver takes it (it runs on the
    driver, `shared.db.driver_execute`): SQLAlchemy renders its binds in psycopg's style,
    made once per kind of credential."""
    statement = _statements.get(found)
    if statement is None:
        statement = _statements[found] = text(_ADMIT_POSTGRESQL.format(found=found)).compile(dialect=dialect).string
    return statement


def _admit_postgresql(engine: Engine, service: str, presented: Presented, tables: CredentialTables | None,
                      address: str, failures: ratelimit.Quota | None,
                      requests: ratelimit.Quota | None) -> tuple[Principal | None, ratelimit.Verdict]:
    bucket = None
    if presented.operator or presented.token is not None:
        bucket = f"{service}:{ratelimit.key_of(_principal(presented, None, None))}"
    parameters = {
        **_found_parameters(presented),
        "address": address, "scope": f"{service}:", "bucket": bucket,
        "interval": requests.interval if requests else None,
        "tolerance": requests.tolerance if requests else None,
        "failure_interval": failures.interval if failures else None,
        "failure_tolerance": failures.tolerance if failures else None,
    }
    # Autocommit: the statement is its own transaction, one round trip with no BEGIN and no
    # COMMIT, and a bucket's row lock is held only while the statement runs. It writes to
    # an unlogged table only, so its commit waits for no WAL flush. It runs on the driver:
    # SQLAlchemy's execution layer was half of this statement's client CPU, every request.
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        ((now, address_tat, blocked, key_id, tenant_id, authenticated, credential_tat, credential_allowed,
          failure_tat, failure_allowed),) = driver_execute(
            conn, _admit_statement(_found_sql(presented, "postgresql", tables), conn.dialect), parameters)
        if random.randrange(ratelimit.SWEEP_ONE_IN) == 0:
            conn.execute(text("DELETE FROM rate_limits WHERE tat < extract(epoch FROM clock_timestamp())"))
    principal = _principal(presented, key_id, tenant_id) if authenticated else None
    if blocked:
        assert failures is not None
        verdict = ratelimit.Verdict(blocked=ratelimit.Decision(False, failures, address_tat, now))
    elif failure_tat is not None:
        assert failures is not None
        verdict = ratelimit.Verdict(address=ratelimit.Decision(failure_allowed, failures, failure_tat, now))
    elif credential_tat is not None:
        assert requests is not None
        verdict = ratelimit.Verdict(credential=ratelimit.Decision(credential_allowed, requests, credential_tat,
                                                                  now))
    else:
        verdict = ratelimit.Verdict()
    return principal, verdict


def admit(engine: Engine, service: str, tables: CredentialTables, authorization: str | None,
          address: str) -> Admission:
    """The principal of a /v1/ request, its credential checked and its rate limits spent.

    401 problem: no valid credential (and one failure spent from the address's bucket).
    429 problem: the address has failed too often, or the credential is over its limit.
    """
    presented = present(authorization)
    source = None if holds_credentials(service) else tables
    failures, requests = ratelimit.failure_quota(), ratelimit.credential_quota()
    address_bucket = f"{service}:address:{address}"
    if engine.dialect.name == "postgresql":
        principal, verdict = _admit_postgresql(engine, service, presented, source, address_bucket, failures,
                                               requests)
    else:
        with read(engine) as conn:
            principal = lookup(conn, presented, source)
        verdict = ratelimit.FileBuckets.of_this_host().judge(
            address=address_bucket,
            credential=f"{service}:{ratelimit.key_of(principal)}" if principal is not None else None,
            failures=failures, requests=requests,
        )
    if verdict.blocked is not None:
        raise verdict.blocked.refusal("too many failed authentications from this address",
                                      with_limit_headers=False)
    if principal is None:
        if verdict.address is not None and not verdict.address.allowed:
            raise verdict.address.refusal("too many failed authentications from this address",
                                          with_limit_headers=False)
        if presented.refusal is not None:
            raise unauthorized(presented.refusal)
        if presented.token is not None:
            raise unauthorized("the token, or the API key that minted it, has been revoked")
        raise unauthorized("the API key is not valid")
    if verdict.credential is not None and not verdict.credential.allowed:
        assert requests is not None
        raise verdict.credential.refusal(
            f"rate limit of {requests.per_minute} requests per minute exceeded for this credential")
    return Admission(principal, verdict.credential)
