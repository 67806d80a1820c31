"""The README's quickstart runs as written.

Its blocks are read from README.md and run in order against real processes: the first
starts the suite as `make run` does (`nocontact run`, which is what the Makefile's `run`
target runs once the virtual environment is there) with the block's variables, on the
embedded setup; `receiver.py` is saved as the README says; the commands of the second
terminal run in bash, with `set -euo pipefail`, so any command that fails fails the test.
Only the ports are changed (the machine is shared: the suite and the receiver get free
ports, substituted for 8001-8003 and 8099 wherever the blocks name them).

What the README promises is then checked: the repeated check-in was a replay, the streak
counts the day, and the receiver verified the webhooks of both events.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from shared.config import REPO_ROOT
from shared.testing import wait_until
from tests.infra.conftest import free_port, stop

README = REPO_ROOT / "README.md"
PORTS = {"commitment": 8001, "checkin": 8002, "notification": 8003}
RECEIVER_PORT = 8099


def quickstart_blocks() -> list[tuple[str, str]]:
    """The fenced blocks of the README's Quickstart section, as (language, text)."""
    text = README.read_text()
    section = re.search(r"^## Quickstart.*?(?=^## )", text, re.S | re.M)
    assert section, "README.md has no Quickstart section"
    return re.findall(r"^```(\w+)\n(.*?)^```$", section.group(0), re.S | re.M)


def test_the_quickstart_has_the_blocks_this_test_runs() -> None:
    blocks = quickstart_blocks()
    assert [language for language, _ in blocks] == ["sh", "python", "sh"]
    start = blocks[0][1].strip()
    assert re.fullmatch(r"(?:[A-Z_]+=\S+ )*make run", start), start
    # `make run` is `nocontact run` once the virtual environment is there.
    recipe = re.search(r"^run:.*\n((?:\t.*\n)+)", (REPO_ROOT / "Makefile").read_text(), re.M)
    assert recipe and "$(BIN)/nocontact run" in recipe.group(1)

def test_the_readme_points_at_nothing_outside_the_repository() -> None:
    text = README.read_text()
    assert "CONTRACT.md" not in text
    assert not re.findall(r"\]\(\.\./", text), "a link out of the repository"
    assert "(#api-reference)" in text and "## API reference" in text


def _with_ports(text: str, ports: dict[str, int], receiver_port: int) -> str:
    for service, port in PORTS.items():
        text = text.replace(f"127.0.0.1:{port}", f"127.0.0.1:{ports[service]}")
    return text.replace(str(RECEIVER_PORT), str(receiver_port))


def _banner_done(log: Path) -> bool:
    return log.exists() and "Ctrl-C stops the suite" in log.read_text(errors="replace")


def test_the_quickstart_runs_as_written(tmp_path: Path) -> None:
    assert shutil.which("curl"), "the quickstart uses curl"
    (_, start), (_, receiver), (_, commands) = quickstart_blocks()
    ports = {service: free_port() for service in PORTS}
    receiver_port = free_port()

    env = {name: value for name, value in os.environ.items() if not name.startswith("NOCONTACT_")}
    env.update(dict(assignment.split("=", 1) for assignment in start.split()[:-2]))
    env.update({f"NOCONTACT_{service.upper()}_PORT": str(port) for service, port in ports.items()})
    env.update(NOCONTACT_VAR_DIR=str(tmp_path / "var"), NOCONTACT_WEB_WORKERS="1",
               NOCONTACT_SECRET_KEY=os.environ["NOCONTACT_SECRET_KEY"])
    (tmp_path / ".venv").symlink_to(REPO_ROOT / ".venv")  # the commands run .venv/bin/...
    (tmp_path / "receiver.py").write_text(_with_ports(receiver, ports, receiver_port))
    (tmp_path / "quickstart.sh").write_text(_with_ports(commands, ports, receiver_port))

    run_log = tmp_path / "run.log"
    with run_log.open("ab") as out:
        suite = subprocess.Popen([sys.executable, "-m", "services.cli", "run"], cwd=tmp_path, env=env,
                                 stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    terminal = tmp_path / "terminal.txt"
    second: subprocess.Popen[bytes] | None = None
    try:
        wait_until(lambda: suite.poll() is not None or _banner_done(run_log), 240, message="make run's banner")
        assert suite.poll() is None, run_log.read_text()[-3000:]
        with terminal.open("ab") as out:
            # A session of its own: the receiver it leaves running in the background is
            # stopped with it.
            second = subprocess.Popen(["bash", "-euo", "pipefail", "quickstart.sh"], cwd=tmp_path, env=env,
                                      stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        assert second.wait(180) == 0, terminal.read_text()[-3000:]
        shown = terminal.read_text()

        statuses = re.findall(r"^HTTP/1\.[01] (\d+)", shown, re.M)
        assert statuses == ["201", "201"], shown
        assert len(re.findall(r"^idempotent-replayed: true", shown, re.M | re.I)) == 1, shown
        locations = re.findall(r"^location: (\S+)", shown, re.M | re.I)
        assert len(locations) == 2 and locations[0] == locations[1], shown
        streak = json.loads(next(line for line in shown.splitlines() if line.startswith("{")))
        assert streak["current_days"] == 1 and streak["kept_days"] == 1, streak

        def verified() -> set[str]:
            return set(re.findall(r"^verified msg_\S+ (\S+)$", terminal.read_text(), re.M))

        wait_until(lambda: {"commitment.created", "checkin.recorded"} <= verified(), 90,
                   message="the receiver verifying both webhooks")
        assert "refused" not in terminal.read_text()
    finally:
        if second is not None:
            try:
                os.killpg(second.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        stop(suite)
