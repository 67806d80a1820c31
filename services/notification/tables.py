"""Read models and working tables of the notification service.

Endpoint configuration and secrets live here and only here: secrets are not event data
(they must never reach the bus or the log). Messages, deliveries and attempts are the
delivery queue itself: ``next_attempt_at`` in the database is the truth, so a restart
loses nothing and the worker never needs the broker to remember a retry.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from shared.auth import credential_tables
from shared.schema import Json, Position

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
    Column("secret", String(200), nullable=False),
    # The secret replaced by the last rotation keeps signing until this time.
    Column("previous_secret", String(200)),
    Column("previous_secret_expires_at", DateTime(timezone=True)),
    # Start of the current run of failed attempts (None after a success): the 5-day rule.
    Column("failing_since", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("notification_endpoints_tenant", "tenant_id", "created_at"),
)

# One webhook message per source event (the same body and webhook-id on every attempt).
messages = Table(
    "notification_messages",
    metadata,
    Column("id", String(64), primary_key=True),  # msg_<event uuid hex>
    Column("tenant_id", String(64), nullable=False),
    Column("event_id", String(64), nullable=False),
    Column("event_type", String(100), nullable=False),
    Column("body", Text, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
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
    Column("next_attempt_at", DateTime(timezone=True)),
    # A worker holds the delivery while its HTTP attempt runs; an expired lease (crash)
    # makes it due again. The token guards the result against a lease taken over.
    Column("leased_until", DateTime(timezone=True)),
    Column("lease_token", String(64)),
    Column("last_status_code", Integer),
    Column("last_error", Text),
    Column("last_attempt_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("endpoint_id", "message_id", name="notification_deliveries_endpoint_message"),
    Index("notification_deliveries_due", "state", "next_attempt_at"),
    Index("notification_deliveries_endpoint", "endpoint_id", "state", "created_at"),
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
    Column("next_attempt_at", DateTime(timezone=True)),
    Column("attempted_at", DateTime(timezone=True), nullable=False),
    Index("notification_attempts_endpoint", "endpoint_id", "id"),
)

# Which coach looks after which commitment (folded from coach.assigned / coach.unassigned).
coach_assignments = Table(
    "notification_coach_assignments",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("commitment_id", String(64), primary_key=True),
    Column("member_id", String(128), nullable=False),
    Column("coach_id", String(128)),
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
    Column("kind", String(32), nullable=False),  # slip | missed_day | at_risk | milestone
    Column("event_type", String(100), nullable=False),
    Column("commitment_id", String(64), nullable=False),
    Column("member_id", String(128), nullable=False),
    Column("data", Json, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("coach_id", "tenant_id", "event_id", name="notification_feed_items_once"),
    Index("notification_feed_coach", "tenant_id", "coach_id", "position"),
)
