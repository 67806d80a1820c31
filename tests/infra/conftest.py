"""Helpers of the infra tests: consumer worker processes, free ports, broker clean-up."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from shared import bus, config
from shared.config import REPO_ROOT
from shared.topology import Component


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGINT, timeout: float = 60) -> None:
    """Send `sig` (Ctrl-C by default) and wait for `process` to exit; killed if it outlives
    `timeout`."""
    if process.poll() is None:
        process.send_signal(sig)
    try:
        process.wait(timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Processes:
    """Consumer worker processes started by a test; all stopped (killed if need be) at teardown."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, database_url: str, component: Component, *args: str,
              env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "tests.infra.consumer_process", database_url, component.name,
                   str(component.partitions or 0), *args]
        process = subprocess.Popen(command, cwd=REPO_ROOT, env={**os.environ, **(env or {})})
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
                process.wait(10)


@pytest.fixture
def processes() -> Iterator[Processes]:
    running = Processes()
    yield running
    running.stop_all()


def delete_partitioned(component: Component) -> None:
    """Delete a test component's partition queues and exchange (conftest knows only COMPONENTS)."""
    prefix = config.bus_prefix()
    if not prefix or not config.broker_url().startswith("amqp"):
        return
    with bus.connect() as connection:
        channel = connection.channel()
        names = [component.queue_name, component.dead_letter_queue_name]
        names += [component.partition_queue_name(p) for p in range(component.partitions or 0)]
        for name in names:
            try:
                channel.queue_delete(prefix + name)
            except Exception:
                channel = connection.channel()
        try:
            channel.exchange_delete(prefix + component.partition_exchange_name)
        except Exception:
            pass
