"""HTTP API of the check-in service: check-ins, streaks and runs, settings, a coach's clients,
a member's export.

Views are thin: parse (the schema), authorize and call a handler, shape the answer. Every
error a view can answer is documented on it (problem+json, see `_problem`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy import Connection, Row

from services.checkin import handlers, members, queries
from services.checkin.access import authorized, may_read_coach, tenant_of, visible_commitment
from services.checkin.domain import CHANNELS, KnownCommitment, Outcome, UrgeOutcome, run_history
from services.checkin.domain.settings import MAX_BACKDATE_DAYS, MAX_GRACE_HOURS
from services.checkin.domain.state import URGES_KEPT
from shared import keyring
from shared.auth import Principal
from shared.db import read
from shared.errors import Forbidden, NotFound, PreconditionFailed, ValidationFailed
from shared.problems import PROBLEM_JSON, Problem
from shared.web import ProblemSchema, context, engine, etag, if_match, now, principal, require_role

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


class ContactAttemptSchema(Schema):
    channel = fields.String(required=True, validate=validate.OneOf(sorted(CHANNELS)), metadata={"example": "calls"})
    answered = fields.Boolean(load_default=False, metadata={
        "description": "always false: an answered contact is a slip", "example": False})


class NecessaryContactSchema(Schema):
    exception = fields.Integer(strict=True, required=True, validate=validate.Range(0), metadata={
        "description": "the index of one of the commitment's `exceptions`", "example": 0})
    note = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=2000), metadata={
        "description": "private to the member (sealed); not shown to coaches", "example": "handover at school"})


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
    contact_attempts = fields.List(fields.Nested(ContactAttemptSchema), load_default=list,
                                   validate=validate.Length(max=50), metadata={
        "description": "a kept day only: the other person reached out and the member held firm (a held-firm day)",
        "example": [{"channel": "calls", "answered": False}]})
    necessary_contact = fields.Nested(NecessaryContactSchema, allow_none=True, load_default=None, metadata={
        "description": "a kept day only: contact one of the commitment's exceptions allowed (the day stays kept)",
        "example": None})


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
    contact_attempts = fields.List(fields.Nested(ContactAttemptSchema), metadata={
        "example": [{"channel": "calls", "answered": False}]})
    necessary_contact = fields.Nested(NecessaryContactSchema, allow_none=True, metadata={
        "description": "its note is not shown to coaches", "example": None})
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
    excused_days = fields.Integer(metadata={"description": "days a pause excused (not reported): they neither "
                                                           "break a run nor add to it", "example": 0})
    held_firm_days = fields.Integer(metadata={"description": "kept days the other person reached out on and the "
                                                             "member held firm", "example": 2})
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
    urge_log_window_days = fields.Integer(strict=True, validate=validate.Range(1, 365), metadata={
        "description": "the urges logged on the last N days are read by the three rules below", "example": 7})
    # At most URGES_KEPT: the decision state keeps the latest that many urges, and the rules
    # must read the same urges whether they run in a command or in a coach's view.
    frequent_urges = fields.Integer(strict=True, validate=validate.Range(0, URGES_KEPT), metadata={
        "description": "this many urges in the window is a reason (`frequent_urges`); 0: never", "example": 5})
    rising_urges = fields.Integer(strict=True, validate=validate.Range(0, URGES_KEPT), metadata={
        "description": "the latest this many urges, each stronger than the one before, is a reason "
                       "(`rising_urges`); 0 or 1: never", "example": 3})
    urge_reached_out = fields.Integer(strict=True, validate=validate.Range(0, URGES_KEPT), metadata={
        "description": "this many urges that ended in reaching out is a reason (`urge_reached_out`); 0: never",
        "example": 1})


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
    reminder_local_time = fields.String(allow_none=True, validate=validate.Regexp(r"^([01][0-9]|2[0-3]):[0-5][0-9]$"),
                                        metadata={"description": "HH:MM: at that time in each member's zone, a day "
                                                  "not reported yet gets `checkin.reminder_due` (once); null: no "
                                                  "reminders", "example": "20:00"})
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
    state = fields.String(metadata={"description": "kept | slipped | unreported | excused (paused, not reported)",
                                    "example": "kept"})


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
        "contact_attempts": row.get("contact_attempts") or [],
        "necessary_contact": _necessary_contact(row.get("necessary_contact"), with_note=with_note),
        "version": row["stream_version"],
        "recorded_at": row["recorded_at"],
        "updated_at": row["updated_at"],
    }


def _necessary_contact(value: Mapping[str, Any] | None, *, with_note: bool) -> dict[str, Any] | None:
    if value is None:
        return None
    return {"exception": value["exception"], "note": value.get("note") if with_note else None}


def stored_check_ins_json(conn: Connection, caller: Principal, commitment: KnownCommitment,
                          rows: Iterable[Row[Any]]) -> list[dict[str, Any]]:
    """Stored check-in rows as the API shows them to `caller`: notes (a day's, its necessary
    contact's: sealed at rest, services.checkin.personal) opened for the member and admins,
    never shown to a coach."""
    rows = list(rows)
    if caller.role == "coach":
        return [check_in_json(row._mapping, with_note=False) for row in rows]
    return opened(conn, commitment.tenant_id, [check_in_json(row._mapping, with_note=True) for row in rows])


def opened(conn: Connection, tenant_id: str, document: Any) -> Any:
    """`document` (as the API shows it to the member or an admin) with the personal values
    in it, sealed at rest, opened with the tenant's keys."""
    opener = keyring.Opener(conn, tenant_id)
    opener.prefetch([document])
    return opener.open_all(document)


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
            return {"items": stored_check_ins_json(conn, caller, commitment, rows)}


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
            [shown] = stored_check_ins_json(conn, caller, commitment, [row])
        return shown, 200, {"ETag": etag(row.stream_version)}

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


# -- between check-ins (CONTRACT v1.1) -------------------------------------------------------------

between_blp = Blueprint("between check-ins", __name__, url_prefix="/v1",
                        description="Pauses, urges and SOS between the daily check-ins")
PAUSE_ID = "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"
URGE_ID = "6f1d2c3b-9e8a-4b7c-8d6e-5f4a3b2c1d0e"


class PauseBody(Schema):
    from_ = fields.Date(data_key="from", required=True, metadata={"description": "first excused day (local)",
                                                                 "example": "2027-03-12"})
    to = fields.Date(required=True, metadata={"description": "last excused day (local), at most 30 days after "
                                                             "`from` counted inclusively", "example": "2027-03-14"})
    reason = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=200), metadata={
        "description": "private to the member (sealed); not shown to coaches", "example": "Hospital stay"})


