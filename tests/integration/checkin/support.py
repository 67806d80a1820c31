"""Builders for the check-in service's integration tests.

The commitment service is a colleague's; here its events are appended to the store
exactly as it records them (streams ``tenant-<id>`` and ``commitment-<id>``) and reach the
check-in service either through the bus (a relay of those categories, as the commitment
service runs one) or straight through the inbox handler.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from typing import Any

import httpx
import psycopg
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from services.checkin.consumers import handle_inbox
from shared.consumer import apply_once
from shared.events import NewEvent, RecordedEvent
from shared.topology import CHECKIN_INBOX
from tests.support.tenants import Tenant, append_as, new_tenant

__all__ = ["Tenant", "new_tenant"]  # the tests of this service build on them too

FOREIGN_CATEGORIES = ("tenant", "commitment")


def new_commitment(
    engine: Engine,
    tenant: Tenant,
    *,
    member_id: str = "m-1",
    timezone: str = "Europe/Berlin",
    starts_on: date,
    duration_days: int | None = 30,
    channels: tuple[str, ...] = ("calls", "texts", "social_media"),
    coach_id: str | None = None,
    created_at: datetime | None = None,
) -> tuple[str, list[RecordedEvent]]:
    commitment_id = str(uuid.uuid4())
    ends_on = None if duration_days is None else starts_on + timedelta(days=duration_days - 1)
    created = NewEvent("commitment.created", {
        "commitment_id": commitment_id, "member_id": member_id,
        "contact": {"label": "Alex (ex)", "relationship": "romantic"},
        "channels": list(channels), "timezone": timezone, "starts_on": starts_on.isoformat(),
        "duration_days": duration_days, "ends_on": None if ends_on is None else ends_on.isoformat(),
        "motivation": "peace",
    }, occurred_at=created_at)
    events = [created]
    if coach_id is not None:
        events.append(NewEvent("coach.assigned", {"commitment_id": commitment_id, "member_id": member_id,
                                                  "coach_id": coach_id, "previous_coach_id": None}))
    return commitment_id, append_as(engine, f"commitment-{commitment_id}", events, tenant.tenant_id)


def commitment_event(engine: Engine, tenant: Tenant, commitment_id: str, type_: str,
                     data: dict[str, Any]) -> list[RecordedEvent]:
    return append_as(engine, f"commitment-{commitment_id}", [NewEvent(type_, data)], tenant.tenant_id)


DELIVER_ATTEMPTS = 3


def deliver(engine: Engine, events: list[RecordedEvent]) -> None:
    """Hand events to the inbox handler as the Consumer would (exactly once in effect).

    Where a stack's own inbox consumes the same events from the bus meanwhile, the two
    transactions may deadlock on the commitment's rows; PostgreSQL then aborts one, and, as
    the Consumer does with a failed attempt, it is tried again (finding the event applied,
    or applying it)."""
    for event in events:
        for attempt in range(1, DELIVER_ATTEMPTS + 1):
            try:
                apply_once(engine, CHECKIN_INBOX.name, handle_inbox, event)
                break
            except OperationalError as error:
                if not isinstance(error.orig, psycopg.errors.DeadlockDetected) or attempt == DELIVER_ATTEMPTS:
                    raise


def api(base_url: str) -> httpx.Client:
    return httpx.Client(base_url=base_url, timeout=10)


def body(outcome: str = "kept", day: date | None = None, **extra: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"outcome": outcome, **extra}
    if day is not None:
        payload["date"] = day.isoformat()
    if outcome == "slipped" and "slip" not in extra:
        payload["slip"] = {"channel": "texts", "initiated_by": "me"}
    return payload
