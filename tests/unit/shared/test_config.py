"""Shared settings read from the environment: defaults, and malformed values named."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from shared import config
from shared import logging as _logging  # noqa: F401 - registers NOCONTACT_LOG_LEVEL with config.check
from shared import topology as _topology  # noqa: F401 - registers the partition counts


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


# -- one strict parser for every setting (shared.config.number, flag, check) ---------------


def test_a_number_is_its_default_when_unset_or_blank_and_keeps_the_defaults_kind(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOCONTACT_X", raising=False)
    assert config.number("NOCONTACT_X", 5, minimum=1) == 5
    monkeypatch.setenv("NOCONTACT_X", "  ")
    assert config.number("NOCONTACT_X", 0.5, above=0) == 0.5
    monkeypatch.setenv("NOCONTACT_X", " 7 ")
    whole = config.number("NOCONTACT_X", 5, minimum=1)
    assert whole == 7 and isinstance(whole, int)
    monkeypatch.setenv("NOCONTACT_X", "2.5")
    assert config.number("NOCONTACT_X", 0.5, above=0) == 2.5


@pytest.mark.parametrize(("raw", "default", "bounds", "said"), [
    ("soon", 1.0, {}, "is not a number"),
    ("2.5", 1, {}, "is not a whole number"),
    ("1_000", 1, {}, "is not a whole number"),
    ("١٢", 1, {}, "is not a whole number"),  # Arabic-Indic digits: int() would take them
    ("nan", 1.0, {}, "is not a finite number"),
    ("inf", 1.0, {}, "is not a finite number"),
    ("0", 0.05, {"above": 0}, "must be above 0"),
    ("-1", 0, {"minimum": 0}, "must be at least 0"),
    ("6", 1.0, {"minimum": 0, "maximum": 5}, "must be at least 0 and at most 5"),
    ("100000", 30.0, {"minimum": 1, "below": 100_000}, "must be at least 1 and under 100000"),
])
def test_a_malformed_number_is_named_with_its_value_and_what_it_must_be(
        raw: str, default: float, bounds: dict[str, float], said: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOCONTACT_X", raw)
    with pytest.raises(config.SettingError) as refused:
        config.number("NOCONTACT_X", default, **bounds)
    assert str(refused.value).startswith(f"NOCONTACT_X={raw!r}") and said in str(refused.value)


@pytest.mark.parametrize(("raw", "value"), [("1", True), ("TRUE", True), (" yes ", True), ("on", True),
                                            ("0", False), ("false", False), ("No", False), ("off", False),
                                            ("", False)])
def test_a_flag_takes_the_usual_spellings(raw: str, value: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOCONTACT_X", raw)
    assert config.flag("NOCONTACT_X") is value


def test_a_flag_that_is_neither_yes_nor_no_is_refused_not_read_as_no(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOCONTACT_X", "enabled")
    with pytest.raises(config.SettingError, match="NOCONTACT_X='enabled'"):
        config.flag("NOCONTACT_X")


@pytest.mark.parametrize(("name", "raw"), [
    # Each of these was read with int()/float() alone: 0 made a loop spin, a negative
    # burst was quietly taken as "unset", and a typo failed at the first request (a 500).
    ("NOCONTACT_RELAY_POLL_INTERVAL_S", "0"),
    ("NOCONTACT_SCHEDULER_INTERVAL_S", "-5"),
    ("NOCONTACT_RATE_LIMIT_PER_MINUTE", "lots"),
    ("NOCONTACT_RATE_LIMIT_BURST", "-1"),
    ("NOCONTACT_AUTH_FAILURES_PER_MINUTE", "1.5"),
    ("NOCONTACT_TRUSTED_PROXIES", "-1"),
    ("NOCONTACT_DB_POOL_SIZE", "0"),
    ("NOCONTACT_NOTIFICATION_INBOX_PARTITIONS", "four"),
    ("NOCONTACT_LOG_LEVEL", "loud"),
    ("NOCONTACT_WEBHOOK_ALLOW_PRIVATE", "enabled"),
])
def test_check_names_every_malformed_setting_at_once(name: str, raw: str, monkeypatch: pytest.MonkeyPatch) -> None:
    config.check()  # the defaults are all well-formed
    monkeypatch.setenv(name, raw)
    monkeypatch.setenv("NOCONTACT_DEDUP_WINDOW_DAYS", "0")
    with pytest.raises(config.SettingError) as refused:
        config.check()
    assert f"{name}={raw!r}" in str(refused.value) and "NOCONTACT_DEDUP_WINDOW_DAYS='0'" in str(refused.value)


def test_a_worker_with_a_malformed_setting_does_not_start(monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.worker import run_parts

    started = []
    monkeypatch.setenv("NOCONTACT_RELAY_POLL_INTERVAL_S", "0")
    with pytest.raises(config.SettingError, match="NOCONTACT_RELAY_POLL_INTERVAL_S"):
        run_parts({"relay": started.append}, install_signals=False)
    assert started == []


def test_an_api_with_a_malformed_setting_does_not_load(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # gunicorn then says the worker failed to boot, with this line, instead of every
    # request that reads the rate limit answering 500.
    from services.checkin.app import create_app

    monkeypatch.setenv("NOCONTACT_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("NOCONTACT_RATE_LIMIT_PER_MINUTE", "lots")
    with pytest.raises(config.SettingError, match="NOCONTACT_RATE_LIMIT_PER_MINUTE='lots' is not a whole number"):
        create_app()


def test_the_ports_make_run_serves_on_are_checked_by_make_run_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    # A deployment's processes never read them, and an orchestrator may set such names for
    # its own ends (Kubernetes: <SERVICE>_PORT=tcp://...): only `nocontact run` checks them.
    monkeypatch.setenv("NOCONTACT_CHECKIN_PORT", "tcp://10.0.0.1:8002")
    config.check()
    from services import runner

    with pytest.raises(config.SettingError, match=re.escape("NOCONTACT_CHECKIN_PORT='tcp://10.0.0.1:8002'")):
        runner.check_ports()


def test_a_command_with_a_malformed_setting_says_so_in_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from click.testing import CliRunner

    from services.cli import main

    monkeypatch.setenv("NOCONTACT_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("NOCONTACT_RELAY_POLL_INTERVAL_S", "0")
    # Read while the failure is reported: malformed too, it must not replace that line.
    monkeypatch.setenv("NOCONTACT_DEBUG", "enabled")
    # Read by logging, which is set up before the worker's parts: named with the others, not alone.
    monkeypatch.setenv("NOCONTACT_LOG_LEVEL", "loud")
    result = CliRunner().invoke(main, ["worker", "checkin", "--only", "relay"])
    assert result.exit_code == 2, result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("nocontact: ") and "NOCONTACT_RELAY_POLL_INTERVAL_S='0' must be above 0" in line
    assert "NOCONTACT_LOG_LEVEL='loud' must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL" in line
