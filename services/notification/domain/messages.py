"""What partners receive and what coaches see, derived from one event. Pure.

Webhook body (Standard Webhooks): ``{"type", "timestamp", "data"}``. ``data`` is the
event's own payload (ids, and for milestones and slips the streak figures the checkin
service put there) plus ``event_id`` and ``sequence`` (the event's version in its
stream: no sender guarantees order, so receivers need it to order per commitment).

The member's private ``note`` never leaves the service: notes are private to the member,
not to the platform's other systems, so neither webhooks nor the coach feed carry it.

Other personal values (a contact's label, a motivation) arrive sealed under the member's
key (shared.keyring) and are stored so: a message's body is opened only to be sent, a
feed item's data only to be shown.

A test event (``POST /v1/webhook-endpoints/{id}/test``) is the event catalogue's example of
its type (shared.catalogue), with an event id of its own, and ``"test": true`` beside
``type``: a receiver tells it from a real event without looking into ``data``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from shared.catalogue import CATALOGUE

#: CONTRACT's webhook event types, in documentation order. Each is described, with the
#: schema of its data and an example, in the event catalogue (shared.catalogue):
#: tests/unit/notification/test_catalogue.py holds the two to each other.
WEBHOOK_EVENT_TYPES: tuple[str, ...] = (
    "commitment.created",
    "commitment.extended",
    "commitment.ended",
    "commitment.completed",
    "coach.assigned",
    "checkin.recorded",
    "checkin.corrected",
    "checkin.withdrawn",
    "checkin.missed",
    "streak.milestone_reached",
    "streak.milestone_revoked",
    "streak.reset",
    "client.at_risk",
    # A member's erasure (shared.erasure): requested, then done on every service. Ids only.
    "member.erasure_requested",
    "member.erased",
)
WILDCARD = "*"

#: Payload keys that are private to the member and never delivered.
PRIVATE_KEYS = frozenset({"note"})


def message_id(event_id: object) -> str:
    """The webhook-id of an event's message: stable across retries and redeliveries."""
    return f"msg_{str(event_id).replace('-', '')}"


def matches(event_types: Iterable[str], event_type: str) -> bool:
    """True when an endpoint subscribed with ``event_types`` wants ``event_type``."""
    subscribed = set(event_types)
    return event_type in WEBHOOK_EVENT_TYPES and (WILDCARD in subscribed or event_type in subscribed)


def public_data(data: Mapping[str, Any]) -> dict[str, Any]:
    """The event payload without the member's private fields."""
    return {key: value for key, value in data.items() if key not in PRIVATE_KEYS}


def _timestamp(moment: datetime) -> str:
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat().replace("+00:00", "Z")


def webhook_body(
    *,
    event_type: str,
    event_id: object,
    occurred_at: datetime,
    sequence: int,
    data: Mapping[str, Any],
) -> bytes:
    """The exact bytes sent (and signed) on every attempt of the event's message."""
    payload = {
        "type": event_type,
        "timestamp": _timestamp(occurred_at),
        "data": {**public_data(data), "event_id": str(event_id), "sequence": sequence},
    }
    return serialise(payload)


def example_body(event_type: str, event_id: object, at: datetime) -> bytes:
    """The bytes of a test event of `event_type`: its catalogue example, sent at `at`."""
    example = CATALOGUE[event_type].example
    payload = {
        **example,
        "timestamp": _timestamp(at),
        "data": {**example["data"], "event_id": str(event_id)},
        "test": True,
    }
    return serialise(payload)


def serialise(payload: Mapping[str, Any]) -> bytes:
    """A webhook body's bytes: compact, keys sorted, so the same payload is the same bytes."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def feed_kind(event_type: str, data: Mapping[str, Any]) -> str | None:
    """The coach-feed kind of an event, or None when coaches are not told about it.

    A slip is the check-in that reports it (recorded, or corrected to slipped); the
    ``streak.reset`` that follows it would say the same thing twice. A coach told of a
    milestone is told when it is taken back.
    """
    if event_type in ("checkin.recorded", "checkin.corrected"):
        if data.get("outcome") == "slipped" and data.get("previous_outcome") != "slipped":
            return "slip"
        return None
    return _FEED_KINDS_OF.get(event_type)


_FEED_KINDS_OF = {
    "checkin.missed": "missed_day",
    "client.at_risk": "at_risk",
    "streak.milestone_reached": "milestone",
    "streak.milestone_revoked": "milestone_revoked",
}
#: The kinds of coach-feed items.
FEED_KINDS: tuple[str, ...] = ("slip", *_FEED_KINDS_OF.values())
