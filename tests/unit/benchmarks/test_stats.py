"""The load figures and the check-in comparison's report: a wrong percentile or ratio misleads every reader."""

from __future__ import annotations

import json
import math
from collections import Counter
from datetime import date
from pathlib import Path

import pytest

from benchmarks import Variant
from benchmarks.checkin import PEER, CheckinConfig, Contender, RunFigures, build_section
from benchmarks.e2e import Processes
from benchmarks.load import SLIP_EVERY, check_in_body, first, plan_pairs, remaining
from benchmarks.report import Comparison, Report, render_markdown
from benchmarks.stats import (
    LoadFigures,
    Request,
    load_figures,
    paired_ratios,
    per_second,
    percentile,
    ratio,
    webhook_latencies,
)


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(100, 0, -1)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.95) == 95.0
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 1.0) == 100.0
    assert percentile([7.0], 0.99) == 7.0
    assert percentile([1.0, 2.0, 3.0], 0.5) == 2.0
    assert math.isnan(percentile([], 0.5))


def test_percentile_is_not_moved_by_float_noise() -> None:
    # 0.57 * 100 is 56.99999999999999 and 0.29 * 300 is 86.99999999999999 in binary floats.
    assert percentile(range(1, 101), 0.57) == 57
    assert percentile(range(1, 301), 0.29) == 87


def _request(due: float, elapsed: float, status: int = 201, late: float = 0.0, pair: tuple[str, str] = ("c", "d"),
             ) -> Request:
    return Request(due, late, elapsed, status, *pair)


def test_load_figures_count_only_accepted_latencies_over_the_whole_window() -> None:
    requests = [
        _request(100.0, 0.010),
        _request(100.5, 0.020, late=0.030),  # open loop: 30 ms late, 50 ms from due
        _request(101.0, 0.500, status=409),
        _request(101.5, 1.000, status=0),
        _request(102.0, 0.040),
    ]
    figures = load_figures(requests)
    assert figures.requests == 5
    assert figures.accepted == 3
    assert figures.statuses == {0: 1, 201: 3, 409: 1}
    assert figures.window_s == pytest.approx(2.5)  # first due 100.0, last answer 102.5 (the failed one)
    assert figures.throughput == pytest.approx(3 / 2.5)
    assert figures.p50_ms == pytest.approx(40.0)
    assert figures.p99_ms == pytest.approx(50.0)
    assert figures.max_ms == pytest.approx(50.0)
    assert figures.late == 1


def test_load_figures_of_nothing_are_zero_and_nan() -> None:
    figures = load_figures([])
    assert (figures.requests, figures.accepted, figures.throughput) == (0, 0, 0.0)
    assert math.isnan(figures.p99_ms)


def test_request_reads_a_load_clients_row() -> None:
    request = Request.of([10.0, 0.5, 0.25, 201, "c1", "2024-01-02"])
    assert request == Request(10.0, 0.5, 0.25, 201, "c1", "2024-01-02")
    assert request.latency == 0.75
    assert request.answered == 10.75


def test_per_second_counts_accepted_answers_in_whole_seconds() -> None:
    requests = [_request(0.0, 0.1), _request(0.2, 0.1), _request(0.9, 0.2), _request(1.5, 0.1, status=500),
                _request(2.0, 0.6)]
    # answers at 0.1, 0.3, 1.1, (1.6 refused), 2.6: the run is 2.6 s long, the last partial second left out
    assert per_second(requests) == [2, 1]
    assert per_second([]) == []


def test_webhook_latency_counts_each_webhooks_first_delivery() -> None:
    requests = [_request(10.0, 0.2, pair=("c1", "d1")), _request(10.0, 0.3, pair=("c2", "d1")),
                _request(10.0, 0.1, status=409, pair=("c3", "d1"))]
    arrivals = [
        (11.0, "w1", "c1", "d1", 10.1),
        (12.0, "w2", "c2", "d1", 10.2),
        (11.5, "w1", "c1", "d1", 10.1),  # a repeat: the first delivery counts
        (13.0, "w3", "c9", "d9", 12.0),  # no 201 of ours matches: no "from the answer" figure
    ]
    latencies = webhook_latencies(arrivals, requests)
    assert latencies.repeats == 1
    assert sorted(latencies.from_event_ms) == pytest.approx([900.0, 1000.0, 1800.0])
    assert sorted(latencies.from_answer_ms) == pytest.approx([800.0, 1700.0])


def test_ratios_say_when_they_mean_nothing() -> None:
    assert ratio(50.0, 200.0) == 0.25
    assert ratio(1.0, 0.0) is None
    assert ratio(math.nan, 1.0) is None
    assert paired_ratios([10.0, 20.0, 30.0], [5.0, 0.0, 10.0]) == [2.0, 3.0]
    with pytest.raises(ValueError):
        paired_ratios([1.0], [1.0, 2.0])


def test_plan_gives_each_thread_its_own_commitments_and_every_pair_once() -> None:
    commitments = [f"c{i}" for i in range(5)]
    plan = plan_pairs(commitments, date(2024, 1, 1), date(2024, 1, 3), threads=2)
    assert plan[0][:4] == [("c0", "2024-01-01"), ("c2", "2024-01-01"), ("c4", "2024-01-01"), ("c0", "2024-01-02")]
    pairs = [pair for thread in plan for pair in thread]
    assert len(pairs) == len(set(pairs)) == 15
    assert {c for c, _ in plan[0]}.isdisjoint({c for c, _ in plan[1]})
    assert first(plan, 2) == [plan[0][:2], plan[1][:2]]
    assert remaining(plan, {plan[0][0], plan[1][0], plan[1][1]}) == [plan[0][1:], plan[1][2:]]


