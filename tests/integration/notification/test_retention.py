"""NOCONTACT_RETENTION_DAYS: messages delivered everywhere are deleted with their attempt log
once older than that; anything still pending, failed or skipped somewhere is kept."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from services.notification.delivery import queue
from services.notification.delivery import worker as delivery_worker
from services.notification.delivery.worker import DeliveryWorker
from services.notification.domain.messages import message_id
from services.notification.tables import attempts, deliveries, messages
from shared.clock import utcnow
from shared.db import engine_for, read
from shared.testing import wait_until
from tests.integration.notification.conftest import commitment_data
from tests.support.receiver import Receiver, Reply


def _count(engine: Any, table: Any, message_id: str | None = None) -> int:
    query = select(func.count()).select_from(table)
    if message_id is not None:
        query = query.where(table.c.message_id == message_id if table is not messages else table.c.id == message_id)
    with read(engine) as conn:
        return int(conn.execute(query).scalar() or 0)


def test_delivered_messages_past_the_retention_are_deleted_with_their_attempts(
    postgres_url: str, amqp_url: str, receiver: Receiver, start_notification: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The delivery worker's housekeeping runs every 0.2 s here, with a retention of one second.
    monkeypatch.setattr(delivery_worker, "HOUSEKEEPING_INTERVAL", timedelta(seconds=0.2))
    harness = start_notification(postgres_url, env={"NOCONTACT_RETENTION_DAYS": str(1 / 86400),
                                                    "NOCONTACT_WEBHOOK_RETRY_SCHEDULE": "0,3600"})
    tenant = harness.tenant()
    receiver.script("/down", Reply(500, b"down"))
    harness.create_endpoint(tenant, receiver.url("/up"))
    harness.create_endpoint(tenant, receiver.url("/down"), ["checkin.missed"])
    delivered = harness.emit(tenant, "commitment.created", commitment_data())
    retried = harness.emit(tenant, "checkin.missed", {**commitment_data(), "date": "2026-01-02"})
    engine = engine_for(postgres_url)
    # Both were sent to the first endpoint; the second also failed at the other one.
    wait_until(lambda: len(receiver.at("/up")) == 2 and receiver.at("/down"), 15, message="the attempts")
    wait_until(lambda: _count(engine, messages, message_id(delivered.id)) == 0, 15,
               message="the delivered message to go")
    assert _count(engine, deliveries, message_id(delivered.id)) == 0
    assert _count(engine, attempts, message_id(delivered.id)) == 0
    # The other one waits for its retry at the failing endpoint: kept, with its whole log.
    assert _count(engine, messages, message_id(retried.id)) == 1
    assert _count(engine, deliveries, message_id(retried.id)) == 2
    assert _count(engine, attempts, message_id(retried.id)) == 2


def test_forget_delivered_keeps_what_is_younger_than_the_retention(
    postgres_url: str, amqp_url: str, receiver: Receiver, start_notification: Any
) -> None:
    harness = start_notification(postgres_url)
    tenant = harness.tenant()
    endpoint = harness.create_endpoint(tenant, receiver.url("/up"))
    for _ in range(3):
        harness.emit(tenant, "commitment.created", commitment_data())
    harness.wait_attempts(tenant, endpoint["id"], 3)
    engine = engine_for(postgres_url)
    worker = DeliveryWorker(engine, retention=timedelta(days=90))
    assert worker.housekeep() == 0 and _count(engine, messages) == 3
    assert queue.forget_delivered(engine, before=utcnow() + timedelta(seconds=1), batch_size=2) == 3
    assert _count(engine, messages) == _count(engine, deliveries) == _count(engine, attempts) == 0
