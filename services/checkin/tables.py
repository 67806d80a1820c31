"""Read models of the check-in service (SQLAlchemy Core), all prefixed ``checkin_``.

Fed from two sides:
- the inbox (bus events of the commitment service): ``checkin_commitments`` and the
  credentials tables; no reads of the commitment service's own tables, ever;
- this service's own events, inline in the command's transaction and by rebuild:
  ``checkin_check_ins``, ``checkin_streaks``, ``checkin_settings``.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

from shared.auth import credential_tables
from shared.schema import Json, UtcDateTime

metadata = MetaData()

CREDENTIALS = credential_tables(metadata, "checkin")

# What this service knows of each commitment, folded from commitment.* and coach.* events.
commitments = Table(
    "checkin_commitments",
    metadata,
    Column("commitment_id", String(64), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("member_id", String(128), nullable=False),
    Column("coach_id", String(128)),
    Column("contact_label", Text, nullable=False),  # sealed (shared.keyring), as in the events
    Column("relationship", String(32), nullable=False),
    Column("channels", Json, nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("starts_on", Date, nullable=False),
    Column("ends_on", Date),
    Column("status", String(16), nullable=False),  # as recorded by events: active|completed|ended
    Column("ended_on", Date),
    Column("created_at", UtcDateTime(), nullable=False),
    # When the scheduler should look at this commitment next (a day ends, a grace passes).
    Column("scheduler_due_at", UtcDateTime(), nullable=False),
    # The boundaries as the commitment's events carry them, labels sealed:
    # {"exceptions": [{label, channels}], "places": [{label}]} (a check-in's
    # necessary_contact names an exception by its index), and the version of the
    # commitment's stream that set them (a later one wins).
    Column("boundaries", Json, nullable=False),
    Column("boundaries_version", Integer, nullable=False),
    # Likewise the versions that set the coach, the last day (ends_on) and the status with
    # ended_on (migration checkin_0006; 0: set before the row had them, any event is later):
    # an event applied again or late never takes them back (projections.apply_commitment_event).
    Column("coach_version", Integer, nullable=False, server_default="0"),
    Column("ends_on_version", Integer, nullable=False, server_default="0"),
    Column("status_version", Integer, nullable=False, server_default="0"),
    Index("checkin_commitments_tenant_member", "tenant_id", "member_id"),
    Index("checkin_commitments_tenant_coach", "tenant_id", "coach_id"),
    Index("checkin_commitments_due", "scheduler_due_at"),
)

# The standing report of each day (the latest of checkin.recorded/corrected for it).
check_ins = Table(
    "checkin_check_ins",
    metadata,
    Column("commitment_id", String(64), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("member_id", String(128), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("urge", Integer),
    Column("mood", Integer),
    Column("slip_channel", String(32)),
    Column("slip_initiated_by", String(8)),
    Column("note", Text),
    Column("stream_version", Integer, nullable=False),
    Column("recorded_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    # Between check-ins (migration checkin_0005): [{channel, answered}] on a kept day that held
    # firm; {exception, note (sealed)} on a kept day of necessary contact. NULL: none.
    Column("contact_attempts", Json),
    Column("necessary_contact", Json),
)

# Each commitment's decision state and streak snapshot, one row (see domain.state):
# - the state, a projection of the commitment's stream written in the transaction of every
#   append to it: `version` (NULL: not built yet, e.g. a row older than these columns; the
#   next command folds the stream once), `days` and `urges` (a character per day from
#   starts_on), the facts told (`milestones_announced` [[threshold, run start], ...],
#   `missed_told` [day, ...], `standing_announced` [reason, ...]); commands decide from it
#   and write it conditioned on the `version` and `settings_version` they loaded;
# - the snapshot: the streak as of `as_of` and the at-risk reasons then, refreshed by every
#   command, the scheduler when the commitment's day ends, a settings change and the inbox;
#   the API serves it while `as_of` is the commitment's today (see queries.streak_document).
#   `settings_version`: the settings it was computed with.
streaks = Table(
    "checkin_streaks",
    metadata,
    Column("commitment_id", String(64), primary_key=True),
    Column("tenant_id", String(64), nullable=False, index=True),
    Column("member_id", String(128), nullable=False),
    Column("as_of", Date, nullable=False),
    Column("policy", String(32), nullable=False),
    Column("current_days", Integer, nullable=False),
    Column("longest_days", Integer, nullable=False),
    Column("kept_days", Integer, nullable=False),
    Column("slipped_days", Integer, nullable=False),
    Column("unreported_days", Integer, nullable=False),
    Column("streak_started_on", Date),
    Column("last_slip_on", Date),
    Column("last_check_in_on", Date),
    Column("milestones_reached", Json, nullable=False),
    Column("next_milestone", Integer),
    Column("at_risk", Boolean, nullable=False),
    Column("risk_reasons", Json, nullable=False),
    Column("version", Integer),
    Column("settings_version", Integer, nullable=False),
    Column("days", Text, nullable=False),
    Column("urges", Text, nullable=False),
    Column("milestones_announced", Json, nullable=False),
    Column("missed_told", Json, nullable=False),
    Column("standing_announced", Json, nullable=False),
    # Between check-ins (migration checkin_0005): the snapshot's excused and held-firm days;
    # the state's pauses [[id, from, to], ...], latest urges [[at, id, intensity, outcome], ...]
    # and the latest day reminded of.
    Column("excused_days", Integer, nullable=False, server_default="0"),
    Column("held_firm_days", Integer, nullable=False, server_default="0"),
    Column("pauses", Json, nullable=False, server_default="[]"),
    Column("urge_log", Json, nullable=False, server_default="[]"),
    Column("reminded_on", Date),
)

# Pauses (pause.scheduled / pause.cancelled): what GET .../pauses lists. `reason` sealed.
pauses = Table(
    "checkin_pauses",
    metadata,
    Column("pause_id", String(64), primary_key=True),
    Column("commitment_id", String(64), nullable=False),
    Column("tenant_id", String(64), nullable=False),
    Column("member_id", String(128), nullable=False),
    Column("first_day", Date, nullable=False),
    Column("last_day", Date, nullable=False),
    Column("reason", Text),
    Column("scheduled_at", UtcDateTime(), nullable=False),
    Column("cancelled_at", UtcDateTime()),
    Index("checkin_pauses_commitment", "commitment_id", "first_day"),
)

# Urges logged between check-ins (urge.logged), what GET .../urges pages through. `trigger`,
# `coping` and `note` sealed; the note is in no event (CONTRACT: urge.logged has none), so
# this row is its only home: a rebuild leaves this table alone.
urges = Table(
    "checkin_urges",
    metadata,
    Column("urge_id", String(64), primary_key=True),
    Column("commitment_id", String(64), nullable=False),
    Column("tenant_id", String(64), nullable=False),
    Column("member_id", String(128), nullable=False),
    Column("at", UtcDateTime(), nullable=False),
    Column("intensity", Integer, nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("trigger", Text),
    Column("coping", Text),
    Column("note", Text),
    Column("recorded_at", UtcDateTime(), nullable=False),
    Index("checkin_urges_commitment_at", "commitment_id", "at", "urge_id"),
)

# Each SOS sent (member.sos), what the per-member limit counts. Ids and instants only.
sos_calls = Table(
    "checkin_sos",
    metadata,
    Column("event_id", String(64), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("member_id", String(128), nullable=False),
    Column("commitment_id", String(64), nullable=False),
    Column("at", UtcDateTime(), nullable=False),
    Index("checkin_sos_member_at", "tenant_id", "member_id", "at"),
)

settings = Table(
    "checkin_settings",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("data", Json, nullable=False),
    Column("version", Integer, nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)
