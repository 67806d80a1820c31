"""Load with faults: nothing accepted is lost, nothing is applied twice, poison is parked.

Several clients check in steadily over real HTTP to the gunicorn APIs while the test
restarts RabbitMQ (`rabbitmqctl stop_app` / `start_app`), kill -9s the check-in relay, the
notification inbox consumer and the webhook delivery worker (each its own process, then
started again), and publishes ~1% duplicate and ~1% malformed messages straight onto the
bus. Afterwards:

- every accepted (201) check-in is in the event store exactly once, and nothing else is;
- the check-in read models equal a rebuild from the store;
- every accepted check-in reached the partner's receiver as a signed webhook (deduplicated
  by webhook-id; repeated deliveries are counted and reported, a second message for the
  same check-in is a failure);
- every malformed message is in the `dead_letters` table with a reason and on the
  component's dead-letter queue.

`make chaos` runs the full version (NOCONTACT_CHAOS_SECONDS, default 60, every fault);
`make test` runs a short one (NOCONTACT_CHAOS_SHORT_SECONDS, default 15, one kill -9).
The figures are printed (run pytest with -s to see them) and written to
var/chaos/report-<name>.json.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from kombu import Connection, Exchange, Producer
from sqlalchemy import create_engine, select, text

from shared import testing
from shared.config import REPO_ROOT
from shared.testing import bearer, eventually
from tests.support.receiver import Receiver
from tests.support.suite import Suite, commitment_body, create_tenant, running_suite

MALFORMED_MARKER = "chaos-malformed"


# -- the load --------------------------------------------------------------------------------


@dataclass
class Outcomes:
    """What the clients saw: every attempted check-in and its answer."""

    attempts: list[tuple[str, str, int | str]] = field(default_factory=list)  # (commitment, day, status)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, commitment_id: str, day: str, status: int | str) -> None:
        with self.lock:
            self.attempts.append((commitment_id, day, status))

    def accepted(self) -> set[tuple[str, str]]:
        with self.lock:
            return {(c, d) for c, d, s in self.attempts if s == 201}


def _check_in_body(day: str, rng: random.Random) -> dict[str, Any]:
    if rng.random() < 0.2:
        return {"date": day, "outcome": "slipped", "urge": rng.randint(0, 10),
                "slip": {"channel": "texts", "initiated_by": rng.choice(["me", "them"])}}
    return {"date": day, "outcome": "kept", "urge": rng.randint(0, 10), "mood": rng.randint(1, 5)}


def _client_loop(suite: Suite, key: str, commitments: list[str], stop: threading.Event, outcomes: Outcomes,
                 seed: int, pause_s: float) -> None:
    """Check in day after day (today backwards) on this client's own commitments."""
    rng = random.Random(seed)
    today = date.today()
    slots = [(cid, (today - timedelta(days=back)).isoformat()) for back in range(0, 360) for cid in commitments]
    with httpx.Client(timeout=30, headers=bearer(key)) as client:
        for cid, day in slots:
            if stop.is_set():
                return
            try:
                status: int | str = client.post(suite.url("checkin", f"/v1/commitments/{cid}/check-ins"),
                                                json=_check_in_body(day, rng)).status_code
            except httpx.HTTPError as error:
                status = type(error).__name__
            outcomes.add(cid, day, status)
            stop.wait(pause_s)


# -- messages straight onto the bus ------------------------------------------------------


