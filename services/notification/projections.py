"""Events -> the notification service's read models.

- ``notification_endpoints``, the projection of the ``webhook_endpoint`` streams, written
  inline by the commands (`project`, the pipeline's projector) and rebuildable from the
  store (`endpoints_projection`) with the same `apply_endpoint_event`. What an endpoint's
  events mean for its deliveries (`settle_deliveries`: disabling fails what is pending,
  deleting drops them) follows inline only: deliveries are the record of what was sent,
  not a view of the log.
- The coach feed and the coach assignments it hangs on, folded by the inbox from the bus
  and rebuildable from the store (`feed_projection`) with the same `fold_assignment` and
  `add_feed_item`; coaches' acknowledgements (domain.feed) are folded inline by their
  command and in that rebuild with the same `apply_acknowledgement`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, or_, select, tuple_, update

from services.notification.delivery import queue
from services.notification.domain import feed
from services.notification.domain import messages as msgs
from services.notification.domain.endpoints import (
    CREATED,
    DELETED,
    DISABLED,
    ENABLED,
    EVENT_TYPES,
    SECRET_ROTATED,
    UPDATED,
    Status,
    url_associated_data,
)
from services.notification.tables import coach_assignments, coaches, endpoints, feed_items
from shared import crypto
from shared.db import DriverWrite, insert_new
from shared.events import RecordedEvent
from shared.projection import Projection
from shared.schema import keyring

# -- webhook endpoints -----------------------------------------------------------------------


def apply_endpoint_event(conn: Connection, event: RecordedEvent) -> None:
    """One ``webhook_endpoint`` event into ``notification_endpoints``."""
    data = event.data
    endpoint_id = str(data["endpoint_id"])
    at = event.occurred_at
    if event.type == CREATED:
        conn.execute(
            insert(endpoints).values(
                id=endpoint_id,
                tenant_id=event.tenant_id,
                url=crypto.unseal_text(data["sealed_url"], url_associated_data(endpoint_id)),
                description=data["description"],
                event_types=list(data["event_types"]),
                status=Status.ENABLED,
                secret=data["sealed_secret"],
                created_at=at,
                updated_at=at,
                version=event.stream_version,
            )
        )
        return
    row = endpoints.c.id == endpoint_id
    if event.type == DELETED:
        conn.execute(delete(endpoints).where(row))
        return
    values: dict[str, Any] = {"updated_at": at, "version": event.stream_version}
    if event.type == UPDATED:
        changes = data["changes"]
        if "url" in changes:
            values["url"] = crypto.unseal_text(data["sealed_url"], url_associated_data(endpoint_id))
        if "event_types" in changes:
            values["event_types"] = list(changes["event_types"])
        if "description" in changes:
            values["description"] = changes["description"]
    elif event.type == SECRET_ROTATED:
        # The secret signing until now keeps signing until the expiry (SET reads the old row).
        values.update(
            secret=data["sealed_secret"],
            previous_secret=endpoints.c.secret,
            previous_secret_expires_at=datetime.fromisoformat(data["previous_secret_expires_at"]),
        )
    elif event.type == ENABLED:
        values.update(status=Status.ENABLED, disabled_reason=None)
    elif event.type == DISABLED:
        values.update(status=Status.DISABLED, disabled_reason=data["reason"])
    conn.execute(update(endpoints).where(row).values(**values))


def settle_deliveries(conn: Connection, event: RecordedEvent) -> None:
    """What an endpoint's event means for the delivery queue."""
    endpoint_id = str(event.data["endpoint_id"])
    if event.type == DISABLED:
        queue.fail_pending(conn, endpoint_id, event.data["reason"], now=event.occurred_at)
    elif event.type == ENABLED:
        queue.restart_failure_clock(conn, endpoint_id)
    elif event.type == DELETED:
        queue.forget_endpoint(conn, endpoint_id)


def project(conn: Connection, events: Sequence[RecordedEvent]) -> None:
    """The inline projector of the service's commands (shared.commands.Pipeline)."""
    for event in events:
        if event.type in feed.EVENT_TYPES:
            apply_acknowledgement(conn, event)
            continue
        # Deliveries before the endpoint row: the order the delivery worker locks them in
        # (queue.record_many), so the two never wait for each other in a cycle.
        settle_deliveries(conn, event)
        apply_endpoint_event(conn, event)


def endpoints_projection() -> Projection:
    return Projection(
        name="notification.endpoints",
        tables=[endpoints],
        event_types=EVENT_TYPES,
        apply=apply_endpoint_event,
    )


# -- the coach feed ----------------------------------------------------------------------------

ASSIGNMENT_EVENTS = ("coach.assigned", "coach.unassigned")

#: The coach assignment of (tenant, commitment): a row with ``coach_id`` and ``member_id``.
AssignmentLookup = Callable[[Connection, str, str], Any]


def read_assignment(conn: Connection, tenant_id: str, commitment_id: str) -> Any:
    return conn.execute(
        select(coach_assignments.c.coach_id, coach_assignments.c.member_id).where(
            coach_assignments.c.tenant_id == tenant_id,
            coach_assignments.c.commitment_id == commitment_id,
        )
    ).first()


