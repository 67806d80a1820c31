"""A member's coach: the assignment that outlives any single commitment.

``PUT /v1/coaches/{coach_id}/clients/{member_id}`` puts the member, not only today's
commitments, in the coach's care: commitments the member opens later get that coach
too. The fact is recorded on the tenant's coaching stream so the assignment read model
can be rebuilt from the store like every other one; the per-commitment
``coach.assigned`` / ``coach.unassigned`` events (see ``commitment``) are what other
services consume. These events stay inside this service (the relay does not publish the
``coaching`` category): consumers need commitment ids, which these do not carry.

Stream: ``coaching-<tenant_id>``. Events (``schema_version`` 1):

``coaching.client_assigned``
    ``tenant_id``, ``member_id``, ``coach_id``, ``previous_coach_id`` (str or null).
``coaching.client_unassigned``
    ``tenant_id``, ``member_id``, ``coach_id`` (the coach who was removed).
"""

from __future__ import annotations

from datetime import datetime

from shared.errors import Validator
from shared.events import NewEvent

from .commitment import COACH_ID_MAX, MEMBER_ID_MAX, InvalidCommitment

CLIENT_ASSIGNED = "coaching.client_assigned"
CLIENT_UNASSIGNED = "coaching.client_unassigned"
EVENT_TYPES: frozenset[str] = frozenset({CLIENT_ASSIGNED, CLIENT_UNASSIGNED})
STREAM_CATEGORY = "coaching"


def coaching_stream_id(tenant_id: str) -> str:
    return f"{STREAM_CATEGORY}-{tenant_id}"


def _checked(coach_id: object, member_id: object) -> tuple[str, str]:
    v = Validator(InvalidCommitment)
    coach = v.text("coach_id", coach_id, min_len=1, max_len=COACH_ID_MAX)
    member = v.text("member_id", member_id, min_len=1, max_len=MEMBER_ID_MAX)
    v.raise_if_any()
    assert coach is not None and member is not None
    return coach, member


def assign_client(
    *, tenant_id: str, member_id: object, coach_id: object, current_coach_id: str | None, now: datetime
) -> list[NewEvent]:
    """Assign a member to a coach; nothing when that coach already has them (PUT repeats safely)."""
    coach, member = _checked(coach_id, member_id)
    if coach == current_coach_id:
        return []
    data = {"tenant_id": tenant_id, "member_id": member, "coach_id": coach, "previous_coach_id": current_coach_id}
    return [NewEvent(type=CLIENT_ASSIGNED, data=data, occurred_at=now)]


def unassign_client(
    *, tenant_id: str, member_id: object, coach_id: object, current_coach_id: str | None, now: datetime
) -> list[NewEvent]:
    """Remove a member from a coach; nothing unless that very coach has them (DELETE is idempotent
    and removing coach A never detaches the member from coach B)."""
    coach, member = _checked(coach_id, member_id)
    if current_coach_id is None or coach != current_coach_id:
        return []
    data = {"tenant_id": tenant_id, "member_id": member, "coach_id": coach}
    return [NewEvent(type=CLIENT_UNASSIGNED, data=data, occurred_at=now)]
