"""Configuration read from the environment, with embedded, server-less defaults.

Small functions, not a settings object, so that every process reads the environment when
it needs a value (after gunicorn forks, in tests that set variables per test).

Strict parsing, one way (`number`, `flag`): a malformed value raises `SettingError` naming
the variable, its value and what it must be. A value read at each request or loop turn
(a rate limit, a poll interval) would otherwise fail there, as a 500 or a loop that spins
(a poll interval of 0) or dies; so every getter marked `setting` is read once at start
(`check`, from shared.web.create_app and shared.worker.run_parts), and a process with a
malformed setting does not start.
"""

from __future__ import annotations

import base64
import math
import operator
import os
import secrets
import time
from collections.abc import Callable
from datetime import timedelta
from importlib.metadata import version as _distribution_version
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
N = TypeVar("N", int, float)


class SettingError(ValueError):
    """An environment variable is malformed (the message names it, its value, what it must be)."""


_SETTINGS: list[Callable[[], object]] = []


def setting(getter: Callable[[], T]) -> Callable[[], T]:
    """Mark `getter` (no arguments) as one `check` reads at start."""
    _SETTINGS.append(getter)
    return getter


def check() -> None:
    """Read every setting marked `setting` (of the modules this process imported): a
    `SettingError` naming each malformed one, so the process stops at start."""
    problems: list[str] = []
    for getter in _SETTINGS:
        try:
            getter()
        except ValueError as error:  # SettingError, or a parser's own (the retry schedule's)
            problems.append(str(error))
    if problems:
        raise SettingError("; ".join(dict.fromkeys(problems)))


def number(name: str, default: N, *, minimum: float | None = None, above: float | None = None,
           maximum: float | None = None, below: float | None = None) -> N:
    """The number in `name` (`default` when unset or blank): whole if `default` is an int,
    else any finite number, within the bounds given; else `SettingError`."""
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    text = raw.strip()
    whole = isinstance(default, int)
    try:
        # int() and float() would take "1_000" and non-ASCII digits: plain ASCII only.
        if not text.isascii() or "_" in text or (whole and not text.lstrip("+-").isdigit()):
            raise ValueError(text)
        value = int(text) if whole else float(text)
    except ValueError:
        raise SettingError(f"{name}={raw!r} is not a {'whole number' if whole else 'number'}") from None
    if not math.isfinite(value):
        raise SettingError(f"{name}={raw!r} is not a finite number")
    given = [(said, bound, holds) for said, bound, holds in (
        ("at least", minimum, operator.ge), ("above", above, operator.gt),
        ("at most", maximum, operator.le), ("under", below, operator.lt),
    ) if bound is not None]
    if not all(holds(value, bound) for _, bound, holds in given):
        wanted = " and ".join(f"{said} {bound}" for said, bound, _ in given)
        raise SettingError(f"{name}={raw!r} must be {wanted}")
    return value  # type: ignore[return-value]


# The source checkout, for the tests and benchmarks that run from it. Installed code never
# reads files through it: package data is found with importlib.resources (infra/__init__.py)
# and data lives in var_dir().
REPO_ROOT = Path(__file__).resolve().parent.parent


def version() -> str:
    """The installed nocontact's version, from the package metadata (pyproject.toml)."""
    return _distribution_version("nocontact")


def var_dir() -> Path:
    """Where embedded data lives: the SQLite store, the filesystem broker, the secret key.

    `./var` of the working directory unless NOCONTACT_VAR_DIR says otherwise: never inside
    the installed package (a wheel's site-packages is no place for a database).
    """
    path = Path(os.environ.get("NOCONTACT_VAR_DIR") or Path.cwd() / "var").absolute()
    path.mkdir(parents=True, exist_ok=True)
    return path


def database_url(service: str | None = None) -> str:
    """SQLAlchemy URL of the event store and read models.

    A service may be given its own database with NOCONTACT_<SERVICE>_DATABASE_URL; by
    default all share one, which keeps each service's append and read-model update in one
    transaction and lets a projection of another service's events be rebuilt from the log.
    """
    if service:
        own = os.environ.get(f"NOCONTACT_{service.upper()}_DATABASE_URL")
        if own:
            return own
    url = os.environ.get("NOCONTACT_DATABASE_URL")
    if url:
        return url
    return f"sqlite:///{var_dir() / 'nocontact.sqlite3'}"


