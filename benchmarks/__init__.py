"""Benchmarks of the event store, the `eventsourcing` library as a reference, and rebuilds.

`python -m benchmarks` (``make bench``) runs every section against the local PostgreSQL
and a SQLite file and writes var/bench/report.md and report.json. It reports, it never
fails on a number. Environment:

- ``NOCONTACT_BENCH_RUNS`` (default 3): runs per figure; each figure is their median.
- ``NOCONTACT_BENCH_SCALE`` (default 1.0): multiplies every size (0.05 for a quick run).
- ``NOCONTACT_BENCH_BACKENDS`` (default ``postgres,sqlite``).
- ``NOCONTACT_TEST_POSTGRES_URL``: the PostgreSQL server (default the local 5432).

The check-in comparison (`benchmarks.checkin`) and the end-to-end section (`benchmarks.e2e`)
have settings of their own, described there.

Every run gets a fresh PostgreSQL schema (in database ``nocontact_bench``) or a fresh SQLite file,
migrated with `shared.db.migrate`, so runs never see each other's rows.
"""

from __future__ import annotations

import os
import platform
import shlex
import sqlite3
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from sqlalchemy import create_engine, text

from shared import testing
from shared.config import REPO_ROOT
from shared.db import migrate
from shared.events import Metadata, NewEvent

BENCH_DIR = REPO_ROOT / "var" / "bench"


@dataclass(frozen=True)
class Variant:
    """nocontact started with extra environment variables, measured beside the others (a feature's cost)."""

    name: str
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Variant:
        """``NAME=VAR=value VAR2=value2`` (shell quoting) or ``NAME=`` for the code as it is."""
        name, separator, assignments = text.partition("=")
        name = name.strip()
        if not separator or not name:
            raise ValueError(f"a variant is NAME=VAR=value ..., got {text!r}")
        env: dict[str, str] = {}
        for assignment in shlex.split(assignments):
            variable, equals, value = assignment.partition("=")
            if not equals or not variable.isidentifier():
                raise ValueError(f"variant {name}: {assignment!r} is not VAR=value")
            env[variable] = value
        return cls(name, env)

    def describe(self) -> str:
        return " ".join(f"{key}={shlex.quote(value)}" for key, value in self.env.items()) or "(as is)"


@dataclass(frozen=True)
class Settings:
    runs: int
    scale: float
    backends: tuple[str, ...]
    variants: tuple[Variant, ...] = ()
    """nocontact's variants for the check-in comparison; none means one: the code as it is."""

    @classmethod
    def from_environment(cls) -> Settings:
        runs = int(os.environ.get("NOCONTACT_BENCH_RUNS", "3"))
        scale = float(os.environ.get("NOCONTACT_BENCH_SCALE", "1.0"))
        backends = tuple(
            name.strip() for name in os.environ.get("NOCONTACT_BENCH_BACKENDS", "postgres,sqlite").split(",")
            if name.strip()
        )
        if runs < 1 or scale <= 0:
            raise SystemExit("NOCONTACT_BENCH_RUNS must be >= 1 and NOCONTACT_BENCH_SCALE > 0")
        unknown = set(backends) - {"postgres", "sqlite"}
        if unknown:
            raise SystemExit(f"unknown backends in NOCONTACT_BENCH_BACKENDS: {sorted(unknown)}")
        return cls(runs=runs, scale=scale, backends=backends)

    def size(self, base: int, minimum: int = 1) -> int:
        """`base` scaled, never below `minimum`."""
        return max(minimum, round(base * self.scale))

    def as_dict(self) -> dict[str, Any]:
        settings: dict[str, Any] = {"runs": self.runs, "scale": self.scale, "backends": ",".join(self.backends)}
        for variant in self.variants:
            settings[f"variant {variant.name}"] = variant.describe()
        return settings


def timed(fn: Callable[[], int]) -> float:
    """Run `fn` (which returns how many items it processed) and return items per second."""
    started = time.perf_counter()
    count = fn()
    elapsed = time.perf_counter() - started
    return count / elapsed if elapsed > 0 else float("inf")


# -- fresh stores ---------------------------------------------------------------------------

BENCH_DATABASE = "nocontact_bench"
_postgres_database: str | None = None


