"""Notification service: indexes that bound a delivery claim by the endpoints' caps.

The claim read every due delivery at each call (grouped by endpoint) and counted every
pending one to find the leases in flight: its cost grew with the backlog, and the worker
claims after every finished attempt. It now finds the endpoints with pending deliveries
by a skip scan, then reads each one's oldest due delivery and its leases in flight
(services.notification.delivery.queue):
- ``notification_deliveries_due`` becomes (state, endpoint_id, next_attempt_at), was
  (state, next_attempt_at): the skip scan walks it from endpoint to endpoint, and a plan
  for one endpoint's oldest due delivery can no longer walk every endpoint's due rows in
  time order;
- ``notification_deliveries_leased``: (endpoint_id, leased_until) of the leased rows only.

The builds hold writes to ``notification_deliveries`` back while they run (the inbox and
the delivery worker wait; nothing is lost). With millions of deliveries kept (retention),
build the new indexes first without blocking, then migrate, which then only swaps them:

    CREATE INDEX CONCURRENTLY notification_deliveries_due_new
        ON notification_deliveries (state, endpoint_id, next_attempt_at);
    CREATE INDEX CONCURRENTLY notification_deliveries_leased
        ON notification_deliveries (endpoint_id, leased_until) WHERE leased_until IS NOT NULL;

Revision ID: notification_0004
"""

import sqlalchemy as sa
from alembic import op

revision = "notification_0004"
down_revision = "notification_0003"
branch_labels = None
depends_on = None

TABLE = "notification_deliveries"
LEASED = sa.text("leased_until IS NOT NULL")


def upgrade() -> None:
    op.drop_index("notification_deliveries_due", TABLE)
    if op.get_bind().dialect.name == "postgresql" and _exists("notification_deliveries_due_new"):
        # Built beforehand (see above).
        op.execute("ALTER INDEX notification_deliveries_due_new RENAME TO notification_deliveries_due")
    else:
        op.create_index("notification_deliveries_due", TABLE, ["state", "endpoint_id", "next_attempt_at"])
    if not _exists("notification_deliveries_leased"):
        op.create_index("notification_deliveries_leased", TABLE, ["endpoint_id", "leased_until"],
                        postgresql_where=LEASED, sqlite_where=LEASED)


def _exists(index: str) -> bool:
    return index in {found["name"] for found in sa.inspect(op.get_bind()).get_indexes(TABLE)}


def downgrade() -> None:
    op.drop_index("notification_deliveries_leased", TABLE)
    op.drop_index("notification_deliveries_due", TABLE)
    op.create_index("notification_deliveries_due", TABLE, ["state", "next_attempt_at"])
