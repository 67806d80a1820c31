"""Read-model queries of the notification API, each scoped to the caller's tenant.

Another tenant's endpoint or coach is "not found": existence never leaks. Lists are
paged with opaque cursors (shared.paging) bound to the tenant and the list, newest first
except the endpoints (oldest first, by offset: they are few per tenant and their ids are
random uuids).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, Row, Table, select

from services.notification.domain.endpoints import EndpointNotFound, parse_id
from services.notification.tables import attempts, coaches, deliveries, endpoints, feed_items
from shared import keyring
from shared.db import read
from shared.errors import NotFound
from shared.paging import decode_cursor, encode_cursor

Page = dict[str, Any]

#: An endpoint as the API shows it: never its secrets, not even sealed.
_ENDPOINT_COLUMNS = [column for column in endpoints.c if column.name not in ("secret", "previous_secret")]


def _page(rows: Sequence[Row[Any]], limit: int, scope: str, key: str) -> Page:
    items = [dict(row._mapping) for row in rows[:limit]]
    more = len(rows) > limit
    return {"items": items, "next_cursor": encode_cursor(scope, items[-1][key]) if more else None}


def _endpoint_row(conn: Connection, tenant_id: str, endpoint_id: str) -> Row[Any]:
    row = conn.execute(
        select(*_ENDPOINT_COLUMNS).where(endpoints.c.id == parse_id(endpoint_id), endpoints.c.tenant_id == tenant_id)
    ).first()
    if row is None:
        raise EndpointNotFound()
    return row


def endpoint(engine: Engine, tenant_id: str, endpoint_id: str) -> dict[str, Any]:
    with read(engine) as conn:
        return dict(_endpoint_row(conn, tenant_id, endpoint_id)._mapping)


def endpoints_page(engine: Engine, tenant_id: str, *, limit: int, cursor: str | None) -> Page:
    """The tenant's endpoints, oldest first."""
    scope = f"{tenant_id}:webhook-endpoints"
    offset = decode_cursor(scope, cursor) or 0
    with read(engine) as conn:
        rows = conn.execute(
            select(*_ENDPOINT_COLUMNS)
            .where(endpoints.c.tenant_id == tenant_id)
            .order_by(endpoints.c.created_at, endpoints.c.id)
            .offset(offset)
            .limit(limit + 1)
        ).all()
    items = [dict(row._mapping) for row in rows[:limit]]
    more = len(rows) > limit
    return {"items": items, "next_cursor": encode_cursor(scope, offset + limit) if more else None}


def attempts_page(
    engine: Engine, tenant_id: str, endpoint_id: str, *, message_id: str | None, limit: int, cursor: str | None
) -> Page:
    """The endpoint's attempt log, newest first: one item per HTTP attempt."""
    only = [attempts.c.message_id == message_id] if message_id else []
    return _newest_at_endpoint(engine, tenant_id, endpoint_id, attempts, "deliveries", only, limit, cursor)


def messages_page(
    engine: Engine, tenant_id: str, endpoint_id: str, *, state: str | None, limit: int, cursor: str | None
) -> Page:
    """Each message routed to the endpoint with its delivery state, newest first."""
    only = [deliveries.c.state == state] if state else []
    return _newest_at_endpoint(engine, tenant_id, endpoint_id, deliveries, "messages", only, limit, cursor)


def _newest_at_endpoint(
    engine: Engine,
    tenant_id: str,
    endpoint_id: str,
    table: Table,
    list_name: str,
    only: Sequence[ColumnElement[bool]],
    limit: int,
    cursor: str | None,
) -> Page:
    """A page of an endpoint's rows in `table`, newest (highest id) first."""
    scope = f"{tenant_id}:webhook-endpoints:{endpoint_id}:{list_name}"
    query = select(table).where(table.c.endpoint_id == endpoint_id, table.c.tenant_id == tenant_id, *only)
    with read(engine) as conn:
        _endpoint_row(conn, tenant_id, endpoint_id)  # 404 first: a cursor of no list is moot
        before = decode_cursor(scope, cursor)
        if before is not None:
            query = query.where(table.c.id < before)
        rows = conn.execute(query.order_by(table.c.id.desc()).limit(limit + 1)).all()
    return _page(rows, limit, scope, "id")


def delivery(engine: Engine, tenant_id: str, delivery_id: int) -> dict[str, Any]:
    with read(engine) as conn:
        row = conn.execute(
            select(deliveries).where(deliveries.c.id == delivery_id, deliveries.c.tenant_id == tenant_id)
        ).first()
    if row is None:
        raise NotFound("no such message at this endpoint")
    return dict(row._mapping)


def coach_feed(
    engine: Engine,
    tenant_id: str,
    coach_id: str,
    *,
    kind: str | None,
    limit: int,
    cursor: str | None,
    known_coach_only: bool,
) -> Page:
    """The coach's notifications, newest first. `known_coach_only`: a coach never assigned
    in the tenant is "not found" rather than "no news yet"."""
    scope = f"{tenant_id}:coaches:{coach_id}:notifications"
    before = decode_cursor(scope, cursor)
    query = select(feed_items).where(feed_items.c.tenant_id == tenant_id, feed_items.c.coach_id == coach_id)
    if kind:
        query = query.where(feed_items.c.kind == kind)
    if before is not None:
        query = query.where(feed_items.c.position < before)
    with read(engine) as conn:
        if known_coach_only:
            known = conn.execute(
                select(coaches.c.coach_id).where(coaches.c.tenant_id == tenant_id, coaches.c.coach_id == coach_id)
            ).first()
            if known is None:
                raise NotFound("no such coach")
        rows = conn.execute(query.order_by(feed_items.c.position.desc()).limit(limit + 1)).all()
        page = _page(rows, limit, scope, "position")
        # Personal values in an item's data travel sealed (shared.keyring): opened to be read.
        opener = keyring.Opener(conn, tenant_id)
        opener.prefetch(item["data"] for item in page["items"])
        for item in page["items"]:
            item["data"] = opener.open_all(item["data"])
    return page
