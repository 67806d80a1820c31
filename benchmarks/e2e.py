"""End to end over HTTP: the whole suite as real processes under a sustained check-in load.

What runs: the three APIs under gunicorn (``infra/gunicorn.conf.py``, gthread) and one
``nocontact worker <svc>`` process per service (relays, inboxes, scheduler, webhook
delivery), on PostgreSQL (a fresh schema in database ``nocontact_bench``) and RabbitMQ
(a unique ``NOCONTACT_BUS_PREFIX``; the bench's queues and exchanges are deleted after).
A partner's webhook receiver (in this process, threads, HTTP/1.1 keep-alive) verifies
every delivery's Standard Webhooks signature before answering 204.

Setup (not timed): a tenant, ``backdate_days`` raised to 365, a webhook endpoint subscribed
to ``checkin.recorded`` (so every check-in yields exactly one webhook), and N commitments
starting 300 days ago, created over HTTP and awaited until the checkin service knows them
(they travel over the bus).

The load generator is a separate process (it shares the machine's cores with the suite,
as a client on the same host does): ``concurrency`` threads, each with one keep-alive
connection, POST check-ins on distinct (commitment, date) pairs back to back for
``seconds``. Figures:

- check-ins/s: 201 answers / load window; also the slowest and median one-second bucket;
- API latency p50/p95/p99 of the POSTs, measured by the client (includes queueing in
  gunicorn's backlog when all its threads are busy);
- event-to-webhook latency: receive time at the receiver minus the event time carried by
  the webhook (``timestamp`` = the event's ``occurred_at``, the handler's clock when it
  took the request), and minus the moment the client got its 201 (matched by commitment
  and date): the second is what a partner sees after the member's app got its answer;
- drain: how long after the last request the last webhook arrived (the backlog);
- peak RSS (VmHWM) of every process, gunicorn workers included, and CPU seconds each
  used during the load window (where the 2 cores went).

Environment: ``NOCONTACT_BENCH_E2E_SECONDS`` (60), ``NOCONTACT_BENCH_E2E_CONCURRENCY``
(16), ``NOCONTACT_BENCH_E2E_COMMITMENTS`` (2000), ``NOCONTACT_BENCH_E2E_DRAIN_S`` (180,
the bound on waiting for the backlog), ``NOCONTACT_BENCH_E2E_PYSPY=1`` (py-spy records a
checkin API worker, and the checkin and notification workers during the load; raw stacks
and a top-frames summary under var/bench/; the profiler costs CPU, so figures of such a
run are perturbed), ``NOCONTACT_WEB_WORKERS`` / ``NOCONTACT_WEB_THREADS`` (gunicorn, 2 x 4).

`python -m benchmarks.e2e` runs this section alone (var/bench/e2e.md and e2e.json);
`python -m benchmarks e2e` is the same through the harness.
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import resource
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from standardwebhooks import Webhook

from benchmarks import BENCH_DIR, Settings, postgres_database_url
from benchmarks.report import Section
from shared import testing
from shared.config import REPO_ROOT
from shared.db import migrate
from shared.testing import bearer, eventually

SERVICES = ("commitment", "checkin", "notification")
START_DAYS_AGO = 300
SLIP_EVERY = 10  # one check-in in ten is a slip: streak resets and milestones happen too


@dataclass(frozen=True)
class E2EConfig:
    seconds: float
    concurrency: int
    commitments: int
    drain_s: float
    pyspy: bool

    @classmethod
    def from_environment(cls) -> E2EConfig:
        return cls(
            seconds=float(os.environ.get("NOCONTACT_BENCH_E2E_SECONDS", "60")),
            concurrency=int(os.environ.get("NOCONTACT_BENCH_E2E_CONCURRENCY", "16")),
            commitments=int(os.environ.get("NOCONTACT_BENCH_E2E_COMMITMENTS", "2000")),
            drain_s=float(os.environ.get("NOCONTACT_BENCH_E2E_DRAIN_S", "180")),
            pyspy=os.environ.get("NOCONTACT_BENCH_E2E_PYSPY", "").lower() in ("1", "true", "yes"),
        )


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (no interpolation: a reported p99 is a latency that happened)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[index]


# -- the suite as processes -----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _bin(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


@dataclass
class Suite:
    env: dict[str, str]
    urls: dict[str, str]
    log_dir: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self) -> None:
        for service in SERVICES:
            metrics_dir = self.log_dir / "prometheus" / service
            metrics_dir.mkdir(parents=True, exist_ok=True)
            api = [
                _bin("gunicorn"), "-c", str(REPO_ROOT / "infra" / "gunicorn.conf.py"),
                "--bind", self.urls[service].removeprefix("http://"), f"services.{service}.wsgi:app",
            ]
            self._spawn(f"{service}-api", api, {**self.env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)})
            self._spawn(f"{service}-worker", [sys.executable, "-m", "services.cli", "worker", service], self.env)

    def _spawn(self, name: str, command: list[str], env: dict[str, str]) -> None:
        with open(self.log_dir / f"{name}.log", "ab") as log:  # the child keeps its own descriptor
            self.processes[name] = subprocess.Popen(command, env=env, cwd=REPO_ROOT, stdout=log,
                                                    stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 90.0) -> None:
        def ready(url: str) -> bool:
            try:
                return httpx.get(url + "/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        for service, url in self.urls.items():
            testing.wait_until(lambda url=url: ready(url), timeout, interval=0.2, message=f"{service} /readyz")

    def dead(self) -> dict[str, int]:
        return {name: p.returncode for name, p in self.processes.items() if p.poll() is not None}

    def pids(self) -> dict[str, int]:
        """Every process of the suite: each child, and each gunicorn worker under its master."""
        result: dict[str, int] = {}
        for name, popen in self.processes.items():
            if popen.poll() is not None:
                continue
            if name.endswith("-api"):
                result[f"{name} (master)"] = popen.pid
                for index, child in enumerate(_children(popen.pid), start=1):
                    result[f"{name} worker {index}"] = child
            else:
                result[name] = popen.pid
        return result

    def stop(self, timeout: float = 30.0) -> None:
        for popen in self.processes.values():
            if popen.poll() is None:
                popen.terminate()
        deadline = time.monotonic() + timeout
        for popen in self.processes.values():
            try:
                popen.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait()


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(value) for value in text.split()]


def peak_rss_mib(pid: int) -> float | None:
    """The kernel's high-water mark of the process's resident memory (VmHWM)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time the process has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def running_suite(log_dir: Path) -> Iterator[Suite]:
    broker_url = os.environ.get("NOCONTACT_BENCH_BROKER_URL") or testing.rabbitmq_url()
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    with testing.fresh_postgres_schema(postgres_database_url()) as database_url:
        migrate(database_url)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("NOCONTACT_")},
            "NOCONTACT_DATABASE_URL": database_url,
            "NOCONTACT_BROKER_URL": broker_url,
            "NOCONTACT_BUS_PREFIX": prefix,
            "NOCONTACT_VAR_DIR": str(log_dir / "var"),
            "NOCONTACT_SECRET_KEY": "sk-" + uuid.uuid4().hex,
            "NOCONTACT_OPERATOR_TOKEN": "op-" + uuid.uuid4().hex,
            "NOCONTACT_WEBHOOK_ALLOW_PRIVATE": "true",
            # The load is one API key: the per-key abuse guard (600/min) would measure itself.
            "NOCONTACT_RATE_LIMIT_PER_MINUTE": "0",
        }
        for name in ("NOCONTACT_WEB_WORKERS", "NOCONTACT_WEB_THREADS", "NOCONTACT_LOG_LEVEL",
                     "NOCONTACT_DB_POOL_SIZE", "NOCONTACT_DB_MAX_OVERFLOW", "NOCONTACT_WEBHOOK_WORKERS",
                     "NOCONTACT_WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT"):
            if name in os.environ:
                env[name] = os.environ[name]
        urls = {}
        for service in SERVICES:
            port = _free_port()
            urls[service] = f"http://127.0.0.1:{port}"
            env[f"NOCONTACT_{service.upper()}_PORT"] = str(port)
            env[f"NOCONTACT_{service.upper()}_URL"] = urls[service]
        suite = Suite(env, urls, log_dir)
        try:
            suite.start()
            suite.wait_ready()
            yield suite
        finally:
            suite.stop()
            try:
                testing.delete_bus(broker_url, prefix)
            except Exception as error:  # noqa: BLE001 - cleanup must not hide the figures
                print(f"[bench] e2e: could not delete bus {prefix}*: {error}", file=sys.stderr)


