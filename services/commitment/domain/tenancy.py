"""Tenants, their API keys and the rules of scoped tokens: pure, no I/O, no JWT library.

Every partner platform is a tenant; nothing of one tenant is visible to another. A
tenant authenticates with admin API keys (shown once, stored only as a hash,
revocable), and an admin mints short-lived scoped tokens for coaches and members. The
JWT encoding/signing of those tokens belongs to the adapter layer; here are only the
claims and what they allow. Coach assignment is a rule of the commitment, not here.

Stream: ``tenant-<tenant_id>``. Events (``schema_version`` 1, JSON-serialisable):

``tenant.created``
    ``tenant_id``, ``name`` (1-200 chars).
``api_key.issued``
    ``tenant_id``, ``key_id``, ``key_hash`` (sha256 hex of the full key), ``prefix``
    (first characters of the key, safe to show so people can tell keys apart),
    ``role`` (always ``"admin"``).
``api_key.revoked``
    ``tenant_id``, ``key_id``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from shared.errors import Conflict, DomainError, NotFound, ValidationFailed, Validator
from shared.events import NewEvent

from .commitment import EventLike

TENANT_CREATED = "tenant.created"
API_KEY_ISSUED = "api_key.issued"
API_KEY_REVOKED = "api_key.revoked"
EVENT_TYPES: frozenset[str] = frozenset(
    {TENANT_CREATED, API_KEY_ISSUED, API_KEY_REVOKED}
)

STREAM_CATEGORY = "tenant"
TENANT_NAME_MAX = 200
KEY_ID_MAX = 128

API_KEY_PREFIX = "nck_"
# 32 random bytes = 256 bits, encoded url-safe base64 without padding: 43 characters.
_API_KEY_RANDOM_BYTES = 32
_API_KEY_RE = re.compile(r"nck_[A-Za-z0-9_-]{43}", re.ASCII)
# Shown prefix: the fixed "nck_" plus 8 random characters (48 bits): enough to tell
# keys apart in a list, far too little to help guess the remaining 210 bits.
DISPLAY_PREFIX_LEN = len(API_KEY_PREFIX) + 8

ROLE_ADMIN = "admin"
ROLE_COACH = "coach"
ROLE_MEMBER = "member"
ROLES: tuple[str, ...] = (ROLE_ADMIN, ROLE_COACH, ROLE_MEMBER)
# Roles a scoped token may carry. Admin power comes only from API keys: a token cannot
# be revoked, so an admin token would be a standing key that survives every revocation.
TOKEN_ROLES: tuple[str, ...] = (ROLE_COACH, ROLE_MEMBER)
SUBJECT_ID_MAX = 128
TTL_MIN_SECONDS = 60
TTL_MAX_SECONDS = 86400 * 30


class InvalidTenant(ValidationFailed):
    """Tenant or API-key input breaks a rule (HTTP 422)."""


class TenantConflict(Conflict):
    """The command does not fit the tenant's state, e.g. revoking a revoked key (409)."""


class ApiKeyNotFound(NotFound):
    """No key with this id exists in this tenant (HTTP 404; also for other tenants' ids)."""


class InvalidTokenRequest(ValidationFailed):
    """A request for a scoped token names a bad role, subject or lifetime (HTTP 422)."""


class InvalidCredentials(DomainError):
    """Claims that cannot be trusted: malformed or expired (HTTP 401)."""


def tenant_stream_id(tenant_id: str) -> str:
    """The event-store stream of a tenant."""
    return f"{STREAM_CATEGORY}-{tenant_id}"


# -------------------------------------------------------------------- API keys


def generate_api_key() -> str:
    """A new API key: ``nck_`` + 43 url-safe characters from ``secrets`` (256 bits).

    The fixed prefix lets the auth layer tell an API key from a JWT without trying to
    decode it, and lets secret scanners recognise leaked keys.
    """
    return API_KEY_PREFIX + secrets.token_urlsafe(_API_KEY_RANDOM_BYTES)


def is_api_key_format(credential: str) -> bool:
    """True when ``credential`` is shaped like a key from ``generate_api_key``."""
    return _API_KEY_RE.fullmatch(credential) is not None


def hash_api_key(api_key: str) -> str:
    """The stored form of a key: sha256, hex.

    A plain fast hash is enough here and a slow KDF (bcrypt, argon2) would only cost
    latency on every request: KDFs exist to slow down guessing of low-entropy
    passwords, but these keys carry 256 random bits, so no dictionary or brute force
    against a leaked hash is feasible. Being deterministic also lets the auth layer
    look a key up by its hash in one indexed query.
    """
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()


def api_key_display_prefix(api_key: str) -> str:
    """The part of a key that may be stored and shown in clear."""
    return api_key[:DISPLAY_PREFIX_LEN]


def verify_api_key(presented: str, key_hash: str) -> bool:
    """Compare a presented key to a stored hash in constant time."""
    return hmac.compare_digest(hash_api_key(presented), key_hash)


@dataclass(frozen=True)
class ApiKey:
    """What the tenant keeps of a key: never the key itself."""

    key_id: str
    key_hash: str
    prefix: str
    role: str
    issued_at: datetime | None
    revoked_at: datetime | None = None
    revoked: bool = False


