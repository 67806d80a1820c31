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
        # This service revokes keys: here a revoked key stops working at once, on every
        # worker, so it never answers from the per-process cache of key lookups.
        cache_api_keys=False,
    )
    return app
