"""A member's data in the notification service: what it holds, its export, its erasure.

What this service holds about a member, all copied from events (it never seals anything
itself; the personal values in those copies stay sealed as they came, shared.keyring):
the messages queued or sent about the member (``notification_messages.member_id``) with
their deliveries and attempt log, the coach feed's items about the member, the member's
commitments in ``notification_coach_assignments``, and parked inbox messages about them.

Erasure (`scrub`, run by the ``erasure`` worker part on ``member.erasure_requested``, see
`shared.erasure`): all of the above is deleted, except the messages telling partners of
the erasure itself. The member's key is destroyed already, so a copy this scrub missed,
or one made later by an event still in flight, holds nothing readable; the inbox also
stops copying anything about an erased member (services.notification.consumers).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, select

from services.notification.tables import attempts, coach_assignments, deliveries, feed_items, messages
from shared import erasure, keyring
from shared.consumer import Consumer, forget_member_dead_letters
from shared.db import read
from shared.topology import NOTIFICATION_ERASURE, NOTIFICATION_INBOX

SERVICE = "notification"

#: The messages that tell partners of an erasure: about the member, and kept by it.
ERASURE_EVENTS = (erasure.REQUESTED, erasure.ERASED)


def _member_messages(tenant_id: str, member_id: str) -> Any:
    return select(messages.c.id).where(
        messages.c.tenant_id == tenant_id,
        messages.c.member_id == member_id,
        messages.c.event_type.not_in(ERASURE_EVENTS),
    )


def scrub(conn: Connection, tenant_id: str, member_id: str, _now: datetime) -> None:
    """Delete what this service holds about the member (shared.erasure.Scrub)."""
    ids = list(conn.execute(_member_messages(tenant_id, member_id)).scalars())
    if ids:
        conn.execute(delete(attempts).where(attempts.c.message_id.in_(ids)))
        conn.execute(delete(deliveries).where(deliveries.c.message_id.in_(ids)))
        conn.execute(delete(messages).where(messages.c.id.in_(ids)))
    conn.execute(delete(feed_items).where(feed_items.c.tenant_id == tenant_id, feed_items.c.member_id == member_id))
    conn.execute(delete(coach_assignments).where(coach_assignments.c.tenant_id == tenant_id,
                                                 coach_assignments.c.member_id == member_id))
    forget_member_dead_letters(conn, [NOTIFICATION_INBOX.name, NOTIFICATION_ERASURE.name], tenant_id, member_id)


def erasure_consumer(engine: Engine, **options: object) -> Consumer:
    """The ``erasure`` part: scrubs, and reports to the commitment service."""
    return erasure.erasure_consumer(engine, NOTIFICATION_ERASURE, SERVICE, scrub, **options)


def export_member(engine: Engine, tenant_id: str, member_id: str, now: datetime) -> dict[str, Any] | None:
    """Everything this service holds about the member, personal values opened; None when
    it holds nothing. The notices of the member's erasure to partners are not the member's
    data (ids only, kept after the erasure): they are left out."""
    with read(engine) as conn:
        opener = keyring.Opener(conn, tenant_id)
        found_messages = conn.execute(
            select(messages).where(messages.c.id.in_(_member_messages(tenant_id, member_id)))
            .order_by(messages.c.occurred_at, messages.c.id)
        ).all()
        by_message: dict[str, list[dict[str, Any]]] = {}
        if found_messages:
            for row in conn.execute(
                select(deliveries.c.message_id, deliveries.c.endpoint_id, deliveries.c.state, deliveries.c.attempts,
                       deliveries.c.last_attempt_at)
                .where(deliveries.c.message_id.in_([m.id for m in found_messages]))
                .order_by(deliveries.c.id)
            ):
                by_message.setdefault(row.message_id, []).append({
                    "endpoint_id": row.endpoint_id, "state": row.state, "attempts": row.attempts,
                    "last_attempt_at": row.last_attempt_at,
                })
        feed = conn.execute(
            select(feed_items).where(feed_items.c.tenant_id == tenant_id, feed_items.c.member_id == member_id)
            .order_by(feed_items.c.position)
        ).all()
        assignments = conn.execute(
            select(coach_assignments.c.commitment_id, coach_assignments.c.coach_id)
            .where(coach_assignments.c.tenant_id == tenant_id, coach_assignments.c.member_id == member_id)
            .order_by(coach_assignments.c.commitment_id)
        ).all()
        if not found_messages and not feed and not assignments:
            return None
        payloads = {m.id: json.loads(m.body) for m in found_messages}
        opener.prefetch([*payloads.values(), *(item.data for item in feed)])
        data = {
            "webhook_messages": [
                {
                    "id": m.id, "event_id": m.event_id, "event_type": m.event_type, "occurred_at": m.occurred_at,
                    "payload": opener.open_all(payloads[m.id]), "deliveries": by_message.get(m.id, []),
                }
                for m in found_messages
            ],
            "coach_feed": [
                {
                    "id": item.id, "coach_id": item.coach_id, "kind": item.kind, "event_type": item.event_type,
                    "commitment_id": item.commitment_id, "occurred_at": item.occurred_at,
                    "data": opener.open_all(item.data),
                }
                for item in feed
            ],
            "coach_assignments": [{"commitment_id": a.commitment_id, "coach_id": a.coach_id} for a in assignments],
        }
    return erasure.export_document(member_id, SERVICE, now, data)