# ---------------------------------------------------------------------- tenant


@dataclass(eq=True)
class Tenant:
    """A partner platform and its admin API keys, rebuilt from its events.

    Same conventions as ``Commitment``: commands apply their events and collect them in
    ``pending_events``; ``version`` counts every applied event; ``expected_version`` is
    the stream version the tenant was loaded at.
    """

    id: str = ""
    name: str = ""
    created_at: datetime | None = None
    api_keys: dict[str, ApiKey] = field(default_factory=dict)
    version: int = 0
    pending_events: list[NewEvent] = field(
        default_factory=list, compare=False, repr=False
    )

    @classmethod
    def from_events(cls, events: Iterable[EventLike]) -> Tenant:
        """Rebuild a tenant from its stream (``ValueError`` when empty or not created first)."""
        tenant = cls()
        for event in events:
            tenant.apply(event)
        if tenant.version == 0:
            raise ValueError("a tenant needs at least its tenant.created event")
        return tenant

    @property
    def expected_version(self) -> int:
        return self.version - len(self.pending_events)

    @property
    def stream_id(self) -> str:
        return tenant_stream_id(self.id)

    def apply(self, event: EventLike) -> None:
        """Fold one event into the state; unknown types only advance ``version``."""
        if self.version == 0 and event.type != TENANT_CREATED:
            raise ValueError(f"first event must be {TENANT_CREATED}, got {event.type}")
        if self.version > 0 and event.type == TENANT_CREATED:
            raise ValueError("tenant.created may only be the first event")
        d = event.data
        if event.type == TENANT_CREATED:
            self.id = d["tenant_id"]
            self.name = d["name"]
            self.created_at = event.occurred_at
        elif event.type == API_KEY_ISSUED:
            self.api_keys[d["key_id"]] = ApiKey(
                key_id=d["key_id"],
                key_hash=d["key_hash"],
                prefix=d["prefix"],
                role=d["role"],
                issued_at=event.occurred_at,
            )
        elif event.type == API_KEY_REVOKED:
            key = self.api_keys[d["key_id"]]
            self.api_keys[d["key_id"]] = ApiKey(
                key_id=key.key_id,
                key_hash=key.key_hash,
                prefix=key.prefix,
                role=key.role,
                issued_at=key.issued_at,
                revoked_at=event.occurred_at,
                revoked=True,
            )
        self.version += 1

    def _emit(self, event_type: str, data: dict[str, Any], now: datetime) -> NewEvent:
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError("now must be a timezone-aware datetime")
        event = NewEvent(type=event_type, data=data, occurred_at=now)
        self.apply(event)
        self.pending_events.append(event)
        return event

    @classmethod
    def create(cls, *, tenant_id: str, name: object, now: datetime) -> Tenant:
        """Open a tenant; the result holds one pending ``tenant.created``.

        Issue its first API key with ``issue_api_key`` right after, in the same append,
        so a tenant never exists without a way in.
        """
        v = Validator(InvalidTenant)
        checked = v.text("name", name, min_len=1, max_len=TENANT_NAME_MAX)
        v.raise_if_any()
        tenant = cls()
        tenant._emit(TENANT_CREATED, {"tenant_id": tenant_id, "name": checked}, now)
        return tenant

    def issue_api_key(
        self, *, key_id: str, api_key: str, now: datetime
    ) -> list[NewEvent]:
        """Record a new admin key by its hash; the caller shows ``api_key`` once, then forgets it.

        The plaintext comes from ``generate_api_key()`` in the caller, so this method
        stays deterministic and testable and the plaintext never enters an event.
        """
        v = Validator(InvalidTenant)
        v.text("key_id", key_id, min_len=1, max_len=KEY_ID_MAX)
        if not isinstance(api_key, str) or not is_api_key_format(api_key):
            v.add("api_key", "is not a key produced by generate_api_key()")
        v.raise_if_any()
        if key_id in self.api_keys:
            raise TenantConflict(f"API key {key_id} already exists")
        key_hash = hash_api_key(api_key)
        if any(k.key_hash == key_hash for k in self.api_keys.values()):
            raise TenantConflict("this API key was already issued")
        event = self._emit(
            API_KEY_ISSUED,
            {
                "tenant_id": self.id,
                "key_id": key_id,
                "key_hash": key_hash,
                "prefix": api_key_display_prefix(api_key),
                "role": ROLE_ADMIN,
            },
            now,
        )
        return [event]

    def revoke_api_key(self, key_id: str, *, now: datetime) -> list[NewEvent]:
        """Revoke a key for good.

        Unknown key: ``ApiKeyNotFound``. Already revoked: ``TenantConflict``, so a
        caller cannot believe it just revoked a key that had been dead for weeks.
        """
        key = self.api_keys.get(key_id)
        if key is None:
            raise ApiKeyNotFound(f"no API key {key_id}")
        if key.revoked:
            raise TenantConflict(f"API key {key_id} is already revoked")
        return [
            self._emit(API_KEY_REVOKED, {"tenant_id": self.id, "key_id": key_id}, now)
        ]

    def active_api_keys(self) -> list[ApiKey]:
        """Keys that still open the door, in issue order."""
        return [k for k in self.api_keys.values() if not k.revoked]

    def authenticate(self, presented: str) -> ApiKey | None:
        """The active key matching ``presented``, or None (revoked keys never match)."""
        for key in self.active_api_keys():
            if verify_api_key(presented, key.key_hash):
                return key
        return None


