"""HTTP API of the notification service: webhook endpoints, their deliveries, the coach feed.

The marshmallow schemas are the validation, the OpenAPI document and the serialisation.
Views parse, call a handler (services.notification.handlers) or a query
(services.notification.queries), and shape the answer. Every query is scoped to the
caller's tenant: another tenant's ids answer 404.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Response
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from services.notification import handlers, members, queries
from services.notification.delivery import queue
from services.notification.domain.messages import WEBHOOK_EVENT_TYPES, WILDCARD
from shared.commands import Context
from shared.errors import Forbidden, NotFound
from shared.web import context, engine, now, require_role

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
        if data["since"] > now():
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


def _admin() -> Context:
    """The command context of a tenant's admin (the only role that manages webhooks)."""
    require_role("admin")
    return context()


def _tenant() -> str:
    tenant_id = _admin().tenant_id
    assert tenant_id is not None  # admins always belong to a tenant
    return tenant_id


def _shown(endpoint: dict[str, Any]) -> dict[str, Any]:
    """The rotated-out secret's expiry is news only while that secret still signs."""
    expires = endpoint["previous_secret_expires_at"]
    if expires is not None and expires <= now():
        endpoint["previous_secret_expires_at"] = None
    return endpoint


def _endpoint(endpoint_id: str, secret: str | None = None) -> dict[str, Any]:
    """The endpoint as the API shows it, with its new secret after a create or rotate."""
    shown = _shown(queries.endpoint(engine(), _tenant(), endpoint_id))
    if secret is not None:
        shown["secret"] = secret
    return shown


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
        page = queries.endpoints_page(engine(), _tenant(), limit=args["limit"], cursor=args["cursor"])
        return {**page, "items": [_shown(item) for item in page["items"]]}

    @endpoints_blp.arguments(EndpointCreateSchema)
    @endpoints_blp.response(201, EndpointWithSecretSchema)
    def post(self, body: Mapping[str, Any]) -> Any:
        """Create an endpoint; the answer carries its signing secret, shown this once."""
        endpoint_id, secret = handlers.create_endpoint(
            engine(),
            _admin(),
            url=body["url"],
            event_types=body["event_types"],
            description=body["description"],
            now=now(),
        )
        return _endpoint(endpoint_id, secret), 201, {"Location": f"/v1/webhook-endpoints/{endpoint_id}"}


@endpoints_blp.route("/<endpoint_id>")
class EndpointItem(MethodView):
    @endpoints_blp.response(200, EndpointSchema)
    def get(self, endpoint_id: str) -> dict[str, Any]:
        """One endpoint (without its secret)."""
        return _endpoint(endpoint_id)

    @endpoints_blp.arguments(EndpointPatchSchema)
    @endpoints_blp.response(200, EndpointSchema)
    def patch(self, body: Mapping[str, Any], endpoint_id: str) -> dict[str, Any]:
        """Change url, event types or description; a new URL is vetted like on create."""
        handlers.update_endpoint(engine(), _admin(), endpoint_id, dict(body), now=now())
        return _endpoint(endpoint_id)

    @endpoints_blp.response(204)
    def delete(self, endpoint_id: str) -> Response:
        """Delete the endpoint, its pending deliveries and its attempt log."""
        handlers.delete_endpoint(engine(), _admin(), endpoint_id, now=now())
        return Response(status=204)


@endpoints_blp.route("/<endpoint_id>/rotate-secret", methods=["POST"])
@endpoints_blp.response(200, EndpointWithSecretSchema)
def rotate_secret(endpoint_id: str) -> dict[str, Any]:
    """New secret; the old one keeps signing for 24 hours (two signatures in the header)."""
    secret = handlers.rotate_secret(engine(), _admin(), endpoint_id, now=now())
    return _endpoint(endpoint_id, secret)


@endpoints_blp.route("/<endpoint_id>/enable", methods=["POST"])
@endpoints_blp.response(200, EndpointSchema)
def enable(endpoint_id: str) -> dict[str, Any]:
    """Enable a disabled endpoint (failed and skipped messages: see redeliver-failed)."""
    handlers.enable_endpoint(engine(), _admin(), endpoint_id, now=now())
    return _endpoint(endpoint_id)


