"""Notification service: pinned items in the coach's feed, and acknowledgements.

``notification_feed_items`` gains ``pinned_until`` (an SOS stays on top until then unless
acknowledged; null: never pinned), ``acknowledged_at`` and ``acknowledged_by``, and an
index to find a coach's pinned items. Existing items are of kinds that are never pinned.

Revision ID: notification_0003
"""

import sqlalchemy as sa
from alembic import op

revision = "notification_0003"
down_revision = "notification_0002"
branch_labels = None
depends_on = None

Aware = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("notification_feed_items", sa.Column("pinned_until", Aware))
    op.add_column("notification_feed_items", sa.Column("acknowledged_at", Aware))
    op.add_column("notification_feed_items", sa.Column("acknowledged_by", sa.String(200)))
    op.create_index("notification_feed_pinned", "notification_feed_items", ["tenant_id", "coach_id", "pinned_until"])


def downgrade() -> None:
    op.drop_index("notification_feed_pinned", "notification_feed_items")
    # Batch mode: SQLite drops columns by copying the table.
    with op.batch_alter_table("notification_feed_items") as table:
        for name in ("acknowledged_by", "acknowledged_at", "pinned_until"):
            table.drop_column(name)