class Injector:
    """Publishes duplicates of real events and malformed bodies to the suite's exchange."""

    def __init__(self, suite: Suite) -> None:
        self.suite = suite
        self.exchange = Exchange(suite.bus_prefix + "nocontact.events", type="topic", durable=True)
        self.engine = create_engine(suite.database_url)
        self.duplicates = 0
        self.malformed: Counter[str] = Counter()  # routing key -> confirmed publishes
        self.failed_publishes = 0
        self.injections = 0
        self._position = 0

    def _publish(self, body: bytes, routing_key: str, headers: dict[str, Any] | None = None) -> bool:
        try:
            with Connection(self.suite.broker_url, connect_timeout=3,
                            transport_options={"confirm_publish": True, "max_retries": 0}) as connection:
                producer = Producer(connection.channel(), exchange=self.exchange, auto_declare=False)
                producer.publish(body, routing_key=routing_key, delivery_mode=2, content_type="application/json",
                                 content_encoding="utf-8", headers=headers or {}, retry=False)
            return True
        except Exception:  # the broker is down (a fault of this test): not counted, tried later
            self.failed_publishes += 1
            return False

    def duplicate_recent(self, count: int) -> None:
        """Publish `count` events again, exactly as the relay did (same id and headers)."""
        from shared.bus import message_properties
        from shared.envelope import encode
        from shared.eventstore import read_all

        with self.engine.connect() as conn:
            events = read_all(conn, self._position, limit=500, types=["checkin.recorded", "commitment.created"])
        if not events:
            return
        self._position = events[-1].position
        for event in random.sample(events, min(count, len(events))):
            properties = message_properties(event)
            if self._publish(encode(event), event.type, properties.get("headers")):  # type: ignore[arg-type]
                self.duplicates += 1

    def malformed_one(self, index: int) -> None:
        marker = f"{MALFORMED_MARKER}-{uuid.uuid4().hex[:8]}"
        bodies = [
            f'{{"id": "{marker}", "type": "checkin.recorded"'.encode(),  # truncated JSON
            json.dumps({"marker": marker, "type": "checkin.recorded"}).encode(),  # not an envelope
            f'{{"id": 7, "note": "{marker}", "data": "\xff\xfe"}}'.encode("latin-1"),  # invalid UTF-8
        ]
        # checkin.* reaches only the notification inbox; commitment.* reaches both inboxes.
        routing_key = "checkin.recorded" if index % 2 == 0 else "commitment.created"
        if self._publish(bodies[index % len(bodies)], routing_key):
            self.malformed[routing_key] += 1

    def expected_dead_letters(self) -> dict[str, int]:
        return {"notification.inbox": sum(self.malformed.values()),
                "checkin.inbox": self.malformed["commitment.created"]}


def _inject_due(injector: Injector, requests: int) -> None:
    """~1% duplicates and ~1% malformed messages, relative to the requests made so far."""
    while injector.injections < requests // 100:
        injector.duplicate_recent(1)
        injector.malformed_one(injector.injections)
        injector.injections += 1


def _inject_loop(injector: Injector, outcomes: Outcomes, stop: threading.Event) -> None:
    while not stop.wait(0.2):
        _inject_due(injector, len(outcomes.attempts))


# -- faults ------------------------------------------------------------------------------------


def rabbitmq(command: str) -> None:
    subprocess.run(["rabbitmqctl", command], check=True, capture_output=True, timeout=120)


@dataclass
class Fault:
    name: str
    at_fraction: float  # of the load duration
    inject: Callable[[Suite], None]
    heal: Callable[[Suite], None]
    down_s: float = 2.0


def kill_part(name: str) -> Fault:
    return Fault(f"kill -9 {name}", 0, lambda s: s.kill(name), lambda s: s.restart(name))


def broker_restart() -> Fault:
    return Fault("rabbitmq stop_app/start_app", 0, lambda s: rabbitmq("stop_app"), lambda s: rabbitmq("start_app"),
                 down_s=5.0)


def _probe(suite: Suite, key: str, probe_commitment: str, receiver: Receiver, secret: str,
           day: str, outcomes: Outcomes, timeout: float = 120.0) -> float:
    """A check-in made right after a fault is healed: seconds until its webhook arrives."""
    started = time.monotonic()
    response = eventually(lambda: httpx.post(suite.url("checkin", f"/v1/commitments/{probe_commitment}/check-ins"),
                                             headers=bearer(key), json={"date": day, "outcome": "kept"}, timeout=30),
                          201, timeout=timeout)
    outcomes.add(probe_commitment, day, response.status_code)

    def arrived() -> bool:
        received, _ = receiver.verified(secret)
        return any(p["data"].get("commitment_id") == probe_commitment and p["data"].get("date") == day
                   for p in received.values())

    testing.wait_until(arrived, timeout, interval=0.1, message=f"probe webhook for {day}")
    return time.monotonic() - started


# -- the run -------------------------------------------------------------------------------------


