"""Urges logged between check-ins (CONTRACT v1.1): ``urge.logged`` without the note, the
rules an urge must keep, and the at-risk signals urges give: frequent, rising, and one that
ended in reaching out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.checkin.domain import (
    CheckInRejected,
    CommitmentState,
    LoggedUrge,
    RiskThresholds,
    Urge,
    UrgeOutcome,
    assess_risk,
    log_urge,
)
from services.checkin.domain.state import URGES_KEPT
from tests.unit.checkin.factories import stored
from tests.unit.checkin.test_history import COMMITMENT, NOW, SETTINGS, state_of

TODAY = COMMITMENT.today(NOW)


def urge(n: int, intensity: int = 5, outcome: UrgeOutcome = UrgeOutcome.PASSED, at: datetime | None = None) -> Urge:
    return Urge(f"u{n:03d}", at or NOW - timedelta(hours=n), intensity, outcome, "their birthday", "walked", "note")


def logged(day_offset: int, intensity: int, outcome: str = "passed") -> LoggedUrge:
    return LoggedUrge(TODAY - timedelta(days=day_offset), intensity, outcome)


def test_urge_logged_carries_no_note() -> None:
    decision = log_urge(CommitmentState(COMMITMENT.starts_on), COMMITMENT, SETTINGS, urge(1, 8), NOW)
    assert decision.events[0].type == "urge.logged"
    assert decision.events[0].data == {
        "commitment_id": "c1", "member_id": "m1", "urge_id": "u001", "at": "2026-11-10T09:00:00+00:00",
        "intensity": 8, "outcome": "passed", "trigger": "their birthday", "coping": "walked"}
    assert [mark.urge_id for mark in decision.state.urge_log] == ["u001"]


@pytest.mark.parametrize(("wrong", "field"), [
    (urge(1, at=NOW + timedelta(minutes=1)), "at"),
    (urge(1, at=NOW - timedelta(days=9)), "at"),  # before the backdating window of 7 days
    # Instants at the ends of the calendar: no zone has a local day for them to compute.
    (urge(1, at=datetime(1, 1, 1, tzinfo=UTC)), "at"),
    (urge(1, at=datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-12)))), "at"),
    (urge(1, intensity=11), "intensity"),
    (Urge("u", NOW, 3, UrgeOutcome.PASSED, trigger="x" * 201), "trigger"),
    (Urge("u", NOW, 3, UrgeOutcome.PASSED, coping="x" * 201), "coping"),
    (Urge("u", NOW, 3, UrgeOutcome.PASSED, note="x" * 2001), "note"),
])
def test_the_rules_name_the_field(wrong: Urge, field: str) -> None:
    with pytest.raises(CheckInRejected) as raised:
        log_urge(CommitmentState(COMMITMENT.starts_on), COMMITMENT, SETTINGS, wrong, NOW)
    assert field in raised.value.errors


class TestRisk:
    def test_frequent_urges(self) -> None:
        urges = [logged(n % 7, 2) for n in range(5)]
        assert "frequent_urges" in assess_risk([], TODAY, urges=urges).reasons
        assert "frequent_urges" not in assess_risk([], TODAY, urges=urges[:4]).reasons
        old = [logged(7 + n, 2) for n in range(5)]  # outside the window of 7 days
        assert not assess_risk([], TODAY, urges=old).reasons

    def test_rising_urges(self) -> None:
        assert "rising_urges" in assess_risk([], TODAY, urges=[logged(3, 2), logged(2, 5), logged(1, 7)]).reasons
        assert not assess_risk([], TODAY, urges=[logged(3, 2), logged(2, 5), logged(1, 5)]).reasons
        assert not assess_risk([], TODAY, urges=[logged(2, 5), logged(1, 7)]).reasons

    def test_an_urge_that_ended_in_reaching_out(self) -> None:
        assert assess_risk([], TODAY, urges=[logged(0, 3, "reached_out")]).reasons == ("urge_reached_out",)
        assert not assess_risk([], TODAY, RiskThresholds(urge_reached_out=0),
                               urges=[logged(0, 3, "reached_out")]).reasons

    def test_a_logged_urge_changes_the_standing_told(self) -> None:
        decision = log_urge(CommitmentState(COMMITMENT.starts_on, days="k" * 9, urges="-" * 9), COMMITMENT, SETTINGS,
                            urge(1, 4, UrgeOutcome.REACHED_OUT), NOW)
        at_risk = [e.data for e in decision.events if e.type == "client.at_risk"]
        assert at_risk and at_risk[0]["reasons"] == ["urge_reached_out"]
        assert decision.risk_reasons == ("urge_reached_out",)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6 * 24), st.integers(0, 10), st.sampled_from(list(UrgeOutcome))),
                min_size=1, max_size=URGES_KEPT + 10))
def test_rebuild_equals_incremental_with_urges(drawn) -> None:  # type: ignore[no-untyped-def]
    """The state keeps the latest urges whatever order they are logged in (backdated ones
    too), the same command by command as folded at once."""
    stream: list = []
    state = CommitmentState(COMMITMENT.starts_on)
    for n, (hours_ago, intensity, outcome) in enumerate(drawn):
        decision = log_urge(state, COMMITMENT, SETTINGS,
                            Urge(f"u{n}", NOW - timedelta(hours=hours_ago), intensity, outcome), NOW)
        stream = stored(stream, decision.events)
        state = decision.state
        assert state == state_of(stream)
    ats = sorted((NOW - timedelta(hours=h), f"u{n}") for n, (h, _, _) in enumerate(drawn))
    assert [(m.at, m.urge_id) for m in state.urge_log] == ats[-URGES_KEPT:]
