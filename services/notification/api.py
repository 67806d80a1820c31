"""HTTP API of the notification service: webhook endpoints, their deliveries, the coach feed.

The marshmallow schemas are the validation, the OpenAPI document and the serialisation.
Views parse, call a handler (services.notification.handlers) or a query
(services.notification.queries), and shape the answer. Every query is scoped to the
caller's tenant: another tenant's ids answer 404.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from flask import Response
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from services.notification import handlers, members, queries
from services.notification.delivery import queue
from services.notification.domain.endpoints import parse_id
from services.notification.domain.messages import FEED_KINDS, WEBHOOK_EVENT_TYPES, WILDCARD, message_id
from shared import catalogue
from shared.auth import Principal
from shared.commands import Context
from shared.errors import Forbidden, NotFound
from shared.problems import PROBLEM_JSON, Problem
from shared.web import ProblemSchema, context, engine, now, require_role, require_tenant

MAX_PAGE = 100

# Examples of the OpenAPI documents (shared.openapi composes each operation's from its fields').
ENDPOINT_ID = "9a8f6a97-3f41-4d7f-9c31-8edf7c2623a8"
MESSAGE_ID = "msg_639ceaf49fe44738bf2186a87e8b1d4d"
HOOK_URL = "https://partner.example/webhooks/nocontact"
EVENT_TYPES = ["streak.milestone_reached", "checkin.missed"]
AT = "2027-03-10T08:30:00+00:00"

# -- schemas ---------------------------------------------------------------------------------


def _unique(values: list[str]) -> None:
    if len(set(values)) != len(values):
        raise ValidationError("event types must not repeat")


class EndpointCreateSchema(Schema):
    url = fields.String(required=True, validate=validate.Length(min=1, max=2048), metadata={"example": HOOK_URL})
    event_types = fields.List(
        fields.String(validate=validate.OneOf([*WEBHOOK_EVENT_TYPES, WILDCARD])),
        required=True,
        validate=[validate.Length(min=1, max=len(WEBHOOK_EVENT_TYPES) + 1), _unique],
        metadata={"description": "event types to receive; `*` for all", "example": EVENT_TYPES},
    )
    description = fields.String(load_default="", validate=validate.Length(max=1000),
                                metadata={"example": "Partner app: milestones and missed days"})


class EndpointPatchSchema(Schema):
    url = fields.String(validate=validate.Length(min=1, max=2048), metadata={"example": HOOK_URL})
    event_types = fields.List(
        fields.String(validate=validate.OneOf([*WEBHOOK_EVENT_TYPES, WILDCARD])),
        validate=[validate.Length(min=1, max=len(WEBHOOK_EVENT_TYPES) + 1), _unique],
        metadata={"example": ["*"]},
    )
    description = fields.String(validate=validate.Length(max=1000), metadata={"example": "Partner app: everything"})


class EndpointSchema(Schema):
    id = fields.String(metadata={"example": ENDPOINT_ID})
    url = fields.String(metadata={"example": HOOK_URL})
    description = fields.String(metadata={"example": "Partner app: milestones and missed days"})
    event_types = fields.List(fields.String(), metadata={"example": EVENT_TYPES})
    status = fields.String(metadata={"description": "enabled | disabled", "example": "enabled"})
    disabled_reason = fields.String(allow_none=True, metadata={"example": None})
    previous_secret_expires_at = fields.AwareDateTime(
        allow_none=True, metadata={"description": "until when the rotated-out secret still signs", "example": None}
    )
    created_at = fields.AwareDateTime(metadata={"example": AT})
    updated_at = fields.AwareDateTime(metadata={"example": AT})


class EndpointWithSecretSchema(EndpointSchema):
    secret = fields.String(metadata={"description": "whsec_...: shown only on create and rotate",
                                     "example": "whsec_RVhBTVBMRS1zaWduaW5nLXNlY3JldCEh"})


class EndpointPageSchema(Schema):
    items = fields.List(fields.Nested(EndpointSchema))
    next_cursor = fields.String(allow_none=True, metadata={"example": None})


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
    id = fields.Integer(metadata={"example": 812})
    message_id = fields.String(metadata={"example": MESSAGE_ID})
    event_type = fields.String(metadata={"example": "streak.milestone_reached"})
    attempt = fields.Integer(metadata={"description": "attempt number of this message, from 1", "example": 2})
    status_code = fields.Integer(allow_none=True, metadata={"example": 503})
    duration_ms = fields.Integer(metadata={"example": 184})
    error = fields.String(allow_none=True, metadata={"example": "HTTP 503"})
    response_excerpt = fields.String(
        allow_none=True,
        metadata={
            "description": "the first KiB of the receiver's reply, as plain text: invalid UTF-8 and control "
            "characters (but line feeds and tabs) replaced by U+FFFD. Show it as text, never as HTML",
            "example": "Service Unavailable"
        },
    )
    state = fields.String(metadata={"description": "after this attempt: succeeded | retrying | failed",
                                    "example": "retrying"})
    next_attempt_at = fields.AwareDateTime(allow_none=True, metadata={"example": "2027-03-10T09:00:00+00:00"})
    attempted_at = fields.AwareDateTime(metadata={"example": AT})


class AttemptPageSchema(Schema):
    items = fields.List(fields.Nested(AttemptSchema))
    next_cursor = fields.String(allow_none=True, metadata={"example": None})


class MessageDeliverySchema(Schema):
    message_id = fields.String(metadata={"example": MESSAGE_ID})
    event_type = fields.String(metadata={"example": "streak.milestone_reached"})
    state = fields.String(metadata={"description": "pending | succeeded | failed | skipped_disabled",
                                    "example": "pending"})
    attempts = fields.Integer(metadata={"example": 2})
    next_attempt_at = fields.AwareDateTime(allow_none=True, metadata={"example": "2027-03-10T09:00:00+00:00"})
    last_status_code = fields.Integer(allow_none=True, metadata={"example": 503})
    last_error = fields.String(allow_none=True, metadata={"example": "HTTP 503"})
    last_attempt_at = fields.AwareDateTime(allow_none=True, metadata={"example": AT})
    created_at = fields.AwareDateTime(metadata={"example": "2027-03-10T08:29:59+00:00"})


class MessageDeliveryPageSchema(Schema):
    items = fields.List(fields.Nested(MessageDeliverySchema))
    next_cursor = fields.String(allow_none=True, metadata={"example": None})


class RedeliverFailedSchema(Schema):
    since = fields.AwareDateTime(required=True, metadata={"description": "redeliver what failed since",
                                                          "example": "2027-03-09T00:00:00+00:00"})

    @validates_schema
    def _not_future(self, data: dict[str, Any], **_: Any) -> None:
        if data["since"] > now():
            raise ValidationError("must not be in the future", "since")


class RequeuedSchema(Schema):
    requeued = fields.Integer(metadata={"example": 4})


class FeedItemSchema(Schema):
    id = fields.Integer(metadata={"example": 57})
    kind = fields.String(metadata={"description": " | ".join(FEED_KINDS), "example": "milestone"})
    event_type = fields.String(metadata={"example": "streak.milestone_reached"})
    event_id = fields.String(metadata={"example": "639ceaf4-9fe4-4738-bf21-86a87e8b1d4d"})
    commitment_id = fields.String(metadata={"example": "73086767-b067-433e-aebd-e40f286c24eb"})
    member_id = fields.String(metadata={"example": "member-42"})
    occurred_at = fields.AwareDateTime(metadata={"example": AT})
    data = fields.Dict(metadata={
        "description": "the event's data, without the member's notes (an SOS keeps its message: it is written "
                       "to the coach)",
        "example": {"milestone": 7, "run_started_on": "2027-03-04", "current_days": 7}})
    pinned = fields.Boolean(metadata={
        "description": "on top of the feed now: an SOS, until acknowledged or for 24 h after it was sent",
        "example": False})
    pinned_until = fields.AwareDateTime(allow_none=True, metadata={
        "description": "when a pinned kind (sos) stops being pinned if not acknowledged before; null: never pinned",
        "example": None})
    acknowledged_at = fields.AwareDateTime(allow_none=True, metadata={"example": None})
    acknowledged_by = fields.String(allow_none=True, metadata={
        "description": "the credential that acknowledged it (coach:<id> or api_key:<id>)", "example": None})


class FeedPageSchema(Schema):
    items = fields.List(fields.Nested(FeedItemSchema))
    next_cursor = fields.String(allow_none=True, metadata={"example": None})


class FeedArgsSchema(PageArgsSchema):
    kind = fields.String(load_default=None, validate=validate.OneOf(FEED_KINDS))


class EventTypeChoiceSchema(Schema):
    event_type = fields.String(
        required=True,
        validate=validate.OneOf(WEBHOOK_EVENT_TYPES),
        metadata={"description": "the type whose catalogue example is sent (GET /v1/event-types)",
                  "example": "streak.milestone_reached"},
    )


class MessageSchema(Schema):
    message_id = fields.String(metadata={"description": "the webhook-id header of every attempt",
                                         "example": MESSAGE_ID})
    event_id = fields.String(metadata={"example": "639ceaf4-9fe4-4738-bf21-86a87e8b1d4d"})
    event_type = fields.String(metadata={"example": "streak.milestone_reached"})
    test = fields.Boolean(metadata={"description": "a test event (POST .../test), not a real one", "example": False})
    occurred_at = fields.AwareDateTime(metadata={"example": AT})
    created_at = fields.AwareDateTime(metadata={"description": "when the message was queued",
                                                "example": "2027-03-10T08:30:01+00:00"})
    payload = fields.Dict(
        metadata={
            "description": "the body as sent (every attempt sends the same bytes). Personal values read null "
            "once the member's data was erased (so would a send after it)",
            "allOf": [catalogue.ref(catalogue.PAYLOAD_COMPONENT)],
        }
    )
    state = fields.String(metadata={"description": "at this endpoint: pending | succeeded | failed | skipped_disabled",
                                    "example": "succeeded"})
    next_attempt_at = fields.AwareDateTime(allow_none=True, metadata={"example": None})
    last_status_code = fields.Integer(allow_none=True, metadata={"example": 204})
    last_error = fields.String(allow_none=True, metadata={"example": None})
    last_attempt_at = fields.AwareDateTime(allow_none=True, metadata={"example": "2027-03-10T08:30:02+00:00"})
    attempts = fields.List(fields.Nested(AttemptSchema), metadata={"description": "its attempts, oldest first"})


class LatencySchema(Schema):
    p50 = fields.Integer(allow_none=True, metadata={"description": "null: no attempts in the window", "example": 120})
    p90 = fields.Integer(allow_none=True, metadata={"example": 310})
    p99 = fields.Integer(allow_none=True, metadata={"example": 870})


class WindowStatsSchema(Schema):
    since = fields.AwareDateTime(metadata={"description": "the window is (since, as_of]",
                                           "example": "2027-03-10T07:30:00+00:00"})
    attempts = fields.Integer(metadata={"example": 42})
    successes = fields.Integer(metadata={"description": "attempts answered with a 2xx", "example": 40})
    failures = fields.Integer(metadata={"description": "every other attempt: an error status, a timeout, "
                                        "a refused connection", "example": 2})
    latency_ms = fields.Nested(
        LatencySchema, metadata={"description": "percentiles of the attempts' durations (nearest rank)"}
    )


class StatsWindowsSchema(Schema):
    last_hour = fields.Nested(WindowStatsSchema, attribute="1h", data_key="1h")
    last_day = fields.Nested(WindowStatsSchema, attribute="24h", data_key="24h")
    last_week = fields.Nested(WindowStatsSchema, attribute="7d", data_key="7d")


class EndpointStatsSchema(Schema):
    endpoint_id = fields.String(metadata={"example": ENDPOINT_ID})
    as_of = fields.AwareDateTime(metadata={"example": AT})
    pending = fields.Integer(metadata={"description": "deliveries waiting for an attempt or a retry, now",
                                       "example": 3})
    windows = fields.Nested(StatsWindowsSchema)


class EventTypeSchema(Schema):
    type = fields.String(metadata={"enum": list(WEBHOOK_EVENT_TYPES), "example": "streak.milestone_reached"})
    description = fields.String(metadata={"example": "A streak reached one of the tenant's milestones."})
    schema = fields.Dict(
        metadata={
            "description": "JSON Schema (2020-12) of the body's data; in this document: components/schemas/"
            "<Type>Data (e.g. StreakMilestoneReachedData). Objects stay open: ignore fields you do not know",
            "example": {"type": "object", "properties": {"milestone": {"type": "integer"}}}
        }
    )
    example = fields.Dict(
        metadata={"description": "an example body of this type", "allOf": [catalogue.ref(catalogue.PAYLOAD_COMPONENT)]}
    )


class EventTypeListSchema(Schema):
    items = fields.List(fields.Nested(EventTypeSchema))


# -- documented answers -----------------------------------------------------------------------


def _problem(status: int, when: str, detail: str, field: str | None = None) -> tuple[str, dict[str, Any]]:
    """A documented problem answer: when it is given, and an example problem+json body."""
    errors = None if field is None else {field: [detail.removeprefix(f"{field}: ")]}
    return when, Problem(status, detail, errors=errors).body()


Problems = Mapping[int, tuple[str, dict[str, Any]]]

#: The problems every operation of a tenant's credential may answer.
CREDENTIAL_PROBLEMS: Problems = {
    401: _problem(401, "no credential, or one that is not valid (any more)",
                  "an Authorization: Bearer credential is required"),
    429: _problem(429, "the credential's rate limit is exceeded (see Retry-After and the RateLimit-* headers)",
                  "rate limit of 600 requests per minute exceeded for this credential; retry in 2 s"),
}
ADMIN_PROBLEMS: Problems = {
    **CREDENTIAL_PROBLEMS,
    403: _problem(403, "the credential is not an admin key", "this requires one of the roles: admin"),
}
ENDPOINT_NOT_FOUND: Problems = {
    404: _problem(404, "no such endpoint in the caller's tenant", "no such webhook endpoint"),
}


def problems(blp: Blueprint, documented: Problems) -> Callable[[Any], Any]:
    """Document the problem+json answers of an operation, with an example each."""

    def decorate(view: Any) -> Any:
        for status, (when, example) in sorted(documented.items(), reverse=True):
            view = blp.alt_response(
                status, schema=ProblemSchema, content_type=PROBLEM_JSON, description=when, example=example
            )(view)
        return view

    return decorate


def _example_message(event_type: str, *, test: bool) -> dict[str, Any]:
    """An example of MessageSchema: the catalogue's example of `event_type`, delivered."""
    payload = catalogue.CATALOGUE[event_type].example
    if test:
        payload["test"] = True
    event_id = payload["data"]["event_id"]
    attempt = {
        "id": 8121, "message_id": message_id(event_id), "event_type": event_type, "attempt": 1,
        "status_code": 200, "duration_ms": 84, "error": None, "response_excerpt": "ok", "state": "succeeded",
        "next_attempt_at": None, "attempted_at": "2026-11-21T20:45:13.117000+00:00",
    }
    return {
        "message_id": message_id(event_id), "event_id": event_id, "event_type": event_type, "test": test,
        "occurred_at": "2026-11-21T20:45:12+00:00", "created_at": "2026-11-21T20:45:12.861000+00:00",
        "payload": payload, "state": "succeeded", "next_attempt_at": None, "last_status_code": 200,
        "last_error": None, "last_attempt_at": "2026-11-21T20:45:13.117000+00:00", "attempts": [attempt],
    }


