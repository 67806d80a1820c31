"""The check-in load clients, the same for nocontact and for the CRUD peer.

Each load runs in a process of its own (spawned: it shares the machine's cores with the
servers, as a client on the same host does) from a plan written as JSON, and writes one
row per request: ``[due, late, elapsed, status, commitment_id, date]`` (`stats.Request`).

- **Closed loop** (`closed_loop`): ``threads`` keep-alive connections, each POSTing its own
  distinct (commitment, date) pairs back to back for ``seconds``: the most a system
  answers at that concurrency. ``due`` is the send time, ``late`` 0.
- **Open loop** (`open_loop`): requests due at a fixed ``rate`` (request i at
  start + i / rate) whatever the answers, from a pool of ``connections`` keep-alive
  threads; a request sent after its due time (every connection busy) is ``late`` by that
  much, and its latency counts from when it was due (no coordinated omission). Requests
  not sent by the end of the window are counted as ``not_sent``.

The payload is nocontact's ``POST /v1/commitments/{id}/check-ins`` body: ``date``,
``outcome``, ``urge``, ``mood``, and one request in ten (`SLIP_EVERY`) a slip with its
``slip`` object. With ``NOCONTACT_BENCH_CHECKIN_NOTE_EVERY=N`` (default 0: none) one
request in N carries a member's ``note`` (`NOTE`), the personal value the check-in service
seals (services.checkin.personal): what measures sealing's cost (see benchmarks/unsealed).
"""

from __future__ import annotations

import http.client
import itertools
import json
import multiprocessing
import os
import resource
import threading
import time
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any

SLIP_EVERY = 10  # one check-in in ten is a slip: streak resets and milestones happen too
NOTE_EVERY = int(os.environ.get("NOCONTACT_BENCH_CHECKIN_NOTE_EVERY", "0"))
NOTE = "walked past the cafe where we used to meet and kept going; called my sister instead"

Pair = tuple[str, str]
"""(commitment_id, ISO date): one check-in to record."""


def check_in_body(day: str, index: int) -> bytes:
    body: dict[str, Any] = {"date": day, "outcome": "kept", "urge": index % 11, "mood": 1 + index % 5}
    if index % SLIP_EVERY == SLIP_EVERY - 1:
        body["outcome"] = "slipped"
        body["slip"] = {"channel": "texts", "initiated_by": "me"}
    if NOTE_EVERY and index % NOTE_EVERY == 0:
        body["note"] = NOTE
    return json.dumps(body).encode()


def plan_pairs(commitments: Sequence[str], starts_on: date, last_day: date, threads: int) -> list[list[Pair]]:
    """Distinct (commitment, date) pairs for each client thread: day by day over its own commitments.

    Thread i takes commitments i, i + threads, ...: no two threads ever touch one commitment,
    so neither system sees two requests on one stream at once from this client.
    """
    days = [(starts_on + timedelta(days=n)).isoformat() for n in range((last_day - starts_on).days + 1)]
    return [[(commitment, day) for day in days for commitment in commitments[i::threads]] for i in range(threads)]


def remaining(pairs: list[list[Pair]], sent: set[Pair]) -> list[list[Pair]]:
    """Each thread's pairs not sent yet: the next run continues where the last one stopped."""
    return [[pair for pair in thread if pair not in sent] for thread in pairs]


def _request(connection: http.client.HTTPConnection, path: str, body: bytes, headers: dict[str, str]) -> int:
    connection.request("POST", path, body=body, headers=headers)
    response = connection.getresponse()
    response.read()
    return response.status


class _Client:
    """One keep-alive connection; a failed request reconnects and counts as status 0."""

    def __init__(self, host: str, port: int, api_key: str) -> None:
        self.host, self.port = host, port
        self.headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        self.connection = http.client.HTTPConnection(host, port, timeout=30)

    def post(self, commitment_id: str, day: str, index: int) -> int:
        try:
            return _request(self.connection, f"/v1/commitments/{commitment_id}/check-ins",
                            check_in_body(day, index), self.headers)
        except (OSError, http.client.HTTPException):
            self.connection.close()
            self.connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
            return 0

    def close(self) -> None:
        self.connection.close()


def _write(output_path: str, rows: list[list[Any]], **extra: Any) -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    Path(output_path).write_text(json.dumps({
        "requests": rows, "peak_rss_mib": usage.ru_maxrss / 1024, "cpu_s": usage.ru_utime + usage.ru_stime, **extra,
    }))


