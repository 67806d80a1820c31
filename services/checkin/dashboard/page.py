"""`GET /dashboard` and `/dashboard/static/...`: vanilla HTML/CSS/JS, no build step, no CDN."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from flask import Response, render_template, url_for
from flask_smorest import Blueprint

STATIC = Path(__file__).parent / "static"

# A flask-smorest Blueprint (a Flask Blueprint underneath) so it can be registered either
# with the service's Api (and appear in /openapi.json) or directly on the Flask app.
blueprint = Blueprint(
    "dashboard",
    __name__,
    url_prefix="/dashboard",
    static_folder="static",
    static_url_path="/static",
    template_folder="templates",
    description="The coach dashboard page (HTML); its data comes from /dashboard/api/ under a session cookie.",
)

# The page only ever talks to its own origin; no inline script or style, so a label a
# member typed can never run as code even if a rendering bug slipped through.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


@lru_cache(maxsize=64)
def _fingerprint(filename: str) -> str:
    # Cache-busting query string: a redeploy changes the URL, so browsers never mix versions.
    return hashlib.sha256((STATIC / filename).read_bytes()).hexdigest()[:12]


def asset(filename: str) -> str:
    return url_for("dashboard.static", filename=filename, v=_fingerprint(filename))


@blueprint.route("", strict_slashes=False)
@blueprint.doc(
    summary="The coach dashboard page",
    description="HTML. Sign in with a sign-in link (POST /v1/dashboard/sign-in-links), a coach token, or an "
    "admin API key and a coach id: each opens a session cookie for every tab.",
    security=[],
    responses={"200": {"description": "the page", "content": {"text/html": {}}}},
)
def dashboard() -> Response:
    html = render_template("dashboard/index.html", asset=asset)
    response = Response(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"
    return response
