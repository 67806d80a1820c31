"""CONTRACT v1.1 "Streak history and truthful events", as a property of the decisions.

Over random histories of reports, corrections, withdrawals, settings changes, the
commitment ending and time passing (any order, any backdating), after every step:
- the partner's view (milestone_reached minus milestone_revoked, per milestone and run
  start) is the milestones of GET .../runs, and those of the current run are the streak's
  ``milestones_reached``;
- a milestone_reached says how many days of its run were reported and unreported;
- client.at_risk never tells the standing told before, nor anything before the first
  check-in deadline;
- the state the commands carry is the fold of the stream (a rebuild gives it), and so are
  the runs and the milestones.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.checkin.domain import (
    STREAK_MILESTONE_REACHED,
    CheckIn,
    CommitmentState,
    Decision,
    Initiator,
    KnownCommitment,
    Outcome,
    Slip,
    StreakPolicy,
    TenantSettings,
    correct,
    first_deadline,
    pass_time,
    record,
    run_history,
    settle,
    streak_of,
    withdraw,
)
from shared.errors import DomainError
from shared.events import RecordedEvent
from tests.unit.checkin.factories import stored
from tests.unit.checkin.truthful import (
    End,
    Milestones,
    Policy,
    Report,
    Step,
    Time,
    Withdraw,
    assert_standings_change,
    partner_view,
    runs_view,
    steps,
)

START = date(2026, 11, 1)
BEGIN = datetime(2026, 11, 10, 9, 0, tzinfo=UTC)  # nine days in: room to backdate from the first step


def commitment_of(zone: str, duration: int | None, created_at: datetime = BEGIN) -> KnownCommitment:
    """A commitment of START, created at `created_at` (by default at BEGIN: started nine days
    before it was made, its first check-in deadline is the next day's)."""
    return KnownCommitment(
        commitment_id="c1", tenant_id="t1", member_id="m1", coach_id=None, contact_label="Alex",
        relationship="romantic", channels=("texts",), timezone=zone, starts_on=START,
        ends_on=None if duration is None else START + timedelta(days=duration - 1), recorded_status="active",
        ended_on=None, created_at=created_at,
    )


def decide(step: Step, state: CommitmentState, commitment: KnownCommitment, tenant: TenantSettings,
           now: datetime) -> tuple[Decision, KnownCommitment, TenantSettings, datetime]:
    """One step of a history: what it decides, and the commitment, settings and instant after."""
    today = commitment.today(now)
    if isinstance(step, Report):
        day = today - timedelta(days=step.back)
        slip = Slip("texts", Initiator.ME) if step.outcome == "slipped" else None
        check_in = CheckIn(day=day, outcome=Outcome(step.outcome), urge=step.urge, slip=slip)
        command = correct if state.reported(day) else record
        return command(state, commitment, tenant, check_in, now), commitment, tenant, now
    if isinstance(step, Withdraw):
        return withdraw(state, commitment, tenant, today - timedelta(days=step.back), now), commitment, tenant, now
    if isinstance(step, Policy | Milestones):
        if isinstance(step, Policy):
            tenant = replace(tenant, streak_policy=StreakPolicy(step.policy))
        else:
            tenant = replace(tenant, milestones=step.milestones)
        return settle(state, commitment, tenant, now), commitment, tenant, now
    if isinstance(step, End):
        if commitment.recorded_status == "ended":
            raise DomainError("ended already")
        commitment = replace(commitment, recorded_status="ended", ended_on=today)
        return pass_time(state, commitment, tenant, now), commitment, tenant, now
    assert isinstance(step, Time)
    now += timedelta(hours=step.hours)
    return pass_time(state, commitment, tenant, now), commitment, tenant, now


def check(stream: list[RecordedEvent], decision: Decision, commitment: KnownCommitment, tenant: TenantSettings,
          now: datetime) -> None:
    state = decision.state
    assert CommitmentState.folded(START, stream) == state  # the rebuild's state is the commands'
    runs = run_history(commitment, state, tenant, now)
    assert partner_view(stream) == runs_view(runs)
    streak = streak_of(commitment, state.outcomes(), tenant, commitment.today(now))
    assert streak.longest_days == max((run["days"] for run in runs), default=0)
    current = None if streak.streak_started_on is None else streak.streak_started_on.isoformat()
    assert set(streak.milestones_reached) == {t for t, started_on in partner_view(stream) if started_on == current}
    days_of = {run["started_on"]: run["days"] for run in runs}
    for event in decision.events:
        if event.type == STREAK_MILESTONE_REACHED:
            data = event.data
            assert data["reported_days"] + data["unreported_days"] == days_of[data["run_started_on"]]
    assert_standings_change(stream, first_deadline(commitment, tenant))


@settings(max_examples=1000, deadline=None)
@given(
    history=st.lists(steps, min_size=5, max_size=50),
    zone=st.sampled_from(["Europe/Berlin", "Pacific/Auckland", "America/Los_Angeles"]),
    duration=st.sampled_from([None, 20, 45]),
    window=st.sampled_from([3, 30]),
    made_days_before=st.sampled_from([0, 12]),
)
def test_the_partners_view_is_the_runs_after_every_step(history: list[Step], zone: str, duration: int | None,
                                                        window: int, made_days_before: int) -> None:
    commitment = commitment_of(zone, duration, BEGIN - timedelta(days=made_days_before))
    tenant = TenantSettings(backdate_days=window, milestones=(1, 2, 3, 5, 7, 10))
    state = CommitmentState(START)
    stream: list[RecordedEvent] = []
    now = BEGIN
    for step in history:
        try:
            decision, commitment, tenant, now = decide(step, state, commitment, tenant, now)
        except DomainError:
            continue  # refused (a day out of the window, not reported, after the end): nothing told
        stream = stored(stream, decision.events)
        state = decision.state
        check(stream, decision, commitment, tenant, now)


def test_a_backdated_slip_revokes_what_it_made_untrue() -> None:
    """The case of issue 13: days 1-6 kept, milestones told, then day 4 reported a slip."""
    commitment = commitment_of("Europe/Berlin", None, datetime(2026, 10, 31, tzinfo=UTC))
    tenant = TenantSettings(milestones=(1, 3, 5))
    now = datetime(2026, 11, 6, 20, 0, tzinfo=UTC)  # Nov 6, evening in Berlin
    state, stream = CommitmentState(START), []
    for offset in range(6):
        decision = record(state, commitment, tenant, CheckIn(START + timedelta(days=offset), Outcome.KEPT), now)
        state, stream = decision.state, stored(stream, decision.events)
    assert partner_view(stream) == {(1, "2026-11-01"), (3, "2026-11-01"), (5, "2026-11-01")}
    slip = CheckIn(date(2026, 11, 4), Outcome.KEPT)
    decision = correct(state, commitment, tenant, replace(slip, outcome=Outcome.SLIPPED,
                                                          slip=Slip("texts", Initiator.THEM)), now)
    told = [(e.type, e.data.get("milestone"), e.data.get("run_started_on"), e.data.get("reason"))
            for e in decision.events]
    assert told == [
        ("checkin.corrected", None, None, None),
        ("streak.reset", None, None, None),
        ("streak.milestone_revoked", 5, "2026-11-01", "report_corrected"),
        ("streak.milestone_reached", 1, "2026-11-05", None),
        ("client.at_risk", None, None, None),
    ]
    stream = stored(stream, decision.events)
    # The run of Nov 1-3 keeps 1 and 3: it was that long; the run from Nov 5 starts over.
    assert partner_view(stream) == {(1, "2026-11-01"), (3, "2026-11-01"), (1, "2026-11-05")}
    reached = decision.events[3].data
    assert (reached["reported_days"], reached["unreported_days"]) == (2, 0)
