"""Coach dashboard: coaches' private notes on their clients, members' display names.

``checkin_coach_notes``: a coach's note on a client (services/checkin/coach_notes.py),
sealed with the member's key as its event recorded it. ``checkin_member_profiles``: the
display name the commitment service's ``member.profile_updated`` carries (sealed as there),
learnt through the inbox (services/checkin/profiles.py). Both become unreadable when the
member is erased (their key is destroyed).

Revision ID: dashboard_0002
"""

import sqlalchemy as sa
from alembic import op

revision = "dashboard_0002"
down_revision = "dashboard_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "checkin_coach_notes",
        sa.Column("tenant_id", sa.String(64), primary_key=True),
        sa.Column("coach_id", sa.String(128), primary_key=True),
        sa.Column("member_id", sa.String(128), primary_key=True),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "checkin_member_profiles",
        sa.Column("tenant_id", sa.String(64), primary_key=True),
        sa.Column("member_id", sa.String(128), primary_key=True),
        sa.Column("display_name", sa.Text),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("checkin_member_profiles")
    op.drop_table("checkin_coach_notes")
