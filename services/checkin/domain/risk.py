"""Is a client at risk? The flag and reasons a coach sees next to each client.

Signals a coach should look at now: a recent slip, urges that keep running high, a
member who stopped checking in, and, from the urges logged between check-ins (CONTRACT
v1.1), urges that come often, urges that keep rising and an urge that ended in reaching out.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum
from itertools import pairwise

from .checkins import CheckIn, Outcome

__all__ = [
    "CLIENT_AT_RISK",
    "DEFAULT_RISK_THRESHOLDS",
    "LoggedUrge",
    "RiskAssessment",
    "RiskReason",
    "RiskThresholds",
    "assess_risk",
    "client_at_risk_data",
]

CLIENT_AT_RISK = "client.at_risk"


class RiskReason(StrEnum):
    """Stable reason codes (strings), for the dashboard to phrase and for ``client.at_risk`` data."""

    RECENT_SLIP = "recent_slip"
    HIGH_URGES = "high_urges"
    NOT_CHECKING_IN = "not_checking_in"
    FREQUENT_URGES = "frequent_urges"
    RISING_URGES = "rising_urges"
    URGE_REACHED_OUT = "urge_reached_out"


@dataclass(frozen=True)
class RiskThresholds:
    """The knobs of `assess_risk`, with the defaults the product uses."""

    slip_window_days: int = 7
    """A slip on any of the last N days (today included) is a reason."""
    high_urge: int = 8
    """An urge at or above this level counts as high..."""
    high_urge_count: int = 2
    """...when at least this many of..."""
    urge_window_check_ins: int = 3
    """...the last this-many check-ins have one."""
    silent_days: int = 2
    """This many finished days in a row without a report is a reason (today is not finished;
    excused days do not count)."""
    urge_log_window_days: int = 7
    """The urges logged on the last N local days (today included) are read:..."""
    frequent_urges: int = 5
    """...at least this many of them is a reason;..."""
    rising_urges: int = 3
    """...so are the latest this-many of them each stronger than the one before;..."""
    urge_reached_out: int = 1
    """...and one that ended in reaching out (0: not a reason)."""


DEFAULT_RISK_THRESHOLDS = RiskThresholds()


@dataclass(frozen=True)
class RiskAssessment:
    """The flag and why; ``reasons`` is empty exactly when ``at_risk`` is False."""

    at_risk: bool
    reasons: tuple[RiskReason, ...]


@dataclass(frozen=True)
class LoggedUrge:
    """What the rules read of an urge logged between check-ins: its local day, how strong,
    how it ended (``passed``, ``reached_out``, ``ongoing``)."""

    day: date
    intensity: int
    outcome: str


def assess_risk(
    check_ins: Iterable[CheckIn],
    today: date,
    thresholds: RiskThresholds = DEFAULT_RISK_THRESHOLDS,
    *,
    starts_on: date | None = None,
    excused: Collection[date] = (),
    urges: Iterable[LoggedUrge] = (),
) -> RiskAssessment:
    """Assess the standing check-ins (one per day) of a commitment as of local ``today``.

    - ``recent_slip``: a slipped day within ``today - slip_window_days + 1``..``today``.
    - ``high_urges``: among the latest ``urge_window_check_ins`` reported days, at least
      ``high_urge_count`` carry an urge >= ``high_urge`` (a check-in without an urge
      takes a place in the window but is not high).
    - ``not_checking_in``: the finished days since the last report (or since
      ``starts_on`` when there is none) number ``silent_days`` or more; `excused` days (a
      pause) are not silent. Without reports and without ``starts_on`` this signal stays
      silent.
    - of the `urges` (oldest first) logged within ``urge_log_window_days``:
      ``frequent_urges`` when they number ``frequent_urges`` or more; ``rising_urges`` when
      the latest ``rising_urges`` are each stronger than the one before; ``urge_reached_out``
      when one ended in reaching out.

    Reports and urges dated after ``today`` are ignored.
    """
    by_day = {c.day: c for c in check_ins if c.day <= today}
    ordered = [by_day[day] for day in sorted(by_day)]
    reasons: list[RiskReason] = []

    window_start = today - timedelta(days=thresholds.slip_window_days - 1)
    if any(c.outcome == Outcome.SLIPPED and c.day >= window_start for c in ordered):
        reasons.append(RiskReason.RECENT_SLIP)

    latest = ordered[-thresholds.urge_window_check_ins :] if thresholds.urge_window_check_ins > 0 else []
    high = sum(1 for c in latest if c.urge is not None and c.urge >= thresholds.high_urge)
    if high >= thresholds.high_urge_count > 0:
        reasons.append(RiskReason.HIGH_URGES)

    if ordered:
        quiet_since = ordered[-1].day + timedelta(days=1)
    else:
        quiet_since = starts_on
    silent = 0
    if quiet_since is not None:
        silent = (today - quiet_since).days - sum(1 for day in set(excused) if quiet_since <= day < today)
    if silent >= thresholds.silent_days > 0:
        reasons.append(RiskReason.NOT_CHECKING_IN)

    since = today - timedelta(days=thresholds.urge_log_window_days - 1)
    recent = [urge for urge in urges if since <= urge.day <= today]
    if len(recent) >= thresholds.frequent_urges > 0:
        reasons.append(RiskReason.FREQUENT_URGES)
    rising = recent[-thresholds.rising_urges:] if thresholds.rising_urges > 1 else []
    if len(rising) == thresholds.rising_urges and all(a.intensity < b.intensity for a, b in pairwise(rising)):
        reasons.append(RiskReason.RISING_URGES)
    if thresholds.urge_reached_out > 0 and sum(
            1 for urge in recent if urge.outcome == "reached_out") >= thresholds.urge_reached_out:
        reasons.append(RiskReason.URGE_REACHED_OUT)

    return RiskAssessment(at_risk=bool(reasons), reasons=tuple(reasons))


def client_at_risk_data(
    *, commitment_id: str, member_id: str, assessment: RiskAssessment
) -> dict[str, object]:
    """Who and why of a ``client.at_risk`` event: ``commitment_id``, ``member_id``, ``reasons``
    (codes); `history.reconcile` adds ``at_risk``, ``previous_reasons`` (the standing told
    before) and the streak figures. Emitted only when the standing differs from the one told
    before, and none before the commitment's first check-in deadline (CONTRACT v1.1)."""
    return {
        "commitment_id": commitment_id,
        "member_id": member_id,
        "reasons": [str(reason) for reason in assessment.reasons],
    }
