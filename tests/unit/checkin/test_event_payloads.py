"""Payloads of the events the check-in service emits: documented fields, plain JSON."""

from __future__ import annotations

import json
from datetime import date

from services.checkin.domain import (
    MilestoneHit,
    RiskAssessment,
    RiskReason,
    Run,
    StreakReset,
    checkin_corrected_data,
    checkin_recorded_data,
    client_at_risk_data,
    milestone_reached_data,
    streak_reset_data,
)
from tests.unit.checkin.factories import check_in

IDS = {"commitment_id": "c1", "member_id": "m1"}


def test_milestone_reached_data() -> None:
    hit = MilestoneHit(threshold=7, run_start=date(2026, 11, 10), attempt=2, reached_on=date(2026, 11, 16))
    assert milestone_reached_data(**IDS, hit=hit) == {
        **IDS,
        "milestone": 7,
        "run_started_on": "2026-11-10",
        "attempt": 2,
        "reached_on": "2026-11-16",
    }


def test_streak_reset_data_with_and_without_an_ended_run() -> None:
    run = Run(date(2026, 11, 1), date(2026, 11, 9), ended_by_slip_on=date(2026, 11, 10))
    assert streak_reset_data(**IDS, reset=StreakReset(date(2026, 11, 10), run)) == {
        **IDS,
        "slipped_on": "2026-11-10",
        "ended_run_days": 9,
        "ended_run_started_on": "2026-11-01",
    }
    empty = streak_reset_data(**IDS, reset=StreakReset(date(2026, 11, 11), None))
    assert (empty["ended_run_days"], empty["ended_run_started_on"]) == (0, None)


def test_client_at_risk_data() -> None:
    assessment = RiskAssessment(at_risk=True, reasons=(RiskReason.RECENT_SLIP, RiskReason.HIGH_URGES))
    assert client_at_risk_data(**IDS, assessment=assessment) == {
        **IDS,
        "reasons": ["recent_slip", "high_urges"],
    }


def test_every_payload_survives_a_json_round_trip_unchanged() -> None:
    slipped = check_in(date(2026, 11, 21), "slipped")
    payloads = [
        checkin_recorded_data(**IDS, check_in=slipped),
        checkin_corrected_data(**IDS, check_in=slipped, previous=check_in(date(2026, 11, 21), "kept")),
        milestone_reached_data(
            **IDS, hit=MilestoneHit(1, date(2026, 11, 1), attempt=1, reached_on=date(2026, 11, 1))
        ),
        streak_reset_data(**IDS, reset=StreakReset(date(2026, 11, 2), None)),
        client_at_risk_data(**IDS, assessment=RiskAssessment(True, (RiskReason.NOT_CHECKING_IN,))),
    ]
    for payload in payloads:
        assert json.loads(json.dumps(payload)) == payload
        assert payload["commitment_id"] == "c1" and payload["member_id"] == "m1"
