"""The harness's arithmetic and report: a wrong median or ratio would mislead every reader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import Settings, day
from benchmarks.rebuild import EVENTS_PER_COMMITMENT, TODAY, StreakRebuild, in_memory_histories
from benchmarks.report import Comparison, Report, Section, Summary, format_number, render_markdown, write
from services.checkin.domain import fold_streak
from services.checkin.domain.streaks import DEFAULT_MILESTONES


def test_summary_is_median_min_max_of_the_runs() -> None:
    assert Summary.of([5.0, 1.0, 3.0]) == Summary(runs=3, median=3.0, min=1.0, max=5.0)
    assert Summary.of([4.0, 1.0, 2.0, 10.0]) == Summary(runs=4, median=3.0, min=1.0, max=10.0)
    assert Summary.of([7.0]) == Summary(runs=1, median=7.0, min=7.0, max=7.0)


def test_summary_of_no_runs_is_refused() -> None:
    with pytest.raises(ValueError):
        Summary.of([])


def _section() -> Section:
    section = Section(key="peer", title="Peer")
    section.add("ours: append", "events/s", [300.0, 100.0, 200.0])
    section.add("theirs: append", "events/s", [50.0, 100.0, 150.0])
    section.add("theirs: zero", "events/s", [0.0])
    section.comparisons.append(Comparison("append", "ours: append", "theirs: append", target=3.0))
    return section


def test_ratio_compares_medians_and_says_when_it_cannot() -> None:
    section = _section()
    assert section.ratio(Comparison("append", "ours: append", "theirs: append")) == pytest.approx(2.0)
    assert section.ratio(Comparison("x", "ours: append", "theirs: missing")) is None
    assert section.ratio(Comparison("x", "ours: append", "theirs: zero")) is None


def test_markdown_has_a_table_row_per_workload_and_the_ratio(tmp_path: Path) -> None:
    report = Report(machine={"cores": 2}, config={"runs": 3}, sections=[_section()])
    markdown = render_markdown(report)
    assert "| ours: append |  | events/s | 3 | 200 | 100 | 300 |" in markdown
    assert "| append | ours: append | theirs: append | 2.00x | >= 3x |" in markdown
    assert "| cores | 2 |" in markdown

    md_path, json_path = write(report, tmp_path, "r")
    assert md_path.read_text() == markdown
    document = json.loads(json_path.read_text())
    (ours,) = [m for m in document["sections"][0]["measurements"] if m["name"] == "ours: append"]
    assert ours["summary"] == {"runs": 3, "median": 200.0, "min": 100.0, "max": 300.0}
    assert ours["samples"] == [300.0, 100.0, 200.0]
    assert document["sections"][0]["comparisons"][0]["ratio"] == pytest.approx(2.0)


def test_numbers_are_readable() -> None:
    assert format_number(1234567.8) == "1,234,568"
    assert format_number(57.123) == "57.12"
    assert format_number(0.01234) == "0.0123"
    assert format_number(0) == "0"


def test_settings_scale_sizes_and_refuse_nonsense(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOCONTACT_BENCH_RUNS", "5")
    monkeypatch.setenv("NOCONTACT_BENCH_SCALE", "0.01")
    monkeypatch.setenv("NOCONTACT_BENCH_BACKENDS", "sqlite")
    settings = Settings.from_environment()
    assert (settings.runs, settings.backends) == (5, ("sqlite",))
    assert settings.size(10_000) == 100
    assert settings.size(10, minimum=4) == 4
    monkeypatch.setenv("NOCONTACT_BENCH_RUNS", "0")
    with pytest.raises(SystemExit):
        Settings.from_environment()


def test_the_rebuild_fold_gives_the_domain_fold_streaks() -> None:
    """The benchmark's streaming fold must compute what `fold_streak` computes, or its figure lies."""
    rebuild = StreakRebuild()
    expected = {}
    for history in in_memory_histories(12):
        assert len(history) == EVENTS_PER_COMMITMENT
        for event in history:
            rebuild.add(event)
        expected[history[0].stream_id] = fold_streak(
            history, starts_on=day(0), ends_on=None, today=TODAY, milestones=DEFAULT_MILESTONES
        )
    assert rebuild.finish() == expected
    assert any(streak.slipped_days for streak in expected.values())
