"""The notification worker's path per check-in, in one process: CPU per delivered webhook.

``python -m benchmarks.notification_path [N] [--runs R] [--rate EVENTS_PER_S] [--batch B]``

What the notification worker process does for each ``checkin.recorded`` of the check-in
benchmark (benchmarks.checkin), without the rest of the suite: N events, appended to the
store beforehand (not measured), are applied through the inbox's batch path
(`Consumer.apply_batch`: processed_events, messages, deliveries, feed) at a paced rate,
waking the delivery worker (`DeliveryWorker.run`, its real loop and thread pool) as the
inbox does; the worker signs and POSTs each webhook to a receiver in ANOTHER process that
verifies every signature (benchmarks.e2e.Receiver). The run ends when every webhook
arrived.

Figures per run: this process's CPU (``time.process_time``: inbox + delivery worker, the
receiver's share excluded) per delivered webhook, and PostgreSQL's statement time
(pg_stat_statements, this run's database only, before/after difference: other databases
on the server are neither counted nor reset). Each run uses a fresh schema of a database
of its own (``nocontact_notifperf``); before the measured part the queue holds
``--backlog`` already delivered messages (a service that has been running) and every
table is ANALYZEd (the benchmark server runs with autovacuum off).
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import statistics
import threading
import time
import uuid
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

#: The database the runs use (its own: pg_stat_statements is filtered by it).
DATABASE = "nocontact_notifperf"


def _receive(port_out: Any, secret_in: Any, count: Any, rejected: Any) -> None:
    """The partner's receiver, in a process of its own: verifies, counts unique ids."""
    from benchmarks.e2e import Receiver

    receiver = Receiver()
    port_out.send(receiver.url)
    receiver.set_secret(secret_in.recv())
    while True:
        time.sleep(0.02)
        count.value = receiver.unique()
        rejected.value = receiver.rejected


def _statement_time(admin_db_url: str) -> tuple[float, int, dict[str, tuple[float, int]], Any] | None:
    """Total statement time (ms), calls, and per query text, in the run's database; and
    what tells whether the statistics were reset or entries evicted meanwhile (another
    benchmark on the server may reset them: then this run has no PostgreSQL figure).
    None where the server does not collect them (pg_stat_statements not preloaded): the
    run then reports its CPU figures only."""
    engine = create_engine(admin_db_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            epoch = tuple(conn.execute(text("SELECT dealloc, stats_reset FROM pg_stat_statements_info")).one())
            rows = conn.execute(text(
                "SELECT query, total_exec_time, calls FROM pg_stat_statements s"
                " JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = :name"
            ), {"name": DATABASE}).all()
    except DBAPIError as error:
        if "shared_preload_libraries" not in str(error):
            raise
        return None
    finally:
        engine.dispose()
    per: dict[str, tuple[float, int]] = {}
    for query, ms, calls in rows:
        before = per.get(query, (0.0, 0))
        per[query] = (before[0] + ms, before[1] + calls)
    return sum(v[0] for v in per.values()), sum(v[1] for v in per.values()), per, epoch


def _prefill(engine: Any, endpoint_id: str, tenant_id: str, backlog: int) -> None:
    """`backlog` messages delivered earlier: what a running service's tables hold."""
    if backlog <= 0:
        return
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO notification_messages (id, tenant_id, event_id, event_type, member_id, body,"
            " occurred_at, created_at)"
            " SELECT 'msg_old' || g, :t, 'old' || g, 'checkin.recorded', 'm' || (g % 500), '{}', now(), now()"
            " FROM generate_series(1, :n) g"), {"t": tenant_id, "n": backlog})
        conn.execute(text(
            "INSERT INTO notification_deliveries (tenant_id, endpoint_id, message_id, event_type, state,"
            " attempts, schedule_step, created_at, updated_at, last_attempt_at, last_status_code)"
            " SELECT :t, :e, 'msg_old' || g, 'checkin.recorded', 'succeeded', 1, 1, now(), now(), now(), 204"
            " FROM generate_series(1, :n) g"), {"t": tenant_id, "e": endpoint_id, "n": backlog})
        conn.execute(text(
            "INSERT INTO notification_attempts (tenant_id, endpoint_id, delivery_id, message_id, event_type,"
            " attempt, status_code, duration_ms, state, attempted_at)"
            " SELECT :t, :e, g, 'msg_old' || g, 'checkin.recorded', 1, 204, 1, 'succeeded', now()"
            " FROM generate_series(1, :n) g"), {"t": tenant_id, "e": endpoint_id, "n": backlog})