class PauseOut(Schema):
    pause_id = fields.String(metadata={"example": PAUSE_ID})
    commitment_id = fields.String(metadata={"example": COMMITMENT_ID})
    member_id = fields.String(metadata={"example": MEMBER_ID})
    from_ = fields.Date(data_key="from", metadata={"example": "2027-03-12"})
    to = fields.Date(metadata={"example": "2027-03-14"})
    reason = fields.String(allow_none=True, metadata={"description": "hidden from coaches", "example": "Hospital stay"})
    scheduled_at = fields.DateTime(metadata={"example": AT})
    cancelled_at = fields.DateTime(allow_none=True, metadata={"description": "set once cancelled (DELETE)",
                                                              "example": None})


class PauseList(Schema):
    items = fields.List(fields.Nested(PauseOut), metadata={"description": "by first day, cancelled ones too"})


def _pause_json(row: Mapping[str, Any], *, with_reason: bool) -> dict[str, Any]:
    # member_id names whose answer this is: a kept idempotent answer is then sealed under
    # that member's key (shared.idempotency), so their erasure leaves none readable.
    return {"pause_id": row["pause_id"], "commitment_id": row["commitment_id"], "member_id": row["member_id"],
            "from_": row["first_day"],
            "to": row["last_day"], "reason": row["reason"] if with_reason else None,
            "scheduled_at": row["scheduled_at"], "cancelled_at": row["cancelled_at"]}