@setting
def db_pool_size() -> int:
    """NOCONTACT_DB_POOL_SIZE: connections a process keeps open (PostgreSQL)."""
    return number("NOCONTACT_DB_POOL_SIZE", 5, minimum=1)


@setting
def db_max_overflow() -> int:
    """NOCONTACT_DB_MAX_OVERFLOW: connections a process may open beyond the pool, briefly."""
    return number("NOCONTACT_DB_MAX_OVERFLOW", 10, minimum=0)


@setting
def db_pool_recycle_s() -> int:
    """NOCONTACT_DB_POOL_RECYCLE_S: the age at which a pooled connection is replaced."""
    return number("NOCONTACT_DB_POOL_RECYCLE_S", 1800, minimum=1)


def migration_database_url(service: str | None = None) -> str:
    """URL `nocontact migrate` connects with: the schema's owner. The services connect as a
    role that may only do what they need (`shared.db.grant_app_role`); the owner may change
    the schema, and so the append-only trigger, which the services' role may not.

    NOCONTACT_<SERVICE>_MIGRATION_DATABASE_URL, else NOCONTACT_MIGRATION_DATABASE_URL, else
    the service's own URL (the embedded and development setup: one role does everything).
    """
    if service:
        own = os.environ.get(f"NOCONTACT_{service.upper()}_MIGRATION_DATABASE_URL")
        if own:
            return own
    return os.environ.get("NOCONTACT_MIGRATION_DATABASE_URL") or database_url(service)


def app_database_role(service: str | None = None) -> str | None:
    """The role the service connects as, when it is not the one migrations run as: the
    role `nocontact migrate` grants the service's privileges to (None: the same role)."""
    from sqlalchemy import make_url

    app, owner = make_url(database_url(service)), make_url(migration_database_url(service))
    if app.get_backend_name() != "postgresql" or not app.username or app.username == owner.username:
        return None
    return app.username


def broker_url() -> str:
    """Kombu URL; the default filesystem transport needs no server and spans processes."""
    url = os.environ.get("NOCONTACT_BROKER_URL")
    if url:
        return url
    return "filesystem://"


def broker_transport_options() -> dict[str, object]:
    """Folders of the filesystem transport (ignored by AMQP)."""
    if not broker_url().startswith("filesystem"):
        return {}
    root = var_dir() / "broker"
    queues = root / "queues"
    control = root / "control"
    for folder in (queues, control):
        folder.mkdir(parents=True, exist_ok=True)
    return {
        "data_folder_in": str(queues),
        "data_folder_out": str(queues),
        "control_folder": str(control),
        # How often an idle consumer looks for new files: bounds embedded-mode latency.
        "polling_interval": 0.05,
    }


def bus_prefix() -> str:
    """Prefix of exchange and queue names; empty in production, unique per test run."""
    return os.environ.get("NOCONTACT_BUS_PREFIX", "")


def operator_token() -> str | None:
    return os.environ.get("NOCONTACT_OPERATOR_TOKEN") or None


def secret_key() -> str:
    """Key that signs scoped tokens: from the environment, else generated once into var/."""
    return os.environ.get("NOCONTACT_SECRET_KEY") or _generated_once("secret_key", lambda: secrets.token_urlsafe(48))


def master_key() -> str:
    """NOCONTACT_MASTER_KEY: base64 of 32 bytes, the key that seals what must not be stored
    in clear (shared.crypto); from the environment, else generated once into var/."""
    return os.environ.get("NOCONTACT_MASTER_KEY") or _generated_once(
        "master_key", lambda: base64.b64encode(secrets.token_bytes(32)).decode()
    )


_GENERATED: dict[str, str] = {}
"""Values read from var/ by this process: written once and never changed, so read once
(the master key is asked for on every seal and open)."""


