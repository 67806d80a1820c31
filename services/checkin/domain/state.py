"""A commitment's decision state: what its check-in stream says, folded (a projection).

Every command on a commitment decides from this value alone, loaded with the commitment
and the settings in one statement (``checkin_streaks``): never from the whole stream.
It holds what the stream has established, independent of the clock:

- ``version``: the stream version folded (the expected version of the next append);
- ``days``: what stands for each day from ``starts_on``, one character per day (`KEPT`,
  `HELD_FIRM` (kept, against a contact attempt), `SLIPPED`, `UNREPORTED`, `EXCUSED` (not
  reported, and a pause covers it); trailing unreported days left out);
- ``pauses``: the pauses scheduled and not cancelled, (id, first day, last day);
- ``urge_log``: the latest `URGES_KEPT` urges logged between check-ins (`UrgeMark`), what
  the at-risk rules read of them;
- ``reminded_on``: the latest day a ``checkin.reminder_due`` was told for;
- ``urges``: the reported urge of each of those days (``0``-``9``, ``A`` for 10, `NO_URGE`),
  what the at-risk rules read;
- the facts already told: ``milestones`` (the (threshold, run start) of every
  ``streak.milestone_reached`` not taken back by a ``streak.milestone_revoked``),
  ``missed`` (the days of ``checkin.missed``) and ``standing`` (the reasons the last
  ``client.at_risk`` gave).

`StateFold` is THE fold: the command path applies the events it has just decided with it,
the rebuilds apply the stream with it, so a rebuilt state equals the incremental one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Protocol

from shared.calendar import date_range

from .between import MEMBER_SOS, PAUSE_CANCELLED, PAUSE_SCHEDULED, REMINDER_DUE, URGE_LOGGED, UrgeMark
from .checkins import CHECK_IN_EVENT_TYPES, CHECKIN_WITHDRAWN, CheckIn, Outcome
from .missed import CHECKIN_MISSED
from .risk import CLIENT_AT_RISK, RiskThresholds
from .streaks import STREAK_MILESTONE_REACHED, STREAK_MILESTONE_REVOKED, STREAK_RESET

__all__ = [
    "KEPT",
    "NO_URGE",
    "SLIPPED",
    "STREAM_EVENT_TYPES",
    "UNREPORTED",
    "URGES_KEPT",
    "CommitmentState",
    "StateFold",
]

# One character per day.
UNREPORTED = "."
KEPT = "k"
HELD_FIRM = "h"
SLIPPED = "s"
EXCUSED = "x"
_CODE_OF = {Outcome.KEPT: KEPT, Outcome.SLIPPED: SLIPPED, Outcome.KEPT.value: KEPT, Outcome.SLIPPED.value: SLIPPED}
_OUTCOME_OF = {KEPT: Outcome.KEPT, HELD_FIRM: Outcome.KEPT, SLIPPED: Outcome.SLIPPED}
_NOT_REPORTED = (UNREPORTED, EXCUSED)

URGES_KEPT = 20
"""How many of the latest urges the state keeps: more than any at-risk rule reads."""

NO_URGE = "-"
_URGE_CODES = "0123456789A"

STREAM_EVENT_TYPES = frozenset({
    *CHECK_IN_EVENT_TYPES, CHECKIN_WITHDRAWN, STREAK_MILESTONE_REACHED, STREAK_MILESTONE_REVOKED, CHECKIN_MISSED,
    CLIENT_AT_RISK, STREAK_RESET, PAUSE_SCHEDULED, PAUSE_CANCELLED, URGE_LOGGED, MEMBER_SOS, REMINDER_DUE,
})
"""Every event type of a check-in stream. The fold reads each for its version; ``streak.reset``
changes nothing else."""


class StreamEvent(Protocol):
    """What the fold reads of a stored event; `shared.events.RecordedEvent` fits."""

    @property
    def type(self) -> str: ...
    @property
    def data(self) -> Mapping[str, Any]: ...
    @property
    def stream_version(self) -> int: ...


class NewStreamEvent(Protocol):
    """What the fold reads of an event not stored yet; `shared.events.NewEvent` fits."""

    @property
    def type(self) -> str: ...
    @property
    def data(self) -> Mapping[str, Any]: ...


def _urge_code(urge: object) -> str:
    return _URGE_CODES[urge] if isinstance(urge, int) and 0 <= urge <= 10 else NO_URGE


@dataclass(frozen=True)
class CommitmentState:
    """See the module docstring. ``starts_on`` (the commitment's) is the first day of ``days``."""

    starts_on: date
    version: int = 0
    days: str = ""
    urges: str = ""
    milestones: frozenset[tuple[int, date]] = frozenset()
    missed: frozenset[date] = frozenset()
    standing: tuple[str, ...] = ()
    pauses: frozenset[tuple[str, date, date]] = frozenset()
    urge_log: tuple[UrgeMark, ...] = ()
    reminded_on: date | None = None

    # -- the fold ----------------------------------------------------------------------------

    @classmethod
    def folded(cls, starts_on: date, events: Iterable[StreamEvent]) -> CommitmentState:
        """The state of a stream from its events, oldest first (a rebuild; a row not built yet)."""
        fold = StateFold(cls(starts_on))
        version = 0
        for event in events:
            fold.add(event.type, event.data)
            version = event.stream_version
        return fold.state(version)

    def after(self, events: Sequence[NewStreamEvent]) -> CommitmentState:
        """The state once `events` (decided on this state) are appended."""
        if not events:
            return self
        fold = StateFold(self)
        for event in events:
            fold.add(event.type, event.data)
        return fold.state(self.version + len(events))

    # -- what a day holds ----------------------------------------------------------------------

    def _index(self, day: date) -> int:
        return (day - self.starts_on).days

    def outcome(self, day: date) -> Outcome | None:
        """The outcome standing for `day`; None when unreported."""
        index = self._index(day)
        if not 0 <= index < len(self.days):
            return None
        return _OUTCOME_OF.get(self.days[index])

    def reported(self, day: date) -> bool:
        return self.outcome(day) is not None

    def check_in(self, day: date) -> CheckIn | None:
        """What the state knows of `day`'s report (outcome and urge), None when unreported."""
        outcome = self.outcome(day)
        if outcome is None:
            return None
        code = self.urges[self._index(day)]
        return CheckIn(day=day, outcome=outcome, urge=None if code == NO_URGE else _URGE_CODES.index(code))

    def outcomes(self) -> dict[date, Outcome]:
        """The outcome of every reported day (what `compute_streak` reads)."""
        start = self.starts_on
        return {
            start + timedelta(days=index): _OUTCOME_OF[code]
            for index, code in enumerate(self.days)
            if code not in _NOT_REPORTED
        }

    def reported_days(self) -> set[date]:
        start = self.starts_on
        return {start + timedelta(days=index) for index, code in enumerate(self.days) if code not in _NOT_REPORTED}

    def held_firm_days(self) -> set[date]:
        """The kept days whose report tells of contact attempts the member held firm against."""
        start = self.starts_on
        return {start + timedelta(days=index) for index, code in enumerate(self.days) if code == HELD_FIRM}

    def paused_days(self) -> set[date]:
        """Every day a pause covers (reported or not: a report stands over a pause)."""
        return {day for _, first, last in self.pauses for day in date_range(first, last)}

    def pause(self, pause_id: str) -> tuple[str, date, date] | None:
        return next((p for p in self.pauses if p[0] == pause_id), None)

    def reported_between(self, first: date, last: date) -> int:
        """How many days of `first`..`last` (inclusive) are reported."""
        lo, hi = max(self._index(first), 0), self._index(last) + 1
        if hi <= lo:
            return 0
        window = self.days[lo:hi]
        return len(window) - window.count(UNREPORTED) - window.count(EXCUSED)

    def recent_check_ins(self, today: date, thresholds: RiskThresholds) -> list[CheckIn]:
        """The reports up to `today` the at-risk rules read (`risk.assess_risk`), oldest first:
        every one within the slip window, and at least the latest ``urge_window_check_ins``
        (the latest report always, for the silent days). The same assessment as all of them."""
        since = today - timedelta(days=thresholds.slip_window_days - 1)
        wanted = max(thresholds.urge_window_check_ins, 1)
        found: list[CheckIn] = []
        index = min(self._index(today), len(self.days) - 1)
        while index >= 0:
            if self.days[index] not in _NOT_REPORTED:
                day = self.starts_on + timedelta(days=index)
                if len(found) >= wanted and day < since:
                    break
                check_in = self.check_in(day)
                assert check_in is not None
                found.append(check_in)
            index -= 1
        found.reverse()
        return found


class StateFold:
    """The fold of a commitment's stream into its `CommitmentState`, an event at a time.

    Day changes are kept by date and written into the day strings once, in `state`: a
    command folds a few events into a long history, a rebuild a whole stream into nothing,
    both at the cost of one pass over the days.
    """

    def __init__(self, base: CommitmentState) -> None:
        self.base = base
        self.changed: dict[date, tuple[str, str]] = {}
        self.milestones = set(base.milestones)
        self.missed = set(base.missed)
        self.standing = base.standing
        self.pauses = set(base.pauses)
        self.urges = list(base.urge_log)
        self.reminded_on = base.reminded_on

    def add(self, type_: str, data: Mapping[str, Any]) -> None:
        """Fold one event (its type and data); types the state does not hold are ignored."""
        if type_ in CHECK_IN_EVENT_TYPES:
            code = _CODE_OF[data["outcome"]]
            if code == KEPT and data.get("contact_attempts"):
                code = HELD_FIRM
            self.changed[date.fromisoformat(data["date"])] = (code, _urge_code(data.get("urge")))
        elif type_ == PAUSE_SCHEDULED:
            self.pauses.add((data["pause_id"], date.fromisoformat(data["from"]), date.fromisoformat(data["to"])))
        elif type_ == PAUSE_CANCELLED:
            self.pauses = {p for p in self.pauses if p[0] != data["pause_id"]}
        elif type_ == URGE_LOGGED:
            self.urges.append(UrgeMark.of(data))
        elif type_ == REMINDER_DUE:
            day = date.fromisoformat(data["date"])
            self.reminded_on = day if self.reminded_on is None else max(day, self.reminded_on)
        elif type_ == CHECKIN_WITHDRAWN:
            self.changed[date.fromisoformat(data["date"])] = (UNREPORTED, NO_URGE)
        elif type_ == STREAK_MILESTONE_REACHED:
            self.milestones.add((data["milestone"], date.fromisoformat(data["run_started_on"])))
        elif type_ == STREAK_MILESTONE_REVOKED:
            self.milestones.discard((data["milestone"], date.fromisoformat(data["run_started_on"])))
        elif type_ == CHECKIN_MISSED:
            self.missed.add(date.fromisoformat(data["date"]))
        elif type_ == CLIENT_AT_RISK:
            self.standing = tuple(data.get("reasons", ()))

    def state(self, version: int) -> CommitmentState:
        """The state with everything added, at stream `version`."""
        base = self.base
        days, urges = base.days, base.urges
        start = base.starts_on
        pauses = frozenset(self.pauses)
        # Reports before starts_on are refused by the rules; a stray one is not the state's.
        at = {(day - start).days: codes for day, codes in self.changed.items() if day >= start}
        # Days whose excuse may have changed: those of the pauses scheduled or cancelled.
        moved = set()
        for _, first, last in pauses ^ base.pauses:
            moved.update(range(max((first - start).days, 0), (last - start).days + 1))
        if at or moved:
            excused = _days_of(pauses, start)
            size = max(len(days), max(at, default=-1) + 1, max((i + 1 for i in moved if i in excused), default=0))
            day_codes = list(days.ljust(size, UNREPORTED))
            urge_codes = list(urges.ljust(size, NO_URGE))
            for index, (code, urge) in at.items():
                day_codes[index] = code
                urge_codes[index] = urge
            for index in moved.union(at):
                if index < size and day_codes[index] in _NOT_REPORTED:
                    day_codes[index] = EXCUSED if index in excused else UNREPORTED
            days = "".join(day_codes).rstrip(UNREPORTED)
            urges = "".join(urge_codes)[: len(days)]
        return CommitmentState(
            starts_on=base.starts_on,
            version=version,
            days=days,
            urges=urges,
            milestones=frozenset(self.milestones),
            missed=frozenset(self.missed),
            standing=self.standing,
            pauses=pauses,
            urge_log=tuple(sorted(set(self.urges))[-URGES_KEPT:]),
            reminded_on=self.reminded_on,
        )


def _days_of(pauses: Iterable[tuple[str, date, date]], start: date) -> set[int]:
    """The indexes (from `start`) of the days the pauses cover."""
    return {index for _, first, last in pauses
            for index in range(max((first - start).days, 0), (last - start).days + 1)}
