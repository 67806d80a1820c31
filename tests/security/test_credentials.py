"""Credentials honoured at once (contract v1.1, "Credentials"), on every service, over real
HTTP against the security suite's gunicorn processes.

Each check is the first request after the answer that changed the credential: no waiting,
no retry. Tokens die with the key that minted them and can be revoked one by one; the
operator can always give a tenant a key again.
"""

from __future__ import annotations

import httpx

from shared.testing import bearer
from tests.security.conftest import World
from tests.support.suite import Suite, create_tenant, issue_token

PROBES = {"commitment": "/v1/commitments", "checkin": "/v1/settings", "notification": "/v1/webhook-endpoints"}


def _everywhere(client: httpx.Client, suite: Suite, credential: str) -> dict[str, int]:
    """The status every service answers `credential` with, one request each."""
    return {service: client.get(suite.url(service, path), headers=bearer(credential)).status_code
            for service, path in PROBES.items()}


def _accepted(client: httpx.Client, suite: Suite, token: str) -> bool:
    """A scoped token is authenticated by every service (some of these answers are 403:
    webhook endpoints are the admin's; what counts is that none is a 401)."""
    statuses = _everywhere(client, suite, token)
    assert all(status in (200, 403) for status in statuses.values()), statuses
    return True


def _refused(client: httpx.Client, suite: Suite, token: str) -> bool:
    statuses = _everywhere(client, suite, token)
    assert statuses == dict.fromkeys(PROBES, 401), statuses
    return True


def _operator(suite: Suite) -> dict[str, str]:
    return bearer(suite.env["NOCONTACT_OPERATOR_TOKEN"])


def test_a_new_tenants_key_works_everywhere_at_once(world: World) -> None:
    suite = world.suite
    with httpx.Client(timeout=15) as client:
        created = client.post(suite.url("commitment", "/v1/tenants"), json={"name": "At once"},
                              headers=_operator(suite))
        assert created.status_code == 201, created.text
        assert _everywhere(client, suite, created.json()["api_key"]) == dict.fromkeys(PROBES, 200)


def test_tokens_die_with_the_key_that_minted_them_everywhere_at_once(world: World) -> None:
    suite = world.suite
    with httpx.Client(timeout=15) as client:
        tenant = create_tenant(suite, client, "Token keys")
        minted = client.post(suite.url("commitment", "/v1/api-keys"), headers=bearer(tenant.api_key))
        assert minted.status_code == 201, minted.text
        key = minted.json()
        member = client.post(suite.url("commitment", "/v1/tokens"), headers=bearer(key["api_key"]),
                             json={"role": "member", "subject_id": "m-1"}).json()["token"]
        coach = client.post(suite.url("commitment", "/v1/tokens"), headers=bearer(key["api_key"]),
                            json={"role": "coach", "subject_id": "c-1"}).json()["token"]
        of_another_key = issue_token(suite, client, tenant, "member", "m-1")
        for token in (member, coach, of_another_key):
            assert _accepted(client, suite, token)
        assert client.delete(suite.url("commitment", f"/v1/api-keys/{key['id']}"),
                             headers=bearer(tenant.api_key)).status_code == 204
        for token in (member, coach):
            assert _refused(client, suite, token)
        assert _accepted(client, suite, of_another_key)


def test_one_token_is_revoked_everywhere_at_once(world: World) -> None:
    suite, a, b = world.suite, world.a, world.b
    with httpx.Client(timeout=15) as client:
        revoke = suite.url("commitment", "/v1/tokens/revoke")
        token = issue_token(suite, client, a.tenant, "member", a.member_id)
        sibling = issue_token(suite, client, a.tenant, "member", a.member_id)
        assert _accepted(client, suite, token)
        # Only an admin of the token's tenant revokes it.
        assert client.post(revoke, headers=bearer(token), json={"token": token}).status_code == 403
        other_tenant = client.post(revoke, headers=b.admin, json={"token": token})
        assert other_tenant.status_code == 422 and "token" in other_tenant.json()["errors"], other_tenant.text
        assert _accepted(client, suite, token)

        assert client.post(revoke, headers=a.admin, json={"token": token}).status_code == 204
        assert _refused(client, suite, token)
        assert _accepted(client, suite, sibling)
        # Idempotent; and what is not a token of ours is named as such.
        assert client.post(revoke, headers=a.admin, json={"token": token}).status_code == 204
        for junk in ("not-a-token", token[:-4] + "abcd", a.tenant.api_key):
            refused = client.post(revoke, headers=a.admin, json={"token": junk})
            assert refused.status_code == 422 and "token" in refused.json()["errors"], (junk, refused.text)
        assert client.post(revoke, headers=a.admin, json={}).status_code == 422


def test_the_operator_lets_a_tenant_that_revoked_its_last_key_back_in(world: World) -> None:
    suite, b = world.suite, world.b
    with httpx.Client(timeout=15) as client:
        tenant = create_tenant(suite, client, "Locked out")
        keys = client.get(suite.url("commitment", "/v1/api-keys"), headers=bearer(tenant.api_key)).json()["items"]
        assert client.delete(suite.url("commitment", f"/v1/api-keys/{keys[0]['id']}"),
                             headers=bearer(tenant.api_key)).status_code == 204
        assert _everywhere(client, suite, tenant.api_key) == dict.fromkeys(PROBES, 401)

        api_keys = suite.url("commitment", "/v1/api-keys")
        missing = client.post(api_keys, headers=_operator(suite), json={})
        assert missing.status_code == 422 and "tenant_id" in missing.json()["errors"], missing.text
        assert client.post(api_keys, headers=_operator(suite), json={"tenant_id": "no-such-tenant"}).status_code == 404
        # An admin names no other tenant than its own: another's id is as if it did not exist.
        assert client.post(api_keys, headers=b.admin, json={"tenant_id": tenant.id}).status_code == 404

        issued = client.post(api_keys, headers=_operator(suite), json={"tenant_id": tenant.id})
        assert issued.status_code == 201, issued.text
        assert _everywhere(client, suite, issued.json()["api_key"]) == dict.fromkeys(PROBES, 200)
        history = client.get(suite.url("commitment", "/v1/api-keys"),
                             headers=bearer(issued.json()["api_key"])).json()["items"]
        assert [k["id"] for k in history] == [keys[0]["id"], issued.json()["id"]]
        # The operator mints no tokens: tokens always name the admin key that minted them.
        assert client.post(suite.url("commitment", "/v1/tokens"), headers=_operator(suite),
                           json={"role": "member", "subject_id": "m-1"}).status_code == 403