# --------------------------------------------------------------- scoped tokens


@dataclass(frozen=True)
class TokenClaims:
    """What a scoped token asserts: who (``role`` + ``subject_id``), where, until when.

    Times are whole seconds in UTC because JWT ``iat``/``exp`` are integer seconds; this
    keeps ``from_payload(to_payload())`` an exact round trip.
    """

    tenant_id: str
    role: str
    subject_id: str
    issued_at: datetime
    expires_at: datetime

    @classmethod
    def issue(
        cls,
        *,
        tenant_id: str,
        role: object,
        subject_id: object,
        ttl_seconds: object,
        now: datetime,
    ) -> TokenClaims:
        """Validate a token request; field errors name ``role``, ``subject_id``, ``ttl_seconds``.

        TTL is 60 s .. 30 days: shorter would expire in transit, longer would make a
        leaked token a standing key (tokens cannot be revoked, only API keys can).
        """
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError("now must be a timezone-aware datetime")
        v = Validator(InvalidTokenRequest)
        if role is None:
            v.add("role", "is required")
        elif role not in TOKEN_ROLES:
            v.add("role", f"must be one of {', '.join(TOKEN_ROLES)}")
        subject = v.text("subject_id", subject_id, min_len=1, max_len=SUBJECT_ID_MAX)
        ttl = v.integer(
            "ttl_seconds", ttl_seconds, minimum=TTL_MIN_SECONDS, maximum=TTL_MAX_SECONDS
        )
        v.raise_if_any()
        assert subject is not None and ttl is not None
        issued = now.astimezone(UTC).replace(microsecond=0)
        return cls(
            tenant_id=tenant_id,
            role=str(role),
            subject_id=subject,
            issued_at=issued,
            expires_at=issued + timedelta(seconds=ttl),
        )

    def to_payload(self) -> dict[str, Any]:
        """JWT claims: ``sub``, ``role``, ``tid`` (tenant), ``iat``, ``exp`` (epoch seconds)."""
        return {
            "sub": self.subject_id,
            "role": self.role,
            "tid": self.tenant_id,
            "iat": int(self.issued_at.timestamp()),
            "exp": int(self.expires_at.timestamp()),
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any], *, now: datetime) -> TokenClaims:
        """Check decoded (signature-verified) claims; ``InvalidCredentials`` if unusable.

        The JWT library checks the signature; this checks the meaning, so a token with a
        role or subject this code does not know never becomes a principal.
        """
        try:
            sub, role, tid = payload["sub"], payload["role"], payload["tid"]
            iat, exp = payload["iat"], payload["exp"]
        except (KeyError, TypeError):
            raise InvalidCredentials("token claims are incomplete") from None
        if role not in TOKEN_ROLES:
            raise InvalidCredentials("token role is unknown")
        if not (isinstance(sub, str) and 1 <= len(sub) <= SUBJECT_ID_MAX):
            raise InvalidCredentials("token subject is invalid")
        if not (isinstance(tid, str) and tid):
            raise InvalidCredentials("token tenant is invalid")
        for value in (iat, exp):
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidCredentials("token times are invalid")
        try:
            claims = cls(
                tenant_id=tid,
                role=role,
                subject_id=sub,
                issued_at=datetime.fromtimestamp(iat, UTC),
                expires_at=datetime.fromtimestamp(exp, UTC),
            )
        except (OverflowError, OSError, ValueError):
            raise InvalidCredentials("token times are invalid") from None
        if claims.is_expired(now):
            raise InvalidCredentials("token has expired")
        return claims

    def is_expired(self, now: datetime) -> bool:
        return now >= self.expires_at


# ----------------------------------------------------------------- access rules


class Caller(Protocol):
    """What the access rules need of an authenticated caller.

    ``shared.auth.Principal`` (the one principal type of every service) fits; the domain
    names only the two attributes it reads, so it stays free of the web and auth layers.
    Tenant isolation itself is the queries' job (every one filtered by ``tenant_id``);
    these rules come on top, within one tenant.
    """

    @property
    def role(self) -> str: ...

    @property
    def subject_id(self) -> str | None: ...


def may_write_commitment(caller: Caller, member_id: str) -> bool:
    """Admins act on any member; a member token only on its own commitments."""
    return caller.role == ROLE_ADMIN or (caller.role == ROLE_MEMBER and caller.subject_id == member_id)


def may_read_commitment(caller: Caller, member_id: str, coach_id: str | None) -> bool:
    """Writers may read; a coach token reads only commitments assigned to that coach."""
    if may_write_commitment(caller, member_id):
        return True
    return caller.role == ROLE_COACH and coach_id is not None and coach_id == caller.subject_id
