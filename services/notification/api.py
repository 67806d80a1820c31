"""HTTP API of the notification service: webhook endpoints, their deliveries, the coach feed.

The marshmallow schemas are the validation, the OpenAPI document and the serialisation.
Every query is scoped to the caller's tenant: another tenant's ids answer 404.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from flask import Response
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy import select

from services.notification import handlers
from services.notification.delivery import queue
from services.notification.domain.messages import WEBHOOK_EVENT_TYPES, WILDCARD
from services.notification.tables import attempts, coaches, deliveries, endpoints, feed_items
from shared.db import read
from shared.problems import Problem, invalid, not_found
from shared.web import correlation_id, engine, require_role

MAX_PAGE = 100

# -- schemas ---------------------------------------------------------------------------------


def _unique(values: list[str]) -> None:
    if len(set(values)) != len(values):
        raise ValidationError("event types must not repeat")


class EndpointCreateSchema(Schema):
    url = fields.String(required=True, validate=validate.Length(min=1, max=2048))
    event_types = fields.List(
        fields.String(validate=validate.OneOf([*WEBHOOK_EVENT_TYPES, WILDCARD])),
        required=True,
        validate=[validate.Length(min=1, max=len(WEBHOOK_EVENT_TYPES) + 1), _unique],
        metadata={"description": "event types to receive; `*` for all"},
    )
    description = fields.String(load_default="", validate=validate.Length(max=1000))


class EndpointPatchSchema(Schema):
    url = fields.String(validate=validate.Length(min=1, max=2048))
    event_types = fields.List(
        fields.String(validate=validate.OneOf([*WEBHOOK_EVENT_TYPES, WILDCARD])),
        validate=[validate.Length(min=1, max=len(WEBHOOK_EVENT_TYPES) + 1), _unique],
    )
    description = fields.String(validate=validate.Length(max=1000))


class EndpointSchema(Schema):
    id = fields.String()
    url = fields.String()
    description = fields.String()
    event_types = fields.List(fields.String())
    status = fields.String(metadata={"description": "enabled | disabled"})
    disabled_reason = fields.String(allow_none=True)
    previous_secret_expires_at = fields.AwareDateTime(
        allow_none=True, metadata={"description": "until when the rotated-out secret still signs"}
    )
    created_at = fields.AwareDateTime()
    updated_at = fields.AwareDateTime()


class EndpointWithSecretSchema(EndpointSchema):
    secret = fields.String(metadata={"description": "whsec_...: shown only on create and rotate"})


class EndpointPageSchema(Schema):
    items = fields.List(fields.Nested(EndpointSchema))
    next_cursor = fields.String(allow_none=True)


class PageArgsSchema(Schema):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=MAX_PAGE))
    cursor = fields.String(load_default=None)


class AttemptArgsSchema(PageArgsSchema):
    message_id = fields.String(load_default=None)


class MessageArgsSchema(PageArgsSchema):
    state = fields.String(
        load_default=None,
        validate=validate.OneOf([queue.PENDING, queue.SUCCEEDED, queue.FAILED, queue.SKIPPED_DISABLED]),
    )


class AttemptSchema(Schema):
    id = fields.Integer()
    message_id = fields.String()
    event_type = fields.String()
    attempt = fields.Integer(metadata={"description": "attempt number of this message, from 1"})
    status_code = fields.Integer(allow_none=True)
    duration_ms = fields.Integer()
    error = fields.String(allow_none=True)
    response_excerpt = fields.String(allow_none=True)
    state = fields.String(metadata={"description": "after this attempt: succeeded | retrying | failed"})
    next_attempt_at = fields.AwareDateTime(allow_none=True)
    attempted_at = fields.AwareDateTime()


class AttemptPageSchema(Schema):
    items = fields.List(fields.Nested(AttemptSchema))
    next_cursor = fields.String(allow_none=True)


class MessageDeliverySchema(Schema):
    message_id = fields.String()
    event_type = fields.String()
    state = fields.String(metadata={"description": "pending | succeeded | failed | skipped_disabled"})
    attempts = fields.Integer()
    next_attempt_at = fields.AwareDateTime(allow_none=True)
    last_status_code = fields.Integer(allow_none=True)
    last_error = fields.String(allow_none=True)
    last_attempt_at = fields.AwareDateTime(allow_none=True)
    created_at = fields.AwareDateTime()


class MessageDeliveryPageSchema(Schema):
    items = fields.List(fields.Nested(MessageDeliverySchema))
    next_cursor = fields.String(allow_none=True)


class RedeliverFailedSchema(Schema):
    since = fields.AwareDateTime(required=True, metadata={"description": "redeliver what failed since"})

    @validates_schema
    def _not_future(self, data: dict[str, Any], **_: Any) -> None:
        if data["since"] > datetime.now(UTC):
            raise ValidationError("must not be in the future", "since")


class RequeuedSchema(Schema):
    requeued = fields.Integer()


class FeedItemSchema(Schema):
    id = fields.Integer()
    kind = fields.String(metadata={"description": "slip | missed_day | at_risk | milestone"})
    event_type = fields.String()
    event_id = fields.String()
    commitment_id = fields.String()
    member_id = fields.String()
    occurred_at = fields.AwareDateTime()
    data = fields.Dict()


class FeedPageSchema(Schema):
    items = fields.List(fields.Nested(FeedItemSchema))
    next_cursor = fields.String(allow_none=True)


class FeedArgsSchema(PageArgsSchema):
    kind = fields.String(load_default=None, validate=validate.OneOf(["slip", "missed_day", "at_risk", "milestone"]))


# -- helpers -----------------------------------------------------------------------------------


def _caller() -> handlers.Caller:
    principal = require_role("admin")
    assert principal.tenant_id is not None  # admins always belong to a tenant
    return handlers.Caller(principal.tenant_id, principal.actor, correlation_id())


def _aware_row(row: Any) -> dict[str, Any]:
    values = dict(row._mapping) if hasattr(row, "_mapping") else dict(row)
    return {k: queue.aware(v) if isinstance(v, datetime) else v for k, v in values.items()}


def _endpoint(row: Any, secret: str | None = None) -> dict[str, Any]:
    values = _aware_row(row)
    expires = values.get("previous_secret_expires_at")
    if expires is not None and expires <= datetime.now(UTC):
        values["previous_secret_expires_at"] = None
    if secret is not None:
        values["secret"] = secret
    return values


def encode_cursor(value: int) -> str:
    return base64.urlsafe_b64encode(str(value).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        return int(text)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise invalid("cursor", "not a cursor returned by this API") from None


def _page(rows: list[Any], limit: int, key: str) -> dict[str, Any]:
    items = [_aware_row(row) for row in rows[:limit]]
    next_cursor = encode_cursor(items[-1][key]) if len(rows) > limit and items else None
    return {"items": items, "next_cursor": next_cursor}


# -- webhook endpoints ---------------------------------------------------------------------------

endpoints_blp = Blueprint(
    "webhook-endpoints",
    __name__,
    url_prefix="/v1/webhook-endpoints",
    description="Signed webhooks to partner apps (Standard Webhooks), their deliveries and retries",
)


@endpoints_blp.route("")
class EndpointCollection(MethodView):
    @endpoints_blp.arguments(PageArgsSchema, location="query")
    @endpoints_blp.response(200, EndpointPageSchema)
    def get(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """List the tenant's webhook endpoints (oldest first)."""
        caller = _caller()
        after = decode_cursor(args["cursor"])
        query = select(endpoints).where(endpoints.c.tenant_id == caller.tenant_id)
        # Cursor = offset: endpoints are few per tenant, and ids are random uuids.
        with read(engine()) as conn:
            rows = conn.execute(
                query.order_by(endpoints.c.created_at, endpoints.c.id).offset(after or 0).limit(args["limit"] + 1)
            ).all()
        items = [_endpoint(row) for row in rows[: args["limit"]]]
        more = len(rows) > args["limit"]
        return {"items": items, "next_cursor": encode_cursor((after or 0) + args["limit"]) if more else None}

    @endpoints_blp.arguments(EndpointCreateSchema)
    @endpoints_blp.response(201, EndpointWithSecretSchema)
    def post(self, body: Mapping[str, Any]) -> Any:
        """Create an endpoint; the answer carries its signing secret, shown this once."""
        row, secret = handlers.create_endpoint(
            engine(),
            _caller(),
            url=body["url"],
            event_types=body["event_types"],
            description=body["description"],
        )
        return _endpoint(row, secret), 201, {"Location": f"/v1/webhook-endpoints/{row.id}"}


