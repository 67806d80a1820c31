"""Between check-ins (CONTRACT v1.1): pauses, urges, SOS and reminders. The rules and the
event payloads; pure. (Contact attempts and necessary contact are part of a kept day's
report: `checkins`.)

The decisions that record them are in `history` (they end in the same `reconcile` as every
report: a pause moves the streak, an urge the at-risk standing).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any

from shared.calendar import zone

from .checkins import MAX_NOTE_LENGTH, CommitmentTerms, Violation

__all__ = [
    "MAX_LABEL_LENGTH",
    "MAX_PAUSE_DAYS",
    "MAX_SOS_LENGTH",
    "MEMBER_SOS",
    "PAUSE_CANCELLED",
    "PAUSE_SCHEDULED",
    "REMINDER_DUE",
    "URGE_LOGGED",
    "Pause",
    "Urge",
    "UrgeMark",
    "UrgeOutcome",
    "member_sos_data",
    "parse_local_time",
    "pause_cancelled_data",
    "pause_scheduled_data",
    "pause_violations",
    "reminder_at",
    "reminder_due_data",
    "urge_logged_data",
    "urge_reachable",
    "urge_violations",
]

PAUSE_SCHEDULED = "pause.scheduled"
PAUSE_CANCELLED = "pause.cancelled"
URGE_LOGGED = "urge.logged"
MEMBER_SOS = "member.sos"
REMINDER_DUE = "checkin.reminder_due"

MAX_PAUSE_DAYS = 30
PAUSE_AHEAD_DAYS = 365
"""How far ahead a pause may start: a plan, not a date in another century (every day up
to a pause's end is held in the commitment's decision state)."""
MAX_LABEL_LENGTH = 200
"""A pause's reason, an urge's trigger and coping."""
MAX_SOS_LENGTH = 500


# -- pauses --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pause:
    """Days excused: no report is expected of them (a funeral, a hospital stay)."""

    pause_id: str
    first: date
    last: date
    reason: str | None = None


def pause_violations(
    pause: Pause,
    *,
    commitment: CommitmentTerms,
    today: date,
    backdate_days: int,
    scheduled: Iterable[tuple[str, date, date]],
) -> list[Violation]:
    """Every rule a new pause breaks: within the commitment's days, not older than the
    backdating window, ``from`` <= ``to``, at most `MAX_PAUSE_DAYS`, not overlapping a pause
    already scheduled (`scheduled`: (id, first, last))."""
    violations = []
    earliest = today - timedelta(days=backdate_days)
    if pause.first < earliest:
        violations.append(Violation("from", f"is older than the backdating window of {backdate_days} days "
                                            f"(earliest {earliest.isoformat()})"))
    if pause.first < commitment.starts_on:
        violations.append(Violation("from", f"is before the commitment starts ({commitment.starts_on.isoformat()})"))
    if pause.first > today + timedelta(days=PAUSE_AHEAD_DAYS):
        violations.append(Violation("from", f"is more than {PAUSE_AHEAD_DAYS} days ahead"))
    if pause.last < pause.first:
        violations.append(Violation("to", "must not be before 'from'"))
    elif (pause.last - pause.first).days + 1 > MAX_PAUSE_DAYS:
        violations.append(Violation("to", f"a pause is at most {MAX_PAUSE_DAYS} days"))
    if commitment.ends_on is not None and pause.last > commitment.ends_on:
        violations.append(Violation("to", f"is after the commitment ends ({commitment.ends_on.isoformat()})"))
    for pause_id, first, last in sorted(scheduled, key=lambda p: p[1]):
        if pause.first <= last and first <= pause.last:
            violations.append(Violation("from", f"overlaps the pause {pause_id} ({first.isoformat()} to "
                                                f"{last.isoformat()})"))
    if pause.reason is not None and len(pause.reason) > MAX_LABEL_LENGTH:
        violations.append(Violation("reason", f"must be at most {MAX_LABEL_LENGTH} characters"))
    return violations


def pause_scheduled_data(*, commitment_id: str, member_id: str, pause: Pause) -> dict[str, Any]:
    """The ``data`` of ``pause.scheduled``: ``commitment_id``, ``member_id``, ``pause_id``,
    ``from``, ``to`` (local days, inclusive) and ``reason`` (personal: sealed before the
    append, null when not said)."""
    return {"commitment_id": commitment_id, "member_id": member_id, "pause_id": pause.pause_id,
            "from": pause.first.isoformat(), "to": pause.last.isoformat(), "reason": pause.reason}


def pause_cancelled_data(*, commitment_id: str, member_id: str, pause: tuple[str, date, date]) -> dict[str, Any]:
    """The ``data`` of ``pause.cancelled``: the ids, ``pause_id`` and the days it excused."""
    pause_id, first, last = pause
    return {"commitment_id": commitment_id, "member_id": member_id, "pause_id": pause_id,
            "from": first.isoformat(), "to": last.isoformat()}


# -- urges ---------------------------------------------------------------------------------------


class UrgeOutcome(StrEnum):
    PASSED = "passed"
    REACHED_OUT = "reached_out"
    ONGOING = "ongoing"


@dataclass(frozen=True)
class Urge:
    """An urge to make contact, logged between check-ins. `trigger`, `coping`, `note`: personal."""

    urge_id: str
    at: datetime
    intensity: int
    outcome: UrgeOutcome
    trigger: str | None = None
    coping: str | None = None
    note: str | None = None


@dataclass(frozen=True, order=True)
class UrgeMark:
    """What the decision state keeps of an urge (the at-risk rules read it): ordered by time."""

    at: datetime
    urge_id: str
    intensity: int
    outcome: str

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> UrgeMark:
        return cls(datetime.fromisoformat(data["at"]), str(data["urge_id"]), int(data["intensity"]),
                   str(data["outcome"]))

    def as_json(self) -> list[Any]:
        return [self.at.isoformat(), self.urge_id, self.intensity, self.outcome]

    @classmethod
    def from_json(cls, value: Sequence[Any]) -> UrgeMark:
        at, urge_id, intensity, outcome = value
        return cls(datetime.fromisoformat(at), urge_id, intensity, outcome)


def urge_reachable(at: datetime, now: datetime, backdate_days: int) -> bool:
    """Whether an urge's instant is near enough to have a local day worth computing: any
    instant may arrive (year 1, year 9999), and out there a zone's calendar overflows."""
    return now - timedelta(days=backdate_days + 2) <= at <= now


