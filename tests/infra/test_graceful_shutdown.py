"""SIGTERM to a worker process: the message in hand is finished and acked, then exit 0.

The process is the real machinery of `nocontact worker` (run_parts' signal handling and
the consumer base); the handler takes 1.5 s per message, the signal arrives during the
first one.
"""

from __future__ import annotations

import signal
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from shared import bus, eventstore
from shared.db import engine_for, read
from shared.events import Metadata, NewEvent
from shared.relay import Relay
from shared.testing import wait_until
from tests.infra.conftest import Processes, delete_partitioned
from tests.infra.consumer_process import component, effects, metadata


@pytest.mark.parametrize("partitions", [0, 2], ids=["one-queue", "partitioned"])
def test_sigterm_finishes_the_message_in_hand_and_exits_0(postgres_url: str, broker_url: str, partitions: int,
                                                          processes: Processes, tmp_path: Path) -> None:
    probe = component(f"tests.shutdown{uuid.uuid4().hex[:6]}", partitions)
    engine = engine_for(postgres_url)
    metadata.create_all(engine)
    try:
        with bus.connect() as connection:
            bus.declare_topology(connection, [probe])
        with engine.begin() as conn:
            recorded = eventstore.append(conn, "scale-1", [NewEvent("scale.happened", {"sleep": 1.5})
                                                            for _ in range(3)], metadata=Metadata(tenant_id="t1"))
        Relay(engine, name="relay:shutdown", categories=["scale"]).drain()
        started = tmp_path / "started"
        started.mkdir()
        worker = processes.start(postgres_url, probe, "--started-dir", str(started))
        wait_until(lambda: (started / str(recorded[0].id)).exists(), 30, message="the first message in hand")
        worker.send_signal(signal.SIGTERM)
        began = time.monotonic()
        assert worker.wait(30) == 0
        with read(engine) as conn:
            applied = [row.event_id for row in conn.execute(select(effects))]
        assert applied == [str(recorded[0].id)], "the message in hand was not finished (or more were taken)"
        assert time.monotonic() - began < 20
        if broker_url.startswith("amqp"):
            # Acked: only the two untouched messages are left for the next worker.
            with bus.connect() as connection:
                queue = bus.queue_for_stream(probe, connection, "scale-1")
                _, ready, _ = connection.channel().queue_declare(queue, passive=True)
            assert ready == 2
    finally:
        delete_partitioned(probe)