# -- the partner's receiver -------------------------------------------------------------------


class Receiver:
    """Webhook endpoint on loopback: verifies each signature, records arrival times."""

    def __init__(self) -> None:
        self.secret: str | None = None
        self.arrivals: list[tuple[float, str, str, str, float]] = []
        """(received, webhook-id, commitment_id, date, event timestamp) of verified deliveries."""
        self.rejected = 0
        self._lock = threading.Lock()
        self._verifier: Webhook | None = None
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a partner's server would offer

            def do_POST(self) -> None:  # http.server calls do_<METHOD>
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received = time.time()
                status = receiver.accept(received, {k.lower(): v for k, v in self.headers.items()}, body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def set_secret(self, secret: str) -> None:
        self.secret = secret
        self._verifier = Webhook(secret)

    def accept(self, received: float, headers: dict[str, str], body: bytes) -> int:
        try:
            assert self._verifier is not None
            payload = self._verifier.verify(body, headers)
        except Exception:  # noqa: BLE001 - a bad signature is a 401, as a partner answers
            with self._lock:
                self.rejected += 1
            return 401
        data = payload.get("data", {})
        stamp = datetime.fromisoformat(payload["timestamp"]).timestamp()
        with self._lock:
            self.arrivals.append((received, headers["webhook-id"], data.get("commitment_id", ""),
                                  data.get("date", ""), stamp))
        return 204

    def unique(self) -> int:
        with self._lock:
            return len({arrival[1] for arrival in self.arrivals})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- the load generator (its own process) -----------------------------------------------------


def check_in_body(day: str, index: int) -> bytes:
    body: dict[str, Any] = {"date": day, "outcome": "kept", "urge": index % 11, "mood": 1 + index % 5}
    if index % SLIP_EVERY == SLIP_EVERY - 1:
        body["outcome"] = "slipped"
        body["slip"] = {"channel": "texts", "initiated_by": "me"}
    return json.dumps(body).encode()


def load_generator(plan_path: str, output_path: str) -> None:
    """Entry point of the load process: runs the plan, writes every request's figures."""
    plan = json.loads(Path(plan_path).read_text())
    host, port = plan["host"], plan["port"]
    headers = {"Authorization": f"Bearer {plan['api_key']}", "Content-Type": "application/json"}
    deadline_box: list[float] = []
    start = threading.Barrier(len(plan["work"]) + 1)
    results: list[list[list[Any]]] = [[] for _ in plan["work"]]

    def worker(index: int, pairs: list[list[str]]) -> None:
        connection = http.client.HTTPConnection(host, port, timeout=30)
        out = results[index]
        start.wait()
        deadline = deadline_box[0]
        for n, (commitment_id, day) in enumerate(pairs):
            if time.monotonic() >= deadline:
                break
            path = f"/v1/commitments/{commitment_id}/check-ins"
            sent_wall = time.time()
            sent = time.perf_counter()
            try:
                connection.request("POST", path, body=check_in_body(day, n), headers=headers)
                response = connection.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                connection.close()
                connection = http.client.HTTPConnection(host, port, timeout=30)
                status = 0
            elapsed = time.perf_counter() - sent
            out.append([sent_wall, elapsed, status, commitment_id, day])
        connection.close()

    threads = [threading.Thread(target=worker, args=(i, pairs), daemon=True) for i, pairs in enumerate(plan["work"])]
    for thread in threads:
        thread.start()
    deadline_box.append(time.monotonic() + plan["seconds"])
    start.wait()
    for thread in threads:
        thread.join()
    rusage = resource.getrusage(resource.RUSAGE_SELF)
    Path(output_path).write_text(json.dumps({
        "requests": [row for rows in results for row in rows],
        "peak_rss_mib": rusage.ru_maxrss / 1024,
        "cpu_s": rusage.ru_utime + rusage.ru_stime,
    }))


# -- setup over HTTP --------------------------------------------------------------------------


@dataclass
class Setup:
    api_key: str
    commitments: list[str]
    starts_on: date


def set_up(suite: Suite, receiver: Receiver, config: E2EConfig) -> Setup:
    client = httpx.Client(timeout=30, limits=httpx.Limits(max_connections=config.concurrency))
    created = client.post(f"{suite.urls['commitment']}/v1/tenants", json={"name": "Bench"},
                          headers=bearer(suite.env["NOCONTACT_OPERATOR_TOKEN"]))
    created.raise_for_status()
    admin = bearer(created.json()["api_key"])
    eventually(lambda: client.put(f"{suite.urls['checkin']}/v1/settings", headers=admin,
                                   json={"backdate_days": 365}), 200, timeout=60)
    endpoint = eventually(lambda: client.post(
        f"{suite.urls['notification']}/v1/webhook-endpoints", headers=admin,
        json={"url": receiver.url, "event_types": ["checkin.recorded"], "description": "bench"}), 201,
        timeout=60).json()
    receiver.set_secret(endpoint["secret"])

    starts_on = datetime.now(UTC).date() - timedelta(days=START_DAYS_AGO)

    def create(index: int) -> str:
        response = client.post(f"{suite.urls['commitment']}/v1/commitments", headers=admin, json={
            "member_id": f"m-{index}", "contact": {"label": "Alex", "relationship": "romantic"},
            "channels": ["calls", "texts"], "timezone": "UTC", "starts_on": starts_on.isoformat(),
            "duration_days": None,
        })
        if response.status_code != 201:
            raise AssertionError(f"commitment {index}: {response.status_code} {response.text}")
        return str(response.json()["id"])

    def known(commitment_id: str) -> None:
        eventually(lambda: client.get(f"{suite.urls['checkin']}/v1/commitments/{commitment_id}/streak",
                                       headers=admin), 200, timeout=60)

    with ThreadPoolExecutor(config.concurrency) as pool:
        commitments = list(pool.map(create, range(config.commitments)))
        list(pool.map(known, commitments))
    client.close()
    return Setup(created.json()["api_key"], commitments, starts_on)


def plan_work(setup: Setup, concurrency: int, seconds: float) -> list[list[tuple[str, str]]]:
    """Distinct (commitment, date) pairs per client thread, day by day over its commitments.

    At most 250 requests per second per thread are planned (a loopback POST through the
    whole stack takes milliseconds): enough work for the window without a huge plan file.
    """
    cap = int(seconds * 250) + 100
    last_day = datetime.now(UTC).date() - timedelta(days=1)
    days = [(setup.starts_on + timedelta(days=n)).isoformat()
            for n in range((last_day - setup.starts_on).days + 1)]
    return [[(commitment, day) for day in days for commitment in setup.commitments[i::concurrency]][:cap]
            for i in range(concurrency)]


# -- profiling ---------------------------------------------------------------------------------


def start_pyspy(targets: dict[str, int], seconds: float, stamp: str) -> list[tuple[str, Path, subprocess.Popen[bytes]]]:
    started = []
    for name, pid in targets.items():
        path = BENCH_DIR / f"e2e-pyspy-{stamp}-{name}.txt"
        command = [_bin("py-spy"), "record", "--pid", str(pid), "--duration", str(max(int(seconds), 1)),
                   "--rate", "50", "--format", "raw", "--nonblocking", "-o", str(path)]
        started.append((name, path, subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)))
    return started


