"""A tenant seeded straight into the store, as the commitment service records one
(``tenant.created`` and ``api_key.issued`` on ``tenant-<id>``): for the tests of the
services that learn of tenants from the bus, without running the commitment service."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from shared.auth import API_KEY_PREFIX, Principal, encode_token, hash_api_key
from shared.commands import Context
from shared.events import Metadata, NewEvent, RecordedEvent
from shared.eventstore import append


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


def append_as(engine: Engine, stream: str, events: list[NewEvent], tenant_id: str) -> list[RecordedEvent]:
    with engine.begin() as conn:
        return append(conn, stream, events, metadata=Metadata(tenant_id=tenant_id, actor="tests"))


def new_tenant(engine: Engine, name: str = "Acme") -> Tenant:
    tenant_id = uuid.uuid4().hex
    key_id = uuid.uuid4().hex
    api_key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    events = append_as(engine, f"tenant-{tenant_id}", [
        NewEvent("tenant.created", {"tenant_id": tenant_id, "name": name}),
        NewEvent("api_key.issued", {"tenant_id": tenant_id, "key_id": key_id, "key_hash": hash_api_key(api_key),
                                    "prefix": api_key[:8]}),
    ], tenant_id)
    return Tenant(tenant_id, api_key, key_id, events)


