"""The check-in path against a plain CRUD app, in alternating runs (issue 14), and features' costs.

Contenders, all up at once for the whole section, each on its own PostgreSQL schema of
the same server:

- **crud peer** (`benchmarks.crud_peer`): Flask + a psycopg pool under nocontact's gunicorn
  settings, one table with a unique (commitment, day), the streak recomputed from the
  commitment's rows by the domain's own pure fold, 201 after COMMIT;
- **nocontact** as in production (`benchmarks.e2e.running_suite`): the three gunicorn
  APIs, the three worker processes, RabbitMQ, a webhook endpoint subscribed to
  ``checkin.recorded`` whose receiver verifies every signature; or, with variants, one such
  suite per variant, each started with its own extra environment variables
  (``python -m benchmarks checkin --variant plain= --variant encrypted='NOCONTACT_X=1'``).

Each contender gets the same setup (not timed): one tenant with a 365-day backdating
window, N commitments that started 300 days ago (over HTTP for nocontact, awaited until
its checkin service knows them; inserted directly for the peer). Then
``NOCONTACT_BENCH_RUNS`` rounds; in each round every contender in turn takes the same
closed-loop load (`benchmarks.load.closed_loop`: 16 keep-alive threads, distinct
(commitment, date) pairs, one slip in ten, nocontact's payload) for the same seconds, the
next run continuing with the pairs the last did not send. Alternating spreads the
machine's drifting load over every contender alike; after a nocontact run the next run
waits until every webhook of it arrived, so no backlog is measured twice.

Figures per contender and run: check-ins/s (201 answers over the window), latency
p50/p95/p99 (client side), CPU per check-in (its own processes, until the run's webhooks
were delivered); after the rounds, peak RSS of every process. Ratios: each variant / the crud peer (aims from issue 14:
throughput >= 0.5x, p99 <= 2x) and each variant / the first variant; from medians, and
round by round.

Environment: ``NOCONTACT_BENCH_CHECKIN_SECONDS`` (20 per run), ``NOCONTACT_BENCH_CHECKIN_CONCURRENCY``
(16), ``NOCONTACT_BENCH_CHECKIN_COMMITMENTS`` (1000), ``NOCONTACT_BENCH_CHECKIN_DRAIN_S``
(120, the bound on waiting for a run's webhooks), ``NOCONTACT_WEB_WORKERS`` /
``NOCONTACT_WEB_THREADS`` (both sides, 2 x 4).
`python -m benchmarks checkin [--variant ...]` runs this section alone.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine

from benchmarks import BENCH_DIR, Settings, Variant, load_average, postgres_database_url
from benchmarks import crud_peer as peer_app
from benchmarks.e2e import (
    START_DAYS_AGO,
    Processes,
    Receiver,
    analyze_schema,
    cpu_seconds,
    cpu_used,
    free_port,
    passed_through_environment,
    peak_rss_mib,
    running_suite,
    set_up,
    wait_ready,
)
from benchmarks.load import Pair, first, plan_pairs, remaining, run_load, sent_pairs
from benchmarks.report import Comparison, Section
from benchmarks.stats import LoadFigures, Request, load_figures, paired_ratios
from shared import testing

PEER = "crud peer"
PER_THREAD_RATE_CAP = 250
"""Pairs planned per client thread and second: more than any thread sends (a POST takes milliseconds)."""


@dataclass(frozen=True)
class CheckinConfig:
    seconds: float
    concurrency: int
    commitments: int
    drain_s: float

    @classmethod
    def from_environment(cls) -> CheckinConfig:
        return cls(
            seconds=float(os.environ.get("NOCONTACT_BENCH_CHECKIN_SECONDS", "20")),
            concurrency=int(os.environ.get("NOCONTACT_BENCH_CHECKIN_CONCURRENCY", "16")),
            commitments=int(os.environ.get("NOCONTACT_BENCH_CHECKIN_COMMITMENTS", "1000")),
            drain_s=float(os.environ.get("NOCONTACT_BENCH_CHECKIN_DRAIN_S", "120")),
        )


@dataclass
class RunFigures:
    load: LoadFigures
    cpu_ms_per_check_in: float | None
    """CPU of the contender's own processes (not PostgreSQL's, not RabbitMQ's) per accepted check-in,
    from the start of the run until its webhooks were delivered."""
    idle_cpu_s: float
    """CPU the other contenders' processes used meanwhile (idle servers, a backlog)."""
    drain_s: float | None = None
    """Seconds after the load until the run's last webhook arrived (nocontact); None when it did not."""
    events_per_check_in: float | None = None
    """Events the store gained per accepted check-in (nocontact; see `benchmarks.e2e.tenant_settings`)."""
    cpu_ms_by_process: dict[str, float] = field(default_factory=dict)
    """The same CPU per accepted check-in, process by process (where a check-in's cost goes)."""


