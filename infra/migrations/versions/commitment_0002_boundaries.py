"""Commitment service: a commitment's boundaries (necessary-contact exceptions, places).

``commitment_commitments`` gains ``exceptions`` and ``places``: the lists as the events
carry them, labels sealed (services.commitment.personal). Existing rows have none.

Revision ID: commitment_0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "commitment_0002"
down_revision = "commitment_0001"
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(JSONB(), "postgresql")
EMPTY_LIST = sa.text("'[]'")


def upgrade() -> None:
    for name in ("exceptions", "places"):
        op.add_column("commitment_commitments", sa.Column(name, Json, nullable=False, server_default=EMPTY_LIST))


def downgrade() -> None:
    # Batch mode: SQLite drops columns by copying the table.
    with op.batch_alter_table("commitment_commitments") as table:
        table.drop_column("places")
        table.drop_column("exceptions")
