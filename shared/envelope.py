"""The message envelope on the bus, its schema, and the versioning of event payloads.

The envelope is CONTRACT.md's: {"id", "type", "schema_version", "tenant_id", "stream_id",
"stream_version", "position", "occurred_at", "recorded_at", "correlation_id",
"causation_id", "actor", "data"}.

Payloads evolve: a service registers an upcaster per (type, from_version) that turns an
old payload into the next version, so handlers only ever see the newest shape. An event
whose version is newer than the reader knows is kept as it is (flagged by `is_known`)
rather than crashed on: consumers park it instead of guessing at its meaning.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from marshmallow import Schema

from shared.events import RecordedEvent


class MalformedEnvelope(ValueError):
    """A message body that is not a valid envelope; the reason says what is wrong."""


# The envelope's fields and how each is read. Checked by hand rather than by a marshmallow
# schema: every consumer decodes every message, and the schema's generic machinery was a
# sixth of the notification worker's CPU per check-in (issue 14). Same rules: required
# fields present, strict integers, aware datetimes, None allowed where the contract allows
# it; fields a newer producer adds are tolerated.
_REQUIRED_TEXT = ("type", "stream_id")
_OPTIONAL_TEXT = ("tenant_id", "correlation_id", "causation_id", "actor")
_INTEGERS = ("schema_version", "stream_version", "position")
_INSTANTS = ("occurred_at", "recorded_at")


def _instant(value: Any) -> datetime | str:
    """The aware datetime of an ISO 8601 string, or what is wrong with it."""
    if not isinstance(value, str):
        return "not a string"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return "not an ISO 8601 date and time"
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        return "not an aware date and time (no UTC offset)"
    return parsed


def _loaded(raw: dict[str, Any]) -> dict[str, Any]:
    """The envelope's values, typed; raises MalformedEnvelope naming every wrong field."""
    loaded: dict[str, Any] = {}
    errors: dict[str, str] = {}
    try:
        identifier = raw["id"]
        loaded["id"] = identifier if isinstance(identifier, uuid.UUID) else uuid.UUID(identifier)
    except KeyError:
        errors["id"] = "missing"
    except (TypeError, ValueError, AttributeError):
        errors["id"] = "not a UUID"
    for name in _REQUIRED_TEXT:
        value = raw.get(name)
        if isinstance(value, str):
            loaded[name] = value
        else:
            errors[name] = "missing" if name not in raw else "not a string"
    for name in _OPTIONAL_TEXT:
        value = raw.get(name)
        if value is None or isinstance(value, str):
            loaded[name] = value
        else:
            errors[name] = "not a string or null"
    for name in _INTEGERS:
        value = raw.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            loaded[name] = value
        else:
            errors[name] = "missing" if name not in raw else "not an integer"
    for name in _INSTANTS:
        instant = _instant(raw[name]) if name in raw else "missing"
        if isinstance(instant, datetime):
            loaded[name] = instant
        else:
            errors[name] = instant
    data = raw.get("data")
    if isinstance(data, dict):
        loaded["data"] = data
    else:
        errors["data"] = "missing" if "data" not in raw else "not an object"
    if errors:
        raise MalformedEnvelope(f"invalid envelope: {errors}")
    return loaded


def to_envelope(event: RecordedEvent) -> dict[str, Any]:
    return {
        "id": str(event.id),
        "type": event.type,
        "schema_version": event.schema_version,
        "tenant_id": event.tenant_id,
        "stream_id": event.stream_id,
        "stream_version": event.stream_version,
        "position": event.position,
        "occurred_at": event.occurred_at.isoformat(),
        "recorded_at": event.recorded_at.isoformat(),
        "correlation_id": event.correlation_id,
        "causation_id": event.causation_id,
        "actor": event.actor,
        "data": event.data,
    }


def encode(event: RecordedEvent) -> bytes:
    return json.dumps(to_envelope(event), separators=(",", ":")).encode()


def decode(body: bytes | str) -> RecordedEvent:
    """Parse and validate a message body; raises MalformedEnvelope with the reason."""
    try:
        raw = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MalformedEnvelope(f"body is not JSON: {error}") from error
    if not isinstance(raw, dict):
        raise MalformedEnvelope("body is not a JSON object")
    loaded = _loaded(raw)
    return RecordedEvent(
        id=loaded["id"],
        type=loaded["type"],
        schema_version=loaded["schema_version"],
        stream_id=loaded["stream_id"],
        stream_version=loaded["stream_version"],
        position=loaded["position"],
        data=loaded["data"],
        tenant_id=loaded["tenant_id"],
        correlation_id=loaded["correlation_id"],
        causation_id=loaded["causation_id"],
        actor=loaded["actor"],
        occurred_at=loaded["occurred_at"],
        recorded_at=loaded["recorded_at"],
    )


Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class EventVersions:
    """Current schema version of each event type and the upcasters that reach it."""

    def __init__(self) -> None:
        self._current: dict[str, int] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}
        self._schemas: dict[str, type[Schema]] = {}

    def register(self, event_type: str, version: int = 1, schema: type[Schema] | None = None) -> None:
        """Declare the newest version of a type, optionally with its payload schema."""
        self._current[event_type] = max(version, self._current.get(event_type, 1))
        if schema is not None:
            self._schemas[event_type] = schema

    def upcaster(self, event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Decorate a function turning version `from_version` of a payload into the next."""

        def decorate(function: Upcaster) -> Upcaster:
            self._upcasters[(event_type, from_version)] = function
            self._current[event_type] = max(self._current.get(event_type, 1), from_version + 1)
            return function

        return decorate

    def current_version(self, event_type: str) -> int:
        return self._current.get(event_type, 1)

    def is_known(self, event: RecordedEvent) -> bool:
        return event.schema_version <= self.current_version(event.type)

    def upcast(self, event: RecordedEvent) -> RecordedEvent:
        """The event in its newest known shape; a newer-than-known event is returned as is."""
        data, version = event.data, event.schema_version
        while (event.type, version) in self._upcasters:
            data = self._upcasters[(event.type, version)](dict(data))
            version += 1
        if version == event.schema_version:
            return event
        return replace(event, data=data, schema_version=version)

    def validate(self, event_type: str, data: dict[str, Any]) -> dict[str, list[str]]:
        """Validation messages of a payload against its registered schema (empty when valid)."""
        schema = self._schemas.get(event_type)
        if schema is None:
            return {}
        errors = schema().validate(data)
        return errors  # type: ignore[return-value]


#: The one registry every service registers its event types with.
versions = EventVersions()


def new_id() -> uuid.UUID:
    return uuid.uuid4()
