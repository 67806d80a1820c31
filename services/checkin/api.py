"""HTTP API of the check-in service: check-ins, streaks and runs, settings, a coach's clients.

Views are thin: parse (the schema), authorize and call a handler, shape the answer. Every
error a view can answer is documented on it (problem+json, see `_problem`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from services.checkin import handlers, queries
from services.checkin.access import authorized, may_read_coach, tenant_of, visible_commitment
from services.checkin.domain import CHANNELS, Outcome, run_history
from services.checkin.domain.settings import MAX_BACKDATE_DAYS, MAX_GRACE_HOURS
from shared.db import read
from shared.errors import NotFound, PreconditionFailed, ValidationFailed
from shared.problems import PROBLEM_JSON
from shared.web import ProblemSchema, context, engine, etag, if_match, now, principal

checkins_blp = Blueprint("check-ins", __name__, url_prefix="/v1", description="Daily check-ins and streaks")
settings_blp = Blueprint("settings", __name__, url_prefix="/v1", description="Tenant streak settings (admin)")
coaches_blp = Blueprint("coaches", __name__, url_prefix="/v1", description="A coach's clients at a glance")

# Examples of the OpenAPI documents (shared.openapi composes each operation's from its fields').
COMMITMENT_ID = "73086767-b067-433e-aebd-e40f286c24eb"
MEMBER_ID = "member-42"
TODAY = "2027-03-10"
AT = "2027-03-10T20:15:00+00:00"


# -- schemas ---------------------------------------------------------------------------------


class SlipSchema(Schema):
    channel = fields.String(required=True, validate=validate.OneOf(sorted(CHANNELS)), metadata={"example": "texts"})
    initiated_by = fields.String(required=True, validate=validate.OneOf(["me", "them"]), metadata={"example": "them"})


class CheckInBody(Schema):
    """A day's report. ``slip`` is required exactly when the outcome is slipped."""

    outcome = fields.String(required=True, validate=validate.OneOf([o.value for o in Outcome]),
                            metadata={"example": "kept"})
    urge = fields.Integer(strict=True, allow_none=True, load_default=None, validate=validate.Range(0, 10),
                          metadata={"example": 3})
    mood = fields.Integer(strict=True, allow_none=True, load_default=None, validate=validate.Range(1, 5),
                          metadata={"example": 4})
    slip = fields.Nested(SlipSchema, allow_none=True, load_default=None, metadata={"example": None})
    note = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=2000),
                         metadata={"example": "walked past the cafe and kept going"})


class NewCheckInBody(CheckInBody):
    date = fields.Date(
        load_default=None, metadata={"description": "local date; default today in the commitment's zone",
                                     "example": TODAY}
    )


def _problem(blueprint: Blueprint, status: int, description: str):  # type: ignore[no-untyped-def]
    """Document an error answer of a view: problem+json with what it means there."""
    return blueprint.alt_response(status, schema=ProblemSchema, content_type=PROBLEM_JSON, description=description)


ETAG_HEADER = {"ETag": {"description": "the day's version (`version`), quoted: send it as If-Match",
                        "schema": {"type": "string"}}}
IF_MATCH = {"in": "header", "name": "If-Match", "required": False, "schema": {"type": "string"},
            "description": "the day's ETag the change was decided on; another version answers 412"}


# Instances, not classes: webargs builds a new schema (copying every field) per request for a
# class, and a check-in is the request this service answers most.
NEW_CHECK_IN = NewCheckInBody()
CHECK_IN = CheckInBody()


class CheckInOut(Schema):
    commitment_id = fields.String(metadata={"example": COMMITMENT_ID})
    member_id = fields.String(metadata={"example": MEMBER_ID})
    date = fields.Date(metadata={"example": TODAY})
    outcome = fields.String(metadata={"example": "kept"})
    urge = fields.Integer(allow_none=True, metadata={"example": 3})
    mood = fields.Integer(allow_none=True, metadata={"example": 4})
    slip = fields.Nested(SlipSchema, allow_none=True, metadata={"example": None})
    note = fields.String(allow_none=True, metadata={"description": "private; not shown to coaches",
                                                    "example": "walked past the cafe and kept going"})
    version = fields.Integer(metadata={"description": "stream version of the event that stands for the day; also "
                                                      "the ETag, to send as If-Match", "example": 13})
    recorded_at = fields.DateTime(metadata={"example": AT})
    updated_at = fields.DateTime(metadata={"example": AT})


