"""The daily check-in: its value, the rules a report must satisfy, and its event payloads.

A member reports each local day of a commitment as kept or slipped. The rules here
are pure: the caller passes the commitment's terms and "today" in the commitment's
zone (see `calendar.local_today`), and gets back every violated rule at once so the
API can answer one 422 listing all of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any

from shared.errors import Conflict, ValidationFailed

__all__ = [
    "CHANNELS",
    "CHECKIN_CORRECTED",
    "CHECKIN_RECORDED",
    "CHECKIN_WITHDRAWN",
    "CHECK_IN_EVENT_TYPES",
    "DAY_EVENT_TYPES",
    "MAX_ATTEMPTS",
    "MAX_NOTE_LENGTH",
    "SENSITIVE_FIELDS",
    "CheckIn",
    "CheckInRejected",
    "CommitmentNotActive",
    "CommitmentStatus",
    "CommitmentTerms",
    "ContactAttempt",
    "Initiator",
    "NecessaryContact",
    "Outcome",
    "Slip",
    "Violation",
    "check_in_from_event_data",
    "check_in_violations",
    "checkin_corrected_data",
    "checkin_recorded_data",
    "checkin_withdrawn_data",
    "contact_data",
    "contact_of",
    "contact_violations",
    "day_violations",
    "reported_check_in",
    "require_own_day",
    "validate_check_in",
]

CHECKIN_RECORDED = "checkin.recorded"
CHECKIN_CORRECTED = "checkin.corrected"
CHECKIN_WITHDRAWN = "checkin.withdrawn"
CHECK_IN_EVENT_TYPES = frozenset({CHECKIN_RECORDED, CHECKIN_CORRECTED})
"""Events that carry a report of a day."""
DAY_EVENT_TYPES = frozenset({CHECKIN_RECORDED, CHECKIN_CORRECTED, CHECKIN_WITHDRAWN})
"""Events that decide what stands for a day: a report, or its withdrawal (the day unreported)."""

CHANNELS = frozenset({"calls", "texts", "social_media", "email", "in_person"})
"""Every channel a commitment may cover (CONTRACT, commitments)."""

MAX_NOTE_LENGTH = 2000
URGE_RANGE = range(11)
MOOD_RANGE = range(1, 6)

MAX_ATTEMPTS = 50
"""Contact attempts one report may tell of."""

SENSITIVE_FIELDS = frozenset({"note"})
"""Event data fields holding private member text: keep them out of logs and metrics."""


class Outcome(StrEnum):
    """How the day went: kept (no contact) or slipped (the member reached out or answered)."""

    KEPT = "kept"
    SLIPPED = "slipped"


class Initiator(StrEnum):
    """Who started the contact of a slip. If they reached out and I did not answer, it is no slip."""

    ME = "me"
    THEM = "them"


class CommitmentStatus(StrEnum):
    """Lifecycle of a commitment; only an active one accepts check-ins."""

    ACTIVE = "active"
    COMPLETED = "completed"
    ENDED = "ended"


@dataclass(frozen=True)
class Slip:
    """The contact that broke the day: over which channel and who started it."""

    channel: str
    initiated_by: Initiator


# -- contact attempts and necessary contact (on a kept check-in) ---------------------------------


@dataclass(frozen=True)
class ContactAttempt:
    """The other person reached out over `channel`; the member did not answer."""

    channel: str
    answered: bool = False


@dataclass(frozen=True)
class NecessaryContact:
    """Contact the commitment's exception number `exception` allows (a custody handover...);
    `note` is the member's (personal)."""

    exception: int
    note: str | None = None


def contact_violations(
    outcome: str, attempts: Sequence[ContactAttempt], necessary: NecessaryContact | None, exception_count: int
) -> list[Violation]:
    """Every rule a report's ``contact_attempts`` and ``necessary_contact`` break: both only on
    a kept day (answered contact is a slip); an exception the commitment has."""
    violations = []
    if attempts:
        if outcome != "kept":
            violations.append(Violation("contact_attempts", "only on a kept day (contact answered is a slip)"))
        if len(attempts) > MAX_ATTEMPTS:
            violations.append(Violation("contact_attempts", f"must be at most {MAX_ATTEMPTS}"))
        for index, attempt in enumerate(attempts):
            if attempt.channel not in CHANNELS:
                violations.append(Violation(f"contact_attempts.{index}.channel",
                                            f"must be one of: {', '.join(sorted(CHANNELS))}"))
            if attempt.answered is not False:
                violations.append(Violation(f"contact_attempts.{index}.answered",
                                            "must be false: an answered contact is a slip"))
    if necessary is not None:
        if outcome != "kept":
            violations.append(Violation("necessary_contact", "only on a kept day"))
        if isinstance(necessary.exception, bool) or not isinstance(necessary.exception, int) \
                or not 0 <= necessary.exception < exception_count:
            violations.append(Violation("necessary_contact.exception",
                                        f"must be the index of one of the commitment's {exception_count} exceptions"))
        if necessary.note is not None and len(necessary.note) > MAX_NOTE_LENGTH:
            violations.append(Violation("necessary_contact.note", f"must be at most {MAX_NOTE_LENGTH} characters"))
    return violations


