"""Finding real PostgreSQL and RabbitMQ for tests, and isolating each test on them.

Resolution order (DESIGN.md): the URL in the environment, the local default port if it
answers, a testcontainer if a Docker engine works. With NOCONTACT_REQUIRE_SERVICES=1 (CI)
a service that cannot be found fails the run instead of skipping the tests that need it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import create_engine, text

from shared.config import flag
from shared.db import normalise_url
from shared.topology import Component

T = TypeVar("T")

TEST_DATABASE = "nocontact_test"


class ServiceUnavailable(Exception):
    pass


def services_required() -> bool:
    return flag("NOCONTACT_REQUIRE_SERVICES")


def port_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _docker_works() -> bool:
    try:
        import docker

        docker.from_env(timeout=2).ping()
        return True
    except Exception:  # noqa: BLE001 - any failure means: no usable engine
        return False


_containers: list[Any] = []


def postgres_admin_url() -> str:
    """URL of a PostgreSQL server the tests may create databases and schemas in."""
    url = os.environ.get("NOCONTACT_TEST_POSTGRES_URL")
    if url:
        return normalise_url(url)
    if port_answers("127.0.0.1", 5432):
        return "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    if _docker_works():
        from testcontainers.postgres import PostgresContainer

        container = PostgresContainer("postgres:16-alpine", driver="psycopg")
        container.start()
        _containers.append(container)
        return container.get_connection_url()
    raise ServiceUnavailable("no PostgreSQL: set NOCONTACT_TEST_POSTGRES_URL or start one on 5432")


def rabbitmq_url() -> str:
    url = os.environ.get("NOCONTACT_TEST_BROKER_URL")
    if url:
        return url
    if port_answers("127.0.0.1", 5672):
        return "amqp://guest:guest@127.0.0.1:5672//"
    if _docker_works():
        from testcontainers.rabbitmq import RabbitMqContainer

        container = RabbitMqContainer("rabbitmq:3.13-management-alpine")
        container.start()
        _containers.append(container)
        host, port = container.get_container_host_ip(), container.get_exposed_port(5672)
        return f"amqp://guest:guest@{host}:{port}//"
    raise ServiceUnavailable("no RabbitMQ: set NOCONTACT_TEST_BROKER_URL or start one on 5672")


def stop_containers() -> None:
    while _containers:
        _containers.pop().stop()


def test_database_url(admin_url: str, name: str = TEST_DATABASE) -> str:
    """A database reserved for tests (or benchmarks) on the server, created once, so
    `postgres` stays clean."""
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        exists = conn.execute(
            text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
        ).first()
        if not exists:
            try:
                conn.execute(text(f"CREATE DATABASE {name}"))
            except Exception:  # noqa: BLE001 - a parallel run created it first
                pass
    engine.dispose()
    return admin_url.rsplit("/", 1)[0] + "/" + name


@contextmanager
def fresh_postgres_schema(database_url: str) -> Iterator[str]:
    """A new empty schema; yields a URL whose connections use it (search_path)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    engine = create_engine(database_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {name}"))
    separator = "&" if "?" in database_url else "?"
    try:
        yield f"{database_url}{separator}options=-csearch_path%3D{name}"
    finally:
        from shared.db import dispose_all

        dispose_all()
        with engine.connect() as conn:
            # A test that leaked an open transaction must fail loudly, not hang the run.
            conn.execute(text("SET lock_timeout = '15s'"))
            conn.execute(text(f"DROP SCHEMA {name} CASCADE"))
        engine.dispose()


# Every bus prefix this process handed out, and to whom: what a run may have declared.
_prefixes: dict[str, str] = {}


def new_bus_prefix(owner: str) -> str:
    """A fresh prefix for exchange and queue names (`owner`: the test, or the suite, that
    uses it), remembered so that `leftover_queues` can tell what a run left behind."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    _prefixes[prefix] = owner
    return prefix


def broker_queue_names(broker_url: str) -> list[str] | None:
    """The name of every queue on the broker's default vhost, from RabbitMQ's management
    API (NOCONTACT_TEST_BROKER_MANAGEMENT_URL, else port 15672 of the broker's host) or
    from `rabbitmqctl` when the broker runs on this machine; None if neither answers."""
    import httpx
    from kombu.utils.url import url_to_parts

    parts = url_to_parts(broker_url)
    management = os.environ.get("NOCONTACT_TEST_BROKER_MANAGEMENT_URL") or f"http://{parts.hostname}:15672"
    try:
        response = httpx.get(management.rstrip("/") + "/api/queues/%2F", params={"columns": "name"},
                             auth=(parts.username or "guest", parts.password or "guest"), timeout=10)
        if response.status_code == 200:
            return [queue["name"] for queue in response.json()]
    except httpx.HTTPError:
        pass
    rabbitmqctl = shutil.which("rabbitmqctl")
    if rabbitmqctl and parts.hostname in ("127.0.0.1", "localhost", "::1"):
        listed = subprocess.run([rabbitmqctl, "list_queues", "name", "--quiet", "--no-table-headers"],
                                capture_output=True, text=True, timeout=120)
        if listed.returncode == 0:
            return [line.strip() for line in listed.stdout.splitlines() if line.strip()]
    return None


def leftover_queues(broker_url: str) -> dict[str, list[str]] | None:
    """Queues still on the broker under a prefix this process handed out, by owner (None:
    the broker's queues cannot be listed here). Empty when every test cleaned up."""
    if not _prefixes or not broker_url.startswith("amqp"):
        return {}
    names = broker_queue_names(broker_url)
    if names is None:
        return None
    left: dict[str, list[str]] = {}
    for name in names:
        prefix = name.split(".", 1)[0] + "."
        if prefix in _prefixes:
            left.setdefault(_prefixes[prefix], []).append(name)
    return left


def delete_bus(broker_url: str, prefix: str, components: Sequence[Component] | None = None) -> None:
    """Delete what a test or benchmark declared under `prefix` on RabbitMQ.

    Quorum queues are not free on the broker, so every run that declared some removes its
    own: each component's queue, dead-letter queue and partition queues, and the exchanges
    (`components`: the topology's, unless a test declared components of its own).
    Cleanup never masks a run's result: a name never declared (which closes the channel)
    or a broker gone away is passed over.
    """
    if not prefix or not broker_url.startswith("amqp"):
        return
    from shared import bus
    from shared.topology import COMPONENTS

    components = COMPONENTS if components is None else components
    queues = [name for c in components for name in (c.queue_name, c.dead_letter_queue_name)]
    exchanges = ["nocontact.events", "nocontact.dead-letter"]
    for component in components:
        queues.extend(component.partition_queue_name(p) for p in range(component.partition_count() or 0))
        exchanges.append(component.partition_exchange_name)
    try:
        with bus.connect(broker_url) as connection:
            channel = connection.channel()
            for name in queues:
                try:
                    channel.queue_delete(prefix + name)
                except Exception:  # noqa: BLE001 - never declared: the broker closed the channel
                    channel = connection.channel()
            for name in exchanges:
                try:
                    channel.exchange_delete(prefix + name)
                except Exception:  # noqa: BLE001 - as above
                    channel = connection.channel()
    except Exception:  # noqa: BLE001 - the broker went away: nothing left to clean here
        pass


def bearer(credential: str) -> dict[str, str]:
    """The Authorization header of a credential."""
    return {"Authorization": f"Bearer {credential}"}


def eventually(request: Callable[[], Any], expected_status: int, timeout: float = 15.0) -> Any:
    """Repeat an HTTP request until it answers `expected_status`.

    Commitments reach the other services over the bus, so a first answer of 404 there is
    expected (credentials count everywhere at once: `shared.auth`); returns the matching
    response.
    """
    last: list[Any] = []

    def attempt() -> bool:
        last[:] = [request()]
        return last[0].status_code == expected_status

    try:
        wait_until(attempt, timeout, interval=0.1, message=f"status {expected_status}")
    except AssertionError:
        raise AssertionError(
            f"expected {expected_status}, last answer {last[0].status_code}: {last[0].text}"
        ) from None
    return last[0]


def wait_until(condition: Callable[[], T], timeout: float = 10.0, interval: float = 0.05,
               message: str = "condition") -> T:
    """Poll `condition` until it returns something truthy; never a fixed sleep."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)