@between_blp.route("/commitments/<commitment_id>/pauses")
class Pauses(MethodView):
    @between_blp.arguments(PauseBody)
    @between_blp.response(201, PauseOut)
    @_problem(between_blp, 404, "no such commitment (or not the caller's)")
    @_problem(between_blp, 409, "the commitment is completed or ended")
    @_problem(between_blp, 422, "a rule is broken: `errors` names the field (`from` older than the backdating "
                                "window, before the start, more than 365 days ahead or overlapping another pause; "
                                "`to` before `from`, more "
                                "than 30 days after it or after the end; `reason` too long)")
    def post(self, body: dict[str, Any], commitment_id: str) -> tuple[dict[str, Any], int, dict[str, str]]:
        """Pause: excuse the days `from`..`to` (a funeral, a hospital stay). No check-in is
        expected on them, none is missed, they neither break a run nor add to it and are
        counted as `excused_days` (event `pause.scheduled`). A report of a paused day still
        stands."""
        event = handlers.schedule_pause(engine(), principal(), context(), commitment_id, body, now=now())
        pause_id = event.data["pause_id"]
        # The reason as the caller sent it (the event holds it sealed).
        row = {"pause_id": pause_id, "commitment_id": commitment_id, "member_id": event.data["member_id"],
               "first_day": body["from_"],
               "last_day": body["to"], "reason": body.get("reason"), "scheduled_at": event.recorded_at,
               "cancelled_at": None}
        location = f"/v1/commitments/{commitment_id}/pauses/{pause_id}"
        return _pause_json(row, with_reason=True), 201, {"Location": location}

    @between_blp.response(200, PauseList)
    @_problem(between_blp, 404, "no such commitment (or not the caller's)")
    def get(self, commitment_id: str) -> dict[str, Any]:
        """The commitment's pauses, by first day (cancelled ones with `cancelled_at`)."""
        caller = principal()
        with read(engine()) as conn:
            commitment = visible_commitment(conn, caller, commitment_id, write=False)
            rows = queries.pause_rows(conn, commitment.commitment_id)
            items = [_pause_json(r._mapping, with_reason=caller.role != "coach") for r in rows]
            return {"items": opened(conn, commitment.tenant_id, items)}


@between_blp.route("/commitments/<commitment_id>/pauses/<pause_id>")
class PauseOfId(MethodView):
    @between_blp.response(200, PauseOut)
    @_problem(between_blp, 404, "no such commitment, or no such pause")
    def get(self, commitment_id: str, pause_id: str) -> dict[str, Any]:
        """One pause."""
        caller = principal()
        with read(engine()) as conn:
            commitment = visible_commitment(conn, caller, commitment_id, write=False)
            row = queries.pause_row(conn, commitment.commitment_id, pause_id)
            if row is None:
                raise NotFound("no such pause")
            return opened(conn, commitment.tenant_id, _pause_json(row._mapping, with_reason=caller.role != "coach"))

    @between_blp.response(204)
    @_problem(between_blp, 404, "no such commitment, or no such pause (or it was cancelled already)")
    @_problem(between_blp, 409, "the commitment is completed or ended, or the pause began before the backdating "
                                "window (its days stay excused)")
    def delete(self, commitment_id: str, pause_id: str) -> tuple[str, int]:
        """Cancel a pause: its days are expected again (event `pause.cancelled`); the streak,
        the runs and the milestones follow."""
        handlers.cancel_pause(engine(), principal(), context(), commitment_id, pause_id, now=now())
        return "", 204


