"""The check-in service's Flask app."""

from __future__ import annotations

from collections.abc import Iterable

from flask import Flask
from flask_smorest import Blueprint

from services.checkin.api import BLUEPRINTS
from services.checkin.dashboard import blueprint as dashboard
from services.checkin.dashboard import links_blp as dashboard_links
from services.checkin.tables import CREDENTIALS
from shared.web import create_app as create_service_app

DESCRIPTION = """Daily check-ins of no-contact commitments, streak projections, tenant streak
settings and coaches' client views. Learns of commitments, coaches and credentials from the
commitment service's events; a check-in for a commitment not yet heard of answers 404."""


def blueprints() -> list[Blueprint]:
    """Every blueprint the service serves; the dashboard adds itself here."""
    return [*BLUEPRINTS, dashboard_links, dashboard]


def create_app(extra_blueprints: Iterable[Blueprint] = ()) -> Flask:
    return create_service_app(
        "checkin",
        title="nocontact check-in service",
        description=DESCRIPTION,
        blueprints=[*blueprints(), *extra_blueprints],
        credentials=CREDENTIALS,
    )
