"""Member-level coach assignment: the rule behind PUT/DELETE /v1/coaches/{coach}/clients/{member}."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.commitment.domain.coaching import (
    CLIENT_ASSIGNED,
    CLIENT_UNASSIGNED,
    assign_client,
    unassign_client,
)
from services.commitment.domain.commitment import InvalidCommitment

NOW = datetime(2026, 11, 21, 12, tzinfo=UTC)


def test_assigning_records_the_previous_coach_and_repeats_safely() -> None:
    [event] = assign_client(tenant_id="t", member_id="m", coach_id="c2", current_coach_id="c1", now=NOW)
    assert event.type == CLIENT_ASSIGNED
    assert event.data == {"tenant_id": "t", "member_id": "m", "coach_id": "c2", "previous_coach_id": "c1"}
    assert assign_client(tenant_id="t", member_id="m", coach_id="c2", current_coach_id="c2", now=NOW) == []


def test_unassigning_only_removes_the_named_coach() -> None:
    assert unassign_client(tenant_id="t", member_id="m", coach_id="c1", current_coach_id="c2", now=NOW) == []
    assert unassign_client(tenant_id="t", member_id="m", coach_id="c1", current_coach_id=None, now=NOW) == []
    [event] = unassign_client(tenant_id="t", member_id="m", coach_id="c2", current_coach_id="c2", now=NOW)
    assert event.type == CLIENT_UNASSIGNED and event.data["coach_id"] == "c2"


@pytest.mark.parametrize(("coach", "member", "field"), [("", "m", "coach_id"), ("c", " ", "member_id"),
                                                        ("c" * 129, "m", "coach_id")])
def test_ids_are_validated_with_the_field_named(coach: str, member: str, field: str) -> None:
    with pytest.raises(InvalidCommitment) as exc:
        assign_client(tenant_id="t", member_id=member, coach_id=coach, current_coach_id=None, now=NOW)
    assert field in exc.value.errors
