"""Urgent appends wake the relay (PostgreSQL, RabbitMQ): an SOS is published at once, not at
the relay's next poll, also when an older transaction held it back for a while."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text

from shared import eventstore
from shared.db import engine_for
from shared.events import Metadata, NewEvent
from shared.relay import Relay
from shared.testing import wait_until
from tests.integration.commitment.conftest import Probe, probe_factory

__all__ = ["probe_factory"]

#: Far longer than any wait below: whatever goes out before it was woken.
POLL_S = 60.0

# Alone (make test's exclusive part): with a long poll interval, the wake-ups are all that
# carry an SOS in time, and in a parallel run another test's work on the same server once
# kept one from going out within the bound.
pytestmark = pytest.mark.exclusive


def _append(engine: Engine, event_type: str) -> str:
    event_id = uuid.uuid4()
    with engine.begin() as conn:
        eventstore.append(conn, f"checkin-{uuid.uuid4()}", [NewEvent(event_type, {"n": 1}, id=event_id)],
                          metadata=Metadata(tenant_id="t1"))
    return str(event_id)


def _listening(engine: Engine, relay: Relay) -> bool:
    """Whether the relay leads and its LISTEN has taken effect: the last statement of its
    leadership connection (autocommit) is the LISTEN, finished."""
    leadership = relay._leadership
    if leadership is None:
        return False
    pid = leadership.connection.driver_connection.info.backend_pid
    with engine.connect() as conn:
        row = conn.execute(text("SELECT state, query FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}).first()
    return row is not None and row.state == "idle" and row.query.startswith("LISTEN")


@pytest.fixture
def start_relay(postgres_url: str) -> Iterator[Callable[..., None]]:
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def start(categories: list[str]) -> None:
        """A relay of `categories`, returned once it listens for urgent appends (its first
        read may have found nothing settled: it would then sleep its whole poll interval,
        and only a wake-up moves it)."""
        engine = engine_for(postgres_url)
        relay = Relay(engine, name=f"wake-{categories[0]}", categories=categories, poll_interval_s=POLL_S)
        threads.append(threading.Thread(target=relay.run, args=(stop,), daemon=True))
        threads[-1].start()
        wait_until(lambda: _listening(engine, relay), 30, message="the relay to listen")

    yield start
    stop.set()
    for thread in threads:
        thread.join(timeout=10)


def _published(probe: Probe, event_id: str) -> float:
    """When (monotonic) the probe saw the event on the bus."""
    probe.wait_for(lambda body: body["id"] == event_id, timeout=POLL_S / 4)
    return time.monotonic()


def test_an_sos_wakes_its_relay(postgres_url: str, amqp_url: str, probe_factory: Any,
                                start_relay: Callable[..., None]) -> None:
    engine = engine_for(postgres_url)
    probe = probe_factory(amqp_url)
    first = _append(engine, "checkin.recorded")
    start_relay(["checkin"])

    for n in range(3):
        started = time.monotonic()
        sos = _append(engine, "member.sos")
        assert _published(probe, sos) - started < POLL_S / 4
        if n == 0:  # the event before it went out with it, or before it
            _published(probe, first)


def test_an_sos_held_back_by_an_older_transaction_goes_out_soon_after_it_ends(
        postgres_url: str, amqp_url: str, probe_factory: Any, start_relay: Callable[..., None]) -> None:
    engine = engine_for(postgres_url)
    probe = probe_factory(amqp_url)
    start_relay(["checkin"])

    with engine.begin() as older:
        # An append that has not committed: its transaction id is below the SOS's, so the
        # SOS is not readable until it ends (shared.eventstore).
        eventstore.append(older, f"checkin-{uuid.uuid4()}", [NewEvent("checkin.recorded", {"n": 2})],
                          metadata=Metadata(tenant_id="t1"))
        sos = _append(engine, "member.sos")
        time.sleep(0.3)  # the relay, woken, finds nothing readable for this long
        ended = time.monotonic()
    # The relay looks again at doubling intervals from 2 ms, at most a second apart (the
    # schedule: tests/unit/shared/test_relay_schedule.py), never only at its poll interval:
    # out far sooner than POLL_S even on a loaded machine.
    assert _published(probe, sos) - ended < POLL_S / 4
