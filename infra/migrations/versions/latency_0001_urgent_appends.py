"""Urgent appends wake the relays at once: a NOTIFY for the events a person waits on.

Relays poll the log (``NOCONTACT_RELAY_POLL_INTERVAL_S``); an event someone waits on (an
SOS: its coach, and a partner's webhook within a second) should not wait for the next
poll. On PostgreSQL, appending one of `URGENT_TYPES` notifies channel ``nocontact_urgent``
with ``<schema>:<category>``, delivered when its transaction commits; the active relay of
that category LISTENs and reads at once (shared.relay).

Only these types notify: PostgreSQL serialises the commits of transactions that NOTIFY
(one lock, held through the commit's WAL flush), so a NOTIFY in every append would undo
parallel appends (measured: 4 writers no faster than 1). An SOS is rare and rate-limited.
The trigger runs after the insert, so the append stays the transaction's first write.

SQLite: nothing (its relay shares the process or polls).

Its own branch (``latency``), after the event store it extends.

Revision ID: latency_0001
"""

from alembic import op

revision = "latency_0001"
down_revision = None
branch_labels = ("latency",)
depends_on = "0003_transaction_order"

CHANNEL = "nocontact_urgent"
URGENT_TYPES = ("member.sos",)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        f"""
        CREATE FUNCTION events_notify_urgent() RETURNS trigger AS $$
        BEGIN
          PERFORM pg_notify('{CHANNEL}', current_schema() || ':' || NEW.category);
          RETURN NULL;
        END $$ LANGUAGE plpgsql
        """
    )
    types = ", ".join(f"'{event_type}'" for event_type in URGENT_TYPES)
    op.execute(
        f"CREATE TRIGGER events_urgent AFTER INSERT ON events FOR EACH ROW WHEN (NEW.type IN ({types})) "
        "EXECUTE FUNCTION events_notify_urgent()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER events_urgent ON events")
    op.execute("DROP FUNCTION events_notify_urgent()")