def fold_assignment(conn: Connection, event: RecordedEvent) -> None:
    """``coach.assigned`` / ``coach.unassigned`` into the assignments and known coaches.

    The assignment keeps the version of the commitment's stream that set its coach, and an
    event moves it only when later: a copy applied again (the inbox forgot it after its
    dedup window and a relay moved back republished it) or late (a parked message requeued)
    never hands the member's feed back to a former coach, nor takes it from the current one.
    """
    data = event.data
    tenant, commitment_id, version = event.tenant_id, str(data["commitment_id"]), event.stream_version
    key = (coach_assignments.c.tenant_id == tenant) & (coach_assignments.c.commitment_id == commitment_id)
    assigned = event.type == "coach.assigned"
    coach_id = str(data["coach_id"])
    if conn.execute(select(coach_assignments.c.coach_id).where(key)).first() is None:
        # An unassignment before any assignment is one whose assignment is still parked: kept
        # as "no coach" at its version, so that assignment, requeued, does not bring them back.
        conn.execute(
            insert(coach_assignments).values(
                tenant_id=tenant,
                commitment_id=commitment_id,
                member_id=str(data["member_id"]),
                coach_id=coach_id if assigned else None,
                version=version,
            )
        )
    elif assigned:
        conn.execute(
            update(coach_assignments).where(key, coach_assignments.c.version < version)
            .values(coach_id=coach_id, version=version)
        )
    else:
        # No coach as of this version, whoever the row names: the coach it removes may have
        # been assigned by an event still to come (parked, requeued late), and must not get
        # the feed back then. For an assignment folded before it had a version (0), only the
        # coach named: unassigning an older coach never detaches the current one.
        conn.execute(
            update(coach_assignments)
            .where(key, coach_assignments.c.version < version,
                   or_(coach_assignments.c.version > 0, coach_assignments.c.coach_id == coach_id))
            .values(coach_id=None, version=version)
        )
    if assigned:
        # Known even when the assignment has moved on since: a coach once assigned is known,
        # whichever order the events came in (as the rebuild knows every coach ever assigned).
        conn.execute(insert_new(conn.dialect.name, coaches, "tenant_id", "coach_id")
                     .values(tenant_id=tenant, coach_id=coach_id))


def add_feed_item(
    conn: Connection, event: RecordedEvent, kind: str, assignment: AssignmentLookup = read_assignment
) -> None:
    """The feed item of an event for the coach of its commitment (if it has one)."""
    commitment_id = event.data.get("commitment_id")
    if commitment_id is None:
        return
    found = assignment(conn, str(event.tenant_id), str(commitment_id))
    if found is None or found.coach_id is None:
        return
    _NEW_FEED_ITEM[conn.dialect.name].one(conn, {
        "tenant_id": event.tenant_id,
        "coach_id": found.coach_id,
        "event_id": str(event.id),
        "position": event.position,
        "kind": kind,
        "event_type": event.type,
        "commitment_id": str(commitment_id),
        "member_id": str(event.data.get("member_id") or found.member_id),
        "data": {**msgs.feed_data(event.data), "sequence": event.stream_version},
        "occurred_at": event.occurred_at,
        "pinned_until": msgs.pinned_until(kind, event.occurred_at),
    })


# A feed item per event of a coached commitment, in the inbox's batch: on the driver. An
# event applied again (the inbox forgot it after its dedup window, shared.consumer) keeps
# the item it made the first time, acknowledgement included.
_NEW_FEED_ITEM = {
    dialect: DriverWrite(insert_new(dialect, feed_items, "coach_id", "tenant_id", "event_id"))
    for dialect in ("postgresql", "sqlite")
}


def apply_acknowledgement(conn: Connection, event: RecordedEvent) -> None:
    """A coach acknowledged an item: it is no longer pinned. The first acknowledgement stands."""
    conn.execute(
        update(feed_items)
        .where(
            feed_items.c.tenant_id == event.tenant_id,
            feed_items.c.coach_id == str(event.data["coach_id"]),
            feed_items.c.event_id == str(event.data["event_id"]),
            feed_items.c.acknowledged_at.is_(None),
        )
        .values(acknowledged_at=event.occurred_at, acknowledged_by=event.actor)
    )


def _fold_feed(conn: Connection, event: RecordedEvent) -> None:
    if event.tenant_id is None:
        return
    if event.type in feed.EVENT_TYPES:
        apply_acknowledgement(conn, event)
        return
    if event.type in ASSIGNMENT_EVENTS:
        fold_assignment(conn, event)
    kind = msgs.feed_kind(event.type, event.data)
    if kind is not None:
        add_feed_item(conn, event, kind)


def forget_erased_members(conn: Connection) -> None:
    """Drop what the replay folded of members erased since (their key destroyed): the inbox
    stopped copying them, and their erasure removed what it had copied."""
    erased = select(keyring.c.tenant_id, keyring.c.member_id).where(keyring.c.wrapped_key.is_(None))
    for table in (feed_items, coach_assignments):
        conn.execute(delete(table).where(tuple_(table.c.tenant_id, table.c.member_id).in_(erased)))


def feed_projection() -> Projection:
    """The coach feed and the assignments it hangs on, rebuilt from the store as the inbox
    folds them from the bus."""
    return Projection(
        name="notification.feed",
        tables=[coach_assignments, coaches, feed_items],
        event_types=tuple(sorted({*ASSIGNMENT_EVENTS, *msgs.WEBHOOK_EVENT_TYPES, *feed.EVENT_TYPES})),
        apply=_fold_feed,
        finish=forget_erased_members,
    )
