"""HTTP API of the check-in service: check-ins, streaks, settings, a coach's clients.

Views are thin: parse (the schema), authorize and call a handler, shape the answer.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from flask import current_app, request
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy import select

from services.checkin import handlers, tables
from services.checkin.access import may_read_coach, tenant_of, visible_commitment
from services.checkin.domain import CHANNELS, CommitmentStatus, Outcome, assess_risk
from services.checkin.domain.settings import MAX_BACKDATE_DAYS, MAX_GRACE_HOURS
from services.checkin.projections import (
    KnownCommitment,
    check_in_from_row,
    check_in_rows,
    current_streak,
    load_settings,
    utcnow,
)
from shared.problems import Problem, invalid
from shared.web import correlation_id, engine, principal, read_transaction

checkins_blp = Blueprint("check-ins", __name__, url_prefix="/v1", description="Daily check-ins and streaks")
settings_blp = Blueprint("settings", __name__, url_prefix="/v1", description="Tenant streak settings (admin)")
coaches_blp = Blueprint("coaches", __name__, url_prefix="/v1", description="A coach's clients at a glance")


def now() -> datetime:
    """The current instant; tests may put a clock into the app config."""
    clock = current_app.config.get("CHECKIN_CLOCK") or utcnow
    return clock()


# -- schemas ---------------------------------------------------------------------------------


class SlipSchema(Schema):
    channel = fields.String(required=True, validate=validate.OneOf(sorted(CHANNELS)))
    initiated_by = fields.String(required=True, validate=validate.OneOf(["me", "them"]))


class CheckInBody(Schema):
    """A day's report. ``slip`` is required exactly when the outcome is slipped."""

    outcome = fields.String(required=True, validate=validate.OneOf([o.value for o in Outcome]))
    urge = fields.Integer(strict=True, allow_none=True, load_default=None, validate=validate.Range(0, 10))
    mood = fields.Integer(strict=True, allow_none=True, load_default=None, validate=validate.Range(1, 5))
    slip = fields.Nested(SlipSchema, allow_none=True, load_default=None)
    note = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=2000))


class NewCheckInBody(CheckInBody):
    date = fields.Date(
        load_default=None, metadata={"description": "local date; default today in the commitment's zone"}
    )


class CheckInOut(Schema):
    commitment_id = fields.String()
    member_id = fields.String()
    date = fields.Date()
    outcome = fields.String()
    urge = fields.Integer(allow_none=True)
    mood = fields.Integer(allow_none=True)
    slip = fields.Nested(SlipSchema, allow_none=True)
    note = fields.String(allow_none=True, metadata={"description": "private; not shown to coaches"})
    version = fields.Integer(metadata={"description": "stream version of the event that stands for the day"})
    recorded_at = fields.DateTime()
    updated_at = fields.DateTime()


class CheckInList(Schema):
    items = fields.List(fields.Nested(CheckInOut))


