"""What is personal in the commitment service: the one place that says so.

A personal value is sealed under its member's key (`shared.keyring`) before its event is
appended; the read models copy it sealed, and it is opened only where it is read (the API
answers, the export). Everything else stays in clear (ids, relationship, channels, time
zone, dates, status, coach), so projections, rebuilds, the scheduler and metrics never
need a key.

- ``commitment.created``: the contact's label, the motivation and the labels of the
  boundaries (``commitment_commitments.contact_label``, ``.motivation``, the labels in
  ``.exceptions`` and ``.places``);
- ``commitment.boundaries_changed``: the labels of the boundaries;
- ``commitment.ended``: the reason (free text the member may fill with anything);
- ``member.profile_updated``: the display name (``commitment_members.display_name``).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection

from shared import keyring
from shared.events import NewEvent

from .domain import commitment, members

BOUNDARY_LABELS = ("exceptions.*.label", "places.*.label")

EVENT_FIELDS: keyring.PersonalFields = {
    commitment.CREATED: ("contact.label", "motivation", *BOUNDARY_LABELS),
    commitment.BOUNDARIES_CHANGED: BOUNDARY_LABELS,
    commitment.ENDED: ("reason",),
    members.PROFILE_UPDATED: ("display_name",),
}


def seal(conn: Connection, tenant_id: str, events: Sequence[NewEvent]) -> list[NewEvent]:
    """`events` with their personal values sealed, each under its member's key (read in
    the command's transaction: `shared.keyring.creating_keys` makes a missing one)."""
    return keyring.seal_events(conn, tenant_id, events, EVENT_FIELDS)
