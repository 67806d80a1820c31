"""The `nocontact` command as an operator meets it, run for real (a subprocess each time):
one line and an exit code when the database or broker is away, the database unmigrated or
the arguments wrong; `relay list` and `relay reset-checkpoint` on PostgreSQL and SQLite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from services import cli_errors, ops
from shared import eventstore
from shared.clock import utcnow
from shared.config import REPO_ROOT
from shared.db import engine_for, read
from shared.events import Metadata, NewEvent
from shared.relay import release_leadership, try_leadership
from tests.infra.conftest import free_port

PASSWORD = "s3cret-Pa55word"


def nocontact(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "services.cli", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120, env={**os.environ, **(env or {})})


def assert_one_line(result: subprocess.CompletedProcess[str], code: int, starts: str) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(starts), result.stderr
    assert PASSWORD not in result.stderr + result.stdout
    return lines[0]


# -- one-line errors ---------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["migrate"], ["relay", "list"], ["events", "tail"], ["dead-letters", "list"],
                                     ["notification", "stats"], ["relay", "reset-checkpoint", "relay:checkin",
                                                                 "--to-start"]])
def test_a_database_that_does_not_answer_is_one_line_and_exit_69(command: list[str]) -> None:
    url = f"postgresql://nocontact:{PASSWORD}@127.0.0.1:{free_port()}/nocontact"
    result = nocontact(*command, env={"NOCONTACT_DATABASE_URL": url})
    line = assert_one_line(result, cli_errors.EXIT_UNAVAILABLE, "nocontact: cannot reach the database: ")
    assert "Connection refused" in line and "nocontact:***@127.0.0.1" in line


@pytest.mark.parametrize("command", [["relay", "list"], ["events", "tail"], ["dead-letters", "list"],
                                     ["notification", "stats"], ["relay", "reset-checkpoint", "relay:commitment",
                                                                 "--to-position", "3"]])
def test_an_unmigrated_database_is_one_line_and_exit_78(command: list[str], tmp_path: Path) -> None:
    empty = tmp_path / "empty.sqlite3"
    empty.touch()
    result = nocontact(*command, env={"NOCONTACT_DATABASE_URL": f"sqlite:///{empty}"})
    line = assert_one_line(result, cli_errors.EXIT_NOT_MIGRATED, "nocontact: the database is not migrated")
    assert line.endswith("run `nocontact migrate`")


def test_an_unmigrated_postgresql_schema_is_exit_78_too(postgres_database_url: str) -> None:
    from shared import testing

    with testing.fresh_postgres_schema(postgres_database_url) as url:
        result = nocontact("relay", "list", env={"NOCONTACT_DATABASE_URL": url})
    assert_one_line(result, cli_errors.EXIT_NOT_MIGRATED, "nocontact: the database is not migrated")


def test_a_broker_that_does_not_answer_is_one_line_and_exit_69(sqlite_url: str) -> None:
    broker = f"amqp://guest:{PASSWORD}@127.0.0.1:{free_port()}//"
    result = nocontact("bus", "setup", env={"NOCONTACT_DATABASE_URL": sqlite_url, "NOCONTACT_BROKER_URL": broker})
    line = assert_one_line(result, cli_errors.EXIT_UNAVAILABLE, "nocontact: cannot reach the broker: ")
    assert "guest:***@127.0.0.1" in line


@pytest.mark.parametrize("arguments", [
    ["relay", "reset-checkpoint", "relay:checkin"],
    ["relay", "reset-checkpoint", "relay:checkin", "--to-start", "--to-position", "1"],
    ["relay", "reset-checkpoint", "relay:checkin", "--to-position", "-1"],
    ["relay", "reset-checkpoint", "relay:nosuch", "--to-start"],
    ["relay", "reset-checkpoint", "relay:checkin", "--to-position", "999999"],
    ["relay", "nosuch"],
])
def test_bad_arguments_are_exit_2_without_a_traceback(arguments: list[str], sqlite_url: str) -> None:
    result = nocontact(*arguments, env={"NOCONTACT_DATABASE_URL": sqlite_url})
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and result.stderr.strip().splitlines()[-1].startswith("Error: ")


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    empty = tmp_path / "empty.sqlite3"
    empty.touch()
    env = {"NOCONTACT_DATABASE_URL": f"sqlite:///{empty}"}
    for result in (nocontact("--debug", "relay", "list", env=env),
                   nocontact("relay", "list", env={**env, "NOCONTACT_DEBUG": "1"})):
        assert result.returncode == 1 and "Traceback" in result.stderr and "no such table" in result.stderr


def test_version() -> None:
    from shared import config

    result = nocontact("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"nocontact {config.version()}"


# -- relays ------------------------------------------------------------------------------------


def _append(engine: Engine, stream: str, count: int) -> list[int]:
    positions = []
    for i in range(count):
        with engine.begin() as conn:
            [event] = eventstore.append(conn, stream, [NewEvent("probe.happened", {"n": i})],
                                        metadata=Metadata(tenant_id="t1"))
            positions.append(event.position)
    eventstore.wait_settled(engine)
    return positions


def _listed(env: dict[str, str]) -> dict[str, dict]:  # type: ignore[type-arg]
    result = nocontact("relay", "list", "--json", env=env)
    assert result.returncode == 0, result.stderr
    return {item["name"]: item for item in map(json.loads, result.stdout.splitlines())}


@pytest.fixture(params=["postgres", "sqlite"])
def store(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(database URL, broker URL): PostgreSQL with RabbitMQ, or the embedded pair."""
    if request.param == "postgres":
        return request.getfixturevalue("postgres_url"), request.getfixturevalue("amqp_url")
    return request.getfixturevalue("sqlite_url"), request.getfixturevalue("filesystem_broker_url")


