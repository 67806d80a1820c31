"""Tenants, credentials and who may do what: the authorization matrix over real HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from shared.auth import encode_token, hash_api_key
from shared.db import engine_for, read

from .conftest import OPERATOR, Client


def test_tenant_creation_is_for_the_operator_only(service: Client, postgres_url: str) -> None:
    created = service.post("/v1/tenants", auth=OPERATOR, json={"name": "Acme Support"})
    assert created.status_code == 201
    body = created.json()
    assert set(body) == {"id", "name", "api_key"} and body["name"] == "Acme Support"
    assert body["api_key"].startswith("nck_")
    admin = service.as_(body["api_key"])
    assert admin.post("/v1/tenants", json={"name": "Sneaky"}).status_code == 403
    assert admin.get("/v1/commitments").status_code == 200
    assert service.post("/v1/tenants", json={"name": "Nobody"}).status_code == 401
    invalid = service.post("/v1/tenants", auth=OPERATOR, json={"name": ""})
    assert invalid.status_code == 422 and "name" in invalid.json()["errors"]
    # The operator manages tenants, not their data.
    assert service.get("/v1/commitments", auth=OPERATOR).status_code == 403
    assert service.post("/v1/tokens", auth=OPERATOR, json={"role": "member", "subject_id": "m"}).status_code == 403
    # The key is stored only as its hash.
    with read(engine_for(postgres_url)) as conn:
        from services.commitment.tables import CREDENTIALS

        stored = conn.execute(select(CREDENTIALS.api_keys)).mappings().all()
    assert [row["key_hash"] for row in stored] == [hash_api_key(body["api_key"])]
    assert body["api_key"] not in str(stored)


def test_api_keys_issue_revoke_at_once(service: Client) -> None:
    first = service.tenant()
    issued = first.post("/v1/api-keys")
    assert issued.status_code == 201 and set(issued.json()) == {"id", "api_key"}
    second = service.as_(issued.json()["api_key"])
    assert second.get("/v1/commitments").status_code == 200
    listed = first.get("/v1/api-keys").json()["items"]
    assert len(listed) == 2 and all("api_key" not in key for key in listed)

    assert first.delete(f"/v1/api-keys/{issued.json()['id']}").status_code == 204
    revoked = second.get("/v1/commitments")
    assert revoked.status_code == 401 and revoked.headers["Content-Type"].startswith("application/problem+json")
    assert first.get("/v1/commitments").status_code == 200
    assert first.delete(f"/v1/api-keys/{issued.json()['id']}").status_code == 409
    assert first.delete("/v1/api-keys/no-such-key").status_code == 404
    # Another tenant's key id is as unknown as a made-up one.
    other = service.tenant("Other")
    other_key = other.post("/v1/api-keys").json()
    assert first.delete(f"/v1/api-keys/{other_key['id']}").status_code == 404
    assert service.as_(other_key["api_key"]).get("/v1/commitments").status_code == 200


def test_tokens(service: Client) -> None:
    admin = service.tenant()
    response = admin.post("/v1/tokens", json={"role": "member", "subject_id": "m-1", "ttl_seconds": 3600})
    assert response.status_code == 201
    expires_at = datetime.fromisoformat(response.json()["expires_at"])
    assert timedelta(minutes=59) < expires_at - datetime.now(UTC) <= timedelta(hours=1)
    for bad, field in (({"role": "admin", "subject_id": "x"}, "role"), ({"role": "member"}, "subject_id"),
                       ({"role": "coach", "subject_id": "c", "ttl_seconds": 5}, "ttl_seconds"),
                       ({"role": "coach", "subject_id": "c", "ttl_seconds": "60"}, "ttl_seconds")):
        refused = admin.post("/v1/tokens", json=bad)
        assert refused.status_code == 422 and field in refused.json()["errors"], (bad, refused.text)
    member = service.as_(response.json()["token"])
    assert member.get("/v1/commitments").status_code == 200
    # Only admins mint tokens.
    assert member.post("/v1/tokens", json={"role": "member", "subject_id": "m-2"}).status_code == 403


def test_bad_credentials_are_401(service: Client) -> None:
    service.tenant()
    past = datetime.now(UTC) - timedelta(hours=2)
    expired = encode_token(tenant_id="t", role="member", subject_id="m-1", key_id="k", token_id="j",
                           issued_at=past, expires_at=past + timedelta(hours=1))
    for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": "Basic dXNlcjpwYXNz"},
                    {"Authorization": "Bearer not-a-token"}, {"Authorization": "Bearer nck_forged"},
                    {"Authorization": f"Bearer {expired}"}, {"Authorization": f"Bearer {expired[:-3]}abc"}):
        response = service.get("/v1/commitments", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["Content-Type"].startswith("application/problem+json")


def test_authorization_matrix(service: Client) -> None:
    tenant_a, tenant_b = service.tenant("A"), service.tenant("B")
    mine = tenant_a.commit(member_id="m-1")
    theirs = tenant_a.commit(member_id="m-2")
    path = f"/v1/commitments/{mine['id']}"
    mutations: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", path + "/extend", {"additional_days": 1}), ("POST", path + "/end", {})]
    reads = [path, path + "/history"]

    # Tenant B's admin: tenant A's ids do not exist.
    for target in reads:
        assert tenant_b.get(target).status_code == 404
    for method, target, body in mutations:
        assert tenant_b.request(method, target, json=body).status_code == 404
    assert tenant_b.get("/v1/commitments").json()["items"] == []
    assert tenant_b.get("/v1/commitments", params={"member_id": "m-1"}).json()["items"] == []
    assert tenant_b.put("/v1/coaches/c-1/clients/m-1").status_code == 204  # B's own member m-1, not A's
    assert tenant_a.get(path).json()["coach_id"] is None

    # A member token: its own commitments only.
    member = tenant_a.token("member", "m-2")
    for target in reads:
        assert member.get(target).status_code == 404
    for method, target, body in mutations:
        assert member.request(method, target, json=body).status_code == 404
    assert [c["id"] for c in member.get("/v1/commitments").json()["items"]] == [theirs["id"]]
    assert member.get("/v1/commitments", params={"member_id": "m-1"}).json()["items"] == []
    own = member.post("/v1/commitments", json={"member_id": "m-2", "timezone": "UTC",
                                               "contact": {"label": "Sam", "relationship": "friend"}})
    assert own.status_code == 201
    assert member.post("/v1/commitments", json={"member_id": "m-1", "timezone": "UTC",
                                                "contact": {"label": "Sam", "relationship": "friend"}}
                       ).status_code == 403
    assert member.post(f"/v1/commitments/{theirs['id']}/extend", json={"additional_days": 3}).status_code == 200
    assert member.post("/v1/api-keys").status_code == 403
    assert member.put("/v1/coaches/c-1/clients/m-2").status_code == 403

    # A coach token: reads its clients only, never mutates.
    assert tenant_a.put("/v1/coaches/coach-1/clients/m-1").status_code == 204
    coach = tenant_a.token("coach", "coach-1")
    assert coach.get(path).status_code == 200
    assert coach.get(path + "/history").status_code == 200
    assert coach.get(f"/v1/commitments/{theirs['id']}").status_code == 404
    assert [c["id"] for c in coach.get("/v1/commitments").json()["items"]] == [mine["id"]]
    for method, target, body in mutations:
        assert coach.request(method, target, json=body).status_code == 403
    assert coach.post("/v1/commitments", json={"member_id": "m-1", "timezone": "UTC",
                                               "contact": {"label": "Sam", "relationship": "friend"}}
                      ).status_code == 403
    assert coach.put("/v1/coaches/coach-1/clients/m-2").status_code == 403
    # A token of tenant B's coach with the same subject id sees nothing of tenant A.
    coach_b = tenant_b.token("coach", "coach-1")
    assert coach_b.get(path).status_code == 404


def test_coach_assignment_covers_present_and_future_commitments(service: Client) -> None:
    admin = service.tenant()
    before = admin.commit(member_id="m-1")
    other_member = admin.commit(member_id="m-2")
    assert admin.put("/v1/coaches/coach-1/clients/m-1").status_code == 204
    assert admin.put("/v1/coaches/coach-1/clients/m-1").status_code == 204  # repeat: no new event
    after = admin.commit(member_id="m-1")
    assert after["coach_id"] == "coach-1"
    assert admin.get(f"/v1/commitments/{before['id']}").json()["coach_id"] == "coach-1"
    assert admin.get(f"/v1/commitments/{other_member['id']}").json()["coach_id"] is None
    history = [e["type"] for e in admin.get(f"/v1/commitments/{before['id']}/history").json()]
    assert history == ["commitment.created", "coach.assigned"]
    assert [e["type"] for e in admin.get(f"/v1/commitments/{after['id']}/history").json()] == [
        "commitment.created", "coach.assigned"]

    # Reassigning moves every commitment; removing another coach changes nothing.
    assert admin.put("/v1/coaches/coach-2/clients/m-1").status_code == 204
    assert admin.delete("/v1/coaches/coach-1/clients/m-1").status_code == 204
    assert {admin.get(f"/v1/commitments/{c['id']}").json()["coach_id"] for c in (before, after)} == {"coach-2"}
    assigned = admin.get(f"/v1/commitments/{before['id']}/history").json()[-1]
    assert assigned["type"] == "coach.assigned"
    assert assigned["data"] == {"commitment_id": before["id"], "member_id": "m-1", "coach_id": "coach-2",
                                "previous_coach_id": "coach-1"}
    assert admin.delete("/v1/coaches/coach-2/clients/m-1").status_code == 204
    assert {admin.get(f"/v1/commitments/{c['id']}").json()["coach_id"] for c in (before, after)} == {None}
    assert admin.commit(member_id="m-1")["coach_id"] is None
    assert admin.delete("/v1/coaches/coach-2/clients/m-1").status_code == 204  # idempotent
    too_long = admin.put(f"/v1/coaches/{'c' * 129}/clients/m-1")
    assert too_long.status_code == 422 and "coach_id" in too_long.json()["errors"]


def test_docs_health_and_metrics_are_public(service: Client) -> None:
    spec = service.get("/openapi.json", auth="")
    assert spec.status_code == 200
    paths = spec.json()["paths"]
    for path in ("/v1/tenants", "/v1/api-keys", "/v1/api-keys/{key_id}", "/v1/tokens", "/v1/commitments",
                 "/v1/commitments/{commitment_id}", "/v1/commitments/{commitment_id}/extend",
                 "/v1/commitments/{commitment_id}/end", "/v1/commitments/{commitment_id}/history",
                 "/v1/coaches/{coach_id}/clients/{member_id}"):
        assert path in paths, path
    assert "CommitmentCreate" in spec.json()["components"]["schemas"]
    assert service.get("/docs", auth="").status_code == 200
    assert service.get("/healthz", auth="").status_code == 200
    assert service.get("/readyz", auth="").status_code == 200
    assert service.get("/metrics", auth="").status_code == 200
