"""Consumers forget what they applied once it is older than the dedup window.

processed_events gained a row per event per consuming component, forever. Consumers now
delete their rows past ``NOCONTACT_DEDUP_WINDOW_DAYS`` (shared.consumer), oldest first, a
batch at a time: this index finds a component's oldest rows without reading the others.

The build holds writes to ``processed_events`` back while it runs (the consumers wait;
nothing is lost). The table holds a row per event per consuming component, so on a large
store build the index first without blocking, then migrate, which then finds it there:

    CREATE INDEX CONCURRENTLY IF NOT EXISTS processed_events_component_age
        ON processed_events (component, processed_at);

A concurrent build that failed or was cancelled leaves the index INVALID, and this
migration would then keep it: check ``pg_index.indisvalid`` and, if false, ``DROP INDEX
CONCURRENTLY processed_events_component_age`` and build it again.

Its own branch (``retention``), after the event store whose table it indexes.

Revision ID: retention_0001
"""

from alembic import op

revision = "retention_0001"
down_revision = None
branch_labels = ("retention",)
depends_on = "0001_event_store"


def upgrade() -> None:
    op.create_index("processed_events_component_age", "processed_events", ["component", "processed_at"],
                    if_not_exists=True)


def downgrade() -> None:
    op.drop_index("processed_events_component_age", table_name="processed_events")
