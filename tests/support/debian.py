"""Programs the tests drive that come from Debian's packages (chromium, nginx, promtool)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from shared import testing


def installed(binary: str, package: str) -> bool:
    """Whether `binary` exists, after `apt-get install -y <package>` (and an `apt-get
    update` if the first try fails) when it did not: the test machines run as root, and
    Debian's policy-rc.d keeps a package from starting a server of its own."""
    if not Path(binary).exists() and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (["apt-get", "install", "-y", package], ["apt-get", "update"],
                        ["apt-get", "install", "-y", package]):
            try:
                subprocess.run(command, env=env, check=False, capture_output=True, timeout=900)
            except (OSError, subprocess.TimeoutExpired):
                break
            if Path(binary).exists():
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