@endpoints_blp.route("/<endpoint_id>")
class EndpointItem(MethodView):
    @endpoints_blp.response(200, EndpointSchema)
    def get(self, endpoint_id: str) -> dict[str, Any]:
        """One endpoint (without its secret)."""
        return _endpoint(handlers.get_endpoint(engine(), _caller(), endpoint_id))

    @endpoints_blp.arguments(EndpointPatchSchema)
    @endpoints_blp.response(200, EndpointSchema)
    def patch(self, body: Mapping[str, Any], endpoint_id: str) -> dict[str, Any]:
        """Change url, event types or description; a new URL is vetted like on create."""
        return _endpoint(handlers.update_endpoint(engine(), _caller(), endpoint_id, dict(body)))

    @endpoints_blp.response(204)
    def delete(self, endpoint_id: str) -> Response:
        """Delete the endpoint, its pending deliveries and its attempt log."""
        handlers.delete_endpoint(engine(), _caller(), endpoint_id)
        return Response(status=204)


@endpoints_blp.route("/<endpoint_id>/rotate-secret", methods=["POST"])
@endpoints_blp.response(200, EndpointWithSecretSchema)
def rotate_secret(endpoint_id: str) -> dict[str, Any]:
    """New secret; the old one keeps signing for 24 hours (two signatures in the header)."""
    row, secret = handlers.rotate_secret(engine(), _caller(), endpoint_id)
    return _endpoint(row, secret)