def _example_queued(event_type: str) -> dict[str, Any]:
    """An example of MessageSchema: a test event just queued, not yet attempted."""
    example = _example_message(event_type, test=True)
    return {**example, "state": "pending", "next_attempt_at": example["created_at"], "last_status_code": None,
            "last_attempt_at": None, "attempts": []}


def _example_stats() -> dict[str, Any]:
    def window(since: str, attempts: int, failures: int, p50: int, p90: int, p99: int) -> dict[str, Any]:
        return {"since": since, "attempts": attempts, "successes": attempts - failures, "failures": failures,
                "latency_ms": {"p50": p50, "p90": p90, "p99": p99}}

    return {
        "endpoint_id": "5b0f7c1e-2a44-4e0b-8d6f-0c1b9a7e3d21",
        "as_of": "2026-11-21T21:00:00+00:00",
        "pending": 3,
        "windows": {
            "1h": window("2026-11-21T20:00:00+00:00", 42, 0, 61, 140, 380),
            "24h": window("2026-11-20T21:00:00+00:00", 913, 12, 58, 151, 2210),
            "7d": window("2026-11-14T21:00:00+00:00", 6120, 97, 57, 149, 15000),
        },
    }


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


@endpoints_blp.route("/<endpoint_id>/messages/<message_id>", methods=["GET"])
@endpoints_blp.response(200, MessageSchema, example=_example_message("streak.milestone_reached", test=False))
@problems(
    endpoints_blp,
    {
        **ADMIN_PROBLEMS,
        404: _problem(404, "no such endpoint, or no such message routed to it", "no such message at this endpoint"),
    },
)
def get_message(endpoint_id: str, message_id: str) -> dict[str, Any]:
    """One message routed to the endpoint: the payload as sent, its delivery state at this
    endpoint and every attempt, oldest first (admin)."""
    return queries.message(engine(), _tenant(), endpoint_id, message_id)


