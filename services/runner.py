"""`make run`: every service's API under gunicorn and its worker, in the foreground.

Embedded defaults (SQLite + filesystem broker under ./var/) need no server; with
NOCONTACT_DATABASE_URL / NOCONTACT_BROKER_URL set the same processes use PostgreSQL and
RabbitMQ. Ctrl-C (or SIGTERM) stops every child gracefully and waits for it.

Each service's worker process serves its metrics on a port of its own, its API's port +
1000 (9001, 9002, 9003 by default; `NOCONTACT_<SERVICE>_WORKER_METRICS_PORT` moves one),
on 127.0.0.1 like the APIs; the banner lists them.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

import infra
from services.cli_errors import shown_url
from shared import config
from shared.db import migrate

SERVICES = ("commitment", "checkin", "notification")


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def _bin(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def _spawn(command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    # Each child leads a session of its own, so Ctrl-C in the terminal reaches only this
    # runner, which then stops every child exactly once. A gunicorn gthread worker that
    # gets the terminal's SIGINT and its master's forwarded signal on top deadlocks in
    # its quit handler.
    return subprocess.Popen(command, env=env, start_new_session=True)


#: The modules whose settings (shared.config.setting) are not all imported by this one.
SETTINGS_MODULES = ("shared.keyring", "services.notification.config", "services.notification.metrics")


def check_ports() -> list[int]:
    """The ports `make run` serves on: checked by it alone, not registered with
    config.check (a deployment's processes never read them, and an orchestrator may set
    such names for its own ends: Kubernetes sets <SERVICE>_PORT=tcp://...)."""
    return [port for service in config.PORT_DEFAULTS for port in (config.port(service), worker_metrics_port(service))]


def worker_metrics_port(service: str) -> int:
    """Where `make run`'s worker process of `service` serves /metrics."""
    variable = f"NOCONTACT_{service.upper()}_WORKER_METRICS_PORT"
    return config.number(variable, config.port(service) + 1000, minimum=1, maximum=65535)


def start_processes(env: dict[str, str] | None = None) -> list[tuple[str, subprocess.Popen[bytes]]]:
    """Start the API and worker of every service that exists; returns (name, process)."""
    # Every child keeps its data where this process does, whatever its working directory.
    env = {**os.environ, "NOCONTACT_VAR_DIR": str(config.var_dir()), **(env or {})}
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    for service in SERVICES:
        if _has_module(f"services.{service}.wsgi"):
            metrics_dir = config.var_dir() / "prometheus" / service
            shutil.rmtree(metrics_dir, ignore_errors=True)
            metrics_dir.mkdir(parents=True)
            command = [
                _bin("gunicorn"),
                "-c", str(infra.path("gunicorn.conf.py")),
                "--bind", f"127.0.0.1:{config.port(service)}",
                f"services.{service}.wsgi:app",
            ]
            child_env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
            children.append((f"{service}-api", _spawn(command, child_env)))
        if _has_module(f"services.{service}.worker"):
            command = [sys.executable, "-m", "services.cli", "worker", service]
            child_env = {**env, "NOCONTACT_WORKER_METRICS_PORT": str(worker_metrics_port(service)),
                         "NOCONTACT_WORKER_METRICS_ADDR": "127.0.0.1"}
            children.append((f"{service}-worker", _spawn(command, child_env)))
    return children


def wait_ready(timeout_s: float = 60.0) -> dict[str, bool]:
    """Poll every service's /readyz until it answers 200 (or time runs out)."""
    ready: dict[str, bool] = {}
    deadline = time.monotonic() + timeout_s
    for service in SERVICES:
        if not _has_module(f"services.{service}.wsgi"):
            continue
        url = f"{config.service_url(service)}/readyz"
        ready[service] = False
        while time.monotonic() < deadline:
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    ready[service] = True
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
    return ready


def stop_processes(children: list[tuple[str, subprocess.Popen[bytes]]], timeout_s: float = 30.0) -> None:
    for _, child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for _, child in children:
        try:
            child.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            # The whole group: a gunicorn master's workers must not outlive it.
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            child.wait()


def banner(ready: dict[str, bool]) -> str:
    """What `make run` prints once the services answer: where everything is."""
    lines = [
        "",
        f"nocontact {config.version()} is running:",
        f"  database: {shown_url(config.database_url())}",
        f"  broker:   {shown_url(config.broker_url())}",
        f"  data:     {config.var_dir()}",
    ]
    for service, ok in ready.items():
        url = config.service_url(service)
        lines.append(f"  {service:<13} {url:<24} {'ready' if ok else 'NOT READY':<9}  API docs: {url}/docs")
        if _has_module(f"services.{service}.worker"):
            lines.append(f"  {'':<13} worker metrics: http://127.0.0.1:{worker_metrics_port(service)}/metrics")
    first = config.service_url(next(iter(ready))) if ready else None
    if first:  # every service serves the whole suite's reference; one address is enough
        lines.append(f"  API reference (all three services): {first}/reference")
    if "checkin" in ready:
        lines.append(f"  Coach dashboard: {config.service_url('checkin')}/dashboard")
    return "\n".join(lines)


def run_suite(seed: bool = True) -> int:
    """Run until Ctrl-C; returns the exit code."""
    # Every service's settings before anything starts: one line naming what is malformed,
    # not six processes failing to boot (each checks its own again: shared.config.check).
    for module in SETTINGS_MODULES:
        if _has_module(module):
            importlib.import_module(module)
    config.check()
    check_ports()
    for url in sorted({config.database_url(service) for service in SERVICES}):
        migrate(url)
    stopping = False

    def _stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    children = start_processes()
    try:
        ready = wait_ready()
        print(banner(ready))
        if seed and _has_module("services.demo"):
            from services.demo import seed_demo

            # The demo's admin key and coach token go to a terminal only, never into a
            # log that standard output is redirected to (they are in var/ either way).
            print(seed_demo(show_credentials=sys.stdout.isatty()))
        print("Ctrl-C stops the suite.\n", flush=True)
        while not stopping:
            for name, child in children:
                if child.poll() is not None:
                    print(f"{name} exited with {child.returncode}; stopping the suite", file=sys.stderr)
                    return 1
            time.sleep(0.5)
        return 0
    finally:
        stop_processes(children)