def contact_data(attempts: Sequence[ContactAttempt], necessary: NecessaryContact | None) -> dict[str, Any]:
    """The fields a report's event adds for them (only those given: older reports have neither)."""
    data: dict[str, Any] = {}
    if attempts:
        data["contact_attempts"] = [{"channel": a.channel, "answered": a.answered} for a in attempts]
    if necessary is not None:
        data["necessary_contact"] = {"exception": necessary.exception, "note": necessary.note}
    return data


def contact_of(report: Mapping[str, Any]) -> tuple[tuple[ContactAttempt, ...], NecessaryContact | None]:
    """The contact attempts and necessary contact of a report shaped as the event data."""
    attempts = tuple(ContactAttempt(str(a["channel"]), a.get("answered", False))
                     for a in report.get("contact_attempts") or ())
    raw = report.get("necessary_contact")
    necessary = None if raw is None else NecessaryContact(raw["exception"], raw.get("note"))
    return attempts, necessary



@dataclass(frozen=True)
class CheckIn:
    """One member's report of one local day. Unvalidated: see `check_in_violations`."""

    day: date
    outcome: Outcome
    urge: int | None = None
    mood: int | None = None
    slip: Slip | None = None
    note: str | None = None
    contact_attempts: tuple[ContactAttempt, ...] = ()
    """The other person reached out and the member held firm (a kept day only)."""
    necessary_contact: NecessaryContact | None = None
    """Contact one of the commitment's exceptions allowed (a kept day only)."""


@dataclass(frozen=True)
class CommitmentTerms:
    """What the check-in rules need to know about the commitment a report belongs to.

    ``last_day``: the last day a commitment no longer active takes reports for (its
    ``ends_on``, or the day it was ended); None when not known, and then it takes none.
    """

    starts_on: date
    ends_on: date | None
    timezone: str
    channels: frozenset[str]
    status: CommitmentStatus = CommitmentStatus.ACTIVE
    last_day: date | None = None
    exception_count: int = 0
    """How many necessary-contact exceptions the commitment has (their indexes)."""


@dataclass(frozen=True)
class Violation:
    """One rule a report breaks, and the field it concerns (an ``errors`` entry of the 422)."""

    field: str
    message: str


class CheckInRejected(ValidationFailed):
    """The report breaks one or more rules; ``violations`` lists every one, ``errors`` groups
    their messages by field."""

    def __init__(self, violations: list[Violation]) -> None:
        grouped: dict[str, list[str]] = {}
        for violation in violations:
            grouped.setdefault(violation.field, []).append(violation.message)
        first = violations[0]
        super().__init__(first.field, first.message, grouped)
        self.violations = violations

    def __str__(self) -> str:
        # Every violation, not only the first: the problem's detail reads as the whole answer.
        return "; ".join(f"{v.field}: {v.message}" for v in self.violations)


class CommitmentNotActive(Conflict):
    """The commitment is completed or ended and takes no check-ins for that day: only its own
    days (up to its last day, within the backdating window) are still reported or corrected."""

    def __init__(self, status: CommitmentStatus | str, last_day: date | None = None) -> None:
        own = "" if last_day is None else f"; only its days up to {last_day.isoformat()} take reports"
        super().__init__(f"the commitment is {status}, not active{own}")
        self.status = status


def _is_int(value: object) -> bool:
    # bool is an int subclass; ``true`` is not an urge level.
    return isinstance(value, int) and not isinstance(value, bool)