@endpoints_blp.route("/<endpoint_id>/enable", methods=["POST"])
@endpoints_blp.response(200, EndpointSchema)
def enable(endpoint_id: str) -> dict[str, Any]:
    """Enable a disabled endpoint (failed and skipped messages: see redeliver-failed)."""
    return _endpoint(handlers.enable_endpoint(engine(), _caller(), endpoint_id))


@endpoints_blp.route("/<endpoint_id>/disable", methods=["POST"])
@endpoints_blp.response(200, EndpointSchema)
def disable(endpoint_id: str) -> dict[str, Any]:
    """Disable by hand; events arriving meanwhile are recorded as skipped."""
    return _endpoint(handlers.disable_endpoint(engine(), _caller(), endpoint_id))


@endpoints_blp.route("/<endpoint_id>/deliveries", methods=["GET"])
@endpoints_blp.arguments(AttemptArgsSchema, location="query")
@endpoints_blp.response(200, AttemptPageSchema)
def list_attempts(args: Mapping[str, Any], endpoint_id: str) -> dict[str, Any]:
    """The attempt log, newest first: one item per HTTP attempt."""
    caller = _caller()
    handlers.get_endpoint(engine(), caller, endpoint_id)
    query = select(attempts).where(attempts.c.endpoint_id == endpoint_id, attempts.c.tenant_id == caller.tenant_id)
    if args["message_id"]:
        query = query.where(attempts.c.message_id == args["message_id"])
    before = decode_cursor(args["cursor"])
    if before is not None:
        query = query.where(attempts.c.id < before)
    with read(engine()) as conn:
        rows = conn.execute(query.order_by(attempts.c.id.desc()).limit(args["limit"] + 1)).all()
    return _page(rows, args["limit"], "id")


