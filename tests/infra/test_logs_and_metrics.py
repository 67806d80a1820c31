"""Logs and metrics of real processes: a gunicorn-served API's access log and gunicorn's own
lines as one JSON stream (a readable console format on a terminal), and `make run`'s
worker processes serving their metrics, the delivery queue's gauges included."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services import runner
from shared.config import REPO_ROOT
from shared.db import migrate
from shared.testing import bearer, wait_until
from tests.infra.conftest import free_port, stop
from tests.infra.test_make_run import Terminal

SERVICES = ("commitment", "checkin", "notification")


def _environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("NOCONTACT_")}
    env.update(NOCONTACT_VAR_DIR=str(tmp_path / "var"), NOCONTACT_SECRET_KEY=uuid.uuid4().hex,
               NOCONTACT_WEB_WORKERS="1", NOCONTACT_DATABASE_URL=f"sqlite:///{tmp_path / 'store.sqlite3'}", **extra)
    return env


class Api:
    """The commitment API under gunicorn with infra/gunicorn.conf.py, its stderr to `stderr`."""

    def __init__(self, tmp_path: Path, stderr: int, **extra: str) -> None:
        self.token = "op-" + uuid.uuid4().hex
        self.env = _environment(tmp_path, NOCONTACT_OPERATOR_TOKEN=self.token, **extra)
        migrate(self.env["NOCONTACT_DATABASE_URL"])
        self.url = f"http://127.0.0.1:{free_port()}"
        command = [str(Path(sys.executable).parent / "gunicorn"), "-c", str(REPO_ROOT / "infra" / "gunicorn.conf.py"),
                   "--bind", self.url.removeprefix("http://"), "services.commitment.wsgi:app"]
        self.process = subprocess.Popen(command, cwd=tmp_path, env=self.env, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=stderr)
        wait_until(self._ready, 60, interval=0.2, message="the API's /readyz")

    def _ready(self) -> bool:
        assert self.process.poll() is None, "gunicorn exited"
        try:
            return httpx.get(self.url + "/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        stop(self.process, signal.SIGTERM, 30)


@pytest.fixture
def api_log(tmp_path: Path) -> Iterator[tuple[Api, Path]]:
    log = tmp_path / "api.log"
    with log.open("ab") as stderr:
        api = Api(tmp_path, stderr.fileno())
    try:
        yield api, log
    finally:
        api.stop()


def _lines(log: Path) -> list[dict[str, Any]]:
    """Every line of the log, each of which must be one JSON object."""
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}") from None
    return parsed


def _access(log: Path, correlation_id: str) -> list[dict[str, Any]]:
    return [line for line in _lines(log)
            if line.get("logger") == "nocontact.access" and line.get("correlation_id") == correlation_id]


def test_one_json_access_line_per_request_and_gunicorn_s_lines_in_the_same_json(
        api_log: tuple[Api, Path]) -> None:
    api, log = api_log
    with httpx.Client(timeout=15) as client:
        created = client.post(api.url + "/v1/tenants", json={"name": "Acme"}, headers=bearer(api.token))
        assert created.status_code == 201, created.text
        tenant = created.json()
        listed = client.get(api.url + "/v1/commitments", params={"api_key": tenant["api_key"], "limit": 5},
                            headers={**bearer(tenant["api_key"]), "X-Correlation-ID": "list-1",
                                     "X-Forwarded-For": "203.0.113.7"})
        assert listed.status_code == 200, listed.text
        refused = client.get(api.url + "/v1/commitments", headers={**bearer("nck_" + "x" * 43),
                                                                   "X-Correlation-ID": "refused-1"})
        assert refused.status_code == 401
        missing = client.get(api.url + "/no/such/page", headers={"X-Correlation-ID": "missing-1",
                                                                 "X-Forwarded-For": tenant["api_key"]})
        assert missing.status_code == 404
    lines = wait_until(lambda: _access(log, "missing-1") and _lines(log), 15, message="the access log lines")

    [ok] = _access(log, "list-1")
    assert ok["method"] == "GET" and ok["route"] == "/v1/commitments" and ok["path"] == "/v1/commitments"
    assert ok["status"] == 200 and ok["bytes"] == len(listed.content) and 0 < ok["duration_ms"] < 15000
    assert ok["client"] == "127.0.0.1" and ok["forwarded_for"] == "203.0.113.7"
    assert ok["role"] == "admin" and ok["tenant_id"] == tenant["id"] and ok["credential_id"]
    assert ok["service"] == "commitment" and ok["level"] == "info" and ok["event"] == "request"
    assert ok["credential_id"] not in tenant["api_key"]
    [no] = _access(log, "refused-1")
    assert no["status"] == 401 and "role" not in no and "credential_id" not in no
    [lost] = _access(log, "missing-1")
    assert lost["status"] == 404 and "route" not in lost and lost["path"] == "/no/such/page"
    assert "forwarded_for" not in lost  # not an address: not logged, whatever it holds
    # One line per request: the creation and the three above (and the readiness probes).
    requests = [line for line in lines if line.get("logger") == "nocontact.access"]
    assert len([line for line in requests if line["path"] != "/readyz"]) == 4
    text = log.read_text()
    assert tenant["api_key"] not in text and api.token not in text and "api_key=" not in text
    assert tenant["api_key"][-20:] not in text

    api.stop()
    gunicorn = [line for line in _lines(log) if line.get("logger") == "gunicorn.error"]
    events = [line["event"] for line in gunicorn]
    assert any(event.startswith("Booting worker with pid: ") for event in events), events
    assert any(event.startswith("Listening at: ") for event in events) and "Shutting down: Master" in events
    assert {line["service"] for line in gunicorn} == {"commitment"}
    assert all(isinstance(line["pid"], int) and line["timestamp"] for line in gunicorn)


@pytest.mark.parametrize("forced", [None, "json"])
def test_a_terminal_gets_the_console_format_unless_json_is_asked_for(tmp_path: Path, forced: str | None) -> None:
    terminal = Terminal(tmp_path / "terminal.txt")
    extra = {"NOCONTACT_LOG_FORMAT": forced} if forced else {}
    try:
        api = Api(tmp_path, terminal.slave, **extra)
        try:
            httpx.get(api.url + "/healthz", headers={"X-Correlation-ID": "probe-1"}, timeout=15)
            wait_until(lambda: "probe-1" in (tmp_path / "terminal.txt").read_text(errors="replace"), 15,
                       message="the request's line on the terminal")
        finally:
            api.stop()
    finally:
        terminal.close()
    shown = [line for line in (tmp_path / "terminal.txt").read_text(errors="replace").splitlines() if line.strip()]
    booting = [line for line in shown if "Booting worker with pid" in line]
    request = [line for line in shown if "probe-1" in line]
    assert booting and request, shown
    if forced == "json":
        assert all(json.loads(line) for line in shown)
        assert json.loads(request[0])["status"] == 200
    else:
        assert not [line for line in shown if line.lstrip().startswith("{")], shown
        assert "\x1b[" in request[0]  # coloured, for a person
        plain = re.sub(r"\x1b\[[0-9;]*m", "", request[0])
        assert "request" in plain and "status=200" in plain and "route=/healthz" in plain


def test_a_file_gets_json_unless_the_console_format_is_asked_for(tmp_path: Path) -> None:
    log = tmp_path / "api.log"
    with log.open("ab") as stderr:
        api = Api(tmp_path, stderr.fileno(), NOCONTACT_LOG_FORMAT="console")
    try:
        httpx.get(api.url + "/healthz", headers={"X-Correlation-ID": "probe-2"}, timeout=15)
        wait_until(lambda: "probe-2" in log.read_text(), 15, message="the request's line")
    finally:
        api.stop()
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    assert lines and not [line for line in lines if line.startswith("{")]
    assert "\x1b[" not in log.read_text()  # no colours in a file


# -- make run: worker metrics --------------------------------------------------------------


def test_worker_metrics_ports_follow_the_api_ports_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    assert runner.worker_metrics_port("checkin") == 9002
    monkeypatch.setenv("NOCONTACT_CHECKIN_PORT", "18002")
    assert runner.worker_metrics_port("checkin") == 19002
    monkeypatch.setenv("NOCONTACT_CHECKIN_WORKER_METRICS_PORT", "9555")
    assert runner.worker_metrics_port("checkin") == 9555


def _metrics(url: str) -> str | None:
    try:
        response = httpx.get(url, timeout=3)
    except httpx.HTTPError:
        return None
    return response.text if response.status_code == 200 else None


def test_make_run_serves_every_worker_s_metrics_and_logs_requests(tmp_path: Path) -> None:
    env = _environment(tmp_path)
    del env["NOCONTACT_DATABASE_URL"]  # make run's own default: var/nocontact.sqlite3
    for service in SERVICES:
        env[f"NOCONTACT_{service.upper()}_PORT"] = str(free_port())
        env[f"NOCONTACT_{service.upper()}_WORKER_METRICS_PORT"] = str(free_port())
    out, err = tmp_path / "run.out", tmp_path / "run.err"
    with out.open("ab") as stdout, err.open("ab") as stderr:
        suite = subprocess.Popen([sys.executable, "-m", "services.cli", "run", "--no-seed"], cwd=tmp_path, env=env,
                                 stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr)
    try:
        wait_until(lambda: suite.poll() is not None or "Ctrl-C stops the suite" in out.read_text(), 240,
                   interval=0.2, message="make run's banner")
        assert suite.poll() is None, err.read_text()[-3000:]
        banner = out.read_text()
        urls = {service: f"http://127.0.0.1:{env[f'NOCONTACT_{service.upper()}_WORKER_METRICS_PORT']}/metrics"
                for service in SERVICES}
        for url in urls.values():
            assert f"worker metrics: {url}" in banner
        notification = wait_until(lambda: _metrics(urls["notification"]), 60, interval=0.2,
                                  message="the notification worker's metrics")
        assert "nocontact_webhook_deliveries_pending 0.0" in notification
        assert "nocontact_webhook_oldest_due_wait_seconds 0.0" in notification
        wait_until(lambda: 'nocontact_relay_lag_events{relay="relay:checkin"}' in (_metrics(urls["checkin"]) or ""),
                   60, interval=0.2, message="the checkin relay's lag")
        wait_until(lambda: 'nocontact_relay_lag_events{relay="relay:commitment"}'
                   in (_metrics(urls["commitment"]) or ""), 60, interval=0.2, message="the commitment relay's lag")
        api = f"http://127.0.0.1:{env['NOCONTACT_CHECKIN_PORT']}"
        assert httpx.get(api + "/healthz", headers={"X-Correlation-ID": "run-probe"}, timeout=10).status_code == 200
        wait_until(lambda: "run-probe" in err.read_text(), 15, message="the request's access line")
    finally:
        stop(suite)
    [line] = [json.loads(line) for line in err.read_text().splitlines() if "run-probe" in line]
    assert line["service"] == "checkin" and line["route"] == "/healthz" and line["status"] == 200
    assert suite.returncode == 0
