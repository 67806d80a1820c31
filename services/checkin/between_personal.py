"""What is personal in the between-check-in events of the check-in service, sealed under
the member's key (`shared.keyring`) before the append; opened only where it is read.

Until the check-in service's own ``personal`` module (check-in notes, export and erasure)
is merged, the between-check-in values are sealed here; the two merge into one place:

- ``checkin.recorded`` / ``checkin.corrected``: the note of the day's necessary contact;
- ``pause.scheduled``: the reason;
- ``urge.logged``: the trigger and the coping (the urge's note is in no event: it is
  sealed into its row, bound to the event's id);
- ``member.sos``: the message (for the coach's feed; webhooks never carry it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection

from services.checkin.domain import (
    CHECKIN_CORRECTED,
    CHECKIN_RECORDED,
    MEMBER_SOS,
    PAUSE_SCHEDULED,
    URGE_LOGGED,
)
from shared import keyring
from shared.events import NewEvent

EVENT_FIELDS: keyring.PersonalFields = {
    CHECKIN_RECORDED: ("necessary_contact.note",),
    CHECKIN_CORRECTED: ("necessary_contact.note",),
    PAUSE_SCHEDULED: ("reason",),
    URGE_LOGGED: ("trigger", "coping"),
    MEMBER_SOS: ("message",),
}


def _value_at(data: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data


def seal(conn: Connection, tenant_id: str, events: Sequence[NewEvent]) -> list[NewEvent]:
    """`events` with their personal values sealed under their member's key. An event with
    no personal value given is left as it is (most check-ins: no key is read for them)."""
    personal = [e for e in events if any(_value_at(e.data, p) is not None for p in EVENT_FIELDS.get(e.type, ()))]
    if not personal:
        return list(events)
    sealed = dict(zip((e.id for e in personal), keyring.seal_events(conn, tenant_id, personal, EVENT_FIELDS),
                      strict=True))
    return [sealed.get(e.id, e) for e in events]


def seal_note(conn: Connection, tenant_id: str, member_id: str, note: str | None, event: NewEvent) -> str | None:
    """A note that stays out of `event` (an urge's), sealed bound to it."""
    if note is None:
        return None
    return keyring.member_key(conn, tenant_id, member_id).seal(note, event.id)
