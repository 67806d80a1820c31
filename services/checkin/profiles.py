"""Members' display names, as the commitment service's ``member.profile_updated`` tells them.

The inbox folds the event into ``checkin_member_profiles`` with the name still sealed (as
the event carries it: shared.keyring), so it is opened only where it is shown (the coach
dashboard) and reads as nothing once the member is erased and their key destroyed. A
later event (by log position) wins; an older one arriving late changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import BigInteger, Column, Connection, String, Table, Text, insert, select, update

from services.checkin.tables import metadata
from shared import keyring
from shared.events import RecordedEvent
from shared.projection import Projection
from shared.schema import UtcDateTime

PROFILE_UPDATED = "member.profile_updated"

profiles = Table(
    "checkin_member_profiles",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("member_id", String(128), primary_key=True),
    Column("display_name", Text),  # sealed (shared.keyring), as in the event; None: cleared
    Column("position", BigInteger, nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)


def apply_profile_event(conn: Connection, event: RecordedEvent) -> None:
    tenant_id, member_id = event.tenant_id, event.data["member_id"]
    values = {"display_name": event.data.get("display_name"), "position": event.position,
              "updated_at": event.occurred_at}
    where = (profiles.c.tenant_id == tenant_id, profiles.c.member_id == member_id)
    known = conn.execute(select(profiles.c.position).where(*where)).first()
    if known is None:
        conn.execute(insert(profiles).values(tenant_id=tenant_id, member_id=member_id, **values))
    elif known.position < event.position:
        conn.execute(update(profiles).where(*where).values(**values))


def profiles_projection() -> Projection:
    """The names replayed from the store (`nocontact checkin rebuild --with-inbox`, the shared
    database only): how names set before this service listened for them are learnt."""
    return Projection(name="checkin.member_profiles", tables=[profiles], event_types=[PROFILE_UPDATED],
                      apply=apply_profile_event)


def display_names(conn: Connection, tenant_id: str, member_ids: Iterable[str]) -> dict[str, str | None]:
    """The display names of these members, opened (None: none set, or the member erased)."""
    rows = conn.execute(select(profiles.c.member_id, profiles.c.display_name).where(
        profiles.c.tenant_id == tenant_id, profiles.c.member_id.in_(list(member_ids)))).all()
    opener = keyring.Opener(conn, tenant_id)
    opener.prefetch(row.display_name for row in rows)
    return {row.member_id: opener.open(row.display_name) for row in rows}


def profile_json(name: Any) -> dict[str, Any]:
    return {"display_name": name}
