"""Missed check-ins: unreported past days once the grace period after their end is over."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from services.checkin.domain.missed import missed_check_in_data, missed_days, missed_deadline

SECOND = timedelta(seconds=1)


def missed(
    now: datetime,
    *,
    tz: str = "Europe/Berlin",
    starts_on: date = date(2026, 3, 20),
    ends_on: date | None = None,
    reported: frozenset[date] = frozenset(),
    grace_hours: float = 12,
    not_before: date | None = None,
) -> list[date]:
    return missed_days(
        reported_days=reported,
        starts_on=starts_on,
        ends_on=ends_on,
        tz=tz,
        now=now,
        grace_hours=grace_hours,
        not_before=not_before,
    )


class TestDeadline:
    def test_ordinary_day_is_missed_at_noon_the_next_day(self) -> None:
        # 2026-03-20 ends at 23:00 UTC (00:00 CET); +12 h = 2026-03-21 11:00 UTC = 12:00 CET.
        assert missed_deadline("Europe/Berlin", date(2026, 3, 20), 12) == datetime(
            2026, 3, 21, 11, tzinfo=UTC
        )

    def test_grace_over_the_spring_forward_night_is_elapsed_time(self) -> None:
        # 2026-03-28 ends at 00:00 CET = 23:00 UTC; 12 real hours later it is 13:00 CEST.
        assert missed_deadline("Europe/Berlin", date(2026, 3, 28), 12) == datetime(
            2026, 3, 29, 11, tzinfo=UTC
        )

    def test_the_23_hour_day_ends_an_hour_earlier_in_utc(self) -> None:
        # 2026-03-29 ends at 00:00 CEST = 22:00 UTC.
        assert missed_deadline("Europe/Berlin", date(2026, 3, 29), 12) == datetime(
            2026, 3, 30, 10, tzinfo=UTC
        )

    def test_grace_over_the_fall_back_night(self) -> None:
        # 2026-10-24 ends at 00:00 CEST = 22:00 UTC; 2026-10-25 (25 h) ends at 00:00 CET = 23:00 UTC.
        assert missed_deadline("Europe/Berlin", date(2026, 10, 24), 12) == datetime(
            2026, 10, 25, 10, tzinfo=UTC
        )
        assert missed_deadline("Europe/Berlin", date(2026, 10, 25), 12) == datetime(
            2026, 10, 26, 11, tzinfo=UTC
        )

    def test_half_hour_zone(self) -> None:
        # 2026-03-01 in Kolkata ends at 18:30 UTC.
        assert missed_deadline("Asia/Kolkata", date(2026, 3, 1), 0) == datetime(
            2026, 3, 1, 18, 30, tzinfo=UTC
        )
        assert missed_deadline("Asia/Kolkata", date(2026, 3, 1), 1.5) == datetime(2026, 3, 1, 20, tzinfo=UTC)

    def test_negative_grace_is_refused(self) -> None:
        with pytest.raises(ValueError):
            missed_deadline("Europe/Berlin", date(2026, 3, 1), -1)


class TestMissedDays:
    def test_a_day_becomes_missed_exactly_at_its_deadline_across_dst(self) -> None:
        deadline = datetime(2026, 3, 29, 11, tzinfo=UTC)  # of 2026-03-28
        reported = frozenset(date(2026, 3, d) for d in range(20, 28))
        assert missed(deadline - SECOND, reported=reported) == []
        assert missed(deadline, reported=reported) == [date(2026, 3, 28)]

    def test_fall_back_day_waits_its_extra_hour(self) -> None:
        reported = frozenset({date(2026, 10, 24)})
        kwargs = {"starts_on": date(2026, 10, 24), "reported": reported}
        assert missed(datetime(2026, 10, 26, 11, tzinfo=UTC) - SECOND, **kwargs) == []
        assert missed(datetime(2026, 10, 26, 11, tzinfo=UTC), **kwargs) == [date(2026, 10, 25)]

    def test_reported_days_are_not_missed(self) -> None:
        now = datetime(2026, 3, 24, 12, tzinfo=UTC)  # the 23rd was due at 11:00 UTC
        assert missed(now) == [date(2026, 3, 20), date(2026, 3, 21), date(2026, 3, 22), date(2026, 3, 23)]
        assert missed(now, reported=frozenset({date(2026, 3, 21)})) == [
            date(2026, 3, 20),
            date(2026, 3, 22),
            date(2026, 3, 23),
        ]

    def test_today_and_yesterday_within_grace_are_not_missed(self) -> None:
        now = datetime(2026, 3, 24, 10, 59, tzinfo=UTC)  # 11:59 CET on the 24th
        assert missed(now, starts_on=date(2026, 3, 23)) == []

    def test_long_grace(self) -> None:
        now = datetime(2026, 3, 24, 12, tzinfo=UTC)
        assert missed(now, grace_hours=48) == [date(2026, 3, 20), date(2026, 3, 21)]

    def test_bounded_by_ends_on_and_not_before(self) -> None:
        now = datetime(2026, 4, 10, 12, tzinfo=UTC)
        assert missed(now, ends_on=date(2026, 3, 21)) == [date(2026, 3, 20), date(2026, 3, 21)]
        assert missed(now, ends_on=date(2026, 3, 23), not_before=date(2026, 3, 22)) == [
            date(2026, 3, 22),
            date(2026, 3, 23),
        ]
        assert missed(now, starts_on=date(2026, 4, 20)) == []

    def test_auckland_and_los_angeles_at_the_same_instant(self) -> None:
        now = datetime(2026, 11, 22, 12, tzinfo=UTC)  # Auckland 23-Nov 01:00, Los Angeles 22-Nov 04:00
        # Auckland's 2026-11-21 ended 2026-11-21 11:00 UTC, +12 h = 23:00 UTC: missed.
        # Its 22nd ended at 2026-11-22 11:00 UTC, +12 h = 23:00 UTC: not yet.
        assert missed(now, tz="Pacific/Auckland", starts_on=date(2026, 11, 21)) == [date(2026, 11, 21)]
        # Los Angeles' 21st ended 2026-11-22 08:00 UTC, +12 h = 20:00 UTC: not yet.
        assert missed(now, tz="America/Los_Angeles", starts_on=date(2026, 11, 21)) == []
        assert missed(now + timedelta(hours=8), tz="America/Los_Angeles", starts_on=date(2026, 11, 21)) == [
            date(2026, 11, 21)
        ]

    def test_naive_now_is_refused(self) -> None:
        with pytest.raises(ValueError):
            missed(datetime(2026, 3, 24, 12))


def test_missed_event_data() -> None:
    deadline = missed_deadline("Europe/Berlin", date(2026, 3, 28), 12)
    assert missed_check_in_data(
        commitment_id="c1", member_id="m1", day=date(2026, 3, 28), deadline=deadline
    ) == {
        "commitment_id": "c1",
        "member_id": "m1",
        "date": "2026-03-28",
        "deadline": "2026-03-29T11:00:00+00:00",
    }
