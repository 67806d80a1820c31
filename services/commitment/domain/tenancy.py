"""Tenants, their API keys and the rules of scoped tokens: pure, no I/O, no JWT library.

Every partner platform is a tenant; nothing of one tenant is visible to another. A
tenant authenticates with admin API keys (shown once, stored only as a hash,
revocable), and an admin mints short-lived scoped tokens for coaches and members. The
key format, its hash and the JWT encoding of tokens belong to `shared.auth`, which is what
authenticates every request of every service; here are the tenant's rules, the claims a
token may carry and what a caller may do. Coach assignment is a rule of the commitment.

Stream: ``tenant-<tenant_id>``. Events (``schema_version`` 1, JSON-serialisable):

``tenant.created``
    ``tenant_id``, ``name`` (1-200 chars).
``api_key.issued``
    ``tenant_id``, ``key_id``, ``key_hash`` (sha256 hex of the full key), ``prefix``
    (first characters of the key, safe to show so people can tell keys apart),
    ``role`` (always ``"admin"``).
``api_key.revoked``
    ``tenant_id``, ``key_id``. Also revokes every token the key minted.
``token.revoked``
    ``tenant_id``, ``token_id`` (the token's ``jti``), ``key_id`` (the key that minted
    it), ``expires_at`` (ISO 8601: after it, the record no longer matters).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import ClassVar

from shared.aggregate import Aggregate, EventLike, applies, require_aware
from shared.auth import (
    API_KEY_PREFIX,
    TOKEN_REVOKED,
    TOKEN_ROLES,
    Principal,
    SignedToken,
    hash_api_key,
    is_api_key_format,
)
from shared.errors import Conflict, Forbidden, NotFound, ValidationFailed, Validator
from shared.events import NewEvent

TENANT_CREATED = "tenant.created"
API_KEY_ISSUED = "api_key.issued"
API_KEY_REVOKED = "api_key.revoked"
EVENT_TYPES: frozenset[str] = frozenset(
    {TENANT_CREATED, API_KEY_ISSUED, API_KEY_REVOKED, TOKEN_REVOKED}
)

STREAM_CATEGORY = "tenant"
TENANT_NAME_MAX = 200
KEY_ID_MAX = 128

# Shown prefix: the fixed "nck_" plus 8 random characters (48 bits): enough to tell
# keys apart in a list, far too little to help guess the remaining 210 bits.
DISPLAY_PREFIX_LEN = len(API_KEY_PREFIX) + 8

ROLE_ADMIN = "admin"
ROLE_COACH = "coach"
ROLE_MEMBER = "member"
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


class InvalidTokenRevocation(ValidationFailed):
    """The token to revoke is not one of this tenant's (HTTP 422, naming ``token``)."""


# -------------------------------------------------------------------- API keys


def api_key_display_prefix(api_key: str) -> str:
    """The part of a key that may be stored and shown in clear."""
    return api_key[:DISPLAY_PREFIX_LEN]


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
class Tenant(Aggregate):
    """A partner platform and its admin API keys, rebuilt from its events (`shared.aggregate`)."""

    category: ClassVar[str] = STREAM_CATEGORY
    created: ClassVar[str] = TENANT_CREATED

    name: str = ""
    created_at: datetime | None = None
    api_keys: dict[str, ApiKey] = field(default_factory=dict)
    revoked_tokens: set[str] = field(default_factory=set)

    @applies(TENANT_CREATED)
    def _apply_created(self, event: EventLike) -> None:
        self.id = event.data["tenant_id"]
        self.name = event.data["name"]
        self.created_at = event.occurred_at

    @applies(API_KEY_ISSUED)
    def _apply_key_issued(self, event: EventLike) -> None:
        d = event.data
        self.api_keys[d["key_id"]] = ApiKey(
            key_id=d["key_id"],
            key_hash=d["key_hash"],
            prefix=d["prefix"],
            role=d["role"],
            issued_at=event.occurred_at,
        )

    @applies(API_KEY_REVOKED)
    def _apply_key_revoked(self, event: EventLike) -> None:
        key = self.api_keys[event.data["key_id"]]
        self.api_keys[key.key_id] = replace(key, revoked_at=event.occurred_at, revoked=True)

    @applies(TOKEN_REVOKED)
    def _apply_token_revoked(self, event: EventLike) -> None:
        self.revoked_tokens.add(event.data["token_id"])

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

        The plaintext comes from ``shared.auth.generate_api_key()`` in the caller, so this
        method stays deterministic and testable and the plaintext never enters an event.
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

    def revoke_token(self, token: SignedToken, *, now: datetime) -> list[NewEvent]:
        """Revoke one scoped token (as `shared.auth.read_token` read it, expired or not).

        Another tenant's token: ``InvalidTokenRevocation`` (its holder learns nothing it
        did not hold). Nothing is recorded for a token that no longer works anyway:
        expired, already revoked, or minted by a revoked key; revoking is idempotent.
        """
        require_aware(now)
        if token.tenant_id != self.id:
            raise InvalidTokenRevocation("token", "is not a token of this tenant")
        key = self.api_keys.get(token.key_id)
        if token.expires_at <= now or token.token_id in self.revoked_tokens or (key is not None and key.revoked):
            return []
        data = {"tenant_id": self.id, "token_id": token.token_id, "key_id": token.key_id,
                "expires_at": token.expires_at.isoformat()}
        return [self._emit(TOKEN_REVOKED, data, now)]


# --------------------------------------------------------------- scoped tokens


@dataclass(frozen=True)
class TokenClaims:
    """What a scoped token asserts: who (``role`` + ``subject_id``), where, until when.

    Times are whole seconds in UTC because JWT ``iat``/``exp`` are integer seconds, so
    the token (`shared.auth.encode_token`) says exactly what these claims say.
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

        TTL is 60 s .. 30 days: shorter would expire in transit, longer would keep a
        leaked token alive for long if nobody revokes it (or the key that minted it).
        """
        require_aware(now)
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


# ----------------------------------------------------------------- access rules


# Tenant isolation itself is the queries' job (every one filtered by ``tenant_id``); these
# rules come on top, within one tenant.


def may_write_commitment(caller: Principal, member_id: object) -> bool:
    """Admins act on any member; a member token only on its own commitments."""
    return caller.role == ROLE_ADMIN or (caller.role == ROLE_MEMBER and caller.subject_id == member_id)


def may_read_commitment(caller: Principal, member_id: str, coach_id: str | None) -> bool:
    """Writers may read; a coach token reads only commitments assigned to that coach."""
    if may_write_commitment(caller, member_id):
        return True
    return caller.role == ROLE_COACH and coach_id is not None and coach_id == caller.subject_id


def require_may_open_commitment(caller: Principal, member_id: object) -> None:
    """Who may open a commitment for `member_id`: whoever may write it (a coach never)."""
    if may_write_commitment(caller, member_id):
        return
    if caller.role == ROLE_MEMBER:
        raise Forbidden("a member token may only open commitments for its own member_id")
    raise Forbidden("only an admin key or the member's own token may open a commitment")


def require_may_write_commitment(caller: Principal, member_id: str) -> None:
    """A caller who may read a commitment but not change it (a coach) is refused (403)."""
    if not may_write_commitment(caller, member_id):
        raise Forbidden("this credential may only read this commitment")
