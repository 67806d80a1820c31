"""Notification service: webhook endpoints, messages, deliveries, attempts, coach feed.

Revision ID: notification_0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "notification_0001"
down_revision = None
branch_labels = ("notification",)
depends_on = "0002_credentials"

Json = sa.JSON().with_variant(JSONB(), "postgresql")
Serial = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Aware = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "notification_endpoints",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("event_types", Json, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("disabled_reason", sa.Text),
        sa.Column("secret", sa.String(200), nullable=False),
        sa.Column("previous_secret", sa.String(200)),
        sa.Column("previous_secret_expires_at", Aware),
        sa.Column("failing_since", Aware),
        sa.Column("created_at", Aware, nullable=False),
        sa.Column("updated_at", Aware, nullable=False),
    )
    op.create_index("notification_endpoints_tenant", "notification_endpoints", ["tenant_id", "created_at"])
    op.create_table(
        "notification_messages",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("occurred_at", Aware, nullable=False),
        sa.Column("created_at", Aware, nullable=False),
    )
    op.create_table(
        "notification_deliveries",
        sa.Column("id", Serial, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("endpoint_id", sa.String(64), nullable=False),
        sa.Column("message_id", sa.String(64), nullable=False),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("schedule_step", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", Aware),
        sa.Column("leased_until", Aware),
        sa.Column("lease_token", sa.String(64)),
        sa.Column("last_status_code", sa.Integer),
        sa.Column("last_error", sa.Text),
        sa.Column("last_attempt_at", Aware),
        sa.Column("created_at", Aware, nullable=False),
        sa.Column("updated_at", Aware, nullable=False),
        sa.UniqueConstraint("endpoint_id", "message_id", name="notification_deliveries_endpoint_message"),
    )
    op.create_index("notification_deliveries_due", "notification_deliveries", ["state", "next_attempt_at"])
    op.create_index(
        "notification_deliveries_endpoint", "notification_deliveries", ["endpoint_id", "state", "created_at"]
    )
    op.create_table(
        "notification_attempts",
        sa.Column("id", Serial, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("endpoint_id", sa.String(64), nullable=False),
        sa.Column("delivery_id", sa.BigInteger, nullable=False),
        sa.Column("message_id", sa.String(64), nullable=False),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("status_code", sa.Integer),
        sa.Column("duration_ms", sa.Integer, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("response_excerpt", sa.Text),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("next_attempt_at", Aware),
        sa.Column("attempted_at", Aware, nullable=False),
    )
    op.create_index("notification_attempts_endpoint", "notification_attempts", ["endpoint_id", "id"])
    op.create_table(
        "notification_coach_assignments",
        sa.Column("tenant_id", sa.String(64), primary_key=True),
        sa.Column("commitment_id", sa.String(64), primary_key=True),
        sa.Column("member_id", sa.String(128), nullable=False),
        sa.Column("coach_id", sa.String(128)),
    )
    op.create_table(
        "notification_coaches",
        sa.Column("tenant_id", sa.String(64), primary_key=True),
        sa.Column("coach_id", sa.String(128), primary_key=True),
    )
    op.create_table(
        "notification_feed_items",
        sa.Column("id", Serial, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("coach_id", sa.String(128), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("commitment_id", sa.String(64), nullable=False),
        sa.Column("member_id", sa.String(128), nullable=False),
        sa.Column("data", Json, nullable=False),
        sa.Column("occurred_at", Aware, nullable=False),
        sa.UniqueConstraint("coach_id", "tenant_id", "event_id", name="notification_feed_items_once"),
    )
    op.create_index("notification_feed_coach", "notification_feed_items", ["tenant_id", "coach_id", "position"])


def downgrade() -> None:
    for table in (
        "notification_feed_items",
        "notification_coaches",
        "notification_coach_assignments",
        "notification_attempts",
        "notification_deliveries",
        "notification_messages",
        "notification_endpoints",
    ):
        op.drop_table(table)
