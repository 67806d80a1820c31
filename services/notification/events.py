"""Audit events of webhook endpoints (stream ``webhook_endpoint-<endpoint id>``).

Endpoint configuration lives in ``notification_endpoints`` (it holds secrets, which are
not event data); every change is ALSO appended as an event, in the same transaction,
because a webhook URL decides where members' data goes: who pointed it where, and when
an endpoint was disabled and why, must be answerable from the store like everything
else. The events carry no secret, and the URL without its query string (partners
sometimes put tokens there).

Events (``schema_version`` 1):

``webhook_endpoint.created``  ``endpoint_id``, ``url``, ``event_types``, ``description``
``webhook_endpoint.updated``  ``endpoint_id``, ``changes`` (the patched fields, URL sans query)
``webhook_endpoint.secret_rotated``  ``endpoint_id``, ``previous_secret_expires_at``
``webhook_endpoint.enabled``  ``endpoint_id``
``webhook_endpoint.disabled``  ``endpoint_id``, ``reason`` (410, failing for days, by hand)
``webhook_endpoint.deleted``  ``endpoint_id``
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import Connection

from shared.envelope import versions
from shared.events import Metadata, NewEvent
from shared.eventstore import append

CATEGORY = "webhook_endpoint"
CREATED = "webhook_endpoint.created"
UPDATED = "webhook_endpoint.updated"
SECRET_ROTATED = "webhook_endpoint.secret_rotated"
ENABLED = "webhook_endpoint.enabled"
DISABLED = "webhook_endpoint.disabled"
DELETED = "webhook_endpoint.deleted"

EVENT_TYPES = (CREATED, UPDATED, SECRET_ROTATED, ENABLED, DISABLED, DELETED)
for _type in EVENT_TYPES:
    versions.register(_type, 1)


def stream_id(endpoint_id: str) -> str:
    return f"{CATEGORY}-{endpoint_id}"


def public_url(url: str) -> str:
    """The URL without query and fragment, for the audit trail."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def record(
    conn: Connection,
    endpoint_id: str,
    event_type: str,
    data: dict[str, Any],
    *,
    tenant_id: str,
    actor: str,
    correlation_id: str | None = None,
    causation_id: str | None = None,
) -> None:
    """Append one audit event of an endpoint in the caller's transaction."""
    append(
        conn,
        stream_id(endpoint_id),
        [NewEvent(event_type, {"endpoint_id": endpoint_id, **data})],
        metadata=Metadata(tenant_id=tenant_id, correlation_id=correlation_id, causation_id=causation_id, actor=actor),
    )


def endpoint_disabled(
    conn: Connection, endpoint_id: str, tenant_id: str, reason: str, *, actor: str, correlation_id: str | None = None
) -> None:
    record(
        conn, endpoint_id, DISABLED, {"reason": reason}, tenant_id=tenant_id, actor=actor, correlation_id=correlation_id
    )
