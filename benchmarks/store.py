"""Event store figures: append and full-log replay on PostgreSQL and SQLite.

Appends go through `shared.eventstore.append` inside `engine.begin()`, exactly as a
command handler does (one statement: version check, shared append lock, insert ...
returning). Concurrent writers are threads of one process sharing the engine's pool: the
GIL is released while a thread waits on the database. On PostgreSQL the appends of
several writers run and commit together; on SQLite they queue on the writer lock (BEGIN
IMMEDIATE). Threads avoid a start-up cost inside the timing, but share one interpreter:
at 4 writers the figure is bounded by one core's worth of client CPU as well.

`python -m benchmarks.store` (``make bench-store``) runs this section alone and writes
var/bench/store.md and store.json.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Engine

from benchmarks import METADATA, Settings, checkin_event, day, fresh_store, stream_ids, timed
from benchmarks.report import Section
from shared.db import engine_for, read
from shared.events import NewEvent
from shared.eventstore import append, iter_all, read_all, wait_settled

SINGLE_EVENTS = 2_000
BATCHED_EVENTS = 20_000
BATCH = 100
REPLAY_EVENTS = 50_000
READ_ALL_LIMIT = 1_000
ITER_ALL_BATCH = 5_000
STREAMS_PER_WRITER = 50


@dataclass(frozen=True)
class AppendJob:
    """One transaction: `events` appended to `stream_id` expecting it at `expected_version`."""

    stream_id: str
    events: list[NewEvent]
    expected_version: int


def single_event_jobs(total: int, writers: int) -> list[list[AppendJob]]:
    """`total` one-event transactions, each writer cycling over its own streams."""
    plans: list[list[AppendJob]] = []
    per_writer = total // writers
    for _ in range(writers):
        streams = stream_ids(STREAMS_PER_WRITER)
        versions = dict.fromkeys(streams, 0)
        jobs = []
        for index in range(per_writer):
            stream = streams[index % len(streams)]
            jobs.append(AppendJob(stream, [checkin_event(stream, day(versions[stream]))], versions[stream]))
            versions[stream] += 1
        plans.append(jobs)
    return plans


def batch_jobs(total: int, writers: int, batch: int = BATCH) -> list[list[AppendJob]]:
    """`total` events in transactions of `batch` events, each a new stream."""
    plans: list[list[AppendJob]] = []
    per_writer = max(1, total // batch // writers)
    for _ in range(writers):
        jobs = []
        for stream in stream_ids(per_writer):
            events = [checkin_event(stream, day(i), slipped=i % 10 == 9) for i in range(batch)]
            jobs.append(AppendJob(stream, events, 0))
        plans.append(jobs)
    return plans


def run_writers(plans: Sequence[Sequence[AppendJob]], write: Callable[[AppendJob], None]) -> float:
    """Run each plan in its own thread, all released at once; events per second overall."""
    start = threading.Barrier(len(plans) + 1)
    errors: list[BaseException] = []

    def writer(jobs: Sequence[AppendJob]) -> None:
        start.wait()
        try:
            for job in jobs:
                write(job)
        except BaseException as error:  # noqa: BLE001 - re-raised in the main thread
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(jobs,), daemon=True) for jobs in plans]
    for thread in threads:
        thread.start()
    start.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    return sum(len(job.events) for jobs in plans for job in jobs) / elapsed


def run_writer_processes(
    plans: Sequence[Sequence[AppendJob]], make_write: Callable[[], Callable[[AppendJob], None]]
) -> float:
    """Run each plan in a process of its own (forked: `make_write` runs in the child and
    makes its own connections), all released at once; events per second overall.

    Processes, as gunicorn runs an API: writers that do not share one interpreter's lock,
    so the figure is the store's concurrency, not one core's worth of Python.
    """
    context = multiprocessing.get_context("fork")
    start = context.Barrier(len(plans) + 1)
    failures = context.Queue()

    def writer(jobs: Sequence[AppendJob]) -> None:
        try:
            write = make_write()
            start.wait()
            for job in jobs:
                write(job)
        except BaseException as error:
            failures.put(repr(error))
            raise

    processes = [context.Process(target=writer, args=(jobs,), daemon=True) for jobs in plans]
    for process in processes:
        process.start()
    start.wait(timeout=120)
    started = time.perf_counter()
    for process in processes:
        process.join()
    elapsed = time.perf_counter() - started
    if any(process.exitcode for process in processes):
        raise RuntimeError(f"a writer process failed: {failures.get(timeout=5)}")
    return sum(len(job.events) for jobs in plans for job in jobs) / elapsed


def our_writer(engine: Engine) -> Callable[[AppendJob], None]:
    def write(job: AppendJob) -> None:
        with engine.begin() as conn:
            append(conn, job.stream_id, job.events, expected_version=job.expected_version, metadata=METADATA)

    return write


def seed(engine: Engine, total: int, batch: int = BATCH) -> int:
    """Fill the log with `total` events in batched appends (not timed by callers)."""
    written = 0
    for jobs in batch_jobs(total, 1, batch):
        for job in jobs:
            with engine.begin() as conn:
                append(conn, job.stream_id, job.events, expected_version=0, metadata=METADATA)
            written += len(job.events)
    return written


def analyze(engine: Engine) -> None:
    """Statistics for the planner, as autovacuum gives a table in use: without them the
    first read of a freshly filled table may be planned as a sort (benchmarks.peer)."""
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE events")


def replay_read_all(engine: Engine, limit: int = READ_ALL_LIMIT) -> int:
    """The whole log through `read_all` pages, one read transaction for all of them."""
    count = position = 0
    with read(engine) as conn:
        while batch := read_all(conn, position, limit=limit):
            count += len(batch)
            position = batch[-1].position
    return count


def replay_iter_all(engine: Engine, batch_size: int = ITER_ALL_BATCH) -> int:
    return sum(1 for _ in iter_all(engine, batch_size=batch_size))


@dataclass(frozen=True)
class Workload:
    name: str
    plan: Callable[[], list[list[AppendJob]]]
    processes: bool = False  # writers as processes, else threads of this one


def append_workloads(settings: Settings) -> list[Workload]:
    single = settings.size(SINGLE_EVENTS, 4)
    batched = settings.size(BATCHED_EVENTS, BATCH * 4)
    return [
        Workload("append 1 event/txn, 1 writer", lambda: single_event_jobs(single, 1)),
        Workload("append 1 event/txn, 4 writers (threads)", lambda: single_event_jobs(single, 4)),
        Workload("append 1 event/txn, 4 writers (processes)", lambda: single_event_jobs(single, 4), processes=True),
        Workload(f"append {BATCH} events/txn, 1 writer", lambda: batch_jobs(batched, 1)),
        Workload(f"append {BATCH} events/txn, 4 writers (threads)", lambda: batch_jobs(batched, 4)),
    ]


def run_workload(workload: Workload, plans: Sequence[Sequence[AppendJob]],
                 make_write: Callable[[], Callable[[AppendJob], None]]) -> float:
    if workload.processes:
        return run_writer_processes(plans, make_write)
    return run_writers(plans, make_write())


def measure_appends(settings: Settings, backend: str) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {}
    for workload in append_workloads(settings):
        for _ in range(settings.runs):
            plans = workload.plan()  # built outside the timing: event construction is not the store's cost
            with fresh_store(backend) as url:
                rate = run_workload(workload, plans, lambda url=url: our_writer(engine_for(url)))
                samples.setdefault(workload.name, []).append(rate)
    return samples


def measure_replay(settings: Settings, backend: str) -> dict[str, list[float]]:
    size = settings.size(REPLAY_EVENTS, BATCH)
    samples: dict[str, list[float]] = {}
    for _ in range(settings.runs):
        with fresh_store(backend) as url:
            engine = engine_for(url)
            seed(engine, size)
            analyze(engine)
            wait_settled(engine)  # the whole log readable by a tailer before the timing starts
            samples.setdefault(f"replay read_all (pages of {READ_ALL_LIMIT})", []).append(
                timed(lambda engine=engine: replay_read_all(engine))
            )
            samples.setdefault(f"replay iter_all (batches of {ITER_ALL_BATCH})", []).append(
                timed(lambda engine=engine: replay_iter_all(engine))
            )
    return samples


def section(settings: Settings) -> Section:
    result = Section(
        key="store",
        title="1. Event store: append and replay (shared/eventstore.py)",
        description=(
            "Appends through `append()` in `engine.begin()` with expected_version, as handlers do; "
            "writers are threads of one process sharing the engine pool. Replay reads a log of "
            f"{settings.size(REPLAY_EVENTS, BATCH):,} events into `RecordedEvent`s. Fresh schema / SQLite "
            "file per run."
        ),
    )
    for backend in settings.backends:
        for name, values in measure_appends(settings, backend).items():
            result.add(f"{backend}: {name}", "events/s", values)
        for name, values in measure_replay(settings, backend).items():
            result.add(f"{backend}: {name}", "events/s", values, log=settings.size(REPLAY_EVENTS, BATCH))
    result.notes.append(
        "SQLite runs in WAL mode with synchronous=NORMAL (shared/db.py); PostgreSQL with its server "
        "defaults (synchronous_commit on): a 1-event transaction pays a WAL flush there."
    )
    return result


def main() -> None:
    from benchmarks.__main__ import run_sections

    run_sections(["store"], stem="store")


if __name__ == "__main__":
    main()
