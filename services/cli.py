"""The `nocontact` command: run the suite, migrate, and operate it.

Each service adds its own commands in `services/<service>/cli.py` (a click group named
after the service), so `nocontact checkin rebuild` lives next to the code it drives.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import click

from services.cli_errors import CommandGroup
from shared import config
from shared.db import engine_for, migrate

SERVICES = ("commitment", "checkin", "notification")


@click.group(cls=CommandGroup)
@click.version_option(config.version(), prog_name="nocontact", message="%(prog)s %(version)s")
@click.option("--debug", is_flag=True, help="Show the traceback of a failure (also NOCONTACT_DEBUG=1).")
def main(debug: bool) -> None:
    """nocontact: keep no contact, with the platforms that support it.

    A failure is one line on stderr and an exit code: 1 failed, 2 bad arguments, 69 the
    database or broker does not answer, 78 the database is not migrated.
    """


@main.command("migrate")
def migrate_command() -> None:
    """Bring every service's database to the newest schema, as its owner
    (NOCONTACT_MIGRATION_DATABASE_URL), granting the role each service connects as
    (NOCONTACT_DATABASE_URL) only what it needs."""
    plan: dict[str, set[str]] = {}
    for service in SERVICES:
        roles = plan.setdefault(config.migration_database_url(service), set())
        role = config.app_database_role(service)
        if role:
            roles.add(role)
    for url, roles in sorted(plan.items()):
        migrate(url, app_roles=sorted(roles))
    granted = sorted(set().union(*plan.values()))
    click.echo(f"migrated {len(plan)} database(s)" + (f"; granted {', '.join(granted)}" if granted else ""))


@main.command("run")
@click.option("--no-seed", is_flag=True, help="Do not create the demo tenant and clients.")
def run_command(no_seed: bool) -> None:
    """Start the whole suite in the foreground; Ctrl-C stops it cleanly."""
    from services.runner import run_suite

    sys.exit(run_suite(seed=not no_seed))


@main.command("worker")
@click.argument("service", type=click.Choice(SERVICES))
@click.option("--only", multiple=True, help="Run only these parts (repeatable).")
def worker_command(service: str, only: tuple[str, ...]) -> None:
    """Run a service's background parts (relay, consumers, scheduler, deliveries)."""
    from shared import logging as nclog
    from shared.worker import run_parts

    module = importlib.import_module(f"services.{service}.worker")
    # Every malformed setting named at once, before logging (it reads one) or the parts
    # (they read others) fail on the first.
    config.check()
    nclog.configure(f"{service}-worker")
    parts = module.parts(engine_for(config.database_url(service)))
    if only:
        unknown = set(only) - set(parts)
        if unknown:
            raise click.BadParameter(f"unknown parts {sorted(unknown)}; known: {sorted(parts)}")
        parts = {name: part for name, part in parts.items() if name in only}
    run_parts(parts)


@main.group("events")
def events_group() -> None:
    """Look at the event store."""


@events_group.command("tail")
@click.option("--after", default=0, help="Start after this global position.")
@click.option("--follow/--no-follow", default=False)
@click.option("--limit", default=100)
def events_tail(after: int, follow: bool, limit: int) -> None:
    """Print events as JSON envelopes, oldest first."""
    import time

    from shared.db import read
    from shared.envelope import to_envelope
    from shared.eventstore import read_all

    engine = engine_for(config.database_url())
    position = after
    while True:
        with read(engine) as conn:
            batch = read_all(conn, position, limit=limit)
        for event in batch:
            click.echo(json.dumps(to_envelope(event)))
        if batch:
            position = batch[-1].position
        if not follow:
            return
        if not batch:
            time.sleep(0.5)


@main.group("members")
def members_group() -> None:
    """A member's data across the services (CONTRACT v1.1, "Members: their data is theirs")."""


