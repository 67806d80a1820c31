"""The coach's feed: what a coach did with its items. Pure.

The feed itself is folded from other services' events (services.notification.projections);
a coach's acknowledgement is this service's own fact, recorded as an event so that a
rebuild of the feed keeps it (an SOS acknowledged yesterday must not jump back to the top).

Stream ``coach_feed-<event id>:<coach id>``, one per item (event ids are unique across
tenants), appended to at version 0 only: of two acknowledgements at once, one is recorded.
Never published (the relay publishes the ``notification`` category only). Events
(``schema_version`` 1):

``coach_feed.item_acknowledged``
    ``coach_id``, ``event_id`` (the event the item tells of: an item's id is a row id, which
    a rebuild renumbers). The acknowledging credential is the event's actor.
"""

from __future__ import annotations

from datetime import datetime

from shared.events import NewEvent

CATEGORY = "coach_feed"
ACKNOWLEDGED = "coach_feed.item_acknowledged"
EVENT_TYPES = (ACKNOWLEDGED,)


def stream_id(event_id: str, coach_id: str) -> str:
    """The stream of one item: the event it tells of, in one coach's feed."""
    return f"{CATEGORY}-{event_id}:{coach_id}"


def acknowledge(
    *, coach_id: str, event_id: str, acknowledged_at: datetime | None, now: datetime
) -> list[NewEvent]:
    """Acknowledge an item of the coach's feed; nothing when it already is (the first
    acknowledgement stands, and repeating the request is safe)."""
    if acknowledged_at is not None:
        return []
    return [NewEvent(ACKNOWLEDGED, {"coach_id": coach_id, "event_id": event_id}, occurred_at=now)]