def run_chaos(suite: Suite, name: str, seconds: float, faults: list[Fault], clients: int = 4,
              pause_s: float = 0.05) -> dict[str, Any]:
    http = httpx.Client(timeout=30)
    tenant = create_tenant(suite, http, "Chaos Support")
    settings = http.put(suite.url("checkin", "/v1/settings"), headers=bearer(tenant.api_key),
                        json={"backdate_days": 365})
    assert settings.status_code == 200, settings.text
    receiver = Receiver()
    endpoint = eventually(lambda: http.post(suite.url("notification", "/v1/webhook-endpoints"),
                                            headers=bearer(tenant.api_key),
                                            json={"url": receiver.url(), "event_types": ["checkin.recorded"]}), 201)
    secret = endpoint.json()["secret"]
    starts_on = (date.today() - timedelta(days=364)).isoformat()
    per_client = max(2, int(seconds / max(pause_s, 0.01) / 300) + 1)

    def new_commitment(member: str) -> str:
        created = http.post(suite.url("commitment", "/v1/commitments"), headers=bearer(tenant.api_key),
                            json=commitment_body(member, starts_on))
        assert created.status_code == 201, created.text
        return str(created.json()["id"])

    plan = {f"m-{i}": [new_commitment(f"m-{i}") for _ in range(per_client)] for i in range(clients)}
    probe_commitment = new_commitment("m-probe")
    # The check-in service learns of the commitments over the bus.
    for cid in [*(c for cids in plan.values() for c in cids), probe_commitment]:
        eventually(lambda cid=cid: http.get(suite.url("checkin", f"/v1/commitments/{cid}/check-ins"),
                                            headers=bearer(tenant.api_key)), 200)

    outcomes = Outcomes()
    stop = threading.Event()
    threads = [threading.Thread(target=_client_loop, daemon=True,
                                args=(suite, tenant.api_key, cids, stop, outcomes, n, pause_s))
               for n, cids in enumerate(plan.values())]
    injector = Injector(suite)
    injecting = threading.Thread(target=_inject_loop, args=(injector, outcomes, stop), daemon=True)
    recovery: dict[str, float] = {}
    probe_days = iter((date.today() - timedelta(days=back)).isoformat() for back in range(0, 360))
    started = time.monotonic()
    for thread in [*threads, injecting]:
        thread.start()
    try:
        fault_times = [started + seconds * (i + 1) / (len(faults) + 1) for i in range(len(faults))]
        for at, fault in zip(fault_times, faults, strict=True):
            time.sleep(max(at - time.monotonic(), 0))
            try:
                fault.inject(suite)
                time.sleep(fault.down_s)  # the outage itself: the load goes on meanwhile
            finally:
                fault.heal(suite)
            recovery[fault.name] = _probe(suite, tenant.api_key, probe_commitment, receiver, secret,
                                          next(probe_days), outcomes)
        time.sleep(max(started + seconds - time.monotonic(), 0))
    finally:
        stop.set()
        for thread in [*threads, injecting]:
            thread.join(60)
    # Top up to 1% of the requests (the injector may have been behind when the load stopped).
    _inject_due(injector, len(outcomes.attempts))
    load_seconds = time.monotonic() - started

    report = verify(suite, outcomes, receiver, secret, injector)
    report.update(name=name, load_seconds=round(load_seconds, 1), clients=clients,
                  recovery_seconds={k: round(v, 2) for k, v in recovery.items()},
                  crashed_processes=suite.dead(), _secrets=[tenant.api_key, secret])
    receiver.close()
    http.close()
    _print(report)
    return report


