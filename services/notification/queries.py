"""Read-model queries of the notification API, each scoped to the caller's tenant.

Another tenant's endpoint or coach is "not found": existence never leaks. Lists are
paged with opaque cursors (shared.paging) bound to the tenant and the list, newest first
except the endpoints (oldest first, by offset: they are few per tenant and their ids are
random uuids).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Row,
    String,
    Table,
    and_,
    case,
    func,
    literal,
    or_,
    select,
    union_all,
)

from services.notification.delivery.queue import PENDING, SUCCEEDED, opened_bodies
from services.notification.domain.endpoints import EndpointNotFound, parse_id
from services.notification.tables import attempts, coaches, deliveries, endpoints, feed_items, messages
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


def message(engine: Engine, tenant_id: str, endpoint_id: str, message_id: str) -> dict[str, Any]:
    """A message routed to the endpoint: its payload as sent (personal values opened as the
    sender opens them: null once the member's data was erased), its delivery state there
    and its attempts, oldest first."""
    with read(engine) as conn:
        _endpoint_row(conn, tenant_id, endpoint_id)
        row = conn.execute(
            select(
                deliveries.c.message_id,
                deliveries.c.state,
                deliveries.c.next_attempt_at,
                deliveries.c.last_status_code,
                deliveries.c.last_error,
                deliveries.c.last_attempt_at,
                messages.c.tenant_id,
                messages.c.event_id,
                messages.c.event_type,
                messages.c.body,
                messages.c.occurred_at,
                messages.c.created_at,
            )
            .join(messages, messages.c.id == deliveries.c.message_id)
            .where(
                deliveries.c.endpoint_id == endpoint_id,
                deliveries.c.tenant_id == tenant_id,
                deliveries.c.message_id == message_id,
            )
        ).first()
        if row is None:
            raise NotFound("no such message at this endpoint")
        payload = json.loads(opened_bodies(conn, [row])[row.message_id])
        log = conn.execute(
            select(attempts)
            .where(attempts.c.endpoint_id == endpoint_id, attempts.c.message_id == message_id)
            .order_by(attempts.c.id)
        ).all()
    shown = {name: value for name, value in row._mapping.items() if name not in ("tenant_id", "body")}
    return {**shown, "test": payload.get("test") is True, "payload": payload,
            "attempts": [dict(attempt._mapping) for attempt in log]}


#: The windows of an endpoint's statistics, up to now.
STATS_WINDOWS: tuple[tuple[str, timedelta], ...] = (
    ("1h", timedelta(hours=1)),
    ("24h", timedelta(hours=24)),
    ("7d", timedelta(days=7)),
)
#: The latency percentiles reported, of the attempts' durations.
PERCENTILES = (50, 90, 99)


def endpoint_stats(engine: Engine, tenant_id: str, endpoint_id: str, now: datetime) -> dict[str, Any]:
    """The endpoint's attempts over each window of `STATS_WINDOWS` ending at `now`: how many,
    how many succeeded (a 2xx) and failed, and the percentiles of their durations; and how
    many deliveries are pending there now (waiting for an attempt or a retry).

    In SQL, one statement on PostgreSQL and SQLite alike (SQLite has no percentile function):
    each attempt once per window it falls in, ranked by duration within its window; the
    p-th percentile is the nearest rank, the duration of rank ceil(p/100 * n): the shortest
    duration that p % of the window's attempts do not exceed.
    """
    # The endpoint's attempts are read once, for the longest window; the others are within it.
    longest = (
        select(attempts.c.duration_ms, attempts.c.state, attempts.c.attempted_at)
        .where(
            attempts.c.tenant_id == tenant_id,
            attempts.c.endpoint_id == endpoint_id,
            attempts.c.attempted_at > now - max(length for _name, length in STATS_WINDOWS),
            attempts.c.attempted_at <= now,
        )
        .cte("longest")
    )
    in_windows = union_all(
        *(
            select(literal(name, String).label("span"), longest.c.duration_ms, longest.c.state).where(
                longest.c.attempted_at > now - length
            )
            for name, length in STATS_WINDOWS
        )
    ).subquery()
    ranked = select(
        in_windows.c.span,
        in_windows.c.duration_ms,
        in_windows.c.state,
        func.row_number().over(partition_by=in_windows.c.span, order_by=in_windows.c.duration_ms).label("rank"),
        func.count().over(partition_by=in_windows.c.span).label("n"),
    ).subquery()

    def percentile(p: int) -> Any:
        return func.max(case((ranked.c.rank == (ranked.c.n * p + 99) // 100, ranked.c.duration_ms)))

    query = select(
        ranked.c.span,
        func.count().label("attempts"),
        func.sum(case((ranked.c.state == SUCCEEDED, 1), else_=0)).label("successes"),
        *(percentile(p).label(f"p{p}") for p in PERCENTILES),
    ).group_by(ranked.c.span)
    with read(engine) as conn:
        _endpoint_row(conn, tenant_id, endpoint_id)
        found = {row.span: row for row in conn.execute(query)}
        pending = conn.execute(
            select(func.count()).where(deliveries.c.endpoint_id == endpoint_id, deliveries.c.state == PENDING)
        ).scalar_one()
    windows = {}
    for name, length in STATS_WINDOWS:
        row = found.get(name)
        total = 0 if row is None else int(row.attempts)
        successes = 0 if row is None else int(row.successes)
        windows[name] = {
            "since": now - length,
            "attempts": total,
            "successes": successes,
            "failures": total - successes,
            "latency_ms": {f"p{p}": None if row is None else getattr(row, f"p{p}") for p in PERCENTILES},
        }
    return {"endpoint_id": parse_id(endpoint_id), "as_of": now, "pending": int(pending), "windows": windows}


def coach_feed(
    engine: Engine,
    tenant_id: str,
    coach_id: str,
    *,
    kind: str | None,
    limit: int,
    cursor: str | None,
    known_coach_only: bool,
    now: datetime,
) -> Page:
    """The coach's notifications: on the first page, every pinned item first (an SOS not yet
    acknowledged, for a day: messages.PINNED_FOR), newest first and not counted in `limit`;
    then the others, newest first, `limit` per page. Pinned items are left out of the pages
    while pinned and take their place among the others once no longer pinned.

    `known_coach_only`: a coach never assigned in the tenant is "not found" rather than
    "no news yet"."""
    scope = f"{tenant_id}:coaches:{coach_id}:notifications"
    before = decode_cursor(scope, cursor)
    mine = [feed_items.c.tenant_id == tenant_id, feed_items.c.coach_id == coach_id]
    if kind:
        mine.append(feed_items.c.kind == kind)
    pinned = and_(feed_items.c.pinned_until > now, feed_items.c.acknowledged_at.is_(None))
    # Spelled out rather than NOT(pinned): a null pinned_until would make that null, not true.
    unpinned = or_(
        feed_items.c.pinned_until.is_(None),
        feed_items.c.pinned_until <= now,
        feed_items.c.acknowledged_at.is_not(None),
    )
    query = select(feed_items).where(*mine, unpinned)
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
        if before is None:
            on_top = conn.execute(
                select(feed_items).where(*mine, pinned).order_by(feed_items.c.position.desc())
            ).all()
            page["items"] = [dict(row._mapping) for row in on_top] + page["items"]
        for item in page["items"]:
            item["pinned"] = _pinned(item, now)
        # Personal values in an item's data travel sealed (shared.keyring): opened to be read.
        opener = keyring.Opener(conn, tenant_id)
        opener.prefetch(item["data"] for item in page["items"])
        for item in page["items"]:
            item["data"] = opener.open_all(item["data"])
    return page


def _pinned(item: dict[str, Any], now: datetime) -> bool:
    return item["pinned_until"] is not None and item["pinned_until"] > now and item["acknowledged_at"] is None


def feed_item(conn: Connection, tenant_id: str, coach_id: str, item_id: int) -> Row[Any]:
    """One item of the coach's feed; another coach's or tenant's is not found."""
    row = conn.execute(
        select(feed_items).where(
            feed_items.c.id == item_id, feed_items.c.tenant_id == tenant_id, feed_items.c.coach_id == coach_id
        )
    ).first()
    if row is None:
        raise NotFound("no such notification")
    return row


def shown_feed_item(engine: Engine, tenant_id: str, coach_id: str, item_id: int, now: datetime) -> dict[str, Any]:
    """An item as the feed shows it (pinned or not, its data opened)."""
    with read(engine) as conn:
        item = dict(feed_item(conn, tenant_id, coach_id, item_id)._mapping)
        item["data"] = keyring.Opener(conn, tenant_id).open_all(item["data"])
    item["pinned"] = _pinned(item, now)
    return item
