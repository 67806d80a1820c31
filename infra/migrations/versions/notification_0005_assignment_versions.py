"""Notification service: the commitment stream's version behind each coach assignment.

``notification_coach_assignments`` gains ``version``: the version of the commitment's
stream whose ``coach.assigned`` / ``coach.unassigned`` set the coach. An event moves the
assignment only when later, so one applied again after the inbox forgot it (a relay moved
back beyond the dedup window) or late (a parked message requeued) no longer hands a
member's feed back to a former coach.

Existing assignments get 0: their next ``coach.*`` event applies, as before. Until then an
assignment is guarded only as it was (an unassignment detaches only the coach it names), so
a relay moved back beyond the window before then can still take it back. Where the services share
the database, ``nocontact notification rebuild`` folds every assignment again from its
stream and sets them all. They are not taken from the log here: the inbox may not have
applied every event in it yet (a relay behind, a message parked), and a version it has not
reached would make it refuse those events when they arrive.

Revision ID: notification_0005
"""

import sqlalchemy as sa
from alembic import op

revision = "notification_0005"
down_revision = "notification_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("notification_coach_assignments", sa.Column("version", sa.Integer, nullable=False,
                                                              server_default=sa.text("0")))


def downgrade() -> None:
    # Batch mode: SQLite drops columns by copying the table.
    with op.batch_alter_table("notification_coach_assignments") as table:
        table.drop_column("version")