class UrgeBody(Schema):
    at = fields.AwareDateTime(load_default=None, metadata={"description": "when it came (default now)",
                                                           "example": "2027-03-10T01:40:00+00:00"})
    intensity = fields.Integer(strict=True, required=True, validate=validate.Range(0, 10), metadata={"example": 8})
    trigger = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=200),
                            metadata={"description": "personal (sealed)", "example": "Saw their photo"})
    coping = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=200),
                           metadata={"description": "personal (sealed)", "example": "Called my sister"})
    outcome = fields.String(required=True, validate=validate.OneOf([o.value for o in UrgeOutcome]),
                            metadata={"example": "passed"})
    note = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=2000), metadata={
        "description": "private to the member: in no event, not shown to coaches", "example": "it passed by noon"})


class UrgeLogOut(Schema):
    urge_id = fields.String(metadata={"example": URGE_ID})
    commitment_id = fields.String(metadata={"example": COMMITMENT_ID})
    member_id = fields.String(metadata={"example": MEMBER_ID})
    at = fields.DateTime(metadata={"example": "2027-03-10T01:40:00+00:00"})
    intensity = fields.Integer(metadata={"example": 8})
    trigger = fields.String(allow_none=True, metadata={"description": "hidden from coaches",
                                                       "example": "Saw their photo"})
    coping = fields.String(allow_none=True, metadata={"description": "hidden from coaches",
                                                      "example": "Called my sister"})
    outcome = fields.String(metadata={"example": "passed"})
    note = fields.String(allow_none=True, metadata={"description": "hidden from coaches",
                                                    "example": "it passed by noon"})
    recorded_at = fields.DateTime(metadata={"example": AT})


class UrgeList(Schema):
    items = fields.List(fields.Nested(UrgeLogOut), metadata={"description": "newest first"})
    next_cursor = fields.String(allow_none=True, metadata={"description": "the next page's `cursor`; null on the "
                                                                          "last page", "example": None})


class UrgeQuery(RangeQuery):
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 200))
    cursor = fields.String(load_default=None)


def _urge_json(row: Mapping[str, Any], *, with_personal: bool) -> dict[str, Any]:
    """An urge as the API answers it; a coach reads its level, time and outcome, not the
    member's own words (trigger, coping, note), as with check-in notes and pause reasons."""
    def personal(name: str) -> Any:
        return row[name] if with_personal else None

    return {"urge_id": row["urge_id"], "commitment_id": row["commitment_id"], "member_id": row["member_id"],
            "at": row["at"], "intensity": row["intensity"], "trigger": personal("trigger"),
            "coping": personal("coping"), "outcome": row["outcome"], "note": personal("note"),
            "recorded_at": row["recorded_at"]}


@between_blp.route("/commitments/<commitment_id>/urges")
class Urges(MethodView):
    @between_blp.arguments(UrgeBody)
    @between_blp.response(201, UrgeLogOut)
    @_problem(between_blp, 404, "no such commitment (or not the caller's)")
    @_problem(between_blp, 409, "the commitment is completed or ended and the urge came after its last day")
    @_problem(between_blp, 422, "a rule is broken: `errors` names the field (`at` in the future, before the start "
                                "or older than the backdating window; intensity, outcome, lengths)")
    def post(self, body: dict[str, Any], commitment_id: str) -> tuple[dict[str, Any], int]:
        """Log an urge to make contact, between check-ins (event `urge.logged`, without the
        note). Urges feed the at-risk rules: frequent, rising, or ended in reaching out."""
        event = handlers.log_urge(engine(), principal(), context(), commitment_id, body, now=now())
        # Its personal values as the caller sent them (the event and the row hold them sealed).
        row = {**event.data, "at": datetime.fromisoformat(event.data["at"]), "trigger": body.get("trigger"),
               "coping": body.get("coping"), "note": body.get("note"), "recorded_at": event.recorded_at}
        return _urge_json(row, with_personal=True), 201

    @between_blp.arguments(UrgeQuery, location="query")
    @between_blp.response(200, UrgeList)
    @_problem(between_blp, 404, "no such commitment (or not the caller's)")
    @_problem(between_blp, 422, "`from` after `to` or not a date, `limit` out of range, or a `cursor` not "
                                "returned for this list")
    def get(self, query: dict[str, Any], commitment_id: str) -> dict[str, Any]:
        """The urges logged, newest first, of the local days `from`..`to` (inclusive), a page
        at a time (`limit`, `cursor`)."""
        caller = principal()
        with read(engine()) as conn:
            commitment = visible_commitment(conn, caller, commitment_id, write=False)
            rows, next_cursor = queries.urge_page(conn, commitment, query.get("from_"), query.get("to"),
                                                  query["limit"], query.get("cursor"))
            items = [_urge_json(r._mapping, with_personal=caller.role != "coach") for r in rows]
            return {"items": opened(conn, commitment.tenant_id, items), "next_cursor": next_cursor}


