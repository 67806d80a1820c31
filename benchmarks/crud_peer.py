"""The plain CRUD check-in API that nocontact's check-in path is measured against (issue 14).

What a straightforward app would be: Flask under gunicorn with nocontact's own settings
(``infra/gunicorn.conf.py``: 2 workers x 4 threads, gthread), a psycopg connection pool
per worker (one connection per thread), tables in a PostgreSQL schema of its own, no
events and no bus. ``POST /v1/commitments/<id>/check-ins`` takes nocontact's payload and:

1. checks the bearer API key against the ``api_keys`` table (SHA-256 of the key, as
   nocontact stores it; nocontact caches the answer, this app asks every time);
2. in one transaction: reads the commitment with its tenant's settings (backdating
   window, streak policy, milestones), validates the report with the domain's own rules
   (`check_in_violations`), inserts the row (unique (commitment, day): 409 on a duplicate),
   reads every row of that commitment and recomputes the streak with the domain's pure
   fold (`compute_streak`, the rules nocontact's projections use), and upserts it into
   ``streaks``;
3. answers 201 after COMMIT with the check-in document.

Run by the benchmark as ``gunicorn -c infra/gunicorn.conf.py 'benchmarks.crud_peer:create_app()'``
with ``NOCONTACT_BENCH_CRUD_PEER_DATABASE`` (a libpq URL whose ``options`` set the schema).
`create_schema` and `add_tenant` / `add_commitments` prepare that schema (not timed).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import threading
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

import psycopg
from flask import Flask, Response, request
from psycopg_pool import ConnectionPool

from services.checkin.domain import (
    DEFAULT_MILESTONES,
    CheckIn,
    CommitmentTerms,
    Outcome,
    Slip,
    StreakPolicy,
    check_in_violations,
    compute_streak,
    local_today,
)
from shared.problems import PROBLEM_JSON, Problem

DATABASE_ENV = "NOCONTACT_BENCH_CRUD_PEER_DATABASE"

SCHEMA = """
CREATE TABLE tenants (
    tenant_id text PRIMARY KEY,
    backdate_days integer NOT NULL,
    streak_policy text NOT NULL,
    milestones integer[] NOT NULL
);
CREATE TABLE api_keys (
    key_hash text PRIMARY KEY,
    tenant_id text NOT NULL REFERENCES tenants
);
CREATE TABLE commitments (
    commitment_id text PRIMARY KEY,
    tenant_id text NOT NULL REFERENCES tenants,
    member_id text NOT NULL,
    timezone text NOT NULL,
    channels text[] NOT NULL,
    starts_on date NOT NULL,
    ends_on date
);
CREATE TABLE check_ins (
    commitment_id text NOT NULL REFERENCES commitments,
    day date NOT NULL,
    outcome text NOT NULL,
    urge smallint,
    mood smallint,
    slip_channel text,
    slip_initiated_by text,
    note text,
    recorded_at timestamptz NOT NULL,
    UNIQUE (commitment_id, day)
);
CREATE TABLE streaks (
    commitment_id text PRIMARY KEY REFERENCES commitments,
    current_days integer NOT NULL,
    longest_days integer NOT NULL,
    kept_days integer NOT NULL,
    slipped_days integer NOT NULL,
    unreported_days integer NOT NULL,
    streak_started_on date,
    last_slip_on date,
    last_check_in_on date,
    next_milestone integer,
    updated_at timestamptz NOT NULL
);
"""

COMMITMENT = """
SELECT c.member_id, c.timezone, c.channels, c.starts_on, c.ends_on,
       t.backdate_days, t.streak_policy, t.milestones
