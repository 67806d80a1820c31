"""The notification service's Flask app."""

from __future__ import annotations

from flask import Flask

from services.notification.api import BLUEPRINTS, event_types_blp
from services.notification.tables import CREDENTIALS
from shared import catalogue
from shared.web import create_app as create_service_app


def create_app() -> Flask:
    app = create_service_app(
        "notification",
        title="nocontact notification service",
        description=(
            "Webhook endpoints of partner apps (Standard Webhooks: signed, retried on a schedule, "
            "attempt log, redelivery, test events, statistics), the event catalogue (the schema of "
            "every webhook type's data, as components <Type>Data and <Type>Webhook) and the coach "
            "notification feed."
        ),
        blueprints=BLUEPRINTS,
        credentials=CREDENTIALS,
    )
    # The catalogue's schemas, which the answers of GET /v1/event-types and of the message
    # views reference.
    api = app.extensions["flask-smorest"]["blp_name_to_api"][event_types_blp.name]
    catalogue.register(api.spec)
    return app
