"""A consumer worker process for the scale-out and shutdown tests.

Runs the real machinery a `nocontact worker` process runs (shared.worker.run_parts with
its SIGTERM handling, shared.consumer.Consumer) for a test component whose handler
records, in order, which process applied which event. Environment (database, broker,
bus prefix, metrics port) is inherited from the test.

    python -m tests.infra.consumer_process DATABASE_URL COMPONENT PARTITIONS [--consume 0,1]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from sqlalchemy import Column, Connection, Integer, MetaData, String, Table, insert

from shared.consumer import Consumer
from shared.db import engine_for
from shared.events import RecordedEvent
from shared.topology import Component, parse_partitions
from shared.worker import run_parts

metadata = MetaData()
# `seq` is the order of application across both processes (the database assigns it).
effects = Table(
    "scale_effects", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("stream_id", String(200), nullable=False),
    Column("stream_version", Integer, nullable=False),
    Column("pid", Integer, nullable=False),
)


def component(name: str, partitions: int) -> Component:
    return Component(name, ("scale.#",), partitions=partitions or None)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("database_url")
    parser.add_argument("component")
    parser.add_argument("partitions", type=int)
    parser.add_argument("--consume", default="")
    parser.add_argument("--started-dir", default="", help="touch <dir>/<event id> when a handler starts")
    args = parser.parse_args()

    def handle(conn: Connection, event: RecordedEvent) -> None:
        if args.started_dir:
            Path(args.started_dir, str(event.id)).touch()
        time.sleep(float(event.data.get("sleep", 0)))
        conn.execute(insert(effects).values(event_id=str(event.id), stream_id=event.stream_id,
                                            stream_version=event.stream_version, pid=os.getpid()))

    chosen = parse_partitions(args.consume, args.partitions) if args.consume else None
    consumer = Consumer(engine_for(args.database_url), component(args.component, args.partitions), handle,
                        partitions=chosen, prefetch=10)
    run_parts({"consumer": consumer.run})


if __name__ == "__main__":
    main()