@members_group.command("export")
@click.argument("tenant_id")
@click.argument("member_id")
def members_export(tenant_id: str, member_id: str) -> None:
    """Print everything the services hold about a member as one JSON document: each
    service's part (as its GET /v1/members/{id}/export answers), read from its database.

    A service that holds nothing about the member has null as its part; one that cannot
    export yet is listed under "unavailable" and named on stderr. Exit status 1 when no
    service holds anything."""
    from shared.clock import utcnow

    now = utcnow()
    parts: dict[str, object] = {}
    unavailable: dict[str, str] = {}
    for service in SERVICES:
        try:
            module = importlib.import_module(f"services.{service}.members")
        except ModuleNotFoundError as error:
            if error.name != f"services.{service}.members":
                raise
            unavailable[service] = "this service has no member export yet"
            continue
        parts[service] = module.export_member(engine_for(config.database_url(service)), tenant_id, member_id, now)
    document = {"member_id": member_id, "tenant_id": tenant_id, "exported_at": now.isoformat(),
                "services": parts, "unavailable": unavailable}
    click.echo(json.dumps(document, indent=2, sort_keys=True))
    for service, why in unavailable.items():
        click.echo(f"note: {service}: {why}; its data is not in this export", err=True)
    if not any(parts.values()):
        click.echo(f"no service holds anything about member {member_id} of tenant {tenant_id}", err=True)
        sys.exit(1)


@main.command("openapi")
@click.argument("service", required=False, type=click.Choice(SERVICES))
@click.option("--merged", is_flag=True, help="One document of every service's API (the combined reference).")
def openapi_command(service: str | None, merged: bool) -> None:
    """Print a service's OpenAPI document, or with --merged the combined reference of all
    three (what each service serves at /openapi.json and /openapi-all.json)."""
    from shared import openapi

    if merged == (service is not None):
        raise click.UsageError("name a SERVICE, or give --merged")
    document = openapi.combined() if service is None else openapi.service_document(service)
    click.echo(json.dumps(document, indent=2))


@main.group("keyring")
def keyring_group() -> None:
    """Members' data keys and the master key that wraps them (shared.keyring)."""


@keyring_group.command("rotate-master")
@click.option("--previous-key-file", "previous_files", multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A file holding a retired master key (base64), e.g. the old var/master_key. Repeatable; "
                   "NOCONTACT_MASTER_KEY_PREVIOUS is read too.")
def keyring_rotate_master(previous_files: tuple[Path, ...]) -> None:
    """Re-wrap every member's key, and re-seal the webhook signing secrets, under the
    current NOCONTACT_MASTER_KEY. Events are not touched. Safe to run while the services
    run (give them the retired key in NOCONTACT_MASTER_KEY_PREVIOUS meanwhile) and to run
    again; prints what it changed."""
    from services.notification.handlers import reseal_endpoints
    from shared import keyring

    retired = [path.read_text().strip() for path in previous_files]
    for url in sorted({config.database_url(service) for service in SERVICES}):
        engine = engine_for(url)
        rotation = keyring.rotate_master(engine, retired=retired)
        secrets = reseal_endpoints(engine, retired=retired)
        click.echo(f"{engine.url.render_as_string(hide_password=True)}: {rotation.rewrapped} member key(s) re-wrapped, "
                   f"{rotation.already_current} already current; {secrets} webhook secret(s) re-sealed")


def _register_service_commands() -> None:
    for service in SERVICES:
        try:
            module = importlib.import_module(f"services.{service}.cli")
        except ModuleNotFoundError as error:
            if error.name != f"services.{service}.cli":
                raise
            continue
        # A service exports `commands`: one click command/group, or a list of them.
        exported = module.commands
        for command in exported if isinstance(exported, list | tuple) else [exported]:
            main.add_command(command)


_register_service_commands()

from services import ops  # noqa: E402 - operations: dead letters, broker setup (services/ops.py)

for _command in ops.commands:
    main.add_command(_command)


if __name__ == "__main__":
    main()
