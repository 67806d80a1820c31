"""Local days in the member's zone: today, day bounds across DST and odd offsets."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.calendar import (
    UnknownTimeZone,
    date_range,
    day_bounds,
    is_valid_timezone,
    local_today,
)

HOUR = timedelta(hours=1)


class TestLocalToday:
    def test_auckland_is_already_tomorrow_around_midnight_utc(self) -> None:
        # 2026-11-21 23:30 UTC is 2026-11-22 12:30 NZDT (UTC+13).
        now = datetime(2026, 11, 21, 23, 30, tzinfo=UTC)
        assert local_today("Pacific/Auckland", now) == date(2026, 11, 22)

    def test_los_angeles_is_still_yesterday_just_after_midnight_utc(self) -> None:
        # 2026-11-22 00:30 UTC is 2026-11-21 16:30 PST (UTC-8).
        now = datetime(2026, 11, 22, 0, 30, tzinfo=UTC)
        assert local_today("America/Los_Angeles", now) == date(2026, 11, 21)
        assert local_today("Pacific/Auckland", now) == date(2026, 11, 22)

    def test_same_instant_three_member_dates(self) -> None:
        now = datetime(2026, 6, 30, 11, 0, tzinfo=UTC)
        assert local_today("Pacific/Kiritimati", now) == date(2026, 7, 1)  # UTC+14
        assert local_today("UTC", now) == date(2026, 6, 30)
        assert local_today("Pacific/Pago_Pago", now) == date(2026, 6, 30)  # UTC-11, 00:00

    def test_kolkata_half_hour_offset_flips_at_18_30_utc(self) -> None:
        assert local_today("Asia/Kolkata", datetime(2026, 3, 1, 18, 29, tzinfo=UTC)) == date(2026, 3, 1)
        assert local_today("Asia/Kolkata", datetime(2026, 3, 1, 18, 30, tzinfo=UTC)) == date(2026, 3, 2)

    def test_non_utc_aware_now_is_the_same_instant(self) -> None:
        # 2026-11-21 22:30 at UTC-05:00 is 2026-11-22 03:30 UTC, i.e. 16:30 NZDT.
        eastern = datetime(2026, 11, 21, 22, 30, tzinfo=timezone(timedelta(hours=-5)))
        assert local_today("Pacific/Auckland", eastern) == date(2026, 11, 22)
        assert local_today("UTC", eastern) == date(2026, 11, 22)

    def test_naive_now_is_refused(self) -> None:
        with pytest.raises(ValueError, match="aware"):
            local_today("Europe/Berlin", datetime(2026, 11, 21, 12, 0))

    def test_unknown_zone_is_a_domain_error(self) -> None:
        with pytest.raises(UnknownTimeZone):
            local_today("Mars/Olympus_Mons", datetime(2026, 11, 21, tzinfo=UTC))


class TestDayBounds:
    def test_ordinary_berlin_day_is_24_hours_from_local_midnight(self) -> None:
        start, end = day_bounds("Europe/Berlin", date(2026, 11, 21))
        assert start == datetime(2026, 11, 20, 23, 0, tzinfo=UTC)
        assert end == datetime(2026, 11, 21, 23, 0, tzinfo=UTC)

    def test_berlin_spring_forward_day_has_23_hours(self) -> None:
        start, end = day_bounds("Europe/Berlin", date(2026, 3, 29))
        assert start == datetime(2026, 3, 28, 23, 0, tzinfo=UTC)  # 00:00 CET
        assert end == datetime(2026, 3, 29, 22, 0, tzinfo=UTC)  # 00:00 CEST
        assert end - start == 23 * HOUR

    def test_berlin_fall_back_day_has_25_hours(self) -> None:
        start, end = day_bounds("Europe/Berlin", date(2026, 10, 25))
        assert start == datetime(2026, 10, 24, 22, 0, tzinfo=UTC)  # 00:00 CEST
        assert end == datetime(2026, 10, 25, 23, 0, tzinfo=UTC)  # 00:00 CET
        assert end - start == 25 * HOUR

    @pytest.mark.parametrize(
        ("tz", "day", "start"),
        [
            ("Asia/Kolkata", date(2026, 3, 2), datetime(2026, 3, 1, 18, 30, tzinfo=UTC)),
            ("Asia/Kathmandu", date(2026, 1, 1), datetime(2025, 12, 31, 18, 15, tzinfo=UTC)),
            # Adelaide in summer is UTC+10:30 (ACDT).
            ("Australia/Adelaide", date(2026, 1, 15), datetime(2026, 1, 14, 13, 30, tzinfo=UTC)),
            # ...and UTC+09:30 in winter.
            ("Australia/Adelaide", date(2026, 7, 15), datetime(2026, 7, 14, 14, 30, tzinfo=UTC)),
        ],
    )
    def test_half_and_quarter_hour_offsets(self, tz: str, day: date, start: datetime) -> None:
        assert day_bounds(tz, day) == (start, start + 24 * HOUR)

    def test_adelaide_dst_days(self) -> None:
        # DST ends first Sunday of April (03:00 ACDT -> 02:00 ACST), starts first Sunday of October.
        start, end = day_bounds("Australia/Adelaide", date(2026, 4, 5))
        assert end - start == 25 * HOUR
        start, end = day_bounds("Australia/Adelaide", date(2026, 10, 4))
        assert end - start == 23 * HOUR

    def test_midnight_that_does_not_exist_starts_the_day_at_the_transition(self) -> None:
        # Chile springs forward at 24:00 -> 01:00: 2024-09-08 begins at 01:00 local (04:00 UTC).
        start, end = day_bounds("America/Santiago", date(2024, 9, 8))
        assert start == datetime(2024, 9, 8, 4, 0, tzinfo=UTC)
        assert end - start == 23 * HOUR
        assert day_bounds("America/Santiago", date(2024, 9, 7))[1] == start

    @settings(max_examples=200, deadline=None)
    @given(
        tz=st.sampled_from(
            [
                "Europe/Berlin",
                "Pacific/Auckland",
                "America/Los_Angeles",
                "Asia/Kolkata",
                "Asia/Kathmandu",
                "Australia/Adelaide",
                "America/Santiago",
                "Pacific/Chatham",
            ]
        ),
        day=st.dates(min_value=date(2000, 1, 1), max_value=date(2037, 12, 31)),
    )
    def test_bounds_tile_the_timeline_and_map_back_to_the_day(self, tz: str, day: date) -> None:
        start, end = day_bounds(tz, day)
        assert start.tzinfo is UTC and end.tzinfo is UTC
        assert day_bounds(tz, day + timedelta(days=1))[0] == end
        assert timedelta(hours=22) <= end - start <= timedelta(hours=26)
        assert local_today(tz, start) == day
        assert local_today(tz, end - timedelta(microseconds=1)) == day
        assert local_today(tz, start - timedelta(microseconds=1)) == day - timedelta(days=1)
        assert local_today(tz, end) == day + timedelta(days=1)


class TestIsValidTimezone:
    @pytest.mark.parametrize(
        "name", ["Europe/Berlin", "Asia/Kathmandu", "America/Argentina/Buenos_Aires", "UTC"]
    )
    def test_iana_names_are_valid(self, name: str) -> None:
        assert is_valid_timezone(name)

    @pytest.mark.parametrize(
        "name",
        [
            "",
            "Berlin",
            "europe/berlin ",
            "Mars/Base",
            "../etc/passwd",
            "/usr/share/zoneinfo/UTC",
            "localtime",
            None,
            3,
        ],
    )
    def test_other_values_are_not(self, name: object) -> None:
        assert not is_valid_timezone(name)


def test_date_range_is_inclusive_and_empty_when_reversed() -> None:
    assert list(date_range(date(2026, 2, 27), date(2026, 3, 1))) == [
        date(2026, 2, 27),
        date(2026, 2, 28),
        date(2026, 3, 1),
    ]
    assert list(date_range(date(2026, 3, 1), date(2026, 2, 28))) == []
