"""The notification inbox: bus events -> credentials, coach assignments, webhooks, feed.

Everything an event causes happens in the consumer's one transaction, together with the
processed_events row (shared.consumer): a redelivered event changes nothing, and a crash
leaves either all of it or none.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, insert, select, update

from services.notification import config
from services.notification.delivery import queue
from services.notification.domain import messages as msgs
from services.notification.tables import CREDENTIALS, coach_assignments, coaches, feed_items
from shared.auth import credentials_projection
from shared.consumer import Consumer, Handler
from shared.envelope import versions
from shared.events import RecordedEvent
from shared.topology import CREDENTIAL_EVENTS, NOTIFICATION_INBOX

CREDENTIALS_PROJECTION = credentials_projection("notification", CREDENTIALS)

# What this reader understands (newer schema versions are parked, not guessed at).
for _type in (*msgs.WEBHOOK_EVENT_TYPES, "coach.unassigned", *CREDENTIAL_EVENTS):
    versions.register(_type, 1)


def _fold_assignment(conn: Connection, event: RecordedEvent) -> None:
    data = event.data
    tenant, commitment_id = event.tenant_id, str(data["commitment_id"])
    key = (coach_assignments.c.tenant_id == tenant) & (coach_assignments.c.commitment_id == commitment_id)
    if event.type == "coach.assigned":
        coach_id = str(data["coach_id"])
        if conn.execute(select(coach_assignments.c.coach_id).where(key)).first() is None:
            conn.execute(
                insert(coach_assignments).values(
                    tenant_id=tenant,
                    commitment_id=commitment_id,
                    member_id=str(data["member_id"]),
                    coach_id=coach_id,
                )
            )
        else:
            conn.execute(update(coach_assignments).where(key).values(coach_id=coach_id))
        known = (coaches.c.tenant_id == tenant) & (coaches.c.coach_id == coach_id)
        if conn.execute(select(coaches.c.coach_id).where(known)).first() is None:
            conn.execute(insert(coaches).values(tenant_id=tenant, coach_id=coach_id))
    else:
        # Only the coach named: unassigning an older coach never detaches the current one.
        conn.execute(
            update(coach_assignments)
            .where(key, coach_assignments.c.coach_id == str(data["coach_id"]))
            .values(coach_id=None)
        )


def _add_feed_item(conn: Connection, event: RecordedEvent, kind: str) -> None:
    commitment_id = event.data.get("commitment_id")
    if commitment_id is None:
        return
    assignment = conn.execute(
        select(coach_assignments.c.coach_id, coach_assignments.c.member_id).where(
            coach_assignments.c.tenant_id == event.tenant_id,
            coach_assignments.c.commitment_id == str(commitment_id),
        )
    ).first()
    if assignment is None or assignment.coach_id is None:
        return
    conn.execute(
        insert(feed_items).values(
            tenant_id=event.tenant_id,
            coach_id=assignment.coach_id,
            event_id=str(event.id),
            position=event.position,
            kind=kind,
            event_type=event.type,
            commitment_id=str(commitment_id),
            member_id=str(event.data.get("member_id") or assignment.member_id),
            data={**msgs.public_data(event.data), "sequence": event.stream_version},
            occurred_at=event.occurred_at,
        )
    )


def make_handler(*, rng: random.Random | None = None) -> Handler:
    """The inbox handler; the retry schedule is read (and validated) once, here."""
    schedule = config.retry_schedule()
    jitter = rng or random.Random()

    def handle(conn: Connection, event: RecordedEvent) -> None:
        if event.type in CREDENTIAL_EVENTS:
            CREDENTIALS_PROJECTION.apply(conn, event)
            return
        if event.tenant_id is None:
            return  # every event below belongs to a tenant; one without is not ours to send
        if event.type in ("coach.assigned", "coach.unassigned"):
            _fold_assignment(conn, event)
        queue.enqueue(conn, event, now=datetime.now(UTC), schedule=schedule, rng=jitter)
        kind = msgs.feed_kind(event.type, event.data)
        if kind is not None:
            _add_feed_item(conn, event, kind)

    return handle


def inbox(engine: Engine) -> Consumer:
    return Consumer(engine, NOTIFICATION_INBOX, make_handler())