def urge_violations(urge: Urge, *, commitment: CommitmentTerms, local_day: date | None, today: date, now: datetime,
                    backdate_days: int) -> list[Violation]:
    """Every rule an urge breaks: not in the future, within the commitment's days and the
    backdating window (its local day; None when the instant is not `urge_reachable`),
    intensity 0-10, lengths."""
    violations = []
    if urge.at > now:
        violations.append(Violation("at", "is in the future"))
    earliest = today - timedelta(days=backdate_days)
    if urge.at <= now and (local_day is None or local_day < earliest):
        violations.append(Violation("at", f"is older than the backdating window of {backdate_days} days"))
    if local_day is not None and local_day < commitment.starts_on:
        violations.append(Violation("at", f"is before the commitment starts ({commitment.starts_on.isoformat()})"))
    if isinstance(urge.intensity, bool) or not isinstance(urge.intensity, int) or not 0 <= urge.intensity <= 10:
        violations.append(Violation("intensity", "must be an integer from 0 to 10"))
    for name in ("trigger", "coping"):
        value = getattr(urge, name)
        if value is not None and len(value) > MAX_LABEL_LENGTH:
            violations.append(Violation(name, f"must be at most {MAX_LABEL_LENGTH} characters"))
    if urge.note is not None and len(urge.note) > MAX_NOTE_LENGTH:
        violations.append(Violation("note", f"must be at most {MAX_NOTE_LENGTH} characters"))
    return violations


def urge_logged_data(*, commitment_id: str, member_id: str, urge: Urge) -> dict[str, Any]:
    """The ``data`` of ``urge.logged``: the ids, ``urge_id``, ``at`` (UTC instant),
    ``intensity``, ``outcome`` and ``trigger``, ``coping`` (personal: sealed before the
    append; null when not said). Never the note: it stays with the member's urge."""
    return {"commitment_id": commitment_id, "member_id": member_id, "urge_id": urge.urge_id,
            "at": urge.at.astimezone(UTC).isoformat(), "intensity": urge.intensity, "outcome": str(urge.outcome),
            "trigger": urge.trigger, "coping": urge.coping}


# -- SOS -----------------------------------------------------------------------------------------


def member_sos_data(*, commitment_id: str, member_id: str, coach_id: str | None, message: str | None) -> dict[str, Any]:
    """The ``data`` of ``member.sos``: the ids, ``coach_id`` (who should answer, if any) and
    ``message`` (personal, sealed before the append; the coach's feed shows it, webhooks
    never carry it)."""
    return {"commitment_id": commitment_id, "member_id": member_id, "coach_id": coach_id, "message": message}


# -- reminders -----------------------------------------------------------------------------------


def parse_local_time(value: str) -> time:
    """``"HH:MM"`` (00:00-23:59) as a time; ValueError otherwise."""
    if not isinstance(value, str):
        raise ValueError("must be HH:MM")
    hours, sep, minutes = value.partition(":")
    if not sep or len(hours) != 2 or len(minutes) != 2 or not (hours + minutes).isdigit():
        raise ValueError("must be HH:MM")
    return time(int(hours), int(minutes))


def reminder_at(tz: str, day: date, local_time: time) -> datetime:
    """The UTC instant of `day`'s reminder at `local_time` in zone `tz`.

    On a spring-forward day a time that does not exist is read with the offset from before
    the gap (02:30 in a gap from 02:00 to 03:00 is 03:30); on a fall-back day a time that
    exists twice is its first occurrence. Either way one instant: one reminder.
    """
    local = datetime.combine(day, local_time, tzinfo=zone(tz)).replace(fold=0)
    return local.astimezone(UTC)


def reminder_due_data(*, commitment_id: str, member_id: str, day: date, local_time: str) -> dict[str, Any]:
    """The ``data`` of ``checkin.reminder_due``: the ids, ``date`` (the day not reported yet)
    and ``reminder_local_time`` (the tenant's, HH:MM in the member's zone)."""
    return {"commitment_id": commitment_id, "member_id": member_id, "date": day.isoformat(),
            "reminder_local_time": local_time}