def postgres_database_url() -> str:
    """A database of the benchmarks' own on the local (or configured) server, created once.

    Not the tests' database: advisory locks are per database, so the store's append lock
    would make our writers queue behind colleagues' test runs in their schemas.
    """
    global _postgres_database
    if _postgres_database is None:
        _postgres_database = testing.test_database_url(testing.postgres_admin_url(), BENCH_DATABASE)
    return _postgres_database


def schema_of(url: str) -> str:
    """The schema a `fresh_postgres_schema` URL points its search_path at."""
    options = parse_qs(urlsplit(url).query).get("options", [""])[0]
    prefix = "-csearch_path="
    value = unquote(options)
    if not value.startswith(prefix):
        raise ValueError(f"no search_path in {url}")
    return value[len(prefix):]


@contextmanager
def fresh_store(backend: str) -> Iterator[str]:
    """A migrated, empty event store: a new PostgreSQL schema or a new SQLite file."""
    if backend == "postgres":
        with testing.fresh_postgres_schema(postgres_database_url()) as url:
            migrate(url)
            yield url
    elif backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="nocontact-bench-", dir=_sqlite_dir()) as directory:
            url = f"sqlite:///{Path(directory) / 'store.sqlite3'}"
            migrate(url)
            try:
                yield url
            finally:
                from shared.db import dispose_all

                dispose_all()
    else:
        raise ValueError(backend)


def _sqlite_dir() -> str:
    # On the repository's disk, not a tmpfs: SQLite's fsync cost is part of what we measure.
    path = BENCH_DIR / "tmp"
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


# -- the events written ---------------------------------------------------------------------

TENANT = "tenant-bench"
METADATA = Metadata(tenant_id=TENANT, correlation_id=uuid.uuid4().hex, actor="member:bench")
START_DAY = date(2024, 1, 1)


def checkin_data(commitment_id: str, day: date, slipped: bool, corrected: bool = False) -> dict[str, Any]:
    """The payload of a check-in event, shaped as services.checkin.domain emits it."""
    data: dict[str, Any] = {
        "commitment_id": commitment_id,
        "member_id": "member-bench",
        "date": day.isoformat(),
        "outcome": "slipped" if slipped else "kept",
        "urge": 3,
        "mood": 4,
        "slip": {"channel": "texts", "initiated_by": "me"} if slipped else None,
        "note": None,
    }
    if corrected:
        data["previous_outcome"] = "kept" if slipped else "slipped"
    return data


def checkin_event(commitment_id: str, day: date, slipped: bool = False) -> NewEvent:
    return NewEvent(type="checkin.recorded", data=checkin_data(commitment_id, day, slipped))


def stream_ids(count: int, category: str = "checkin") -> list[str]:
    return [f"{category}-{uuid.uuid4()}" for _ in range(count)]


# -- machine --------------------------------------------------------------------------------


def _memory_total() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def load_average() -> str:
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


def _postgres_version() -> str:
    try:
        engine = create_engine(postgres_database_url())
        with engine.connect() as conn:
            settings = [
                f"{name}={conn.execute(text(f'SHOW {name}')).scalar()}"
                for name in ("synchronous_commit", "fsync", "shared_buffers")
            ]
            version = str(conn.execute(text("SHOW server_version")).scalar())
        engine.dispose()
        return f"{version} ({', '.join(settings)})"
    except Exception as error:  # noqa: BLE001 - the report says why instead of failing
        return f"unavailable ({type(error).__name__})"


def _git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine_info() -> dict[str, Any]:
    def version(package: str) -> str:
        try:
            return package_metadata.version(package)
        except package_metadata.PackageNotFoundError:
            return "not installed"

    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "memory": _memory_total(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "postgresql": _postgres_version(),
        "sqlite": sqlite3.sqlite_version,
        "eventsourcing": version("eventsourcing"),
        "sqlalchemy": version("sqlalchemy"),
        "psycopg": version("psycopg"),
        "git commit": _git_commit(),
        "load average at start (1/5/15 min)": load_average(),
        "note": "the machine's cores are shared with other work (colleagues' test runs, PostgreSQL, "
        "RabbitMQ): figures are indicative; compare ratios measured in the same run",
    }


def day(offset: int) -> date:
    return START_DAY + timedelta(days=offset)
