"""A coach's private notes on a client: one note per (coach, client), written from the dashboard.

A note is a personal value about the member: recorded as ``coach_note.saved`` on a stream
of its own (``coachnote-<tenant>:<coach>:<member>``), the text sealed with the member's key
(shared.keyring) before the append, and copied sealed into ``checkin_coach_notes``. Only
that coach reads it (not the member, not another coach; an admin key neither: the dashboard
of an admin viewing a coach shows no notes). Erasing the member destroys their key: every
copy of every note reads as nothing. Its routing key matches no binding of the bus: it never
leaves this service (no webhook, no feed).

The member's export (GET /v1/members/{id}/export of this service) must include the notes
about them: `notes_of_member`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, Connection, Engine, Integer, String, Table, Text, insert, select, update

from services.checkin.tables import commitments, metadata
from shared import keyring
from shared.commands import Context, Pipeline, UnitOfWork
from shared.errors import NotFound, ValidationFailed, require_version
from shared.events import NewEvent
from shared.schema import UtcDateTime

NOTE_SAVED = "coach_note.saved"
STREAM_CATEGORY = "coachnote"
NOTE_MAX = 4000
PIPELINE = Pipeline()

notes = Table(
    "checkin_coach_notes",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("coach_id", String(128), primary_key=True),
    Column("member_id", String(128), primary_key=True),
    Column("note", Text, nullable=False),  # sealed (shared.keyring), as in the event
    Column("version", Integer, nullable=False),  # the note stream's version that wrote it
    Column("updated_at", UtcDateTime(), nullable=False),
)


def stream_id(tenant_id: str, coach_id: str, member_id: str) -> str:
    return f"{STREAM_CATEGORY}-{tenant_id}:{coach_id}:{member_id}"


def _require_client(conn: Connection, tenant_id: str, coach_id: str, member_id: str) -> None:
    """The member is a client of the coach (a commitment of theirs is coached by them)."""
    found = conn.execute(select(commitments.c.commitment_id).where(
        commitments.c.tenant_id == tenant_id, commitments.c.coach_id == coach_id,
        commitments.c.member_id == member_id).limit(1)).first()
    if found is None:
        raise NotFound("no such client of this coach")


def read_note(conn: Connection, tenant_id: str, coach_id: str, member_id: str) -> dict[str, Any]:
    _require_client(conn, tenant_id, coach_id, member_id)
    row = conn.execute(select(notes).where(notes.c.tenant_id == tenant_id, notes.c.coach_id == coach_id,
                                           notes.c.member_id == member_id)).first()
    if row is None:
        return {"member_id": member_id, "note": "", "version": 0, "updated_at": None}
    text = keyring.Opener(conn, tenant_id).open(row.note)
    return {"member_id": member_id, "note": text or "", "version": row.version,
            "updated_at": row.updated_at.isoformat(), "erased": text is None}


def save_note(engine: Engine, context: Context, coach_id: str, member_id: str, text: object, *,
              if_version: int | None, now: datetime) -> dict[str, Any]:
    """Write the coach's note on the client (an empty text clears it). `if_version`: the note's
    version the coach edited (another one answers 412 rather than losing a colleague tab's edit)."""
    if not isinstance(text, str) or len(text) > NOTE_MAX:
        raise ValidationFailed("note", f"must be a text of at most {NOTE_MAX} characters")
    tenant_id = context.tenant_id
    assert tenant_id is not None

    def command(uow: UnitOfWork) -> dict[str, Any]:
        _require_client(uow.conn, tenant_id, coach_id, member_id)
        where = (notes.c.tenant_id == tenant_id, notes.c.coach_id == coach_id, notes.c.member_id == member_id)
        current = uow.conn.execute(select(notes.c.version).where(*where)).scalar() or 0
        require_version(if_version, current)
        key = keyring.member_key(uow.conn, tenant_id, member_id)
        event = keyring.seal_event(key, NewEvent(NOTE_SAVED, {"coach_id": coach_id, "member_id": member_id,
                                                              "note": text}), ("note",))
        uow.record(stream_id(tenant_id, coach_id, member_id), [event], expected_version=current)
        (recorded,) = uow.commit()
        values = {"note": recorded.data["note"], "version": recorded.stream_version, "updated_at": recorded.occurred_at}
        if uow.conn.execute(update(notes).where(*where).values(**values)).rowcount == 0:
            uow.conn.execute(insert(notes).values(tenant_id=tenant_id, coach_id=coach_id, member_id=member_id,
                                                  **values))
        return {"member_id": member_id, "note": text, "version": recorded.stream_version,
                "updated_at": recorded.occurred_at.isoformat(), "erased": False}

    return keyring.creating_keys(engine, lambda: PIPELINE.run(engine, context, command, now=now), now=now)


def notes_of_member(conn: Connection, tenant_id: str, member_id: str) -> list[dict[str, Any]]:
    """Every coach's note about the member, opened: what the member's export must include."""
    rows = conn.execute(select(notes).where(notes.c.tenant_id == tenant_id, notes.c.member_id == member_id))
    opener = keyring.Opener(conn, tenant_id)
    return [{"coach_id": row.coach_id, "note": opener.open(row.note), "updated_at": row.updated_at.isoformat()}
            for row in rows]