def _generated_once(name: str, generate: Callable[[], str]) -> str:
    """The value kept in var/<name>, generated on first use (mode 600)."""
    path = var_dir() / name
    known = _GENERATED.get(str(path))
    if known is not None:
        return known
    if not path.exists():
        # O_EXCL so that two processes starting together agree on one value.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(generate())
    for _ in range(50):
        value = path.read_text().strip()
        if value:
            _GENERATED[str(path)] = value
            return value
        # Another process has created the file and is about to write it.
        time.sleep(0.01)
    raise RuntimeError(f"{path} is empty")


PORT_DEFAULTS = {"commitment": 8001, "checkin": 8002, "notification": 8003}


def port(service: str) -> int:
    return number(f"NOCONTACT_{service.upper()}_PORT", PORT_DEFAULTS[service], minimum=1, maximum=65535)


def service_url(service: str) -> str:
    """Base URL at which a service answers (used by make run's banner and the dashboard)."""
    return os.environ.get(f"NOCONTACT_{service.upper()}_URL", f"http://127.0.0.1:{port(service)}")


def dashboard_feed_url() -> str:
    """Where the check-in service reaches the notification service, server to server, for
    the coach dashboard's feed (NOCONTACT_DASHBOARD_FEED_URL; inside docker-compose the
    internal address, not the public one); by default the notification service's URL."""
    return os.environ.get("NOCONTACT_DASHBOARD_FEED_URL") or service_url("notification")


def webhook_retry_schedule() -> str:
    return os.environ.get("NOCONTACT_WEBHOOK_RETRY_SCHEDULE", "0,5,300,1800,7200,18000,36000,36000")


@setting
def webhook_allow_private() -> bool:
    return flag("NOCONTACT_WEBHOOK_ALLOW_PRIVATE")


@setting
def scheduler_interval_s() -> float:
    """How often the schedulers look for work (0 would make them spin)."""
    return number("NOCONTACT_SCHEDULER_INTERVAL_S", 60.0, above=0)


@setting
def relay_poll_interval_s() -> float:
    """How long the relay sleeps when the log has nothing new (bounds event latency; 0
    would make it spin, a query after a query)."""
    return number("NOCONTACT_RELAY_POLL_INTERVAL_S", 0.05, above=0)


#: The longest span in days a setting may give: its cut-off stays a datetime (a span of
#: millennia is a typo).
MAX_DAYS = 100_000


@setting
def dedup_window() -> timedelta:
    """NOCONTACT_DEDUP_WINDOW_DAYS (30): how long a consumer remembers the events it applied
    (their processed_events rows). A copy of an event that arrives later (a relay moved back
    past it) is applied again. Every copy the system itself makes (a redelivery, a relay
    restarting mid-batch) comes within minutes, or within the outage it waited out."""
    return timedelta(days=number("NOCONTACT_DEDUP_WINDOW_DAYS", 30.0, minimum=1, below=MAX_DAYS))


_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def flag(name: str, default: bool = False) -> bool:
    """A yes/no variable: 1/true/yes/on or 0/false/no/off, any case (`default` when unset
    or blank). Anything else is a `SettingError`, not a silent no: `NOCONTACT_X=enabled`
    means someone wanted it on."""
    value = os.environ.get(name)
    if value is None or not value.strip():
        return default
    said = value.strip().lower()
    if said not in _TRUE | _FALSE:
        raise SettingError(f"{name}={value!r} must be one of 1, true, yes, on, 0, false, no, off")
    return said in _TRUE


# -- rate limits (shared.ratelimit) --------------------------------------------------------


@setting
def rate_limit_per_minute() -> int:
    """Requests per minute per credential and service (0: no limit)."""
    return number("NOCONTACT_RATE_LIMIT_PER_MINUTE", 600, minimum=0)


@setting
def rate_limit_burst() -> int:
    """Requests a credential may send at once (0 or unset: the per-minute figure)."""
    return number("NOCONTACT_RATE_LIMIT_BURST", 0, minimum=0)


@setting
def auth_failures_per_minute() -> int:
    """Failed authentications per minute per client address and service, also the burst
    (0: no limit)."""
    return number("NOCONTACT_AUTH_FAILURES_PER_MINUTE", 60, minimum=0)


@setting
def trusted_proxies() -> int:
    """How many reverse proxies in front of the APIs append to X-Forwarded-For (0: none, the
    peer address is the client's)."""
    return number("NOCONTACT_TRUSTED_PROXIES", 0, minimum=0)
