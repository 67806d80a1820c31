"""The event catalogue: every public (webhook) event type, what its ``data`` carries, an example.

The one place partners' event types are described. The notification service serves it
(``GET /v1/event-types``), sends its examples as test events
(``POST /v1/webhook-endpoints/{id}/test``) and registers its schemas as OpenAPI components
(`register`), which any service's OpenAPI document can reference (`ref`). Pure: no I/O.

What a partner receives is the webhook body ``{"type", "timestamp", "data"}`` (a test
event adds ``"test": true``), where ``data`` is the event's data without the member's
private fields, plus ``event_id`` and ``sequence`` (services.notification.domain.messages).
Each entry's `EventType.schema` is the JSON Schema (2020-12) of that ``data``; personal
values (a contact's label, a motivation, an end reason) are sent in clear, or null once the
member's data was erased, so their schemas allow null.

Receivers ignore fields they do not know: the contract lets fields be added, so no schema
closes its objects (``additionalProperties`` stays open). The tests hold the catalogue to
what is actually sent: every field of a delivered body is documented here.

Adding a type: add it to ``WEBHOOK_EVENT_TYPES`` (services.notification.domain.messages)
and an `EventType` here, with its fields, the ones always present in ``required``, and an
example that its schema accepts; tests/unit/notification/test_catalogue.py says what is
missing.

OpenAPI 3.0 (the version the services publish) spells nullable types differently from JSON
Schema; `openapi_schema` derives the component from the JSON Schema, so both say the same.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

Schema = dict[str, Any]

# -- field schemas ---------------------------------------------------------------------------


def _string(description: str, **more: Any) -> Schema:
    return {"type": "string", "description": description, **more}


def _integer(description: str, minimum: int | None = 0, **more: Any) -> Schema:
    schema: Schema = {"type": "integer", "description": description, **more}
    if minimum is not None:
        schema["minimum"] = minimum
    return schema


def _date(description: str) -> Schema:
    return _string(f"{description} (the member's local date, YYYY-MM-DD)", format="date")


def _enum(description: str, values: Sequence[str]) -> Schema:
    return _string(description, enum=list(values))


def _nullable(schema: Schema) -> Schema:
    """`schema`, or null."""
    return {**schema, "type": [schema["type"], "null"]}


def _personal(schema: Schema) -> Schema:
    """A personal value: sent in clear, null once the member's data was erased."""
    nullable = _nullable(schema)
    nullable["description"] = f"{schema['description']}. Personal: null once the member's data was erased"
    return nullable


OUTCOMES = ("kept", "slipped")
CHANNELS = ("calls", "texts", "social_media", "email", "in_person")
RELATIONSHIPS = ("romantic", "family", "friend", "professional", "other")
STREAK_POLICIES = ("since_last_slip", "verified")
RISK_REASONS = ("recent_slip", "high_urges", "not_checking_in", "frequent_urges", "rising_urges",
                "urge_reached_out")
REVOCATION_REASONS = ("report_recorded", "report_corrected", "report_withdrawn", "settings_changed",
                      "commitment_changed", "pause_scheduled", "pause_cancelled")
SERVICES = ("commitment", "checkin", "notification")

#: Every message's own fields (services.notification.domain.messages.webhook_body).
MESSAGE_FIELDS: dict[str, Schema] = {
    "event_id": _string("Id of the event (unique; the webhook-id header is msg_ + its hex)", format="uuid"),
    "sequence": _integer(
        "Version of the event in its stream, from 1. A commitment has two streams, its own events "
        "(commitment.*, coach.assigned) and its check-in events (checkin.*, streak.*, client.at_risk); a "
        "member's erasure is a third (member.*). No sender guarantees order: order a stream's events by it",
        minimum=1,
    ),
}

IDS: dict[str, Schema] = {
    "commitment_id": _string("The commitment", format="uuid"),
    "member_id": _string("The platform's pseudonymous id of the member", minLength=1, maxLength=128),
}

