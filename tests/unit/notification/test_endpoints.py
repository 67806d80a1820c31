"""Webhook endpoint decisions: the events each command produces, and what it refuses."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.notification.domain import endpoints as rules
from services.notification.domain.endpoints import Endpoint, Status

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ID = str(uuid.uuid4())


def _endpoint(status: Status = Status.ENABLED, version: int = 1) -> Endpoint:
    return Endpoint(ID, "t1", status, version)


def test_create_carries_the_url_without_query_and_the_values_sealed() -> None:
    (event,) = rules.create(
        ID,
        url="https://partner.example/hook?token=abc#frag",
        event_types=("checkin.missed",),
        description="d",
        sealed_url="SEALED-URL",
        sealed_secret="SEALED-SECRET",
    )
    assert event.type == rules.CREATED
    assert event.data == {
        "endpoint_id": ID,
        "url": "https://partner.example/hook",
        "event_types": ["checkin.missed"],
        "description": "d",
        "sealed_url": "SEALED-URL",
        "sealed_secret": "SEALED-SECRET",
    }
    assert "token" not in json.dumps(event.data)


def test_update_records_the_patched_fields_and_nothing_for_no_change() -> None:
    (event,) = rules.update(
        _endpoint(), {"url": "https://p.example/new?k=v", "event_types": ("*",)}, sealed_url="S"
    )
    assert event.type == rules.UPDATED
    assert event.data == {
        "endpoint_id": ID,
        "changes": {"url": "https://p.example/new", "event_types": ["*"]},
        "sealed_url": "S",
    }
    (described,) = rules.update(_endpoint(), {"description": "new"}, sealed_url=None)
    assert described.data == {"endpoint_id": ID, "changes": {"description": "new"}}
    assert rules.update(_endpoint(), {}, sealed_url=None) == []
    with pytest.raises(ValueError, match="sealed_url"):
        rules.update(_endpoint(), {"url": "https://p.example/"}, sealed_url=None)


def test_rotation_keeps_the_replaced_secret_for_the_overlap() -> None:
    (event,) = rules.rotate_secret(_endpoint(), sealed_secret="S2", now=NOW)
    assert event.type == rules.SECRET_ROTATED
    assert event.data == {
        "endpoint_id": ID,
        "previous_secret_expires_at": (NOW + timedelta(hours=24)).isoformat(),
        "sealed_secret": "S2",
    }


def test_enable_and_disable_change_only_what_is_not_so_already() -> None:
    assert [e.type for e in rules.enable(_endpoint(Status.DISABLED))] == [rules.ENABLED]
    assert rules.enable(_endpoint(Status.ENABLED)) == []
    (disabled,) = rules.disable(_endpoint(Status.ENABLED), "HTTP 410 Gone")
    assert disabled.type == rules.DISABLED and disabled.data == {"endpoint_id": ID, "reason": "HTTP 410 Gone"}
    # A disabled endpoint keeps the reason it was first disabled for.
    assert rules.disable(_endpoint(Status.DISABLED), "by hand") == []


def test_delete_and_redelivery_rules() -> None:
    assert [(e.type, e.data) for e in rules.delete(_endpoint())] == [(rules.DELETED, {"endpoint_id": ID})]
    rules.require_enabled(_endpoint(Status.ENABLED))
    with pytest.raises(rules.EndpointDisabled, match="enable it before redelivering"):
        rules.require_enabled(_endpoint(Status.DISABLED))
    # The answer says why the endpoint was disabled, and what was refused.
    gone = rules.Endpoint(ID, "t", Status.DISABLED, 3, "HTTP 410 Gone: receiver asked to stop")
    with pytest.raises(rules.EndpointDisabled) as refused:
        rules.require_enabled(gone, "sending a test event")
    assert str(refused.value) == (
        "the endpoint is disabled (HTTP 410 Gone: receiver asked to stop): enable it before sending a test event"
    )


# Fixed values: every xdist worker must collect the same test ids (a fresh uuid4 would not).
@pytest.mark.parametrize("raw", ["not-a-uuid", "", "../x", "5f0c9a2e-3b1d-4c6e-9a7f-2d8e1b4c6a90x"])
def test_only_uuids_name_endpoints(raw: str) -> None:
    with pytest.raises(rules.EndpointNotFound):
        rules.parse_id(raw)
    assert rules.parse_id(ID.upper()) == ID


def test_sealed_values_are_bound_to_their_endpoint_and_field() -> None:
    other = str(uuid.uuid4())
    bindings = {
        rules.secret_associated_data(ID),
        rules.url_associated_data(ID),
        rules.secret_associated_data(other),
        rules.url_associated_data(other),
    }
    assert len(bindings) == 4
    assert _endpoint().stream_id == f"webhook_endpoint-{ID}" == rules.stream_id(ID)
