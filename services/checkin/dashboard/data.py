"""What the page reads and writes, same origin, under the session cookie: ``/dashboard/api/...``.

The page talks to its own origin only (CSP ``connect-src 'self'``). The check-in data is
this service's own (the same queries and authorization as /v1/). The coach's feed is the
notification service's: this service fetches it server-side for the page (a backend for
the frontend), with a coach token it mints for that one call (60 s, naming the session's
key and id, so revoking the key, or the token the session was opened with, stops it too;
tokens are signed, not stored: shared.auth). The browser never holds a credential it
could leak to script, and no other origin is ever allowed in the page's CSP or CORS.

None of these routes is in /openapi.json: they are the page's, not the public API's.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from flask import Blueprint, Response, jsonify
from sqlalchemy import Connection, select

from services.checkin import coach_notes, profiles, queries, tables
from services.checkin.access import authorized, may_read_coach
from services.checkin.api import (
    CheckInOut,
    ClientsOut,
    PauseOut,
    RunOut,
    SosOut,
    StreakOut,
    UrgeLogOut,
    _pause_json,
    _urge_json,
    check_in_json,
)
from services.checkin.dashboard import sessions
from services.checkin.domain import run_history
from shared import config, keyring
from shared.auth import encode_token
from shared.db import read
from shared.problems import Problem
from shared.web import context, correlation_id, engine, now, principal

blueprint = Blueprint("dashboard_data", __name__)

FEED_TIMEOUT_S = 3.0
FEED_TOKEN_TTL = timedelta(seconds=60)
FEED_PAGE = 50
CLIENTS, STREAK, CHECK_INS, RUNS = ClientsOut(), StreakOut(), CheckInOut(many=True), RunOut(many=True)
URGES, PAUSES, SOS_CALLS = UrgeLogOut(many=True), PauseOut(many=True), SosOut(many=True)
URGES_SHOWN = 200  # the newest urges logged between check-ins (GET .../urges' largest page)

blueprint.add_url_rule("/session", "open_session", sessions.open_session, methods=["POST"])
blueprint.add_url_rule("/session", "close_session", sessions.close_session, methods=["DELETE"])


def _json(body: Any, status: int = 200) -> Response:
    response = jsonify(body)
    response.status_code = status
    # Members' data: no shared or browser cache keeps it (as /v1/ answers).
    response.headers["Cache-Control"] = "no-store"
    return response


@blueprint.get("/api/session")
@sessions.signed_in
def who() -> Response:
    return _json(sessions.session().as_json())


@blueprint.get("/api/clients")
@sessions.signed_in
def clients() -> Response:
    """`GET /v1/coaches/{coach}/clients` for the session's coach, plus the thresholds the
    page shows levels against (the tenant's own, not a guess in JavaScript)."""
    coach_id = sessions.session().coach_id
    tenant_id = may_read_coach(principal(), coach_id)
    at = now()
    with read(engine()) as conn:
        items = queries.coach_clients(conn, tenant_id, coach_id, at)
        settings, _ = queries.load_settings(conn, tenant_id)
        names = profiles.display_names(conn, tenant_id, [item["member_id"] for item in items])
    # Dumped by the /v1/ answer's own schema: the page reads exactly the documented shape,
    # plus each member's profile (the display name, opened here for the page only).
    body = CLIENTS.dump({"coach_id": coach_id, "as_of": at, "items": items})
    for item in body["items"]:
        item["profile"] = profiles.profile_json(names.get(item["member_id"]))
    return _json({**body, "at_risk": settings.as_json()["at_risk"]})


@blueprint.get("/api/commitments/<commitment_id>")
@sessions.signed_in
def commitment(commitment_id: str) -> Response:
    """One commitment for the detail view: what it is, its streak, every check-in (never a
    note), its runs, the urges logged between check-ins (never their words) and its pauses
    (never their reason), as `GET /v1/commitments/{id}/streak`, `.../check-ins`, `.../runs`,
    `.../urges`, `.../pauses` answer a coach; and when each SOS was sent on it (`_sos_calls`)."""
    at = now()
    with read(engine()) as conn:
        inputs = queries.command_inputs(conn, commitment_id)
        known = authorized(principal(), None if inputs is None else inputs.commitment, write=False)
        assert inputs is not None
        if known.coach_id != sessions.session().coach_id:
            raise Problem(404, "no such commitment among this coach's clients")
        streak = queries.streak_document(conn, known, at)
        rows = queries.check_in_rows(conn, known.commitment_id)
        runs = run_history(known, queries.decision_state(conn, inputs), inputs.settings, at)
        label = keyring.Opener(conn, known.tenant_id).open(known.contact_label)
        name = profiles.display_names(conn, known.tenant_id, [known.member_id]).get(known.member_id)
        urges, _ = queries.urge_page(conn, known, None, None, URGES_SHOWN, None)
        # As a coach reads them: level, time and outcome, never the member's own words.
        logged = [_urge_json(row._mapping, with_personal=False) for row in urges]
        pauses = [_pause_json(row._mapping, with_reason=False) for row in queries.pause_rows(conn, known.commitment_id)]
        sos = _sos_calls(conn, known.commitment_id)
    return _json({
        "commitment": {
            "commitment_id": known.commitment_id, "member_id": known.member_id, "contact_label": label,
            "relationship": known.relationship, "timezone": known.timezone, "starts_on": known.starts_on.isoformat(),
            "ends_on": known.ends_on.isoformat() if known.ends_on else None, "status": str(known.status_at(at)),
        },
        "streak": STREAK.dump(streak),
        "check_ins": CHECK_INS.dump([check_in_json(row._mapping, with_note=False) for row in rows]),
        "runs": RUNS.dump(runs),
        "urges": URGES.dump(logged),
        "pauses": PAUSES.dump(pauses),
        "sos": SOS_CALLS.dump(sos),
        "at_risk": inputs.settings.as_json()["at_risk"],
        "profile": profiles.profile_json(name),
    })


def _sos_calls(conn: Connection, commitment_id: str) -> list[dict[str, Any]]:
    """Each SOS sent on the commitment, oldest first: that and when, from the rows the
    per-member limit counts (ids and instants only). The message is for the coach's feed
    alone, and is never read here."""
    table = tables.sos_calls
    rows = conn.execute(select(table).where(table.c.commitment_id == commitment_id)
                        .order_by(table.c.at, table.c.event_id))
    return [{"sos_id": row.event_id, "commitment_id": row.commitment_id, "member_id": row.member_id,
             "sent_at": row.at} for row in rows]


# -- the coach's private notes -------------------------------------------------------------------------


def _note_writer() -> str:
    """The coach of a coach's own session: notes are theirs alone (an admin viewing the
    dashboard neither reads nor writes them)."""
    if sessions.session().role != "coach":
        raise Problem(403, "a coach's notes are the coach's own: an admin key does not read them")
    return sessions.session().coach_id


@blueprint.get("/api/members/<member_id>/note")
@sessions.signed_in
def note(member_id: str) -> Response:
    coach_id = _note_writer()
    with read(engine()) as conn:
        return _json(coach_notes.read_note(conn, sessions.session().tenant_id, coach_id, member_id))


@blueprint.put("/api/members/<member_id>/note")
@sessions.signed_in
def write_note(member_id: str) -> Response:
    """Save the coach's note on the client; `version` is the one the coach edited (0: none)."""
    coach_id = _note_writer()
    body = sessions.json_object()
    version = body.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise Problem(422, "version: the note's version you edited (0 for a new note)",
                      errors={"version": ["must be a whole number, 0 or more"]})
    saved = coach_notes.save_note(engine(), context(), coach_id, member_id, body.get("note"), if_version=version,
                                  now=now())
    return _json(saved)


# -- the coach's feed, from the notification service -------------------------------------------------


def _feed_call(method: str, path: str, **kwargs: Any) -> Any:
    """Call the notification service for the session's coach; its problems pass through."""
    session = sessions.session()
    at = now()
    token = encode_token(tenant_id=session.tenant_id, role="coach", subject_id=session.coach_id,
                         key_id=session.key_id, token_id=session.token_id,
                         expires_at=min(at + FEED_TOKEN_TTL, session.expires_at), issued_at=at)
    url = f"{config.dashboard_feed_url()}/v1/coaches/{session.coach_id}/notifications{path}"
    headers = {"Authorization": f"Bearer {token}", "X-Correlation-ID": correlation_id()}
    try:
        response = httpx.request(method, url, headers=headers, timeout=FEED_TIMEOUT_S, **kwargs)
    except httpx.HTTPError:
        raise Problem(502, "the notification service does not answer: the feed cannot be shown now") from None
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail")
        except ValueError:
            detail = None
        status = response.status_code if response.status_code in (401, 403, 404, 409, 422, 429) else 502
        raise Problem(status, f"the feed: {detail or response.reason_phrase}")
    return response.json()


@blueprint.get("/api/feed")
@sessions.signed_in
def feed() -> Response:
    """The first page of the coach's feed: every pinned SOS first, then the newest items."""
    return _json(_feed_call("GET", "", params={"limit": FEED_PAGE}))


@blueprint.post("/api/feed/<int:item_id>/acknowledge")
@sessions.signed_in
def acknowledge(item_id: int) -> Response:
    """The coach has seen the item: recorded by the notification service as the coach's
    acknowledgement (an SOS is no longer pinned). An admin viewing a coach's dashboard does
    not acknowledge for the coach."""
    if sessions.session().role != "coach":
        raise Problem(403, "only the coach acknowledges their own feed; an admin key views it")
    return _json(_feed_call("POST", f"/{item_id}/acknowledge"))
