"""Programs the tests drive that come from Debian's packages (chromium, nginx, promtool)."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from shared import testing

#: Taken around an installation: two test processes (make test's xdist workers) installing
#: at once would find dpkg's lock held, and apt-get gives up at once on a held lock.
_INSTALL_LOCK = Path(tempfile.gettempdir()) / "nocontact-tests-apt.lock"


def installed(binary: str, package: str) -> bool:
    """Whether `binary` exists, after `apt-get install -y <package>` (and an `apt-get
    update` if the first try fails) when it did not: the test machines run as root, and
    Debian's policy-rc.d keeps a package from starting a server of its own."""
    if Path(binary).exists() or not shutil.which("apt-get"):
        return Path(binary).exists()
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # Any other apt on the machine: wait for its lock instead of failing.
    wait = ["-o", "DPkg::Lock::Timeout=600"]
    with _INSTALL_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for command in (["apt-get", *wait, "install", "-y", package], ["apt-get", *wait, "update"],
                        ["apt-get", *wait, "install", "-y", package]):
            if Path(binary).exists():  # installed by the process that held the lock before us
                break
            try:
                subprocess.run(command, env=env, check=False, capture_output=True, timeout=900)
            except (OSError, subprocess.TimeoutExpired):
                break
    return Path(binary).exists()


def program(binary: str, package: str) -> str:
    """`binary`, installed from `package` when missing (see `installed`); without it the
    test is skipped, or failed where services are required (NOCONTACT_REQUIRE_SERVICES=1)."""
    if not installed(binary, package):
        reason = f"{binary} is missing and `apt-get install -y {package}` did not provide it"
        if testing.services_required():
            pytest.fail(reason)
        pytest.skip(reason)
    return binary
