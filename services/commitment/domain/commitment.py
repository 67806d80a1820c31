"""The ``Commitment`` aggregate: one member's promise of no contact with one person.

Pure domain: no database, no clock, no network. "Now" is always a parameter (an aware
``datetime``) because every date rule ("today", "has the period passed") is decided in
the commitment's own time zone, and tests must be able to stand anywhere in time.

The aggregate follows the cosmicpython pattern (`shared.aggregate`): a command checks
the rules, builds ``NewEvent`` values, applies them to itself and appends them to
``pending_events``; it never publishes or stores them. State is only ever changed by
``apply``, so the state after the commands and the state rebuilt from the stored events
are the same by construction (the unit tests check this property).

Stream: ``commitment-<commitment_id>``. Events (``schema_version`` 1, dates as ISO
``YYYY-MM-DD`` strings, every payload JSON-serialisable):

``commitment.created``
    ``commitment_id``, ``member_id``, ``contact`` {``label``, ``relationship``},
    ``channels`` (list), ``timezone`` (IANA name), ``starts_on``, ``duration_days``
    (int or null = indefinite), ``ends_on`` (last day, or null), ``motivation``
    (str or null), ``exceptions`` [{``label``, ``channels``}] and ``places``
    [{``label``}] (the boundaries, see below; empty lists when none were given; absent
    from events recorded before boundaries existed, which read as empty).
``commitment.extended``
    ``commitment_id``, ``member_id``, ``previous_ends_on``, ``ends_on`` (null when made
    indefinite), ``additional_days`` (int or null), ``indefinite`` (bool).
``commitment.ended``
    ``commitment_id``, ``member_id``, ``reason`` (str or null), ``ended_on`` (the
    member's local date when it was ended).
``commitment.completed``
    ``commitment_id``, ``member_id``, ``ends_on`` (the last day that was completed).
``coach.assigned``
    ``commitment_id``, ``member_id``, ``coach_id``, ``previous_coach_id`` (str or null:
    lets a coach's client list drop the member without reading older events).
``coach.unassigned``
    ``commitment_id``, ``member_id``, ``coach_id`` (the coach who was removed).
``commitment.boundaries_changed``
    ``commitment_id``, ``member_id``, ``exceptions``, ``places``: the boundaries as they
    now stand, in full (a reader folds it without older events).

Boundaries: ``exceptions`` are the necessary contact the commitment allows (custody
handovers, a lawyer, work), each with the channels it may use (a subset of the
commitment's); ``places`` are places the member avoids. A kept check-in names the
exception it used by its index in ``exceptions`` as it stood then. Their labels are
personal values (services.commitment.personal).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, ClassVar

from shared.aggregate import Aggregate, EventLike, applies, require_aware
from shared.calendar import is_valid_timezone, local_today, zone
from shared.errors import Conflict, ValidationFailed, Validator
from shared.events import NewEvent

CREATED = "commitment.created"
EXTENDED = "commitment.extended"
ENDED = "commitment.ended"
COMPLETED = "commitment.completed"
COACH_ASSIGNED = "coach.assigned"
COACH_UNASSIGNED = "coach.unassigned"
BOUNDARIES_CHANGED = "commitment.boundaries_changed"

EVENT_TYPES: frozenset[str] = frozenset(
    {
        CREATED,
        EXTENDED,
        ENDED,
        COMPLETED,
        COACH_ASSIGNED,
        COACH_UNASSIGNED,
        BOUNDARIES_CHANGED,
    }
)

STREAM_CATEGORY = "commitment"

RELATIONSHIPS: tuple[str, ...] = (
    "romantic",
    "family",
    "friend",
    "professional",
    "other",
)
# Canonical order; also the default when a member does not pick channels, because no
# contact means every channel unless the member says otherwise.
CHANNELS: tuple[str, ...] = ("calls", "texts", "social_media", "email", "in_person")

MEMBER_ID_MAX = 128
COACH_ID_MAX = 128
LABEL_MAX = 200
MOTIVATION_MAX = 2000
REASON_MAX = 500
DURATION_MIN = 1
DURATION_MAX = 3650
STARTS_ON_MAX_PAST_DAYS = 365
STARTS_ON_MAX_FUTURE_DAYS = 30
# Boundaries are a short list a member reads at a glance, not a diary.
EXCEPTIONS_MAX = 20
PLACES_MAX = 20
# The last day any commitment may have. Far beyond any human commitment (indefinite is the
# answer for "for good"), far below 9999-12-31, where the calendar arithmetic of every
# service (local midnights, day bounds, the day after) overflows. Fixed, so that extending
# again and again cannot walk past it.
ENDS_ON_LATEST = date(2999, 12, 31)

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)


class InvalidCommitment(ValidationFailed):
    """A commitment command's input breaks a rule of the contract (HTTP 422)."""


