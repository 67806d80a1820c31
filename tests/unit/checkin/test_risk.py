"""At-risk flag for the coach dashboard."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

from services.checkin.domain.checkins import CheckIn, Outcome
from services.checkin.domain.risk import RiskReason, RiskThresholds, assess_risk
from tests.unit.checkin.factories import check_in

TODAY = date(2026, 11, 21)


def day(ago: int) -> date:
    return TODAY - timedelta(days=ago)


def kept(ago: int, urge: int | None = 3) -> CheckIn:
    return replace(check_in(day(ago), Outcome.KEPT), urge=urge)


def slipped(ago: int) -> CheckIn:
    return check_in(day(ago), Outcome.SLIPPED)


def test_a_calm_member_checking_in_daily_is_not_at_risk() -> None:
    result = assess_risk([kept(n) for n in range(10)], TODAY)
    assert result.at_risk is False
    assert result.reasons == ()


def test_slip_within_the_last_seven_days() -> None:
    assert assess_risk([slipped(6), kept(1), kept(0)], TODAY).reasons == (RiskReason.RECENT_SLIP,)
    assert assess_risk([slipped(7), kept(1), kept(0)], TODAY).at_risk is False


def test_a_slip_corrected_away_is_not_a_reason() -> None:
    # The caller passes the standing report per day; the last one given for a day wins.
    assert assess_risk([slipped(2), kept(2), kept(1), kept(0)], TODAY).at_risk is False


def test_high_urges_in_two_of_the_last_three_check_ins() -> None:
    history = [
        kept(5, urge=9),
        kept(4, urge=9),
        kept(3, urge=2),
        kept(2, urge=8),
        kept(1, urge=1),
        kept(0, urge=8),
    ]
    assert assess_risk(history, TODAY).reasons == (RiskReason.HIGH_URGES,)
    # One high urge in the last three is not enough; older high urges do not count.
    assert assess_risk([*history[:-1], kept(0, urge=7)], TODAY).at_risk is False


def test_check_ins_without_urge_take_a_place_but_are_not_high() -> None:
    assert assess_risk([kept(2, urge=9), kept(1, urge=None), kept(0, urge=None)], TODAY).at_risk is False
    assert assess_risk([kept(2, urge=9), kept(1, urge=None), kept(0, urge=10)], TODAY).at_risk is True


def test_no_check_in_for_two_finished_days() -> None:
    # Last report three days ago: the two days since are over and unreported.
    assert assess_risk([kept(3)], TODAY).reasons == (RiskReason.NOT_CHECKING_IN,)
    # Last report two days ago: only yesterday is missing, today is still open.
    assert assess_risk([kept(2)], TODAY).at_risk is False


def test_never_checked_in_counts_from_starts_on() -> None:
    assert assess_risk([], TODAY, starts_on=day(2)).reasons == (RiskReason.NOT_CHECKING_IN,)
    assert assess_risk([], TODAY, starts_on=day(1)).at_risk is False
    assert assess_risk([], TODAY).at_risk is False


def test_reports_after_today_are_ignored() -> None:
    assert assess_risk([kept(3), kept(-1)], TODAY).reasons == (RiskReason.NOT_CHECKING_IN,)


def test_all_reasons_together_in_a_stable_order() -> None:
    history = [kept(6, urge=9), slipped(5), kept(4, urge=10)]
    result = assess_risk(history, TODAY)
    assert result.at_risk is True
    assert result.reasons == (RiskReason.RECENT_SLIP, RiskReason.HIGH_URGES, RiskReason.NOT_CHECKING_IN)
    assert [str(r) for r in result.reasons] == ["recent_slip", "high_urges", "not_checking_in"]


def test_thresholds_are_configurable() -> None:
    thresholds = RiskThresholds(slip_window_days=14, high_urge=5, silent_days=5)
    assert assess_risk([slipped(10), kept(3, urge=6), kept(2, urge=5)], TODAY, thresholds).reasons == (
        RiskReason.RECENT_SLIP,
        RiskReason.HIGH_URGES,
    )
