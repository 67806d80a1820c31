"""What is personal in the check-in service: the one place that says so.

A personal value is sealed under its member's key (`shared.keyring`) before its event is
appended; the read models copy it sealed, and it is opened only where it is read (the API
answers to the member or an admin, the export). Everything else stays in clear (ids,
dates, outcomes, urge and mood levels, slips, streaks), so the projections, the
rebuilds, the scheduler and the state rows never need a key.

Sealed here:

- ``checkin.recorded`` and ``checkin.corrected``: the member's ``note``
  (``checkin_check_ins.note``) and the note of a necessary contact
  (``necessary_contact.note``, CONTRACT "Between check-ins": sealed as soon as a report
  carries one). A withdrawal carries no note.
- ``pause.scheduled``: the reason (``checkin_pauses.reason``);
- ``urge.logged``: the trigger and the coping (``checkin_urges.trigger``, ``.coping``); the
  urge's note is in no event (CONTRACT: ``urge.logged`` has none): `seal_note` seals it into
  its row (``checkin_urges.note``), bound to the event's id;
- ``member.sos``: the message (for the coach's feed; webhooks never carry it).

Held sealed as they came (sealed by the commitment service, services.commitment.personal):
the contact's label and the labels of the boundaries in ``checkin_commitments``.

Notes recorded before sealing existed are plain text in the log: they read as they are
(`shared.keyring.Opener` passes anything not sealed through).

**For a new personal field** (an urge's trigger, coping and note, an SOS message, a
pause's reason): add its event type and the paths of the values to `EVENT_FIELDS` (the
event's data must name its ``member_id``), pass the command's events through `seal` before
``uow.record`` and run the command in ``keyring.creating_keys`` (the member's first sealed
value makes their key); open it with a ``keyring.Opener`` where the API answers. Its rows then
go with the member's other rows in ``services.checkin.members.scrub``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection

from shared import keyring
from shared.events import NewEvent

from .domain import CHECKIN_CORRECTED, CHECKIN_RECORDED, MEMBER_SOS, PAUSE_SCHEDULED, URGE_LOGGED

REPORT_FIELDS = ("note", "necessary_contact.note")

EVENT_FIELDS: keyring.PersonalFields = {
    CHECKIN_RECORDED: REPORT_FIELDS,
    CHECKIN_CORRECTED: REPORT_FIELDS,
    PAUSE_SCHEDULED: ("reason",),
    URGE_LOGGED: ("trigger", "coping"),
    MEMBER_SOS: ("message",),
}


def _value_at(data: Any, path: str) -> Any:
    """The value at a dotted path (``*``: any item of a list), None when absent; with
    ``*``, the first item's that is not None."""
    head, _, rest = path.partition(".")
    if head == "*":
        found = [_value_at(item, rest) for item in data] if isinstance(data, list) else []
        return next((value for value in found if value is not None), None)
    if not isinstance(data, dict) or data.get(head) is None:
        return None
    return _value_at(data[head], rest) if rest else data[head]


def carries_personal(event: NewEvent) -> bool:
    """Whether the event holds a personal value (a check-in without a note holds none)."""
    return any(_value_at(event.data, path) is not None for path in EVENT_FIELDS.get(event.type, ()))


def seal(conn: Connection, tenant_id: str, events: Sequence[NewEvent], key: keyring.KeyRow | None = None,
         ) -> list[NewEvent]:
    """`events` with their personal values sealed, each under its member's key (read in the
    command's transaction, or `key`: the member's keyring row the command's inputs read, or
    None when it has none; `shared.keyring.KeyMissing` when the member has no key yet, which
    ``keyring.creating_keys`` makes; `keyring.MemberErased` once erased).

    Events without a personal value go as they are, and when none has one no key is read:
    a check-in without a note costs nothing and needs no key."""
    if not any(carries_personal(event) for event in events):
        return list(events)
    known = {} if key is None else {key.member_id: keyring.key_of_row(key, tenant_id, key.member_id)}
    return keyring.seal_events(conn, tenant_id, events, EVENT_FIELDS, known)


def seal_note(conn: Connection, tenant_id: str, member_id: str, note: str | None, event: NewEvent) -> str | None:
    """A personal value that stays out of `event` (an urge's note), sealed under the member's
    key bound to it, for its row."""
    if note is None:
        return None
    return keyring.member_key(conn, tenant_id, member_id).seal(note, event.id)
