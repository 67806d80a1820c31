"""Tenant isolation and credential scope over every endpoint of every service.

The endpoint list comes from each service's /openapi.json, so an endpoint added later is
in the matrix without anyone editing this file. Each operation is called with tenant A's
resource ids in its path (and a valid body, so that validation is not what answers) by
credentials that must not reach them: tenant B's admin key, B's coach and member tokens
naming A's subjects, A's other member and A's other coach. Nothing of A may come back.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest

from shared.testing import bearer
from tests.security.conftest import Side, World

# Path parameters that name a resource of A (as opposed to a subject id: coach_id and
# member_id are names inside a tenant's own namespace, which another tenant may also use).
RESOURCE_PARAMETERS = {"commitment_id", "endpoint_id", "key_id", "message_id", "item_id", "pause_id"}


def _path_values(world: World, side: Side) -> dict[str, str]:
    return {
        "commitment_id": side.commitment_id,
        "day": world.day,
        "key_id": side.tenant.key_id or "",
        "coach_id": side.coach_id,
        "member_id": side.member_id,
        "endpoint_id": side.endpoint_id,
        "message_id": str(uuid.uuid4()),
        "item_id": str(side.feed_item_id),
        "pause_id": side.pause_id,
    }


def _body(method: str, template: str, world: World) -> dict[str, Any] | None:
    """A body that passes validation, so the answer is about who asks, not what."""
    if method in ("GET", "DELETE"):
        return None
    if template.endswith("/check-ins"):
        return {"date": world.day, "outcome": "kept"}
    if "/check-ins/" in template:
        return {"outcome": "slipped", "slip": {"channel": "texts", "initiated_by": "me"}}
    if template.endswith("/extend"):
        return {"additional_days": 30}
    if template.endswith("/test"):
        return {"event_type": "checkin.recorded"}
    if template.endswith("/redeliver-failed"):
        return {"since": (datetime.now(UTC) - timedelta(days=1)).isoformat()}
    if template.endswith("/end"):
        return {"reason": "isolation test"}
    if template.endswith("/boundaries"):
        return {"exceptions": [], "places": []}
    if template.endswith("/pauses"):
        return {"from": world.day, "to": world.day}
    if template.endswith("/urges"):
        return {"intensity": 3, "outcome": "passed"}
    if template == "/v1/webhook-endpoints/{endpoint_id}" and method == "PATCH":
        return {"description": "taken over"}
    return {}


def _call(client: httpx.Client, world: World, side: Side, service: str, method: str, template: str,
          credential: dict[str, str]) -> httpx.Response:
    path = template.format(**_path_values(world, side))
    params = {"member_id": side.member_id} if method == "GET" and "{" not in template else None
    return client.request(method, world.suite.url(service, path), headers=credential,
                          json=_body(method, template, world), params=params)


def _leaks(response: httpx.Response, markers: list[str], request_path: str) -> list[str]:
    """Markers of the victim in the answer, except those the caller itself put in the URL."""
    return [m for m in markers if m and m in response.text and m not in request_path]


def _every_operation(operations: dict[str, list[tuple[str, str]]]) -> list[tuple[str, str, str]]:
    found = [(service, method, path) for service, ops in operations.items() for method, path in ops]
    # Destructive calls last: were one of them wrongly allowed, the others still ran first.
    return sorted(found, key=lambda op: op[1] == "DELETE")


def test_the_matrix_covers_every_service_and_resource(operations: dict[str, list[tuple[str, str]]]) -> None:
    assert set(operations) == {"commitment", "checkin", "notification"}
    templates = {path for ops in operations.values() for _, path in ops}
    for parameter in RESOURCE_PARAMETERS | {"day", "coach_id", "member_id"}:
        assert any("{" + parameter + "}" in t for t in templates), parameter
    found = {p.split("}")[0] for t in templates for p in t.split("{")[1:]}
    known = {"commitment_id", "day", "key_id", "coach_id", "member_id", "endpoint_id", "message_id", "item_id",
             "pause_id"}
    assert found <= known, f"new path parameters: map them in _path_values: {found - known}"

def test_another_tenant_gets_404_and_never_data(world: World, operations: dict[str, list[tuple[str, str]]]) -> None:
    a, b = world.a, world.b
    suite = world.suite
    with httpx.Client(timeout=15) as client:
        b_member = bearer(_token(suite.env, b.tenant.id, "member", a.member_id))
        b_coach = bearer(_token(suite.env, b.tenant.id, "coach", a.coach_id))
        failures = []
        for service, method, template in _every_operation(operations):
            for who, credential in (("B admin", b.admin), ("B member", b_member), ("B coach", b_coach)):
                response = _call(client, world, a, service, method, template, credential)
                path = response.request.url.path
                names_a_resource = any("{" + p + "}" in template for p in RESOURCE_PARAMETERS)
                leaks = _leaks(response, a.markers, str(response.request.url))
                if leaks:
                    failures.append(f"{who} {method} {path}: {response.status_code} leaks {leaks}")
                if names_a_resource and response.status_code not in (403, 404):
                    failures.append(f"{who} {method} {path}: {response.status_code} (want 404) {response.text[:200]}")
                if names_a_resource and who == "B admin" and response.status_code != 404:
                    failures.append(f"{who} {method} {path}: {response.status_code}, not 404")
                if response.status_code >= 500:
                    failures.append(f"{who} {method} {path}: {response.status_code}")
        assert not failures, "\n".join(failures)
        # And A's world is intact: nothing B did reached it.
        answer = client.get(suite.url("commitment", f"/v1/commitments/{a.commitment_id}"), headers=a.admin)
        assert answer.status_code == 200 and answer.json()["status"] == "active"
        day = client.get(suite.url("checkin", f"/v1/commitments/{a.commitment_id}/check-ins/{world.day}"),
                         headers=a.admin)
        assert day.status_code == 200 and day.json()["outcome"] == "kept", day.text
        hook = client.get(suite.url("notification", f"/v1/webhook-endpoints/{a.endpoint_id}"), headers=a.admin)
        assert hook.status_code == 200 and hook.json()["description"] != "taken over"


def test_members_and_coaches_reach_only_their_own_scope(world: World,
                                                         operations: dict[str, list[tuple[str, str]]]) -> None:
    a = world.a
    with httpx.Client(timeout=15) as client:
        failures = []
        for service, method, template in _every_operation(operations):
            if method == "DELETE":
                continue  # admin-only everywhere; the 403s are covered by the services' own matrices
            for who, token in (("other member", a.other_member_token), ("other coach", a.other_coach_token)):
                response = _call(client, world, a, service, method, template, bearer(token))
                leaks = _leaks(response, a.member_markers, str(response.request.url))
                if leaks and response.is_success:
                    failures.append(f"{who} {method} {response.request.url.path}: leaks {leaks}")
                if "{" in template and response.is_success:
                    failures.append(f"{who} {method} {response.request.url.path}: {response.status_code} "
                                    f"{response.text[:200]}")
                if response.status_code >= 500:
                    failures.append(f"{who} {method} {response.request.url.path}: {response.status_code}")
        assert not failures, "\n".join(failures)
        # The member's and the coach's own scope does work (the matrix above is not all 401s).
        own = client.get(world.suite.url("checkin", f"/v1/commitments/{a.commitment_id}/streak"),
                         headers=bearer(a.member_token))
        assert own.status_code == 200
        clients = client.get(world.suite.url("checkin", f"/v1/coaches/{a.coach_id}/clients"),
                             headers=bearer(a.coach_token))
        assert clients.status_code == 200 and a.member_id in clients.text
        assert a.other_member_id not in clients.text


def _token(env: dict[str, str], tenant_id: str, role: str, subject: str, *, expires_in: int = 3600,
           key: str | None = None, algorithm: str = "HS256", key_id: str = "isolation-test-key") -> str:
    """A token as the commitment service would issue it (same signing key, naming an API key
    `key_id` that was never revoked), or a tampered one."""
    now = datetime.now(UTC)
    claims = {"tid": tenant_id, "role": role, "sub": subject, "iat": int(now.timestamp()),
              "exp": int((now + timedelta(seconds=expires_in)).timestamp()), "key_id": key_id,
              "jti": uuid.uuid4().hex}
    return jwt.encode(claims, key or env["NOCONTACT_SECRET_KEY"], algorithm=algorithm)


def _unsigned(tenant_id: str) -> str:
    header = jwt.utils.base64url_encode(b'{"alg":"none","typ":"JWT"}').decode()
    body = jwt.utils.base64url_encode(
        f'{{"tid":"{tenant_id}","role":"admin","sub":"x","iat":1,"exp":9999999999}}'.encode()).decode()
    return f"{header}.{body}."


def test_keys_work_at_once_and_revoked_keys_and_bad_tokens_are_refused_everywhere_at_once(
        world: World, operations: dict[str, list[tuple[str, str]]]) -> None:
    """Contract v1.1, "Credentials": a key works on every service as soon as the response that
    issued it has returned, and is refused by every service as soon as its DELETE has returned.
    No waiting: the very first request after each answer."""
    a, suite = world.a, world.suite
    with httpx.Client(timeout=15) as client:
        issued = client.post(suite.url("commitment", "/v1/api-keys"), headers=a.admin)
        assert issued.status_code == 201, issued.text
        key = bearer(issued.json()["api_key"])
        probes = {"commitment": "/v1/commitments", "checkin": "/v1/settings", "notification": "/v1/webhook-endpoints"}
        first = {service: client.get(suite.url(service, path), headers=key).status_code
                 for service, path in probes.items()}
        assert first == dict.fromkeys(probes, 200), f"the new key was not accepted at once: {first}"
        assert client.delete(suite.url("commitment", f"/v1/api-keys/{issued.json()['id']}"),
                             headers=a.admin).status_code == 204
        after = {service: client.get(suite.url(service, path), headers=key).status_code
                 for service, path in probes.items()}
        assert after == dict.fromkeys(probes, 401), f"the revoked key still worked: {after}"

        bad = {
            "revoked key": key,
            "expired token": bearer(_token(suite.env, a.tenant.id, "member", a.member_id, expires_in=-5)),
            "token signed with another key": bearer(_token(suite.env, a.tenant.id, "member", a.member_id,
                                                         key="not-the-key")),
            "unsigned token": bearer(_unsigned(a.tenant.id)),
            "admin role in a token": bearer(_token(suite.env, a.tenant.id, "admin", "x")),
            "unknown key": bearer("nck_" + uuid.uuid4().hex),
            "no credential": {},
            "basic auth": {"Authorization": "Basic YWxhZGRpbjpvcGVuc2VzYW1l"},
        }
        failures = []
        for service, method, template in _every_operation(operations):
            for name, credential in bad.items():
                response = _call(client, world, a, service, method, template, credential)
                if response.status_code != 401 or _leaks(response, a.markers, str(response.request.url)):
                    failures.append(f"{name}: {method} {response.request.url.path} -> {response.status_code}")
                elif response.headers.get("content-type") != "application/problem+json":
                    failures.append(f"{name}: {method} {response.request.url.path} is not problem+json")
        assert not failures, "\n".join(failures)
        # The tenant's own key still works (the matrix did not revoke it by accident).
        assert client.get(suite.url("commitment", "/v1/commitments"), headers=a.admin).status_code == 200


@pytest.mark.parametrize("service", ["commitment", "checkin", "notification"])
def test_unauthenticated_paths_are_only_the_documented_public_ones(world: World, service: str) -> None:
    spec = httpx.get(world.suite.url(service, "/openapi.json")).json()
    public = [path for path in spec["paths"] if not path.startswith("/v1/")]
    assert set(public) <= {"/dashboard"}, public
