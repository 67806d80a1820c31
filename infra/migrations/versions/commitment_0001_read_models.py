"""Commitment service read models: commitments and coach assignments.

Revision ID: commitment_0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "commitment_0001"
down_revision = None
branch_labels = ("commitment",)
depends_on = "0002_credentials"

Json = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "commitment_commitments",
        sa.Column("commitment_id", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False, unique=True),
        sa.Column("member_id", sa.String(128), nullable=False),
        sa.Column("coach_id", sa.String(128)),
        sa.Column("contact_label", sa.String(200), nullable=False),
        sa.Column("relationship", sa.String(32), nullable=False),
        sa.Column("channels", Json, nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("starts_on", sa.Date, nullable=False),
        sa.Column("duration_days", sa.Integer),
        sa.Column("ends_on", sa.Date),
        sa.Column("motivation", sa.Text),
        sa.Column("recorded_status", sa.String(16), nullable=False),
        sa.Column("completes_at", sa.DateTime(timezone=True)),
        sa.Column("ended_on", sa.Date),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
    )
    op.create_index("commitment_commitments_tenant_seq", "commitment_commitments", ["tenant_id", "seq"])
    op.create_index("commitment_commitments_tenant_member", "commitment_commitments", ["tenant_id", "member_id"])
    op.create_index("commitment_commitments_tenant_coach", "commitment_commitments", ["tenant_id", "coach_id"])
    op.create_index("commitment_commitments_due", "commitment_commitments", ["recorded_status", "completes_at"])
    op.create_table(
        "commitment_coach_assignments",
        sa.Column("tenant_id", sa.String(64), primary_key=True),
        sa.Column("member_id", sa.String(128), primary_key=True),
        sa.Column("coach_id", sa.String(128), nullable=False),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "commitment_coach_assignments_coach", "commitment_coach_assignments", ["tenant_id", "coach_id"]
    )


def downgrade() -> None:
    op.drop_table("commitment_coach_assignments")
    op.drop_table("commitment_commitments")
