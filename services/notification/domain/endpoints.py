"""Webhook endpoints: their events, their state, and the decisions that change them. Pure.

Stream ``webhook_endpoint-<endpoint id>``. ``notification_endpoints`` is the projection of
these events, so a webhook URL's whole history is in the store: who pointed it where, and
when an endpoint was disabled and why. Events never carry a secret or a URL's query in
clear (partners put tokens there): the projection's values travel sealed under the master
key (`shared.crypto`, bound to the endpoint and the field, see ``*_associated_data``),
and ``url`` is the URL without query and fragment, for the audit trail.

Events (``schema_version`` 1):

``webhook_endpoint.created``  ``endpoint_id``, ``url``, ``event_types``, ``description``,
    ``sealed_url``, ``sealed_secret``
``webhook_endpoint.updated``  ``endpoint_id``, ``changes`` (the patched fields, ``url``
    without query), ``sealed_url`` (when the URL changed)
``webhook_endpoint.secret_rotated``  ``endpoint_id``, ``previous_secret_expires_at``,
    ``sealed_secret`` (the new one; the replaced one keeps signing until the expiry)
``webhook_endpoint.enabled``  ``endpoint_id``
``webhook_endpoint.disabled``  ``endpoint_id``, ``reason`` (410, failing for days, by hand)
``webhook_endpoint.deleted``  ``endpoint_id``
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from shared.errors import Conflict, NotFound
from shared.events import NewEvent

CATEGORY = "webhook_endpoint"
CREATED = "webhook_endpoint.created"
UPDATED = "webhook_endpoint.updated"
SECRET_ROTATED = "webhook_endpoint.secret_rotated"
ENABLED = "webhook_endpoint.enabled"
DISABLED = "webhook_endpoint.disabled"
DELETED = "webhook_endpoint.deleted"
EVENT_TYPES = (CREATED, UPDATED, SECRET_ROTATED, ENABLED, DISABLED, DELETED)

#: How long the secret replaced by a rotation keeps signing alongside the new one.
ROTATION_OVERLAP = timedelta(hours=24)


class Status(StrEnum):
    ENABLED = "enabled"
    DISABLED = "disabled"


class EndpointNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("no such webhook endpoint")


class EndpointDisabled(Conflict):
    def __init__(self, action: str, reason: str | None) -> None:
        why = f" ({reason})" if reason else ""
        super().__init__(f"the endpoint is disabled{why}: enable it before {action}")


@dataclass(frozen=True)
class Endpoint:
    """What the decisions need to know of an endpoint, at the version they saw."""

    id: str
    tenant_id: str
    status: Status
    version: int
    disabled_reason: str | None = None

    @property
    def stream_id(self) -> str:
        return stream_id(self.id)


def parse_id(endpoint_id: str) -> str:
    """Ids are uuids: anything else names no endpoint, and must not reach a stream id."""
    try:
        return str(uuid.UUID(endpoint_id))
    except ValueError:
        raise EndpointNotFound() from None


def stream_id(endpoint_id: str) -> str:
    return f"{CATEGORY}-{endpoint_id}"


def public_url(url: str) -> str:
    """The URL without query and fragment, for the audit trail."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def secret_associated_data(endpoint_id: str) -> str:
    """What a sealed signing secret is bound to: this endpoint, as its secret."""
    return f"{CATEGORY}:{endpoint_id}:secret"


def url_associated_data(endpoint_id: str) -> str:
    """What a sealed URL is bound to: this endpoint, as its URL."""
    return f"{CATEGORY}:{endpoint_id}:url"


def _event(event_type: str, endpoint_id: str, data: Mapping[str, Any] | None = None) -> NewEvent:
    return NewEvent(event_type, {"endpoint_id": endpoint_id, **(data or {})})


def create(
    endpoint_id: str,
    *,
    url: str,
    event_types: Sequence[str],
    description: str,
    sealed_url: str,
    sealed_secret: str,
) -> list[NewEvent]:
    """A new endpoint, enabled, signing with the sealed secret."""
    return [
        _event(
            CREATED,
            endpoint_id,
            {
                "url": public_url(url),
                "event_types": list(event_types),
                "description": description,
                "sealed_url": sealed_url,
                "sealed_secret": sealed_secret,
            },
        )
    ]


def update(endpoint: Endpoint, changes: Mapping[str, Any], *, sealed_url: str | None) -> list[NewEvent]:
    """Patch url, event types and/or description; nothing to patch records nothing."""
    if not changes:
        return []
    audit = dict(changes)
    data: dict[str, Any] = {}
    if "url" in audit:
        if sealed_url is None:
            raise ValueError("a new url travels sealed: sealed_url is required")
        audit["url"] = public_url(audit["url"])
        data["sealed_url"] = sealed_url
    if "event_types" in audit:
        audit["event_types"] = list(audit["event_types"])
    return [_event(UPDATED, endpoint.id, {"changes": audit, **data})]


def rotate_secret(endpoint: Endpoint, *, sealed_secret: str, now: datetime) -> list[NewEvent]:
    """A new secret signs from now on; the replaced one keeps signing for the overlap.

    Rotating again within the overlap retires the oldest secret at once: at most two
    signatures are ever sent.
    """
    expires = now + ROTATION_OVERLAP
    return [
        _event(
            SECRET_ROTATED,
            endpoint.id,
            {"previous_secret_expires_at": expires.isoformat(), "sealed_secret": sealed_secret},
        )
    ]


def enable(endpoint: Endpoint) -> list[NewEvent]:
    """Enable again (the failure clock restarts); an enabled endpoint stays as it is."""
    return [] if endpoint.status is Status.ENABLED else [_event(ENABLED, endpoint.id)]


def disable(endpoint: Endpoint, reason: str) -> list[NewEvent]:
    """Disable, saying why; a disabled endpoint keeps its first reason."""
    return [_event(DISABLED, endpoint.id, {"reason": reason})] if endpoint.status is Status.ENABLED else []


def delete(endpoint: Endpoint) -> list[NewEvent]:
    return [_event(DELETED, endpoint.id)]


def require_enabled(endpoint: Endpoint, action: str = "redelivering") -> None:
    """Sending to a disabled endpoint (`action`: redelivering, sending a test event) would
    only fail: enabling comes first. The answer says why it was disabled."""
    if endpoint.status is not Status.ENABLED:
        raise EndpointDisabled(action, endpoint.disabled_reason)
