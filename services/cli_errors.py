"""What `nocontact` says when the world is not as a command needs it: one line on stderr
and an exit code a script can test, never a traceback (`nocontact --debug ...` or
NOCONTACT_DEBUG=1 shows it).

| exit code | meaning |
|---|---|
| 1 | the command failed (its message says why) |
| 2 | bad arguments (click's usage errors, or a value a rule refuses) |
| 69 | the database, the broker (or its management API) does not answer, or refuses the connection |
| 78 | the database is not migrated to this version's schema: run `nocontact migrate` |
"""

from __future__ import annotations

import os
from typing import Any

import click
from sqlalchemy.exc import DBAPIError

from shared import config
from shared.errors import DomainError, ValidationFailed
from shared.logging import redact

EXIT_FAILED = 1
EXIT_USAGE = 2  # click's, for bad arguments
EXIT_UNAVAILABLE = 69  # sysexits.h EX_UNAVAILABLE
EXIT_NOT_MIGRATED = 78  # sysexits.h EX_CONFIG

#: How long a command waits for PostgreSQL to accept a connection (libpq waits forever for
#: a host that drops packets); a variable the caller sets wins.
CONNECT_TIMEOUT_S = "10"

# SQLSTATE classes of a connection that could not be made or used: connection exception,
# insufficient resources (too many clients), operator intervention (the server is starting
# or shutting down), invalid authorization, invalid catalog name (no such database).
_CANNOT_CONNECT = ("08", "53", "57", "28", "3D")
# undefined_table, undefined_column: a schema older than the code.
_NOT_MIGRATED = ("42P01", "42703")


class CommandGroup(click.Group):
    """The `nocontact` group: a subcommand's failure becomes one line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        os.environ.setdefault("PGCONNECT_TIMEOUT", CONNECT_TIMEOUT_S)
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as error:
            if ctx.params.get("debug") or _debugging():
                raise
            message, code = explain(error)
            click.echo(f"nocontact: {message}", err=True)
            ctx.exit(code)


def _debugging() -> bool:
    """NOCONTACT_DEBUG, read while a failure is being reported: a malformed value must not
    replace the line about that failure (it may be a setting's) with its own traceback."""
    try:
        return config.flag("NOCONTACT_DEBUG")
    except config.SettingError:
        return False


def explain(error: BaseException) -> tuple[str, int]:
    """The line to print for `error`, and the exit code."""
    if isinstance(error, config.SettingError):  # names the variable, its value, what it must be
        return str(error), EXIT_USAGE
    if isinstance(error, DBAPIError):
        return _database(error)
    if isinstance(error, ValidationFailed):  # a value a rule refuses ("field: why"): bad arguments
        return str(error), EXIT_USAGE
    if isinstance(error, DomainError):  # the state does not allow it (not found, conflict...)
        return error.message, EXIT_FAILED
    broker = _broker(error)
    if broker is not None:
        return broker
    import httpx

    if isinstance(error, httpx.TransportError):  # an HTTP API a command calls (RabbitMQ's management API)
        try:
            where = str(error.request.url.copy_with(query=None, userinfo=b""))
        except RuntimeError:  # raised without a request
            where = "an HTTP API"
        return f"cannot reach {where}: {_first_line(error)}", EXIT_UNAVAILABLE
    return f"{type(error).__name__}: {_first_line(error)} (`nocontact --debug ...` shows where)", EXIT_FAILED


def _database(error: DBAPIError) -> tuple[str, int]:
    cause = error.orig
    sqlstate = getattr(cause, "sqlstate", None)
    text = _first_line(cause)
    lowered = text.lower()
    if sqlstate in _NOT_MIGRATED or lowered.startswith(("no such table", "no such column")):
        return (f"the database is not migrated to this version's schema ({text}); run `nocontact migrate`",
                EXIT_NOT_MIGRATED)
    connecting = error.connection_invalidated or (sqlstate or "").startswith(_CANNOT_CONNECT)
    if connecting or (sqlstate is None and _is_connection_failure(lowered)):
        return (f"cannot reach the database: {text} (database: {shown_url(config.database_url())})",
                EXIT_UNAVAILABLE)
    return f"database error: {text}", EXIT_FAILED


def _is_connection_failure(message: str) -> bool:
    # A failure with no SQLSTATE happened before the server said anything: no server at
    # that address, a name that does not resolve, a timeout; SQLite: a file it cannot open.
    return message.startswith(("connection", "unable to open", "could not", "couldn't")) or "timeout" in message


def _broker(error: BaseException) -> tuple[str, int] | None:
    from amqp.exceptions import AMQPError
    from kombu.exceptions import OperationalError as BrokerUnavailable

    if isinstance(error, BrokerUnavailable | AMQPError | ConnectionError | TimeoutError):
        return (f"cannot reach the broker: {_first_line(error)} (broker: {shown_url(config.broker_url())})",
                EXIT_UNAVAILABLE)
    return None


def _first_line(error: BaseException | None) -> str:
    lines = str(error).strip().splitlines()
    return redact(lines[0].strip() if lines else type(error).__name__)


def shown_url(url: str) -> str:
    """A database or broker URL fit to print: the password masked."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))
