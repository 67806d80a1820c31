"""gunicorn's settings file (infra/gunicorn.conf.py) reads nocontact's settings the one
strict way (shared.config): loaded as gunicorn loads it, it is well-formed with the
defaults, and a malformed NOCONTACT_WEB_WORKERS stops gunicorn with the variable named."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from shared.config import REPO_ROOT


def _check_config(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {name: value for name, value in os.environ.items() if not name.startswith("NOCONTACT_")}
    gunicorn = Path(sys.executable).parent / "gunicorn"
    return subprocess.run(
        [str(gunicorn), "-c", str(REPO_ROOT / "infra" / "gunicorn.conf.py"), "--check-config",
         "services.checkin.wsgi:app"],
        env={**clean, "NOCONTACT_VAR_DIR": str(tmp_path), **env}, cwd=tmp_path, capture_output=True, text=True,
        timeout=120)


def test_the_settings_file_loads_with_the_defaults(tmp_path: Path) -> None:
    # Every module-level name of the file that gunicorn knows as a setting is taken as
    # one: a module imported there as `config` made every API fail to start.
    checked = _check_config(tmp_path)
    assert checked.returncode == 0, checked.stderr[-2000:]


def test_a_malformed_worker_count_stops_gunicorn_with_the_variable_named(tmp_path: Path) -> None:
    checked = _check_config(tmp_path, NOCONTACT_WEB_WORKERS="two")
    assert checked.returncode != 0
    assert "NOCONTACT_WEB_WORKERS='two' is not a whole number" in checked.stderr
