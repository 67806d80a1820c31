"""kill -9 of a consumer on the embedded setup (SQLite + the filesystem transport) loses
nothing: the message it had read but not committed is delivered again when a consumer
starts, and applied exactly once.

Real processes: the consumer is the machinery of `nocontact worker` (tests/infra/
consumer_process.py), the relay publishes from the SQLite store to the filesystem broker.
Kombu's own filesystem transport deletes a message file as it reads it: there, the killed
consumer's message was gone for good.
"""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

from sqlalchemy import select

from shared import bus, config, eventstore
from shared.db import engine_for, read
from shared.events import Metadata, NewEvent
from shared.relay import Relay
from shared.testing import wait_until
from tests.infra.conftest import Processes
from tests.infra.consumer_process import component, effects, metadata


def _queued(queue: str) -> list[str]:
    folder = config.var_dir() / "broker" / "queues"
    return [name for name in os.listdir(folder) if name.partition(".")[2] == f"{queue}.msg"]


def test_a_consumer_killed_mid_message_loses_nothing(sqlite_url: str, filesystem_broker_url: str,
                                                     processes: Processes, tmp_path: Path) -> None:
    probe = component(f"tests.crash{uuid.uuid4().hex[:6]}", 0)
    engine = engine_for(sqlite_url)
    metadata.create_all(engine)
    with bus.connect() as connection:
        bus.declare_topology(connection, [probe])
    with engine.begin() as conn:
        recorded = eventstore.append(conn, "scale-1", [NewEvent("scale.happened", {"sleep": 5}),
                                                        NewEvent("scale.happened", {}),
                                                        NewEvent("scale.happened", {})],
                                     metadata=Metadata(tenant_id="t1"))
    Relay(engine, name="relay:crash", categories=["scale"]).drain()
    queue = config.bus_prefix() + probe.queue_name
    assert len(_queued(queue)) == 3

    started = tmp_path / "started"
    started.mkdir()
    first = processes.start(sqlite_url, probe, "--started-dir", str(started))
    wait_until(lambda: (started / str(recorded[0].id)).exists(), 60, message="the first message in hand")
    first.send_signal(signal.SIGKILL)  # between reading the message and committing its effect
    assert first.wait(10) == -signal.SIGKILL
    with read(engine) as conn:
        assert conn.execute(select(effects)).all() == []
    assert len(_queued(queue)) == 2, "the message in hand is neither queued nor kept aside"

    # The next consumer puts the dead one's message back and applies all three, each once.
    # (Its handler sleeps again on the first: it is a redelivery of the same message.)
    (started / str(recorded[0].id)).unlink()
    processes.start(sqlite_url, probe, "--started-dir", str(started))

    def applied() -> list[str]:
        with read(engine) as conn:
            return [row.event_id for row in conn.execute(select(effects).order_by(effects.c.seq))]

    wait_until(lambda: len(applied()) == 3, 120, interval=0.2, message="all three messages applied")
    assert applied() == [str(event.id) for event in recorded], "lost, repeated or out of order"
    assert _queued(queue) == []