#: The streak as it stands after the event (every check-in stream event carries it, so a
#: receiver needs no lookup): GET /v1/commitments/{id}/streak.
STREAK_FIGURES: dict[str, Schema] = {
    "as_of": _date("The day the figures are as of"),
    "policy": _enum("The tenant's streak policy", STREAK_POLICIES),
    "current_days": _integer("Days of the current run"),
    "longest_days": _integer("Days of the longest run ever"),
    "kept_days": _integer("Days reported kept"),
    "slipped_days": _integer("Days reported slipped"),
    "unreported_days": _integer("Days not reported"),
    "streak_started_on": _nullable(_date("First day of the current run")),
    "last_slip_on": _nullable(_date("Latest slipped day")),
    "last_check_in_on": _nullable(_date("Latest reported day")),
    "milestones_reached": {
        "type": "array",
        "items": {"type": "integer", "minimum": 1},
        "description": "Milestones (days) the current run has reached",
    },
    "next_milestone": _nullable(_integer("The next milestone (days) of the current run", minimum=1)),
    "counted_through": _nullable(_date("Last day counted (today once reported, yesterday until then)")),
    "excused_days": _integer("Days a pause excused: neither kept nor unreported, they neither break a run nor "
                             "add to it (CONTRACT v1.1; absent from events recorded before pauses existed)"),
    "held_firm_days": _integer("Kept days the other person reached out on and the member held firm (CONTRACT "
                               "v1.1; absent from events recorded before)"),
}
#: The figures every check-in stream event with figures carries (those added later may be absent).
STREAK_REQUIRED = tuple(name for name in STREAK_FIGURES if name not in ("excused_days", "held_firm_days"))

SLIP: Schema = {
    "type": ["object", "null"],
    "description": "The contact that broke the day (present exactly when slipped)",
    "properties": {
        "channel": _enum("Over which channel", CHANNELS),
        "initiated_by": _enum("Who started the contact", ("me", "them")),
    },
    "required": ["channel", "initiated_by"],
}

REPORT: dict[str, Schema] = {
    "date": _date("The day reported"),
    "outcome": _enum("How the day went", OUTCOMES),
    "urge": _nullable(_integer("Urge to make contact, 0-10", maximum=10)),
    "mood": _nullable(_integer("Mood, 1-5", minimum=1, maximum=5)),
    "slip": SLIP,
    "contact_attempts": {
        "type": "array",
        "description": "A kept day only, when told: the other person reached out and the member held firm",
        "items": {
            "type": "object",
            "properties": {"channel": _enum("Over which channel", CHANNELS),
                           "answered": {"type": "boolean", "description": "Always false: answered is a slip"}},
            "required": ["channel", "answered"],
        },
    },
    "necessary_contact": {
        "type": ["object", "null"],
        "description": "A kept day only, when told: contact one of the commitment's exceptions allowed (its "
                       "note is the member's, never sent)",
        "properties": {"exception": _integer("Index of the exception in the commitment's `exceptions`")},
        "required": ["exception"],
    },
}
#: The fields every report carries (those added later are present only when told).
REPORT_REQUIRED = ("date", "outcome", "urge", "mood", "slip")

# -- the catalogue -----------------------------------------------------------------------------


@dataclass(frozen=True)
class EventType:
    """One public event type: what it means, the fields of its ``data``, an example."""

    type: str
    description: str
    #: The fields of ``data`` besides ``event_id`` and ``sequence`` (added to every message).
    fields: Mapping[str, Schema]
    #: The fields always present (``event_id`` and ``sequence`` are added).
    required: tuple[str, ...]
    #: Example ``data``, without ``event_id`` and ``sequence``.
    example_data: Mapping[str, Any]
    example_event_id: str
    example_sequence: int
    example_timestamp: str

    @property
    def component(self) -> str:
        """The OpenAPI component name of its ``data``: ``streak.milestone_reached`` ->
        ``StreakMilestoneReachedData``."""
        return "".join(word.capitalize() for word in self.type.replace("_", ".").split(".")) + "Data"

    @property
    def webhook_component(self) -> str:
        return self.component.removesuffix("Data") + "Webhook"

    @property
    def schema(self) -> Schema:
        """The JSON Schema (2020-12) of the ``data`` partners receive."""
        return {
            "$schema": JSON_SCHEMA_DIALECT,
            "title": f"{self.type} data",
            "description": self.description,
            "type": "object",
            "properties": copy.deepcopy({**self.fields, **MESSAGE_FIELDS}),
            "required": [*self.required, *MESSAGE_FIELDS],
        }

    @property
    def example(self) -> dict[str, Any]:
        """An example webhook body of this type, as partners receive it."""
        return {
            "type": self.type,
            "timestamp": self.example_timestamp,
            "data": {
                **copy.deepcopy(dict(self.example_data)),
                "event_id": self.example_event_id,
                "sequence": self.example_sequence,
            },
        }

    def describe(self) -> dict[str, Any]:
        """The entry of ``GET /v1/event-types``."""
        return {"type": self.type, "description": self.description, "schema": self.schema, "example": self.example}


