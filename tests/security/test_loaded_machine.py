"""The tests that race threads, transactions and servers pass on a loaded machine too.

A test that waits a guessed time ("the relay has looked by now", "under 2.5 s") passes on
an idle developer machine and fails on a busy CI runner. Here those tests run while busy
loops keep every core saturated: they must wait on conditions (a lock seen in
pg_stat_activity, a receiver still holding a request, a hang-up seen by the server), not
on margins. Short: a few tests, in one pytest process of their own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from shared.config import REPO_ROOT

#: Each waited on a margin once (or still races by design); each must pass under load.
TIMING_SENSITIVE = [
    # Appends wait for the append lock, and only for it; a racing append loses.
    "tests/integration/shared/test_eventstore.py::test_appends_do_not_wait_for_each_other_but_for_lock_appends",
    "tests/integration/shared/test_eventstore.py::test_an_append_racing_one_in_flight_on_the_same_stream_loses",
    "tests/integration/shared/test_eventstore.py::test_the_feed_holds_back_what_an_older_transaction_may_still_precede",
    "tests/integration/checkin/test_store_invariant.py::test_a_same_day_race_is_lost_on_the_append_and_answers_409",
    # Woken relays (an SOS goes out before the poll interval).
    "tests/integration/shared/test_relay_wakeup.py",
    # A slow or endless receiver neither holds the sender nor another tenant's deliveries.
    "tests/integration/notification/test_sender.py::test_slow_receiver_times_out",
    "tests/integration/notification/test_sender.py::test_endless_body_is_not_read_to_the_end",
    "tests/integration/notification/test_restart_and_isolation.py::test_a_slow_endpoint_does_not_delay_another_tenant",
    # Credentials count on every service at once (a revoked key was accepted for 215 ms).
    "tests/security/test_credentials.py",
]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def every_core_busy() -> Iterator[list[subprocess.Popen[bytes]]]:
    """One busy loop per core (at least two), at the tests' own priority."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(max(2, os.cpu_count() or 2))]
    try:
        yield hogs
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait(10)


# Alone: its busy loops would load the other tests of a parallel run (not written to pass
# under them), and its inner run starts a second security suite.
@pytest.mark.exclusive
@pytest.mark.timeout(900)
def test_the_timing_sensitive_tests_pass_while_every_core_is_busy(tmp_path: Path) -> None:
    # The inner run sets up its own databases and broker vhosts; nothing of this process's
    # per-test environment leaks into it.
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOCONTACT_")}
    with every_core_busy() as hogs:
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=-ra",
             "--junitxml", str(tmp_path / "loaded.xml"), *TIMING_SENSITIVE],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=840,
        )
        busy = [_cpu_seconds(hog.pid) for hog in hogs]
    report = run.stdout[-6000:] + run.stderr[-2000:]
    assert run.returncode == 0, report
    assert " passed" in run.stdout and "skipped" not in run.stdout, report
    # The load was real: each busy loop had a core for a good part of the run.
    assert min(busy) > 1.0, busy
