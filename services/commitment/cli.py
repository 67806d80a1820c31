"""Commands of the commitment service: `nocontact commitment ...` and `nocontact tenants ...`."""

from __future__ import annotations

import click

from shared import config
from shared.clock import utcnow
from shared.commands import Context
from shared.db import engine_for, migrate, read
from shared.errors import DomainError, ValidationFailed
from shared.projection import rebuild

# How the commands of this CLI are recorded in event metadata.
ACTOR = "operator:cli"


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
        tenant, key = create_tenant(engine_for(url), name=name, now=utcnow(), actor=ACTOR)
    except ValidationFailed as error:
        raise click.BadParameter(error.message, param_hint=error.field) from error
    click.echo(f"tenant_id: {tenant.id}")
    click.echo(f"api_key:   {key.api_key}")


@tenants_group.command("list")
def list_tenants_command() -> None:
    """Every tenant: id, created, working API keys, name."""
    from .queries import tenants

    with read(engine_for(config.database_url("commitment"))) as conn:
        rows = tenants(conn)
    for row in rows:
        click.echo(f"{row.tenant_id}  {row.created_at.isoformat()}  keys: {row.working_keys}  {row.name}")


@click.group("keys")
def keys_group() -> None:
    """Manage a tenant's admin API keys (as the operator: also for a tenant with none left)."""


def _operator(tenant_id: str) -> Context:
    return Context(tenant_id=tenant_id, actor=ACTOR)


@keys_group.command("list")
@click.argument("tenant_id")
def list_keys_command(tenant_id: str) -> None:
    """The tenant's keys: id, shown prefix, issued, revoked (the keys themselves are never kept)."""
    from .queries import load_tenant

    with read(engine_for(config.database_url("commitment"))) as conn:
        try:
            keys = load_tenant(conn, tenant_id).api_keys.values()
        except DomainError as error:
            raise click.ClickException(error.message) from error
    for key in keys:
        revoked = f"revoked {key.revoked_at.isoformat()}" if key.revoked and key.revoked_at else "working"
        click.echo(f"{key.key_id}  {key.prefix}...  issued {key.issued_at.isoformat() if key.issued_at else '-'}  "
                   f"{revoked}")


@keys_group.command("issue")
@click.argument("tenant_id")
def issue_key_command(tenant_id: str) -> None:
    """Issue an admin API key to the tenant and print it (shown only this once)."""
    from .handlers import issue_api_key

    try:
        key = issue_api_key(engine_for(config.database_url("commitment")), _operator(tenant_id), now=utcnow())
    except DomainError as error:
        raise click.ClickException(error.message) from error
    click.echo(f"key_id:  {key.key_id}")
    click.echo(f"api_key: {key.api_key}")


@keys_group.command("revoke")
@click.argument("tenant_id")
@click.argument("key_id")
def revoke_key_command(tenant_id: str, key_id: str) -> None:
    """Revoke one of the tenant's keys, and every token it minted, on every service."""
    from .handlers import revoke_api_key

    try:
        revoke_api_key(engine_for(config.database_url("commitment")), _operator(tenant_id), key_id, now=utcnow())
    except DomainError as error:
        raise click.ClickException(error.message) from error
    click.echo(f"revoked {key_id}")


commands = [commitment_group, tenants_group, keys_group]
