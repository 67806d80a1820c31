"""Check-in service: the commitment stream's version behind each field the inbox folds.

``checkin_commitments`` gains ``coach_version``, ``ends_on_version`` and ``status_version``
(the status with ``ended_on``), as ``boundaries_version`` (checkin_0003) for the
boundaries: the version of the commitment's stream that set them. An event changes a field
only when later, so one applied again after the inbox forgot it (a relay moved back beyond
the dedup window) or late (a parked message requeued) no longer takes a row back to an
older coach, last day or status.

Existing rows get 0: their next event of each kind applies, as before. Until then such a
field is guarded only as it was (an unassignment detaches only the coach it names), so a
relay moved back beyond the window before then can still take it back. Where the services share
the database, ``nocontact checkin rebuild --with-inbox`` folds every row again from its
stream and sets them all. They are not taken from the log here: the inbox may not have
applied every event in it yet (a relay behind, a message parked), and a version it has not
reached would make it refuse those events when they arrive.

Revision ID: checkin_0006
"""

import sqlalchemy as sa
from alembic import op

revision = "checkin_0006"
# The head of the check-in branch (the dashboard's migrations follow checkin_0005 on it).
down_revision = "dashboard_0002"
branch_labels = None
depends_on = None

COLUMNS = ("coach_version", "ends_on_version", "status_version")


def upgrade() -> None:
    for name in COLUMNS:
        op.add_column("checkin_commitments", sa.Column(name, sa.Integer, nullable=False,
                                                       server_default=sa.text("0")))


def downgrade() -> None:
    # Batch mode: SQLite drops columns by copying the table.
    with op.batch_alter_table("checkin_commitments") as table:
        for name in reversed(COLUMNS):
            table.drop_column(name)
