"""Credentials checked in the store at once, revocable tokens, shared rate-limit buckets.

- Partial expression indexes on ``events`` for the three lookups every request may make
  (`shared.auth`): an issued key by its hash, a revoked key by its id, a revoked token by
  its id. Partial: each holds only the few events of its type, and costs the appends of
  every other type nothing but the check of the predicate. The expressions are spelt
  exactly as `shared.auth._field` spells them in the queries, so each dialect's planner
  matches them.
- Each service's credentials read model gains ``<service>_revoked_tokens`` (what a
  service with a database of its own checks tokens against).
- PostgreSQL: ``rate_limits``, UNLOGGED (no WAL: a bucket update's commit waits for no
  disk flush; a crash empties it), with room on each page for HOT updates. SQLite keeps
  its buckets in a file of its own (`shared.ratelimit.FileBuckets`).

Revision ID: security_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "security_0001"
down_revision = None
branch_labels = ("security",)
depends_on = "0002_credentials"

SERVICES = ("commitment", "checkin", "notification")
# (index, event type, field of the event's data)
LOOKUPS = (
    ("events_api_key_issued", "api_key.issued", "key_hash"),
    ("events_api_key_revoked", "api_key.revoked", "key_id"),
    ("events_token_revoked", "token.revoked", "token_id"),
)


def _field(name: str) -> str:
    if op.get_bind().dialect.name == "postgresql":
        return f"(data ->> '{name}')"
    return f"json_extract(data, '$.{name}')"


def upgrade() -> None:
    for index, event_type, field in LOOKUPS:
        op.execute(f"CREATE INDEX {index} ON events ({_field(field)}) WHERE type = '{event_type}'")
    for service in SERVICES:
        op.create_table(
            f"{service}_revoked_tokens",
            sa.Column("token_id", sa.String(64), primary_key=True),
            sa.Column("tenant_id", sa.String(64), nullable=False),
            sa.Column("key_id", sa.String(64), nullable=False),
            sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=False),
        )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE UNLOGGED TABLE rate_limits (bucket text PRIMARY KEY, tat float8 NOT NULL, "
            "allowed boolean NOT NULL) WITH (fillfactor = 50)"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_table("rate_limits")
    for service in SERVICES:
        op.drop_table(f"{service}_revoked_tokens")
    for index, _, _ in LOOKUPS:
        op.drop_index(index, table_name="events")