def day_violations(day: object, commitment: CommitmentTerms, today: date, backdate_days: int) -> list[Violation]:
    """Every rule the day of a report (or of its withdrawal) breaks: a date, not in the
    future, within the commitment's days and the backdating window."""
    if not isinstance(day, date) or isinstance(day, datetime):
        return [Violation("date", "must be a calendar date (YYYY-MM-DD)")]
    violations = []
    if day > today:
        violations.append(
            Violation(
                "date",
                f"is in the future in the commitment's time zone ({commitment.timezone})",
            )
        )
    if day < commitment.starts_on:
        violations.append(
            Violation(
                "date",
                f"is before the commitment starts ({commitment.starts_on.isoformat()})",
            )
        )
    if commitment.ends_on is not None and day > commitment.ends_on:
        violations.append(
            Violation(
                "date",
                f"is after the commitment ends ({commitment.ends_on.isoformat()})",
            )
        )
    earliest = today - timedelta(days=backdate_days)
    if day < earliest:
        violations.append(
            Violation(
                "date",
                f"is older than the backdating window of {backdate_days} days"
                f" (earliest {earliest.isoformat()})",
            )
        )
    return violations


def _slip_violations(check_in: CheckIn, commitment: CommitmentTerms) -> list[Violation]:
    if check_in.outcome == Outcome.SLIPPED and check_in.slip is None:
        return [Violation("slip", "is required when the outcome is slipped")]
    if check_in.outcome == Outcome.KEPT and check_in.slip is not None:
        return [Violation("slip", "must be omitted when the outcome is kept")]
    slip = check_in.slip
    if slip is None:
        return []
    if not isinstance(slip, Slip):
        return [Violation("slip", "must be an object with channel and initiated_by")]
    violations = []
    if slip.channel not in commitment.channels:
        allowed = ", ".join(sorted(commitment.channels))
        violations.append(Violation("slip.channel", f"must be one of the commitment's channels: {allowed}"))
    if slip.initiated_by not in tuple(Initiator):
        violations.append(Violation("slip.initiated_by", "must be one of: me, them"))
    return violations


def check_in_violations(
    check_in: CheckIn, *, commitment: CommitmentTerms, today: date, backdate_days: int
) -> list[Violation]:
    """Every rule the report breaks, in field order; empty when it may be recorded.

    ``today`` is the current local date in ``commitment.timezone``; a report may be for
    ``today - backdate_days`` up to ``today`` (both included), within the commitment's
    ``starts_on``..``ends_on``. Whether the commitment is still active is a conflict, not
    a field violation: see `validate_check_in`.
    """
    if backdate_days < 0:
        raise ValueError("backdate_days must be >= 0")
    violations = day_violations(check_in.day, commitment, today, backdate_days)
    if check_in.outcome not in tuple(Outcome):
        violations.append(Violation("outcome", "must be one of: kept, slipped"))
    else:
        violations.extend(_slip_violations(check_in, commitment))
    if check_in.urge is not None and not (_is_int(check_in.urge) and check_in.urge in URGE_RANGE):
        violations.append(Violation("urge", "must be an integer from 0 to 10"))
    if check_in.mood is not None and not (_is_int(check_in.mood) and check_in.mood in MOOD_RANGE):
        violations.append(Violation("mood", "must be an integer from 1 to 5"))
    if check_in.note is not None:
        if not isinstance(check_in.note, str):
            violations.append(Violation("note", "must be a string"))
        elif len(check_in.note) > MAX_NOTE_LENGTH:
            violations.append(Violation("note", f"must be at most {MAX_NOTE_LENGTH} characters"))
    violations.extend(contact_violations(str(check_in.outcome), check_in.contact_attempts,
                                         check_in.necessary_contact, commitment.exception_count))
    return violations


def validate_check_in(
    check_in: CheckIn, *, commitment: CommitmentTerms, today: date, backdate_days: int
) -> None:
    """Accept the report or raise: `CommitmentNotActive` first, then `CheckInRejected`.

    A completed or ended commitment still takes reports and corrections of its own days
    (up to ``commitment.last_day``) within the backdating window (CONTRACT v1.1): a member
    who reports the last day late is not refused. Any other day of it is a conflict.

    Whether that date already has a report (409 on create, fine on correct) needs the
    stored reports and is decided by the caller.
    """
    require_own_day(check_in.day, commitment)
    violations = check_in_violations(check_in, commitment=commitment, today=today, backdate_days=backdate_days)
    if violations:
        raise CheckInRejected(violations)


def require_own_day(day: object, commitment: CommitmentTerms) -> None:
    """A commitment no longer active takes changes only of its own days: else `CommitmentNotActive`."""
    if commitment.status == CommitmentStatus.ACTIVE:
        return
    last = commitment.last_day
    if last is None or not isinstance(day, date) or day > last:
        raise CommitmentNotActive(commitment.status, last)


