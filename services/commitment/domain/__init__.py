"""Pure domain of the commitment service: commitments, tenants, API keys, token claims.

No I/O here (no database, clock or network): adapters load events, pass ``now`` in,
and store/publish the ``pending_events`` the aggregates collect.
"""

from shared.errors import Conflict, DomainError, NotFound, ValidationFailed

from .commitment import (
    Commitment,
    CommitmentConflict,
    Contact,
    InvalidCommitment,
    Status,
    is_valid_timezone,
    local_today,
)
from .tenancy import (
    ApiKey,
    ApiKeyNotFound,
    Caller,
    InvalidCredentials,
    InvalidTenant,
    InvalidTokenRequest,
    Tenant,
    TenantConflict,
    TokenClaims,
    generate_api_key,
    hash_api_key,
    is_api_key_format,
    may_read_commitment,
    may_write_commitment,
    verify_api_key,
)

__all__ = [
    "ApiKey",
    "ApiKeyNotFound",
    "Caller",
    "Commitment",
    "CommitmentConflict",
    "Conflict",
    "Contact",
    "DomainError",
    "InvalidCommitment",
    "InvalidCredentials",
    "InvalidTenant",
    "InvalidTokenRequest",
    "NotFound",
    "Status",
    "Tenant",
    "TenantConflict",
    "TokenClaims",
    "ValidationFailed",
    "generate_api_key",
    "hash_api_key",
    "is_api_key_format",
    "is_valid_timezone",
    "local_today",
    "may_read_commitment",
    "may_write_commitment",
    "verify_api_key",
]
