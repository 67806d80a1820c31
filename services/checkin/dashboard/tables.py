"""What the dashboard keeps server-side: sign-in links and sessions (migration dashboard_0001).

Only hashes of the secrets are stored (sha256, as API keys are: 256 random bits need no
slow KDF), so a copy of the database signs nobody in. A row is never deleted by the
service itself: revoking sets ``revoked_at`` and is checked on every request.
"""

from __future__ import annotations

from sqlalchemy import Column, Index, String, Table

from services.checkin.tables import metadata
from shared.schema import UtcDateTime

# A short-lived, single-use sign-in link an admin mints for a coach: exchanged once for a
# session. `key_id`: the API key that minted it (revoking the key voids the link).
sign_in_links = Table(
    "dashboard_sign_in_links",
    metadata,
    Column("link_hash", String(64), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("coach_id", String(128), nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
    Column("used_at", UtcDateTime()),
)

# A browser's dashboard session (the cookie holds its secret). `role`: coach (signed in
# by a link or a coach token) or admin (an admin key viewing `coach_id`'s dashboard).
# `key_id` and `token_id` are checked like a token's on every request (shared.auth.lookup):
# revoking the key that signed the session in, or the token it was opened with, ends it.
sessions = Table(
    "dashboard_sessions",
    metadata,
    Column("session_hash", String(64), primary_key=True),
    Column("session_id", String(36), nullable=False, unique=True),
    Column("tenant_id", String(64), nullable=False),
    Column("role", String(16), nullable=False),
    Column("coach_id", String(128), nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("token_id", String(64), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
    Column("revoked_at", UtcDateTime()),
    Index("dashboard_sessions_expires", "expires_at"),
)