MEMBER = "m-4821"
COMMITMENT = "3f6c2a9e-8b1d-4c57-9a0e-5d2f7b1c8e34"
_IDS = {"commitment_id": COMMITMENT, "member_id": MEMBER}

#: A member 21 days into a commitment that started on 2026-11-01: one slip (11-07), one
#: day unreported, today (11-21) reported kept: a run of 14 days since 11-08.
_FIGURES = {
    "as_of": "2026-11-21", "policy": "since_last_slip", "current_days": 14, "longest_days": 14,
    "kept_days": 19, "slipped_days": 1, "unreported_days": 1, "streak_started_on": "2026-11-08",
    "last_slip_on": "2026-11-07", "last_check_in_on": "2026-11-21", "milestones_reached": [1, 3, 7, 14],
    "next_milestone": 21, "counted_through": "2026-11-21", "excused_days": 0, "held_firm_days": 2,
}
#: The same member once 11-15 was corrected to slipped: the run since 11-08 ended at 7 days.
_AFTER_SLIP = {
    **_FIGURES, "current_days": 6, "longest_days": 7, "kept_days": 18, "slipped_days": 2,
    "streak_started_on": "2026-11-16", "last_slip_on": "2026-11-15", "milestones_reached": [1, 3],
    "next_milestone": 7,
}
_RISK = {
    "at_risk": {"type": "boolean", "description": "Whether the commitment is now at risk"},
    "reasons": {
        "type": "array",
        "items": _enum("Reason code", RISK_REASONS),
        "description": "Why, now (empty when no longer at risk)",
    },
    "previous_reasons": {
        "type": "array",
        "items": _enum("Reason code", RISK_REASONS),
        "description": "The reasons told before this change",
    },
}


#: A commitment's boundaries (CONTRACT v1.1, "Between check-ins"), as they stand.
BOUNDARIES: dict[str, Schema] = {
    "exceptions": {
        "type": "array",
        "maxItems": 20,
        "description": "Necessary contact the commitment allows (custody handovers, a lawyer, work). A kept "
                       "check-in names the one it used by its index in this list",
        "items": {
            "type": "object",
            "description": "An exception to no contact",
            "properties": {
                "label": _personal(_string("The member's label for it", maxLength=200)),
                "channels": {
                    "type": "array",
                    "items": _enum("Channel", CHANNELS),
                    "minItems": 1,
                    "uniqueItems": True,
                    "description": "Over which of the commitment's channels the contact may happen",
                },
            },
            "required": ["label", "channels"],
        },
    },
    "places": {
        "type": "array",
        "maxItems": 20,
        "description": "Places the member avoids",
        "items": {
            "type": "object",
            "description": "A place to avoid",
            "properties": {"label": _personal(_string("The member's label for it", maxLength=200))},
            "required": ["label"],
        },
    },
}
_BOUNDARIES = {
    "exceptions": [{"label": "Custody handover", "channels": ["texts", "in_person"]},
                   {"label": "Lawyer", "channels": ["email"]}],
    "places": [{"label": "Their street"}],
}
URGE_OUTCOMES = ("passed", "reached_out", "ongoing")


def _erasure(services: str) -> dict[str, Schema]:
    """The fields of a member's erasure events: ids only."""
    return {"member_id": IDS["member_id"], "services": {"type": "array", "items": _enum("Service", SERVICES),
                                                        "description": services}}