class SosBody(Schema):
    message = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=500), metadata={
        "description": "for the coach's feed only (sealed); never in a webhook", "example": "Please call me"})


class SosOut(Schema):
    sos_id = fields.String(metadata={"description": "the `member.sos` event's id", "example": URGE_ID})
    commitment_id = fields.String(metadata={"example": COMMITMENT_ID})
    member_id = fields.String(metadata={"example": MEMBER_ID})
    coach_id = fields.String(allow_none=True, metadata={"example": "coach-maria"})
    sent_at = fields.DateTime(metadata={"example": AT})


@between_blp.route("/commitments/<commitment_id>/sos")
class Sos(MethodView):
    @between_blp.arguments(SosBody)
    @between_blp.response(202, SosOut)
    @_problem(between_blp, 404, "no such commitment (or not the caller's)")
    @_problem(between_blp, 429, "this member sent 5 SOS within 10 minutes: their coach has them; `Retry-After` "
                                "says when the next one goes")
    def post(self, body: dict[str, Any], commitment_id: str) -> tuple[dict[str, Any], int]:
        """Call for help now (the member's token, or an admin): event `member.sos`, on top of
        the coach's feed with the message and in subscribed webhooks without it, within a
        second. At most 5 per member within 10 minutes."""
        try:
            event = handlers.send_sos(engine(), principal(), context(), commitment_id, body.get("message"),
                                      now=now())
        except handlers.SosLimited as limited:
            raise Problem(429, limited.message, headers={"Retry-After": str(limited.retry_after_s)}) from None
        return {"sos_id": str(event.id), "commitment_id": commitment_id, "member_id": event.data["member_id"],
                "coach_id": event.data.get("coach_id"),
                "sent_at": event.occurred_at}, 202


# -- members ---------------------------------------------------------------------------------------

members_blp = Blueprint("members", __name__, url_prefix="/v1/members",
                        description="What this service holds about a member: their check-ins, their streaks")


class ExportOut(Schema):
    member_id = fields.String(metadata={"example": MEMBER_ID})
    service = fields.String(metadata={"example": "checkin"})
    exported_at = fields.String(metadata={"description": "ISO 8601 instant", "example": AT})
    data = fields.Dict(metadata={"description": "everything this service holds about the member, in clear",
                                 "example": {"commitments": [{"commitment_id": COMMITMENT_ID, "check_ins": [
                                     {"date": TODAY, "outcome": "kept", "note": "walked past the cafe"}]}]}})


@members_blp.route("/<member_id>/export")
class MemberExport(MethodView):
    @members_blp.response(200, ExportOut)
    @_problem(members_blp, 403, "a member's token for another member, or a coach's")
    @_problem(members_blp, 404, "this service holds nothing about the member (of the caller's tenant)")
    def get(self, member_id: str) -> dict[str, Any]:
        """Everything this service holds about the member, notes in clear (admin key, or the
        member's own token). ``nocontact members export`` merges it with the other services'."""
        caller = require_role("admin", "member")
        if caller.role == "member" and caller.subject_id != member_id:
            raise Forbidden("a member exports only their own data")
        exported = members.export_member(engine(), tenant_of(caller), member_id, now())
        if exported is None:
            raise NotFound("this service holds nothing about the member")
        return exported


BLUEPRINTS = [checkins_blp, settings_blp, coaches_blp, between_blp, members_blp]
