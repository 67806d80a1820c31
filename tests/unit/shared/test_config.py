"""Shared settings read from the environment: defaults, and malformed values named."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared import config


def test_the_dedup_window_is_thirty_days_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOCONTACT_DEDUP_WINDOW_DAYS", raising=False)
    assert config.dedup_window() == timedelta(days=30)
    monkeypatch.setenv("NOCONTACT_DEDUP_WINDOW_DAYS", " ")
    assert config.dedup_window() == timedelta(days=30)
    monkeypatch.setenv("NOCONTACT_DEDUP_WINDOW_DAYS", "7.5")
    assert config.dedup_window() == timedelta(days=7.5)


@pytest.mark.parametrize("raw", ["abc", "0", "0.5", "-3", "nan", "inf", "1e9"])
def test_a_dedup_window_under_a_day_or_not_a_number_is_refused_by_name(
        raw: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Under a day, the copies a relay publishes again after a night's outage (the batch it
    # had published but not yet checkpointed) would find the consumers had forgotten them.
    monkeypatch.setenv("NOCONTACT_DEDUP_WINDOW_DAYS", raw)
    with pytest.raises(ValueError, match="NOCONTACT_DEDUP_WINDOW_DAYS"):
        config.dedup_window()
