"""Read models and working tables of the notification service.

``notification_endpoints`` is the projection of the ``webhook_endpoint`` streams
(services.notification.projections), rebuildable from the store; its secrets are sealed
under the master key, as in the events. Messages, deliveries, attempts and the failure
clocks are the delivery queue itself, not views of the log: ``next_attempt_at`` in the
database is the truth, so a restart loses nothing and the worker never needs the broker
to remember a retry.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from shared.auth import credential_tables
from shared.schema import Json, Position, UtcDateTime

metadata = MetaData()


CREDENTIALS = credential_tables(metadata, "notification")

endpoints = Table(
    "notification_endpoints",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("url", Text, nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("event_types", Json, nullable=False),
    Column("status", String(16), nullable=False),  # enabled | disabled
    Column("disabled_reason", Text),
    # Sealed (shared.crypto, bound to the endpoint): opened only to sign a message.
    Column("secret", String(200), nullable=False),
    # The secret replaced by the last rotation keeps signing until this time.
    Column("previous_secret", String(200)),
    Column("previous_secret_expires_at", UtcDateTime()),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    # The endpoint stream's version: what a command on the endpoint decided on.
    Column("version", Integer, nullable=False),
    Index("notification_endpoints_tenant", "tenant_id", "created_at"),
)

# Endpoints whose attempts have all failed since ``failing_since`` (no row: the last
# attempt succeeded, or none failed yet): the 5-day rule. Moved by the delivery worker's
# attempts, which are not events.
failing_endpoints = Table(
    "notification_failing_endpoints",
    metadata,
    Column("endpoint_id", String(64), primary_key=True),
    Column("failing_since", UtcDateTime(), nullable=False),
)

# One webhook message per source event (the same body and webhook-id on every attempt).
messages = Table(
    "notification_messages",
    metadata,
    Column("id", String(64), primary_key=True),  # msg_<event uuid hex>
    Column("tenant_id", String(64), nullable=False),
    Column("event_id", String(64), nullable=False),
    Column("event_type", String(100), nullable=False),
    # The member the event is about (erasure finds their messages by it).
    Column("member_id", String(128)),
    # As the event carried it: personal values sealed, opened only to send (queue.claim).
    Column("body", Text, nullable=False),
    Column("occurred_at", UtcDateTime(), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Index("notification_messages_member", "tenant_id", "member_id"),
    Index("notification_messages_created", "created_at"),
)

# One row per (endpoint, message): the message's delivery state at that endpoint.
deliveries = Table(
    "notification_deliveries",
    metadata,
    Column("id", Position, primary_key=True, autoincrement=True),
    Column("tenant_id", String(64), nullable=False),
    Column("endpoint_id", String(64), nullable=False),
    Column("message_id", String(64), nullable=False),
    Column("event_type", String(100), nullable=False),
    # pending | succeeded | failed | skipped_disabled
    Column("state", String(20), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    # Attempts made in the current run of the schedule (a manual redelivery restarts it).
    Column("schedule_step", Integer, nullable=False, default=0),
    Column("next_attempt_at", UtcDateTime()),
    # A worker holds the delivery while its HTTP attempt runs; an expired lease (crash)
    # makes it due again. The token guards the result against a lease taken over.
    Column("leased_until", UtcDateTime()),
    Column("lease_token", String(64)),
    Column("last_status_code", Integer),
    Column("last_error", Text),
    Column("last_attempt_at", UtcDateTime()),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    UniqueConstraint("endpoint_id", "message_id", name="notification_deliveries_endpoint_message"),
    # The claim's reads, bounded by the endpoints with work and their caps rather than the
    # backlog (services.notification.delivery.queue): the skip scan to the endpoints with
    # pending deliveries and each one's oldest due delivery (state and endpoint first, so
    # no plan can walk every endpoint's due rows in time order looking for one endpoint's),
    # then its leases in flight (a recorded attempt clears its lease, so few rows are ever
    # leased). The queue metrics count pending rows by the first.
    Index("notification_deliveries_due", "state", "endpoint_id", "next_attempt_at"),
    Index("notification_deliveries_endpoint", "endpoint_id", "state", "created_at"),
    Index("notification_deliveries_leased", "endpoint_id", "leased_until",
          postgresql_where=text("leased_until IS NOT NULL"), sqlite_where=text("leased_until IS NOT NULL")),
)

# The attempt log shown at GET /v1/webhook-endpoints/{id}/deliveries.
attempts = Table(
    "notification_attempts",
    metadata,
    Column("id", Position, primary_key=True, autoincrement=True),
    Column("tenant_id", String(64), nullable=False),
    Column("endpoint_id", String(64), nullable=False),
    Column("delivery_id", BigInteger, nullable=False),
    Column("message_id", String(64), nullable=False),
    Column("event_type", String(100), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("status_code", Integer),
    Column("duration_ms", Integer, nullable=False),
    Column("error", Text),
    Column("response_excerpt", Text),
    # The delivery's state after this attempt: succeeded | retrying | failed
    Column("state", String(20), nullable=False),
    Column("next_attempt_at", UtcDateTime()),
    Column("attempted_at", UtcDateTime(), nullable=False),
    Index("notification_attempts_endpoint", "endpoint_id", "id"),
)

# Which coach looks after which commitment (folded from coach.assigned / coach.unassigned),
# and the version of the commitment's stream that set it: an event applied again or late
# never moves it back (projections.fold_assignment). 0: set before the row had a version
# (migration notification_0005), any event is later.
coach_assignments = Table(
    "notification_coach_assignments",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("commitment_id", String(64), primary_key=True),
    Column("member_id", String(128), nullable=False),
    Column("coach_id", String(128)),
    Column("version", Integer, nullable=False, server_default="0"),
)

# Coaches ever known in a tenant: tells "no such coach" (404) from "no news yet" (empty).
coaches = Table(
    "notification_coaches",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("coach_id", String(128), primary_key=True),
)

feed_items = Table(
    "notification_feed_items",
    metadata,
    Column("id", Position, primary_key=True, autoincrement=True),
    Column("tenant_id", String(64), nullable=False),
    Column("coach_id", String(128), nullable=False),
    Column("event_id", String(64), nullable=False),
    Column("position", BigInteger, nullable=False),
    Column("kind", String(32), nullable=False),  # messages.FEED_KINDS
    Column("event_type", String(100), nullable=False),
    Column("commitment_id", String(64), nullable=False),
    Column("member_id", String(128), nullable=False),
    Column("data", Json, nullable=False),
    Column("occurred_at", UtcDateTime(), nullable=False),
    # An item of a pinned kind (an SOS) stays on top of the feed until then, unless
    # acknowledged before (messages.PINNED_FOR); null: never pinned.
    Column("pinned_until", UtcDateTime()),
    # The first acknowledgement (domain.feed): when, and by which credential.
    Column("acknowledged_at", UtcDateTime()),
    Column("acknowledged_by", String(200)),
    UniqueConstraint("coach_id", "tenant_id", "event_id", name="notification_feed_items_once"),
    Index("notification_feed_coach", "tenant_id", "coach_id", "position"),
    Index("notification_feed_pinned", "tenant_id", "coach_id", "pinned_until"),
)
