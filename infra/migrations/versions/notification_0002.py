"""Notification service: endpoints become the projection of their streams.

- ``notification_endpoints.version``: the stream version a command decides on;
- ``failing_since`` moves to ``notification_failing_endpoints`` (attempts are not events,
  so it cannot be part of a table rebuilt from them);
- webhook secrets are sealed under the master key (shared.crypto) in place.

Endpoints created before this revision have no sealed values in their events: the table
keeps them, but a rebuild of ``notification_endpoints`` from the store cannot restore
their secrets (rotate their secrets once to make them rebuildable).

Revision ID: notification_0002
"""

from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

from shared import crypto

revision = "notification_0002"
down_revision = "notification_0001"
branch_labels = None
depends_on = None

Aware = sa.DateTime(timezone=True)
PLAIN_SECRET_PREFIX = "whsec_"

endpoints = sa.table(
    "notification_endpoints",
    sa.column("id", sa.String),
    sa.column("secret", sa.String),
    sa.column("previous_secret", sa.String),
)


def _secret_associated_data(endpoint_id: str) -> str:
    # As services.notification.domain.endpoints.secret_associated_data binds it (copied:
    # a migration must not change meaning when the code moves on).
    return f"webhook_endpoint:{endpoint_id}:secret"


def _reseal(transform: Callable[[str, str], str]) -> None:
    conn = op.get_bind()
    for row in conn.execute(sa.select(endpoints.c.id, endpoints.c.secret, endpoints.c.previous_secret)).all():
        ad = _secret_associated_data(row.id)
        conn.execute(
            endpoints.update()
            .where(endpoints.c.id == row.id)
            .values(
                secret=transform(row.secret, ad),
                previous_secret=transform(row.previous_secret, ad) if row.previous_secret else None,
            )
        )


def upgrade() -> None:
    op.create_table(
        "notification_failing_endpoints",
        sa.Column("endpoint_id", sa.String(64), primary_key=True),
        sa.Column("failing_since", Aware, nullable=False),
    )
    op.execute(
        "INSERT INTO notification_failing_endpoints (endpoint_id, failing_since) "
        "SELECT id, failing_since FROM notification_endpoints WHERE failing_since IS NOT NULL"
    )
    op.add_column("notification_endpoints", sa.Column("version", sa.Integer, nullable=False, server_default="0"))
    op.execute(
        "UPDATE notification_endpoints SET version = COALESCE((SELECT max(stream_version) FROM events "
        "WHERE events.stream_id = 'webhook_endpoint-' || notification_endpoints.id), 0)"
    )
    with op.batch_alter_table("notification_endpoints") as batch:
        batch.drop_column("failing_since")
        batch.alter_column("version", server_default=None)
    _reseal(lambda value, ad: crypto.seal_text(value, ad) if value.startswith(PLAIN_SECRET_PREFIX) else value)


def downgrade() -> None:
    _reseal(lambda value, ad: value if value.startswith(PLAIN_SECRET_PREFIX) else crypto.unseal_text(value, ad))
    with op.batch_alter_table("notification_endpoints") as batch:
        batch.add_column(sa.Column("failing_since", Aware))
        batch.drop_column("version")
    op.execute(
        "UPDATE notification_endpoints SET failing_since = (SELECT failing_since FROM "
        "notification_failing_endpoints f WHERE f.endpoint_id = notification_endpoints.id)"
    )
    op.drop_table("notification_failing_endpoints")
