"""Projection rebuild: check-in events folded into one streak per commitment.

The log holds 100 check-in events per commitment (95 days reported, about 1 in 10
slipped, then 5 corrections of earlier days), 10,000 commitments at scale 1: 1,000,000
events, generated first with batched appends (not timed). A run then times:

- ``read``: the whole log through `read_all` pages of 5,000 filtered on the check-in
  types, in one read transaction, as `shared.projection.rebuild` reads it: the DB cost;
- ``read + fold``: the same, each event folded as it arrives into its commitment's decision
  state with the check-in service's one fold (`StateFold`, what ``nocontact checkin
  rebuild`` and every command fold), then `compute_streak` per commitment: the rebuild;
- ``fold in memory``: the same fold over `RecordedEvent`s already in memory: the fold cost;
- ``fold_streak per commitment``: the domain's one-call fold over each commitment's list.

Each run is a fresh spawned process; its peak resident memory is the kernel's high-water
mark (VmHWM, reset through /proc/self/clear_refs when the run starts, else getrusage
maxrss); "above baseline" subtracts the process's size when the run started.
"""

from __future__ import annotations

import multiprocessing
import random
import resource
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy import Engine

from benchmarks import METADATA, Settings, checkin_data, day, fresh_store
from benchmarks.report import Section
from services.checkin.domain import (
    CHECK_IN_EVENT_TYPES,
    CommitmentState,
    StateFold,
    Streak,
    compute_streak,
    fold_streak,
)
from shared.db import engine_for, read
from shared.events import NewEvent, RecordedEvent
from shared.eventstore import append_streams, read_all

COMMITMENTS = 10_000
REPORTED_DAYS = 95
CORRECTIONS = 5
EVENTS_PER_COMMITMENT = REPORTED_DAYS + CORRECTIONS
COMMITMENTS_PER_TRANSACTION = 10
PAGE = 5_000
TODAY = day(REPORTED_DAYS)
MODES = ("read", "read + fold", "fold in memory", "fold_streak per commitment")


def commitment_events(commitment_id: str, seed: int) -> list[NewEvent]:
    """One commitment's check-in history, deterministic for a given seed."""
    rng = random.Random(seed)
    slipped = [rng.random() < 0.1 for _ in range(REPORTED_DAYS)]
    events = [
        NewEvent(type="checkin.recorded", data=checkin_data(commitment_id, day(offset), slipped[offset]))
        for offset in range(REPORTED_DAYS)
    ]
    for offset in rng.sample(range(REPORTED_DAYS), CORRECTIONS):
        slipped[offset] = not slipped[offset]
        events.append(
            NewEvent(
                type="checkin.corrected",
                data=checkin_data(commitment_id, day(offset), slipped[offset], corrected=True),
            )
        )
    return events


def generate(engine: Engine, commitments: int) -> int:
    """Write the log: several commitments per transaction, in the transaction's one append
    (the store's rule: the append is a transaction's first write, shared.eventstore)."""
    written = 0
    for first in range(0, commitments, COMMITMENTS_PER_TRANSACTION):
        appends = []
        for index in range(first, min(first + COMMITMENTS_PER_TRANSACTION, commitments)):
            stream = f"checkin-{uuid.UUID(int=index + 1)}"
            events = commitment_events(stream, index)
            appends.append((stream, events, 0))
            written += len(events)
        with engine.begin() as conn:
            append_streams(conn, appends, metadata=METADATA)
    return written


class StreakRebuild:
    """The state projection rebuilt from the log: each commitment's stream folded as events
    arrive, its streak computed from the state at the end."""

    def __init__(self) -> None:
        self.folds: dict[str, tuple[StateFold, int]] = {}  # stream -> its fold, the version folded

    def add(self, event: RecordedEvent) -> None:
        entry = self.folds.get(event.stream_id)
        fold = StateFold(CommitmentState(day(0))) if entry is None else entry[0]
        fold.add(event.type, event.data)
        self.folds[event.stream_id] = (fold, event.stream_version)

    def finish(self, today: date = TODAY) -> dict[str, Streak]:
        return {
            stream: compute_streak(fold.state(version).outcomes(), starts_on=day(0), ends_on=None, today=today)
            for stream, (fold, version) in self.folds.items()
        }


def recorded(stream_id: str, events: Sequence[NewEvent], first_position: int) -> list[RecordedEvent]:
    """`events` as the store would hand them back (same types, same payloads)."""
    now = datetime.now(UTC)
    return [
        RecordedEvent(
            id=event.id, type=event.type, schema_version=event.schema_version, stream_id=stream_id,
            stream_version=version, position=first_position + version, data=event.data,
            tenant_id=METADATA.tenant_id, correlation_id=METADATA.correlation_id, causation_id=None,
            actor=METADATA.actor, occurred_at=now, recorded_at=now,
        )
        for version, event in enumerate(events, start=1)
    ]


