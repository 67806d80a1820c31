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

    Runs while the service serves. Check-in rows, state rows and settings are built
    aside (shadow tables filled without any lock) and swapped in by one short transaction
    holding the append lock: appends pause only for that window, which is reported. With
    --with-inbox the commitments and credentials (small: about one event per commitment and
    key) are replayed first by the lock-based rebuild, which pauses appends while it runs.
    """
    from services.checkin.profiles import profiles_projection
    from services.checkin.projections import CREDENTIALS_PROJECTION, inbox_projection
    from services.checkin.rebuild import rebuild_checkin
    from shared.projection import rebuild

    # The owner's connection: building aside creates and renames tables (DDL), which the
    # services' role may not do; the swapped-in tables keep the role's privileges.
    engine = engine_for(config.migration_database_url("checkin"))
    if with_inbox:
        for projection in (CREDENTIALS_PROJECTION, inbox_projection(), profiles_projection()):
            report = rebuild(engine, projection)
            click.echo(
                f"{report.projection}: {report.events} events in {report.seconds:.2f}s "
                f"({report.events_per_second:,.0f} events/s; lock-based, appends paused throughout)"
            )
    aside = rebuild_checkin(engine)
    click.echo(
        f"{aside.projection}: {aside.events} events in {aside.seconds:.2f}s "
        f"({aside.events_per_second:,.0f} events/s); appends paused {aside.paused_seconds * 1000:.0f} ms "
        f"for the swap ({aside.events_in_pause} events caught up in it)"
    )


@commands.command("tick")
def tick_command() -> None:
    """Run one scheduler pass now (missed check-ins, milestones by time, at-risk changes)."""
    from services.checkin.scheduler import Scheduler

    recorded = Scheduler(engine_for(config.database_url("checkin"))).tick()
    click.echo(f"recorded {recorded} events")


@commands.command("sign-in-link")
@click.option("--coach", "coach_id", required=True, help="The coach whose dashboard the link opens.")
@click.option("--ttl", "ttl_seconds", type=click.IntRange(60, 24 * 3600), default=15 * 60, show_default=True,
              help="Seconds the link works (once).")
@click.option("--api-key", envvar="NOCONTACT_API_KEY", required=True,
              help="An admin API key of the coach's tenant (or NOCONTACT_API_KEY): revoking it voids the link.")
def sign_in_link_command(coach_id: str, ttl_seconds: int, api_key: str) -> None:
    """Print a single-use sign-in link to a coach's dashboard (as POST /v1/dashboard/sign-in-links)."""
    from services.checkin.dashboard.sessions import mint_link
    from services.checkin.tables import CREDENTIALS
    from shared.auth import holds_credentials, lookup, present
    from shared.clock import utcnow

    engine = engine_for(config.database_url("checkin"))
    with engine.begin() as conn:
        caller = lookup(conn, present(f"Bearer {api_key}"), None if holds_credentials("checkin") else CREDENTIALS)
        if caller is None or caller.role != "admin":
            raise click.ClickException("that is not a valid admin API key")
        secret, expires_at = mint_link(conn, caller, coach_id, ttl_seconds, utcnow())
    click.echo(f"{config.service_url('checkin')}/dashboard#link={secret}")
    click.echo(f"works once, until {expires_at.isoformat()}", err=True)