@dataclass
class Contender:
    name: str
    url: str
    api_key: str
    pairs: list[list[Pair]]
    processes: Processes
    wait_drained: Callable[[int], float | None] = lambda accepted: None
    """Called after a run with its accepted count: seconds until its side effects were through."""
    database_url: str | None = None
    """Its schema (SQLAlchemy URL): analyzed before each run (`analyze_schema`)."""
    runs: list[RunFigures] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    peak_rss: dict[str, float] = field(default_factory=dict)


@contextmanager
def crud_peer(log_dir: Path, config: CheckinConfig) -> Iterator[Contender]:
    with testing.fresh_postgres_schema(postgres_database_url()) as url:
        database = peer_app.conninfo(url)
        peer_app.create_schema(database)
        tenant_id = "tenant-crud-peer"
        api_key = peer_app.add_tenant(database, tenant_id, backdate_days=365)
        starts_on = datetime.now(UTC).date() - timedelta(days=START_DAYS_AGO)
        commitments = [str(uuid.uuid4()) for _ in range(config.commitments)]
        peer_app.add_commitments(database, tenant_id, commitments, starts_on)
        processes = Processes(log_dir / "crud-peer")
        base = f"http://127.0.0.1:{free_port()}"
        processes.gunicorn("crud-peer-api", base, "benchmarks.crud_peer:create_app()",
                           {**passed_through_environment(), peer_app.DATABASE_ENV: database})
        try:
            wait_ready({PEER: base}, processes)
            last_day = datetime.now(UTC).date() - timedelta(days=1)
            yield Contender(PEER, base, api_key, plan_pairs(commitments, starts_on, last_day, config.concurrency),
                            processes, database_url=url)
        finally:
            processes.stop()


@contextmanager
def nocontact(variant: Variant, log_dir: Path, config: CheckinConfig) -> Iterator[Contender]:
    receiver = Receiver()
    try:
        with running_suite(log_dir / variant.name.replace("/", "_"), extra_env=variant.env) as suite:
            print(f"[bench] checkin: {variant.name} up, creating {config.commitments} commitments",
                  file=sys.stderr, flush=True)
            setup = set_up(suite, receiver, config.commitments, config.concurrency)
            expected = [0]

            def wait_drained(accepted: int) -> float | None:
                started = time.perf_counter()
                expected[0] += accepted
                if receiver.wait_for(expected[0], config.drain_s):
                    return time.perf_counter() - started
                return None

            yield Contender(variant.name, suite.urls["checkin"], setup.api_key,
                            plan_pairs(setup.commitments, setup.starts_on, setup.last_day, config.concurrency),
                            suite.processes, wait_drained, database_url=suite.env["NOCONTACT_DATABASE_URL"])
    finally:
        receiver.close()


