"""`nocontact checkin ...`: operate the check-in service."""

from __future__ import annotations

import click

from shared import config
from shared.db import engine_for


@click.group("checkin")
def commands() -> None:
    """The check-in service: projections and the scheduler."""


@commands.command("rebuild")
@click.option(
    "--with-inbox",
    is_flag=True,
    help="Also replay the commitments read model from commitment.* events in this store "
    "(only when the services share one database, the default).",
)
def rebuild_command(with_inbox: bool) -> None:
    """Rebuild the read models from the event store and report events/s.

    Runs while the service serves: the rebuild is one transaction holding the store's
    append lock, so readers keep the old read models until the swap and appends (check-ins,
    the scheduler) wait for the few seconds it takes.
    """
    from services.checkin import handlers  # noqa: F401 - event types
    from services.checkin.projections import CREDENTIALS_PROJECTION, inbox_projection, own_projection
    from shared.projection import rebuild

    engine = engine_for(config.database_url("checkin"))
    projections = [own_projection()]
    if with_inbox:
        projections = [CREDENTIALS_PROJECTION, inbox_projection(), *projections]
    for projection in projections:
        report = rebuild(engine, projection)
        click.echo(
            f"{report.projection}: {report.events} events in {report.seconds:.2f}s "
            f"({report.events_per_second:,.0f} events/s)"
        )


@commands.command("tick")
def tick_command() -> None:
    """Run one scheduler pass now (missed check-ins, milestones by time, at-risk changes)."""
    from services.checkin.scheduler import Scheduler

    recorded = Scheduler(engine_for(config.database_url("checkin"))).tick()
    click.echo(f"recorded {recorded} events")
