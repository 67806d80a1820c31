"""Commands on webhook endpoints and deliveries: each in ONE transaction.

Every change of an endpoint also appends its audit event (services.notification.events)
in that transaction. URLs are vetted against the SSRF policy before the transaction
(resolution is network I/O) and again before every delivery (DNS answers change).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.engine import Row

from services.notification import config, events
from services.notification.delivery import queue
from services.notification.delivery.resolver import UrlRefused, vet_url
from services.notification.domain import signing
from services.notification.tables import attempts, deliveries, endpoints
from shared.db import read
from shared.problems import Problem, invalid, not_found


@dataclass(frozen=True)
class Caller:
    """Who issues a command: the tenant it acts in, how events record it, the request."""

    tenant_id: str
    actor: str
    correlation_id: str | None = None


def utcnow() -> datetime:
    return datetime.now(UTC)


def vet(url: str) -> str:
    """The URL if it passes the SSRF policy now; a 422 naming ``url`` otherwise."""
    try:
        vet_url(url, config.allow_private())
    except UrlRefused as refused:
        raise invalid("url", f"refused: {refused.reason}") from None
    return url


def _load(conn: Any, caller: Caller, endpoint_id: str, *, lock: bool = False) -> Row[Any]:
    query = select(endpoints).where(endpoints.c.id == endpoint_id, endpoints.c.tenant_id == caller.tenant_id)
    if lock:
        query = query.with_for_update()
    row = conn.execute(query).first()
    if row is None:
        raise not_found("webhook endpoint")
    return row


def _record(conn: Any, caller: Caller, endpoint_id: str, event_type: str, data: dict[str, Any]) -> None:
    events.record(
        conn,
        endpoint_id,
        event_type,
        data,
        tenant_id=caller.tenant_id,
        actor=caller.actor,
        correlation_id=caller.correlation_id,
    )


def _valid_id(endpoint_id: str) -> str:
    # Ids are uuids: anything else cannot exist, and must not reach the stream id.
    try:
        return str(uuid.UUID(endpoint_id))
    except ValueError:
        raise not_found("webhook endpoint") from None


def get_endpoint(engine: Engine, caller: Caller, endpoint_id: str) -> Row[Any]:
    # A read-only transaction: on SQLite it does not take the write lock.
    with read(engine) as conn:
        return _load(conn, caller, _valid_id(endpoint_id))


def create_endpoint(
    engine: Engine, caller: Caller, *, url: str, event_types: Sequence[str], description: str
) -> tuple[Row[Any], str]:
    """Create an enabled endpoint; returns it and its secret (shown this once)."""
    vet(url)
    endpoint_id = str(uuid.uuid4())
    secret = signing.generate_secret()
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(
            insert(endpoints).values(
                id=endpoint_id,
                tenant_id=caller.tenant_id,
                url=url,
                description=description,
                event_types=list(event_types),
                status=queue.ENABLED,
                secret=secret,
                created_at=now,
                updated_at=now,
            )
        )
        _record(
            conn,
            caller,
            endpoint_id,
            events.CREATED,
            {
                "url": events.public_url(url),
                "event_types": list(event_types),
                "description": description,
            },
        )
        return _load(conn, caller, endpoint_id), secret


def update_endpoint(engine: Engine, caller: Caller, endpoint_id: str, changes: dict[str, Any]) -> Row[Any]:
    """Patch url, event_types and/or description."""
    endpoint_id = _valid_id(endpoint_id)
    if "url" in changes:
        vet(changes["url"])
    with engine.begin() as conn:
        _load(conn, caller, endpoint_id, lock=True)
        if changes:
            values = {**changes, "updated_at": utcnow()}
            if "event_types" in values:
                values["event_types"] = list(values["event_types"])
            conn.execute(update(endpoints).where(endpoints.c.id == endpoint_id).values(**values))
            audit = dict(changes)
            if "url" in audit:
                audit["url"] = events.public_url(audit["url"])
            if "event_types" in audit:
                audit["event_types"] = list(audit["event_types"])
            _record(conn, caller, endpoint_id, events.UPDATED, {"changes": audit})
        return _load(conn, caller, endpoint_id)


def delete_endpoint(engine: Engine, caller: Caller, endpoint_id: str) -> None:
    """Delete an endpoint with its deliveries and attempt log; an attempt in flight is dropped."""
    endpoint_id = _valid_id(endpoint_id)
    with engine.begin() as conn:
        _load(conn, caller, endpoint_id, lock=True)
        conn.execute(delete(attempts).where(attempts.c.endpoint_id == endpoint_id))
        conn.execute(delete(deliveries).where(deliveries.c.endpoint_id == endpoint_id))
        conn.execute(delete(endpoints).where(endpoints.c.id == endpoint_id))
        _record(conn, caller, endpoint_id, events.DELETED, {})


def rotate_secret(engine: Engine, caller: Caller, endpoint_id: str) -> tuple[Row[Any], str]:
    """A new secret signs from now on; the replaced one keeps signing for 24 hours.

    Rotating again within the overlap retires the oldest secret at once: at most two
    signatures are ever sent.
    """
    endpoint_id = _valid_id(endpoint_id)
    secret = signing.generate_secret()
    now = utcnow()
    expires = now + config.ROTATION_OVERLAP
    with engine.begin() as conn:
        current = _load(conn, caller, endpoint_id, lock=True)
        conn.execute(
            update(endpoints)
            .where(endpoints.c.id == endpoint_id)
            .values(secret=secret, previous_secret=current.secret, previous_secret_expires_at=expires, updated_at=now)
        )
        _record(conn, caller, endpoint_id, events.SECRET_ROTATED, {"previous_secret_expires_at": expires.isoformat()})
        return _load(conn, caller, endpoint_id), secret


def enable_endpoint(engine: Engine, caller: Caller, endpoint_id: str) -> Row[Any]:
    """Enable again; the failure clock restarts. Failed deliveries stay failed until redelivered."""
    endpoint_id = _valid_id(endpoint_id)
    with engine.begin() as conn:
        current = _load(conn, caller, endpoint_id, lock=True)
        if current.status != queue.ENABLED:
            conn.execute(
                update(endpoints)
                .where(endpoints.c.id == endpoint_id)
                .values(status=queue.ENABLED, disabled_reason=None, failing_since=None, updated_at=utcnow())
            )
            _record(conn, caller, endpoint_id, events.ENABLED, {})
        return _load(conn, caller, endpoint_id)


def disable_endpoint(engine: Engine, caller: Caller, endpoint_id: str) -> Row[Any]:
    """Disable by hand (e.g. during a partner's maintenance)."""
    endpoint_id = _valid_id(endpoint_id)
    with engine.begin() as conn:
        current = _load(conn, caller, endpoint_id, lock=True)
        if current.status == queue.ENABLED:
            queue.disable_endpoint(
                conn,
                endpoint_id,
                caller.tenant_id,
                f"disabled by {caller.actor}",
                now=utcnow(),
                actor=caller.actor,
            )
        return _load(conn, caller, endpoint_id)


def _require_enabled(endpoint: Row[Any]) -> None:
    if endpoint.status != queue.ENABLED:
        raise Problem(409, "the endpoint is disabled: enable it before redelivering")


def redeliver_message(engine: Engine, caller: Caller, endpoint_id: str, message_id: str) -> Row[Any]:
    """Send one message again now (whatever its state), with a fresh retry schedule."""
    endpoint_id = _valid_id(endpoint_id)
    with engine.begin() as conn:
        endpoint = _load(conn, caller, endpoint_id)
        row = conn.execute(
            select(deliveries.c.id).where(
                deliveries.c.endpoint_id == endpoint_id, deliveries.c.message_id == message_id
            )
        ).first()
        if row is None:
            raise not_found("message at this endpoint")
        _require_enabled(endpoint)
        queue.requeue(conn, [row.id], now=utcnow())
        return conn.execute(select(deliveries).where(deliveries.c.id == row.id)).one()


def redeliver_failed(engine: Engine, caller: Caller, endpoint_id: str, since: datetime) -> int:
    """Queue again every failed or skipped delivery of the endpoint created since ``since``."""
    endpoint_id = _valid_id(endpoint_id)
    with engine.begin() as conn:
        endpoint = _load(conn, caller, endpoint_id)
        _require_enabled(endpoint)
        ids = (
            conn.execute(
                select(deliveries.c.id).where(
                    deliveries.c.endpoint_id == endpoint_id,
                    deliveries.c.state.in_(queue.REDELIVERABLE),
                    deliveries.c.created_at >= since,
                )
            )
            .scalars()
            .all()
        )
        return queue.requeue(conn, list(ids), now=utcnow())
