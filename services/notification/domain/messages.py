"""What partners receive and what coaches see, derived from one event. Pure.

Webhook body (Standard Webhooks): ``{"type", "timestamp", "data"}``. ``data`` is the
event's own payload (ids, and for milestones and slips the streak figures the checkin
service put there) plus ``event_id`` and ``sequence`` (the event's version in its
stream: no sender guarantees order, so receivers need it to order per commitment).

The member's private ``note`` never leaves the service: notes are private to the member,
not to the platform's other systems, so neither webhooks nor the coach feed carry it, at
any depth (a check-in's note, the note of its necessary contact). An SOS ``message`` is
written to the member's coach: the coach's feed shows it, webhooks never carry it.

The coach's feed pins what needs an answer now: an SOS stays above every other item until
a coach acknowledges it, or for `PINNED_FOR` after it was sent (`pinned_until`).

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
from datetime import UTC, datetime, timedelta
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
    # Between check-ins (CONTRACT v1.1): boundaries, reminders, urges, SOS, pauses.
    "commitment.boundaries_changed",
    "checkin.reminder_due",
    "urge.logged",
    "member.sos",
    "pause.scheduled",
    "pause.cancelled",
)
WILDCARD = "*"

#: Payload keys private to the member, never delivered to a webhook (at any depth).
PRIVATE_KEYS = frozenset({"note", "message"})
#: What the coach's feed leaves out: the member's own words (notes, an urge's trigger and
#: coping), as the check-in service's coach views do. An SOS message is meant for the coach.
FEED_PRIVATE_KEYS = frozenset({"note", "trigger", "coping"})

#: How long an item of these kinds stays pinned at the top of the coach's feed, unless a
#: coach acknowledges it first.
PINNED_FOR: dict[str, timedelta] = {"sos": timedelta(hours=24)}


def message_id(event_id: object) -> str:
    """The webhook-id of an event's message: stable across retries and redeliveries."""
    return f"msg_{str(event_id).replace('-', '')}"


def matches(event_types: Iterable[str], event_type: str) -> bool:
    """True when an endpoint subscribed with ``event_types`` wants ``event_type``."""
    subscribed = set(event_types)
    return event_type in WEBHOOK_EVENT_TYPES and (WILDCARD in subscribed or event_type in subscribed)


def _without(value: Any, private: frozenset[str]) -> Any:
    if isinstance(value, Mapping):
        return {key: _without(item, private) for key, item in value.items() if key not in private}
    if isinstance(value, list):
        return [_without(item, private) for item in value]
    return value


def public_data(data: Mapping[str, Any]) -> dict[str, Any]:
    """The event payload as webhooks carry it: without the member's private fields."""
    return dict(_without(data, PRIVATE_KEYS))


def feed_data(data: Mapping[str, Any]) -> dict[str, Any]:
    """The event payload as the coach's feed shows it: without the member's own words."""
    return dict(_without(data, FEED_PRIVATE_KEYS))


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
    milestone is told when it is taken back. Of the urges, a coach is told of those that
    ended in reaching out (the others are in the client view).
    """
    if event_type in ("checkin.recorded", "checkin.corrected"):
        if data.get("outcome") == "slipped" and data.get("previous_outcome") != "slipped":
            return "slip"
        return None
    if event_type == "urge.logged":
        return "urge_reached_out" if data.get("outcome") == "reached_out" else None
    return _FEED_KINDS_OF.get(event_type)


_FEED_KINDS_OF = {
    "checkin.missed": "missed_day",
    "client.at_risk": "at_risk",
    "streak.milestone_reached": "milestone",
    "streak.milestone_revoked": "milestone_revoked",
    "member.sos": "sos",
}
#: The kinds of coach-feed items.
FEED_KINDS: tuple[str, ...] = ("slip", "urge_reached_out", *_FEED_KINDS_OF.values())


def pinned_until(kind: str, occurred_at: datetime) -> datetime | None:
    """Until when a new feed item of `kind` stays pinned (None: never pinned)."""
    pinned_for = PINNED_FOR.get(kind)
    return None if pinned_for is None else occurred_at + pinned_for
