"""HTTP API of the commitment service: tenants, credentials, commitments, coach assignments.

One flask-smorest Blueprint per resource; each marshmallow schema is the validation, the
OpenAPI document and the serialisation at once. Views parse, call a handler (commands) or
a query (`queries`), shape the answer. The domain checks its rules again (it never trusts
the edge), and its errors become problem+json in `shared.web`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import url_for
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates
from sqlalchemy.engine import Row

from shared import keyring
from shared.auth import TOKEN_ROLES
from shared.calendar import is_valid_timezone
from shared.commands import Context
from shared.db import read
from shared.errors import NotFound, ValidationFailed
from shared.web import context, correlation_id, engine, etag, if_match, now, principal, require_role, require_tenant

from . import handlers, queries
from .domain import commitment, tenancy
from .domain.commitment import CHANNELS, RELATIONSHIPS, Status

DEFAULT_PAGE = 50
MAX_PAGE = 200

# Examples of the OpenAPI documents (shared.openapi composes each operation's from its fields').
TENANT_ID = "7d9a4c1e-2f3b-4a5c-8d6e-0f1a2b3c4d5e"
KEY_ID = "09e8d217-a53d-40d6-8e12-a201d6eb9052"
API_KEY = "nck_EXAMPLE-admin-key-shown-once-0123456789abcd"
COMMITMENT_ID = "73086767-b067-433e-aebd-e40f286c24eb"
MEMBER_ID = "member-42"
COACH_ID = "coach-maria"
AT = "2027-03-10T08:30:00+00:00"
TOKEN = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJtZW1iZXItNDIiLCJyb2xlIjoibWVtYmVyIn0.EXAMPLE"


# -- schemas --------------------------------------------------------------------------------


class TenantCreateSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(1, tenancy.TENANT_NAME_MAX),
                         metadata={"example": "Acme Support"})


class TenantCreatedSchema(Schema):
    id = fields.String(metadata={"example": TENANT_ID})
    name = fields.String(metadata={"example": "Acme Support"})
    api_key = fields.String(metadata={"description": "shown once; only its hash is kept", "example": API_KEY})


class ApiKeyCreateSchema(Schema):
    tenant_id = fields.String(validate=validate.Length(1, 64), metadata={
        "description": "the operator names the tenant (required with the operator token); an admin key "
                       "issues for its own tenant and may leave it out", "example": TENANT_ID})


class ApiKeyCreatedSchema(Schema):
    id = fields.String(metadata={"example": KEY_ID})
    api_key = fields.String(metadata={"description": "shown once; only its hash is kept", "example": API_KEY})


class ApiKeySchema(Schema):
    id = fields.String(metadata={"example": KEY_ID})
    prefix = fields.String(metadata={"example": API_KEY[:12]})
    role = fields.String(metadata={"example": "admin"})
    issued_at = fields.AwareDateTime(metadata={"example": AT})
    revoked_at = fields.AwareDateTime(allow_none=True, metadata={"example": None})


class ApiKeyListSchema(Schema):
    items = fields.List(fields.Nested(ApiKeySchema))


class TokenRequestSchema(Schema):
    role = fields.String(required=True, validate=validate.OneOf(TOKEN_ROLES), metadata={"example": "member"})
    subject_id = fields.String(required=True, validate=validate.Length(1, tenancy.SUBJECT_ID_MAX),
                               metadata={"example": MEMBER_ID})
    ttl_seconds = fields.Integer(strict=True, load_default=3600,
                                 validate=validate.Range(tenancy.TTL_MIN_SECONDS, tenancy.TTL_MAX_SECONDS),
                                 metadata={"example": 3600})


class TokenSchema(Schema):
    token = fields.String(metadata={"description": "a JWT naming the API key that minted it (`key_id`) and its "
                                                   "own id (`jti`); revoking either stops it on every service",
                                                   "example": TOKEN})
    expires_at = fields.AwareDateTime(metadata={"example": "2027-03-10T09:30:00+00:00"})


class TokenRevocationSchema(Schema):
    token = fields.String(required=True, validate=validate.Length(1, 8192), metadata={"example": TOKEN})


class ContactSchema(Schema):
    label = fields.String(required=True, validate=validate.Length(1, commitment.LABEL_MAX),
                          metadata={"description": "a label such as 'Alex (ex)', never real data",
                                    "example": "Alex (ex)"})
    relationship = fields.String(required=True, validate=validate.OneOf(RELATIONSHIPS),
                                 metadata={"example": "romantic"})


EXCEPTIONS_EXAMPLE = [{"label": "Custody handover", "channels": ["texts", "in_person"]}]
PLACES_EXAMPLE = [{"label": "Their street"}]


class NecessaryContactSchema(Schema):
    label = fields.String(required=True, validate=validate.Length(1, commitment.LABEL_MAX),
                          metadata={"description": "e.g. 'Custody handover', 'Lawyer', 'Work'",
                                    "example": EXCEPTIONS_EXAMPLE[0]["label"]})
    channels = fields.List(fields.String(validate=validate.OneOf(CHANNELS)), required=True,
                           validate=validate.Length(min=1),
                           metadata={"description": "over which of the commitment's channels the contact may happen",
                                     "example": EXCEPTIONS_EXAMPLE[0]["channels"]})


class PlaceSchema(Schema):
    label = fields.String(required=True, validate=validate.Length(1, commitment.LABEL_MAX),
                          metadata={"description": "e.g. 'Their street', 'The climbing gym'",
                                    "example": PLACES_EXAMPLE[0]["label"]})


def _exceptions(**options: Any) -> fields.List:
    return fields.List(
        fields.Nested(NecessaryContactSchema), validate=validate.Length(max=commitment.EXCEPTIONS_MAX),
        metadata={"description": "Necessary contact the commitment allows (custody handovers, a lawyer, work), "
                                 f"at most {commitment.EXCEPTIONS_MAX}. A kept check-in names the one it used by "
                                 "its index in this list (`necessary_contact.exception`). Labels are personal.",
                  "example": EXCEPTIONS_EXAMPLE},
        **options,
    )


def _places(**options: Any) -> fields.List:
    return fields.List(
        fields.Nested(PlaceSchema), validate=validate.Length(max=commitment.PLACES_MAX),
        metadata={"description": f"Places the member avoids, at most {commitment.PLACES_MAX}. Labels are personal.",
                  "example": PLACES_EXAMPLE},
        **options,
    )


class CommitmentCreateSchema(Schema):
    member_id = fields.String(required=True, validate=validate.Length(1, commitment.MEMBER_ID_MAX),
                              metadata={"example": MEMBER_ID})
    contact = fields.Nested(ContactSchema, required=True)
    channels = fields.List(fields.String(validate=validate.OneOf(CHANNELS)), validate=validate.Length(min=1),
                           load_default=None, metadata={"description": "default: all channels",
                                                        "example": ["calls", "texts", "social_media"]})
    timezone = fields.String(required=True, metadata={"description": "IANA name, e.g. Europe/Berlin",
                                                      "example": "Europe/Berlin"})
    starts_on = fields.Date(load_default=None, metadata={"description": "default: today in timezone",
                                                         "example": "2027-03-10"})
    duration_days = fields.Integer(strict=True, allow_none=True, load_default=None,
                                   validate=validate.Range(commitment.DURATION_MIN, commitment.DURATION_MAX),
                                   metadata={"description": "null: indefinitely", "example": 90})
    motivation = fields.String(allow_none=True, load_default=None,
                               validate=validate.Length(max=commitment.MOTIVATION_MAX),
                               metadata={"example": "I want my evenings back"})
    exceptions = _exceptions(load_default=None)
    places = _places(load_default=None)

    @validates("timezone")
    def _timezone(self, value: str, **_: Any) -> None:
        if not is_valid_timezone(value):
            raise ValidationError("must be an IANA time zone name such as Europe/Berlin")


class ExtendSchema(Schema):
    additional_days = fields.Integer(strict=True, allow_none=True, load_default=None,
                                     validate=validate.Range(commitment.DURATION_MIN, commitment.DURATION_MAX),
                                     metadata={"example": 30})
    # JSON true/false only: marshmallow would otherwise read "yes" or 1 as true.
    indefinite = fields.Boolean(load_default=False, truthy={True}, falsy={False}, metadata={"example": False})


class BoundariesSchema(Schema):
    """Both lists, in full: what is not in them is no longer a boundary."""

    exceptions = _exceptions(required=True)
    places = _places(required=True)


class EndSchema(Schema):
    reason = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=commitment.REASON_MAX),
                           metadata={"example": "the member moved to another programme"})


class CommitmentSchema(Schema):
    id = fields.String(metadata={"example": COMMITMENT_ID})
    member_id = fields.String(metadata={"example": MEMBER_ID})
    contact = fields.Nested(ContactSchema)
    channels = fields.List(fields.String(), metadata={"example": ["calls", "texts", "social_media"]})
    timezone = fields.String(metadata={"example": "Europe/Berlin"})
    starts_on = fields.Date(metadata={"example": "2027-03-10"})
    duration_days = fields.Integer(allow_none=True, metadata={"example": 90})
    ends_on = fields.Date(allow_none=True, metadata={"description": "last day, or null when indefinite",
                                                     "example": "2027-06-07"})
    motivation = fields.String(allow_none=True, metadata={"example": "I want my evenings back"})
    exceptions = _exceptions()
    places = _places()
    status = fields.String(metadata={"description": "active | completed | ended (completed as soon as "
                                                    "ends_on has passed in timezone)", "example": "active"})
    ended_on = fields.Date(allow_none=True, metadata={"example": None})
    coach_id = fields.String(allow_none=True, metadata={"example": COACH_ID})
    created_at = fields.AwareDateTime(metadata={"example": AT})
    version = fields.Integer(metadata={"description": "also the ETag; send it as If-Match", "example": 1})


class CommitmentQuerySchema(Schema):
    class Meta:
        unknown = EXCLUDE

    member_id = fields.String(validate=validate.Length(1, commitment.MEMBER_ID_MAX))
    status = fields.String(validate=validate.OneOf([s.value for s in Status]))
    limit = fields.Integer(load_default=DEFAULT_PAGE, validate=validate.Range(1, MAX_PAGE))
    cursor = fields.String()


class CommitmentPageSchema(Schema):
    items = fields.List(fields.Nested(CommitmentSchema))
    next_cursor = fields.String(allow_none=True, metadata={"example": None})


class EventSchema(Schema):
    id = fields.UUID(metadata={"example": "5fcd4da5-9d4a-4d9c-a9bf-21aad7f3390d"})
    type = fields.String(metadata={"example": "commitment.created"})
    schema_version = fields.Integer(metadata={"example": 1})
    stream_version = fields.Integer(metadata={"example": 1})
    occurred_at = fields.AwareDateTime(metadata={"example": AT})
    recorded_at = fields.AwareDateTime(metadata={"example": AT})
    actor = fields.String(allow_none=True, metadata={"example": f"api_key:{KEY_ID}"})
    correlation_id = fields.String(allow_none=True, metadata={"example": "c2d2173b-d360-443b-98b9-6169d2362cdb"})
    causation_id = fields.String(allow_none=True, metadata={"example": None})
    data = fields.Dict(metadata={"example": {"commitment_id": COMMITMENT_ID, "member_id": MEMBER_ID,
                                             "contact": {"label": "Alex (ex)", "relationship": "romantic"},
                                             "timezone": "Europe/Berlin", "starts_on": "2027-03-10",
                                             "duration_days": 90, "ends_on": "2027-06-07"}})


# -- shaping ------------------------------------------------------------------------------------


def resource(row: Row[Any], at: datetime) -> dict[str, Any]:
    return {
        "id": row.commitment_id,
        "member_id": row.member_id,
        "contact": {"label": row.contact_label, "relationship": row.relationship},
        "channels": row.channels,
        "timezone": row.timezone,
        "starts_on": row.starts_on,
        "duration_days": row.duration_days,
        "ends_on": row.ends_on,
        "motivation": row.motivation,
        "exceptions": row.exceptions,
        "places": row.places,
        "status": queries.status_of(row, at),
        "ended_on": row.ended_on,
        "coach_id": row.coach_id,
        "created_at": row.created_at,
        "version": row.version,
    }


def _answer(commitment_id: str, status: int = 200) -> tuple[dict[str, Any], int, dict[str, str]]:
    """The commitment as the caller now reads it, with its ETag (and Location when new)."""
    caller = principal()
    with read(engine()) as conn:
        row = queries.visible_commitment(conn, caller, commitment_id)
        body = keyring.Opener(conn, str(caller.tenant_id)).open_all(resource(row, now()))
    headers = {"ETag": etag(body["version"])}
    if status == 201:
        headers["Location"] = url_for("commitments.Commitment", commitment_id=commitment_id)
    return body, status, headers


# -- blueprints ---------------------------------------------------------------------------------

tenants_blp = Blueprint("tenants", __name__, url_prefix="/v1/tenants",
                        description="Tenants (partner platforms), created by the operator")
credentials_blp = Blueprint("credentials", __name__, url_prefix="/v1",
                            description="Admin API keys and scoped coach/member tokens")
commitments_blp = Blueprint("commitments", __name__, url_prefix="/v1/commitments",
                            description="Commitments of no contact")
coaches_blp = Blueprint("coaches", __name__, url_prefix="/v1/coaches", description="Coach assignments")


@tenants_blp.route("")
class Tenants(MethodView):
    @tenants_blp.arguments(TenantCreateSchema)
    @tenants_blp.response(201, TenantCreatedSchema)
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create a tenant and its first admin API key (operator token only)."""
        require_role("operator")
        tenant, key = handlers.create_tenant(engine(), name=body["name"], now=now(),
                                             correlation_id=correlation_id())
        return {"id": tenant.id, "name": tenant.name, "api_key": key.api_key}