def _event_count(database_url: str | None) -> int | None:
    """Events in the schema's store (None for a schema without one: the peer's)."""
    engine = create_engine(database_url or "", isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            if conn.exec_driver_sql("SELECT to_regclass('events')").scalar() is None:
                return None
            return int(conn.exec_driver_sql("SELECT count(*) FROM events").scalar_one())
    finally:
        engine.dispose()


def _server_cpu_seconds() -> dict[str, float]:
    """CPU used so far by the servers every contender shares, by command name (PostgreSQL's
    processes, RabbitMQ's BEAM), read from /proc. A backend that exited meanwhile takes its
    share with it, so these read low, never high."""
    totals: dict[str, float] = {"postgresql": 0.0, "rabbitmq": 0.0}
    for entry in Path("/proc").iterdir():
        try:
            name = (entry / "comm").read_text() if entry.name.isdigit() else ""
        except OSError:
            continue
        server = "postgresql" if name.startswith("postgres") else "rabbitmq" if name.startswith("beam") else None
        if server and (seconds := cpu_seconds(int(entry.name))) is not None:
            totals[server] += seconds
    return totals


def run_once(contender: Contender, everyone: Sequence[Contender], config: CheckinConfig, log_dir: Path,
             name: str) -> RunFigures:
    host, port = contender.url.removeprefix("http://").split(":")
    plan = {"host": host, "port": int(port), "api_key": contender.api_key, "seconds": config.seconds,
            "work": first(contender.pairs, int(config.seconds * PER_THREAD_RATE_CAP) + 100)}
    events_before = None
    if contender.database_url:
        analyze_schema(contender.database_url)
        events_before = _event_count(contender.database_url)
    pids = {(c.name, process): pid for c in everyone for process, pid in c.processes.pids().items()}
    before = {key: cpu_seconds(pid) for key, pid in pids.items()}
    servers_before = _server_cpu_seconds()
    generated = run_load("closed", plan, log_dir, name)
    contender.pairs = remaining(contender.pairs, sent_pairs(generated["requests"]))
    figures = load_figures([Request.of(row) for row in generated["requests"]])
    contender.statuses.update(figures.statuses)
    drain = contender.wait_drained(figures.accepted)
    # Read after the drain: the work a check-in causes after its 201 (relay, webhooks) is its cost too.
    used = cpu_used(before, {key: cpu_seconds(pid) for key, pid in pids.items()})
    servers = {name: seconds - servers_before[name] for name, seconds in _server_cpu_seconds().items()}
    own = sum(seconds for (owner, _), seconds in used.items() if owner == contender.name)
    idle = sum(seconds for (owner, _), seconds in used.items() if owner != contender.name)
    dead = contender.processes.dead()
    if dead:
        raise RuntimeError(f"{contender.name}: processes died during the run: {dead} "
                           f"(logs in {contender.processes.log_dir})")
    events = None
    if events_before is not None and figures.accepted:
        after = _event_count(contender.database_url)
        events = None if after is None else (after - events_before) / figures.accepted
    by_process = ({process: seconds * 1000 / figures.accepted for (owner, process), seconds in used.items()
                   if owner == contender.name} if figures.accepted else {})
    if figures.accepted:
        by_process.update({f"{name} (shared server)": seconds * 1000 / figures.accepted
                           for name, seconds in servers.items()})
    return RunFigures(figures, own * 1000 / figures.accepted if figures.accepted else None, idle, drain,
                      events, by_process)


def measure(settings: Settings, config: CheckinConfig) -> list[Contender]:
    """Start every contender, run the alternating rounds, read peak RSS; returns the contenders with figures."""
    variants = settings.variants or (Variant("nocontact"),)
    log_dir = BENCH_DIR / f"checkin-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    log_dir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        contenders = [stack.enter_context(crud_peer(log_dir, config))]
        contenders += [stack.enter_context(nocontact(variant, log_dir, config)) for variant in variants]
        for round_ in range(1, settings.runs + 1):
            for contender in contenders:
                figures = run_once(contender, contenders, config, log_dir, f"{contender.name}-{round_}")
                contender.runs.append(figures)
                load = figures.load
                print(f"[bench] checkin: round {round_}/{settings.runs} {contender.name}: "
                      f"{load.throughput:.0f} check-ins/s, p50 {load.p50_ms:.0f} ms, p99 {load.p99_ms:.0f} ms "
                      f"(load average {load_average()})", file=sys.stderr, flush=True)
        for contender in contenders:
            contender.peak_rss = {name: value for name, pid in contender.processes.pids().items()
                                  if (value := peak_rss_mib(pid)) is not None}
    return contenders


def build_section(contenders: Sequence[Contender], config: CheckinConfig) -> Section:
    """The figures of `measure` as a report section (pure: unit-tested)."""
    peer, variants = contenders[0], contenders[1:]
    out = Section(
        key="checkin",
        title="4. Check-ins through nocontact against a plain CRUD app, alternating runs",
        description=(
            f"The same closed-loop client for every contender: {config.concurrency} keep-alive threads POSTing "
            f"nocontact's check-in payload on distinct (commitment, date) pairs ({config.commitments:,} commitments, "
            f"one check-in in ten a slip) for {config.seconds:g} s per run; runs alternate "
            f"({', '.join(c.name for c in contenders)}, then again). The {PEER} is Flask + psycopg pool under "
            "nocontact's gunicorn settings, one table with a unique (commitment, day), the streak recomputed from "
            "the rows with the domain's fold, 201 after COMMIT. nocontact runs as in production: three gunicorn "
            "APIs, three workers, PostgreSQL, RabbitMQ, one webhook per check-in to a verifying receiver. "
            f"Streak policy: {os.environ.get('NOCONTACT_BENCH_STREAK_POLICY') or 'since_last_slip (the default)'} "
            "(see benchmarks.e2e.tenant_settings: it decides how many events a check-in appends). Every schema "
            "is analyzed before each run, as autovacuum keeps a deployment's tables."
        ),
    )
    for contender in contenders:
        runs = contender.runs
        out.add(f"{contender.name}: check-ins/s", "check-ins/s", [r.load.throughput for r in runs])
        out.add(f"{contender.name}: latency p50", "ms", [r.load.p50_ms for r in runs])
        out.add(f"{contender.name}: latency p95", "ms", [r.load.p95_ms for r in runs])
        out.add(f"{contender.name}: latency p99", "ms", [r.load.p99_ms for r in runs])
        cpu = [r.cpu_ms_per_check_in for r in runs if r.cpu_ms_per_check_in is not None]
        if cpu:
            out.add(f"{contender.name}: CPU per check-in (own processes)", "ms", cpu)
        events = [r.events_per_check_in for r in runs if r.events_per_check_in is not None]
        if events:
            out.add(f"{contender.name}: events per check-in", "events", events)
        for process in sorted({p for r in runs for p in r.cpu_ms_by_process}):
            out.add(f"{contender.name}: CPU per check-in, {process}", "ms",
                    [r.cpu_ms_by_process.get(process, 0.0) for r in runs])
        drains = [r.drain_s for r in runs if r.drain_s is not None]
        if drains:
            out.add(f"{contender.name}: webhooks all delivered, after the run", "s", drains)
    for variant in variants:
        _ratios(out, variant, peer, throughput_aim=0.5, p99_aim=2.0)
    for variant in variants[1:]:
        _ratios(out, variant, variants[0], throughput_aim=None, p99_aim=None)
    for contender in contenders:
        for process, value in sorted(contender.peak_rss.items()):
            out.add(f"{contender.name}: peak RSS {process}", "MiB", [value])
    for contender in contenders:
        undrained = sum(1 for r in contender.runs if r.drain_s is None)
        idle = sum(r.idle_cpu_s for r in contender.runs)
        note = (f"{contender.name}: statuses {dict(sorted(contender.statuses.items()))}; the other contenders' "
                f"processes used {idle:.1f} CPU s during its runs")
        if contender is not peer and undrained:
            note += f"; {undrained} run(s) whose webhooks did NOT all arrive within {config.drain_s:g} s"
        out.notes.append(note + ".")
    largest = max(((f"{c.name}: {p}", v) for c in variants for p, v in c.peak_rss.items()),
                  key=lambda item: item[1], default=("none", 0.0))
    out.notes.append(
        "Aims (issue 14; a direction, not a pass mark): nocontact's throughput >= 0.5x the peer's (moonshot 1x), "
        f"its p99 <= 2x the peer's, peak RSS per process < 100 MiB (largest here: {largest[0]}, "
        f"{largest[1]:.0f} MiB). Latencies are nearest-rank percentiles of the accepted requests of one run, "
        "client side (queueing in gunicorn's backlog included); the table's median/min/max are over runs."
    )
    return out


def _ratios(out: Section, ours: Contender, theirs: Contender, *, throughput_aim: float | None,
            p99_aim: float | None) -> None:
    label = f"{ours.name} / {theirs.name}"
    out.comparisons.append(Comparison(f"check-ins/s, {label}", f"{ours.name}: check-ins/s",
                                      f"{theirs.name}: check-ins/s", target=throughput_aim))
    out.comparisons.append(Comparison(f"p99, {label}", f"{ours.name}: latency p99", f"{theirs.name}: latency p99",
                                      target=p99_aim, at_most=True))
    for figure, of in (("check-ins/s", lambda r: r.load.throughput), ("p99", lambda r: r.load.p99_ms)):
        rounds = paired_ratios([of(r) for r in ours.runs], [of(r) for r in theirs.runs])
        if rounds:
            out.add(f"{figure}, {label}, round by round", "x", rounds)


def section(settings: Settings) -> Section:
    config = CheckinConfig.from_environment()
    return build_section(measure(settings, config), config)


def main(argv: Sequence[str] | None = None) -> None:
    from benchmarks.__main__ import main as harness

    harness(["checkin", "--stem", "checkin", *(argv if argv is not None else sys.argv[1:])])


if __name__ == "__main__":
    main()
