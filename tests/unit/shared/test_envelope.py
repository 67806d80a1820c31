"""The bus envelope and payload versioning: pure, no broker."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from shared.envelope import EventVersions, MalformedEnvelope, decode, encode, to_envelope
from shared.events import RecordedEvent


def _event(**changes: object) -> RecordedEvent:
    base = dict(
        id=uuid.uuid4(), type="checkin.recorded", schema_version=1, stream_id="checkin-1",
        stream_version=3, position=42, data={"outcome": "kept"}, tenant_id="t1",
        correlation_id="c1", causation_id=None, actor="member:m1",
        occurred_at=datetime(2026, 11, 21, 8, 0, tzinfo=UTC), recorded_at=datetime(2026, 11, 21, 8, 0, 1, tzinfo=UTC),
    )
    base.update(changes)
    return RecordedEvent(**base)  # type: ignore[arg-type]


def test_envelope_round_trips_with_exactly_the_contract_fields() -> None:
    event = _event()
    body = encode(event)
    assert set(json.loads(body)) == {
        "id", "type", "schema_version", "tenant_id", "stream_id", "stream_version", "position",
        "occurred_at", "recorded_at", "correlation_id", "causation_id", "actor", "data",
    }
    assert decode(body) == event


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\xff\xfe not utf-8", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"id": "x"}', "invalid envelope"),
    ],
)
def test_malformed_bodies_are_refused_with_a_reason(body: bytes, reason: str) -> None:
    with pytest.raises(MalformedEnvelope, match=reason):
        decode(body)


def test_a_wrongly_typed_field_is_named() -> None:
    raw = to_envelope(_event())
    raw["stream_version"] = "three"
    with pytest.raises(MalformedEnvelope, match="stream_version"):
        decode(json.dumps(raw))


def test_unknown_envelope_fields_from_a_newer_producer_are_tolerated() -> None:
    raw = {**to_envelope(_event()), "partition": 7}
    assert decode(json.dumps(raw)).type == "checkin.recorded"


def test_upcasters_chain_old_payloads_to_the_newest_shape() -> None:
    versions = EventVersions()

    @versions.upcaster("checkin.recorded", from_version=1)
    def _v1_to_v2(data: dict) -> dict:  # type: ignore[type-arg]
        return {**data, "urge": None}

    @versions.upcaster("checkin.recorded", from_version=2)
    def _v2_to_v3(data: dict) -> dict:  # type: ignore[type-arg]
        return {**{k: v for k, v in data.items() if k != "outcome"}, "kept": data["outcome"] == "kept"}

    upcast = versions.upcast(_event())
    assert upcast.schema_version == 3 == versions.current_version("checkin.recorded")
    assert upcast.data == {"urge": None, "kept": True}
    assert versions.upcast(upcast) == upcast  # the newest shape is left alone


def test_an_event_newer_than_the_reader_knows_is_kept_not_crashed_on() -> None:
    versions = EventVersions()
    versions.register("checkin.recorded", 2)
    newer = _event(schema_version=5, data={"shape": "from the future"})
    assert not versions.is_known(newer)
    assert versions.upcast(newer) == newer
    assert versions.is_known(_event(schema_version=2))