class RangeQuery(Schema):
    from_ = fields.Date(data_key="from", load_default=None)
    to = fields.Date(load_default=None)

    @validates_schema
    def _ordered(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("from_") and data.get("to") and data["from_"] > data["to"]:
            raise ValidationError("must not be after 'to'", "from")


def _iso_date(**kwargs: Any) -> fields.String:
    # The streak document is built by the domain with ISO strings already.
    return fields.String(metadata={"format": "date"}, **kwargs)


class StreakOut(Schema):
    commitment_id = fields.String()
    as_of = _iso_date()
    policy = fields.String()
    current_days = fields.Integer()
    longest_days = fields.Integer()
    kept_days = fields.Integer()
    slipped_days = fields.Integer()
    unreported_days = fields.Integer()
    streak_started_on = _iso_date(allow_none=True)
    last_slip_on = _iso_date(allow_none=True)
    last_check_in_on = _iso_date(allow_none=True)
    milestones_reached = fields.List(fields.Integer())
    next_milestone = fields.Integer(allow_none=True)
    counted_through = _iso_date(allow_none=True)


class RiskSettings(Schema):
    slip_window_days = fields.Integer(strict=True, validate=validate.Range(1, 365))
    high_urge = fields.Integer(strict=True, validate=validate.Range(0, 10))
    high_urge_count = fields.Integer(strict=True, validate=validate.Range(1, 30))
    urge_window_check_ins = fields.Integer(strict=True, validate=validate.Range(1, 30))
    silent_days = fields.Integer(strict=True, validate=validate.Range(1, 365))


class SettingsBody(Schema):
    """Every field optional: what is left out keeps its current value."""

    streak_policy = fields.String(validate=validate.OneOf(["since_last_slip", "verified"]))
    milestones = fields.List(
        fields.Integer(strict=True, validate=validate.Range(1, 3650)), validate=validate.Length(1, 50)
    )
    backdate_days = fields.Integer(strict=True, validate=validate.Range(0, MAX_BACKDATE_DAYS))
    missed_check_in_grace_hours = fields.Integer(strict=True, validate=validate.Range(0, MAX_GRACE_HOURS))
    at_risk = fields.Nested(RiskSettings)


class SettingsOut(SettingsBody):
    version = fields.Integer()


class DayState(Schema):
    date = fields.Date()
    state = fields.String(metadata={"description": "kept | slipped | unreported"})


class UrgeOut(Schema):
    date = fields.Date()
    urge = fields.Integer()


class ClientCommitmentOut(Schema):
    commitment_id = fields.String()
    contact_label = fields.String()
    relationship = fields.String()
    status = fields.String()
    streak = fields.Nested(StreakOut)
    last_check_in_on = fields.Date(allow_none=True)
    last_30_days = fields.List(fields.Nested(DayState))
    recent_urges = fields.List(fields.Nested(UrgeOut))
    at_risk = fields.Boolean()
    reasons = fields.List(fields.String())


class ClientOut(Schema):
    member_id = fields.String()
    at_risk = fields.Boolean()
    reasons = fields.List(fields.String())
    commitments = fields.List(fields.Nested(ClientCommitmentOut))


class ClientsOut(Schema):
    coach_id = fields.String()
    as_of = fields.DateTime()
    items = fields.List(fields.Nested(ClientOut))


# -- helpers -------------------------------------------------------------------------------------


def check_in_json(row: Any, *, with_note: bool) -> dict[str, Any]:
    return {
        "commitment_id": row.commitment_id,
        "member_id": row.member_id,
        "date": row.day,
        "outcome": row.outcome,
        "urge": row.urge,
        "mood": row.mood,
        "slip": {"channel": row.slip_channel, "initiated_by": row.slip_initiated_by} if row.slip_channel else None,
        "note": row.note if with_note else None,
        "version": row.stream_version,
        "recorded_at": row.recorded_at,
        "updated_at": row.updated_at,
    }


def _one_row(commitment: KnownCommitment, day: date) -> Any:
    with read_transaction() as conn:
        rows = check_in_rows(conn, commitment.commitment_id, day, day)
    return rows[0]


def parse_day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise invalid("date", "must be a calendar date (YYYY-MM-DD)") from None


# -- check-ins -----------------------------------------------------------------------------------


@checkins_blp.route("/commitments/<commitment_id>/check-ins")
class CheckIns(MethodView):
    @checkins_blp.arguments(NewCheckInBody)
    @checkins_blp.response(201, CheckInOut)
    @checkins_blp.alt_response(409, description="the day already has a check-in, or the commitment is not active")
    def post(self, body: dict[str, Any], commitment_id: str) -> tuple[dict[str, Any], int, dict[str, str]]:
        """Record a day's check-in (date defaults to today in the commitment's zone)."""
        commitment, event = handlers.record_check_in(
            engine(), principal(), commitment_id, body, now=now(), correlation_id=correlation_id()
        )
        row = _one_row(commitment, date.fromisoformat(event.data["date"]))
        location = f"/v1/commitments/{commitment_id}/check-ins/{row.day.isoformat()}"
        return check_in_json(row, with_note=True), 201, {"Location": location}

    @checkins_blp.arguments(RangeQuery, location="query")
    @checkins_blp.response(200, CheckInList)
    def get(self, query: dict[str, Any], commitment_id: str) -> dict[str, Any]:
        """The check-ins of a date range (inclusive), oldest first."""
        caller = principal()
        with read_transaction() as conn:
            commitment = visible_commitment(conn, caller, commitment_id, write=False)
            rows = check_in_rows(conn, commitment.commitment_id, query.get("from_"), query.get("to"))
        return {"items": [check_in_json(row, with_note=caller.role != "coach") for row in rows]}


@checkins_blp.route("/commitments/<commitment_id>/check-ins/<day>")
class CheckInOfDay(MethodView):
    @checkins_blp.response(200, CheckInOut)
    def get(self, commitment_id: str, day: str) -> dict[str, Any]:
        """One day's check-in."""
        caller = principal()
        parsed = parse_day(day)
        with read_transaction() as conn:
            commitment = visible_commitment(conn, caller, commitment_id, write=False)
            rows = check_in_rows(conn, commitment.commitment_id, parsed, parsed)
        if not rows:
            raise Problem(404, "no check-in for that date")
        return check_in_json(rows[0], with_note=caller.role != "coach")

    @checkins_blp.arguments(CheckInBody)
    @checkins_blp.response(200, CheckInOut)
    def put(self, body: dict[str, Any], commitment_id: str, day: str) -> dict[str, Any]:
        """Replace a day's report (a correction)."""
        parsed = parse_day(day)
        commitment, _ = handlers.correct_check_in(
            engine(), principal(), commitment_id, parsed, body, now=now(), correlation_id=correlation_id()
        )
        return check_in_json(_one_row(commitment, parsed), with_note=True)


@checkins_blp.route("/commitments/<commitment_id>/streak")
class StreakView(MethodView):
    @checkins_blp.response(200, StreakOut)
    def get(self, commitment_id: str) -> dict[str, Any]:
        """The streak as of today in the commitment's zone (CONTRACT's streak rules)."""
        with read_transaction() as conn:
            commitment = visible_commitment(conn, principal(), commitment_id, write=False)
            settings, _ = load_settings(conn, commitment.tenant_id)
            streak, _ = current_streak(conn, commitment, settings, now())
        return streak.as_json(commitment.commitment_id)


# -- settings --------------------------------------------------------------------------------------


@settings_blp.route("/settings")
class SettingsView(MethodView):
    @settings_blp.response(200, SettingsOut)
    def get(self) -> tuple[dict[str, Any], int, dict[str, str]]:
        """The tenant's streak settings (defaults until first changed)."""
        tenant_id = tenant_of(principal())
        with read_transaction() as conn:
            settings, version = load_settings(conn, tenant_id)
        return {**settings.as_json(), "version": version}, 200, {"ETag": f'"{version}"'}

    @settings_blp.arguments(SettingsBody)
    @settings_blp.response(200, SettingsOut)
    def put(self, body: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, str]]:
        """Change settings (admin). A new policy or milestone list re-projects every streak."""
        caller = principal()
        tenant_of(caller)
        if caller.role != "admin":
            raise Problem(403, "only an admin key may change settings")
        settings, version = handlers.update_settings(
            engine(),
            caller,
            body,
            now=now(),
            correlation_id=correlation_id(),
            if_match=request.headers.get("If-Match"),
        )
        return {**settings.as_json(), "version": version}, 200, {"ETag": f'"{version}"'}


