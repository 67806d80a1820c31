"""A member's erasure across the services: the protocol each of them follows.

1. The commitment service records ``member.erasure_requested`` {``member_id``,
   ``services``} on the member's stream (``DELETE /v1/members/{id}``), destroys the
   member's key in the shared keyring (`shared.keyring`: every personal value sealed for
   the member, wherever it was copied, now reads as the tombstone) and scrubs its own read
   models, all in one transaction. Its own part is done.
2. Every other service consumes ``member.erasure_requested`` (a component of its own,
   `erasure_consumer`), scrubs its copies (read models, queues, dead letters, feeds) and,
   in the same transaction, appends ``member.erasure_completed`` {``member_id``,
   ``service``} to its own stream `completion_stream`, whose category is the service's
   name, so the service's relay publishes it.
3. The commitment service's inbox folds the reports into the erasure's status
   (``GET /v1/members/{id}/erasure``: the services still pending show "erasing") and,
   once every service of ``services`` reported, records ``member.erased``.

None of these events carries a personal value; partners receive the first and the last
as webhooks. A service joins by implementing ``scrub(conn, tenant_id, member_id, now)``
(and ``export_member(engine, tenant_id, member_id, now)``, the document of
`export_document`, for ``GET /v1/members/{id}/export`` and ``nocontact members export``),
running `erasure_consumer` with its component, and publishing its category.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, Engine

from shared import keyring
from shared.clock import Clock, utcnow
from shared.commands import Context, Pipeline, UnitOfWork
from shared.consumer import Consumer
from shared.events import NewEvent, RecordedEvent
from shared.eventstore import read_stream
from shared.topology import Component

REQUESTED = "member.erasure_requested"
COMPLETED = "member.erasure_completed"
ERASED = "member.erased"
EVENT_TYPES = (REQUESTED, COMPLETED, ERASED)

#: Every service that holds members' data, hence must report its part.
SERVICES = ("commitment", "checkin", "notification")

#: Removes a member's personal values from a service's own copies, in the caller's
#: transaction (after the report's append).
Scrub = Callable[[Connection, str, str, datetime], None]


def completion_stream(service: str, tenant_id: str, member_id: str) -> str:
    """Where `service` reports its part: a stream of its own category, which its relay publishes."""
    return f"{service}-erasure:{tenant_id}:{member_id}"


def completed(service: str, member_id: str) -> NewEvent:
    return NewEvent(COMPLETED, {"member_id": member_id, "service": service})


def export_document(member_id: str, service: str, exported_at: datetime, data: dict[str, Any]) -> dict[str, Any]:
    """A service's part of a member's export (``GET /v1/members/{id}/export``), plain JSON
    (instants and dates as ISO 8601 strings)."""

    def default(value: Any) -> str:
        if isinstance(value, datetime | date):
            return value.isoformat()
        return str(value)

    document = {"member_id": member_id, "service": service, "exported_at": exported_at, "data": data}
    return json.loads(json.dumps(document, default=default))  # type: ignore[no-any-return]


def apply_erasure(service: str, scrub: Scrub, clock: Clock = utcnow) -> Callable[[Connection, RecordedEvent], None]:
    """The handler of ``member.erasure_requested`` for `service`: report first (the
    transaction's first write is its append), then scrub, in the consumer's transaction."""

    def handle(conn: Connection, event: RecordedEvent) -> None:
        if event.type != REQUESTED or event.tenant_id is None:
            return
        tenant_id, member_id = event.tenant_id, str(event.data["member_id"])

        def command(uow: UnitOfWork) -> None:
            stream = completion_stream(service, tenant_id, member_id)
            uow.record(stream, [completed(service, member_id)], expected_version=None)
            uow.commit()
            scrub(uow.conn, tenant_id, member_id, uow.now)

        Pipeline(clock=clock).within(conn, Context.caused_by(event, f"{service}:erasure"), command)

    return handle


def erasure_consumer(engine: Engine, component: Component, service: str, scrub: Scrub, **options: object) -> Consumer:
    """The consumer of `component` (bound to ``member.erasure_requested``) for `service`:
    one message per transaction, since each appends."""
    return Consumer(engine, component, apply_erasure(service, scrub), **options)  # type: ignore[arg-type]


def stream_history(conn: Connection, opener: keyring.Opener, stream_id: str) -> list[dict[str, Any]]:
    """A stream's events for a member's export, personal values opened (null once erased)."""
    return [
        {
            "id": str(event.id),
            "type": event.type,
            "stream_version": event.stream_version,
            "occurred_at": event.occurred_at,
            "actor": event.actor,
            "data": opener.open_all(event.data, event_id=event.id),
        }
        for event in read_stream(conn, stream_id)
    ]