@endpoints_blp.route("/<endpoint_id>/test", methods=["POST"])
@endpoints_blp.arguments(EventTypeChoiceSchema, example={"event_type": "streak.milestone_reached"})
@endpoints_blp.response(202, MessageSchema, example=_example_queued("streak.milestone_reached"))
@problems(
    endpoints_blp,
    {
        **ADMIN_PROBLEMS,
        **ENDPOINT_NOT_FOUND,
        409: _problem(
            409,
            "the endpoint is disabled (the detail says why): enable it first",
            "the endpoint is disabled (HTTP 410 Gone: receiver asked to stop): enable it before sending a test event",
        ),
        422: _problem(
            422,
            "event_type names no event type of the catalogue",
            "event_type: Must be one of: " + ", ".join(WEBHOOK_EVENT_TYPES) + ".",
            "event_type",
        ),
    },
)
def send_test_event(body: Mapping[str, Any], endpoint_id: str) -> Any:
    """Send a test event: the catalogue's example of `event_type` (GET /v1/event-types), with
    `"test": true` beside `type` and an event id of its own, signed and delivered like any
    message (retried on the schedule, in the attempt log), whatever types the endpoint
    subscribed to (admin). The answer is the message, queued; follow it at its Location."""
    sent = handlers.send_test_event(engine(), _admin(), endpoint_id, body["event_type"], now=now())
    location = f"/v1/webhook-endpoints/{parse_id(endpoint_id)}/messages/{sent}"
    return queries.message(engine(), _tenant(), endpoint_id, sent), 202, {"Location": location}