FROM commitments c JOIN tenants t USING (tenant_id)
WHERE c.commitment_id = %s AND c.tenant_id = %s
"""

INSERT_CHECK_IN = """
INSERT INTO check_ins (commitment_id, day, outcome, urge, mood, slip_channel, slip_initiated_by, note, recorded_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (commitment_id, day) DO NOTHING
RETURNING recorded_at
"""

UPSERT_STREAK = """
INSERT INTO streaks (commitment_id, current_days, longest_days, kept_days, slipped_days, unreported_days,
                     streak_started_on, last_slip_on, last_check_in_on, next_milestone, updated_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (commitment_id) DO UPDATE SET
    current_days = EXCLUDED.current_days, longest_days = EXCLUDED.longest_days,
    kept_days = EXCLUDED.kept_days, slipped_days = EXCLUDED.slipped_days,
    unreported_days = EXCLUDED.unreported_days, streak_started_on = EXCLUDED.streak_started_on,
    last_slip_on = EXCLUDED.last_slip_on, last_check_in_on = EXCLUDED.last_check_in_on,
    next_milestone = EXCLUDED.next_milestone, updated_at = EXCLUDED.updated_at
"""


def conninfo(sqlalchemy_url: str) -> str:
    """The libpq URL psycopg takes, from the SQLAlchemy URL the benchmark's schemas have."""
    return sqlalchemy_url.replace("postgresql+psycopg://", "postgresql://", 1)


def hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


# -- the schema and its data, prepared by the benchmark -------------------------------------


def create_schema(database: str) -> None:
    with psycopg.connect(database) as conn:
        conn.execute(SCHEMA)


def add_tenant(database: str, tenant_id: str, *, backdate_days: int) -> str:
    """A tenant with default streak settings and one API key; returns the key."""
    api_key = "peer-" + secrets.token_urlsafe(24)
    with psycopg.connect(database) as conn:
        conn.execute(
            "INSERT INTO tenants VALUES (%s, %s, %s, %s)",
            (tenant_id, backdate_days, str(StreakPolicy.SINCE_LAST_SLIP), list(DEFAULT_MILESTONES)),
        )
        conn.execute("INSERT INTO api_keys VALUES (%s, %s)", (hash_key(api_key), tenant_id))
    return api_key


def add_commitments(database: str, tenant_id: str, commitment_ids: Sequence[str], starts_on: date) -> None:
    with psycopg.connect(database) as conn, conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO commitments VALUES (%s, %s, %s, 'UTC', %s, %s, NULL)",
            [(cid, tenant_id, f"m-{index}", ["calls", "texts"], starts_on) for index, cid in enumerate(commitment_ids)],
        )


# -- the app ----------------------------------------------------------------------------------


def _problem(problem: Problem) -> Response:
    return Response(json.dumps(problem.body()), problem.status, mimetype=PROBLEM_JSON)


def parse_check_in(body: Any, today: date) -> CheckIn | Problem:
    """The report in a request body, unvalidated beyond its shape (the domain rules judge it)."""
    if not isinstance(body, dict):
        return Problem(422, "the body must be a JSON object")
    raw_day = body.get("date")
    if raw_day is None:
        day: Any = today
    else:
        try:
            day = date.fromisoformat(raw_day)
        except (TypeError, ValueError):
            day = raw_day  # `check_in_violations` names the field
    slip = body.get("slip")
    if isinstance(slip, dict):
        slip = Slip(channel=slip.get("channel"), initiated_by=slip.get("initiated_by"))
    return CheckIn(
        day=day, outcome=body.get("outcome"), urge=body.get("urge"), mood=body.get("mood"), slip=slip,
        note=body.get("note"),
    )


def create_app(database: str | None = None) -> Flask:
    database = database or os.environ[DATABASE_ENV]
    threads = int(os.environ.get("NOCONTACT_WEB_THREADS", "4"))
    app = Flask(__name__)
    pool_box: list[ConnectionPool] = []
    pool_lock = threading.Lock()

    def pool() -> ConnectionPool:
        # Opened on first use, in the gunicorn worker (never inherited across fork).
        with pool_lock:
            if not pool_box:
                pool_box.append(ConnectionPool(database, min_size=threads, max_size=threads, open=True))
            return pool_box[0]

    @app.get("/readyz")
    def readyz() -> Response:
        with pool().connection() as conn:
            conn.execute("SELECT 1")
        return Response("ok", 200)

    @app.post("/v1/commitments/<commitment_id>/check-ins")
    def check_in(commitment_id: str) -> Response:
        scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not credential:
            return _problem(Problem(401, "a bearer API key is required"))
        with pool().connection() as conn:
            key = conn.execute("SELECT tenant_id FROM api_keys WHERE key_hash = %s", (hash_key(credential),)).fetchone()
            if key is None:
                conn.rollback()
                return _problem(Problem(401, "unknown API key"))
            commitment = conn.execute(COMMITMENT, (commitment_id, key[0])).fetchone()
            if commitment is None:
                conn.rollback()
                return _problem(Problem(404, "no such commitment"))
            member_id, timezone, channels, starts_on, ends_on, backdate_days, policy, milestones = commitment
            now = datetime.now(UTC)
            today = local_today(timezone, now)
            report = parse_check_in(request.get_json(silent=True), today)
            if isinstance(report, Problem):
                conn.rollback()
                return _problem(report)
            terms = CommitmentTerms(starts_on=starts_on, ends_on=ends_on, timezone=timezone,
                                    channels=frozenset(channels))
            problems = check_in_violations(report, commitment=terms, today=today, backdate_days=backdate_days)
            if problems:
                conn.rollback()
                errors: dict[str, list[str]] = {}
                for problem in problems:
                    errors.setdefault(problem.field, []).append(problem.message)
                return _problem(Problem(422, "; ".join(f"{p.field}: {p.message}" for p in problems), errors=errors))
            slip = report.slip
            inserted = conn.execute(INSERT_CHECK_IN, (
                commitment_id, report.day, str(report.outcome), report.urge, report.mood,
                slip.channel if slip else None, str(slip.initiated_by) if slip else None, report.note, now,
            )).fetchone()
            if inserted is None:
                conn.rollback()
                return _problem(Problem(409, f"{report.day.isoformat()} already has a check-in"))
            outcomes = {day: Outcome(outcome) for day, outcome in
                        conn.execute("SELECT day, outcome FROM check_ins WHERE commitment_id = %s", (commitment_id,))}
            streak = compute_streak(outcomes, starts_on=starts_on, ends_on=ends_on, today=today, policy=policy,
                                    milestones=milestones)
            conn.execute(UPSERT_STREAK, (
                commitment_id, streak.current_days, streak.longest_days, streak.kept_days, streak.slipped_days,
                streak.unreported_days, streak.streak_started_on, streak.last_slip_on, streak.last_check_in_on,
                streak.next_milestone, now,
            ))
        # The pool's context manager committed: the answer is sent after COMMIT.
        document = {
            "commitment_id": commitment_id, "member_id": member_id, "date": report.day.isoformat(),
            "outcome": str(report.outcome), "urge": report.urge, "mood": report.mood,
            "slip": {"channel": slip.channel, "initiated_by": str(slip.initiated_by)} if slip else None,
            "note": report.note, "version": 1, "recorded_at": now.isoformat(), "updated_at": now.isoformat(),
        }
        response = Response(json.dumps(document), 201, mimetype="application/json")
        response.headers["Location"] = f"/v1/commitments/{commitment_id}/check-ins/{report.day.isoformat()}"
        return response

    return app
