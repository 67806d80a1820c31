"""Operations commands: dead letters, the broker topology, and the relays' checkpoints.

`nocontact dead-letters list|show|requeue` works on the `dead_letters` table (the record
of every message a consumer gave up on, with the reason) and on the components'
dead-letter queues (the same messages, parked on the broker). Requeueing republishes the
original body to the queue the component consumes (for a partitioned component, the
partition that holds the event's stream), removes the parked copy from the dead-letter
queue, and stamps the row's `requeued_at`. Consumers are idempotent, so requeueing a
message twice, or one that was meanwhile applied, changes nothing (within the consumers'
dedup window, NOCONTACT_DEDUP_WINDOW_DAYS).

`nocontact bus setup` declares exchanges and queues (what the relay would do on its first
publish) and can import infra/rabbitmq/definitions.json through the management API.

`nocontact relay list` shows each relay's checkpoint (a cursor in the feed: an event's
position and its transaction id, see shared.eventstore) and how many events of its
categories are after it; `nocontact relay reset-checkpoint NAME --to-position N | --to-start`
moves it back so the relay publishes again from there (consumers skip what they applied
within their dedup window; the command refuses to go back further unless told to). The
relays are the ones the services' workers define (services/<service>/worker.py).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
from kombu import Connection, Exchange, Producer
from sqlalchemy import Connection as DbConnection
from sqlalchemy import Engine, func, select, update

from shared import bus, config, topology
from shared.db import engine_for, read
from shared.eventstore import START, LogCursor, feed_range, head_position
from shared.relay import Relay, release_leadership, try_leadership
from shared.schema import dead_letters, events

SERVICES = ("commitment", "checkin", "notification")


def _engines(service: str | None) -> list[Engine]:
    """The database(s) holding dead letters: one service's, or every distinct one."""
    services = [service] if service else SERVICES
    urls = dict.fromkeys(config.database_url(name) for name in services)
    return [engine_for(url) for url in urls]


def _row_json(row: Any, full: bool) -> dict[str, Any]:
    out = {
        "id": row["id"],
        "component": row["component"],
        "event_id": row["event_id"],
        "event_type": row["event_type"],
        "attempts": row["attempts"],
        "failed_at": row["failed_at"].isoformat() if row["failed_at"] else None,
        "requeued_at": row["requeued_at"].isoformat() if row["requeued_at"] else None,
        "reason": row["reason"] if full else row["reason"].splitlines()[0][:200],
    }
    if full:
        out["headers"] = row["headers"]
        try:
            out["body"] = json.loads(row["body"])
        except ValueError:
            out["body"] = row["body"]  # a malformed message: shown as it arrived
    return out


def _dead_letter_depths(components: Sequence[topology.Component]) -> dict[str, int | None]:
    """Messages waiting on each component's dead-letter queue (None: not declared yet)."""
    depths: dict[str, int | None] = {}
    with bus.connect() as connection:
        connection.connect()
        for component in components:
            channel = connection.channel()
            try:
                _, count, _ = channel.queue_declare(
                    config.bus_prefix() + component.dead_letter_queue_name, passive=True
                )
                depths[component.name] = count
            except Exception:  # noqa: BLE001 - a missing queue closes the channel: nothing parked
                depths[component.name] = None
            finally:
                try:
                    channel.close()
                except Exception:  # noqa: BLE001 - already closed by the broker
                    pass
    return depths


@click.group("dead-letters")
def dead_letters_group() -> None:
    """Inspect and requeue messages the consumers gave up on."""


