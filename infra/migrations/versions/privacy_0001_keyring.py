"""Members' data is theirs: the keyring, sealed values in read models, profiles, erasures.

- ``keyring``: one data key per (tenant, member), wrapped by the master key (shared.keyring);
- labels are stored sealed, longer than the label itself: ``contact_label`` becomes text in
  the commitment and check-in read models (PostgreSQL; SQLite does not enforce lengths);
- ``commitment_members`` (profiles), ``commitment_erasures`` and their parts;
- ``notification_messages.member_id`` (filled from the bodies already queued), so an
  erasure finds a member's messages, and an index on ``created_at`` for retention.

Values recorded before this revision stay as they were (in clear) in the log; they are
still read as they are.

Its own branch (``privacy``), after the tables it changes, so the services' branches move
on without it.

Revision ID: privacy_0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "privacy_0001"
down_revision = None
branch_labels = ("privacy",)
depends_on = ("commitment_0001", "checkin_0001", "notification_0002")

Aware = sa.DateTime(timezone=True)
Json = sa.JSON().with_variant(JSONB(), "postgresql")
LABELS = (("commitment_commitments", "contact_label"), ("checkin_commitments", "contact_label"))


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "keyring",
        sa.Column("key_id", sa.Uuid(), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("member_id", sa.String(128), nullable=False),
        sa.Column("wrapped_key", sa.Text),
        sa.Column("created_at", Aware, nullable=False),
        sa.Column("destroyed_at", Aware),
        sa.UniqueConstraint("tenant_id", "member_id", name="keyring_member"),
    )
    if postgresql:
        for table, column in LABELS:
            op.alter_column(table, column, type_=sa.Text, existing_type=sa.String(200), existing_nullable=False)
    op.create_table(
        "commitment_members",
        sa.Column("tenant_id", sa.String(64), primary_key=True),
        sa.Column("member_id", sa.String(128), primary_key=True),
        sa.Column("display_name", sa.Text),
        sa.Column("updated_at", Aware, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
    )
    op.create_table(
        "commitment_erasures",
        sa.Column("tenant_id", sa.String(64), primary_key=True),
        sa.Column("member_id", sa.String(128), primary_key=True),
        sa.Column("services", Json, nullable=False),
        sa.Column("requested_at", Aware, nullable=False),
        sa.Column("erased_at", Aware),
    )
    op.create_table(
        "commitment_erasure_parts",
        sa.Column("tenant_id", sa.String(64), primary_key=True),
        sa.Column("member_id", sa.String(128), primary_key=True),
        sa.Column("service", sa.String(32), primary_key=True),
        sa.Column("erased_at", Aware, nullable=False),
    )
    op.add_column("notification_messages", sa.Column("member_id", sa.String(128)))
    member = "body::jsonb -> 'data' ->> 'member_id'" if postgresql else "json_extract(body, '$.data.member_id')"
    op.execute(f"UPDATE notification_messages SET member_id = {member}")
    op.create_index("notification_messages_member", "notification_messages", ["tenant_id", "member_id"])
    op.create_index("notification_messages_created", "notification_messages", ["created_at"])


def downgrade() -> None:
    op.drop_index("notification_messages_created", "notification_messages")
    op.drop_index("notification_messages_member", "notification_messages")
    with op.batch_alter_table("notification_messages") as batch:
        batch.drop_column("member_id")
    for table in ("commitment_erasure_parts", "commitment_erasures", "commitment_members", "keyring"):
        op.drop_table(table)
    if op.get_bind().dialect.name == "postgresql":
        for table, column in LABELS:
            op.alter_column(table, column, type_=sa.String(200), existing_type=sa.Text, existing_nullable=False)