@endpoints_blp.route("/<endpoint_id>/messages", methods=["GET"])
@endpoints_blp.arguments(MessageArgsSchema, location="query")
@endpoints_blp.response(200, MessageDeliveryPageSchema)
def list_messages(args: Mapping[str, Any], endpoint_id: str) -> dict[str, Any]:
    """Each message routed to the endpoint with its delivery state, newest first."""
    caller = _caller()
    handlers.get_endpoint(engine(), caller, endpoint_id)
    query = select(deliveries).where(
        deliveries.c.endpoint_id == endpoint_id, deliveries.c.tenant_id == caller.tenant_id
    )
    if args["state"]:
        query = query.where(deliveries.c.state == args["state"])
    before = decode_cursor(args["cursor"])
    if before is not None:
        query = query.where(deliveries.c.id < before)
    with read(engine()) as conn:
        rows = conn.execute(query.order_by(deliveries.c.id.desc()).limit(args["limit"] + 1)).all()
    page = _page(rows, args["limit"], "id")
    return page


@endpoints_blp.route("/<endpoint_id>/deliveries/<message_id>/redeliver", methods=["POST"])
@endpoints_blp.response(202, MessageDeliverySchema)
def redeliver(endpoint_id: str, message_id: str) -> dict[str, Any]:
    """Send one message again now, with a fresh retry schedule (same webhook-id)."""
    return _aware_row(handlers.redeliver_message(engine(), _caller(), endpoint_id, message_id))


@endpoints_blp.route("/<endpoint_id>/redeliver-failed", methods=["POST"])
@endpoints_blp.arguments(RedeliverFailedSchema)
@endpoints_blp.response(202, RequeuedSchema)
def redeliver_failed(body: Mapping[str, Any], endpoint_id: str) -> dict[str, Any]:
    """Queue again every failed or skipped (endpoint disabled) message since ``since``."""
    return {"requeued": handlers.redeliver_failed(engine(), _caller(), endpoint_id, body["since"])}


# -- coach feed ------------------------------------------------------------------------------------

feed_blp = Blueprint(
    "coach-notifications",
    __name__,
    url_prefix="/v1/coaches",
    description="What a coach should know about their clients: slips, missed days, risk, milestones",
)


@feed_blp.route("/<coach_id>/notifications", methods=["GET"])
@feed_blp.arguments(FeedArgsSchema, location="query")
@feed_blp.response(200, FeedPageSchema)
def coach_feed(args: Mapping[str, Any], coach_id: str) -> dict[str, Any]:
    """The coach's notifications, newest first. Admin, or that coach's own token."""
    principal = require_role("admin", "coach")
    if principal.role == "coach" and principal.subject_id != coach_id:
        raise Problem(403, "a coach reads only their own notifications")
    query = select(feed_items).where(feed_items.c.tenant_id == principal.tenant_id, feed_items.c.coach_id == coach_id)
    if args["kind"]:
        query = query.where(feed_items.c.kind == args["kind"])
    before = decode_cursor(args["cursor"])
    if before is not None:
        query = query.where(feed_items.c.position < before)
    with read(engine()) as conn:
        if principal.role == "admin":
            known = conn.execute(
                select(coaches.c.coach_id).where(
                    coaches.c.tenant_id == principal.tenant_id, coaches.c.coach_id == coach_id
                )
            ).first()
            if known is None:
                raise not_found("coach")
        rows = conn.execute(query.order_by(feed_items.c.position.desc()).limit(args["limit"] + 1)).all()
    items = [_aware_row(row) for row in rows[: args["limit"]]]
    next_cursor = encode_cursor(items[-1]["position"]) if len(rows) > args["limit"] and items else None
    return {"items": items, "next_cursor": next_cursor}


BLUEPRINTS = (endpoints_blp, feed_blp)
