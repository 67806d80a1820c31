"""The whole suite as real processes, one process per worker part, for chaos and security tests.

Like `services.runner.start_processes` (gunicorn APIs, `nocontact worker` processes), but
every worker part runs alone (`nocontact worker <svc> --only <part>`) so that a test can
kill -9 exactly one of them and start it again, and every process's stderr goes to its own
file so that a test can read the logs (and scan them for secrets) afterwards.

Explicit environment, not the test process's: a session-scoped suite outlives the
per-test environment that tests/conftest.py sets and resets.
"""

from __future__ import annotations

import importlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from shared import testing
from shared.config import REPO_ROOT
from shared.db import migrate
from shared.testing import bearer, eventually

SERVICES = ("commitment", "checkin", "notification")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _bin(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def worker_parts(service: str) -> list[str]:
    """The real part names of a service's worker (read from services/<svc>/worker.py)."""
    from sqlalchemy import create_engine

    module = importlib.import_module(f"services.{service}.worker")
    # parts() only builds the part objects; nothing connects until a part runs.
    return list(module.parts(create_engine("sqlite://")))


@dataclass
class Process:
    name: str
    command: list[str]
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> None:
        handle = open(self.log_path, "ab")  # the child holds its own copy of the descriptor
        try:
            self.popen = subprocess.Popen(self.command, env=self.env, cwd=REPO_ROOT, stdout=handle,
                                          stderr=subprocess.STDOUT)
        finally:
            handle.close()
        self.starts += 1

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


@dataclass
class Suite:
    """Running processes of every service, with their URLs, environment and logs."""

    database_url: str
    broker_url: str
    env: dict[str, str]
    urls: dict[str, str]
    log_dir: Path
    processes: dict[str, Process] = field(default_factory=dict)

    @property
    def bus_prefix(self) -> str:
        return self.env["NOCONTACT_BUS_PREFIX"]

    def url(self, service: str, path: str = "") -> str:
        return self.urls[service] + path

    # -- processes ---------------------------------------------------------------------

    def add_api(self, service: str, port: int, web_workers: int) -> None:
        metrics_dir = self.log_dir / "prometheus" / service
        metrics_dir.mkdir(parents=True, exist_ok=True)
        command = [
            _bin("gunicorn"), "-c", str(REPO_ROOT / "infra" / "gunicorn.conf.py"),
            "--bind", f"127.0.0.1:{port}", "--workers", str(web_workers),
            f"services.{service}.wsgi:app",
        ]
        env = {**self.env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
        self._add(f"{service}-api", command, env)

    def add_part(self, service: str, part: str) -> None:
        command = [sys.executable, "-m", "services.cli", "worker", service, "--only", part]
        self._add(f"{service}-{part}", command, dict(self.env))

    def _add(self, name: str, command: list[str], env: dict[str, str]) -> None:
        self.processes[name] = Process(name, command, env, self.log_dir / f"{name}.log")

    def start_all(self) -> None:
        for process in self.processes.values():
            process.start()

    def kill(self, name: str) -> None:
        """kill -9: no shutdown, no ack, no checkpoint; what a crash or the OOM killer does."""
        popen = self.processes[name].popen
        assert popen is not None and popen.poll() is None, f"{name} is not running"
        popen.send_signal(signal.SIGKILL)
        popen.wait(10)

    def restart(self, name: str) -> None:
        self.processes[name].start()

    def dead(self) -> dict[str, int]:
        """Processes that exited on their own (a crash the test did not cause)."""
        return {name: p.popen.returncode for name, p in self.processes.items()
                if p.popen is not None and p.popen.poll() is not None}

    def stop(self, timeout_s: float = 30.0) -> dict[str, int | None]:
        for process in self.processes.values():
            if process.alive():
                process.popen.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        deadline = time.monotonic() + timeout_s
        codes: dict[str, int | None] = {}
        for name, process in self.processes.items():
            if process.popen is None:
                continue
            try:
                codes[name] = process.popen.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                process.popen.kill()
                process.popen.wait()
                codes[name] = None
        return codes

    # -- observations --------------------------------------------------------------------

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob("*.log")))

    def ready(self, service: str) -> bool:
        try:
            return httpx.get(self.url(service, "/readyz"), timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout: float = 60.0) -> None:
        for service in self.urls:
            testing.wait_until(lambda s=service: self.ready(s), timeout, interval=0.1,
                               message=f"{service} /readyz")