def verify(suite: Suite, outcomes: Outcomes, receiver: Receiver, secret: str, injector: Injector) -> dict[str, Any]:
    engine = create_engine(suite.database_url)
    accepted = outcomes.accepted()
    statuses = Counter(str(s) for _, _, s in outcomes.attempts)

    # 1. The store: every accepted check-in exactly once, nothing the clients were refused.
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT data FROM events WHERE type = 'checkin.recorded'")).all()
    stored = Counter((r.data["commitment_id"], r.data["date"]) for r in rows)
    twice = {k: n for k, n in stored.items() if n > 1}
    lost = accepted - set(stored)
    unexpected = set(stored) - accepted

    # 2. Webhooks: every accepted check-in delivered, one message (webhook-id) per check-in.
    def delivered() -> set[tuple[str, str]]:
        received, _ = receiver.verified(secret)
        return {(p["data"]["commitment_id"], p["data"]["date"]) for p in received.values()}

    try:
        testing.wait_until(lambda: accepted <= delivered(), 180, interval=0.5, message="every webhook")
    except AssertionError:
        pass  # reported below with the exact figures
    received, repeats = receiver.verified(secret)
    messages_per_check_in = Counter((p["data"]["commitment_id"], p["data"]["date"]) for p in received.values())
    webhooks_missing = accepted - set(messages_per_check_in)
    double_messages = {k: n for k, n in messages_per_check_in.items() if n > 1}

    # 3. Dead letters: every malformed message parked with a reason, in the table and the DLQ.
    expected_dead = injector.expected_dead_letters()

    def parked() -> dict[str, int]:
        with engine.connect() as conn:
            found = conn.execute(text(
                "SELECT component, count(*) AS n FROM dead_letters WHERE body LIKE :m AND reason <> '' "
                "GROUP BY component"), {"m": f"%{MALFORMED_MARKER}%"}).all()
        return {r.component: r.n for r in found}

    try:
        testing.wait_until(lambda: all(parked().get(c, 0) >= n for c, n in expected_dead.items()), 60,
                           interval=0.5, message="dead letters")
    except AssertionError:
        pass
    in_table = parked()
    on_queue = _drain_dead_letter_queues(suite)

    # 4. Projections: the check-in read models equal a rebuild from the store.
    projection_diff = _projection_equals_rebuild(suite.database_url)

    return {
        "requests": len(outcomes.attempts),
        "statuses": dict(statuses),
        "accepted": len(accepted),
        "stored_check_ins": sum(stored.values()),
        "lost": len(lost),
        "stored_twice": len(twice),
        "stored_but_not_accepted": len(unexpected),
        "webhooks_expected": len(accepted),
        "webhooks_received": len(messages_per_check_in),
        "webhooks_missing": len(webhooks_missing),
        "webhook_repeat_deliveries": repeats,
        "webhook_second_messages": len(double_messages),
        "duplicates_injected": injector.duplicates,
        "malformed_injected": sum(injector.malformed.values()),
        "dead_letters_expected": expected_dead,
        "dead_letters_in_table": in_table,
        "dead_letters_on_queue": on_queue,
        "publishes_refused_during_outage": injector.failed_publishes,
        "projection_differences": projection_diff,
        "_details": {"lost": sorted(lost)[:10], "twice": sorted(twice)[:10], "unexpected": sorted(unexpected)[:10],
                     "missing_webhooks": sorted(webhooks_missing)[:10], "double": sorted(double_messages)[:10]},
    }


def _drain_dead_letter_queues(suite: Suite) -> dict[str, int]:
    counts: dict[str, int] = {}
    with Connection(suite.broker_url) as connection:
        channel = connection.channel()
        for component in ("checkin.inbox", "notification.inbox"):
            name = f"{suite.bus_prefix}nocontact.{component}.dead-letter"
            counts[component] = 0
            while True:
                message = channel.basic_get(name, no_ack=True)
                if message is None:
                    break
                body = message.body if isinstance(message.body, bytes | str) else bytes(message.body)
                text_body = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
                if MALFORMED_MARKER in text_body:
                    counts[component] += 1
    return counts


def _projection_equals_rebuild(database_url: str) -> dict[str, int]:
    """Rows that differ between the live check-in read models and a rebuild from the store."""
    from services.checkin import tables
    from services.checkin.projections import own_projection
    from shared.db import engine_for
    from shared.projection import rebuild

    engine = engine_for(database_url)
    live = [tables.check_ins, tables.streaks]

    def snapshot() -> dict[str, set[str]]:
        with engine.connect() as conn:
            return {t.name: {json.dumps(dict(r._mapping), default=str, sort_keys=True)
                             for r in conn.execute(select(t))} for t in live}

    before = snapshot()
    rebuild(engine, own_projection())
    after = snapshot()
    return {name: len(before[name] ^ after[name]) for name in before}