def summarise_stacks(path: Path, top: int = 25) -> list[str]:
    """Top frames of a py-spy raw (collapsed) profile: by own samples and by total samples."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    if not samples:
        return ["(no samples)"]
    lines = [f"{samples} samples", "", "own time:"]
    lines += [f"  {100 * c / samples:5.1f}%  {frame}" for frame, c in own.most_common(top)]
    lines += ["", "total time (the frame or anything it calls):"]
    lines += [f"  {100 * c / samples:5.1f}%  {frame}" for frame, c in total.most_common(top)]
    return lines


# -- the run -----------------------------------------------------------------------------------


@dataclass
class Result:
    config: E2EConfig
    requests: list[list[Any]]
    arrivals: list[tuple[float, str, str, str, float]]
    rejected: int
    drained: bool
    drain_s: float
    peak_rss: dict[str, float]
    cpu: dict[str, float]
    load_process: dict[str, float]
    profiles: list[Path]


def run(config: E2EConfig) -> Result:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    log_dir = BENCH_DIR / f"e2e-{stamp}"
    log_dir.mkdir(parents=True, exist_ok=True)
    receiver = Receiver()
    profiles: list[Path] = []
    try:
        with running_suite(log_dir) as suite:
            print(f"[bench] e2e: suite up, creating {config.commitments} commitments", file=sys.stderr, flush=True)
            setup = set_up(suite, receiver, config)
            checkin = suite.urls["checkin"].removeprefix("http://").split(":")
            plan_path, output_path = log_dir / "plan.json", log_dir / "requests.json"
            plan_path.write_text(json.dumps({
                "host": checkin[0], "port": int(checkin[1]), "api_key": setup.api_key,
                "seconds": config.seconds, "work": plan_work(setup, config.concurrency, config.seconds),
            }))
            print(f"[bench] e2e: load for {config.seconds:.0f} s at concurrency {config.concurrency}",
                  file=sys.stderr, flush=True)
            pids = suite.pids()
            cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
            load = multiprocessing.get_context("spawn").Process(
                target=load_generator, args=(str(plan_path), str(output_path)), name="bench-load")
            load.start()
            spies = []
            if config.pyspy:
                # After a warm-up, for most of the window; one API worker is representative.
                time.sleep(min(5.0, config.seconds / 4))
                targets = {"checkin-api-worker": pids.get("checkin-api worker 1", 0),
                           "checkin-worker": pids["checkin-worker"],
                           "notification-worker": pids["notification-worker"]}
                spies = start_pyspy({k: v for k, v in targets.items() if v}, config.seconds * 0.75, stamp)
            load.join()
            load_ended = time.time()
            cpu_after = {name: cpu_seconds(pid) for name, pid in pids.items()}
            if load.exitcode != 0:
                raise RuntimeError(f"load generator exited with {load.exitcode}")
            generated = json.loads(output_path.read_text())
            requests = generated["requests"]
            accepted = sum(1 for row in requests if row[2] == 201)
            print(f"[bench] e2e: {accepted} check-ins accepted; waiting for their webhooks",
                  file=sys.stderr, flush=True)
            drained = True
            try:
                testing.wait_until(lambda: receiver.unique() >= accepted, config.drain_s, interval=0.1,
                                   message="webhook backlog")
            except AssertionError:
                drained = False
            with receiver._lock:
                arrivals = list(receiver.arrivals)
            last_arrival = max((a[0] for a in arrivals), default=load_ended)
            last_response = max((row[0] + row[1] for row in requests), default=load_ended)
            for name, path, spy in spies:
                try:
                    _, error = spy.communicate(timeout=config.seconds + 60)
                except subprocess.TimeoutExpired:
                    spy.kill()
                    _, error = spy.communicate()
                if path.exists():
                    summary = path.with_name(path.stem + "-top.txt")
                    summary.write_text(f"{name}\n\n" + "\n".join(summarise_stacks(path)) + "\n")
                    profiles += [path, summary]
                else:
                    print(f"[bench] e2e: py-spy {name} failed: {error.decode(errors='replace')[-500:]}",
                          file=sys.stderr)
            pids = {**pids, **suite.pids()}
            peak = {name: value for name, pid in pids.items() if (value := peak_rss_mib(pid)) is not None}
            dead = suite.dead()
            if dead:
                raise RuntimeError(f"processes died during the run: {dead} (logs in {log_dir})")
            cpu = {name: after - before for name in cpu_after
                   if (after := cpu_after[name]) is not None and (before := cpu_before.get(name)) is not None}
    finally:
        receiver.close()
    if os.environ.get("NOCONTACT_BENCH_E2E_KEEP_LOGS", "") == "":
        shutil.rmtree(log_dir / "var", ignore_errors=True)
    return Result(config, requests, arrivals, receiver.rejected, drained, max(0.0, last_arrival - last_response),
                  peak, cpu, {"peak_rss_mib": generated["peak_rss_mib"], "cpu_s": generated["cpu_s"]}, profiles)


def section(settings: Settings) -> Section:
    config = E2EConfig.from_environment()
    result = run(config)
    requests = result.requests
    ok = [row for row in requests if row[2] == 201]
    first = min((row[0] for row in requests), default=0.0)
    last = max((row[0] + row[1] for row in requests), default=0.0)
    window = max(last - first, 1e-9)
    buckets = Counter(int(row[0] + row[1] - first) for row in ok)
    full_seconds = [buckets.get(second, 0) for second in range(int(window))]
    statuses = Counter(row[2] for row in requests)
    latencies_ms = [row[1] * 1000 for row in ok]
    answered = {(row[3], row[4]): row[0] + row[1] for row in ok}
    first_arrival: dict[str, tuple[float, str, str, float]] = {}
    for received, webhook_id, commitment_id, day, stamp in result.arrivals:
        if webhook_id not in first_arrival or received < first_arrival[webhook_id][0]:
            first_arrival[webhook_id] = (received, commitment_id, day, stamp)
    from_event_ms = [(received - stamp) * 1000 for received, _, _, stamp in first_arrival.values()]
    from_answer_ms = [(received - answered[(c, d)]) * 1000 for received, c, d, _ in first_arrival.values()
                      if (c, d) in answered]

    out = Section(
        key="e2e",
        title="4. End to end over HTTP: check-ins through the whole suite to signed webhooks",
        description=(
            "Three gunicorn APIs + three `nocontact worker` processes on PostgreSQL and RabbitMQ; a separate "
            f"load process with {config.concurrency} keep-alive client threads POSTs check-ins on distinct "
            f"(commitment, date) pairs for {config.seconds:.0f} s ({config.commitments:,} commitments); every "
            "check-in yields one `checkin.recorded` webhook, verified (Standard Webhooks) by a receiver in the "
            "bench process. One run (an e2e run is long); all processes share the machine's 2 cores."
        ),
    )
    params = {"concurrency": config.concurrency, "seconds": config.seconds}
    out.add("check-ins accepted (201) per second, whole window", "check-ins/s", [len(ok) / window], **params)
    if full_seconds:
        out.add("check-ins per one-second bucket (runs = seconds)", "check-ins/s", full_seconds)
    for name, fraction in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        out.add(f"API latency {name} (POST check-in, client side)", "ms", [percentile(latencies_ms, fraction)])
    out.add("API latency max", "ms", [max(latencies_ms, default=float("nan"))])
    for label, values in (("event time (webhook `timestamp`)", from_event_ms), ("the client's 201", from_answer_ms)):
        for name, fraction in (("p50", 0.5), ("p99", 0.99)):
            out.add(f"event-to-webhook {name}, from {label}", "ms", [percentile(values, fraction)])
    out.add("webhook drain after the last answer", "s", [result.drain_s], drained=result.drained)
    for name, value in sorted(result.peak_rss.items()):
        out.add(f"peak RSS: {name}", "MiB", [value])
    out.add("peak RSS: load generator", "MiB", [result.load_process["peak_rss_mib"]])
    for name, value in sorted(result.cpu.items()):
        out.add(f"CPU during the load: {name}", "s", [value])
    out.add("CPU during the load: load generator", "s", [result.load_process["cpu_s"]])
    out.notes.append(
        f"{len(requests):,} requests, statuses {dict(sorted(statuses.items()))}; {len(first_arrival):,} distinct "
        f"webhooks verified of {len(ok):,} expected ({len(result.arrivals) - len(first_arrival)} repeats, "
        f"{result.rejected} signature failures); backlog {'drained' if result.drained else 'NOT drained'} "
        f"(bound {config.drain_s:.0f} s)."
    )
    out.notes.append(
        "Targets (direction, not a pass mark): 1,000 check-ins/s, API p99 < 50 ms, event-to-webhook p99 < 1 s. "
        "Latencies are nearest-rank percentiles over every accepted request / first delivery of each webhook."
    )
    out.notes.append(
        "The webhook `timestamp` is the event's occurred_at (the API handler's clock on taking the request), "
        "so 'from event time' includes the API's own latency; 'from the client's 201' starts when the member's "
        "app had its answer. Both clocks are this machine's wall clock."
    )
    for path in result.profiles:
        out.notes.append(f"py-spy: {path.relative_to(REPO_ROOT)}")
    return out


def main() -> None:
    from benchmarks.__main__ import run_sections

    run_sections(["e2e"], stem="e2e")


if __name__ == "__main__":
    main()
