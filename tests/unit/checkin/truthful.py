"""What a partner sees of a commitment's stream, and the random histories the truthfulness
properties are checked over (the pure test here, the handlers' test on PostgreSQL).

A history is a list of steps: a report of a day (recorded, or corrected when the day has
one), a withdrawal, a new streak policy or milestone list, and time passing (the
scheduler's tick). Days are drawn back from "today", so reports arrive in any order and
backdated.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from hypothesis import strategies as st

from services.checkin.domain import (
    CLIENT_AT_RISK,
    STREAK_MILESTONE_REACHED,
    STREAK_MILESTONE_REVOKED,
)


class Told(Protocol):
    @property
    def type(self) -> str: ...
    @property
    def data(self) -> Mapping[str, Any]: ...
    @property
    def occurred_at(self) -> datetime | None: ...


@dataclass(frozen=True)
class Report:
    back: int  # days before today
    outcome: str
    urge: int


@dataclass(frozen=True)
class Withdraw:
    back: int


@dataclass(frozen=True)
class Policy:
    policy: str


@dataclass(frozen=True)
class Milestones:
    milestones: tuple[int, ...]


@dataclass(frozen=True)
class Time:
    hours: int


@dataclass(frozen=True)
class End:
    """The commitment is ended today (commitment.ended reaches the inbox, the scheduler looks)."""


Step = Report | Withdraw | Policy | Milestones | Time | End

steps = st.one_of(
    st.builds(Report, st.integers(0, 12), st.sampled_from(["kept", "kept", "slipped"]), st.integers(0, 10)),
    st.builds(Withdraw, st.integers(0, 4)),
    st.builds(Policy, st.sampled_from(["since_last_slip", "verified"])),
    st.builds(Milestones, st.lists(st.integers(1, 12), min_size=1, max_size=4).map(lambda v: tuple(sorted(set(v))))),
    st.builds(Time, st.integers(1, 60)),
    st.builds(End),
)


def partner_view(stream: Iterable[Told]) -> set[tuple[int, str]]:
    """The milestones a partner holds as reached: every streak.milestone_reached minus every
    streak.milestone_revoked, by (milestone, run_started_on). A reached milestone is never
    reached again before it is revoked, and only a reached one is revoked."""
    held: set[tuple[int, str]] = set()
    for event in stream:
        if event.type not in (STREAK_MILESTONE_REACHED, STREAK_MILESTONE_REVOKED):
            continue
        key = (event.data["milestone"], event.data["run_started_on"])
        if event.type == STREAK_MILESTONE_REACHED:
            assert key not in held, f"{key} reached twice"
            held.add(key)
        else:
            assert key in held, f"{key} revoked but not reached"
            held.remove(key)
    return held


def runs_view(runs: Sequence[Mapping[str, Any]]) -> set[tuple[int, str]]:
    """The milestones of GET .../runs, by (milestone, started_on)."""
    return {(threshold, run["started_on"]) for run in runs for threshold in run["milestones"]}


def assert_standings_change(stream: Iterable[Told], first_deadline: datetime) -> None:
    """Each client.at_risk tells a standing other than the one told before (none at first),
    and none is told before the commitment's first check-in deadline."""
    previous: tuple[str, ...] = ()
    for event in stream:
        if event.type != CLIENT_AT_RISK:
            continue
        standing = tuple(event.data["reasons"])
        assert standing != previous, f"standing {standing} told twice in a row"
        assert event.occurred_at is None or event.occurred_at >= first_deadline, "told before the first deadline"
        assert event.data["at_risk"] is bool(standing) and tuple(event.data["previous_reasons"]) == previous
        previous = standing
