"""While a message is handled, its ids are in the log context (and only then)."""

from __future__ import annotations

import structlog
from sqlalchemy import Connection

from shared import eventstore
from shared.consumer import Consumer
from shared.db import engine_for
from shared.envelope import encode
from shared.events import Metadata, NewEvent, RecordedEvent
from shared.topology import Component


def test_handler_logs_carry_correlation_causation_and_event_ids(sqlite_url: str) -> None:
    engine = engine_for(sqlite_url)
    with engine.begin() as conn:
        [event] = eventstore.append(conn, "probe-1", [NewEvent("probe.happened", {})],
                                    metadata=Metadata(tenant_id="t1", correlation_id="req-123",
                                                      causation_id="cause-9"))
    seen: list[dict] = []  # type: ignore[type-arg]

    def handle(_conn: Connection, _event: RecordedEvent) -> None:
        seen.append(dict(structlog.contextvars.get_contextvars()))

    consumer = Consumer(engine, Component("tests.logctx", ("probe.#",)), handle)
    assert consumer.handle_body(encode(event)) == "applied"
    assert seen[0] | {"correlation_id": "req-123", "causation_id": "cause-9", "event_id": str(event.id),
                      "event_type": "probe.happened", "stream_id": "probe-1", "tenant_id": "t1",
                      "component": "tests.logctx"} == seen[0]
    assert "correlation_id" not in structlog.contextvars.get_contextvars()