class CommitmentConflict(Conflict):
    """The command does not fit the commitment's state, e.g. extending an ended one (409)."""


class Status(enum.StrEnum):
    """Lifecycle of a commitment; ``completed`` and ``ended`` are final."""

    ACTIVE = "active"
    COMPLETED = "completed"
    ENDED = "ended"


def _iso(d: date | None) -> str | None:
    return None if d is None else d.isoformat()


def _parse_date(value: Any) -> date | None:
    return None if value is None else date.fromisoformat(value)


# ---------------------------------------------------------------------- aggregate


@dataclass(frozen=True)
class Contact:
    """The person kept away from: a member-chosen label, never their real data.

    The label is still sensitive (it names a person in the member's life), so it is
    kept out of ``repr`` and therefore out of logs and tracebacks.
    """

    label: str = field(repr=False)
    relationship: str


@dataclass(frozen=True)
class NecessaryContact:
    """An exception to no contact the member cannot avoid (a custody handover, a lawyer,
    work), over some of the commitment's channels. The label is personal: out of repr."""

    label: str = field(repr=False)
    channels: tuple[str, ...]

    def data(self) -> dict[str, Any]:
        return {"label": self.label, "channels": list(self.channels)}


@dataclass(frozen=True)
class Place:
    """A place the member avoids (where the other person lives, works, goes out)."""

    label: str = field(repr=False)

    def data(self) -> dict[str, Any]:
        return {"label": self.label}


def _exceptions_of(data: Mapping[str, Any]) -> tuple[NecessaryContact, ...]:
    return tuple(
        NecessaryContact(label=item["label"], channels=tuple(item["channels"]))
        for item in data.get("exceptions") or ()
    )


def _places_of(data: Mapping[str, Any]) -> tuple[Place, ...]:
    return tuple(Place(label=item["label"]) for item in data.get("places") or ())


def completes_at(timezone: str, ends_on: date | None) -> datetime | None:
    """The first instant (UTC) a commitment ending on ``ends_on`` is over, or None when
    it is indefinite.

    Local midnight after ``ends_on``: read models store it so "which commitments are over"
    is one indexed comparison with the current time, whatever each one's zone. A midnight
    skipped by a DST jump resolves (fold=0) with the offset before the jump, which is
    exactly when the clock leaves the last day.
    """
    if ends_on is None:
        return None
    try:
        midnight = datetime.combine(ends_on + timedelta(days=1), time(), zone(timezone))
        return midnight.astimezone(UTC)
    except OverflowError:  # extended to the last representable day: never over
        return None


