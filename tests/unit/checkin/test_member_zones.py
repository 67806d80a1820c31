"""The same instant is a different "today" for members in different zones.

Pacific/Auckland (UTC+13 in November) and America/Los_Angeles (UTC-8) straddle
midnight UTC: what a member may report and how their streak reads depends on it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from services.checkin.domain.checkins import CheckIn, CommitmentTerms, Outcome, check_in_violations
from services.checkin.domain.streaks import fold_streak
from shared.calendar import local_today
from tests.unit.checkin.factories import events

STARTS_ON = date(2026, 11, 1)
JUST_BEFORE_MIDNIGHT_UTC = datetime(2026, 11, 21, 23, 30, tzinfo=UTC)  # Auckland 22nd 12:30, LA 21st 15:30
JUST_AFTER_MIDNIGHT_UTC = datetime(2026, 11, 22, 0, 30, tzinfo=UTC)  # Auckland 22nd 13:30, LA 21st 16:30


def terms(tz: str) -> CommitmentTerms:
    return CommitmentTerms(starts_on=STARTS_ON, ends_on=None, timezone=tz, channels=frozenset({"texts"}))


@pytest.mark.parametrize("now", [JUST_BEFORE_MIDNIGHT_UTC, JUST_AFTER_MIDNIGHT_UTC])
def test_auckland_may_report_the_22nd_los_angeles_may_not_yet(now: datetime) -> None:
    report = CheckIn(day=date(2026, 11, 22), outcome=Outcome.KEPT)
    for tz, allowed in (("Pacific/Auckland", True), ("America/Los_Angeles", False)):
        today = local_today(tz, now)
        problems = check_in_violations(report, commitment=terms(tz), today=today, backdate_days=7)
        assert (problems == []) is allowed, (tz, problems)


def test_backdating_window_is_counted_from_the_members_today() -> None:
    report = CheckIn(day=date(2026, 11, 14), outcome=Outcome.KEPT)
    now = JUST_AFTER_MIDNIGHT_UTC
    auckland = check_in_violations(
        report,
        commitment=terms("Pacific/Auckland"),
        today=local_today("Pacific/Auckland", now),
        backdate_days=7,
    )
    la = check_in_violations(
        report,
        commitment=terms("America/Los_Angeles"),
        today=local_today("America/Los_Angeles", now),
        backdate_days=7,
    )
    assert [p.field for p in auckland] == ["date"]  # 22 - 7 = 15 > 14
    assert la == []  # 21 - 7 = 14


def test_the_same_reports_read_differently_at_the_same_instant() -> None:
    history = events({date(2026, 11, n): "kept" for n in range(1, 22)})  # 1st..21st kept
    now = JUST_AFTER_MIDNIGHT_UTC
    auckland = fold_streak(
        history, starts_on=STARTS_ON, ends_on=None, today=local_today("Pacific/Auckland", now)
    )
    la = fold_streak(
        history, starts_on=STARTS_ON, ends_on=None, today=local_today("America/Los_Angeles", now)
    )
    # Auckland: the 22nd is today and unreported, so the streak reads through the 21st.
    assert (auckland.as_of, auckland.counted_through, auckland.current_days) == (
        date(2026, 11, 22),
        date(2026, 11, 21),
        21,
    )
    # Los Angeles: the 21st is today and reported kept: it counts.
    assert (la.as_of, la.counted_through, la.current_days) == (date(2026, 11, 21), date(2026, 11, 21), 21)
    assert auckland.milestones_reached == la.milestones_reached == (1, 3, 7, 14, 21)
