"""The log in transaction order: each event records the id of the transaction that appended it.

Appends no longer serialise on one lock, so positions (a sequence) no longer become
visible in order; tailing readers follow (xid, position) instead, and only below the
oldest transaction still running (see shared.eventstore). Readers' checkpoints gain the
transaction id of the event they stopped at.

PostgreSQL: ``events.xid`` is an ``xid8`` defaulting to ``pg_current_xact_id()``, which is
STABLE: the default is evaluated once, here, and stored as the column's value for every
existing row without rewriting the table. So the whole existing log carries this
migration's transaction id and keeps its position order, which was its commit order (it
was appended under the lock). Every later append gets a larger id. A checkpoint that had
read anything is therefore at (this id, its position); one at position 0 stays at the
start. SQLite: one writer at a time already makes position order the commit order; the
columns exist (always 0) so that the tables are the same on both.

Revision ID: 0003_transaction_order
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_transaction_order"
down_revision = "0002_credentials"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE events ADD COLUMN xid xid8 NOT NULL DEFAULT pg_current_xact_id()")
        op.execute("CREATE INDEX events_xid_position ON events (xid, position)")
        op.execute("ALTER TABLE checkpoints ADD COLUMN xid xid8 NOT NULL DEFAULT '0'")
        op.execute("UPDATE checkpoints SET xid = pg_current_xact_id() WHERE position > 0")
    else:
        for table in ("events", "checkpoints"):
            op.add_column(table, sa.Column("xid", sa.BigInteger, nullable=False, server_default="0"))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX events_xid_position")
    for table in ("checkpoints", "events"):
        op.drop_column(table, "xid")