@dead_letters_group.command("list")
@click.option("--component", help="Only this component (e.g. checkin.inbox).")
@click.option("--service", type=click.Choice(SERVICES), help="Only this service's database.")
@click.option("--all", "include_requeued", is_flag=True, help="Include those already requeued.")
@click.option("--limit", default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_command(component: str | None, service: str | None, include_requeued: bool, limit: int,
                 as_json: bool) -> None:
    """Dead letters, oldest first, and the depth of each dead-letter queue."""
    query = select(dead_letters).order_by(dead_letters.c.id).limit(limit)
    if component:
        query = query.where(dead_letters.c.component == component)
    if not include_requeued:
        query = query.where(dead_letters.c.requeued_at.is_(None))
    for engine in _engines(service):
        with read(engine) as conn:
            rows = conn.execute(query).mappings().all()
        for row in rows:
            item = _row_json(row, full=False)
            if as_json:
                click.echo(json.dumps(item))
            else:
                click.echo(f"{item['id']:>6}  {item['component']:<20} {item['event_type'] or '-':<26} "
                           f"{item['event_id'] or '-':<36}  x{item['attempts']}  {item['failed_at']}  "
                           f"{'requeued ' + item['requeued_at'] if item['requeued_at'] else ''}{item['reason']}")
    if not as_json:
        chosen = [topology.component(component)] if component else list(topology.COMPONENTS)
        try:
            depths = _dead_letter_depths(chosen)
        except Exception as error:  # noqa: BLE001 - the table is still worth showing without a broker
            click.echo(f"dead-letter queues: broker unreachable ({error})", err=True)
            return
        for name, depth in depths.items():
            click.echo(f"dead-letter queue of {name}: {'not declared' if depth is None else depth}")


@dead_letters_group.command("show")
@click.argument("dead_letter_id", type=int)
@click.option("--service", type=click.Choice(SERVICES), help="The service whose database holds it.")
def show_command(dead_letter_id: int, service: str | None) -> None:
    """One dead letter in full: reason (with the traceback line), headers and body."""
    for engine in _engines(service):
        with read(engine) as conn:
            row = conn.execute(select(dead_letters).where(dead_letters.c.id == dead_letter_id)).mappings().first()
        if row is not None:
            click.echo(json.dumps(_row_json(row, full=True), indent=2))
            return
    raise click.ClickException(f"no dead letter {dead_letter_id}")


def _stream_of(body: str) -> str | None:
    try:
        value = json.loads(body).get("stream_id")
    except Exception:  # noqa: BLE001 - a malformed body has no stream; any partition will do
        return None
    return value if isinstance(value, str) else None


def _publishing_connection() -> Connection:
    connection = bus.connect()
    if bus.is_amqp(connection):
        # Wait for the broker's ack on each publish: the row is stamped only after it.
        connection = Connection(connection.as_uri(include_password=True),
                                transport_options={"confirm_publish": True}, connect_timeout=5)
    connection.connect()
    return connection


def _remove_parked_copies(connection: Connection, component: topology.Component, event_ids: set[str]) -> int:
    """Take the requeued messages off the component's dead-letter queue; keep the rest."""
    channel = connection.channel()
    queue = bus.dead_letter_queue(component, connection)(channel)
    queue.declare()
    held = []
    removed = 0
    # Messages stay unacked (so are not handed out again) until every one has been seen.
    while (message := queue.get(no_ack=False)) is not None:
        held.append(message)
    for message in held:
        if _guess_event_id(message.body) in event_ids:
            message.ack()
            removed += 1
        else:
            message.reject(requeue=True)
    channel.close()
    return removed


def _guess_event_id(body: bytes | str) -> str | None:
    try:
        value = json.loads(body).get("id")
    except Exception:  # noqa: BLE001 - malformed bodies have no id to match
        return None
    return str(value) if value is not None else None


def _selected(engine: Engine, ids: Sequence[int], component: str | None, all_pending: bool) -> list[Any]:
    query = select(dead_letters).where(dead_letters.c.requeued_at.is_(None)).order_by(dead_letters.c.id)
    if ids:
        query = query.where(dead_letters.c.id.in_(ids))
    elif not all_pending:
        return []
    if component:
        query = query.where(dead_letters.c.component == component)
    with read(engine) as conn:
        return list(conn.execute(query).mappings().all())


def requeue(engine: Engine, rows: Sequence[Any]) -> Iterator[tuple[Any, str]]:
    """Republish each row's body to its component's queue, then stamp `requeued_at`."""
    with _publishing_connection() as connection:
        producer = Producer(connection.channel(), exchange=Exchange(""))  # the default exchange
        by_component: dict[str, set[str]] = {}
        for row in rows:
            component = topology.component(row["component"])
            queue_name = bus.queue_for_stream(component, connection, _stream_of(row["body"]))
            headers = {key: value for key, value in (row["headers"] or {}).items()
                       if not key.startswith("x-dead-letter") and key != "x-attempts"}
            headers["x-requeued-dead-letter"] = row["id"]
            producer.publish(
                row["body"].encode("utf-8"),
                routing_key=queue_name,
                delivery_mode=2,
                content_type="application/json",
                content_encoding="utf-8",
                headers=headers,
                **({"message_id": row["event_id"]} if row["event_id"] else {}),
            )
            with engine.begin() as conn:
                conn.execute(update(dead_letters).where(dead_letters.c.id == row["id"])
                             .values(requeued_at=datetime.now(UTC)))
            if row["event_id"]:
                by_component.setdefault(component.name, set()).add(row["event_id"])
            yield row, queue_name
        for name, event_ids in by_component.items():
            _remove_parked_copies(connection, topology.component(name), event_ids)


@dead_letters_group.command("requeue")
@click.argument("dead_letter_ids", type=int, nargs=-1)
@click.option("--all", "all_pending", is_flag=True, help="Every dead letter not yet requeued.")
@click.option("--component", help="Only this component's dead letters.")
@click.option("--service", type=click.Choice(SERVICES), help="Only this service's database.")
def requeue_command(dead_letter_ids: tuple[int, ...], all_pending: bool, component: str | None,
                    service: str | None) -> None:
    """Republish dead letters to their component's queue (after the cause is fixed)."""
    if not dead_letter_ids and not all_pending:
        raise click.UsageError("name dead letter ids, or pass --all")
    count = 0
    for engine in _engines(service):
        rows = _selected(engine, dead_letter_ids, component, all_pending)
        for row, queue_name in requeue(engine, rows):
            click.echo(f"requeued {row['id']} ({row['event_type'] or 'malformed'} {row['event_id'] or ''}) "
                       f"to {queue_name}")
            count += 1
    click.echo(f"{count} dead letter(s) requeued")


@click.group("bus")
def bus_group() -> None:
    """The broker: topology and definitions."""


@bus_group.command("setup")
@click.option("--definitions", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A RabbitMQ definitions file to import through the management API first.")
@click.option("--management-url", envvar="NOCONTACT_BROKER_MANAGEMENT_URL",
              help="e.g. http://rabbitmq:15672 (credentials are taken from the broker URL).")
def setup_command(definitions: Path | None, management_url: str | None) -> None:
    """Import definitions (policies, exchanges) and declare every component's queues."""
    if definitions is not None:
        if not management_url:
            raise click.UsageError("--definitions needs --management-url or NOCONTACT_BROKER_MANAGEMENT_URL")
        import_definitions(management_url, json.loads(definitions.read_text()))
        click.echo(f"imported {definitions}")
    with bus.connect() as connection:
        connection.connect()
        bus.declare_topology(connection)
        for component in topology.COMPONENTS:
            count = bus.partition_count(component, connection)
            layout = "one queue" if count is None else f"{count} single-active-consumer partitions"
            click.echo(f"declared {component.name}: {layout}")


def import_definitions(management_url: str, definitions: dict[str, Any]) -> None:
    """POST the definitions to RabbitMQ's management API (what `rabbitmqadmin import` does)."""
    import httpx
    from kombu.utils.url import url_to_parts

    parts = url_to_parts(config.broker_url())
    response = httpx.post(
        management_url.rstrip("/") + "/api/definitions",
        json=definitions,
        auth=(parts.username or "guest", parts.password or "guest"),
        timeout=30,
    )
    if response.status_code >= 300:
        raise click.ClickException(f"definitions import failed: {response.status_code} {response.text[:300]}")


# -- relays ---------------------------------------------------------------------------------


def relays() -> dict[str, Relay]:
    """Every relay the services run, by name, as their workers define it (its categories
    and its database)."""
    found: dict[str, Relay] = {}
    for service in SERVICES:
        try:
            module = importlib.import_module(f"services.{service}.worker")
        except ModuleNotFoundError as error:
            if error.name != f"services.{service}.worker":
                raise
            continue
        # parts() only builds the parts; nothing connects until one runs.
        for part in module.parts(engine_for(config.database_url(service))).values():
            owner = getattr(part, "__self__", None)
            if isinstance(owner, Relay):
                found[owner.name] = owner
    return found


def _relay(name: str) -> Relay:
    known = relays()
    if name not in known:
        raise click.BadParameter(f"no relay {name!r}; the relays are: {', '.join(sorted(known))}",
                                 param_hint="NAME")
    return known[name]


#: How long before the dedup window's edge `relay reset-checkpoint` counts an event as
#: forgotten already (or at most half the window).
RESET_MARGIN = timedelta(days=1)


def _behind(conn: DbConnection, relay: Relay, cursor: LogCursor, *, recorded_before: datetime | None = None) -> int:
    """Events of the relay's categories after `cursor`: what it has yet to publish (of them,
    those recorded before `recorded_before`, if given)."""
    query = select(func.count()).select_from(events).where(feed_range(conn, cursor))
    if relay.categories is not None:
        query = query.where(events.c.category.in_(relay.categories))
    if recorded_before is not None:
        query = query.where(events.c.recorded_at < recorded_before)
    return int(conn.execute(query).scalar_one())


def _running(relay: Relay) -> bool | None:
    """Whether a copy of the relay is publishing (it holds its lock); None: SQLite, which
    has no such lock to look at."""
    if relay.engine.dialect.name != "postgresql":
        return None
    probe = try_leadership(relay.engine, relay.name)
    if probe is None:
        return True
    release_leadership(probe)
    return False


def _shown(cursor: LogCursor) -> str:
    if cursor == START:
        return "start of the log"
    return f"position {cursor.position} (transaction {cursor.xid})" if cursor.xid else f"position {cursor.position}"


@click.group("relay")
def relay_group() -> None:
    """The relays (store -> broker): their checkpoints."""


@relay_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def relay_list_command(as_json: bool) -> None:
    """Each relay's checkpoint, the events it has yet to publish, and whether it runs."""
    for name, relay in sorted(relays().items()):
        with read(relay.engine) as conn:
            cursor = relay.checkpoint.cursor(conn)
            behind = _behind(conn, relay, cursor)
            head = head_position(conn)
        running = _running(relay)
        if as_json:
            click.echo(json.dumps({"name": name, "position": cursor.position, "xid": cursor.xid, "lag": behind,
                                   "head": head, "categories": relay.categories, "running": running}))
        else:
            state = {True: "running", False: "stopped", None: "-"}[running]
            click.echo(f"{name:<20} {_shown(cursor):<40} lag {behind:<8} head {head:<10} {state}")


@relay_group.command("reset-checkpoint")
@click.argument("name")
@click.option("--to-position", type=click.IntRange(min=0),
              help="Publish again every event after the one at this position (see `nocontact events tail`).")
@click.option("--to-start", is_flag=True, help="Publish the whole log again.")
@click.option("--reapply-beyond-window", is_flag=True,
              help="Go on even though some events are (nearly) older than the consumers' dedup window "
                   "(NOCONTACT_DEDUP_WINDOW_DAYS): consumers that applied them will apply them again.")
def reset_checkpoint_command(name: str, to_position: int | None, to_start: bool, reapply_beyond_window: bool) -> None:
    """Move relay NAME's checkpoint back, so that it publishes again from there.

    Consumers skip what they applied within their dedup window (NOCONTACT_DEDUP_WINDOW_DAYS,
    30 days; run this with the consumers' value): they have forgotten older events, and
    would apply them again while skipping the later ones they remember. The commitments
    and coach assignments the check-in and notification services copy keep the version
    behind each value and ignore an older event, except rows unchanged since those versions
    were added (migrations checkin_0006, notification_0005): until their next event or a
    rebuild, those can still go back to an older state (a coach's assignment, say).
    Webhooks whose messages are past NOCONTACT_RETENTION_DAYS are sent again, and a coach
    assigned since an event gets a feed item for it. When some of the events to publish are
    older than the window, or will be within a day (consumers forget hourly, the relay may
    start later), the command refuses unless given --reapply-beyond-window. Stop the relay
    first: on PostgreSQL the command refuses while a copy holds the relay's lock (and holds
    it itself while it writes, so no standby starts meanwhile). SQLite has no such lock: a
    relay running then may write its own checkpoint over this one.
    """
    if to_start == (to_position is not None):
        raise click.UsageError("give exactly one of --to-position N and --to-start")
    relay = _relay(name)
    engine = relay.engine
    holder = None
    if engine.dialect.name == "postgresql":
        holder = try_leadership(engine, name)
        if holder is None:
            raise click.ClickException(
                f"{name} is running (a relay process holds its lock): stop it first "
                f"(docker compose stop <service>-relay, or the service's worker), then reset")
    try:
        with engine.begin() as conn:
            before = relay.checkpoint.cursor(conn)
            head = head_position(conn)
            if to_position is not None and to_position > head:
                raise click.BadParameter(f"the log ends at position {head}", param_hint="--to-position")
            relay.checkpoint.set(conn, START if to_start else to_position)  # type: ignore[arg-type]
            after = relay.checkpoint.cursor(conn)
            behind = _behind(conn, relay, after)
            window = config.dedup_window()
            # A margin: consumers forget hourly, and the relay may start some time after this.
            remembered = window - min(RESET_MARGIN, window / 2)
            forgotten = _behind(conn, relay, after, recorded_before=datetime.now(UTC) - remembered)
            if forgotten and not reapply_beyond_window:
                # Raised inside the transaction: the checkpoint stays where it was.
                raise click.ClickException(
                    f"{forgotten} of the {behind} event(s) to publish again were recorded more than "
                    f"{remembered.total_seconds() / 86400:g} days ago, at the edge of "
                    "the consumers' dedup window (NOCONTACT_DEDUP_WINDOW_DAYS) or beyond: consumers that "
                    "applied them would apply them again: webhooks whose messages are past "
                    "NOCONTACT_RETENTION_DAYS are sent again, a coach assigned since an event gets a feed item "
                    "for it, and commitments and coach assignments unchanged since their versions were added "
                    "(migrations checkin_0006, notification_0005) can go back to an older state until their "
                    "next event or a rebuild. Give "
                    "--reapply-beyond-window to go on (a consumer that never saw them), or a later "
                    "--to-position")
    finally:
        if holder is not None:
            release_leadership(holder)
    click.echo(f"{name}: checkpoint moved from {_shown(before)} to {_shown(after)}; "
               f"{behind} event(s) to publish when it runs")
    if holder is None:
        click.echo(f"note: SQLite has no relay lock; if {name} was running (make run, nocontact worker), "
                   "it may have written its own checkpoint over this one: stop it and reset again", err=True)


commands = [dead_letters_group, bus_group, relay_group]
