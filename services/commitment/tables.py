"""Read models of the commitment service (SQLAlchemy Core), all folded from its events.

Created by the ``commitment`` branch of infra/migrations; rebuilt from the store by
``nocontact commitment rebuild``.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Date, Index, Integer, MetaData, String, Table, Text

from shared.auth import credential_tables
from shared.schema import Json, UtcDateTime

metadata = MetaData()

CREDENTIALS = credential_tables(metadata, "commitment")

# One row per commitment: what GET and list answer from.
commitments = Table(
    "commitment_commitments",
    metadata,
    Column("commitment_id", String(64), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    # Global position of commitment.created: unique and increasing, so it is the list's
    # order and its cursor (a stable keyset, unlike offsets or timestamps).
    Column("seq", BigInteger, nullable=False, unique=True),
    Column("member_id", String(128), nullable=False),
    Column("coach_id", String(128)),
    # Sealed (services.commitment.personal), as in the events; so is the motivation.
    Column("contact_label", Text, nullable=False),
    Column("relationship", String(32), nullable=False),
    Column("channels", Json, nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("starts_on", Date, nullable=False),
    Column("duration_days", Integer),
    Column("ends_on", Date),
    Column("motivation", Text),
    # The boundaries, as the events carry them (labels sealed): [{label, channels}], [{label}].
    Column("exceptions", Json, nullable=False),
    Column("places", Json, nullable=False),
    # Status as recorded by events; the API combines it with `completes_at` and the clock.
    Column("recorded_status", String(16), nullable=False),
    # First instant (UTC) the period is over in the member's zone; null when indefinite.
    Column("completes_at", UtcDateTime()),
    Column("ended_on", Date),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("version", Integer, nullable=False),
    Index("commitment_commitments_tenant_seq", "tenant_id", "seq"),
    Index("commitment_commitments_tenant_member", "tenant_id", "member_id"),
    Index("commitment_commitments_tenant_coach", "tenant_id", "coach_id"),
    Index("commitment_commitments_due", "recorded_status", "completes_at"),
)

# Which coach each member is assigned to: applies to the member's future commitments too.
coach_assignments = Table(
    "commitment_coach_assignments",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("member_id", String(128), primary_key=True),
    Column("coach_id", String(128), nullable=False),
    Column("assigned_at", UtcDateTime(), nullable=False),
    Index("commitment_coach_assignments_coach", "tenant_id", "coach_id"),
)

# Members' profiles, folded from member.profile_updated (the display name sealed).
members = Table(
    "commitment_members",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("member_id", String(128), primary_key=True),
    Column("display_name", Text),
    Column("updated_at", UtcDateTime(), nullable=False),
    # The member stream's version when the profile last changed.
    Column("version", Integer, nullable=False),
)

# Members' erasures (shared.erasure): requested here, reported by each service.
erasures = Table(
    "commitment_erasures",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("member_id", String(128), primary_key=True),
    Column("services", Json, nullable=False),
    Column("requested_at", UtcDateTime(), nullable=False),
    # When member.erased was recorded: every service had reported.
    Column("erased_at", UtcDateTime()),
)

erasure_parts = Table(
    "commitment_erasure_parts",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("member_id", String(128), primary_key=True),
    Column("service", String(32), primary_key=True),
    Column("erased_at", UtcDateTime(), nullable=False),
)
