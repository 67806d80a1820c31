"""Commands of the commitment service: `nocontact commitment ...` and `nocontact tenants ...`."""

from __future__ import annotations

import click

from shared import config
from shared.clock import utcnow
from shared.db import engine_for, migrate
from shared.errors import ValidationFailed
from shared.projection import rebuild


@click.group("commitment")
def commitment_group() -> None:
    """Operate the commitment service."""


@commitment_group.command("rebuild")
def rebuild_command() -> None:
    """Rebuild the read models (credentials, commitments, coach assignments) from the store."""
    from .projections import PROJECTIONS

    engine = engine_for(config.database_url("commitment"))
    for projection in PROJECTIONS:
        report = rebuild(engine, projection)
        click.echo(f"{report.projection}: {report.events} events in {report.seconds:.3f}s "
                   f"({report.events_per_second:,.0f} events/s)")


@commitment_group.command("complete-due")
def complete_due_command() -> None:
    """Record commitment.completed now for every commitment whose period is over."""
    from .handlers import complete_due

    engine = engine_for(config.database_url("commitment"))
    click.echo(f"completed {complete_due(engine, now=utcnow())} commitment(s)")


@click.group("tenants")
def tenants_group() -> None:
    """Manage tenants (partner platforms)."""


@tenants_group.command("create")
@click.argument("name")
def create_tenant_command(name: str) -> None:
    """Create a tenant and print its id and first admin API key (shown only this once)."""
    from .handlers import create_tenant

    url = config.database_url("commitment")
    migrate(url)  # idempotent: lets a fresh checkout create its first tenant in one step
    try:
        tenant, key = create_tenant(engine_for(url), name=name, now=utcnow(), actor="operator:cli")
    except ValidationFailed as error:
        raise click.BadParameter(error.message, param_hint=error.field) from error
    click.echo(f"tenant_id: {tenant.id}")
    click.echo(f"api_key:   {key.api_key}")


commands = [commitment_group, tenants_group]
