"""A running check-in service (real HTTP, its worker parts) fed by the commitment service's
events over the bus, as in production: a relay of the ``tenant`` and ``commitment``
categories stands in for the commitment service's own relay."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import Engine, select

from services.checkin import tables
from shared.db import engine_for, read
from shared.relay import Relay
from shared.testing import wait_until
from tests.integration.checkin.support import FOREIGN_CATEGORIES, Tenant, new_commitment, new_tenant


@dataclass
class CheckinStack:
    base_url: str
    engine: Engine

    def known(self, commitment_id: str) -> bool:
        with read(self.engine) as conn:
            table = tables.commitments
            return conn.execute(select(table.c.commitment_id).where(table.c.commitment_id == commitment_id)).first() \
                is not None

    def tenant(self) -> Tenant:
        tenant = new_tenant(self.engine)

        def key_known() -> bool:
            with read(self.engine) as conn:
                table = tables.CREDENTIALS.api_keys
                return conn.execute(select(table.c.key_id).where(table.c.key_id == tenant.key_id)).first() is not None

        wait_until(key_known, timeout=15, message="the API key to reach the check-in inbox")
        return tenant

    def commitment(self, tenant: Tenant, **kwargs) -> str:  # type: ignore[no-untyped-def]
        commitment_id, _ = new_commitment(self.engine, tenant, **kwargs)
        wait_until(lambda: self.known(commitment_id), timeout=15, message="commitment.created to reach the inbox")
        return commitment_id


def _start(database_url: str, stack_factory) -> Iterator[CheckinStack]:  # type: ignore[no-untyped-def]
    stack = stack_factory(database_url, ["checkin"])
    engine = engine_for(database_url)
    stop = threading.Event()
    foreign = Relay(engine, name="relay:test-commitment", categories=FOREIGN_CATEGORIES)
    thread = threading.Thread(target=foreign.run, args=(stop,), daemon=True)
    thread.start()
    yield CheckinStack(stack.url("checkin"), engine)
    stop.set()
    thread.join(timeout=10)


@pytest.fixture
def pg_stack(postgres_url: str, amqp_url: str, stack_factory) -> Iterator[CheckinStack]:  # type: ignore[no-untyped-def]
    """PostgreSQL + RabbitMQ."""
    yield from _start(postgres_url, stack_factory)


@pytest.fixture
def embedded_stack(sqlite_url: str, filesystem_broker_url: str, stack_factory) -> Iterator[CheckinStack]:  # type: ignore[no-untyped-def]
    """SQLite + the filesystem broker: the server-less default."""
    yield from _start(sqlite_url, stack_factory)
