"""Commands of the notification service: webhook endpoints and their deliveries.

Every command runs in the pipeline (shared.commands). An endpoint command decides on the
endpoint as its row shows it (``notification_endpoints``, the projection of its stream,
read with the version it is at) and appends to the stream expecting that version: a
concurrent command on the same endpoint makes one of them decide again. Secrets and URLs
are sealed here, before the transaction; URLs are vetted against the SSRF policy before
it too (resolution is network I/O), and again before every delivery (DNS answers change).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, select, update

from services.notification import config, projections, queries
from services.notification.delivery import queue
from services.notification.delivery.resolver import UrlRefused, vet_url
from services.notification.domain import endpoints as rules
from services.notification.domain import feed, signing
from services.notification.domain.endpoints import Endpoint, EndpointNotFound, Status
from services.notification.tables import deliveries, endpoints
from shared import crypto
from shared.commands import Context, Pipeline, UnitOfWork
from shared.errors import NotFound, ValidationFailed
from shared.events import NewEvent

PIPELINE = Pipeline(projector=projections.project)

#: Who disables an endpoint whose attempts keep failing.
DELIVERY_ACTOR = "system:delivery"


#: What a URL refused for its private address or its port is told (a receiver on the
#: developer's machine).
ALLOW_PRIVATE_HINT = (
    "to let webhooks reach loopback and private addresses, on any port, in development and tests "
    "(never in production), start the services with NOCONTACT_WEBHOOK_ALLOW_PRIVATE=true"
)


def vet(url: str) -> None:
    """Refuse, naming ``url``, what the SSRF policy refuses now."""
    try:
        vet_url(url, config.allow_private())
    except UrlRefused as refused:
        hint = f"; {ALLOW_PRIVATE_HINT}" if refused.development_allows else ""
        raise ValidationFailed("url", f"refused: {refused.reason}{hint}") from None


def load_endpoint(conn: Connection, tenant_id: str | None, endpoint_id: str) -> Endpoint:
    """The endpoint as a decision sees it; another tenant's is not found."""
    row = conn.execute(
        select(
            endpoints.c.id, endpoints.c.tenant_id, endpoints.c.status, endpoints.c.version, endpoints.c.disabled_reason
        ).where(endpoints.c.id == endpoint_id, endpoints.c.tenant_id == tenant_id)
    ).first()
    if row is None:
        raise EndpointNotFound()
    return Endpoint(row.id, row.tenant_id, Status(row.status), row.version, row.disabled_reason)


def _on_endpoint(
    engine: Engine,
    context: Context,
    endpoint_id: str,
    decide: Callable[[Endpoint], list[NewEvent]],
    now: datetime | None,
) -> None:
    """Load the endpoint, let `decide(endpoint)` return its events, record them."""

    def command(uow: UnitOfWork) -> None:
        endpoint = load_endpoint(uow.conn, uow.context.tenant_id, endpoint_id)
        uow.record(endpoint.stream_id, decide(endpoint), expected_version=endpoint.version)

    PIPELINE.run(engine, context, command, now=now)


def create_endpoint(
    engine: Engine,
    context: Context,
    *,
    url: str,
    event_types: Sequence[str],
    description: str,
    now: datetime | None = None,
) -> tuple[str, str]:
    """Create an enabled endpoint; returns its id and its secret (shown this once)."""
    vet(url)
    endpoint_id = str(uuid.uuid4())
    secret = signing.generate_secret()
    events = rules.create(
        endpoint_id,
        url=url,
        event_types=event_types,
        description=description,
        sealed_url=crypto.seal_text(url, rules.url_associated_data(endpoint_id)),
        sealed_secret=crypto.seal_text(secret, rules.secret_associated_data(endpoint_id)),
    )
    PIPELINE.run(
        engine, context, lambda uow: uow.record(rules.stream_id(endpoint_id), events, expected_version=0), now=now
    )
    return endpoint_id, secret


def update_endpoint(
    engine: Engine, context: Context, endpoint_id: str, changes: Mapping[str, Any], *, now: datetime | None = None
) -> None:
    """Patch url, event_types and/or description."""
    endpoint_id = rules.parse_id(endpoint_id)
    sealed_url = None
    if "url" in changes:
        vet(changes["url"])
        sealed_url = crypto.seal_text(changes["url"], rules.url_associated_data(endpoint_id))
    _on_endpoint(engine, context, endpoint_id, lambda e: rules.update(e, changes, sealed_url=sealed_url), now)


def delete_endpoint(engine: Engine, context: Context, endpoint_id: str, *, now: datetime | None = None) -> None:
    """Delete an endpoint with its deliveries and attempt log; an attempt in flight is dropped."""
    _on_endpoint(engine, context, rules.parse_id(endpoint_id), rules.delete, now)


def rotate_secret(engine: Engine, context: Context, endpoint_id: str, *, now: datetime | None = None) -> str:
    """A new secret signs from now on (returned, shown this once); see `rules.rotate_secret`."""
    endpoint_id = rules.parse_id(endpoint_id)
    secret = signing.generate_secret()
    sealed = crypto.seal_text(secret, rules.secret_associated_data(endpoint_id))

    def command(uow: UnitOfWork) -> None:
        endpoint = load_endpoint(uow.conn, uow.context.tenant_id, endpoint_id)
        events = rules.rotate_secret(endpoint, sealed_secret=sealed, now=uow.now)
        uow.record(endpoint.stream_id, events, expected_version=endpoint.version)

    PIPELINE.run(engine, context, command, now=now)
    return secret


def enable_endpoint(engine: Engine, context: Context, endpoint_id: str, *, now: datetime | None = None) -> None:
    """Enable again; the failure clock restarts. Failed deliveries stay failed until redelivered."""
    _on_endpoint(engine, context, rules.parse_id(endpoint_id), rules.enable, now)