def test_relays_listed_and_reset_to_a_cursor_the_relay_publishes_from(
        store: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    database_url, broker_url = store
    monkeypatch.setenv("NOCONTACT_DATABASE_URL", database_url)
    env = {"NOCONTACT_DATABASE_URL": database_url, "NOCONTACT_BROKER_URL": broker_url}
    engine = engine_for(database_url)
    checkins = _append(engine, "checkin-c1", 5)
    _append(engine, "commitment-c1", 2)  # another relay's category: not the checkin relay's lag
    relay = ops.relays()["relay:checkin"]
    assert relay.categories == ["checkin"]

    listed = _listed(env)
    assert set(listed) == {"relay:checkin", "relay:commitment", "relay:notification"}
    assert listed["relay:checkin"] | {"position": 0, "xid": 0, "lag": 5, "head": checkins[-1] + 2} == \
        listed["relay:checkin"]
    assert listed["relay:checkin"]["running"] is (False if engine.dialect.name == "postgresql" else None)

    relay.drain()  # everything published: nothing behind
    assert _listed(env)["relay:checkin"]["lag"] == 0

    result = nocontact("relay", "reset-checkpoint", "relay:checkin", "--to-position", str(checkins[1]), env=env)
    assert result.returncode == 0, result.stderr
    assert "3 event(s) to publish" in result.stdout
    with read(engine) as conn:
        cursor = relay.checkpoint.cursor(conn)
        after = eventstore.read_feed(conn, cursor, limit=100, categories=["checkin"]).events
    assert cursor.position == checkins[1]
    # The cursor the relay reads from is the one just after that event in the feed.
    assert [event.position for event in after] == checkins[2:]
    assert _listed(env)["relay:checkin"]["lag"] == 3
    relay.drain()
    assert relay.run_once() == 0 and _listed(env)["relay:checkin"]["lag"] == 0

    result = nocontact("relay", "reset-checkpoint", "relay:checkin", "--to-start", env=env)
    assert result.returncode == 0 and "5 event(s) to publish" in result.stdout, result.stderr
    published_before = _published(relay.name)
    relay.drain()
    assert _published(relay.name) - published_before == 5


def test_a_reset_beyond_the_dedup_window_is_refused_unless_asked_for(
        store: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Consumers forget what they applied NOCONTACT_DEDUP_WINDOW_DAYS ago (30): publishing
    older events again would have them applied again, so the operator must say so. A day's
    margin: an event the consumers will forget within a day counts too."""
    database_url, broker_url = store
    monkeypatch.setenv("NOCONTACT_DATABASE_URL", database_url)
    env = {"NOCONTACT_DATABASE_URL": database_url, "NOCONTACT_BROKER_URL": broker_url}
    engine = engine_for(database_url)
    with engine.begin() as conn:
        eventstore.append(conn, "checkin-c0", [NewEvent("probe.happened", {"n": i}) for i in range(2)],
                          metadata=Metadata(tenant_id="t1"), now=utcnow() - timedelta(days=40))
    with engine.begin() as conn:
        edge = eventstore.append(conn, "checkin-c2", [NewEvent("probe.happened", {"n": 0})],
                                 metadata=Metadata(tenant_id="t1"), now=utcnow() - timedelta(days=29.5))
    _append(engine, "checkin-c1", 3)
    relay = ops.relays()["relay:checkin"]
    relay.drain()

    result = nocontact("relay", "reset-checkpoint", "relay:checkin", "--to-start", env=env)
    line = assert_one_line(result, 1, "Error: 3 of the 6 event(s) to publish again were recorded more than 29 days ago")
    assert "--reapply-beyond-window" in line
    assert _listed(env)["relay:checkin"]["lag"] == 0  # refused: the checkpoint did not move

    # From after the old events, nothing to publish is near the window's edge.
    result = nocontact("relay", "reset-checkpoint", "relay:checkin", "--to-position", str(edge[-1].position), env=env)
    assert result.returncode == 0 and "3 event(s) to publish" in result.stdout, result.stderr
    relay.drain()
    # A longer window covers them all.
    result = nocontact("relay", "reset-checkpoint", "relay:checkin", "--to-start",
                       env={**env, "NOCONTACT_DEDUP_WINDOW_DAYS": "45"})
    assert result.returncode == 0 and "6 event(s) to publish" in result.stdout, result.stderr
    relay.drain()
    result = nocontact("relay", "reset-checkpoint", "relay:checkin", "--to-start", "--reapply-beyond-window", env=env)
    assert result.returncode == 0 and "6 event(s) to publish" in result.stdout, result.stderr
    assert _listed(env)["relay:checkin"]["lag"] == 6


def _published(name: str) -> float:
    from shared import metrics

    return metrics.RELAY_PUBLISHED.labels(name)._value.get()


def test_a_reset_is_refused_while_a_relay_holds_its_lock(postgres_url: str) -> None:
    env = {"NOCONTACT_DATABASE_URL": postgres_url}
    engine = engine_for(postgres_url)
    _append(engine, "checkin-c1", 2)
    with engine.begin() as conn:
        eventstore.Checkpoint("relay:checkin").set(conn, eventstore.LogCursor(0, 0))
    held = try_leadership(engine, "relay:checkin")  # what the active relay holds
    assert held is not None
    try:
        assert _listed(env)["relay:checkin"]["running"] is True
        result = nocontact("relay", "reset-checkpoint", "relay:checkin", "--to-start", env=env)
        line = assert_one_line(result, 1, "Error: relay:checkin is running (a relay process holds its lock)")
        assert "stop it first" in line
    finally:
        release_leadership(held)
    assert _listed(env)["relay:checkin"]["running"] is False
    result = nocontact("relay", "reset-checkpoint", "relay:checkin", "--to-start", env=env)
    assert result.returncode == 0 and "2 event(s) to publish" in result.stdout, result.stderr
    # The command let go of the lock: a relay can take it.
    taken = try_leadership(engine, "relay:checkin")
    assert taken is not None
    release_leadership(taken)


def test_on_sqlite_a_reset_says_it_cannot_see_a_running_relay(sqlite_url: str) -> None:
    result = nocontact("relay", "reset-checkpoint", "relay:checkin", "--to-start",
                       env={"NOCONTACT_DATABASE_URL": sqlite_url})
    assert result.returncode == 0
    assert "SQLite has no relay lock" in result.stderr and "stop it" in result.stderr


def test_a_rule_a_command_breaks_is_said_as_the_api_says_it() -> None:
    from shared.errors import NotFound, ValidationFailed

    assert cli_errors.explain(ValidationFailed("name", "must not be empty")) == ("name: must not be empty", 2)
    assert cli_errors.explain(NotFound("no such key")) == ("no such key", 1)