def test_one_check_in_in_ten_is_a_slip_in_nocontacts_payload() -> None:
    bodies = [json.loads(check_in_body("2024-01-05", index)) for index in range(100)]
    slips = [body for body in bodies if body["outcome"] == "slipped"]
    assert len(slips) == 100 // SLIP_EVERY
    assert all(body["slip"] == {"channel": "texts", "initiated_by": "me"} for body in slips)
    assert all("slip" not in body for body in bodies if body["outcome"] == "kept")
    assert all(0 <= body["urge"] <= 10 and 1 <= body["mood"] <= 5 and body["date"] == "2024-01-05" for body in bodies)


def test_variants_parse_names_and_environment() -> None:
    assert Variant.parse("plain=") == Variant("plain", {})
    sealed = Variant.parse("sealed=NOCONTACT_A=on NOCONTACT_B='x y,z' EMPTY=")
    assert sealed == Variant("sealed", {"NOCONTACT_A": "on", "NOCONTACT_B": "x y,z", "EMPTY": ""})
    assert sealed.describe() == "NOCONTACT_A=on NOCONTACT_B='x y,z' EMPTY=''"
    assert Variant("plain").describe() == "(as is)"
    for bad in ("plain", "=X=1", "v=NOT_AN_ASSIGNMENT", "v=1X=2"):
        with pytest.raises(ValueError):
            Variant.parse(bad)


def test_a_ceiling_aim_reads_as_one() -> None:
    assert Comparison("p99", "a", "b", target=2.0, at_most=True).aim() == "<= 2x"
    assert Comparison("rate", "a", "b", target=0.5).aim() == ">= 0.5x"
    assert Comparison("rate", "a", "b").aim() == ""


def _figures(throughput: float, p99: float) -> LoadFigures:
    return LoadFigures(requests=100, accepted=100, statuses={201: 100}, window_s=1.0, throughput=throughput,
                       p50_ms=p99 / 4, p95_ms=p99 / 2, p99_ms=p99, max_ms=p99 * 2, late=0)


def _contender(tmp_path: Path, name: str, runs: list[tuple[float, float]], drain: float | None = None,
               ) -> Contender:
    contender = Contender(name, "http://127.0.0.1:1", "key", [], Processes(tmp_path / name))
    contender.runs = [RunFigures(_figures(t, p), 2.0, 0.5, drain) for t, p in runs]
    contender.statuses = Counter({201: 100 * len(runs)})
    contender.peak_rss = {"api worker 1": 80.0, "worker": 120.0}
    return contender


def test_the_comparison_reports_each_variant_against_the_peer_and_the_first_variant(tmp_path: Path) -> None:
    peer = _contender(tmp_path, PEER, [(400.0, 100.0), (500.0, 80.0), (300.0, 120.0)])
    plain = _contender(tmp_path, "plain", [(100.0, 400.0), (100.0, 300.0), (90.0, 500.0)], drain=2.0)
    sealed = _contender(tmp_path, "sealed", [(80.0, 500.0), (50.0, 600.0), (90.0, 450.0)], drain=3.0)
    sealed.runs[1].drain_s = None
    section = build_section([peer, plain, sealed], CheckinConfig(seconds=20, concurrency=16, commitments=1000,
                                                                   drain_s=60))

    ratios = {c.name: section.ratio(c) for c in section.comparisons}
    assert ratios["check-ins/s, plain / crud peer"] == pytest.approx(100 / 400)
    assert ratios["p99, plain / crud peer"] == pytest.approx(400 / 100)
    assert ratios["check-ins/s, sealed / plain"] == pytest.approx(80 / 100)
    assert ratios["p99, sealed / plain"] == pytest.approx(500 / 400)
    aims = {c.name: c.aim() for c in section.comparisons}
    assert aims["check-ins/s, plain / crud peer"] == ">= 0.5x"
    assert aims["p99, sealed / crud peer"] == "<= 2x"
    assert aims["p99, sealed / plain"] == ""
    assert section.measurement("check-ins/s, plain / crud peer, round by round").samples == pytest.approx(
        [0.25, 0.2, 0.3])
    assert section.measurement("plain: CPU per check-in (own processes)").samples == [2.0, 2.0, 2.0]
    assert section.measurement("plain: webhooks all delivered, after the run").samples == [2.0, 2.0, 2.0]
    with pytest.raises(KeyError):
        section.measurement(f"{PEER}: webhooks all delivered, after the run")
    assert section.measurement("sealed: peak RSS worker").samples == [120.0]

    markdown = render_markdown(Report(machine={}, config={}, sections=[section]))
    assert "| check-ins/s, plain / crud peer | plain: check-ins/s | crud peer: check-ins/s | 0.25x | >= 0.5x |" \
        in markdown
    assert "| p99, plain / crud peer | plain: latency p99 | crud peer: latency p99 | 4.00x | <= 2x |" in markdown
    assert "1 run(s) whose webhooks did NOT all arrive within 60 s" in markdown
    assert "largest here: plain: worker, 120 MiB" in markdown
