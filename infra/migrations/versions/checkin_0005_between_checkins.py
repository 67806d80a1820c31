"""Check-in service: between check-ins (CONTRACT v1.1) — pauses, contact attempts and
necessary contact, urges, SOS, reminders.

- `checkin_check_ins` gains `contact_attempts` and `necessary_contact` (JSON, NULL: none);
- `checkin_streaks` gains the snapshot's `excused_days` and `held_firm_days` and the
  state's `pauses`, `urge_log` and `reminded_on` (rows from before hold none: no such
  event existed);
- new `checkin_pauses`, `checkin_urges` (personal values sealed) and `checkin_sos` (ids and
  instants: the per-member SOS limit).

Revision ID: checkin_0005
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "checkin_0005"
# checkin_0004 (check-in notes sealed, export/erasure) is another branch's; the lead chains
# this after it when both are merged.
down_revision = "checkin_0003"
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(JSONB(), "postgresql")
EMPTY_LIST = sa.text("'[]'")


def upgrade() -> None:
    op.add_column("checkin_check_ins", sa.Column("contact_attempts", Json))
    op.add_column("checkin_check_ins", sa.Column("necessary_contact", Json))
    for name in ("excused_days", "held_firm_days"):
        op.add_column("checkin_streaks", sa.Column(name, sa.Integer, nullable=False, server_default=sa.text("0")))
    for name in ("pauses", "urge_log"):
        op.add_column("checkin_streaks", sa.Column(name, Json, nullable=False, server_default=EMPTY_LIST))
    op.add_column("checkin_streaks", sa.Column("reminded_on", sa.Date))
    op.create_table(
        "checkin_pauses",
        sa.Column("pause_id", sa.String(64), primary_key=True),
        sa.Column("commitment_id", sa.String(64), nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("member_id", sa.String(128), nullable=False),
        sa.Column("first_day", sa.Date, nullable=False),
        sa.Column("last_day", sa.Date, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("scheduled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cancelled_at", sa.DateTime(timezone=True)),
    )
    op.create_index("checkin_pauses_commitment", "checkin_pauses", ["commitment_id", "first_day"])
    op.create_table(
        "checkin_urges",
        sa.Column("urge_id", sa.String(64), primary_key=True),
        sa.Column("commitment_id", sa.String(64), nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("member_id", sa.String(128), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("intensity", sa.Integer, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("trigger", sa.Text),
        sa.Column("coping", sa.Text),
        sa.Column("note", sa.Text),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("checkin_urges_commitment_at", "checkin_urges", ["commitment_id", "at", "urge_id"])
    op.create_table(
        "checkin_sos",
        sa.Column("event_id", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("member_id", sa.String(128), nullable=False),
        sa.Column("commitment_id", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("checkin_sos_member_at", "checkin_sos", ["tenant_id", "member_id", "at"])


def downgrade() -> None:
    op.drop_table("checkin_sos")
    op.drop_table("checkin_urges")
    op.drop_table("checkin_pauses")
    # Batch mode: SQLite drops columns by copying the table.
    with op.batch_alter_table("checkin_streaks") as table:
        for name in ("reminded_on", "urge_log", "pauses", "held_firm_days", "excused_days"):
            table.drop_column(name)
    with op.batch_alter_table("checkin_check_ins") as table:
        table.drop_column("necessary_contact")
        table.drop_column("contact_attempts")
