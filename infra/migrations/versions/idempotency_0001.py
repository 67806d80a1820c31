"""Idempotency-Key: the keys of POST requests and their first answers (shared.idempotency).

One table for every service of the database (``service`` is part of the key), so a
database of its own per service works alike. Answers are stored sealed; rows live 24 hours
(``expires_at``, deleted by the APIs' housekeeping).

Its own branch (``idempotency``), so the services' branches move on without it.

Revision ID: idempotency_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "idempotency_0001"
down_revision = None
branch_labels = ("idempotency",)
depends_on = "0002_credentials"

Aware = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("service", sa.String(32), primary_key=True),
        sa.Column("scope", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("holder", sa.Uuid(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("lease_until", Aware, nullable=False),
        sa.Column("answer", sa.Text),
        sa.Column("created_at", Aware, nullable=False),
        sa.Column("expires_at", Aware, nullable=False),
    )
    op.create_index("idempotency_keys_expiry", "idempotency_keys", ["expires_at"])


def downgrade() -> None:
    op.drop_index("idempotency_keys_expiry", "idempotency_keys")
    op.drop_table("idempotency_keys")
