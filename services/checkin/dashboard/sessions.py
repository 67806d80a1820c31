"""Signing in to the dashboard: sign-in links, session cookies, logout that counts at once.

- An admin mints a **sign-in link** for a coach (`POST /v1/dashboard/sign-in-links`, or
  `nocontact checkin sign-in-link`): ``/dashboard#link=<secret>``, single use, short-lived
  (15 minutes by default). The secret travels in the fragment, which browsers never send to
  a server nor put in a Referer; the page posts it once (a mail scanner that fetches the
  link consumes nothing: it runs no script).
- The page exchanges it (or a coach token, or an admin key plus a coach id, pasted in the
  sign-in form) for a **session** (`POST /dashboard/session`): a random secret in a cookie
  (HttpOnly, SameSite=Strict, Path=/dashboard, Secure behind https), every tab of the
  browser shares it. Only its sha256 is stored.
- Every request of the page is checked against the store, like a token (`shared.auth.lookup`):
  the session not signed out, not expired, the API key that signed it in (and the token it
  was opened with) not revoked. Signing out (`DELETE /dashboard/session`) counts at once.
- **CSRF**: besides SameSite=Strict, every write to /dashboard/ must carry the header
  ``X-Nocontact-Dashboard: 1`` and a JSON body: a cross-site form cannot set either, and
  the service answers no CORS preflight, so another origin's script cannot either. An
  ``Origin`` header naming another origin is refused too.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import wraps
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from flask import Response, g, jsonify, request
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate
from sqlalchemy import Connection, delete, insert, select, update

from services.checkin.access import tenant_of
from services.checkin.api import _problem
from services.checkin.dashboard.tables import sessions, sign_in_links
from services.checkin.tables import CREDENTIALS
from shared import config, ratelimit
from shared.auth import Presented, Principal, SignedToken, admit, holds_credentials, lookup, read_token, unauthorized
from shared.db import read
from shared.problems import Problem, invalid
from shared.web import engine, now, require_role

COOKIE = "nocontact_dashboard"
#: The secure variant's name: browsers accept a ``__Host-`` cookie only with Secure, Path=/
#: and no Domain, so no sibling host or plain-http page can plant or overwrite it.
SECURE_COOKIE = "__Host-nocontact_dashboard"
CSRF_HEADER = "X-Nocontact-Dashboard"
#: A working day: a coach signs in in the morning, not every hour.
SESSION_TTL = timedelta(hours=12)
LINK_TTL_DEFAULT_S = 15 * 60
LINK_TTL_MAX_S = 24 * 3600
FORGET_AFTER = timedelta(days=1)

F = TypeVar("F", bound=Callable[..., Any])


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Session:
    session_id: str
    tenant_id: str
    role: str  # coach | admin
    coach_id: str
    key_id: str
    token_id: str
    expires_at: datetime

    @property
    def principal(self) -> Principal:
        """Who the page's requests act as: the coach, or the admin key that viewed them."""
        if self.role == "admin":
            return Principal(role="admin", tenant_id=self.tenant_id, credential_id=self.key_id)
        return Principal(role="coach", tenant_id=self.tenant_id, subject_id=self.coach_id)

    def as_json(self) -> dict[str, Any]:
        return {"role": self.role, "coach_id": self.coach_id, "expires_at": self.expires_at.isoformat()}


def _still_valid(conn: Connection, session: Session) -> bool:
    """The key that signed the session in, and the token it was opened with, are not revoked:
    the same check (and the same indexes) as a token presented to /v1/."""
    signed = SignedToken(session.tenant_id, session.role, session.coach_id, session.key_id, session.token_id,
                         session.expires_at)
    source = None if holds_credentials("checkin") else CREDENTIALS
    return lookup(conn, Presented(token=signed), source) is not None


# -- the checks of every request --------------------------------------------------------------


def _https() -> bool:
    """The browser reached the page over https: directly, or through a trusted proxy that
    terminated TLS and said so (X-Forwarded-Proto, honoured behind NOCONTACT_TRUSTED_PROXIES)."""
    if request.is_secure:
        return True
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return config.trusted_proxies() > 0 and forwarded == "https"


def _cookie_name() -> str:
    return SECURE_COOKIE if _https() else COOKIE