def in_memory_histories(commitments: int) -> Iterator[list[RecordedEvent]]:
    for index in range(commitments):
        stream = f"checkin-{uuid.UUID(int=index + 1)}"
        yield recorded(stream, commitment_events(stream, index), index * EVENTS_PER_COMMITMENT)


def _status_kib(field: str) -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _reset_peak() -> bool:
    """Restart the kernel's high-water mark of this process's RSS (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_kib(reset: bool) -> int:
    # VmHWM since the reset is the run's own peak; without a reset, maxrss since start
    # (which may include the spawn and imports before the run).
    peak = _status_kib("VmHWM") if reset else 0
    return peak or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


@dataclass(frozen=True)
class RunResult:
    events: int
    seconds: float
    peak_kib: int
    baseline_kib: int
    streaks: int


def run_once(mode: str, url: str | None, commitments: int) -> RunResult:
    """One timed rebuild in this (fresh) process; see the module docstring for the modes."""
    baseline = _status_kib("VmRSS")
    reset = _reset_peak()
    seconds = 0.0
    count = streaks = 0
    if mode in ("read", "read + fold"):
        if url is None:
            raise ValueError("reading needs a store")
        engine = engine_for(url)
        fold = mode == "read + fold"
        rebuild = StreakRebuild()
        started = time.perf_counter()
        position = 0
        with read(engine) as conn:
            # The whole log (nothing is appended meanwhile), as shared.projection.rebuild reads it.
            while batch := read_all(conn, position, limit=PAGE, types=CHECK_IN_EVENT_TYPES, settled=False):
                if fold:
                    for event in batch:
                        rebuild.add(event)
                count += len(batch)
                position = batch[-1].position
        streaks = len(rebuild.finish()) if fold else 0
        seconds = time.perf_counter() - started
    elif mode == "fold in memory":
        rebuild = StreakRebuild()
        for history in in_memory_histories(commitments):
            started = time.perf_counter()
            for event in history:
                rebuild.add(event)
            seconds += time.perf_counter() - started
            count += len(history)
        started = time.perf_counter()
        streaks = len(rebuild.finish())
        seconds += time.perf_counter() - started
    elif mode == "fold_streak per commitment":
        for history in in_memory_histories(commitments):
            started = time.perf_counter()
            fold_streak(history, starts_on=day(0), ends_on=None, today=TODAY)
            seconds += time.perf_counter() - started
            count += len(history)
            streaks += 1
    else:
        raise ValueError(mode)
    return RunResult(count, seconds, _peak_kib(reset), baseline, streaks)


def run_in_fresh_process(mode: str, url: str | None, commitments: int) -> RunResult:
    # Spawned, not forked: a forked child starts with the parent's pages and its maxrss.
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(run_once, mode, url, commitments).result()


def section(settings: Settings) -> Section:
    commitments = settings.size(COMMITMENTS)
    total = commitments * EVENTS_PER_COMMITMENT
    result = Section(
        key="rebuild",
        title="3. Projection rebuild: check-ins folded into streaks",
        description=(
            f"{total:,} check-in events ({EVENTS_PER_COMMITMENT} per commitment, {CORRECTIONS} of them "
            f"corrections) for {commitments:,} commitments. Each run is a fresh spawned process; memory is "
            "its peak resident set (VmHWM reset at the run's start) and the part above its size then."
        ),
    )
    for backend in settings.backends:
        with fresh_store(backend) as url:
            started = time.perf_counter()
            written = generate(engine_for(url), commitments)
            generation = time.perf_counter() - started
            result.notes.append(
                f"{backend}: generated {written:,} events in {generation:.1f} s "
                f"({written / generation:,.0f} events/s, one append per commitment, "
                f"{COMMITMENTS_PER_TRANSACTION} per transaction)"
            )
            for mode in ("read", "read + fold"):
                _measure(result, settings, f"{backend}: {mode}", mode, url, commitments)
    for mode in ("fold in memory", "fold_streak per commitment"):
        _measure(result, settings, f"no database: {mode}", mode, None, commitments)
    result.notes.append(
        "read + fold minus read is the fold's share; 'fold in memory' is the same fold without the "
        "database, 'fold_streak per commitment' the domain's one-call API over each commitment's events."
    )
    return result


def _measure(result: Section, settings: Settings, name: str, mode: str, url: str | None, commitments: int) -> None:
    runs = [run_in_fresh_process(mode, url, commitments) for _ in range(settings.runs)]
    for run in runs:
        # A figure over the wrong amount of work is worse than none.
        if run.events != commitments * EVENTS_PER_COMMITMENT or (mode != "read" and run.streaks != commitments):
            raise RuntimeError(f"{name}: read {run.events} events into {run.streaks} streaks, expected "
                               f"{commitments * EVENTS_PER_COMMITMENT} into {commitments}")
    result.add(name, "events/s", [run.events / run.seconds for run in runs], events=runs[0].events)
    result.add(f"{name}: peak memory", "MiB", [run.peak_kib / 1024 for run in runs])
    result.add(f"{name}: memory above baseline", "MiB", [(run.peak_kib - run.baseline_kib) / 1024 for run in runs])
