"""Check-in service: the boundaries of each commitment, as its inbox learns them.

``checkin_commitments`` gains ``boundaries`` ({"exceptions", "places"}, labels sealed as
the commitment service recorded them) and ``boundaries_version`` (the commitment stream's
version that set them). Rows of commitments created before boundaries existed have none.

Revision ID: checkin_0003
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "checkin_0003"
down_revision = "checkin_0002"
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(JSONB(), "postgresql")
NONE = sa.text("""'{"exceptions": [], "places": []}'""")


def upgrade() -> None:
    op.add_column("checkin_commitments", sa.Column("boundaries", Json, nullable=False, server_default=NONE))
    op.add_column("checkin_commitments", sa.Column("boundaries_version", sa.Integer, nullable=False,
                                                   server_default=sa.text("0")))


def downgrade() -> None:
    # Batch mode: SQLite drops columns by copying the table.
    with op.batch_alter_table("checkin_commitments") as table:
        table.drop_column("boundaries_version")
        table.drop_column("boundaries")