@contextmanager
def running_suite(
    postgres_database_url: str,
    broker_url: str,
    log_dir: Path,
    *,
    env: dict[str, str] | None = None,
    web_workers: int = 1,
    split_parts: bool = True,
) -> Iterator[Suite]:
    """Every service's API (gunicorn) and worker parts on a fresh PostgreSQL schema.

    `split_parts`: one process per worker part (chaos kills them one by one); otherwise one
    `nocontact worker <svc>` process per service (fewer processes, faster start).
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    prefix = testing.new_bus_prefix(f"running_suite in {log_dir.name}")
    with testing.fresh_postgres_schema(postgres_database_url) as database_url:
        migrate(database_url)
        base = {
            **{k: v for k, v in os.environ.items() if not k.startswith("NOCONTACT_")},
            "NOCONTACT_DATABASE_URL": database_url,
            "NOCONTACT_BROKER_URL": broker_url,
            "NOCONTACT_BUS_PREFIX": prefix,
            "NOCONTACT_VAR_DIR": str(log_dir / "var"),
            "NOCONTACT_SECRET_KEY": "sk-" + uuid.uuid4().hex,
            "NOCONTACT_OPERATOR_TOKEN": "op-" + uuid.uuid4().hex,
            "NOCONTACT_SCHEDULER_INTERVAL_S": "1",
            "NOCONTACT_WEBHOOK_RETRY_SCHEDULE": "0,1,1,1,2,2,2",
            "NOCONTACT_RELAY_POLL_INTERVAL_S": "0.05",
            "NOCONTACT_WEB_WORKERS": str(web_workers),
            **(env or {}),
        }
        urls: dict[str, str] = {}
        ports: dict[str, int] = {}
        for service in SERVICES:
            ports[service] = free_port()
            urls[service] = f"http://127.0.0.1:{ports[service]}"
            base[f"NOCONTACT_{service.upper()}_PORT"] = str(ports[service])
            base[f"NOCONTACT_{service.upper()}_URL"] = urls[service]
        suite = Suite(database_url, broker_url, base, urls, log_dir)
        for service in SERVICES:
            suite.add_api(service, ports[service], web_workers)
            if split_parts:
                for part in worker_parts(service):
                    suite.add_part(service, part)
            else:
                suite._add(f"{service}-worker", [sys.executable, "-m", "services.cli", "worker", service],
                           dict(base))
        try:
            suite.start_all()
            suite.wait_ready()
            yield suite
        finally:
            suite.stop()
            testing.delete_bus(broker_url, prefix)


# -- clients ---------------------------------------------------------------------------------


@dataclass
class Tenant:
    id: str
    api_key: str
    key_id: str | None = None


def create_tenant(suite: Suite, client: httpx.Client, name: str) -> Tenant:
    """A tenant whose key is known to every service (waits for the bus to carry it)."""
    response = client.post(suite.url("commitment", "/v1/tenants"), json={"name": name},
                           headers=bearer(suite.env["NOCONTACT_OPERATOR_TOKEN"]))
    assert response.status_code == 201, response.text
    body = response.json()
    for service, path in (("checkin", "/v1/settings"), ("notification", "/v1/webhook-endpoints")):
        eventually(lambda s=service, p=path: client.get(suite.url(s, p), headers=bearer(body["api_key"])), 200)
    return Tenant(body["id"], body["api_key"])


def issue_token(suite: Suite, client: httpx.Client, tenant: Tenant, role: str, subject: str,
                ttl_seconds: int = 3600) -> str:
    response = client.post(suite.url("commitment", "/v1/tokens"), headers=bearer(tenant.api_key),
                           json={"role": role, "subject_id": subject, "ttl_seconds": ttl_seconds})
    assert response.status_code == 201, response.text
    return str(response.json()["token"])


def commitment_body(member_id: str, starts_on: str, **extra: Any) -> dict[str, Any]:
    return {
        "member_id": member_id,
        "contact": {"label": "Alex (ex)", "relationship": "romantic"},
        "channels": ["calls", "texts"],
        "timezone": "UTC",
        "starts_on": starts_on,
        "duration_days": 365,
        **extra,
    }
