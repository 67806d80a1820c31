"""Check-in rules (CONTRACT: POST /v1/commitments/{id}/check-ins) and event payloads."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.checkin.domain.checkins import (
    CheckIn,
    CheckInRejected,
    CommitmentNotActive,
    CommitmentStatus,
    CommitmentTerms,
    Initiator,
    Outcome,
    Slip,
    Violation,
    check_in_from_event_data,
    check_in_violations,
    checkin_corrected_data,
    checkin_recorded_data,
    validate_check_in,
)

TODAY = date(2026, 11, 21)
TERMS = CommitmentTerms(
    starts_on=date(2026, 11, 1),
    ends_on=date(2026, 11, 30),
    timezone="Europe/Berlin",
    channels=frozenset({"calls", "texts"}),
)
KEPT = CheckIn(day=TODAY, outcome=Outcome.KEPT, urge=3, mood=4, note="fine")
SLIPPED = CheckIn(day=TODAY, outcome=Outcome.SLIPPED, urge=9, mood=1, slip=Slip("texts", Initiator.ME))


def problems(check_in: CheckIn, terms: CommitmentTerms = TERMS, backdate_days: int = 7) -> list[Violation]:
    return check_in_violations(check_in, commitment=terms, today=TODAY, backdate_days=backdate_days)


def fields(check_in: CheckIn, terms: CommitmentTerms = TERMS, backdate_days: int = 7) -> list[str]:
    return [p.field for p in problems(check_in, terms, backdate_days)]


class TestDateRules:
    def test_valid_reports_have_no_problems(self) -> None:
        assert problems(KEPT) == []
        assert problems(SLIPPED) == []
        validate_check_in(KEPT, commitment=TERMS, today=TODAY, backdate_days=7)

    def test_tomorrow_is_in_the_future(self) -> None:
        found = problems(replace(KEPT, day=date(2026, 11, 22)))
        assert [p.field for p in found] == ["date"]
        assert "future" in found[0].message
        assert "Europe/Berlin" in found[0].message

    def test_before_starts_on_is_refused(self) -> None:
        terms = replace(TERMS, starts_on=date(2026, 11, 20))
        assert fields(replace(KEPT, day=date(2026, 11, 19)), terms) == ["date"]
        assert fields(replace(KEPT, day=date(2026, 11, 20)), terms) == []

    def test_after_ends_on_is_refused(self) -> None:
        terms = replace(TERMS, ends_on=date(2026, 11, 20))
        found = problems(replace(KEPT, day=TODAY), terms)
        assert [p.field for p in found] == ["date"]
        assert "after the commitment ends" in found[0].message
        assert fields(replace(KEPT, day=date(2026, 11, 20)), terms) == []

    def test_indefinite_commitment_has_no_end(self) -> None:
        assert fields(KEPT, replace(TERMS, ends_on=None)) == []

    def test_backdating_window_includes_its_first_day(self) -> None:
        assert fields(replace(KEPT, day=date(2026, 11, 14)), backdate_days=7) == []
        found = problems(replace(KEPT, day=date(2026, 11, 13)), backdate_days=7)
        assert [p.field for p in found] == ["date"]
        assert "backdating window of 7 days" in found[0].message

    def test_zero_backdate_days_allows_only_today(self) -> None:
        assert fields(KEPT, backdate_days=0) == []
        assert fields(replace(KEPT, day=date(2026, 11, 20)), backdate_days=0) == ["date"]

    def test_negative_backdate_days_is_a_programming_error(self) -> None:
        with pytest.raises(ValueError):
            problems(KEPT, backdate_days=-1)

    def test_a_datetime_is_not_a_day(self) -> None:
        assert fields(replace(KEPT, day=datetime(2026, 11, 21, 12, 0))) == ["date"]

    def test_several_date_problems_are_all_listed(self) -> None:
        terms = replace(TERMS, starts_on=date(2026, 11, 10))
        assert fields(replace(KEPT, day=date(2026, 11, 1)), terms) == ["date", "date"]


class TestSlipRules:
    def test_slip_is_required_when_slipped(self) -> None:
        assert fields(replace(SLIPPED, slip=None)) == ["slip"]

    def test_slip_is_refused_when_kept(self) -> None:
        assert fields(replace(KEPT, slip=Slip("texts", Initiator.THEM))) == ["slip"]

    def test_slip_channel_must_be_one_of_the_commitments(self) -> None:
        found = problems(replace(SLIPPED, slip=Slip("email", Initiator.ME)))
        assert [p.field for p in found] == ["slip.channel"]
        assert "calls, texts" in found[0].message
        assert fields(replace(SLIPPED, slip=Slip("carrier_pigeon", Initiator.ME))) == ["slip.channel"]

    def test_initiated_by_must_be_me_or_them(self) -> None:
        assert fields(replace(SLIPPED, slip=Slip("calls", "nobody"))) == ["slip.initiated_by"]  # type: ignore[arg-type]
        assert fields(replace(SLIPPED, slip=Slip("calls", "them"))) == []  # type: ignore[arg-type]

    def test_unknown_outcome(self) -> None:
        assert fields(replace(KEPT, outcome="maybe")) == ["outcome"]  # type: ignore[arg-type]


class TestRanges:
    @pytest.mark.parametrize("urge", [0, 10, None])
    def test_urge_bounds_are_inclusive(self, urge: int | None) -> None:
        assert fields(replace(KEPT, urge=urge)) == []

    @pytest.mark.parametrize("urge", [-1, 11, True, 5.0, "5"])
    def test_urge_out_of_range(self, urge: object) -> None:
        assert fields(replace(KEPT, urge=urge)) == ["urge"]  # type: ignore[arg-type]

    @pytest.mark.parametrize("mood", [1, 5, None])
    def test_mood_bounds_are_inclusive(self, mood: int | None) -> None:
        assert fields(replace(KEPT, mood=mood)) == []

    @pytest.mark.parametrize("mood", [0, 6, False])
    def test_mood_out_of_range(self, mood: object) -> None:
        assert fields(replace(KEPT, mood=mood)) == ["mood"]  # type: ignore[arg-type]

    def test_note_up_to_2000_characters(self) -> None:
        assert fields(replace(KEPT, note="é" * 2000)) == []
        assert fields(replace(KEPT, note="x" * 2001)) == ["note"]


class TestValidate:
    def test_all_problems_are_raised_together(self) -> None:
        bad = CheckIn(day=date(2026, 11, 22), outcome=Outcome.SLIPPED, urge=12, mood=0, note="x" * 2001)
        with pytest.raises(CheckInRejected) as caught:
            validate_check_in(bad, commitment=TERMS, today=TODAY, backdate_days=7)
        assert set(caught.value.errors) == {"date", "slip", "urge", "mood", "note"}
        assert all(isinstance(m, list) and m for m in caught.value.errors.values())

    @pytest.mark.parametrize("status", [CommitmentStatus.COMPLETED, CommitmentStatus.ENDED])
    def test_inactive_commitment_is_a_conflict_before_field_problems(self, status: CommitmentStatus) -> None:
        bad = replace(KEPT, urge=99)
        with pytest.raises(CommitmentNotActive):
            validate_check_in(bad, commitment=replace(TERMS, status=status), today=TODAY, backdate_days=7)


class TestEventData:
    def test_recorded_data_fields(self) -> None:
        data = checkin_recorded_data(commitment_id="c1", member_id="m1", check_in=SLIPPED)
        assert data == {
            "commitment_id": "c1",
            "member_id": "m1",
            "date": "2026-11-21",
            "outcome": "slipped",
            "urge": 9,
            "mood": 1,
            "slip": {"channel": "texts", "initiated_by": "me"},
            "note": None,
        }
        assert type(data["outcome"]) is str and type(data["slip"]["initiated_by"]) is str

    def test_corrected_data_carries_the_full_report_and_previous_outcome(self) -> None:
        data = checkin_corrected_data(commitment_id="c1", member_id="m1", check_in=KEPT, previous=SLIPPED)
        assert data["outcome"] == "kept" and data["slip"] is None and data["note"] == "fine"
        assert data["previous_outcome"] == "slipped"
        unknown = checkin_corrected_data(commitment_id="c1", member_id="m1", check_in=KEPT)
        assert unknown["previous_outcome"] is None

    def test_round_trip_of_both_outcomes(self) -> None:
        for report in (KEPT, SLIPPED):
            data = checkin_recorded_data(commitment_id="c1", member_id="m1", check_in=report)
            assert check_in_from_event_data(data) == report

    def test_minimal_data_with_unknown_fields(self) -> None:
        data = {"date": "2026-11-21", "outcome": "kept", "added_later": 1}
        assert check_in_from_event_data(data) == CheckIn(day=TODAY, outcome=Outcome.KEPT)

    @settings(max_examples=200, deadline=None)
    @given(
        day=st.dates(),
        slipped=st.booleans(),
        urge=st.none() | st.integers(0, 10),
        mood=st.none() | st.integers(1, 5),
        note=st.none() | st.text(max_size=50),
        channel=st.sampled_from(["calls", "texts", "social_media", "email", "in_person"]),
        initiator=st.sampled_from(Initiator),
    )
    def test_round_trip_property(
        self,
        day: date,
        slipped: bool,
        urge: int | None,
        mood: int | None,
        note: str | None,
        channel: str,
        initiator: Initiator,
    ) -> None:
        report = CheckIn(
            day=day,
            outcome=Outcome.SLIPPED if slipped else Outcome.KEPT,
            urge=urge,
            mood=mood,
            slip=Slip(channel, initiator) if slipped else None,
            note=note,
        )
        data = checkin_corrected_data(commitment_id="c", member_id="m", check_in=report)
        assert check_in_from_event_data(data) == report