@dataclass(eq=True)
class Commitment(Aggregate):
    """State of one commitment, changed only by applying its events (`shared.aggregate`)."""

    category: ClassVar[str] = STREAM_CATEGORY
    created: ClassVar[str] = CREATED

    member_id: str = ""
    contact: Contact = Contact(label="", relationship="")
    channels: tuple[str, ...] = ()
    timezone: str = "UTC"
    starts_on: date = date.min
    # Current length in days (ends_on - starts_on + 1) or None when indefinite; an
    # extension changes it so the resource never shows a length that contradicts ends_on.
    duration_days: int | None = None
    ends_on: date | None = None
    # Personal text: kept out of repr, hence out of logs and tracebacks.
    motivation: str | None = field(default=None, repr=False)
    coach_id: str | None = None
    created_at: datetime | None = None
    recorded_status: Status = Status.ACTIVE
    ended_on: date | None = None
    end_reason: str | None = field(default=None, repr=False)
    completed_at: datetime | None = None
    ended_at: datetime | None = None
    exceptions: tuple[NecessaryContact, ...] = ()
    places: tuple[Place, ...] = ()

    # ------------------------------------------------------------- folding

    @applies(CREATED)
    def _apply_created(self, event: EventLike) -> None:
        d = event.data
        self.id = d["commitment_id"]
        self.member_id = d["member_id"]
        self.contact = Contact(
            label=d["contact"]["label"], relationship=d["contact"]["relationship"]
        )
        self.channels = tuple(d["channels"])
        self.timezone = d["timezone"]
        self.starts_on = date.fromisoformat(d["starts_on"])
        self.duration_days = d["duration_days"]
        self.ends_on = _parse_date(d["ends_on"])
        self.motivation = d.get("motivation")
        self.created_at = event.occurred_at
        self.recorded_status = Status.ACTIVE
        self.exceptions = _exceptions_of(d)
        self.places = _places_of(d)

    @applies(EXTENDED)
    def _apply_extended(self, event: EventLike) -> None:
        self.ends_on = _parse_date(event.data["ends_on"])
        self.duration_days = (
            None if self.ends_on is None else (self.ends_on - self.starts_on).days + 1
        )

    @applies(ENDED)
    def _apply_ended(self, event: EventLike) -> None:
        self.recorded_status = Status.ENDED
        self.ended_on = date.fromisoformat(event.data["ended_on"])
        self.end_reason = event.data.get("reason")
        self.ended_at = event.occurred_at

    @applies(COMPLETED)
    def _apply_completed(self, event: EventLike) -> None:
        self.recorded_status = Status.COMPLETED
        self.completed_at = event.occurred_at

    @applies(COACH_ASSIGNED)
    def _apply_coach_assigned(self, event: EventLike) -> None:
        self.coach_id = event.data["coach_id"]

    @applies(COACH_UNASSIGNED)
    def _apply_coach_unassigned(self, event: EventLike) -> None:
        self.coach_id = None

    @applies(BOUNDARIES_CHANGED)
    def _apply_boundaries_changed(self, event: EventLike) -> None:
        self.exceptions = _exceptions_of(event.data)
        self.places = _places_of(event.data)

    # ----------------------------------------------------------------- status

    def today(self, now: datetime) -> date:
        """The member's local date at ``now``."""
        return local_today(self.timezone, now)

    def is_over(self, now: datetime) -> bool:
        """True when the last day has passed in the commitment's own time zone."""
        return self.ends_on is not None and self.ends_on < self.today(now)

    def completes_at(self) -> datetime | None:
        """The first instant (UTC) at which ``is_over`` holds, or None when indefinite."""
        return completes_at(self.timezone, self.ends_on)

    def status_at(self, now: datetime) -> Status:
        """Status as the contract defines it: recorded events plus the passage of time.

        A commitment whose ``ends_on`` has passed is ``completed`` even before the
        scheduler has recorded ``commitment.completed`` for it; otherwise the answer
        would depend on when the scheduler last ran.
        """
        if self.recorded_status is not Status.ACTIVE:
            return self.recorded_status
        return Status.COMPLETED if self.is_over(now) else Status.ACTIVE

    def _require_active(self, now: datetime, action: str) -> None:
        status = self.status_at(now)
        if status is not Status.ACTIVE:
            raise CommitmentConflict(f"cannot {action} a commitment that is {status}")

    # --------------------------------------------------------------- commands

    def _ids(self) -> dict[str, Any]:
        return {"commitment_id": self.id, "member_id": self.member_id}

    @classmethod
    def create(
        cls,
        *,
        commitment_id: str,
        member_id: object,
        contact: Contact | Mapping[str, object] | None,
        timezone: object,
        now: datetime,
        channels: Sequence[object] | None = None,
        starts_on: date | str | None = None,
        duration_days: object = None,
        motivation: object = None,
        exceptions: object = None,
        places: object = None,
    ) -> Commitment:
        """Open a new commitment; the result holds one pending ``commitment.created``.

        Inputs are typed ``object`` on purpose: they usually come straight from JSON,
        and a wrong type must become a named 422 field error, never a 500.
        ``commitment_id`` is chosen by the caller (a fresh uuid) so this stays pure.
        ``starts_on`` accepts a date or an ISO string and defaults to today in
        ``timezone``; it may lie at most 365 days back and 30 ahead of that today.
        ``exceptions`` and ``places`` (the boundaries) default to none.
        """
        require_aware(now)
        v = Validator(InvalidCommitment)
        member = v.text("member_id", member_id, min_len=1, max_len=MEMBER_ID_MAX)

        label: str | None = None
        relationship: str | None = None
        if isinstance(contact, Contact):
            contact = {"label": contact.label, "relationship": contact.relationship}
        if not isinstance(contact, Mapping):
            v.add("contact", "is required" if contact is None else "must be an object")
        else:
            label = v.text(
                "contact.label", contact.get("label"), min_len=1, max_len=LABEL_MAX
            )
            rel = contact.get("relationship")
            if rel is None:
                v.add("contact.relationship", "is required")
            elif rel not in RELATIONSHIPS:
                v.add(
                    "contact.relationship", f"must be one of {', '.join(RELATIONSHIPS)}"
                )
            else:
                relationship = str(rel)

        chosen = _validate_channels(v, channels)
        boundaries = _validate_boundaries(v, exceptions, places, chosen)

        tz: str | None = None
        if timezone is None:
            v.add("timezone", "is required")
        elif not is_valid_timezone(timezone):
            v.add("timezone", "must be an IANA time zone name such as Europe/Berlin")
        else:
            tz = str(timezone)

        duration: int | None = None
        if duration_days is not None:
            duration = v.integer(
                "duration_days",
                duration_days,
                minimum=DURATION_MIN,
                maximum=DURATION_MAX,
            )

        motivation_text = v.text(
            "motivation", motivation, min_len=0, max_len=MOTIVATION_MAX, required=False
        )

        start: date | None = None
        if tz is not None:  # without a zone there is no "today" to check against
            start = _validate_starts_on(v, starts_on, local_today(tz, now))

        v.raise_if_any()
        assert member is not None and label is not None and relationship is not None
        assert tz is not None and start is not None and chosen is not None
        assert boundaries is not None

        ends_on = None if duration is None else start + timedelta(days=duration - 1)
        if ends_on is not None and ends_on > ENDS_ON_LATEST:
            raise InvalidCommitment("duration_days", f"would end after {ENDS_ON_LATEST.isoformat()}, the latest "
                                                     "last day; make it indefinite instead")
        commitment = cls()
        commitment._emit(
            CREATED,
            {
                "commitment_id": commitment_id,
                "member_id": member,
                "contact": {"label": label, "relationship": relationship},
                "channels": list(chosen),
                "timezone": tz,
                "starts_on": start.isoformat(),
                "duration_days": duration,
                "ends_on": _iso(ends_on),
                "motivation": motivation_text,
                **_boundaries_data(*boundaries),
            },
            now,
        )
        return commitment

    def change_boundaries(
        self, *, now: datetime, exceptions: object, places: object
    ) -> list[NewEvent]:
        """Replace the boundaries (both lists, in full) of an active commitment.

        Validated as on creation (422, naming e.g. ``exceptions.0.channels``); 409 unless
        active: a finished commitment's boundaries are the record of what it allowed.
        The same boundaries again emit nothing, so the PUT can be repeated safely.
        """
        require_aware(now)
        v = Validator(InvalidCommitment)
        boundaries = _validate_boundaries(v, exceptions, places, self.channels)
        v.raise_if_any()
        assert boundaries is not None
        self._require_active(now, "change the boundaries of")
        if boundaries == (self.exceptions, self.places):
            return []
        event = self._emit(
            BOUNDARIES_CHANGED, {**self._ids(), **_boundaries_data(*boundaries)}, now
        )
        return [event]

    def extend(
        self,
        *,
        now: datetime,
        additional_days: object = None,
        indefinite: object = False,
    ) -> list[NewEvent]:
        """Lengthen an active commitment by some days, or make it indefinite.

        Exactly one of ``additional_days`` / ``indefinite=True`` must be given (422
        otherwise); the new last day may not be after ``ENDS_ON_LATEST`` (422 naming
        ``additional_days``). Conflicts (409): the commitment is not active at ``now`` (ended,
        completed, or its period already passed), or it is already indefinite: there is
        no day to add to and nothing to make "more indefinite".
        """
        require_aware(now)
        v = Validator(InvalidCommitment)
        if not isinstance(indefinite, bool):
            v.add("indefinite", "must be true or false")
        days: int | None = None
        if indefinite is True:
            if additional_days is not None:
                v.add(
                    "additional_days",
                    "give either additional_days or indefinite, not both",
                )
        elif additional_days is None:
            v.add("additional_days", "is required unless indefinite is true")
        else:
            days = v.integer(
                "additional_days",
                additional_days,
                minimum=DURATION_MIN,
                maximum=DURATION_MAX,
            )
        v.raise_if_any()

        self._require_active(now, "extend")
        if self.ends_on is None:
            raise CommitmentConflict("the commitment is already indefinite")
        new_ends_on: date | None = None
        if days is not None:
            # Compared in days, not by adding them: a commitment extended far before this
            # rule existed must not overflow the date arithmetic here either.
            if days > (ENDS_ON_LATEST - self.ends_on).days:
                raise InvalidCommitment(
                    "additional_days",
                    f"would end after {ENDS_ON_LATEST.isoformat()}, the latest last day; "
                    "make it indefinite instead",
                )
            new_ends_on = self.ends_on + timedelta(days=days)
        event = self._emit(
            EXTENDED,
            {
                **self._ids(),
                "previous_ends_on": self.ends_on.isoformat(),
                "ends_on": _iso(new_ends_on),
                "additional_days": days,
                "indefinite": new_ends_on is None,
            },
            now,
        )
        return [event]

    def end(self, *, now: datetime, reason: object = None) -> list[NewEvent]:
        """End an active commitment early; ``reason`` is optional, at most 500 chars.

        Ending is allowed only while active (409 otherwise): a completed commitment was
        kept in full and must not be rewritten as abandoned.
        """
        require_aware(now)
        v = Validator(InvalidCommitment)
        text = v.text("reason", reason, min_len=0, max_len=REASON_MAX, required=False)
        v.raise_if_any()
        self._require_active(now, "end")
        event = self._emit(
            ENDED,
            {**self._ids(), "reason": text, "ended_on": self.today(now).isoformat()},
            now,
        )
        return [event]

    def complete(self, *, now: datetime) -> list[NewEvent]:
        """Record completion once the last day is over in the member's zone.

        Idempotent and safe to call from a periodic scheduler: returns no event when the
        period is not over, when it is indefinite, or when already completed or ended.
        """
        require_aware(now)
        if self.recorded_status is not Status.ACTIVE or not self.is_over(now):
            return []
        assert self.ends_on is not None
        return [
            self._emit(
                COMPLETED, {**self._ids(), "ends_on": self.ends_on.isoformat()}, now
            )
        ]

    def assign_coach(self, coach_id: object, *, now: datetime) -> list[NewEvent]:
        """Put the commitment in a coach's care, replacing any previous coach.

        Allowed in every status (a coach may review a finished commitment with the
        member). Assigning the coach already assigned emits nothing, so the PUT of the
        contract can be repeated safely.
        """
        require_aware(now)
        v = Validator(InvalidCommitment)
        coach = v.text("coach_id", coach_id, min_len=1, max_len=COACH_ID_MAX)
        v.raise_if_any()
        if coach == self.coach_id:
            return []
        event = self._emit(
            COACH_ASSIGNED,
            {**self._ids(), "coach_id": coach, "previous_coach_id": self.coach_id},
            now,
        )
        return [event]

    def unassign_coach(
        self, *, now: datetime, coach_id: str | None = None
    ) -> list[NewEvent]:
        """Remove the coach; with ``coach_id``, only if that coach is the one assigned.

        Emits nothing when there is no (matching) coach: DELETE is idempotent, and
        removing coach A must never detach the member from coach B.
        """
        require_aware(now)
        if self.coach_id is None or (
            coach_id is not None and coach_id != self.coach_id
        ):
            return []
        return [
            self._emit(
                COACH_UNASSIGNED, {**self._ids(), "coach_id": self.coach_id}, now
            )
        ]