class CheckInList(Schema):
    items = fields.List(fields.Nested(CheckInOut))


class RangeQuery(Schema):
    from_ = fields.Date(data_key="from", load_default=None)
    to = fields.Date(load_default=None)

    @validates_schema
    def _ordered(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("from_") and data.get("to") and data["from_"] > data["to"]:
            raise ValidationError("must not be after 'to'", "from")


def _iso_date(example: str | None, **kwargs: Any) -> fields.String:
    # The streak document is built by the domain with ISO strings already.
    return fields.String(metadata={"format": "date", "example": example}, **kwargs)


class StreakOut(Schema):
    commitment_id = fields.String(metadata={"example": COMMITMENT_ID})
    as_of = _iso_date(TODAY)
    policy = fields.String(metadata={"example": "since_last_slip"})
    current_days = fields.Integer(metadata={"example": 12})
    longest_days = fields.Integer(metadata={"example": 12})
    kept_days = fields.Integer(metadata={"example": 11})
    slipped_days = fields.Integer(metadata={"example": 0})
    unreported_days = fields.Integer(metadata={"example": 1})
    streak_started_on = _iso_date("2027-02-27", allow_none=True)
    last_slip_on = _iso_date(None, allow_none=True)
    last_check_in_on = _iso_date(TODAY, allow_none=True)
    milestones_reached = fields.List(fields.Integer(), metadata={"example": [1, 3, 7]})
    next_milestone = fields.Integer(allow_none=True, metadata={"example": 14})
    counted_through = _iso_date(TODAY, allow_none=True)


class RunOut(Schema):
    started_on = _iso_date("2027-02-27")
    ended_on = fields.String(allow_none=True, metadata={"format": "date", "description": "the run's last day; "
                                                        "null while it goes on", "example": None})
    days = fields.Integer(metadata={"description": "the run's length (ended_on or the last counted day - "
                                                   "started_on + 1)", "example": 12})
    ended_by = fields.String(allow_none=True, metadata={
        "enum": ["slip", "unreported", "commitment_end", None],
        "description": "what ended the run: a slip the day after it; under the `verified` policy an unreported "
                       "day; the commitment's end (its last day is over, or it was ended); null while it goes on",
                       "example": None})
    reported_days = fields.Integer(metadata={"description": "days of the run reported kept (the others were "
                                                            "unreported, counted as kept under since_last_slip)",
                                                            "example": 11})
    milestones = fields.List(fields.Integer(), metadata={
        "description": "the thresholds this run reached: the milestones streak.milestone_reached announced for it "
                       "(keyed by started_on = run_started_on), minus those streak.milestone_revoked took back",
                       "example": [1, 3, 7]})


class RunsOut(Schema):
    items = fields.List(fields.Nested(RunOut), metadata={"description": "oldest first: the runs longest_days is "
                                                                         "taken from"})


class RiskSettings(Schema):
    slip_window_days = fields.Integer(strict=True, validate=validate.Range(1, 365), metadata={"example": 7})
    high_urge = fields.Integer(strict=True, validate=validate.Range(0, 10), metadata={"example": 8})
    high_urge_count = fields.Integer(strict=True, validate=validate.Range(1, 30), metadata={"example": 2})
    urge_window_check_ins = fields.Integer(strict=True, validate=validate.Range(1, 30), metadata={"example": 3})
    silent_days = fields.Integer(strict=True, validate=validate.Range(1, 365), metadata={"example": 2})


class SettingsBody(Schema):
    """Every field optional: what is left out keeps its current value; at least one setting
    is named (an empty PUT is a client's mistake, not a change)."""

    streak_policy = fields.String(validate=validate.OneOf(["since_last_slip", "verified"]),
                                  metadata={"example": "since_last_slip"})
    milestones = fields.List(
        fields.Integer(strict=True, validate=validate.Range(1, 3650)), validate=validate.Length(1, 50),
        metadata={"example": [1, 3, 7, 14, 30, 60, 90, 180, 365]}
    )
    backdate_days = fields.Integer(strict=True, validate=validate.Range(0, MAX_BACKDATE_DAYS), metadata={"example": 7})
    missed_check_in_grace_hours = fields.Integer(strict=True, validate=validate.Range(0, MAX_GRACE_HOURS),
                                                 metadata={"example": 12})
    at_risk = fields.Nested(RiskSettings)
    # What GET returned can be sent back as it is: its version is the one the change is based
    # on, compared like If-Match (412 when the settings changed since).
    version = fields.Integer(strict=True, validate=validate.Range(0), metadata={
        "description": "optional: the version this change is based on (as If-Match); 412 when it is not "
                       "the current one", "example": 3})

    @validates_schema
    def _names_a_setting(self, data: dict[str, Any], **_: Any) -> None:
        if not data.keys() - {"version"}:
            raise ValidationError("name at least one setting to change")


class SettingsOut(SettingsBody):
    version = fields.Integer(metadata={"description": "the settings' version, also the ETag", "example": 3})


class DayState(Schema):
    date = fields.Date(metadata={"example": TODAY})
    state = fields.String(metadata={"description": "kept | slipped | unreported", "example": "kept"})


class UrgeOut(Schema):
    date = fields.Date(metadata={"example": TODAY})
    urge = fields.Integer(metadata={"example": 3})


class ClientCommitmentOut(Schema):
    commitment_id = fields.String(metadata={"example": COMMITMENT_ID})
    contact_label = fields.String(metadata={"example": "Alex (ex)"})
    relationship = fields.String(metadata={"example": "romantic"})
    status = fields.String(metadata={"example": "active"})
    streak = fields.Nested(StreakOut)
    last_check_in_on = fields.Date(allow_none=True, metadata={"example": TODAY})
    last_30_days = fields.List(fields.Nested(DayState))
    recent_urges = fields.List(fields.Nested(UrgeOut))
    at_risk = fields.Boolean(metadata={"example": False})
    reasons = fields.List(fields.String(), metadata={"example": []})


class ClientOut(Schema):
    member_id = fields.String(metadata={"example": MEMBER_ID})
    at_risk = fields.Boolean(metadata={"example": False})
    reasons = fields.List(fields.String(), metadata={"example": []})
    commitments = fields.List(fields.Nested(ClientCommitmentOut))


class ClientsOut(Schema):
    coach_id = fields.String(metadata={"example": "coach-maria"})
    as_of = fields.DateTime(metadata={"example": AT})
    items = fields.List(fields.Nested(ClientOut))


# -- helpers -------------------------------------------------------------------------------------


def check_in_json(row: Mapping[str, Any], *, with_note: bool) -> dict[str, Any]:
    """A check-in row (a stored row's mapping, or the row a command wrote) as the API shows it."""
    return {
        "commitment_id": row["commitment_id"],
        "member_id": row["member_id"],
        "date": row["day"],
        "outcome": row["outcome"],
        "urge": row["urge"],
        "mood": row["mood"],
        "slip": {"channel": row["slip_channel"], "initiated_by": row["slip_initiated_by"]}
        if row["slip_channel"] else None,
        "note": row["note"] if with_note else None,
        "version": row["stream_version"],
        "recorded_at": row["recorded_at"],
        "updated_at": row["updated_at"],
    }


def parse_day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValidationFailed("date", "must be a calendar date (YYYY-MM-DD)") from None


# -- check-ins -----------------------------------------------------------------------------------


@checkins_blp.route("/commitments/<commitment_id>/check-ins")
class CheckIns(MethodView):
    @checkins_blp.arguments(NEW_CHECK_IN)
    @checkins_blp.response(201, CheckInOut, headers=ETAG_HEADER)
    @_problem(checkins_blp, 404, "no such commitment (or not the caller's)")
    @_problem(checkins_blp, 409, "the day already has a check-in (correct it with PUT), or the commitment is "
                                 "completed or ended and the day is after its last day")
    @_problem(checkins_blp, 422, "a rule is broken: `errors` names every field (a date in the future, before the "
                                 "start, after the end, older than the backdating window; a slip missing or "
                                 "refused; urge, mood, note out of range)")
    def post(self, body: dict[str, Any], commitment_id: str) -> tuple[dict[str, Any], int, dict[str, str]]:
        """Record a day's check-in (date defaults to today in the commitment's zone).

        A completed or ended commitment still takes reports of its own days (up to its last
        day) within the backdating window."""
        row = handlers.record_check_in(engine(), principal(), context(), commitment_id, body, now=now())
        location = f"/v1/commitments/{commitment_id}/check-ins/{row['day'].isoformat()}"
        return check_in_json(row, with_note=True), 201, {"Location": location, "ETag": etag(row["stream_version"])}

    @checkins_blp.arguments(RangeQuery, location="query")
    @checkins_blp.response(200, CheckInList)
    @_problem(checkins_blp, 404, "no such commitment (or not the caller's)")
    @_problem(checkins_blp, 422, "`from` is after `to`, or not a date")
    def get(self, query: dict[str, Any], commitment_id: str) -> dict[str, Any]:
        """The check-ins of a date range (inclusive), oldest first."""
        caller = principal()
        with read(engine()) as conn:
            commitment = visible_commitment(conn, caller, commitment_id, write=False)
            rows = queries.check_in_rows(conn, commitment.commitment_id, query.get("from_"), query.get("to"))
        return {"items": [check_in_json(row._mapping, with_note=caller.role != "coach") for row in rows]}


@checkins_blp.route("/commitments/<commitment_id>/check-ins/<day>")
class CheckInOfDay(MethodView):
    @checkins_blp.response(200, CheckInOut, headers=ETAG_HEADER)
    @_problem(checkins_blp, 404, "no such commitment, or the day has no check-in")
    @_problem(checkins_blp, 422, "the date is not a calendar date (YYYY-MM-DD)")
    def get(self, commitment_id: str, day: str) -> tuple[dict[str, Any], int, dict[str, str]]:
        """One day's check-in, with its version as ETag."""
        caller = principal()
        parsed = parse_day(day)
        with read(engine()) as conn:
            commitment = visible_commitment(conn, caller, commitment_id, write=False)
            row = queries.check_in_row(conn, commitment.commitment_id, parsed)
        if row is None:
            raise NotFound("no check-in for that date")
        return check_in_json(row._mapping, with_note=caller.role != "coach"), 200, {"ETag": etag(row.stream_version)}

    @checkins_blp.arguments(CHECK_IN)
    @checkins_blp.doc(parameters=[IF_MATCH])
    @checkins_blp.response(200, CheckInOut, headers=ETAG_HEADER)
    @_problem(checkins_blp, 404, "no such commitment, or the day has no check-in (record it with POST)")
    @_problem(checkins_blp, 409, "the commitment is completed or ended and the day is after its last day")
    @_problem(checkins_blp, 412, "If-Match names another version of the day's check-in: read it again")
    @_problem(checkins_blp, 422, "a rule is broken: `errors` names every field (as for POST)")
    def put(self, body: dict[str, Any], commitment_id: str, day: str) -> tuple[dict[str, Any], int, dict[str, str]]:
        """Replace a day's report (a correction). Honours If-Match (the day's ETag)."""
        parsed = parse_day(day)
        row = handlers.correct_check_in(engine(), principal(), context(), commitment_id, parsed, body, now=now(),
                                        if_match=if_match())
        return check_in_json(row, with_note=True), 200, {"ETag": etag(row["stream_version"])}

    @checkins_blp.doc(parameters=[IF_MATCH])
    @checkins_blp.response(204)
    @_problem(checkins_blp, 404, "no such commitment, or the day has no check-in")
    @_problem(checkins_blp, 409, "the commitment is completed or ended and the day is after its last day")
    @_problem(checkins_blp, 412, "If-Match names another version of the day's check-in: read it again")
    @_problem(checkins_blp, 422, "the date is not a calendar date, or is older than the backdating window")
    def delete(self, commitment_id: str, day: str) -> tuple[str, int]:
        """Withdraw a day's report: the day becomes unreported (event `checkin.withdrawn`); the
        streak, the runs and the milestones follow. Honours If-Match (the day's ETag)."""
        parsed = parse_day(day)
        handlers.withdraw_check_in(engine(), principal(), context(), commitment_id, parsed, now=now(),
                                   if_match=if_match())
        return "", 204


@checkins_blp.route("/commitments/<commitment_id>/streak")
class StreakView(MethodView):
    @checkins_blp.response(200, StreakOut)
    @_problem(checkins_blp, 404, "no such commitment (or not the caller's)")
    def get(self, commitment_id: str) -> dict[str, Any]:
        """The streak as of today in the commitment's zone (CONTRACT's streak rules)."""
        with read(engine()) as conn:
            commitment = visible_commitment(conn, principal(), commitment_id, write=False)
            return queries.streak_document(conn, commitment, now())


@checkins_blp.route("/commitments/<commitment_id>/runs")
class RunsView(MethodView):
    @checkins_blp.response(200, RunsOut)
    @_problem(checkins_blp, 404, "no such commitment (or not the caller's)")
    def get(self, commitment_id: str) -> dict[str, Any]:
        """Every run of the streak as of today, oldest first: the runs `longest_days` is taken
        from, each with the milestones it reached (what the milestone events add up to)."""
        at = now()
        with read(engine()) as conn:
            inputs = queries.command_inputs(conn, commitment_id)
            commitment = authorized(principal(), None if inputs is None else inputs.commitment, write=False)
            assert inputs is not None
            state = queries.decision_state(conn, inputs)
        return {"items": run_history(commitment, state, inputs.settings, at)}


# -- settings --------------------------------------------------------------------------------------


@settings_blp.route("/settings")
class SettingsView(MethodView):
    @settings_blp.response(200, SettingsOut)
    def get(self) -> tuple[dict[str, Any], int, dict[str, str]]:
        """The tenant's streak settings (defaults until first changed)."""
        tenant_id = tenant_of(principal())
        with read(engine()) as conn:
            settings, version = queries.load_settings(conn, tenant_id)
        return {**settings.as_json(), "version": version}, 200, {"ETag": etag(version)}

    @settings_blp.arguments(SettingsBody)
    @settings_blp.response(200, SettingsOut)
    def put(self, body: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, str]]:
        """Change settings (admin). A new policy or milestone list re-projects every streak.
        The same settings again change nothing (no event, the same version)."""
        based_on, header = body.pop("version", None), if_match()
        if based_on is not None and header is not None and based_on != header:
            raise PreconditionFailed(None, "If-Match and the body's version name different versions")
        settings, version = handlers.update_settings(
            engine(), principal(), context(), body, now=now(), if_match=header if header is not None else based_on
        )
        return {**settings.as_json(), "version": version}, 200, {"ETag": etag(version)}


# -- a coach's clients -------------------------------------------------------------------------------


@coaches_blp.route("/coaches/<coach_id>/clients")
class CoachClients(MethodView):
    @coaches_blp.response(200, ClientsOut)
    def get(self, coach_id: str) -> dict[str, Any]:
        """Each client of the coach with each commitment's streak, last 30 days, urges and risk."""
        tenant_id = may_read_coach(principal(), coach_id)
        at = now()
        with read(engine()) as conn:
            items = queries.coach_clients(conn, tenant_id, coach_id, at)
        return {"coach_id": coach_id, "as_of": at, "items": items}


BLUEPRINTS = [checkins_blp, settings_blp, coaches_blp]