@endpoints_blp.route("/<endpoint_id>/stats", methods=["GET"])
@endpoints_blp.response(200, EndpointStatsSchema, example=_example_stats())
@problems(endpoints_blp, {**ADMIN_PROBLEMS, **ENDPOINT_NOT_FOUND})
def endpoint_stats(endpoint_id: str) -> dict[str, Any]:
    """The endpoint's attempts over the last hour, day and week: how many, successes (2xx),
    failures, and the 50th, 90th and 99th percentiles of their durations (admin)."""
    return queries.endpoint_stats(engine(), _tenant(), endpoint_id, now())


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


# -- the event catalogue ---------------------------------------------------------------------------

event_types_blp = Blueprint(
    "event-types",
    __name__,
    url_prefix="/v1/event-types",
    description="The event catalogue: every webhook event type, the JSON Schema of its data, an example",
)


@event_types_blp.route("", methods=["GET"])
@event_types_blp.response(200, EventTypeListSchema,
                          example={"items": [catalogue.CATALOGUE["streak.milestone_reached"].describe()]})
@problems(
    event_types_blp,
    {
        **CREDENTIAL_PROBLEMS,
        403: _problem(403, "the operator's token, which belongs to no tenant", "this requires a tenant credential"),
    },
)
def list_event_types() -> dict[str, Any]:
    """Every event type a webhook endpoint can receive, with its description, the JSON Schema
    (2020-12) of its `data` and an example body. Any credential of a tenant."""
    require_tenant()
    return {"items": catalogue.describe_all()}