def _validate_channels(
    v: Validator, channels: Sequence[object] | None
) -> tuple[str, ...] | None:
    """Channels default to all; otherwise a non-empty subset without duplicates.

    A string is refused although it is a sequence: ``"calls"`` would read as five
    one-letter channels.
    """
    if channels is None:
        return CHANNELS
    if isinstance(channels, str | bytes) or not isinstance(channels, Sequence):
        v.add("channels", "must be a list")
        return None
    if not channels:
        v.add("channels", "must name at least one channel")
        return None
    unknown = [c for c in channels if not isinstance(c, str) or c not in CHANNELS]
    if unknown:
        v.add("channels", f"must be among {', '.join(CHANNELS)}")
        return None
    if len(set(channels)) != len(channels):
        v.add("channels", "must not repeat a channel")
        return None
    return tuple(str(c) for c in channels)


Boundaries = tuple[tuple[NecessaryContact, ...], tuple[Place, ...]]


def _boundaries_data(
    exceptions: Sequence[NecessaryContact], places: Sequence[Place]
) -> dict[str, Any]:
    return {
        "exceptions": [item.data() for item in exceptions],
        "places": [item.data() for item in places],
    }


def _validate_boundaries(
    v: Validator,
    exceptions: object,
    places: object,
    channels: tuple[str, ...] | None,
) -> Boundaries | None:
    """Both lists of boundaries, or None (with the reasons in `v`).

    ``channels``: the commitment's, which every exception's must be among (None: they
    are invalid themselves, and only the exceptions' own shape is checked).
    """
    found_exceptions: list[NecessaryContact] = []
    for name, item in _items(v, "exceptions", exceptions, EXCEPTIONS_MAX):
        label = v.text(f"{name}.label", item.get("label"), min_len=1, max_len=LABEL_MAX)
        allowed = _validate_exception_channels(
            v, f"{name}.channels", item.get("channels"), channels
        )
        if label is not None and allowed is not None:
            found_exceptions.append(NecessaryContact(label=label, channels=allowed))
    found_places: list[Place] = []
    for name, item in _items(v, "places", places, PLACES_MAX):
        label = v.text(f"{name}.label", item.get("label"), min_len=1, max_len=LABEL_MAX)
        if label is not None:
            found_places.append(Place(label=label))
    for list_name, labels in (
        ("exceptions", [item.label for item in found_exceptions]),
        ("places", [item.label for item in found_places]),
    ):
        # A check-in names an exception by its index; two of one label would be ambiguous
        # to the member choosing it.
        if len(set(labels)) != len(labels):
            v.add(list_name, "must not repeat a label")
    if any(f.partition(".")[0] in ("exceptions", "places") for f in v.errors):
        return None
    return tuple(found_exceptions), tuple(found_places)


