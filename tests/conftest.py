"""Fixtures over real services: PostgreSQL, RabbitMQ, and the embedded SQLite/filesystem pair.

Every test gets its own PostgreSQL schema or SQLite file and its own exchange/queue name
prefix, so tests never see each other's rows or messages.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared import testing
from shared.db import dispose_all, engine_for, migrate


def _unavailable(reason: str) -> None:
    if testing.services_required():
        pytest.fail(f"required service missing (NOCONTACT_REQUIRE_SERVICES=1): {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_database_url() -> str:
    try:
        return testing.test_database_url(testing.postgres_admin_url())
    except testing.ServiceUnavailable as error:
        _unavailable(str(error))
        raise


# The broker this run used, if any: where the session-finish check looks for left-over queues.
_session_broker: list[str] = []


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    try:
        url = testing.rabbitmq_url()
    except testing.ServiceUnavailable as error:
        _unavailable(str(error))
        raise
    _session_broker.append(url)
    return url


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                         request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test: its own var/ directory, bus prefix and secret key; no leaked engines."""
    monkeypatch.setenv("NOCONTACT_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("NOCONTACT_BUS_PREFIX", testing.new_bus_prefix(request.node.nodeid))
    monkeypatch.setenv("NOCONTACT_SECRET_KEY", uuid.uuid4().hex)
    for name in ("NOCONTACT_DATABASE_URL", "NOCONTACT_BROKER_URL"):
        monkeypatch.delenv(name, raising=False)
    yield
    dispose_all()


@pytest.fixture
def postgres_url(postgres_database_url: str) -> Iterator[str]:
    with testing.fresh_postgres_schema(postgres_database_url) as url:
        migrate(url)
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    migrate(url)
    return url


@pytest.fixture(params=["postgres", "sqlite"])
def blank_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database no migration has touched yet (a migration's test starts from the schema
    before it), on both stores."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'legacy.sqlite3'}"
        return
    with testing.fresh_postgres_schema(request.getfixturevalue("postgres_database_url")) as url:
        yield url


@pytest.fixture(params=["postgres", "sqlite"])
def database_url(request: pytest.FixtureRequest) -> str:
    """The same test against both stores: one contract, two backends."""
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def engine(database_url: str):  # type: ignore[no-untyped-def]
    return engine_for(database_url)


@pytest.fixture
def amqp_url(rabbitmq_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """RabbitMQ for this test; its queues and exchanges are deleted afterwards (under the
    prefix the test started with, whatever the test did to its environment meanwhile)."""
    monkeypatch.setenv("NOCONTACT_BROKER_URL", rabbitmq_url)
    prefix = os.environ["NOCONTACT_BUS_PREFIX"]
    yield rabbitmq_url
    testing.delete_bus(rabbitmq_url, prefix)


@pytest.fixture
def filesystem_broker_url(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("NOCONTACT_BROKER_URL", "filesystem://")
    return "filesystem://"


@pytest.fixture(params=["amqp", "filesystem"])
def broker_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(f"{request.param}_url" if request.param == "amqp" else "filesystem_broker_url")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """How make test's pytest-xdist workers share the tests: a test file at a time (its
    module-scoped fixtures start once), and all of tests/security/ on one worker, since its
    session-scoped `security_suite` would otherwise run twice, one per worker, holding most
    of PostgreSQL's default 100 connections for the whole run. (xdist's own `loadgroup`
    would do it by mark, but with pytest 9 it no longer groups anything.)"""
    from xdist.scheduler import LoadFileScheduling

    class ByFile(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "tests/security/" if nodeid.startswith("tests/security/") else super()._split_scope(nodeid)

    return ByFile(config, log)


# Under pytest-xdist (make test), each worker's check of the queues its own tests left, by
# worker (None: it could not list the broker's queues), and the workers that ended without
# reporting one (crashed): judged by the controller, since a worker's exit status is not the run's.
_worker_reports: dict[str, dict[str, list[str]] | None] = {}
_workers_unreported: list[str] = []


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    name = str(getattr(getattr(node, "gateway", None), "id", node))
    output = getattr(node, "workeroutput", None) or {}
    if "left_queues" in output:
        _worker_reports[name] = output["left_queues"]
    else:
        _workers_unreported.append(name)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Every queue a test declared on RabbitMQ is gone at the end of the run, or the run fails
    naming the tests that left them (quorum queues are not free on a shared broker)."""
    try:
        # Listed before the containers stop: a testcontainer broker goes with them.
        own = testing.leftover_queues(_session_broker[0]) if _session_broker else {}
    finally:
        testing.stop_containers()
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: the controller judges
        workeroutput["left_queues"] = own
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")

    def say(line: str) -> None:
        if reporter is not None:
            reporter.write_line(line)

    for name in _workers_unreported:
        say(f"pytest-xdist worker {name} ended without reporting: the queues its tests declared were not checked")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED  # a crash after its last test fails the run
    reports = [own, *_worker_reports.values()]
    unlisted = sum(report is None for report in reports)
    if unlisted:
        which = "not checked" if unlisted == len(reports) else "not all checked"
        say(f"could not list the broker's queues: left-over queues were {which}")
    left: dict[str, list[str]] = {}
    for report in reports:
        for owner, names in (report or {}).items():
            left.setdefault(owner, []).extend(names)
    if left:
        if reporter is not None:
            reporter.write_sep("=", "queues left on RabbitMQ", red=True)
        for owner, names in sorted(left.items()):
            say(f"{owner}: {', '.join(sorted(names))}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# -- running services over real HTTP -------------------------------------------------------


class RunningStack:
    """Services serving real HTTP on loopback, with their worker parts running."""

    def __init__(self, urls: dict[str, str]) -> None:
        self.urls = urls

    def url(self, service: str, path: str = "") -> str:
        return self.urls[service] + path


@pytest.fixture
def stack_factory(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Start services in this process: `stack_factory(database_url, ["commitment", ...])`.

    Each service's Flask app is served by a threaded werkzeug server on a free port and
    its worker parts (relay, consumers, scheduler...) run in threads, all reading the
    environment of this test (its database, its broker prefix). Stopped at teardown.
    """
    import importlib
    import threading

    from werkzeug.serving import make_server

    from shared.worker import run_parts

    servers = []
    stops: list[threading.Event] = []
    threads: list[threading.Thread] = []

    def start(database_url: str, services: list[str], *, workers: bool = True,
              env: dict[str, str] | None = None) -> RunningStack:
        monkeypatch.setenv("NOCONTACT_DATABASE_URL", database_url)
        monkeypatch.setenv("NOCONTACT_SCHEDULER_INTERVAL_S", "0.2")
        monkeypatch.setenv("NOCONTACT_WEBHOOK_ALLOW_PRIVATE", "true")
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        urls: dict[str, str] = {}
        for service in services:
            app = importlib.import_module(f"services.{service}.app").create_app()
            server = make_server("127.0.0.1", 0, app, threaded=True)
            monkeypatch.setenv(f"NOCONTACT_{service.upper()}_URL", f"http://127.0.0.1:{server.port}")
            urls[service] = f"http://127.0.0.1:{server.port}"
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            servers.append(server)
        if workers:
            for service in services:
                module = importlib.import_module(f"services.{service}.worker")
                stop = threading.Event()
                parts = module.parts(engine_for(database_url))
                thread = threading.Thread(target=run_parts, args=(parts, stop, False), daemon=True)
                thread.start()
                stops.append(stop)
                threads.append(thread)
        return RunningStack(urls)

    yield start
    for stop in stops:
        stop.set()
    for thread in threads:
        thread.join(timeout=30)
    for server in servers:
        server.shutdown()
