"""``nocontact notification ...``: look at the delivery queue and work it by hand."""

from __future__ import annotations

import json

import click
from sqlalchemy import func, select

from shared import config
from shared.db import engine_for, read


@click.group("notification")
def commands() -> None:
    """Webhook deliveries and the coach feed."""


@commands.command("stats")
def stats() -> None:
    """Deliveries by state and endpoints by status, as JSON."""
    from services.notification.tables import deliveries, endpoints

    engine = engine_for(config.database_url("notification"))
    with read(engine) as conn:
        by_state = dict(conn.execute(select(deliveries.c.state, func.count()).group_by(deliveries.c.state)).all())
        by_status = dict(conn.execute(select(endpoints.c.status, func.count()).group_by(endpoints.c.status)).all())
    click.echo(json.dumps({"deliveries": by_state, "endpoints": by_status}, sort_keys=True))


@commands.command("deliver-due")
def deliver_due() -> None:
    """Attempt every delivery due now, once, in the foreground (no worker needed)."""
    from services.notification.delivery.worker import DeliveryWorker

    engine = engine_for(config.database_url("notification"))
    click.echo(f"attempted {DeliveryWorker(engine).drain()} deliveries")


@commands.command("rebuild")
def rebuild_command() -> None:
    """Rebuild the webhook endpoints, the coach feed and coach assignments from the event
    store (the feed needs the services to share one database, as by default); prints
    events/s."""
    from services.notification.projections import endpoints_projection, feed_projection
    from shared.projection import rebuild

    engine = engine_for(config.database_url("notification"))
    for projection in (endpoints_projection(), feed_projection()):
        report = rebuild(engine, projection)
        click.echo(f"{report.projection}: {report.events} events in {report.seconds:.3f}s "
                   f"({report.events_per_second:,.0f} events/s)")
