"""The event store: the append-only log, reader checkpoints, processed events, dead letters.

Revision ID: 0001_event_store
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001_event_store"
down_revision = None
branch_labels = ("shared",)
depends_on = None

Position = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("position", Position, primary_key=True, autoincrement=True),
        sa.Column("id", sa.Uuid(), nullable=False, unique=True),
        sa.Column("stream_id", sa.String(200), nullable=False),
        sa.Column("stream_version", sa.Integer, nullable=False),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("type", sa.String(100), nullable=False),
        sa.Column("schema_version", sa.Integer, nullable=False),
        sa.Column("data", Json, nullable=False),
        sa.Column("tenant_id", sa.String(64)),
        sa.Column("correlation_id", sa.String(64)),
        sa.Column("causation_id", sa.String(64)),
        sa.Column("actor", sa.String(200)),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("stream_id", "stream_version", name="events_stream_version_key"),
    )
    op.create_index("events_category_position", "events", ["category", "position"])
    op.create_index("events_tenant_position", "events", ["tenant_id", "position"])
    # The database itself refuses to rewrite history, whoever connects.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION events_refuse_change() RETURNS trigger AS $$
            BEGIN
              RAISE EXCEPTION 'the event store is append-only: % refused', TG_OP
                USING ERRCODE = 'restrict_violation';
            END $$ LANGUAGE plpgsql
            """
        )
        op.execute(
            "CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events "
            "FOR EACH ROW EXECUTE FUNCTION events_refuse_change()"
        )
        op.execute(
            "CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events "
            "FOR EACH STATEMENT EXECUTE FUNCTION events_refuse_change()"
        )
    else:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER events_refuse_{action.lower()} BEFORE {action} ON events "
                f"BEGIN SELECT RAISE(ABORT, 'the event store is append-only: {action} refused'); END"
            )

    op.create_table(
        "checkpoints",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "processed_events",
        sa.Column("component", sa.String(100), primary_key=True),
        sa.Column("event_id", sa.Uuid(), primary_key=True),
        sa.Column("stream_id", sa.String(200), nullable=False),
        sa.Column("stream_version", sa.Integer, nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "dead_letters",
        sa.Column("id", Position, primary_key=True, autoincrement=True),
        sa.Column("component", sa.String(100), nullable=False),
        sa.Column("event_id", sa.String(64)),
        sa.Column("event_type", sa.String(100)),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("headers", Json),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("requeued_at", sa.DateTime(timezone=True)),
    )


def downgrade() -> None:
    for table in ("dead_letters", "processed_events", "checkpoints", "events"):
        op.drop_table(table)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS events_refuse_change()")
