"""`nocontact dead-letters list|show|requeue` and `nocontact bus setup` on real brokers.

A handler fails until "fixed"; its messages are dead-lettered (row + dead-letter queue).
After the fix, requeue republishes them to the component's queue (the right partition
when partitioned), takes them off the dead-letter queue, stamps requeued_at, and the
consumer applies them once.
"""

from __future__ import annotations

import json
import threading

import pytest
from click.testing import CliRunner
from sqlalchemy import Connection, func, select

from shared import bus, eventstore, topology
from shared.consumer import Consumer
from shared.db import engine_for, read
from shared.events import Metadata, NewEvent, RecordedEvent
from shared.relay import Relay
from shared.schema import dead_letters
from shared.testing import wait_until
from tests.infra.conftest import delete_partitioned
from tests.infra.consumer_process import component, effects, metadata


@pytest.mark.parametrize("partitions", [0, 3], ids=["one-queue", "partitioned"])
def test_dead_letters_are_listed_shown_and_requeued_to_be_applied(postgres_url: str, broker_url: str,
                                                                   partitions: int,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from services.cli import main

    probe = component("tests.letters", partitions)
    monkeypatch.setattr(topology, "COMPONENTS", (*topology.COMPONENTS, probe))
    monkeypatch.setenv("NOCONTACT_DATABASE_URL", postgres_url)
    engine = engine_for(postgres_url)
    metadata.create_all(engine)
    broken = threading.Event()
    broken.set()

    def handle(conn: Connection, event: RecordedEvent) -> None:
        if broken.is_set():
            raise RuntimeError("downstream schema mismatch")
        conn.execute(effects.insert().values(event_id=str(event.id), stream_id=event.stream_id,
                                             stream_version=event.stream_version, pid=0))

    try:
        with bus.connect() as connection:
            bus.declare_topology(connection, [probe])
        with engine.begin() as conn:  # one append per transaction: several streams in one call
            eventstore.append_streams(conn, [(stream, [NewEvent("scale.happened", {})], None)
                                             for stream in ("scale-a", "scale-b", "scale-c")],
                                      metadata=Metadata(tenant_id="t"))
        Relay(engine, name="relay:letters", categories=["scale"]).drain()
        consumer = Consumer(engine, probe, handle, max_attempts=2, retry_delay_s=0.01)
        stop = threading.Event()
        thread = threading.Thread(target=consumer.run, args=(stop,))
        thread.start()
        try:
            def count(table) -> int:  # type: ignore[no-untyped-def]
                with read(engine) as conn:
                    return conn.execute(select(func.count()).select_from(table)).scalar()

            wait_until(lambda: count(dead_letters) == 3, 30, message="3 dead letters")
            runner = CliRunner()
            listed = runner.invoke(main, ["dead-letters", "list"], catch_exceptions=False)
            assert listed.exit_code == 0
            assert listed.output.count("tests.letters") >= 3 and "downstream schema mismatch" in listed.output
            assert "dead-letter queue of tests.letters: 3" in listed.output
            with read(engine) as conn:
                first_id = conn.execute(select(func.min(dead_letters.c.id))).scalar()
            shown = json.loads(runner.invoke(main, ["dead-letters", "show", str(first_id)]).output)
            assert shown["body"]["type"] == "scale.happened" and shown["attempts"] == 2
            assert "RuntimeError: downstream schema mismatch" in shown["reason"]
            assert runner.invoke(main, ["dead-letters", "show", "999999"]).exit_code != 0

            broken.clear()  # the cause is fixed
            requeued = runner.invoke(main, ["dead-letters", "requeue", "--all", "--component", "tests.letters"],
                                     catch_exceptions=False)
            assert "3 dead letter(s) requeued" in requeued.output
            if partitions and broker_url.startswith("amqp"):
                assert ".p" in requeued.output  # to the stream's partition, not a queue nobody reads
            wait_until(lambda: count(effects) == 3, 30, message="the requeued messages applied")
            with read(engine) as conn:
                assert conn.execute(select(func.count()).select_from(dead_letters)
                                    .where(dead_letters.c.requeued_at.is_(None))).scalar() == 0
            after = runner.invoke(main, ["dead-letters", "list"], catch_exceptions=False).output
            assert "dead-letter queue of tests.letters: 0" in after
            again = runner.invoke(main, ["dead-letters", "requeue", "--all"], catch_exceptions=False)
            assert "0 dead letter(s) requeued" in again.output
        finally:
            stop.set()
            thread.join(30)
    finally:
        delete_partitioned(probe)


def test_bus_setup_declares_partitioned_queues(amqp_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from services.cli import main

    monkeypatch.setenv("NOCONTACT_CHECKIN_INBOX_PARTITIONS", "3")
    result = CliRunner().invoke(main, ["bus", "setup"], catch_exceptions=False)
    assert "declared checkin.inbox: 3 single-active-consumer partitions" in result.output
    assert "declared notification.inbox: one queue" in result.output
    inbox = topology.component("checkin.inbox")
    try:
        with bus.connect() as connection:
            for partition in range(3):
                connection.channel().queue_declare(bus.queue_for_stream(inbox, connection, None).rsplit(".p", 1)[0]
                                                   + f".p{partition}", passive=True)
    finally:
        delete_partitioned(topology.Component(inbox.name, inbox.routing_keys, partitions=3))
