"""Tenant settings: defaults, round trip through event data, what re-projects streaks."""

from __future__ import annotations

import pytest

from services.checkin.domain.risk import RiskThresholds
from services.checkin.domain.settings import TenantSettings, settings_updated_data
from services.checkin.domain.streaks import StreakPolicy


def test_defaults_are_the_contracts() -> None:
    assert TenantSettings().as_json() == {
        "streak_policy": "since_last_slip",
        "milestones": [1, 3, 7, 14, 21, 30, 60, 90, 180, 365],
        "backdate_days": 7,
        "missed_check_in_grace_hours": 12,
        "at_risk": {"slip_window_days": 7, "high_urge": 8, "high_urge_count": 2, "urge_window_check_ins": 3,
                    "silent_days": 2, "urge_log_window_days": 7, "frequent_urges": 5, "rising_urges": 3,
                    "urge_reached_out": 1},
        "reminder_local_time": None,
    }


def test_round_trip_and_older_data_take_defaults() -> None:
    custom = TenantSettings(StreakPolicy.VERIFIED, (2, 5), 3, 0, RiskThresholds(silent_days=4))
    assert TenantSettings.from_json(custom.as_json()) == custom
    assert TenantSettings.from_json({"milestones": [7, 1, 7]}).milestones == (1, 7)
    assert TenantSettings.from_json({}) == TenantSettings()
    with pytest.raises(ValueError):
        TenantSettings.from_json({"milestones": [0]})


def test_only_policy_or_milestones_reproject() -> None:
    base = TenantSettings()
    assert not TenantSettings(backdate_days=30).reprojects_streaks(base)
    assert TenantSettings(streak_policy=StreakPolicy.VERIFIED).reprojects_streaks(base)
    assert TenantSettings(milestones=(1, 2)).reprojects_streaks(base)
    data = settings_updated_data(tenant_id="t1", settings=TenantSettings(milestones=(1, 2)), previous=base)
    assert data["tenant_id"] == "t1" and data["reprojected"] is True and data["milestones"] == [1, 2]