def _items(
    v: Validator, list_name: str, value: object, maximum: int
) -> list[tuple[str, Mapping[str, Any]]]:
    """(field name, item) of a list of objects; the list's and items' shape checked."""
    if value is None:
        return []
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Sequence):
        v.add(list_name, "must be a list")
        return []
    if len(value) > maximum:
        v.add(list_name, f"must hold at most {maximum} items")
        return []
    items = []
    for index, item in enumerate(value):
        name = f"{list_name}.{index}"
        if isinstance(item, Mapping):
            items.append((name, item))
        else:
            v.add(name, "must be an object")
    return items


def _validate_exception_channels(
    v: Validator, name: str, value: object, allowed: tuple[str, ...] | None
) -> tuple[str, ...] | None:
    """An exception's channels: a non-empty list, no repeats, among the commitment's."""
    if value is None:
        v.add(name, "is required")
        return None
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        v.add(name, "must be a list")
        return None
    if not value:
        v.add(name, "must name at least one channel")
        return None
    if any(not isinstance(c, str) or c not in CHANNELS for c in value):
        v.add(name, f"must be among {', '.join(CHANNELS)}")
        return None
    if len(set(value)) != len(value):
        v.add(name, "must not repeat a channel")
        return None
    if allowed is not None and not set(value) <= set(allowed):
        v.add(name, f"must be among the commitment's channels ({', '.join(allowed)})")
        return None
    return tuple(str(c) for c in value)


