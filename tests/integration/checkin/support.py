"""Builders for the check-in service's integration tests.

The commitment service is a colleague's; here its events are appended to the store
exactly as it records them (streams ``tenant-<id>`` and ``commitment-<id>``) and reach the
check-in service either through the bus (a relay of those categories, as the commitment
service runs one) or straight through the inbox handler.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import Engine

from services.checkin.consumers import handle_inbox
from shared.auth import API_KEY_PREFIX, Principal, encode_token, hash_api_key
from shared.commands import Context
from shared.consumer import apply_once
from shared.events import Metadata, NewEvent, RecordedEvent
from shared.eventstore import append
from shared.topology import CHECKIN_INBOX

FOREIGN_CATEGORIES = ("tenant", "commitment")


@dataclass
class Tenant:
    tenant_id: str
    api_key: str
    key_id: str
    events: list[RecordedEvent] = field(default_factory=list)

    @property
    def admin(self) -> Principal:
        return Principal(role="admin", tenant_id=self.tenant_id, credential_id=self.key_id)

    @property
    def context(self) -> Context:
        """The context of a command the admin key issues (what its events record)."""
        return Context(tenant_id=self.tenant_id, actor=self.admin.actor)

    def member(self, member_id: str) -> Principal:
        return Principal(role="member", tenant_id=self.tenant_id, subject_id=member_id)

    def token(self, role: str, subject_id: str) -> str:
        now = datetime.now(UTC)
        return encode_token(tenant_id=self.tenant_id, role=role, subject_id=subject_id, key_id=self.key_id,
                            token_id=uuid.uuid4().hex, expires_at=now + timedelta(hours=1), issued_at=now)

    def headers(self, role: str = "admin", subject_id: str = "") -> dict[str, str]:
        credential = self.api_key if role == "admin" else self.token(role, subject_id)
        return {"Authorization": f"Bearer {credential}"}


def _append(engine: Engine, stream: str, events: list[NewEvent], tenant_id: str) -> list[RecordedEvent]:
    with engine.begin() as conn:
        return append(conn, stream, events, metadata=Metadata(tenant_id=tenant_id, actor="tests"))


def new_tenant(engine: Engine, name: str = "Acme") -> Tenant:
    tenant_id = uuid.uuid4().hex
    key_id = uuid.uuid4().hex
    api_key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    events = _append(engine, f"tenant-{tenant_id}", [
        NewEvent("tenant.created", {"tenant_id": tenant_id, "name": name}),
        NewEvent("api_key.issued", {"tenant_id": tenant_id, "key_id": key_id, "key_hash": hash_api_key(api_key),
                                    "prefix": api_key[:8]}),
    ], tenant_id)
    return Tenant(tenant_id, api_key, key_id, events)


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
    return commitment_id, _append(engine, f"commitment-{commitment_id}", events, tenant.tenant_id)


def commitment_event(engine: Engine, tenant: Tenant, commitment_id: str, type_: str,
                     data: dict[str, Any]) -> list[RecordedEvent]:
    return _append(engine, f"commitment-{commitment_id}", [NewEvent(type_, data)], tenant.tenant_id)


def deliver(engine: Engine, events: list[RecordedEvent]) -> None:
    """Hand events to the inbox handler as the Consumer would (exactly once in effect)."""
    for event in events:
        apply_once(engine, CHECKIN_INBOX.name, handle_inbox, event)


def api(base_url: str) -> httpx.Client:
    return httpx.Client(base_url=base_url, timeout=10)


def body(outcome: str = "kept", day: date | None = None, **extra: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"outcome": outcome, **extra}
    if day is not None:
        payload["date"] = day.isoformat()
    if outcome == "slipped" and "slip" not in extra:
        payload["slip"] = {"channel": "texts", "initiated_by": "me"}
    return payload
