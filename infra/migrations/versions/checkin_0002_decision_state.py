"""Check-in service: each commitment's decision state beside its streak snapshot.

`checkin_streaks` gains the state the commands decide from (services.checkin.domain.state).
Rows that exist keep `version` NULL: "not built", the next command on the commitment (or
`nocontact checkin rebuild`) folds its stream once and fills them.

Revision ID: checkin_0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "checkin_0002"
down_revision = "checkin_0001"
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(JSONB(), "postgresql")
EMPTY_LIST = sa.text("'[]'")


def upgrade() -> None:
    op.add_column("checkin_streaks", sa.Column("version", sa.Integer))
    op.add_column("checkin_streaks", sa.Column("settings_version", sa.Integer, nullable=False,
                                               server_default=sa.text("0")))
    op.add_column("checkin_streaks", sa.Column("days", sa.Text, nullable=False, server_default=""))
    op.add_column("checkin_streaks", sa.Column("urges", sa.Text, nullable=False, server_default=""))
    for name in ("milestones_announced", "missed_told", "standing_announced"):
        op.add_column("checkin_streaks", sa.Column(name, Json, nullable=False, server_default=EMPTY_LIST))


def downgrade() -> None:
    # Batch mode: SQLite drops columns by copying the table.
    with op.batch_alter_table("checkin_streaks") as table:
        for name in ("standing_announced", "missed_told", "milestones_announced", "urges", "days",
                     "settings_version", "version"):
            table.drop_column(name)
