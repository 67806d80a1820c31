"""Our store against the `eventsourcing` library's PostgreSQL recorder, in the same run.

The reference is `PostgresApplicationRecorder` as `PostgresFactory` builds it from its
standard settings (POSTGRES_* environment: pool of 5, LOCK TABLE ... IN EXCLUSIVE MODE
before each insert so readers never skip, no database functions), called directly
through `insert_events` and `select_notifications`: a like-for-like of the recorders,
without either side's aggregate or application layer.

Fairness, so the ratio means something:
- the same events (the check-in payload plus tenant/correlation/actor metadata) and the
  same transactions; theirs encodes each event to JSON bytes inside the timing, since its
  transcoder would, as ours encodes `data` for the JSONB column inside the timing;
- ours checks `expected_version` inside its insert statement (BEGIN, the append, COMMIT:
  three round trips); theirs relies on the primary key (originator_id, originator_version)
  alone, BEGIN, LOCK TABLE, NOTIFY and INSERT pipelined, then COMMIT (two);
- our table carries 15 columns, 4 unique/secondary indexes besides the primary key, and
  append-only triggers; theirs 5 columns and 2 indexes;
- their appends serialise on LOCK TABLE ... IN EXCLUSIVE MODE held through COMMIT; ours
  take the store's append lock shared and commit together (group commit), which is what
  the 4-writer figures compare;
- ours and theirs alternate within each run on fresh schemas, so drifting machine load
  hits both alike.
The read-model rebuild folds the whole log into "events per stream": ours through
`read_all` pages in one transaction (as `shared.projection.rebuild` reads), theirs through
`select_notifications` pages, decoding each state from JSON as its mapper would. Both
tables are ANALYZEd once filled, as autovacuum would have done to a store in use: without
statistics, the first read of a freshly filled table may be planned as a sort.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, make_url

from benchmarks import METADATA, Settings, fresh_store, postgres_database_url, schema_of, timed
from benchmarks.report import Comparison, Section
from benchmarks.store import (
    BATCH,
    AppendJob,
    analyze,
    append_workloads,
    batch_jobs,
    our_writer,
    run_workload,
    seed,
)
from shared import testing
from shared.db import engine_for, read
from shared.eventstore import START, read_feed

REBUILD_EVENTS = 50_000
PAGE = 5_000


@contextmanager
def their_recorder() -> Iterator[Any]:
    """A `PostgresApplicationRecorder` on a fresh schema, from the library's own factory."""
    with testing.fresh_postgres_schema(postgres_database_url()) as url:
        with recorder_at(url) as recorder:
            yield recorder


@contextmanager
def recorder_at(url: str) -> Iterator[Any]:
    """Their recorder on the schema of `url`, its table created."""
    factory = _their_factory(url, create_table=True)
    try:
        yield factory.application_recorder()
    finally:
        factory.close()


def _their_factory(url: str, *, create_table: bool) -> Any:
    from eventsourcing.postgres import PostgresFactory
    from eventsourcing.utils import Environment

    parsed = make_url(url)
    return PostgresFactory(Environment(
        "bench",
        {
            "POSTGRES_DBNAME": parsed.database or "",
            "POSTGRES_HOST": parsed.host or "127.0.0.1",
            "POSTGRES_PORT": str(parsed.port or 5432),
            "POSTGRES_USER": parsed.username or "postgres",
            "POSTGRES_PASSWORD": parsed.password or "",
            "POSTGRES_SCHEMA": schema_of(url),
            "CREATE_TABLE": "y" if create_table else "n",
        },
    ))


def their_process_writer(url: str) -> Callable[[AppendJob], None]:
    """For a forked writer: a recorder of its own (the parent's pool is not shared), on the
    table the parent created (the writers must not all run the DDL at once). The factory
    lives as long as the writer process."""
    factory = _their_factory(url, create_table=False)
    write = their_writer(factory.application_recorder())

    def write_keeping_factory(job: AppendJob, _factory: Any = factory) -> None:
        write(job)

    return write_keeping_factory