def closed_loop(plan_path: str, output_path: str) -> None:
    """Entry point of a closed-loop load process (plan: host, port, api_key, seconds, work)."""
    plan = json.loads(Path(plan_path).read_text())
    work: list[list[list[str]]] = plan["work"]
    start = threading.Barrier(len(work) + 1)
    deadline_box: list[float] = []
    results: list[list[list[Any]]] = [[] for _ in work]

    def worker(index: int, pairs: list[list[str]]) -> None:
        client = _Client(plan["host"], plan["port"], plan["api_key"])
        out = results[index]
        start.wait()
        deadline = deadline_box[0]
        for n, (commitment_id, day) in enumerate(pairs):
            if time.monotonic() >= deadline:
                break
            sent_wall, sent = time.time(), time.perf_counter()
            status = client.post(commitment_id, day, n)
            out.append([sent_wall, 0.0, time.perf_counter() - sent, status, commitment_id, day])
        client.close()

    threads = [threading.Thread(target=worker, args=(i, pairs), daemon=True) for i, pairs in enumerate(work)]
    for thread in threads:
        thread.start()
    deadline_box.append(time.monotonic() + plan["seconds"])
    start.wait()
    for thread in threads:
        thread.join()
    _write(output_path, [row for rows in results for row in rows])


def open_loop(plan_path: str, output_path: str) -> None:
    """Entry point of an open-loop load process (plan: host, port, api_key, seconds, rate, connections, pairs)."""
    plan = json.loads(Path(plan_path).read_text())
    pairs: list[list[str]] = plan["pairs"]
    rate, seconds = float(plan["rate"]), float(plan["seconds"])
    due_count = min(len(pairs), int(rate * seconds))
    connections = int(plan["connections"])
    ticket = itertools.count()  # next() on a count is atomic under the GIL: one ticket per request
    start = threading.Barrier(connections + 1)
    origin: list[tuple[float, float]] = []  # (perf_counter, wall clock) of request 0's due time
    results: list[list[list[Any]]] = [[] for _ in range(connections)]

    def worker(index: int) -> None:
        client = _Client(plan["host"], plan["port"], plan["api_key"])
        out = results[index]
        start.wait()
        t0, wall0 = origin[0]
        deadline = t0 + seconds
        while (n := next(ticket)) < due_count:
            due = t0 + n / rate
            now = time.perf_counter()
            if now < due:
                time.sleep(due - now)
            elif now >= deadline:
                break  # behind schedule at the end of the window: the rest are not sent
            sent = time.perf_counter()
            commitment_id, day = pairs[n]
            status = client.post(commitment_id, day, n)
            out.append([wall0 + n / rate, max(0.0, sent - due), time.perf_counter() - sent, status, commitment_id, day])
        client.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(connections)]
    for thread in threads:
        thread.start()
    origin.append((time.perf_counter() + 0.05, time.time() + 0.05))
    start.wait()
    for thread in threads:
        thread.join()
    rows = [row for rows in results for row in rows]
    _write(output_path, rows, due=due_count, not_sent=due_count - len(rows))


def run_load(entry: str, plan: dict[str, Any], directory: Path, name: str) -> dict[str, Any]:
    """Run `closed_loop` or `open_loop` with `plan` in a spawned process; returns what it wrote."""
    target = {"closed": closed_loop, "open": open_loop}[entry]
    plan_path, output_path = directory / f"{name}-plan.json", directory / f"{name}-requests.json"
    plan_path.write_text(json.dumps(plan))
    process = multiprocessing.get_context("spawn").Process(
        target=target, args=(str(plan_path), str(output_path)), name=f"bench-load-{name}")
    process.start()
    process.join()
    if process.exitcode != 0:
        raise RuntimeError(f"load generator {name} exited with {process.exitcode}")
    result: dict[str, Any] = json.loads(output_path.read_text())
    plan_path.unlink()
    return result


def sent_pairs(rows: list[list[Any]]) -> set[Pair]:
    return {(row[4], row[5]) for row in rows}


def first(pairs: list[list[Pair]], count: int) -> list[list[Pair]]:
    """At most `count` pairs per thread: a plan file no bigger than a run can use."""
    return [thread[:count] for thread in pairs]
