"""Is a client at risk? The flag and reasons a coach sees next to each client.

Three signals a coach should look at now: a recent slip, urges that keep running
high, and a member who stopped checking in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum

from .checkins import CheckIn, Outcome

__all__ = [
    "CLIENT_AT_RISK",
    "DEFAULT_RISK_THRESHOLDS",
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
    """This many finished days in a row without a report is a reason (today is not finished)."""


DEFAULT_RISK_THRESHOLDS = RiskThresholds()


@dataclass(frozen=True)
class RiskAssessment:
    """The flag and why; ``reasons`` is empty exactly when ``at_risk`` is False."""

    at_risk: bool
    reasons: tuple[RiskReason, ...]


def assess_risk(
    check_ins: Iterable[CheckIn],
    today: date,
    thresholds: RiskThresholds = DEFAULT_RISK_THRESHOLDS,
    *,
    starts_on: date | None = None,
) -> RiskAssessment:
    """Assess the standing check-ins (one per day) of a commitment as of local ``today``.

    - ``recent_slip``: a slipped day within ``today - slip_window_days + 1``..``today``.
    - ``high_urges``: among the latest ``urge_window_check_ins`` reported days, at least
      ``high_urge_count`` carry an urge >= ``high_urge`` (a check-in without an urge
      takes a place in the window but is not high).
    - ``not_checking_in``: the finished days since the last report (or since
      ``starts_on`` when there is none) number ``silent_days`` or more. Without reports
      and without ``starts_on`` this signal stays silent.

    Reports dated after ``today`` are ignored.
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
        silent = (today - ordered[-1].day).days - 1
    elif starts_on is not None:
        silent = (today - starts_on).days
    else:
        silent = 0
    if silent >= thresholds.silent_days > 0:
        reasons.append(RiskReason.NOT_CHECKING_IN)

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
