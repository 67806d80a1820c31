"""Credentials read model of each service (tenants and API keys, folded from events).

Revision ID: 0002_credentials
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_credentials"
down_revision = "0001_event_store"
branch_labels = None
depends_on = None

SERVICES = ("commitment", "checkin", "notification")


def upgrade() -> None:
    for service in SERVICES:
        op.create_table(
            f"{service}_tenants",
            sa.Column("tenant_id", sa.String(64), primary_key=True),
            sa.Column("name", sa.String(200), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        )
        op.create_table(
            f"{service}_api_keys",
            sa.Column("key_id", sa.String(64), primary_key=True),
            sa.Column("tenant_id", sa.String(64), nullable=False, index=True),
            sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
            sa.Column("prefix", sa.String(32)),
            sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("revoked_at", sa.DateTime(timezone=True)),
        )


def downgrade() -> None:
    for service in SERVICES:
        op.drop_table(f"{service}_api_keys")
        op.drop_table(f"{service}_tenants")
