"""Tenant streak settings: the policy, the milestones, the windows and the at-risk thresholds.

Pure values. Stored as ``settings.updated`` events on the stream ``settings-<tenant_id>``
(the full settings each time, so the latest event alone is the current state).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from shared.errors import ValidationFailed
from shared.events import NewEvent

from .between import parse_local_time
from .risk import RiskThresholds
from .streaks import DEFAULT_MILESTONES, StreakPolicy, normalize_milestones

__all__ = [
    "SETTINGS_UPDATED",
    "TenantSettings",
    "change_settings",
    "settings_stream_id",
    "settings_updated_data",
]

SETTINGS_UPDATED = "settings.updated"


def settings_stream_id(tenant_id: str) -> str:
    return f"settings-{tenant_id}"

MAX_BACKDATE_DAYS = 365
MAX_GRACE_HOURS = 168


@dataclass(frozen=True)
class TenantSettings:
    """One tenant's rules for streaks, backdating, missed check-ins and risk."""

    streak_policy: StreakPolicy = StreakPolicy.SINCE_LAST_SLIP
    milestones: tuple[int, ...] = DEFAULT_MILESTONES
    backdate_days: int = 7
    missed_check_in_grace_hours: int = 12
    at_risk: RiskThresholds = field(default_factory=RiskThresholds)
    reminder_local_time: str | None = None
    """``"HH:MM"``: when, in each member's zone, a day not reported yet gets
    ``checkin.reminder_due``; None: no reminders (CONTRACT v1.1)."""

    def as_json(self) -> dict[str, Any]:
        return {
            "streak_policy": str(self.streak_policy),
            "milestones": list(self.milestones),
            "backdate_days": self.backdate_days,
            "missed_check_in_grace_hours": self.missed_check_in_grace_hours,
            "at_risk": asdict(self.at_risk),
            "reminder_local_time": self.reminder_local_time,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TenantSettings:
        """Settings from stored data; fields an older event lacks take their defaults."""
        default = cls()
        risk = {**asdict(default.at_risk), **(data.get("at_risk") or {})}
        return cls(
            streak_policy=StreakPolicy(data.get("streak_policy", default.streak_policy)),
            milestones=normalize_milestones(data.get("milestones", default.milestones)),
            backdate_days=int(data.get("backdate_days", default.backdate_days)),
            missed_check_in_grace_hours=int(
                data.get("missed_check_in_grace_hours", default.missed_check_in_grace_hours)
            ),
            at_risk=RiskThresholds(**{k: int(v) for k, v in risk.items()}),
            reminder_local_time=data.get("reminder_local_time"),
        )

    def reprojects_streaks(self, other: TenantSettings) -> bool:
        """True when going from ``other`` to this changes how streaks are computed."""
        return self.streak_policy != other.streak_policy or self.milestones != other.milestones

    def changes_snapshots(self, other: TenantSettings) -> bool:
        """True when going from ``other`` to this changes a streak snapshot: its figures, or
        the at-risk flag it keeps beside them."""
        return self.reprojects_streaks(other) or self.at_risk != other.at_risk


def settings_updated_data(*, tenant_id: str, settings: TenantSettings, previous: TenantSettings) -> dict[str, Any]:
    """The ``data`` of ``settings.updated``: ``tenant_id``, every setting (full, not a patch),
    and ``reprojected`` (bool: the policy or the milestones changed, streaks were recomputed)."""
    return {"tenant_id": tenant_id, **settings.as_json(), "reprojected": settings.reprojects_streaks(previous)}


def change_settings(
    tenant_id: str, current: TenantSettings, changes: Mapping[str, Any], now: datetime
) -> tuple[TenantSettings, NewEvent]:
    """The settings after `changes` (fields left out keep their value; ``at_risk`` merges
    field by field) and the ``settings.updated`` event that records them."""
    merged = {**current.as_json(), **changes}
    merged["at_risk"] = {**current.as_json()["at_risk"], **(changes.get("at_risk") or {})}
    reminder = merged.get("reminder_local_time")
    if reminder is not None:
        try:
            parse_local_time(reminder)
        except (TypeError, ValueError):
            raise ValidationFailed("reminder_local_time", "must be HH:MM (00:00-23:59) or null") from None
    new = TenantSettings.from_json(merged)
    data = settings_updated_data(tenant_id=tenant_id, settings=new, previous=current)
    return new, NewEvent(SETTINGS_UPDATED, data, occurred_at=now)