def _slip_data(slip: Slip | None) -> dict[str, str] | None:
    if slip is None:
        return None
    return {"channel": slip.channel, "initiated_by": str(slip.initiated_by)}


def checkin_recorded_data(*, commitment_id: str, member_id: str, check_in: CheckIn) -> dict[str, Any]:
    """The ``data`` of a ``checkin.recorded`` event: the first report of a day.

    Fields (all JSON):

    - ``commitment_id`` (str), ``member_id`` (str): whose commitment; the stream is the
      commitment's check-in stream.
    - ``date`` (str, ``YYYY-MM-DD``): the local day reported, in the commitment's zone.
    - ``outcome`` (``"kept"`` | ``"slipped"``).
    - ``urge`` (int 0-10 | null), ``mood`` (int 1-5 | null).
    - ``slip`` (``{"channel", "initiated_by": "me"|"them"}`` | null): present exactly
      when slipped.
    - ``note`` (str | null): private member text; sensitive, see `SENSITIVE_FIELDS`.
    """
    return {
        "commitment_id": commitment_id,
        "member_id": member_id,
        "date": check_in.day.isoformat(),
        "outcome": str(check_in.outcome),
        "urge": check_in.urge,
        "mood": check_in.mood,
        "slip": _slip_data(check_in.slip),
        "note": check_in.note,
        **contact_data(check_in.contact_attempts, check_in.necessary_contact),
    }


def checkin_corrected_data(
    *,
    commitment_id: str,
    member_id: str,
    check_in: CheckIn,
    previous: CheckIn | None = None,
) -> dict[str, Any]:
    """The ``data`` of a ``checkin.corrected`` event: a later report that replaces a day's.

    The same fields as ``checkin.recorded`` (the full new report, not a patch), plus
    ``previous_outcome`` (``"kept"`` | ``"slipped"`` | null when unknown) so that
    consumers can tell a slip that was taken back from a new one without replaying.
    The later ``stream_version`` of the same ``date`` wins in every fold.
    """
    data = checkin_recorded_data(commitment_id=commitment_id, member_id=member_id, check_in=check_in)
    data["previous_outcome"] = None if previous is None else str(previous.outcome)
    return data


def checkin_withdrawn_data(*, commitment_id: str, member_id: str, day: date, previous: CheckIn) -> dict[str, Any]:
    """The ``data`` of a ``checkin.withdrawn`` event: a day's report taken back, the day is
    unreported again (as if never reported; a later report of it is a ``checkin.recorded``).

    Fields: ``commitment_id``, ``member_id``, ``date`` (``YYYY-MM-DD``) and
    ``previous_outcome`` (``"kept"`` | ``"slipped"``: what the withdrawn report said). No
    note: a withdrawal carries no member text. The later ``stream_version`` of the same
    ``date`` wins in every fold, as for corrections.
    """
    return {
        "commitment_id": commitment_id,
        "member_id": member_id,
        "date": day.isoformat(),
        "previous_outcome": str(previous.outcome),
    }


def check_in_from_event_data(data: Mapping[str, Any]) -> CheckIn:
    """Rebuild the `CheckIn` from a ``checkin.recorded``/``checkin.corrected`` event's data.

    Optional fields may be missing (older schema versions); unknown fields are ignored.
    Raises ValueError/KeyError on data no check-in event could carry.
    """
    return reported_check_in(data, date.fromisoformat(data["date"]))


def reported_check_in(report: Mapping[str, Any], day: date) -> CheckIn:
    """The `CheckIn` of ``day`` from a report shaped as the event data (``outcome``,
    ``urge``, ``mood``, ``slip`` as ``{"channel", "initiated_by"}``, ``note``): a request's
    body or a stored event's data. Unvalidated: see `validate_check_in`."""
    raw_slip = report.get("slip")
    slip = None
    if raw_slip is not None:
        slip = Slip(
            channel=str(raw_slip["channel"]),
            initiated_by=Initiator(raw_slip["initiated_by"]),
        )
    attempts, necessary = contact_of(report)
    return CheckIn(
        day=day,
        outcome=Outcome(report["outcome"]),
        urge=report.get("urge"),
        mood=report.get("mood"),
        slip=slip,
        note=report.get("note"),
        contact_attempts=attempts,
        necessary_contact=necessary,
    )
