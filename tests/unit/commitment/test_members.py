"""A member's profile and erasure: the decisions of services.commitment.domain.members."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.commitment.domain import members
from shared import erasure
from shared.auth import Principal
from shared.errors import Forbidden, ValidationFailed

NOW = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


def test_a_profile_carries_the_display_name_or_clears_it() -> None:
    (event,) = members.update_profile(member_id="m-1", display_name="Sam", now=NOW)
    assert event.type == members.PROFILE_UPDATED and event.data == {"member_id": "m-1", "display_name": "Sam"}
    (cleared,) = members.update_profile(member_id="m-1", display_name=None, now=NOW)
    assert cleared.data["display_name"] is None


@pytest.mark.parametrize("name", ["", "   ", "x" * (members.DISPLAY_NAME_MAX + 1), 7])
def test_a_bad_display_name_is_refused_by_name(name: object) -> None:
    with pytest.raises(ValidationFailed) as refused:
        members.update_profile(member_id="m-1", display_name=name, now=NOW)
    assert "display_name" in refused.value.errors


def test_only_an_admin_or_the_member_acts_for_the_member() -> None:
    members.require_may_act_for(Principal("admin", "t-1", credential_id="k"), "m-1")
    members.require_may_act_for(Principal("member", "t-1", "m-1"), "m-1")
    for caller in (Principal("member", "t-1", "m-2"), Principal("coach", "t-1", "c-1")):
        with pytest.raises(Forbidden):
            members.require_may_act_for(caller, "m-1")


def test_an_erasure_is_requested_once_for_a_known_member() -> None:
    (event,) = members.request_erasure(member_id="m-1", known=True, current=None, now=NOW)
    assert event.type == erasure.REQUESTED
    assert event.data == {"member_id": "m-1", "services": list(erasure.SERVICES)}
    with pytest.raises(members.MemberNotFound):
        members.request_erasure(member_id="m-9", known=False, current=None, now=NOW)
    under_way = members.Erasure("m-1", NOW)
    assert members.request_erasure(member_id="m-1", known=True, current=under_way, now=NOW) == []


def test_the_status_names_the_services_still_pending() -> None:
    started = members.Erasure("m-1", NOW).reported("commitment", NOW)
    assert started.status == "erasing" and started.pending == ["checkin", "notification"]
    assert started.service_status() == {"commitment": "erased", "checkin": "erasing", "notification": "erasing"}
    assert members.record_erased(started, now=NOW) == []
    later = NOW + timedelta(seconds=3)
    almost = started.reported("notification", later)
    assert almost.reported("notification", later + timedelta(hours=1)).parts["notification"] == later
    done = almost.reported("checkin", later)
    (erased,) = members.record_erased(done, now=later)
    assert erased.type == erasure.ERASED and erased.data == {"member_id": "m-1", "services": list(erasure.SERVICES)}
    recorded = members.Erasure("m-1", NOW, parts=done.parts, erased_at=later)
    assert recorded.status == "erased" and members.record_erased(recorded, now=later) == []