def their_writer(recorder: Any) -> Callable[[AppendJob], None]:
    from eventsourcing.persistence import StoredEvent

    def write(job: AppendJob) -> None:
        originator_id = uuid.UUID(job.stream_id.split("-", 1)[1])
        stored = [
            StoredEvent(
                originator_id=originator_id,
                originator_version=job.expected_version + offset,
                topic=event.type,
                state=json.dumps(
                    {
                        "id": str(event.id),
                        "data": event.data,
                        "tenant_id": METADATA.tenant_id,
                        "correlation_id": METADATA.correlation_id,
                        "actor": METADATA.actor,
                        "schema_version": event.schema_version,
                    },
                    separators=(",", ":"),
                ).encode(),
            )
            for offset, event in enumerate(job.events, start=1)
        ]
        recorder.insert_events(stored)

    return write


def analyze_theirs(recorder: Any) -> None:
    with recorder.datastore.get_connection() as conn:
        conn.execute(f'ANALYZE "{recorder.datastore.schema}"."{recorder.events_table_name}"')


def our_rebuild(engine: Engine) -> int:
    """As `shared.projection.rebuild` reads (it holds the append lock: nothing in flight,
    so the whole log, not only its settled part)."""
    per_stream: Counter[str] = Counter()
    cursor = START
    with read(engine) as conn:
        while True:
            batch, cursor = read_feed(conn, cursor, limit=PAGE, settled=False)
            for event in batch:
                per_stream[event.stream_id] += 1
            if len(batch) < PAGE:
                break
    return sum(per_stream.values())


def their_rebuild(recorder: Any) -> int:
    per_stream: Counter[Any] = Counter()
    position = 0
    while batch := recorder.select_notifications(position, PAGE, inclusive_of_start=False):
        for notification in batch:
            json.loads(notification.state)
            per_stream[notification.originator_id] += 1
        position = batch[-1].id
    return sum(per_stream.values())


def section(settings: Settings) -> Section:
    result = Section(
        key="peer",
        title="2. Against the `eventsourcing` library (PostgreSQL recorder)",
        description=(
            "Same events, same transactions, same PostgreSQL, alternating ours/theirs within each run, "
            "fresh schema each. Theirs: `PostgresApplicationRecorder.insert_events` / "
            "`select_notifications` with the factory's standard settings."
        ),
    )
    rebuild_size = settings.size(REBUILD_EVENTS, BATCH)
    samples: dict[str, list[float]] = {}
    for _ in range(settings.runs):
        for workload in append_workloads(settings):
            plans = workload.plan()
            name = workload.name
            with fresh_store("postgres") as url:
                rate = run_workload(workload, plans, lambda url=url: our_writer(engine_for(url)))
                samples.setdefault(f"ours: {name}", []).append(rate)
            with testing.fresh_postgres_schema(postgres_database_url()) as url, recorder_at(url) as recorder:
                # Processes make recorders of their own on the same schema; threads share this one.
                if workload.processes:
                    rate = run_workload(workload, plans, lambda url=url: their_process_writer(url))
                else:
                    rate = run_workload(workload, plans, lambda recorder=recorder: their_writer(recorder))
                samples.setdefault(f"theirs: {name}", []).append(rate)
        with fresh_store("postgres") as url:
            engine = engine_for(url)
            seed(engine, rebuild_size)
            analyze(engine)
            samples.setdefault("ours: rebuild events-per-stream", []).append(timed(lambda e=engine: our_rebuild(e)))
        with their_recorder() as recorder:
            write = their_writer(recorder)
            for jobs in batch_jobs(rebuild_size, 1):
                for job in jobs:
                    write(job)
            analyze_theirs(recorder)
            samples.setdefault("theirs: rebuild events-per-stream", []).append(
                timed(lambda r=recorder: their_rebuild(r))
            )
    for name, values in samples.items():
        params = {"log": rebuild_size} if "rebuild" in name else {}
        result.add(name, "events/s", values, **params)
    # The aims of issue 14: >= 1x at 1 writer, >= 3x at 4 writers (1 event/txn), rebuild >= 1x.
    targets = {"append 1 event/txn, 1 writer": 1.0, "append 1 event/txn, 4 writers (threads)": 3.0,
               "append 1 event/txn, 4 writers (processes)": 3.0}
    for workload in append_workloads(settings):
        name = workload.name
        result.comparisons.append(Comparison(name, f"ours: {name}", f"theirs: {name}", targets.get(name)))
    result.comparisons.append(
        Comparison("rebuild a read model from the whole log", "ours: rebuild events-per-stream",
                   "theirs: rebuild events-per-stream", 1.0)
    )
    return result