# -- a coach's clients -------------------------------------------------------------------------------


def client_commitment(conn: Any, commitment: KnownCommitment, at: datetime) -> dict[str, Any]:
    settings, _ = load_settings(conn, commitment.tenant_id)
    streak, reports = current_streak(conn, commitment, settings, at)
    today = streak.as_of
    by_day = {c.day: c for c in reports}
    last = min(today, commitment.last_day) if commitment.last_day else today
    first = max(commitment.starts_on, today - timedelta(days=29))
    days = []
    for offset in range((last - first).days + 1):
        day = first + timedelta(days=offset)
        report = by_day.get(day)
        if report is None and day == today:
            continue  # today is not over: not yet unreported
        days.append({"date": day, "state": str(report.outcome) if report else "unreported"})
    urges = [{"date": c.day, "urge": c.urge} for c in reports if c.urge is not None][-7:]
    status = commitment.status_at(at)
    reasons: list[str] = []
    if status is CommitmentStatus.ACTIVE:
        reasons = [
            str(r) for r in assess_risk(reports, today, settings.at_risk, starts_on=commitment.starts_on).reasons
        ]
    return {
        "commitment_id": commitment.commitment_id,
        "contact_label": commitment.contact_label,
        "relationship": commitment.relationship,
        "status": str(status),
        "streak": streak.as_json(commitment.commitment_id),
        "last_check_in_on": streak.last_check_in_on,
        "last_30_days": days,
        "recent_urges": urges,
        "at_risk": bool(reasons),
        "reasons": reasons,
    }


@coaches_blp.route("/coaches/<coach_id>/clients")
class CoachClients(MethodView):
    @coaches_blp.response(200, ClientsOut)
    def get(self, coach_id: str) -> dict[str, Any]:
        """Each client of the coach with each commitment's streak, last 30 days, urges and risk."""
        caller = principal()
        may_read_coach(caller, coach_id)
        at = now()
        table = tables.commitments
        clients: dict[str, dict[str, Any]] = {}
        with read_transaction() as conn:
            rows = conn.execute(
                select(table)
                .where(table.c.tenant_id == caller.tenant_id, table.c.coach_id == coach_id)
                .order_by(table.c.member_id, table.c.created_at)
            ).all()
            for row in rows:
                commitment = KnownCommitment.from_row(row)
                entry = clients.setdefault(
                    commitment.member_id,
                    {"member_id": commitment.member_id, "at_risk": False, "reasons": [], "commitments": []},
                )
                view = client_commitment(conn, commitment, at)
                entry["commitments"].append(view)
                for reason in view["reasons"]:
                    if reason not in entry["reasons"]:
                        entry["reasons"].append(reason)
                entry["at_risk"] = bool(entry["reasons"])
        return {"coach_id": coach_id, "as_of": at, "items": list(clients.values())}


BLUEPRINTS = [checkins_blp, settings_blp, coaches_blp]

__all__ = ["BLUEPRINTS", "check_in_from_row"]
