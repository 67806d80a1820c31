"""The commitment service's inbox: the other services' erasure reports.

Each ``member.erasure_completed`` is folded into the erasure's status; the report that
completes it also records ``member.erased``, which partners receive. That event waits
until no process can still hold the member's key in its cache (the key was destroyed when
the erasure was requested; caches keep keys for at most `shared.keyring.cache_ttl_s`), so
"erased" is true everywhere once it is said.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from sqlalchemy import Connection, Engine

from shared import erasure, keyring
from shared.clock import Clock, utcnow
from shared.commands import Context, UnitOfWork
from shared.consumer import Consumer
from shared.events import RecordedEvent
from shared.topology import COMMITMENT_INBOX

from ..domain import members as domain
from ..handlers import PIPELINE
from . import queries
from .projections import apply_member_event

log = logging.getLogger(__name__)

ACTOR = "commitment:erasure"


def apply_report(conn: Connection, event: RecordedEvent, clock: Clock = utcnow) -> None:
    """Fold one service's report; record ``member.erased`` when it was the last one."""
    if event.type != erasure.COMPLETED or event.tenant_id is None:
        return
    tenant_id, member_id = event.tenant_id, str(event.data["member_id"])
    current = queries.erasure(conn, tenant_id, member_id)
    if current is None:
        log.warning("a report of an erasure this service never requested; ignored")
        return
    after = current.reported(str(event.data["service"]), event.occurred_at)
    if domain.record_erased(after, now=clock()):
        settled = current.requested_at + timedelta(seconds=keyring.cache_ttl_s())
        wait = (settled - clock()).total_seconds()
        if wait > 0:  # at most the cache TTL (5 s), and only when the reports came fast
            time.sleep(wait)

        def command(uow: UnitOfWork) -> None:
            uow.record(domain.stream_id(tenant_id, member_id), domain.record_erased(after, now=uow.now),
                       expected_version=None)

        PIPELINE.within(conn, Context.caused_by(event, ACTOR), command, now=clock())
    apply_member_event(conn, event)  # after the append: it must be the transaction's first write


def inbox(engine: Engine, **options: object) -> Consumer:
    return Consumer(engine, COMMITMENT_INBOX, apply_report, **options)  # type: ignore[arg-type]