def _validate_starts_on(v: Validator, starts_on: object, today: date) -> date | None:
    if starts_on is None:
        return today
    if isinstance(starts_on, datetime):  # a datetime is a date subclass, but not a day
        v.add("starts_on", "must be a date (YYYY-MM-DD)")
        return None
    if isinstance(starts_on, str):
        # fromisoformat alone would also take "20261121" or "2026-W47-6".
        try:
            if not _ISO_DATE.fullmatch(starts_on):
                raise ValueError(starts_on)
            starts_on = date.fromisoformat(starts_on)
        except ValueError:
            v.add("starts_on", "must be a date (YYYY-MM-DD)")
            return None
    if not isinstance(starts_on, date):
        v.add("starts_on", "must be a date (YYYY-MM-DD)")
        return None
    earliest = today - timedelta(days=STARTS_ON_MAX_PAST_DAYS)
    latest = today + timedelta(days=STARTS_ON_MAX_FUTURE_DAYS)
    if starts_on < earliest:
        v.add(
            "starts_on", f"must be at most {STARTS_ON_MAX_PAST_DAYS} days in the past"
        )
        return None
    if starts_on > latest:
        v.add(
            "starts_on",
            f"must be at most {STARTS_ON_MAX_FUTURE_DAYS} days in the future",
        )
        return None
    return starts_on
