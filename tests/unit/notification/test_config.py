"""The notification settings: defaults, and loud failures on malformed values."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.notification import config
from services.notification.domain.schedule import ScheduleError
from shared import config as settings


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "NOCONTACT_WEBHOOK_RETRY_SCHEDULE",
        "NOCONTACT_WEBHOOK_TIMEOUT_S",
        "NOCONTACT_WEBHOOK_DISABLE_AFTER_DAYS",
        "NOCONTACT_WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT",
        "NOCONTACT_WEBHOOK_ALLOW_PRIVATE",
    ):
        monkeypatch.delenv(name, raising=False)
    assert config.retry_schedule() == (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
    assert config.timeout_s() == 15.0
    assert config.disable_after() == timedelta(days=5)
    assert config.max_in_flight_per_endpoint() == 16
    assert config.allow_private() is False


def test_values_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOCONTACT_WEBHOOK_RETRY_SCHEDULE", "0,1,1")
    monkeypatch.setenv("NOCONTACT_WEBHOOK_TIMEOUT_S", "2.5")
    monkeypatch.setenv("NOCONTACT_WEBHOOK_DISABLE_AFTER_DAYS", "0.5")
    monkeypatch.setenv("NOCONTACT_WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT", "2")
    monkeypatch.setenv("NOCONTACT_WEBHOOK_ALLOW_PRIVATE", "true")
    assert config.retry_schedule() == (0, 1, 1)
    assert config.timeout_s() == 2.5
    assert config.disable_after() == timedelta(hours=12)
    assert config.max_in_flight_per_endpoint() == 2
    assert config.allow_private() is True


@pytest.mark.parametrize(
    ("name", "value", "read"),
    [
        ("NOCONTACT_WEBHOOK_TIMEOUT_S", "soon", config.timeout_s),
        ("NOCONTACT_WEBHOOK_TIMEOUT_S", "0", config.timeout_s),
        ("NOCONTACT_WEBHOOK_TIMEOUT_S", "nan", config.timeout_s),
        ("NOCONTACT_WEBHOOK_TIMEOUT_S", "inf", config.timeout_s),
        ("NOCONTACT_WEBHOOK_DISABLE_AFTER_DAYS", "-1", config.disable_after),
        ("NOCONTACT_WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT", "0", config.max_in_flight_per_endpoint),
        ("NOCONTACT_WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT", "2.5", config.max_in_flight_per_endpoint),
    ],
)
def test_malformed_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, read: object
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(settings.SettingError, match=name):
        read()  # type: ignore[operator]


def test_malformed_schedule_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOCONTACT_WEBHOOK_RETRY_SCHEDULE", "0,5,soon")
    with pytest.raises(ScheduleError, match="NOCONTACT_WEBHOOK_RETRY_SCHEDULE: retry schedule entry 3"):
        config.retry_schedule()


def test_retention_of_delivered_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOCONTACT_RETENTION_DAYS", raising=False)
    assert config.retention() == timedelta(days=90)
    monkeypatch.setenv("NOCONTACT_RETENTION_DAYS", "7")
    assert config.retention() == timedelta(days=7)
    for bad in ("0", "-1", "a week"):
        monkeypatch.setenv("NOCONTACT_RETENTION_DAYS", bad)
        with pytest.raises(settings.SettingError, match="NOCONTACT_RETENTION_DAYS"):
            config.retention()