EVENT_TYPES: tuple[EventType, ...] = (
    EventType(
        type="commitment.created",
        description="A member committed to no contact with one person.",
        fields={
            **IDS,
            "contact": {
                "type": "object",
                "description": "The person kept away from",
                "properties": {
                    "label": _personal(_string("The member's label for the person", maxLength=200)),
                    "relationship": _enum("Relationship to the member", RELATIONSHIPS),
                },
                "required": ["label", "relationship"],
            },
            "channels": {
                "type": "array",
                "items": _enum("Channel", CHANNELS),
                "minItems": 1,
                "uniqueItems": True,
                "description": "The channels of contact the commitment covers",
            },
            "timezone": _string("The member's IANA time zone: every date of the commitment is local to it"),
            "starts_on": _date("First day"),
            "duration_days": _nullable(_integer("Length in days; null: indefinite", minimum=1, maximum=3650)),
            "ends_on": _nullable(_date("Last day; null: indefinite")),
            "motivation": _personal(_string("Why the member commits", maxLength=2000)),
            **{name: {**schema, "description": f"{schema['description']} (absent from commitments created before "
                                                 "boundaries existed)"} for name, schema in BOUNDARIES.items()},
        },
        required=("commitment_id", "member_id", "contact", "channels", "timezone", "starts_on", "duration_days",
                  "ends_on", "motivation"),
        example_data={
            **_IDS,
            "contact": {"label": "Alex (ex)", "relationship": "romantic"},
            "channels": ["calls", "texts", "social_media"],
            "timezone": "Europe/Berlin",
            "starts_on": "2026-11-01",
            "duration_days": 90,
            "ends_on": "2027-01-29",
            "motivation": "I want my peace back.",
            "exceptions": [{"label": "Custody handover", "channels": ["texts"]}],
            "places": [],
        },
        example_event_id="0b7e3c52-1f0a-4d7e-9a51-6c2d8e4f1a01",
        example_sequence=1,
        example_timestamp="2026-11-01T07:12:09Z",
    ),
    EventType(
        type="commitment.extended",
        description="A commitment was lengthened, or made indefinite.",
        fields={
            **IDS,
            "previous_ends_on": _date("Last day before the extension"),
            "ends_on": _nullable(_date("New last day; null: now indefinite")),
            "additional_days": _nullable(_integer("Days added; null when made indefinite", minimum=1)),
            "indefinite": {"type": "boolean", "description": "Whether it was made indefinite"},
        },
        required=("commitment_id", "member_id", "previous_ends_on", "ends_on", "additional_days", "indefinite"),
        example_data={**_IDS, "previous_ends_on": "2027-01-29", "ends_on": "2027-02-28", "additional_days": 30,
                      "indefinite": False},
        example_event_id="0b7e3c52-1f0a-4d7e-9a51-6c2d8e4f1a02",
        example_sequence=3,
        example_timestamp="2026-12-02T18:40:00Z",
    ),
    EventType(
        type="commitment.ended",
        description="A commitment was ended early (it accepts no new days).",
        fields={
            **IDS,
            "reason": _personal(_string("Why it was ended, if said", maxLength=500)),
            "ended_on": _date("The day it was ended"),
        },
        required=("commitment_id", "member_id", "reason", "ended_on"),
        example_data={**_IDS, "reason": "Starting over with a new plan", "ended_on": "2026-12-05"},
        example_event_id="0b7e3c52-1f0a-4d7e-9a51-6c2d8e4f1a03",
        example_sequence=4,
        example_timestamp="2026-12-05T20:03:41Z",
    ),
    EventType(
        type="commitment.completed",
        description="A commitment's last day has passed in the member's time zone: it was kept to its end.",
        fields={**IDS, "ends_on": _date("The last day")},
        required=("commitment_id", "member_id", "ends_on"),
        example_data={**_IDS, "ends_on": "2027-01-29"},
        example_event_id="0b7e3c52-1f0a-4d7e-9a51-6c2d8e4f1a04",
        example_sequence=5,
        example_timestamp="2027-01-29T23:00:00Z",
    ),
    EventType(
        type="coach.assigned",
        description="A coach now looks after the commitment.",
        fields={
            **IDS,
            "coach_id": _string("The coach", minLength=1, maxLength=128),
            "previous_coach_id": _nullable(_string("The coach replaced, if any")),
        },
        required=("commitment_id", "member_id", "coach_id", "previous_coach_id"),
        example_data={**_IDS, "coach_id": "coach-17", "previous_coach_id": None},
        example_event_id="0b7e3c52-1f0a-4d7e-9a51-6c2d8e4f1a05",
        example_sequence=2,
        example_timestamp="2026-11-01T07:15:30Z",
    ),
    EventType(
        type="checkin.recorded",
        description="A day was reported for the first time. Carries the streak after it (the member's "
                    "private note is never sent).",
        fields={**IDS, **REPORT, **STREAK_FIGURES},
        required=(*IDS, *REPORT_REQUIRED, *STREAK_REQUIRED),
        example_data={**_IDS, "date": "2026-11-21", "outcome": "kept", "urge": 3, "mood": 4, "slip": None,
                      "contact_attempts": [{"channel": "calls", "answered": False}],
                      "necessary_contact": {"exception": 0}, **_FIGURES},
        example_event_id="0b7e3c52-1f0a-4d7e-9a51-6c2d8e4f1a06",
        example_sequence=31,
        example_timestamp="2026-11-21T20:45:12Z",
    ),
    EventType(
        type="checkin.corrected",
        description="A day's report was replaced (the full new report, not a patch). Carries the streak after it.",
        fields={
            **IDS, **REPORT,
            "previous_outcome": _nullable(_enum("What the replaced report said", OUTCOMES)),
            **STREAK_FIGURES,
        },
        required=(*IDS, *REPORT_REQUIRED, "previous_outcome", *STREAK_REQUIRED),
        example_data={**_IDS, "date": "2026-11-15", "outcome": "slipped", "urge": 8, "mood": 2,
                      "slip": {"channel": "texts", "initiated_by": "me"}, "contact_attempts": [],
                      "necessary_contact": None, "previous_outcome": "kept", **_AFTER_SLIP},
        example_event_id="0b7e3c52-1f0a-4d7e-9a51-6c2d8e4f1a07",
        example_sequence=32,
        example_timestamp="2026-11-21T21:02:47Z",
    ),
    EventType(
        type="checkin.withdrawn",
        description="A day's report was taken back: the day is unreported again (a later report of it is a "
                    "checkin.recorded). Carries the streak after it.",
        fields={
            **IDS,
            "date": _date("The day whose report was withdrawn"),
            "previous_outcome": _enum("What the withdrawn report said", OUTCOMES),
            **STREAK_FIGURES,
        },
        required=(*IDS, "date", "previous_outcome", *STREAK_REQUIRED),
        example_data={
            **_IDS, "date": "2026-11-21", "previous_outcome": "kept", **_FIGURES,
            "current_days": 13, "longest_days": 13, "kept_days": 18, "last_check_in_on": "2026-11-20",
            "milestones_reached": [1, 3, 7], "next_milestone": 14, "counted_through": "2026-11-20",
        },
        example_event_id="0b7e3c52-1f0a-4d7e-9a51-6c2d8e4f1a08",
        example_sequence=33,
        example_timestamp="2026-11-21T21:10:05Z",
    ),
    EventType(
        type="checkin.missed",
        description="A day's check-in deadline (its end in the member's zone, plus the tenant's grace hours) "
                    "passed unreported. A later report of that day is a checkin.recorded; the miss stays told.",
        fields={
            **IDS,
            "date": _date("The day nobody reported"),
            "deadline": _string("When it became missed (ISO 8601, UTC)", format="date-time"),
            **STREAK_FIGURES,
        },
        required=(*IDS, "date", "deadline", *STREAK_REQUIRED),
        example_data={
            **_IDS, "date": "2026-11-20", "deadline": "2026-11-21T11:00:00+00:00", **_FIGURES,
            "current_days": 13, "longest_days": 13, "kept_days": 17, "unreported_days": 2,
            "last_check_in_on": "2026-11-19", "milestones_reached": [1, 3, 7], "next_milestone": 14,
            "counted_through": "2026-11-20",
        },
        example_event_id="0b7e3c52-1f0a-4d7e-9a51-6c2d8e4f1a09",
        example_sequence=30,
        example_timestamp="2026-11-21T11:00:04Z",
    ),
    EventType(
        type="streak.milestone_reached",
        description="The current run reached a milestone (days). (commitment_id, milestone, run_started_on) "
                    "identifies it; a streak.milestone_revoked with the same key takes it back.",
        fields={
            **IDS,
            "milestone": _integer("The milestone, in days", minimum=1),
            "run_started_on": _date("First day of the run"),
            "attempt": _integer("Number of the run in the commitment's history, from 1", minimum=1),
            "reached_on": _date("The day the run reached the milestone"),
            **STREAK_FIGURES,
            "reported_days": _integer("Days of the run reported kept"),
            "unreported_days": _integer(
                "Days of the run not reported (counted as kept under since_last_slip): reported_days + "
                "unreported_days is the run's length. The run's, not the streak's figure of the same name"
            ),
        },
        required=(*IDS, "milestone", "run_started_on", "attempt", "reached_on", *STREAK_REQUIRED, "reported_days"),
        example_data={**_IDS, "milestone": 14, "run_started_on": "2026-11-08", "attempt": 2,
                      "reached_on": "2026-11-21", **_FIGURES, "reported_days": 13, "unreported_days": 1},
        example_event_id="0b7e3c52-1f0a-4d7e-9a51-6c2d8e4f1a10",
        example_sequence=32,
        example_timestamp="2026-11-21T20:45:12Z",
    ),
    EventType(
        type="streak.milestone_revoked",
        description="A milestone told by streak.milestone_reached is no longer true (a later report, a "
                    "correction, a withdrawal or a settings change). Reached minus revoked, keyed by "
                    "(milestone, run_started_on), equals the milestones of GET /v1/commitments/{id}/runs.",
        fields={
            **IDS,
            "milestone": _integer("The milestone taken back, in days", minimum=1),
            "run_started_on": _date("First day of the run it was reached in"),
            "reason": _enum("What made it untrue", REVOCATION_REASONS),
            **STREAK_FIGURES,
        },
        required=(*IDS, "milestone", "run_started_on", "reason", *STREAK_REQUIRED),
        example_data={**_IDS, "milestone": 14, "run_started_on": "2026-11-08", "reason": "report_corrected",
                      **_AFTER_SLIP},
        example_event_id="0b7e3c52-1f0a-4d7e-9a51-6c2d8e4f1a11",
        example_sequence=34,
        example_timestamp="2026-11-21T21:02:47Z",
    ),
    EventType(
        type="streak.reset",
        description="A slip ended a run (a backdated slip too: the run that led up to it).",
        fields={
            **IDS,
            "slipped_on": _date("The slipped day"),
            "ended_run_days": _integer("Length of the run it ended (0: the day before was a slip or the first day)"),
            "ended_run_started_on": _nullable(_date("First day of the run it ended")),
            **STREAK_FIGURES,
        },
        required=(*IDS, "slipped_on", "ended_run_days", "ended_run_started_on", *STREAK_REQUIRED),
        example_data={**_IDS, "slipped_on": "2026-11-15", "ended_run_days": 7, "ended_run_started_on": "2026-11-08",
                      **_AFTER_SLIP},
        example_event_id="0b7e3c52-1f0a-4d7e-9a51-6c2d8e4f1a12",
        example_sequence=33,
        example_timestamp="2026-11-21T21:02:47Z",
    ),
    EventType(
        type="client.at_risk",
        description="The commitment's standing changed: at risk (with reasons), or no longer. Told once per "
                    "change of reasons.",
        fields={**IDS, **_RISK, **STREAK_FIGURES},
        required=(*IDS, *_RISK, *STREAK_REQUIRED),
        example_data={**_IDS, "at_risk": True, "reasons": ["recent_slip"], "previous_reasons": [], **_AFTER_SLIP},
        example_event_id="0b7e3c52-1f0a-4d7e-9a51-6c2d8e4f1a13",
        example_sequence=35,
        example_timestamp="2026-11-21T21:02:47Z",
    ),
    EventType(
        type="member.erasure_requested",
        description="The member's data is being erased on every service (their personal values already read "
                    "as null). Ids only.",
        fields=_erasure("The services that erase their part"),
        required=("member_id", "services"),
        example_data={"member_id": MEMBER, "services": list(SERVICES)},
        example_event_id="0b7e3c52-1f0a-4d7e-9a51-6c2d8e4f1a14",
        example_sequence=2,
        example_timestamp="2027-02-03T09:00:00Z",
    ),
    EventType(
        type="member.erased",
        description="Every service has erased the member's data. Ids only.",
        fields=_erasure("The services that erased their part"),
        required=("member_id", "services"),
        example_data={"member_id": MEMBER, "services": list(SERVICES)},
        example_event_id="0b7e3c52-1f0a-4d7e-9a51-6c2d8e4f1a15",
        example_sequence=3,
        example_timestamp="2027-02-03T09:00:02Z",
    ),
    EventType(
        type="commitment.boundaries_changed",
        description="A commitment's boundaries were replaced: its necessary-contact exceptions and the places "
                    "the member avoids, both lists in full as they now stand.",
        fields={**IDS, **BOUNDARIES},
        required=(*IDS, *BOUNDARIES),
        example_data={**_IDS, **_BOUNDARIES},
        example_event_id="0b7e3c52-1f0a-4d7e-9a51-6c2d8e4f1a16",
        example_sequence=4,
        example_timestamp="2026-11-09T18:20:00Z",
    ),
    EventType(
        type="checkin.reminder_due",
        description="The tenant's reminder time (reminder_local_time) came in the member's zone and the day is "
                    "not reported yet. Told once per day.",
        fields={
            **IDS,
            "date": _date("The day not reported yet"),
            "reminder_local_time": _string("The tenant's reminder time, HH:MM in the member's zone",
                                           pattern="^([01][0-9]|2[0-3]):[0-5][0-9]$"),
        },
        required=(*IDS, "date"),
        example_data={**_IDS, "date": "2026-11-21", "reminder_local_time": "20:00"},
        example_event_id="0b7e3c52-1f0a-4d7e-9a51-6c2d8e4f1a17",
        example_sequence=30,
        example_timestamp="2026-11-21T19:00:00Z",
    ),
    EventType(
        type="urge.logged",
        description="The member logged an urge to make contact, between check-ins (the member's note is never "
                    "sent).",
        fields={
            **IDS,
            "urge_id": _string("The urge", minLength=1),
            "at": _string("When the urge came (ISO 8601)", format="date-time"),
            "intensity": _integer("How strong, 0-10", maximum=10),
            "trigger": _personal(_string("What set it off, if said", maxLength=200)),
            "coping": _personal(_string("What the member did about it, if said", maxLength=200)),
            "outcome": _enum("How it ended, so far", URGE_OUTCOMES),
        },
        required=(*IDS, "at", "intensity", "outcome"),
        example_data={**_IDS, "urge_id": "6f1d2c3b-9e8a-4b7c-8d6e-5f4a3b2c1d0e", "at": "2026-11-21T01:40:00Z",
                      "intensity": 8, "trigger": "Saw their photo", "coping": "Called my sister",
                      "outcome": "passed"},
        example_event_id="0b7e3c52-1f0a-4d7e-9a51-6c2d8e4f1a18",
        example_sequence=31,
        example_timestamp="2026-11-21T01:42:10Z",
    ),
    EventType(
        type="member.sos",
        description="The member asked for help now. Sent within a second. Their message goes to the coach's feed "
                    "only, never into a webhook.",
        fields={
            **IDS,
            "coach_id": _nullable(_string("The coach looking after the commitment, if any", maxLength=128)),
        },
        required=IDS,
        example_data={**_IDS, "coach_id": "coach-17"},
        example_event_id="0b7e3c52-1f0a-4d7e-9a51-6c2d8e4f1a19",
        example_sequence=32,
        example_timestamp="2026-11-21T02:05:31Z",
    ),
    EventType(
        type="pause.scheduled",
        description="Days were excused (a funeral, a hospital stay): no check-in is expected on them, none is "
                    "missed, and they neither break a run nor add to it.",
        fields={
            **IDS,
            "pause_id": _string("The pause", minLength=1),
            "from": _date("First excused day"),
            "to": _date("Last excused day"),
            "reason": _personal(_string("Why, if said", maxLength=200)),
        },
        required=(*IDS, "pause_id", "from", "to"),
        example_data={**_IDS, "pause_id": "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f", "from": "2026-11-24",
                      "to": "2026-11-26", "reason": "Hospital stay"},
        example_event_id="0b7e3c52-1f0a-4d7e-9a51-6c2d8e4f1a20",
        example_sequence=33,
        example_timestamp="2026-11-22T10:00:00Z",
    ),
    EventType(
        type="pause.cancelled",
        description="A pause was cancelled: its days are expected to be reported again.",
        fields={
            **IDS,
            "pause_id": _string("The pause", minLength=1),
            "from": _date("First day it excused"),
            "to": _date("Last day it excused"),
        },
        required=(*IDS, "pause_id"),
        example_data={**_IDS, "pause_id": "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f", "from": "2026-11-24",
                      "to": "2026-11-26"},
        example_event_id="0b7e3c52-1f0a-4d7e-9a51-6c2d8e4f1a21",
        example_sequence=34,
        example_timestamp="2026-11-23T08:15:00Z",
    ),
)