def one_run(n: int, *, rate: float, batch: int, backlog: int) -> dict[str, Any]:
    from benchmarks.e2e import analyze_schema
    from services.notification import handlers
    from services.notification.consumers import inbox
    from services.notification.delivery.worker import DeliveryWorker
    from shared import eventstore, testing
    from shared.commands import Context
    from shared.db import dispose_all, engine_for, migrate
    from shared.events import Metadata, NewEvent

    admin = testing.postgres_admin_url()
    db_url = testing.test_database_url(admin, DATABASE)
    stats_engine = create_engine(db_url, isolation_level="AUTOCOMMIT")
    with stats_engine.connect() as conn:
        conn.execute(text("CREATE EXTENSION IF NOT EXISTS pg_stat_statements WITH SCHEMA public"))
    stats_engine.dispose()

    context = multiprocessing.get_context("spawn")
    port_out, port_in = context.Pipe(duplex=False)
    secret_out, secret_in = context.Pipe(duplex=False)
    count, rejected = context.Value("i", 0), context.Value("i", 0)
    receiver = context.Process(target=_receive, args=(port_in, secret_out, count, rejected), daemon=True)
    receiver.start()
    url = port_out.recv()

    with testing.fresh_postgres_schema(db_url) as schema_url:
        migrate(schema_url)
        engine = engine_for(schema_url)
        tenant_id = uuid.uuid4().hex
        endpoint_id, secret = handlers.create_endpoint(
            engine, Context(tenant_id, "bench"), url=url, event_types=["checkin.recorded"], description="bench")
        secret_in.send(secret)
        _prefill(engine, endpoint_id, tenant_id, backlog)
        appends = []
        for i in range(n):
            commitment_id = str(uuid.uuid4())
            appends.append((f"checkin-{commitment_id}", [NewEvent("checkin.recorded", {
                "commitment_id": commitment_id, "member_id": f"member-{i % 500}", "date": "2026-03-01",
                "outcome": "slipped" if i % 10 == 0 else "kept", "urge": 3, "mood": 4,
                "slip": {"channel": "text", "initiated_by": "me"} if i % 10 == 0 else None, "note": None,
                "contact_attempts": [], "necessary_contact": None,
            })], 0))
        with engine.begin() as conn:
            events = eventstore.append_streams(conn, appends, metadata=Metadata(tenant_id=tenant_id, actor="bench"))
        analyze_schema(schema_url)

        worker = DeliveryWorker(engine)
        consumer = inbox(engine, on_enqueued=worker.poke)
        stop = threading.Event()
        thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
        thread.start()
        time.sleep(0.5)  # the worker's first turn (housekeeping) is not measured

        pg_before = _statement_time(db_url)
        cpu0, wall0, inbox0 = time.process_time(), time.perf_counter(), time.thread_time()
        interval = batch / rate
        next_at = time.perf_counter()
        for start in range(0, n, batch):
            outcomes = consumer.apply_batch(events[start:start + batch])
            assert outcomes is not None and set(outcomes) == {"applied"}, outcomes
            next_at += interval
            pause = next_at - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
        inbox_cpu = time.thread_time() - inbox0
        deadline = time.monotonic() + 120
        while count.value < n and time.monotonic() < deadline:
            time.sleep(0.005)
        cpu1, wall1 = time.process_time(), time.perf_counter()
        pg_after = _statement_time(db_url)
        stop.set()
        thread.join(30)
        receiver.kill()
        delivered = count.value
        dispose_all()
    pg_valid = pg_before is not None and pg_after is not None and pg_before[3] == pg_after[3]
    per = {
        query: (ms - pg_before[2].get(query, (0.0, 0))[0], calls - pg_before[2].get(query, (0.0, 0))[1])
        for query, (ms, calls) in pg_after[2].items()
    } if pg_valid else {}
    return {
        "delivered": delivered,
        "rejected": rejected.value,
        "cpu_ms_per_webhook": (cpu1 - cpu0) * 1000 / max(delivered, 1),
        "inbox_cpu_ms_per_webhook": inbox_cpu * 1000 / max(delivered, 1),
        "pg_ms_per_webhook": (pg_after[0] - pg_before[0]) / max(delivered, 1) if pg_valid else None,
        "pg_calls_per_webhook": (pg_after[1] - pg_before[1]) / max(delivered, 1) if pg_valid else None,
        "pg_collected": pg_before is not None,
        "wall_s": wall1 - wall0,
        "top": sorted(per.items(), key=lambda item: -item[1][0])[:12],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int, nargs="?", default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=float, default=250.0, help="check-ins per second fed to the inbox")
    parser.add_argument("--batch", type=int, default=1, help="events per inbox transaction")
    parser.add_argument("--backlog", type=int, default=50000, help="delivered messages already in the tables")
    parser.add_argument("--top", action="store_true", help="print the costliest statements of the last run")
    args = parser.parse_args()
    os.environ.setdefault("NOCONTACT_WEBHOOK_ALLOW_PRIVATE", "true")
    os.environ.setdefault("NOCONTACT_SECRET_KEY", uuid.uuid4().hex)
    from shared.logging import configure

    configure("notification")
    # Rendered as in production, written nowhere: the cost of logging is counted.
    for handler in logging.getLogger().handlers:
        handler.stream = open(os.devnull, "w")  # type: ignore[attr-defined]
    results = []
    for _ in range(args.runs):
        result = one_run(args.n, rate=args.rate, batch=args.batch, backlog=args.backlog)
        results.append(result)
        postgres = (
            "PostgreSQL: no statement statistics (pg_stat_statements is not in shared_preload_libraries)"
            if not result["pg_collected"]
            else "PostgreSQL: statistics reset by someone else during the run"
            if result["pg_ms_per_webhook"] is None
            else f"PostgreSQL {result['pg_ms_per_webhook']:.3f} ms"
            f" in {result['pg_calls_per_webhook']:.1f} statements/webhook"
        )
        print(f"delivered {result['delivered']} (rejected {result['rejected']}) in {result['wall_s']:.1f} s: "
              f"CPU {result['cpu_ms_per_webhook']:.3f} ms/webhook (inbox {result['inbox_cpu_ms_per_webhook']:.3f}), "
              f"{postgres}", flush=True)
    cpu = [r["cpu_ms_per_webhook"] for r in results]
    pg = [r["pg_ms_per_webhook"] for r in results if r["pg_ms_per_webhook"] is not None]
    print(f"median of {len(results)}: CPU {statistics.median(cpu):.3f} ms/webhook"
          f" (range {min(cpu):.3f}-{max(cpu):.3f})", end="")
    if pg:
        print(f", PostgreSQL (of {len(pg)}) {statistics.median(pg):.3f} ms/webhook"
              f" (range {min(pg):.3f}-{max(pg):.3f})", end="")
    print()
    if args.top:
        for query, (ms, calls) in results[-1]["top"]:
            print(f"{ms:9.1f} ms {calls:7d} calls  {' '.join(query.split())[:160]}")


if __name__ == "__main__":
    main()