# -- coach feed ------------------------------------------------------------------------------------

feed_blp = Blueprint(
    "coach-notifications",
    __name__,
    url_prefix="/v1/coaches",
    description="What a coach should know about their clients: SOS calls (pinned on top), slips, urges that "
    "ended in reaching out, missed days, risk, milestones",
)


def _coach_reader(coach_id: str) -> Principal:
    """Admin, or that coach's own token."""
    principal = require_role("admin", "coach")
    if principal.role == "coach" and principal.subject_id != coach_id:
        raise Forbidden("a coach reads only their own notifications")
    assert principal.tenant_id is not None  # admins and coaches belong to a tenant
    return principal


@feed_blp.route("/<coach_id>/notifications", methods=["GET"])
@feed_blp.arguments(FeedArgsSchema, location="query")
@feed_blp.response(200, FeedPageSchema)
def coach_feed(args: Mapping[str, Any], coach_id: str) -> dict[str, Any]:
    """The coach's notifications. Admin, or that coach's own token.

    SOS first: the first page (no `cursor`) starts with every pinned item, newest first
    and not counted in `limit`: an SOS is pinned until a coach acknowledges it
    (`POST .../notifications/{id}/acknowledge`) or for 24 hours after it was sent. Then
    the other items, newest first, `limit` per page; an item no longer pinned takes its
    place among them (by when it happened)."""
    principal = _coach_reader(coach_id)
    return queries.coach_feed(
        engine(),
        str(principal.tenant_id),
        coach_id,
        kind=args["kind"],
        limit=args["limit"],
        cursor=args["cursor"],
        known_coach_only=principal.role == "admin",
        now=now(),
    )