def disable_endpoint(engine: Engine, context: Context, endpoint_id: str, *, now: datetime | None = None) -> None:
    """Disable by hand (e.g. during a partner's maintenance)."""
    reason = f"disabled by {context.actor}"
    _on_endpoint(engine, context, rules.parse_id(endpoint_id), lambda e: rules.disable(e, reason), now)


def disable_failing_endpoint(engine: Engine, tenant_id: str, endpoint_id: str, reason: str, *, now: datetime) -> None:
    """The delivery worker gives up on an endpoint (410, or failing for days); one deleted
    meanwhile has nothing left to disable."""
    try:
        _on_endpoint(engine, Context(tenant_id, DELIVERY_ACTOR), endpoint_id, lambda e: rules.disable(e, reason), now)
    except EndpointNotFound:
        pass


def redeliver_message(
    engine: Engine, context: Context, endpoint_id: str, message_id: str, *, now: datetime | None = None
) -> int:
    """Send one message again now (whatever its state), with a fresh retry schedule;
    returns its delivery's id."""
    endpoint_id = rules.parse_id(endpoint_id)

    def command(uow: UnitOfWork) -> int:
        endpoint = load_endpoint(uow.conn, uow.context.tenant_id, endpoint_id)
        delivery_id = uow.conn.execute(
            select(deliveries.c.id).where(
                deliveries.c.endpoint_id == endpoint_id, deliveries.c.message_id == message_id
            )
        ).scalar()
        if delivery_id is None:
            raise NotFound("no such message at this endpoint")
        rules.require_enabled(endpoint)
        queue.requeue(uow.conn, [delivery_id], now=uow.now)
        return int(delivery_id)

    return PIPELINE.run(engine, context, command, now=now)


def send_test_event(
    engine: Engine, context: Context, endpoint_id: str, event_type: str, *, now: datetime | None = None
) -> str:
    """Queue the catalogue's example of `event_type` for the endpoint, as a test event (see
    `queue.enqueue_example`), whatever types it subscribed to; returns the message id."""
    endpoint_id = rules.parse_id(endpoint_id)
    schedule = config.retry_schedule()

    def command(uow: UnitOfWork) -> str:
        rules.require_enabled(load_endpoint(uow.conn, uow.context.tenant_id, endpoint_id), "sending a test event")
        assert uow.context.tenant_id is not None  # found in the caller's tenant
        return queue.enqueue_example(
            uow.conn,
            tenant_id=uow.context.tenant_id,
            endpoint_id=endpoint_id,
            event_type=event_type,
            event_id=uuid.uuid4(),
            now=uow.now,
            schedule=schedule,
            rng=random.Random(),
        )

    return PIPELINE.run(engine, context, command, now=now)


def redeliver_failed(
    engine: Engine, context: Context, endpoint_id: str, since: datetime, *, now: datetime | None = None
) -> int:
    """Queue again every failed or skipped delivery of the endpoint created since ``since``;
    returns how many."""
    endpoint_id = rules.parse_id(endpoint_id)

    def command(uow: UnitOfWork) -> int:
        rules.require_enabled(load_endpoint(uow.conn, uow.context.tenant_id, endpoint_id))
        ids = uow.conn.execute(
            select(deliveries.c.id).where(
                deliveries.c.endpoint_id == endpoint_id,
                deliveries.c.state.in_(queue.REDELIVERABLE),
                deliveries.c.created_at >= since,
            )
        ).scalars()
        return queue.requeue(uow.conn, list(ids), now=uow.now)

    return PIPELINE.run(engine, context, command, now=now)


def reseal_endpoints(engine: Engine, *, retired: Sequence[str] = ()) -> int:
    """Seal the endpoints' signing secrets under the current master key (``nocontact keyring
    rotate-master``; `retired`: the master keys that sealed them, if not in
    NOCONTACT_MASTER_KEY_PREVIOUS); returns how many endpoints were sealed under an older
    key. The events keep the URLs and secrets as they were sealed then: rebuilding the
    endpoints from the store needs those keys in NOCONTACT_MASTER_KEY_PREVIOUS."""
    resealed = 0
    with engine.begin() as conn:
        rows = conn.execute(select(endpoints.c.id, endpoints.c.secret, endpoints.c.previous_secret)).all()
        for row in rows:
            associated_data = rules.secret_associated_data(row.id)
            values = {}
            for column in ("secret", "previous_secret"):
                sealed = getattr(row, column)
                if sealed is not None and not crypto.is_current(sealed):
                    values[column] = crypto.reseal_text(sealed, associated_data, retired=retired)
            if values:
                # Only if unchanged meanwhile: a rotation of the secret wins.
                conn.execute(
                    update(endpoints)
                    .where(endpoints.c.id == row.id, endpoints.c.secret == row.secret)
                    .values(**values)
                )
                resealed += 1
    return resealed



def acknowledge_feed_item(engine: Engine, context: Context, coach_id: str, item_id: int, *,
                          now: datetime | None = None) -> None:
    """A coach (or an admin) acknowledges an item of the coach's feed: an SOS is no longer
    pinned. Repeating it changes nothing; of two at once, one is recorded (version 0)."""

    def command(uow: UnitOfWork) -> None:
        item = queries.feed_item(uow.conn, str(uow.context.tenant_id), coach_id, item_id)
        events = feed.acknowledge(coach_id=coach_id, event_id=item.event_id, acknowledged_at=item.acknowledged_at,
                                  now=uow.now)
        uow.record(feed.stream_id(item.event_id, coach_id), events, expected_version=0)

    PIPELINE.run(engine, context, command, now=now)
