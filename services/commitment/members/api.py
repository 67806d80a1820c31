"""HTTP API of members: profile, export, erasure (CONTRACT v1.1, "Members: their data is theirs")."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from shared.db import read
from shared.web import context, engine, now, principal, require_role, require_tenant

from ..domain import members as domain
from . import handlers, queries

blp = Blueprint("members", __name__, url_prefix="/v1/members",
                description="A member's profile, and their data: exported or erased on request")


MEMBER_ID = "member-42"  # the examples of the OpenAPI document
AT = "2027-03-10T08:30:00+00:00"


class ProfileUpdateSchema(Schema):
    display_name = fields.String(required=True, allow_none=True,
                                 validate=validate.Length(1, domain.DISPLAY_NAME_MAX),
                                 metadata={"description": "shown instead of the member id; null clears it",
                                           "example": "Sam"})


class ProfileSchema(Schema):
    member_id = fields.String(metadata={"example": MEMBER_ID})
    display_name = fields.String(allow_none=True, metadata={"example": "Sam"})
    updated_at = fields.AwareDateTime(metadata={"example": AT})
    version = fields.Integer(metadata={"example": 1})


class ErasureAcceptedSchema(Schema):
    member_id = fields.String(metadata={"example": MEMBER_ID})
    status = fields.String(metadata={"description": "erasing | erased", "example": "erasing"})


class ErasureSchema(ErasureAcceptedSchema):
    services = fields.Dict(keys=fields.String(), values=fields.String(),
                           metadata={"description": "each service's part: erasing | erased",
                                     "example": {"commitment": "erased", "checkin": "erased",
                                                 "notification": "erasing"}})
    requested_at = fields.AwareDateTime(metadata={"example": AT})
    erased_at = fields.AwareDateTime(allow_none=True, metadata={"example": None})


class ExportSchema(Schema):
    member_id = fields.String(metadata={"example": MEMBER_ID})
    service = fields.String(metadata={"example": "commitment"})
    exported_at = fields.String(metadata={"description": "ISO 8601 instant", "example": AT})
    data = fields.Dict(metadata={"description": "everything this service holds about the member, in clear",
                                 "example": {"profile": {"display_name": "Sam"},
                                             "commitments": [{"id": "73086767-b067-433e-aebd-e40f286c24eb",
                                                              "contact": {"label": "Alex (ex)"}}]}})


def _tenant_of_caller(member_id: str) -> str:
    caller = require_tenant()
    domain.require_may_act_for(caller, member_id)
    assert caller.tenant_id is not None
    return caller.tenant_id


@blp.route("/<string:member_id>")
class Member(MethodView):
    @blp.response(200, ProfileSchema)
    def get(self, member_id: str) -> dict[str, Any]:
        """The member's profile (admin key, or the member's own token)."""
        tenant_id = _tenant_of_caller(member_id)
        with read(engine()) as conn:
            row = queries.profile(conn, tenant_id, member_id)
            if row is None:
                raise domain.MemberNotFound()
            return queries.profile_document(conn, row)

    @blp.arguments(ProfileUpdateSchema)
    @blp.response(200, ProfileSchema)
    def put(self, body: dict[str, Any], member_id: str) -> dict[str, Any]:
        """Set the member's profile; the display name is personal (sealed, exported, erased)."""
        require_tenant()
        handlers.update_profile(engine(), principal(), context(), member_id, now=now(), **body)
        return self.get(member_id)

    @blp.response(202, ErasureAcceptedSchema)
    def delete(self, member_id: str) -> dict[str, Any]:
        """Erase everything personal the tenant's services hold about the member (admin).
        Follow it at ``/erasure``; asking again changes nothing."""
        require_role("admin")
        found = handlers.request_erasure(engine(), context(), member_id, now=now())
        return {"member_id": member_id, "status": found.status}


@blp.route("/<string:member_id>/erasure")
class MemberErasure(MethodView):
    @blp.response(200, ErasureSchema)
    def get(self, member_id: str) -> dict[str, Any]:
        """Where the member's erasure stands, service by service (404: none was requested)."""
        tenant_id = _tenant_of_caller(member_id)
        with read(engine()) as conn:
            found = queries.erasure(conn, tenant_id, member_id)
        if found is None:
            raise domain.MemberNotFound()
        return queries.erasure_document(found)


@blp.route("/<string:member_id>/export")
class MemberExport(MethodView):
    @blp.response(200, ExportSchema)
    def get(self, member_id: str) -> dict[str, Any]:
        """Everything this service holds about the member, personal values in clear (admin
        key, or the member's own token). ``nocontact members export`` merges all services'."""
        tenant_id = _tenant_of_caller(member_id)
        exported = queries.export_member(engine(), tenant_id, member_id, now())
        if exported is None:
            raise domain.MemberNotFound()
        return exported


BLUEPRINTS = (blp,)