CATALOGUE: dict[str, EventType] = {entry.type: entry for entry in EVENT_TYPES}


def describe_all() -> list[dict[str, Any]]:
    """``GET /v1/event-types``: every type with its description, schema and example."""
    return [entry.describe() for entry in EVENT_TYPES]


# -- OpenAPI -------------------------------------------------------------------------------------

#: The component of any webhook body (one of the types' bodies, told apart by ``type``).
PAYLOAD_COMPONENT = "WebhookPayload"


def ref(component: str) -> Schema:
    return {"$ref": f"#/components/schemas/{component}"}


def openapi_schema(schema: Any) -> Any:
    """A JSON Schema (2020-12) as an OpenAPI 3.0 schema object: ``["T", "null"]`` becomes
    ``T`` with ``nullable``, ``$schema`` goes (OpenAPI 3.0 has one dialect)."""
    if isinstance(schema, list):
        return [openapi_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    converted: Schema = {}
    for key, value in schema.items():
        if key == "$schema":
            continue
        if key == "type" and isinstance(value, list):
            types = [t for t in value if t != "null"]
            if len(types) != 1:
                raise ValueError(f"OpenAPI 3.0 cannot say type {value}")
            converted["type"] = types[0]
            if "null" in value:
                converted["nullable"] = True
        elif key == "properties":
            converted[key] = {name: openapi_schema(field) for name, field in value.items()}
        elif key in ("items", "anyOf", "oneOf", "allOf", "not"):
            converted[key] = openapi_schema(value)
        else:
            converted[key] = copy.deepcopy(value)
    return converted


def openapi_components() -> dict[str, Schema]:
    """The catalogue as OpenAPI 3.0 components: each type's data (``<Type>Data``), each
    type's webhook body (``<Type>Webhook``, with its example) and `PAYLOAD_COMPONENT`."""
    components: dict[str, Schema] = {}
    for entry in EVENT_TYPES:
        components[entry.component] = openapi_schema(entry.schema)
        components[entry.webhook_component] = {
            "type": "object",
            "description": f"The webhook body of {entry.type}: {entry.description}",
            "properties": {
                "type": {"type": "string", "enum": [entry.type]},
                "timestamp": {"type": "string", "format": "date-time", "description": "When the event occurred"},
                "data": ref(entry.component),
                "test": {"type": "boolean", "description": "Present (true) only on a test event"},
            },
            "required": ["type", "timestamp", "data"],
            "example": entry.example,
        }
    components[PAYLOAD_COMPONENT] = {
        "description": "A webhook body (Standard Webhooks): its type says the schema of its data",
        "oneOf": [ref(entry.webhook_component) for entry in EVENT_TYPES],
        "discriminator": {
            "propertyName": "type",
            "mapping": {entry.type: f"#/components/schemas/{entry.webhook_component}" for entry in EVENT_TYPES},
        },
    }
    return components


def register(spec: Any) -> None:
    """Add `openapi_components` to an apispec ``APISpec`` (any service's document)."""
    for name, component in openapi_components().items():
        spec.components.schema(name, component=component)
