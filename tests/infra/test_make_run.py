"""`make run` as a newcomer meets it: where everything is, and the demo's credentials kept
out of every log.

The demo tenant's admin key and 7-day coach token are written to var/demo-credentials.json
(mode 600) and printed only when standard output is a terminal: never through the logging
pipeline, never into a file that output is redirected to.
"""

from __future__ import annotations

import json
import os
import pty
import re
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from services import demo
from shared import config
from shared.testing import wait_until
from tests.infra.conftest import free_port, stop

ADMIN_KEY = "nck_demoadminkey0123456789"
SERVICES = ("commitment", "checkin", "notification")
COACH_TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjb2FjaC1tYXJpYSJ9.c2lnbmF0dXJlc2lnbmF0dXJl"


def _tenant() -> demo.DemoTenant:
    return demo.DemoTenant(tenant_id="tenant-1", api_key=ADMIN_KEY, coach_id=demo.COACH_ID,
                           database_url="sqlite:///demo.sqlite3")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_credentials_go_to_an_owner_only_file_and_to_a_terminal_only() -> None:
    path = config.var_dir() / demo.CREDENTIALS_FILE
    path.write_text("{}")
    path.chmod(0o644)  # left by an older run with looser bits

    redirected = demo.report(_tenant(), COACH_TOKEN, 12, show_credentials=False)
    assert ADMIN_KEY not in redirected and COACH_TOKEN not in redirected
    assert str(path) in redirected
    assert _mode(path) == 0o600
    saved = json.loads(path.read_text())
    assert saved["admin_api_key"] == ADMIN_KEY and saved["coach_token"] == COACH_TOKEN
    assert saved["dashboard_sign_in_url"] == f"{config.service_url('checkin')}/dashboard#token={COACH_TOKEN}"

    on_a_terminal = demo.report(_tenant(), COACH_TOKEN, 12, show_credentials=True)
    assert ADMIN_KEY in on_a_terminal and COACH_TOKEN in on_a_terminal and str(path) in on_a_terminal
    assert _mode(path) == 0o600


class Terminal:
    """A pseudo-terminal for the runner's standard output; what it shows is copied to a file."""

    def __init__(self, copy: Path) -> None:
        self.master, self.slave = pty.openpty()
        self.copy = copy
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        with self.copy.open("ab") as out:
            while True:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # EIO: every writer closed its end
                    return
                if not chunk:
                    return
                out.write(chunk)
                out.flush()

    def close(self) -> None:
        os.close(self.slave)
        self._reader.join(10)
        os.close(self.master)


def _run_until_banner(tmp_path: Path, stdout: int) -> tuple[dict[str, str], Path]:
    """Run what `make run` runs until its banner is out, then Ctrl-C; returns its env and var/."""
    var = tmp_path / "var"
    env = {name: value for name, value in os.environ.items() if not name.startswith("NOCONTACT_")}
    env.update(NOCONTACT_VAR_DIR=str(var), NOCONTACT_SECRET_KEY=os.environ["NOCONTACT_SECRET_KEY"],
               NOCONTACT_WEB_WORKERS="1")
    for service in SERVICES:
        env[f"NOCONTACT_{service.upper()}_PORT"] = str(free_port())
    log = tmp_path / "run.log"
    with log.open("ab") as stderr:
        runner = subprocess.Popen([sys.executable, "-m", "services.cli", "run"], cwd=tmp_path, env=env,
                                  stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr)
    try:
        # The banner's last line comes after the seed, which wrote the credentials file.
        wait_until(lambda: runner.poll() is not None or _banner_done(tmp_path), 240, message="make run's banner")
        assert runner.poll() is None, log.read_text()[-3000:]
    finally:
        stop(runner)
    return env, var


def _banner_done(tmp_path: Path) -> bool:
    return any("Ctrl-C stops the suite" in path.read_text(errors="replace")
               for path in (tmp_path / "run.log", tmp_path / "terminal.txt") if path.exists())


def _credentials(var: Path) -> tuple[Path, tuple[str, str]]:
    path = var / demo.CREDENTIALS_FILE
    assert _mode(path) == 0o600
    assert _mode(var / demo.STATE_FILE) == 0o600  # the seed's state holds the admin key too
    saved = json.loads(path.read_text())
    return path, (saved["admin_api_key"], saved["coach_token"])


def test_make_run_redirected_to_a_log_writes_no_credential_into_it(tmp_path: Path) -> None:
    # `make run > run.log 2>&1`, or a service manager collecting its output.
    log = tmp_path / "run.log"
    with log.open("ab") as stdout:
        env, var = _run_until_banner(tmp_path, stdout.fileno())
    logged = log.read_text()
    path, secrets = _credentials(var)
    assert [line for line in logged.splitlines() if line.startswith("{")], "no JSON log line: proves nothing"
    for secret in secrets:
        assert secret not in logged
    assert str(path) in logged
    for service in SERVICES:
        assert f"API docs: http://127.0.0.1:{env[f'NOCONTACT_{service.upper()}_PORT']}/docs" in logged
    assert f"Coach dashboard: http://127.0.0.1:{env['NOCONTACT_CHECKIN_PORT']}/dashboard" in logged
    assert re.search(r"API reference \(all three services\): http://127\.0\.0\.1:\d+/reference", logged)


def test_make_run_on_a_terminal_shows_the_credentials_there_and_not_in_the_log(tmp_path: Path) -> None:
    terminal = Terminal(tmp_path / "terminal.txt")
    try:
        _, var = _run_until_banner(tmp_path, terminal.slave)
    finally:
        terminal.close()
    shown = (tmp_path / "terminal.txt").read_text()
    path, secrets = _credentials(var)
    assert all(secret in shown for secret in secrets), "a newcomer at a terminal sees the demo credentials"
    assert str(path) in shown
    logged = (tmp_path / "run.log").read_text()  # standard error: the services' logs
    assert [line for line in logged.splitlines() if line.startswith("{")], "no JSON log line: proves nothing"
    for secret in secrets:
        assert secret not in logged


@pytest.mark.parametrize("url", ["postgresql://nocontact:s3cret-pass@db:5432/nocontact",
                                 "amqp://guest:s3cret-pass@127.0.0.1:5672//"])
def test_the_banner_masks_passwords_in_urls(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from services import runner

    monkeypatch.setenv("NOCONTACT_DATABASE_URL", url)
    monkeypatch.setenv("NOCONTACT_BROKER_URL", url)
    text = runner.banner({"checkin": True})
    assert "s3cret-pass" not in text and "***@" in text
