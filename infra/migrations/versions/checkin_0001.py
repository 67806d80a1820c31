"""Check-in service read models: commitments it knows, check-ins, streaks, tenant settings.

Revision ID: checkin_0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "checkin_0001"
down_revision = None
branch_labels = ("checkin",)
depends_on = "0002_credentials"

Json = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "checkin_commitments",
        sa.Column("commitment_id", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("member_id", sa.String(128), nullable=False),
        sa.Column("coach_id", sa.String(128)),
        sa.Column("contact_label", sa.String(200), nullable=False),
        sa.Column("relationship", sa.String(32), nullable=False),
        sa.Column("channels", Json, nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("starts_on", sa.Date, nullable=False),
        sa.Column("ends_on", sa.Date),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("ended_on", sa.Date),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("scheduler_due_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("checkin_commitments_tenant_member", "checkin_commitments", ["tenant_id", "member_id"])
    op.create_index("checkin_commitments_tenant_coach", "checkin_commitments", ["tenant_id", "coach_id"])
    op.create_index("checkin_commitments_due", "checkin_commitments", ["scheduler_due_at"])
    op.create_table(
        "checkin_check_ins",
        sa.Column("commitment_id", sa.String(64), primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("member_id", sa.String(128), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("urge", sa.Integer),
        sa.Column("mood", sa.Integer),
        sa.Column("slip_channel", sa.String(32)),
        sa.Column("slip_initiated_by", sa.String(8)),
        sa.Column("note", sa.Text),
        sa.Column("stream_version", sa.Integer, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "checkin_streaks",
        sa.Column("commitment_id", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False, index=True),
        sa.Column("member_id", sa.String(128), nullable=False),
        sa.Column("as_of", sa.Date, nullable=False),
        sa.Column("policy", sa.String(32), nullable=False),
        sa.Column("current_days", sa.Integer, nullable=False),
        sa.Column("longest_days", sa.Integer, nullable=False),
        sa.Column("kept_days", sa.Integer, nullable=False),
        sa.Column("slipped_days", sa.Integer, nullable=False),
        sa.Column("unreported_days", sa.Integer, nullable=False),
        sa.Column("streak_started_on", sa.Date),
        sa.Column("last_slip_on", sa.Date),
        sa.Column("last_check_in_on", sa.Date),
        sa.Column("milestones_reached", Json, nullable=False),
        sa.Column("next_milestone", sa.Integer),
        sa.Column("at_risk", sa.Boolean, nullable=False),
        sa.Column("risk_reasons", Json, nullable=False),
    )
    op.create_table(
        "checkin_settings",
        sa.Column("tenant_id", sa.String(64), primary_key=True),
        sa.Column("data", Json, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    for table in ("checkin_settings", "checkin_streaks", "checkin_check_ins", "checkin_commitments"):
        op.drop_table(table)
