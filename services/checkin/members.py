"""A member's data in the check-in service: what it holds, its export, its erasure.

What this service holds about a member: their commitments as the inbox folded them
(``checkin_commitments``: the contact's label and the boundaries' labels sealed, as the
commitment service sealed them), their check-ins (``checkin_check_ins``, the notes sealed
here, services.checkin.personal), each commitment's state and streak row
(``checkin_streaks``), their pauses, urges and SOS (``checkin_pauses``, ``checkin_urges``,
``checkin_sos``: personal values sealed), the events of their check-in streams, and parked
inbox messages about them.

Erasure (`scrub`, run by the ``erasure`` worker part on ``member.erasure_requested``, see
`shared.erasure`): the member's key is destroyed (the commitment service did it already
when the store is shared; with a database of its own this service's keyring holds the
keys of the notes it sealed) and every row above is deleted. Afterwards the member's
commitments answer 404 here, nothing new is written for them (the inbox does not fold an
erased member's ``commitment.created``, the scheduler has nothing of theirs to look at, a
command finds the key destroyed), and the rebuilds skip their streams
(services.checkin.projections, services.checkin.rebuild). Their events stay in the log,
their notes unreadable.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, select

from services.checkin import coach_notes, profiles, tables
from services.checkin.domain import stream_id
from services.checkin.queries import commitment_from_row
from shared import erasure, keyring
from shared.consumer import Consumer, forget_member_dead_letters
from shared.db import read
from shared.topology import CHECKIN_ERASURE, CHECKIN_INBOX

SERVICE = "checkin"


def erased(conn: Connection, tenant_id: str | None, member_id: object) -> bool:
    """Whether the member of the tenant was erased (their key destroyed)."""
    return tenant_id is not None and bool(keyring.erased_members(conn, tenant_id, [str(member_id)]))


def scrub(conn: Connection, tenant_id: str, member_id: str, now: datetime) -> None:
    """Destroy the member's key and delete what this service holds about them (shared.erasure.Scrub)."""
    keyring.destroy(conn, tenant_id, member_id, now=now)
    commitments = tables.commitments
    theirs = (commitments.c.tenant_id == tenant_id) & (commitments.c.member_id == member_id)
    # By commitment (the rows' keys), not by member: those tables have no index on it. The
    # state rows first: a command on one of these commitments writes its state row last, so
    # this delete waits for it to commit, and the next statement sees (and deletes) the day
    # row it wrote; a command that comes later finds the commitment gone and answers 404.
    owned = select(commitments.c.commitment_id).where(theirs)
    for table in (tables.streaks, tables.check_ins, tables.pauses, tables.urges, tables.sos_calls):
        conn.execute(delete(table).where(table.c.commitment_id.in_(owned)))
    conn.execute(delete(commitments).where(theirs))
    # The coach dashboard's copies: coaches' notes on the member and their display name.
    for table in (coach_notes.notes, profiles.profiles):
        conn.execute(delete(table).where(table.c.tenant_id == tenant_id, table.c.member_id == member_id))
    forget_member_dead_letters(conn, [CHECKIN_INBOX.name, CHECKIN_ERASURE.name], tenant_id, member_id)


def erasure_consumer(engine: Engine, **options: object) -> Consumer:
    """The ``erasure`` part: scrubs, and reports to the commitment service."""
    return erasure.erasure_consumer(engine, CHECKIN_ERASURE, SERVICE, scrub, **options)


def export_member(engine: Engine, tenant_id: str, member_id: str, now: datetime) -> dict[str, Any] | None:
    """Everything this service holds about the member, personal values opened; None when
    it holds nothing (an unknown member, another tenant's, or one erased)."""
    commitments, check_ins, streaks = tables.commitments, tables.check_ins, tables.streaks
    with read(engine) as conn:
        rows = conn.execute(
            select(commitments)
            .where(commitments.c.tenant_id == tenant_id, commitments.c.member_id == member_id)
            .order_by(commitments.c.created_at, commitments.c.commitment_id)
        ).all()
        if not rows:
            return None
        ids = [row.commitment_id for row in rows]
        days: dict[str, list[Any]] = {}
        for day in conn.execute(
            select(check_ins).where(check_ins.c.commitment_id.in_(ids)).order_by(check_ins.c.day)
        ):
            days.setdefault(day.commitment_id, []).append(day)
        states = {state.commitment_id: state for state in conn.execute(
            select(streaks).where(streaks.c.commitment_id.in_(ids)))}
        # Between check-ins: pauses and urges (an urge's note is in its row only).
        between: dict[str, dict[str, list[Any]]] = {}
        for name, table, order in (("pauses", tables.pauses, tables.pauses.c.first_day),
                                   ("urges", tables.urges, tables.urges.c.at)):
            for found in conn.execute(select(table).where(table.c.commitment_id.in_(ids)).order_by(order)):
                item = {k: v for k, v in found._mapping.items() if k not in ("commitment_id", "tenant_id")}
                between.setdefault(found.commitment_id, {}).setdefault(name, []).append(item)
        opener = keyring.Opener(conn, tenant_id)
        opener.prefetch([(row.contact_label, row.boundaries) for row in rows]
                        + [(day.note, day.necessary_contact) for found in days.values() for day in found]
                        + list(between.values()))
        exported = []
        for row in rows:
            commitment = commitment_from_row(row)
            state = states.get(row.commitment_id)
            exported.append({
                "commitment_id": row.commitment_id,
                "contact": {"label": opener.open(row.contact_label), "relationship": row.relationship},
                "channels": row.channels,
                "timezone": row.timezone,
                "starts_on": row.starts_on,
                "ends_on": row.ends_on,
                "status": str(commitment.status_at(now)),
                "ended_on": row.ended_on,
                "coach_id": row.coach_id,
                "boundaries": opener.open_all(row.boundaries),
                "check_ins": [
                    {
                        "date": day.day, "outcome": day.outcome, "urge": day.urge, "mood": day.mood,
                        "slip": {"channel": day.slip_channel, "initiated_by": day.slip_initiated_by}
                        if day.slip_channel else None,
                        "note": opener.open(day.note), "version": day.stream_version,
                        "recorded_at": day.recorded_at, "updated_at": day.updated_at,
                        "contact_attempts": day.contact_attempts or [],
                        "necessary_contact": opener.open_all(day.necessary_contact),
                    }
                    for day in days.get(row.commitment_id, [])
                ],
                "streak": None if state is None else {
                    name: getattr(state, name)
                    for name in ("as_of", "policy", "current_days", "longest_days", "kept_days", "slipped_days",
                                 "unreported_days", "streak_started_on", "last_slip_on", "last_check_in_on",
                                 "milestones_reached", "next_milestone", "at_risk", "risk_reasons")
                },
                "pauses": opener.open_all(between.get(row.commitment_id, {}).get("pauses", [])),
                "urges": opener.open_all(between.get(row.commitment_id, {}).get("urges", [])),
                "history": erasure.stream_history(conn, opener, stream_id(row.commitment_id)),
            })
        # What the coach dashboard holds: the display name as learnt, the coaches' notes on them.
        name = profiles.display_names(conn, tenant_id, [member_id]).get(member_id)
        notes = coach_notes.notes_of_member(conn, tenant_id, member_id)
    return erasure.export_document(member_id, SERVICE, now, {"commitments": exported, "profile": {"display_name": name},
                                                              "coach_notes": notes})