@feed_blp.route("/<coach_id>/notifications/<int:item_id>/acknowledge", methods=["POST"])
@feed_blp.response(200, FeedItemSchema)
@problems(feed_blp, {
    **CREDENTIAL_PROBLEMS,
    403: _problem(403, "a member's token, or another coach's", "a coach reads only their own notifications"),
    404: _problem(404, "no such item in this coach's feed (of the caller's tenant)", "no such notification"),
})
def acknowledge(coach_id: str, item_id: int) -> dict[str, Any]:
    """Acknowledge an item (admin, or that coach's own token): an SOS is no longer pinned
    on top of the feed. The first acknowledgement stands; repeating it changes nothing."""
    principal = _coach_reader(coach_id)
    handlers.acknowledge_feed_item(engine(), context(), coach_id, item_id, now=now())
    return queries.shown_feed_item(engine(), str(principal.tenant_id), coach_id, item_id, now())


# -- members ---------------------------------------------------------------------------------------

members_blp = Blueprint(
    "members",
    __name__,
    url_prefix="/v1/members",
    description="What this service holds about a member: the webhook messages about them, their coach feed",
)


class ExportSchema(Schema):
    member_id = fields.String(metadata={"example": "member-42"})
    service = fields.String(metadata={"example": "notification"})
    exported_at = fields.String(metadata={"description": "ISO 8601 instant", "example": AT})
    data = fields.Dict(metadata={"description": "everything this service holds about the member, in clear",
                                 "example": {"webhook_messages": [], "coach_feed": [], "coach_assignments": []}})


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


BLUEPRINTS = (endpoints_blp, event_types_blp, feed_blp, members_blp)
