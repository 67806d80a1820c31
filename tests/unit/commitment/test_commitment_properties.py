"""Property: whatever valid commands ran, the events alone rebuild the same aggregate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from services.commitment.domain.commitment import (
    CHANNELS,
    RELATIONSHIPS,
    Commitment,
    CommitmentConflict,
    Status,
)

from ._support import record

ZONES = [
    "UTC",
    "Pacific/Auckland",
    "America/Los_Angeles",
    "Europe/Berlin",
    "Asia/Kathmandu",
]
START = datetime(2026, 3, 1, tzinfo=UTC)

LABELS = st.text(min_size=1, max_size=200).filter(str.strip)

# A command is a tuple; the first item names it. "wait" moves the clock forward.
commands = st.one_of(
    st.tuples(
        st.just("boundaries"),
        st.lists(LABELS, max_size=3, unique=True),
        st.lists(LABELS, max_size=3, unique=True),
    ),
    st.tuples(st.just("extend_days"), st.integers(1, 3650)),
    st.tuples(st.just("extend_indefinite")),
    st.tuples(st.just("end"), st.one_of(st.none(), st.text(max_size=500))),
    st.tuples(st.just("complete")),
    st.tuples(st.just("assign"), st.sampled_from(["coach-a", "coach-b", "coach-c"])),
    st.tuples(st.just("unassign"), st.sampled_from([None, "coach-a", "coach-b"])),
    st.tuples(st.just("wait"), st.integers(0, 24 * 45)),  # hours
)


@st.composite
def new_commitments(draw: st.DrawFn) -> tuple[Commitment, datetime]:
    zone = draw(st.sampled_from(ZONES))
    now = START + timedelta(minutes=draw(st.integers(0, 60 * 24 * 400)))
    offset = draw(st.integers(-365, 30))
    today = now.astimezone(ZoneInfo(zone)).date()
    channels = draw(
        st.one_of(
            st.none(), st.lists(st.sampled_from(CHANNELS), min_size=1, unique=True)
        )
    )
    commitment = Commitment.create(
        commitment_id="c-1",
        member_id=draw(st.text(min_size=1, max_size=128).filter(str.strip)),
        contact={
            "label": draw(st.text(min_size=1, max_size=200).filter(str.strip)),
            "relationship": draw(st.sampled_from(RELATIONSHIPS)),
        },
        channels=channels,
        timezone=zone,
        starts_on=(today + timedelta(days=offset)).isoformat(),
        duration_days=draw(st.one_of(st.none(), st.integers(1, 400))),
        motivation=draw(st.one_of(st.none(), st.text(max_size=2000))),
        now=now,
    )
    return commitment, now


@settings(max_examples=300, deadline=None)
@given(new_commitments(), st.lists(commands, max_size=25))
def test_rebuilt_aggregate_equals_the_commanded_one(
    start: tuple[Commitment, datetime], script: list[tuple[object, ...]]
) -> None:
    commitment, now = start
    final_statuses = {Status.ENDED, Status.COMPLETED}
    for command in script:
        before = commitment.status_at(now)
        emitted_before = len(commitment.pending_events)
        try:
            match command:
                case ("extend_days", int(days)):
                    commitment.extend(now=now, additional_days=days)
                case ("extend_indefinite",):
                    commitment.extend(now=now, indefinite=True)
                case ("end", reason):
                    commitment.end(now=now, reason=reason)
                case ("complete",):
                    commitment.complete(now=now)
                case ("assign", str(coach)):
                    commitment.assign_coach(coach, now=now)
                case ("unassign", coach):
                    commitment.unassign_coach(now=now, coach_id=coach)  # type: ignore[arg-type]
                case ("boundaries", list(exceptions), list(places)):
                    # Each exception over the commitment's first channel: always valid.
                    commitment.change_boundaries(
                        now=now,
                        exceptions=[
                            {"label": label, "channels": commitment.channels[:1]}
                            for label in exceptions
                        ],
                        places=[{"label": label} for label in places],
                    )
                case ("wait", int(hours)):
                    now += timedelta(hours=hours)
        except CommitmentConflict:
            # Refused commands change nothing; valid input never raises anything else.
            assert len(commitment.pending_events) == emitted_before
        if before in final_statuses:
            assert commitment.status_at(now) == before  # final states stay final
        assert commitment.version == len(commitment.pending_events)
        if commitment.ends_on is not None:
            assert commitment.ends_on >= commitment.starts_on
            assert (
                commitment.duration_days
                == (commitment.ends_on - commitment.starts_on).days + 1
            )

    copy = Commitment.from_events(
        record(commitment.pending_events, commitment.stream_id)
    )
    assert copy == commitment
    assert copy.version == commitment.version
    assert copy.status_at(now) == commitment.status_at(now)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(ZONES),
    st.integers(1, 3650),
    st.datetimes(
        min_value=datetime(2026, 1, 1),
        max_value=datetime(2036, 1, 1),
        timezones=st.just(UTC),
    ),
)
def test_status_flips_exactly_at_local_midnight_after_ends_on(
    zone: str, duration: int, now: datetime
) -> None:
    c = Commitment.create(
        commitment_id="c",
        member_id="m",
        contact={"label": "X", "relationship": "other"},
        timezone=zone,
        duration_days=duration,
        now=now,
    )
    assert c.ends_on is not None
    day_after = c.ends_on + timedelta(days=1)
    midnight = datetime.combine(day_after, datetime.min.time(), tzinfo=ZoneInfo(zone))
    assert c.status_at(midnight - timedelta(microseconds=1)) is Status.ACTIVE
    assert c.status_at(midnight) is Status.COMPLETED


# Zones whose clocks jump at (or across) local midnight: the hard cases for "first instant
# of the next day". America/Santiago and America/Havana have switched DST at midnight.
MIDNIGHT_DST_ZONES = [*ZONES, "America/Santiago", "America/Havana", "Asia/Beirut", "America/Asuncion"]


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(MIDNIGHT_DST_ZONES),
    st.integers(1, 3650),
    st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2036, 1, 1), timezones=st.just(UTC)),
)
def test_completes_at_is_the_first_instant_the_period_is_over(zone: str, duration: int, now: datetime) -> None:
    """Read models filter by `completes_at`; it must agree with `is_over` to the microsecond."""
    c = Commitment.create(
        commitment_id="c",
        member_id="m",
        contact={"label": "X", "relationship": "other"},
        timezone=zone,
        duration_days=duration,
        now=now,
    )
    at = c.completes_at()
    assert at is not None and at.tzinfo is UTC
    assert c.is_over(at)
    assert not c.is_over(at - timedelta(microseconds=1))


def test_indefinite_commitments_never_complete() -> None:
    c = Commitment.create(
        commitment_id="c",
        member_id="m",
        contact={"label": "X", "relationship": "other"},
        timezone="UTC",
        now=START,
    )
    assert c.completes_at() is None
