"""The commitment service's Flask app: tenants, credentials, commitments, coaches."""

from __future__ import annotations

from flask import Flask

from shared.web import create_app as create_service_app

from .api import BLUEPRINTS
from .members.api import BLUEPRINTS as MEMBER_BLUEPRINTS
from .tables import CREDENTIALS


def create_app() -> Flask:
    app = create_service_app(
        "commitment",
        title="nocontact commitment service",
        description="Tenants, API keys, scoped tokens, commitments of no contact, coach assignments and members' "
                    "data (profile, export, erasure).",
        blueprints=(*BLUEPRINTS, *MEMBER_BLUEPRINTS),
        credentials=CREDENTIALS,
    )
    return app
