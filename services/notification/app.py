"""The notification service's Flask app."""

from __future__ import annotations

from flask import Flask

from services.notification.api import BLUEPRINTS
from services.notification.tables import CREDENTIALS
from shared.web import create_app as create_service_app


def create_app() -> Flask:
    return create_service_app(
        "notification",
        title="nocontact notification service",
        description=(
            "Webhook endpoints of partner apps (Standard Webhooks: signed, retried on a schedule, "
            "attempt log, redelivery) and the coach notification feed."
        ),
        blueprints=BLUEPRINTS,
        credentials=CREDENTIALS,
    )
