"""Projections over the real store: incremental (inline) equals a rebuild from the event store,
whatever the check-ins, backdating, corrections and delivery order; the CLI rebuild reports."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, select

from services.checkin import handlers, tables
from services.checkin.domain import DayAlreadyReported, fold_streak
from services.checkin.domain.settings import TenantSettings
from services.checkin.projections import apply_check_in_event, own_projection, refresh_streak
from services.checkin.queries import current_streak, load_commitment, load_settings, streak_document
from shared.db import read
from shared.eventstore import read_stream
from shared.projection import rebuild
from tests.integration.checkin.support import deliver, new_commitment, new_tenant

NOW = datetime(2027, 6, 30, 12, 0, tzinfo=UTC)
START = date(2027, 6, 1)

operations = st.lists(
    st.tuples(st.integers(0, 29), st.sampled_from(["kept", "slipped"]), st.booleans()), min_size=1, max_size=25
)


def snapshot(engine: Engine) -> dict[str, list[tuple]]:  # type: ignore[type-arg]
    with read(engine) as conn:
        return {
            table.name: [tuple(row) for row in conn.execute(select(table).order_by(*table.primary_key.columns))]
            for table in (tables.check_ins, tables.streaks, tables.settings)
        }


def play(engine: Engine, ops: list[tuple[int, str, bool]], policy: str) -> tuple[str, object]:
    tenant = new_tenant(engine)
    cid, events = new_commitment(engine, tenant, timezone="Europe/Berlin", starts_on=START, duration_days=60,
                                 created_at=datetime(2027, 5, 31, tzinfo=UTC), coach_id="coach")
    deliver(engine, tenant.events + events)
    handlers.update_settings(engine, tenant.admin, tenant.context, {"backdate_days": 365, "streak_policy": policy},
                             now=NOW)
    for offset, outcome, scheduler_first in ops:
        if scheduler_first:
            handlers.run_scheduled(engine, tenant.tenant_id, cid, NOW)
        day = START + timedelta(days=offset)
        report = {"outcome": outcome, "urge": offset % 11}
        if outcome == "slipped":
            report["slip"] = {"channel": "texts", "initiated_by": "them"}
        try:
            handlers.record_check_in(engine, tenant.admin, tenant.context, cid, {**report, "date": day}, now=NOW)
        except DayAlreadyReported:
            handlers.correct_check_in(engine, tenant.admin, tenant.context, cid, day, report, now=NOW)
    return cid, tenant


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations, policy=st.sampled_from(["since_last_slip", "verified"]), seed=st.integers(0, 2**32))
def test_incremental_equals_rebuild_and_the_fold(engine: Engine, ops, policy: str, seed: int) -> None:  # type: ignore[no-untyped-def]
    cid, _ = play(engine, ops, policy)
    with read(engine) as conn:
        stream = read_stream(conn, f"checkin-{cid}")
        commitment = load_commitment(conn, cid)
        assert commitment is not None
        tenant_settings, _ = load_settings(conn, commitment.tenant_id)
        served = current_streak(conn, commitment, tenant_settings, NOW)
        snapshot_served = streak_document(conn, commitment, NOW)
    # What GET streak serves is THE fold of the stream, from the rows and from the snapshot.
    folded = fold_streak(stream, starts_on=START, ends_on=commitment.ends_on, today=date(2027, 6, 30),
                         policy=policy, milestones=tenant_settings.milestones)
    assert served == folded
    assert snapshot_served == folded.as_json(cid)

    before = snapshot(engine)
    report = rebuild(engine, own_projection(lambda: NOW))
    assert report.events >= len(ops)
    after = snapshot(engine)
    for name, rows in before.items():
        assert after[name] == rows, name

    # Any delivery order with duplicates gives the same rows.
    check_ins = [e for e in stream if e.type in ("checkin.recorded", "checkin.corrected")]
    shuffled = check_ins + random.Random(seed).sample(check_ins, k=min(3, len(check_ins)))
    random.Random(seed).shuffle(shuffled)
    with engine.begin() as conn:
        conn.execute(delete(tables.check_ins).where(tables.check_ins.c.commitment_id == cid))
        for event in shuffled:
            apply_check_in_event(conn, event)
        refresh_streak(conn, cid, NOW)
    assert snapshot(engine) == before

    # Each derived fact once: a milestone key is reached again only after it was revoked
    # (CONTRACT v1.1: a correction can make it untrue, a later one true again), a missed day once.
    with read(engine) as conn:
        stream = read_stream(conn, f"checkin-{cid}")
    told: dict[tuple[int, str], list[str]] = {}
    for e in stream:
        if e.type in ("streak.milestone_reached", "streak.milestone_revoked"):
            told.setdefault((e.data["milestone"], e.data["run_started_on"]), []).append(e.type.rsplit(".", 1)[1])
    for key, sequence in told.items():
        assert sequence == ["milestone_reached", "milestone_revoked"] * (len(sequence) // 2) + \
            ["milestone_reached"] * (len(sequence) % 2), (key, sequence)
    missed = [e.data["date"] for e in stream if e.type == "checkin.missed"]
    assert len(missed) == len(set(missed))


def test_cli_rebuild_reports_events_per_second(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from services.cli import main
    from shared.db import engine_for

    monkeypatch.setenv("NOCONTACT_DATABASE_URL", database_url)
    engine = engine_for(database_url)
    play(engine, [(n, "kept" if n % 5 else "slipped", False) for n in range(20)], "since_last_slip")
    before = snapshot(engine)
    result = CliRunner().invoke(main, ["checkin", "rebuild", "--with-inbox"])
    assert result.exit_code == 0, result.output
    assert "checkin.read_models:" in result.output and "events/s" in result.output
    assert "checkin.commitments:" in result.output
    # The wall-clock "today" of the CLI is before these 2027 dates: compare the check-ins only.
    assert snapshot(engine)["checkin_check_ins"] == before["checkin_check_ins"]
    assert TenantSettings() == TenantSettings.from_json(TenantSettings().as_json())
