"""The event catalogue (shared.catalogue) against what the notification service sends.

When a test here fails after you added an event type, its message says what to add where.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from services.notification.domain.messages import WEBHOOK_EVENT_TYPES, example_body, message_id, webhook_body
from shared import catalogue
from shared.catalogue import CATALOGUE, EVENT_TYPES
from tests.support.catalogue import closed, problems

HOW_TO_ADD = (
    "add an EventType to EVENT_TYPES in shared/catalogue.py: its description, the JSON Schema of each field of "
    "its data (fields), the fields always present (required) and an example (see streak.milestone_revoked)"
)


def test_every_webhook_type_is_in_the_catalogue_and_nothing_else() -> None:
    missing = [t for t in WEBHOOK_EVENT_TYPES if t not in CATALOGUE]
    assert not missing, f"webhook event types without a catalogue entry: {missing}; {HOW_TO_ADD}"
    unsent = [t for t in CATALOGUE if t not in WEBHOOK_EVENT_TYPES]
    assert not unsent, (
        f"catalogue entries that no webhook sends: {unsent}; add them to WEBHOOK_EVENT_TYPES in "
        "services/notification/domain/messages.py (or remove them from shared/catalogue.py)"
    )
    assert len(EVENT_TYPES) == len(CATALOGUE), "an event type is in shared/catalogue.py twice"


@pytest.mark.parametrize("entry", EVENT_TYPES, ids=lambda entry: entry.type)
def test_each_schema_is_valid_json_schema_and_its_example_validates(entry: catalogue.EventType) -> None:
    Draft202012Validator.check_schema(entry.schema)
    assert entry.schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    example = entry.example
    assert example["type"] == entry.type
    assert set(example) == {"type", "timestamp", "data"}
    assert datetime.fromisoformat(example["timestamp"]).tzinfo is not None
    # Closed: the example names no field the schema does not document.
    assert problems(entry.type, example["data"]) == []
    # Every field the schema names is in the example, so the example shows them all.
    assert set(entry.schema["properties"]) == set(example["data"])
    assert set(entry.schema["required"]) <= set(entry.schema["properties"])
    assert entry.description.strip() and not entry.description.startswith(entry.type)


def _descriptions(schema: Any, path: str = "data") -> list[str]:
    """Fields without a description (partners read them in the catalogue)."""
    missing = []
    for name, field in schema.get("properties", {}).items():
        if not field.get("description"):
            missing.append(f"{path}.{name}")
        missing += _descriptions(field, f"{path}.{name}")
    return missing


@pytest.mark.parametrize("entry", EVENT_TYPES, ids=lambda entry: entry.type)
def test_every_field_is_described(entry: catalogue.EventType) -> None:
    assert _descriptions(entry.schema) == []


def test_the_validation_finds_what_the_tests_rely_on_it_to_find() -> None:
    data = CATALOGUE["checkin.recorded"].example["data"]
    found = problems("checkin.recorded", {**data, "note": "private", "date": "2026-02-30", "urge": 11})
    assert any("'note' was unexpected" in line for line in found), found
    assert any(line.startswith("checkin.recorded: data.date:") for line in found), found
    assert any(line.startswith("checkin.recorded: data.urge:") for line in found), found
    without = {k: v for k, v in data.items() if k != "policy"}
    assert problems("checkin.recorded", without) == ["checkin.recorded: data.(root): 'policy' is a required property"]
    assert problems("coach.unassigned", {}) == ["coach.unassigned: not in the event catalogue (shared/catalogue.py)"]
    # Partners' schemas stay open: a field added later does not break a receiver validating with them.
    assert Draft202012Validator(CATALOGUE["checkin.recorded"].schema).is_valid({**data, "added_later": 1})
    assert closed({"type": "object", "properties": {"a": {"type": "object", "properties": {}}}}) == {
        "type": "object", "additionalProperties": False,
        "properties": {"a": {"type": "object", "properties": {}, "additionalProperties": False}},
    }


def test_personal_values_may_be_null_once_erased_and_the_note_is_never_documented() -> None:
    created = CATALOGUE["commitment.created"].schema["properties"]
    assert created["contact"]["properties"]["label"]["type"] == ["string", "null"]
    assert created["motivation"]["type"] == ["string", "null"]
    assert CATALOGUE["commitment.ended"].schema["properties"]["reason"]["type"] == ["string", "null"]
    for entry in EVENT_TYPES:
        assert "note" not in entry.schema["properties"], entry.type


def test_a_real_body_of_the_example_event_validates() -> None:
    """The catalogue's data is what webhook_body makes of an event: the example's data (less
    event_id and sequence) as an event's data gives the example's body back."""
    for entry in EVENT_TYPES:
        example = entry.example
        data = {k: v for k, v in example["data"].items() if k not in catalogue.MESSAGE_FIELDS}
        body = json.loads(webhook_body(
            event_type=entry.type, event_id=uuid.UUID(example["data"]["event_id"]),
            occurred_at=datetime.fromisoformat(example["timestamp"]), sequence=example["data"]["sequence"],
            data={**data, "note": "never sent"},
        ))
        assert body == example, entry.type


def test_milestone_reached_carries_the_runs_reported_and_unreported_days() -> None:
    schema = CATALOGUE["streak.milestone_reached"].schema
    assert {"reported_days", "unreported_days"} <= set(schema["required"])
    assert "of the run" in schema["properties"]["unreported_days"]["description"].lower()
    revoked = CATALOGUE["streak.milestone_revoked"].schema
    assert {"milestone", "run_started_on", "reason"} <= set(revoked["required"])


def test_a_test_event_is_the_example_with_its_own_id_and_time_marked_test() -> None:
    event_id = uuid.uuid4()
    at = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    for entry in EVENT_TYPES:
        body = json.loads(example_body(entry.type, event_id, at))
        example = entry.example
        assert body == {
            "type": entry.type,
            "timestamp": "2026-12-01T09:30:00Z",
            "data": {**example["data"], "event_id": str(event_id)},
            "test": True,
        }
        assert problems(entry.type, body["data"]) == []
    assert message_id(event_id) == f"msg_{event_id.hex}"


def test_openapi_components_say_what_the_json_schemas_say() -> None:
    components = catalogue.openapi_components()
    for entry in EVENT_TYPES:
        data = components[entry.component]
        assert "$schema" not in data
        assert data["properties"].keys() == entry.schema["properties"].keys()
        assert data["required"] == entry.schema["required"]
        text = json.dumps(data)
        assert '"null"' not in text and '"type": [' not in text  # OpenAPI 3.0 says nullable
        webhook = components[entry.webhook_component]
        assert webhook["properties"]["data"] == {"$ref": f"#/components/schemas/{entry.component}"}
        assert webhook["properties"]["type"]["enum"] == [entry.type]
        assert webhook["example"] == entry.example
    assert components["CommitmentCreatedData"]["properties"]["motivation"]["nullable"] is True
    assert components["CheckinRecordedData"]["properties"]["slip"]["nullable"] is True
    payload = components[catalogue.PAYLOAD_COMPONENT]
    assert len(payload["oneOf"]) == len(EVENT_TYPES)
    assert set(payload["discriminator"]["mapping"]) == set(CATALOGUE)
    for name in components:
        assert re.fullmatch(r"[A-Za-z0-9._-]+", name), name  # OpenAPI component names


def test_component_names_come_from_the_type() -> None:
    assert CATALOGUE["streak.milestone_reached"].component == "StreakMilestoneReachedData"
    assert CATALOGUE["client.at_risk"].webhook_component == "ClientAtRiskWebhook"
    assert len({entry.component for entry in EVENT_TYPES}) == len(EVENT_TYPES)


def test_openapi_cannot_say_a_union_of_two_types() -> None:
    with pytest.raises(ValueError, match="cannot say"):
        catalogue.openapi_schema({"type": ["string", "integer"]})
