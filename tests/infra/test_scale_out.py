"""Consumers scale out as competing processes without breaking per-stream order.

Two real consumer processes of one partitioned component against real RabbitMQ: every
event is applied exactly once (each is even published twice), each stream's events are
applied in stream-version order, and the work is shared. Then failover: both processes
attach to every partition (single active consumer), the active one is killed mid-stream,
and the standby finishes in order with nothing lost or applied twice.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
from collections import Counter, defaultdict

import httpx
import pytest
from sqlalchemy import func, select

from shared import bus, config, eventstore
from shared.db import engine_for, read
from shared.events import Metadata, NewEvent
from shared.relay import Relay
from shared.schema import dead_letters
from shared.testing import wait_until
from tests.infra.conftest import Processes, delete_partitioned, free_port
from tests.infra.consumer_process import component, effects, metadata

SCALE = component("tests.scale", 4)
STREAMS, PER_STREAM = 24, 10


@pytest.fixture
def store(postgres_url: str, amqp_url: str):  # type: ignore[no-untyped-def]
    engine = engine_for(postgres_url)
    metadata.create_all(engine)
    with bus.connect() as connection:
        bus.declare_topology(connection, [SCALE])
    yield engine
    delete_partitioned(SCALE)


def _append_and_publish_twice(engine, sleep: float = 0.0) -> None:  # type: ignore[no-untyped-def]
    # Interleaved across streams, so that every partition holds many streams' events mixed.
    for version in range(PER_STREAM):
        for stream in range(STREAMS):
            with engine.begin() as conn:
                eventstore.append(conn, f"scale-{stream}", [NewEvent("scale.happened", {"v": version,
                                                                                        "sleep": sleep})],
                                  metadata=Metadata(tenant_id="t1"))
    relay = Relay(engine, name="relay:scale", categories=["scale"], batch_size=100)
    relay.drain()
    # At-least-once made visible: the whole log goes out a second time.
    with engine.begin() as conn:
        relay.checkpoint.set(conn, 0)
    relay.drain()


def _effects(engine) -> list[dict]:  # type: ignore[no-untyped-def,type-arg]
    with read(engine) as conn:
        return [dict(r) for r in conn.execute(select(effects).order_by(effects.c.seq)).mappings()]


def _assert_exactly_once_in_stream_order(engine) -> list[dict]:  # type: ignore[no-untyped-def,type-arg]
    rows = _effects(engine)
    assert len(rows) == STREAMS * PER_STREAM
    assert len({r["event_id"] for r in rows}) == len(rows)
    by_stream: dict[str, list[int]] = defaultdict(list)
    for row in rows:
        by_stream[row["stream_id"]].append(row["stream_version"])
    for stream, versions in by_stream.items():
        assert versions == list(range(1, PER_STREAM + 1)), f"{stream} applied out of order: {versions}"
    with read(engine) as conn:
        assert conn.execute(select(func.count()).select_from(dead_letters)).scalar() == 0
    return rows


def _handled(port: int) -> dict[str, float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    found = re.findall(r'nocontact_consumer_messages_total\{component="tests.scale",outcome="(\w+)"\} ([\d.e+]+)',
                       text)
    return {outcome: float(value) for outcome, value in found}


def test_two_processes_share_partitions_in_stream_order_exactly_once(store, postgres_url: str,
                                                                     processes: Processes) -> None:
    ports = [free_port(), free_port()]
    first = processes.start(postgres_url, SCALE, "--consume", "0,1",
                            env={"NOCONTACT_WORKER_METRICS_PORT": str(ports[0])})
    second = processes.start(postgres_url, SCALE, "--consume", "2-3",
                             env={"NOCONTACT_WORKER_METRICS_PORT": str(ports[1])})
    _append_and_publish_twice(store)

    def all_handled() -> bool:
        try:
            counts = [_handled(port) for port in ports]
        except httpx.HTTPError:
            return False
        return sum(c.get("applied", 0) + c.get("duplicate", 0) for c in counts) == 2 * STREAMS * PER_STREAM

    # Scraped from each worker's own metrics port: what Prometheus would see.
    wait_until(all_handled, 90, interval=0.2, message="every message handled (metrics of both workers)")
    rows = _assert_exactly_once_in_stream_order(store)
    assert {r["pid"] for r in rows} == {first.pid, second.pid}, "the work was not shared"
    for process in (first, second):
        process.send_signal(signal.SIGTERM)
    assert [first.wait(30), second.wait(30)] == [0, 0]


def test_standby_takes_over_a_killed_consumer_in_order(store, postgres_url: str, processes: Processes) -> None:
    active = processes.start(postgres_url, SCALE)
    wait_until(lambda: _consumers_on_every_partition(1), 30, interval=0.1, message="first consumer attached")
    standby = processes.start(postgres_url, SCALE)
    wait_until(lambda: _consumers_on_every_partition(2), 30, interval=0.1, message="standby attached")
    _append_and_publish_twice(store, sleep=0.01)

    wait_until(lambda: len(_effects(store)) >= 40, 60, message="the active consumer to be under way")
    active.send_signal(signal.SIGKILL)  # no chance to finish or ack: its unacked messages go back
    active.wait(10)
    wait_until(lambda: len(_effects(store)) == STREAMS * PER_STREAM, 90, interval=0.2,
               message="the standby to finish the work")
    rows = _assert_exactly_once_in_stream_order(store)
    pids = [r["pid"] for r in rows]
    assert pids[0] == active.pid and pids[-1] == standby.pid
    # One hand-over, not interleaving: single active consumer per partition queue.
    assert set(pids[pids.index(standby.pid):]) == {standby.pid}


def _consumers_on_every_partition(expected: int) -> bool:
    # queue.declare-ok counts only the active consumer of a single-active-consumer queue;
    # the broker's own listing shows the waiting ones too.
    names = {config.bus_prefix() + SCALE.partition_queue_name(p) for p in range(SCALE.partitions or 0)}
    listing = subprocess.run(["rabbitmqctl", "list_consumers", "-q", "queue_name", "--formatter", "json"],
                             check=True, capture_output=True, text=True, timeout=60).stdout
    attached = Counter(row["queue_name"] for row in json.loads(listing) if row["queue_name"] in names)
    return all(attached[name] == expected for name in names)