def refuse_cross_site() -> None:
    """A write to /dashboard/ from the page itself, never from another site (see module doc)."""
    if request.headers.get(CSRF_HEADER) != "1":
        raise Problem(403, f"a write to the dashboard needs the header {CSRF_HEADER}: 1 (sent by the page itself)")
    origin = request.headers.get("Origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.host:
        raise Problem(403, "a write to the dashboard must come from the dashboard's own origin")


def current_session() -> Session:
    """The session of this request's cookie, checked against the store; a 401 problem saying
    why there is none."""
    secret = request.cookies.get(SECURE_COOKIE) or request.cookies.get(COOKIE)
    if not secret:
        raise unauthorized("not signed in")
    with read(engine()) as conn:
        row = conn.execute(select(sessions).where(sessions.c.session_hash == _digest(secret))).first()
        if row is None:
            raise unauthorized("this session is not known here: sign in again")
        if row.revoked_at is not None:
            raise unauthorized("this session was signed out: sign in again")
        if row.expires_at <= now():
            raise unauthorized("the session has expired: sign in again")
        session = Session(row.session_id, row.tenant_id, row.role, row.coach_id, row.key_id, row.token_id,
                          row.expires_at)
        if not _still_valid(conn, session):
            raise unauthorized("the key or token this session was opened with has been revoked: sign in again")
    return session


def signed_in(view: F) -> F:
    """A view of the page's data: the session checked, `shared.web.principal()` its principal,
    `g.session` the session; writes checked against cross-site requests first."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if request.method not in ("GET", "HEAD"):
            refuse_cross_site()
        g.session = current_session()
        g.principal = g.session.principal
        return view(*args, **kwargs)

    return cast(F, wrapper)


def session() -> Session:
    found: Session = g.session
    return found


# -- opening and closing a session ---------------------------------------------------------------


def json_object() -> dict[str, Any]:
    """The JSON object a write of the page sends (none: an empty one)."""
    if request.content_length and not request.is_json:
        raise Problem(415, "the body must be application/json")
    body = request.get_json(silent=True) if request.content_length else {}
    if not isinstance(body, dict):
        raise Problem(400, "the body must be a JSON object")
    return body


def _text(body: dict[str, Any], name: str, *, required: bool) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise invalid(name, "is required")
        return None
    if not isinstance(value, str) or len(value) > 256 or not value.isprintable():
        raise invalid(name, "must be a short string")
    return value


def _from_link(conn: Connection, secret: str, at: datetime) -> tuple[str, str, str, str, str, datetime]:
    """Spend a sign-in link: (tenant, role, coach, key, token id, session expiry)."""
    link_hash = _digest(secret)
    spent = conn.execute(
        update(sign_in_links)
        .where(sign_in_links.c.link_hash == link_hash, sign_in_links.c.used_at.is_(None),
               sign_in_links.c.expires_at > at)
        .values(used_at=at)
        .returning(sign_in_links.c.tenant_id, sign_in_links.c.coach_id, sign_in_links.c.key_id)
    ).first()
    if spent is None:
        row = conn.execute(select(sign_in_links).where(sign_in_links.c.link_hash == link_hash)).first()
        if row is None:
            raise unauthorized("this sign-in link is not valid")
        if row.used_at is not None:
            raise unauthorized("this sign-in link was already used: ask for a new one")
        raise unauthorized("this sign-in link has expired: ask for a new one")
    return spent.tenant_id, "coach", spent.coach_id, spent.key_id, str(uuid.uuid4()), at + SESSION_TTL


def _from_credential(body: dict[str, Any], at: datetime) -> tuple[str, str, str, str, str, datetime]:
    """Open a session with what /v1/ accepts (its rate limits spent alike): a coach token (its
    own dashboard) or an admin key (any coach's, named by `coach_id`)."""
    authorization = request.headers.get("Authorization")
    caller = admit(engine(), "checkin", CREDENTIALS, authorization, ratelimit.client_address(request.environ))
    coach_id = _text(body, "coach_id", required=caller.principal.role == "admin")
    if caller.principal.role == "admin":
        assert coach_id is not None and caller.principal.credential_id is not None
        return (tenant_of(caller.principal), "admin", coach_id, caller.principal.credential_id, str(uuid.uuid4()),
                at + SESSION_TTL)
    if caller.principal.role != "coach":
        raise Problem(403, "only a coach token or an admin key opens the coach dashboard")
    assert authorization is not None
    token = read_token(authorization.split(" ", 1)[1].strip())
    if coach_id is not None and coach_id != token.subject_id:
        raise Problem(403, "a coach token opens only that coach's own dashboard")
    return token.tenant_id, "coach", token.subject_id, token.key_id, token.token_id, min(token.expires_at,
                                                                                          at + SESSION_TTL)


def open_session() -> Response:
    refuse_cross_site()
    body = json_object()
    at = now()
    link = _text(body, "link", required=False)
    secret = secrets.token_urlsafe(32)
    session_id = str(uuid.uuid4())
    with engine().begin() as conn:
        if link is not None:
            tenant_id, role, coach_id, key_id, token_id, expires_at = _from_link(conn, link, at)
            token_id = session_id
        else:
            tenant_id, role, coach_id, key_id, token_id, expires_at = _from_credential(body, at)
        opened = Session(session_id, tenant_id, role, coach_id, key_id, token_id, expires_at)
        if not _still_valid(conn, opened):
            raise unauthorized("the API key that minted this sign-in link has been revoked")
        conn.execute(insert(sessions).values(
            session_hash=_digest(secret), session_id=session_id, tenant_id=tenant_id, role=role, coach_id=coach_id,
            key_id=key_id, token_id=token_id, created_at=at, expires_at=expires_at))
        # What expired over a day ago goes (a day later still says "expired", not "unknown").
        conn.execute(delete(sessions).where(sessions.c.expires_at < at - FORGET_AFTER))
        conn.execute(delete(sign_in_links).where(sign_in_links.c.expires_at < at - FORGET_AFTER))
    response = jsonify(opened.as_json())
    response.status_code = 201
    response.set_cookie(_cookie_name(), secret, max_age=int((expires_at - at).total_seconds()), path=_cookie_path(),
                        secure=_https(), httponly=True, samesite="Strict")
    response.headers["Cache-Control"] = "no-store"
    return response


def _cookie_path() -> str:
    # A __Host- cookie must have Path=/; the plain one is kept to the dashboard's paths.
    return "/" if _https() else "/dashboard"


def close_session() -> Response:
    """Sign out: the session stops working now, on every tab, and the cookie is dropped."""
    refuse_cross_site()
    secret = request.cookies.get(SECURE_COOKIE) or request.cookies.get(COOKIE)
    if secret:
        with engine().begin() as conn:
            conn.execute(update(sessions).where(sessions.c.session_hash == _digest(secret),
                                                sessions.c.revoked_at.is_(None)).values(revoked_at=now()))
    response = Response(status=204)
    response.delete_cookie(_cookie_name(), path=_cookie_path(), secure=_https(), httponly=True,
                           samesite="Strict")
    return response


# -- minting sign-in links (admin, /v1/) ---------------------------------------------------------------

links_blp = Blueprint("dashboard-sign-in", __name__, url_prefix="/v1/dashboard",
                      description="Sign-in links to the coach dashboard (admin)")


class LinkBody(Schema):
    coach_id = fields.String(required=True, validate=validate.Length(1, 128), metadata={"example": "coach-maria"})
    ttl_seconds = fields.Integer(strict=True, load_default=LINK_TTL_DEFAULT_S,
                                 validate=validate.Range(60, LINK_TTL_MAX_S), metadata={"example": 900})


class LinkOut(Schema):
    url = fields.String(metadata={"description": "open once in a browser: the page exchanges it for a session",
                                  "example": "https://checkin.example/dashboard#link=Zx3…"})
    coach_id = fields.String(metadata={"example": "coach-maria"})
    expires_at = fields.DateTime(metadata={"example": "2027-03-10T08:15:00+00:00"})


def mint_link(conn: Connection, caller: Principal, coach_id: str, ttl_seconds: int, at: datetime) -> tuple[str,
                                                                                                          datetime]:
    """A new single-use sign-in link's secret for `coach_id`, minted by the admin key `caller`."""
    assert caller.role == "admin" and caller.credential_id is not None
    secret = secrets.token_urlsafe(32)
    expires_at = at + timedelta(seconds=ttl_seconds)
    conn.execute(insert(sign_in_links).values(
        link_hash=_digest(secret), tenant_id=tenant_of(caller), coach_id=coach_id, key_id=caller.credential_id,
        created_at=at, expires_at=expires_at))
    return secret, expires_at


@links_blp.route("/sign-in-links")
class SignInLinks(MethodView):
    @links_blp.arguments(LinkBody)
    @links_blp.response(201, LinkOut)
    @_problem(links_blp, 403, "not an admin key (a coach's or member's token)")
    @_problem(links_blp, 422, "coach_id missing or too long, ttl_seconds outside 60..86400")
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """A single-use sign-in link to a coach's dashboard (admin key). It works once, until
        `expires_at` (15 minutes by default), and not after the key that minted it is revoked."""
        caller = require_role("admin")
        with engine().begin() as conn:
            secret, expires_at = mint_link(conn, caller, body["coach_id"], body["ttl_seconds"], now())
        origin = f"{'https' if _https() else 'http'}://{request.host}"
        return {"url": f"{origin}/dashboard#link={secret}", "coach_id": body["coach_id"], "expires_at": expires_at}


