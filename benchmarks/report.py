"""The benchmark report: figures as data, rendered to var/bench/report.md and report.json.

A report is a list of sections (event store, peer library, rebuild, and later end-to-end
over HTTP); each section holds measurements, one per workload, each the samples of
several runs summarised as median, min and max. Comparisons (ours / theirs) are computed
from medians. Nothing here judges a figure: a benchmark reports, it never fails on a
number.

To add a section (issue 8 part 4, end-to-end over HTTP): build a `Section` with a new
`key`, `add()` one `Measurement` per workload, and append it to `Report.sections`; the
renderers need no change.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Summary:
    """Several runs of one workload reduced to the figures a reader compares."""

    runs: int
    median: float
    min: float
    max: float

    @classmethod
    def of(cls, samples: Sequence[float]) -> Summary:
        if not samples:
            raise ValueError("a summary needs at least one sample")
        return cls(
            runs=len(samples),
            median=float(statistics.median(samples)),
            min=float(min(samples)),
            max=float(max(samples)),
        )


@dataclass
class Measurement:
    """One workload on one backend: the raw samples of every run and what they measure."""

    name: str
    unit: str
    samples: list[float]
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def summary(self) -> Summary:
        return Summary.of(self.samples)


@dataclass(frozen=True)
class Comparison:
    """Ours against a reference (the `eventsourcing` library) on the same workload."""

    name: str
    ours: str
    theirs: str
    target: float | None = None
    """The ratio ours/theirs aimed at; a direction, not a pass mark."""
    at_most: bool = False
    """The aim is a ceiling (a latency ratio) rather than a floor (a throughput ratio)."""

    def aim(self) -> str:
        if self.target is None:
            return ""
        return f"{'<=' if self.at_most else '>='} {self.target:g}x"


@dataclass
class Section:
    key: str
    title: str
    description: str = ""
    measurements: list[Measurement] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, name: str, unit: str, samples: Iterable[float], **params: Any) -> Measurement:
        measurement = Measurement(name=name, unit=unit, samples=list(samples), params=params)
        self.measurements.append(measurement)
        return measurement

    def measurement(self, name: str) -> Measurement:
        for measurement in self.measurements:
            if measurement.name == name:
                return measurement
        raise KeyError(name)

    def ratio(self, comparison: Comparison) -> float | None:
        """Median of ours / median of theirs; None when a side is missing or zero."""
        try:
            ours = self.measurement(comparison.ours).summary.median
            theirs = self.measurement(comparison.theirs).summary.median
        except KeyError:
            return None
        return ours / theirs if theirs else None


@dataclass
class Report:
    machine: dict[str, Any]
    config: dict[str, Any]
    sections: list[Section] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "machine": self.machine,
            "config": self.config,
            "sections": [
                {
                    "key": section.key,
                    "title": section.title,
                    "description": section.description,
                    "measurements": [
                        {**asdict(m), "summary": asdict(m.summary)} for m in section.measurements if m.samples
                    ],
                    "comparisons": [
                        {**asdict(c), "ratio": section.ratio(c)} for c in section.comparisons
                    ],
                    "notes": section.notes,
                }
                for section in self.sections
            ],
        }


def format_number(value: float) -> str:
    """Thousands separated, with decimals only where the magnitude needs them."""
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:,.2f}"
    return f"{value:.3g}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], right_from: int = 1) -> list[str]:
    align = ["---" if i < right_from else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return lines


def _params(params: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in params.items())


def render_markdown(report: Report) -> str:
    lines = ["# nocontact benchmarks", ""]
    machine = report.machine
    lines.append(
        "A benchmark, not a test: figures are reported, never judged. Each figure is the median "
        "of several runs (min and max beside it)."
    )
    lines.append("")
    lines.extend(_table(["machine", ""], [[key, str(value)] for key, value in machine.items()], right_from=2))
    lines.append("")
    lines.extend(_table(["setting", ""], [[key, str(value)] for key, value in report.config.items()], right_from=2))
    lines.append("")
    for section in report.sections:
        lines += [f"## {section.title}", ""]
        if section.description:
            lines += [section.description, ""]
        rows = [
            [m.name, _params(m.params), m.unit, str(s.runs), format_number(s.median), format_number(s.min),
             format_number(s.max)]
            for m in section.measurements
            if m.samples
            for s in [m.summary]
        ]
        if rows:
            lines.extend(_table(["workload", "parameters", "unit", "runs", "median", "min", "max"], rows, right_from=3))
            lines.append("")
        if section.comparisons:
            comparison_rows = []
            for comparison in section.comparisons:
                ratio = section.ratio(comparison)
                comparison_rows.append([
                    comparison.name,
                    comparison.ours,
                    comparison.theirs,
                    "n/a" if ratio is None else f"{ratio:.2f}x",
                    comparison.aim(),
                ])
            lines.extend(_table(["ratio (medians)", "ours", "theirs", "ours / theirs", "aim"], comparison_rows,
                                right_from=3))
            lines.append("")
        for note in section.notes:
            lines.append(f"- {note}")
        if section.notes:
            lines.append("")
    return "\n".join(lines)


def write(report: Report, directory: Path, stem: str = "report") -> tuple[Path, Path]:
    """Write `<stem>.md` and `<stem>.json` into `directory`; returns both paths."""
    directory.mkdir(parents=True, exist_ok=True)
    markdown = directory / f"{stem}.md"
    document = directory / f"{stem}.json"
    markdown.write_text(render_markdown(report))
    document.write_text(json.dumps(report.as_json(), indent=2, default=str) + "\n")
    return markdown, document