@endpoints_blp.route("/<endpoint_id>/disable", methods=["POST"])
@endpoints_blp.response(200, EndpointSchema)
def disable(endpoint_id: str) -> dict[str, Any]:
    """Disable by hand; events arriving meanwhile are recorded as skipped."""
    handlers.disable_endpoint(engine(), _admin(), endpoint_id, now=now())
    return _endpoint(endpoint_id)


@endpoints_blp.route("/<endpoint_id>/deliveries", methods=["GET"])
@endpoints_blp.arguments(AttemptArgsSchema, location="query")
@endpoints_blp.response(200, AttemptPageSchema)
def list_attempts(args: Mapping[str, Any], endpoint_id: str) -> dict[str, Any]:
    """The attempt log, newest first: one item per HTTP attempt."""
    return queries.attempts_page(
        engine(), _tenant(), endpoint_id, message_id=args["message_id"], limit=args["limit"], cursor=args["cursor"]
    )


@endpoints_blp.route("/<endpoint_id>/messages", methods=["GET"])
@endpoints_blp.arguments(MessageArgsSchema, location="query")
@endpoints_blp.response(200, MessageDeliveryPageSchema)
def list_messages(args: Mapping[str, Any], endpoint_id: str) -> dict[str, Any]:
    """Each message routed to the endpoint with its delivery state, newest first."""
    return queries.messages_page(
        engine(), _tenant(), endpoint_id, state=args["state"], limit=args["limit"], cursor=args["cursor"]
    )


@endpoints_blp.route("/<endpoint_id>/deliveries/<message_id>/redeliver", methods=["POST"])
@endpoints_blp.response(202, MessageDeliverySchema)
def redeliver(endpoint_id: str, message_id: str) -> dict[str, Any]:
    """Send one message again now, with a fresh retry schedule (same webhook-id)."""
    delivery_id = handlers.redeliver_message(engine(), _admin(), endpoint_id, message_id, now=now())
    return queries.delivery(engine(), _tenant(), delivery_id)


@endpoints_blp.route("/<endpoint_id>/redeliver-failed", methods=["POST"])
@endpoints_blp.arguments(RedeliverFailedSchema)
@endpoints_blp.response(202, RequeuedSchema)
def redeliver_failed(body: Mapping[str, Any], endpoint_id: str) -> dict[str, Any]:
    """Queue again every failed or skipped (endpoint disabled) message since ``since``."""
    return {"requeued": handlers.redeliver_failed(engine(), _admin(), endpoint_id, body["since"], now=now())}


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
        raise Forbidden("a coach reads only their own notifications")
    assert principal.tenant_id is not None  # admins and coaches belong to a tenant
    return queries.coach_feed(
        engine(),
        principal.tenant_id,
        coach_id,
        kind=args["kind"],
        limit=args["limit"],
        cursor=args["cursor"],
        known_coach_only=principal.role == "admin",
    )


# -- members ---------------------------------------------------------------------------------------

members_blp = Blueprint(
    "members",
    __name__,
    url_prefix="/v1/members",
    description="What this service holds about a member: the webhook messages about them, their coach feed",
)


class ExportSchema(Schema):
    member_id = fields.String()
    service = fields.String()
    exported_at = fields.String(metadata={"description": "ISO 8601 instant"})
    data = fields.Dict(metadata={"description": "everything this service holds about the member, in clear"})


@members_blp.route("/<member_id>/export", methods=["GET"])
@members_blp.response(200, ExportSchema)
def export_member(member_id: str) -> dict[str, Any]:
    """Everything this service holds about the member, personal values in clear (admin
    key, or the member's own token); 404 when it holds nothing."""
    principal = require_role("admin", "member")
    if principal.role == "member" and principal.subject_id != member_id:
        raise Forbidden("a member exports only their own data")
    assert principal.tenant_id is not None  # admins and members belong to a tenant
    exported = members.export_member(engine(), principal.tenant_id, member_id, now())
    if exported is None:
        raise NotFound("this service holds nothing about the member")
    return exported


BLUEPRINTS = (endpoints_blp, feed_blp, members_blp)