@credentials_blp.route("/api-keys")
class ApiKeys(MethodView):
    @credentials_blp.response(200, ApiKeyListSchema)
    def get(self) -> dict[str, Any]:
        """The tenant's API keys (prefix only; the keys themselves are never kept)."""
        caller = require_role("admin")
        with read(engine()) as conn:
            keys = queries.api_keys(conn, caller)
        return {"items": [{"id": k.key_id, "prefix": k.prefix, "role": k.role, "issued_at": k.issued_at,
                           "revoked_at": k.revoked_at} for k in keys]}

    @credentials_blp.arguments(ApiKeyCreateSchema, required=False)
    @credentials_blp.response(201, ApiKeyCreatedSchema)
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Issue another admin API key; it is shown this once and works on every service as
        soon as this answer is sent.

        An admin key issues one for its own tenant. The operator token issues one for the
        tenant named by `tenant_id` (404 if none): a tenant that revoked its last key is
        not locked out.
        """
        caller = require_role("admin", "operator")
        if caller.role == "operator":
            if "tenant_id" not in body:
                raise ValidationFailed("tenant_id", "is required with the operator token")
            issuer = Context(tenant_id=body["tenant_id"], actor=caller.actor, correlation_id=correlation_id())
        elif body.get("tenant_id", caller.tenant_id) != caller.tenant_id:
            raise NotFound("no such tenant")  # another tenant's id: as if it did not exist
        else:
            issuer = context()
        key = handlers.issue_api_key(engine(), issuer, now=now())
        return {"id": key.key_id, "api_key": key.api_key}


@credentials_blp.route("/api-keys/<string:key_id>")
class ApiKey(MethodView):
    @credentials_blp.response(204)
    def delete(self, key_id: str) -> None:
        """Revoke a key, and every token it minted: once this answer is sent, no service
        accepts them."""
        require_role("admin")
        handlers.revoke_api_key(engine(), context(), key_id, now=now())


@credentials_blp.route("/tokens")
class Tokens(MethodView):
    @credentials_blp.arguments(TokenRequestSchema)
    @credentials_blp.response(201, TokenSchema)
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """A scoped token: a member acts on its own commitments, a coach reads its clients."""
        caller = require_role("admin")
        token, expires_at = handlers.issue_token(caller, now=now(), **body)
        return {"token": token, "expires_at": expires_at}


@credentials_blp.route("/tokens/revoke")
class TokenRevocation(MethodView):
    @credentials_blp.arguments(TokenRevocationSchema)
    @credentials_blp.response(204)
    def post(self, body: dict[str, Any]) -> None:
        """Revoke one scoped token of the tenant: once this answer is sent, no service
        accepts it. Idempotent: an expired or already revoked token answers 204 too; a
        string that is not one of this tenant's tokens is a 422 naming `token`. (Only admin
        keys mint tokens; the operator has no token path of its own.)"""
        require_role("admin")
        handlers.revoke_token(engine(), context(), body["token"], now=now())


@commitments_blp.route("")
class Commitments(MethodView):
    @commitments_blp.arguments(CommitmentCreateSchema)
    @commitments_blp.response(201, CommitmentSchema)
    def post(self, body: dict[str, Any]) -> Any:
        """Open a commitment (admin key, or the member's own token)."""
        commitment_id = handlers.create_commitment(engine(), principal(), context(), now=now(), **body)
        return _answer(commitment_id, 201)

    @commitments_blp.arguments(CommitmentQuerySchema, location="query")
    @commitments_blp.response(200, CommitmentPageSchema)
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """Commitments visible to the caller, oldest first, `limit` per page."""
        caller = require_tenant()
        at = now()
        with read(engine()) as conn:
            page = queries.commitments_page(conn, caller, at=at, **query)
            items = [resource(row, at) for row in page.rows]
            opener = keyring.Opener(conn, str(caller.tenant_id))
            opener.prefetch(items)
            items = [opener.open_all(item) for item in items]
        return {"items": items, "next_cursor": page.next_cursor}


@commitments_blp.route("/<string:commitment_id>", endpoint="Commitment")
class CommitmentView(MethodView):
    @commitments_blp.response(200, CommitmentSchema)
    def get(self, commitment_id: str) -> Any:
        """One commitment; its `version` is also the ETag."""
        require_tenant()
        return _answer(commitment_id)


@commitments_blp.route("/<string:commitment_id>/extend")
class Extend(MethodView):
    @commitments_blp.arguments(ExtendSchema)
    @commitments_blp.response(200, CommitmentSchema)
    def post(self, body: dict[str, Any], commitment_id: str) -> Any:
        """Add days, or make it indefinite (409 unless active). Honours If-Match."""
        caller = require_tenant()
        handlers.extend_commitment(engine(), caller, context(), commitment_id, now=now(), if_match=if_match(), **body)
        return _answer(commitment_id)


@commitments_blp.route("/<string:commitment_id>/end")
class End(MethodView):
    @commitments_blp.arguments(EndSchema)
    @commitments_blp.response(200, CommitmentSchema)
    def post(self, body: dict[str, Any], commitment_id: str) -> Any:
        """End early (409 unless active). Honours If-Match."""
        caller = require_tenant()
        handlers.end_commitment(engine(), caller, context(), commitment_id, now=now(), if_match=if_match(), **body)
        return _answer(commitment_id)


@commitments_blp.route("/<string:commitment_id>/boundaries")
class Boundaries(MethodView):
    @commitments_blp.arguments(BoundariesSchema)
    @commitments_blp.response(200, CommitmentSchema)
    def put(self, body: dict[str, Any], commitment_id: str) -> Any:
        """Replace the boundaries: `exceptions` and `places`, both in full (admin key, or the
        member's own token). 409 unless active; the same boundaries again change nothing
        (no event, same version). Honours If-Match (412 when the commitment changed).
        Event `commitment.boundaries_changed`."""
        caller = require_tenant()
        handlers.change_boundaries(engine(), caller, context(), commitment_id, now=now(), if_match=if_match(),
                                   **body)
        return _answer(commitment_id)


@commitments_blp.route("/<string:commitment_id>/history")
class History(MethodView):
    @commitments_blp.response(200, EventSchema(many=True))
    def get(self, commitment_id: str) -> list[Any]:
        """The commitment's domain events, oldest first."""
        caller = require_tenant()
        with read(engine()) as conn:
            return queries.history(conn, caller, commitment_id)


@coaches_blp.route("/<string:coach_id>/clients/<string:member_id>")
class CoachClient(MethodView):
    @coaches_blp.response(204)
    def put(self, coach_id: str, member_id: str) -> None:
        """Assign the member (all commitments, also future ones) to the coach."""
        require_role("admin")
        handlers.assign_coach(engine(), context(), coach_id=coach_id, member_id=member_id, now=now())

    @coaches_blp.response(204)
    def delete(self, coach_id: str, member_id: str) -> None:
        """Remove the member from this coach (no-op if another coach has them)."""
        require_role("admin")
        handlers.unassign_coach(engine(), context(), coach_id=coach_id, member_id=member_id, now=now())


BLUEPRINTS = (tenants_blp, credentials_blp, commitments_blp, coaches_blp)