def _print(report: dict[str, Any]) -> None:
    out = REPO_ROOT / "var" / "chaos"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"report-{report['name']}.json").write_text(json.dumps(report, indent=2, default=str))
    lines = [f"\n=== chaos run '{report['name']}' ==="]
    lines += [f"  {key:<32} {value}" for key, value in report.items() if not key.startswith("_")]
    print("\n".join(lines), flush=True)


def assert_nothing_lost(report: dict[str, Any]) -> None:
    problems = []
    for key in ("lost", "stored_twice", "stored_but_not_accepted", "webhooks_missing", "webhook_second_messages"):
        if report[key]:
            problems.append(f"{key} = {report[key]}")
    if any(report["projection_differences"].values()):
        problems.append(f"projection differs from rebuild: {report['projection_differences']}")
    for component, expected in report["dead_letters_expected"].items():
        if report["dead_letters_in_table"].get(component, 0) != expected:
            problems.append(f"dead letters of {component} in the table: {report['dead_letters_in_table']} "
                            f"(expected {expected})")
        if report["dead_letters_on_queue"].get(component, 0) != expected:
            problems.append(f"dead letters of {component} on the queue: {report['dead_letters_on_queue']} "
                            f"(expected {expected})")
    if report["accepted"] < report["requests"] * 0.9:
        problems.append(f"only {report['accepted']} of {report['requests']} check-ins accepted: {report['statuses']}")
    if report["crashed_processes"]:
        problems.append(f"processes died on their own: {report['crashed_processes']}")
    assert not problems, "\n".join(problems) + "\n" + json.dumps(report["_details"], default=str)


# -- the tests -------------------------------------------------------------------------------


def _suite_env() -> dict[str, str]:
    return {
        "NOCONTACT_WEBHOOK_ALLOW_PRIVATE": "true",
        "NOCONTACT_RATE_LIMIT_PER_MINUTE": "0",
        "NOCONTACT_WEBHOOK_RETRY_SCHEDULE": "0,1,1,2,2,5,5,10,10,30",
        "NOCONTACT_SCHEDULER_INTERVAL_S": "2",
    }


@pytest.mark.chaos
def test_full_chaos(postgres_database_url: str, rabbitmq_url: str, tmp_path: Path) -> None:
    seconds = float(os.environ.get("NOCONTACT_CHAOS_SECONDS", "60"))
    with running_suite(postgres_database_url, rabbitmq_url, tmp_path / "suite", web_workers=2,
                       env=_suite_env()) as suite:
        try:
            report = run_chaos(suite, "full", seconds, [
                broker_restart(),
                kill_part("checkin-relay"),
                kill_part("notification-inbox"),
                kill_part("notification-delivery"),
            ])
        finally:
            rabbitmq("start_app")  # whatever happened, the broker is left running
        _assert_no_secrets_logged(suite, report)
    assert_nothing_lost(report)


# Alone: its suite (a process per worker part) under load, beside another test's suite,
# held 97 of PostgreSQL's 100 connections in a parallel run.
@pytest.mark.exclusive
def test_short_chaos(postgres_database_url: str, rabbitmq_url: str, tmp_path: Path) -> None:
    """The fast subset inside `make test`: steady load, one kill -9, duplicates and poison."""
    seconds = float(os.environ.get("NOCONTACT_CHAOS_SHORT_SECONDS", "15"))
    with running_suite(postgres_database_url, rabbitmq_url, tmp_path / "suite", web_workers=1,
                       env=_suite_env()) as suite:
        report = run_chaos(suite, "short", seconds, [kill_part("notification-inbox")], clients=3, pause_s=0.02)
        _assert_no_secrets_logged(suite, report)
    assert_nothing_lost(report)


def _assert_no_secrets_logged(suite: Suite, report: dict[str, Any]) -> None:
    """Under load and faults (deliveries signed, keys checked) the logs hold no secret either."""
    logs = suite.logs()
    secrets = [*report["_secrets"], suite.env["NOCONTACT_SECRET_KEY"], suite.env["NOCONTACT_OPERATOR_TOKEN"]]
    leaked = [s[:8] + "..." for s in secrets if s and s in logs]
    assert not leaked, f"secrets in the logs: {leaked}"
