"""Secrets never reach the logs: every process's output (gunicorn APIs and workers, captured
to files by tests/support/suite.py) is scanned for the actual secret values handled during
the session: API keys (issued, revoked, wrong), tokens, webhook secrets (new and rotated),
the token signing key and the operator token."""

from __future__ import annotations

import httpx

from shared.testing import bearer
from tests.security.conftest import World


def test_no_secret_value_appears_in_any_log(world: World) -> None:
    suite, a = world.suite, world.a
    secrets = {
        "A api key": a.tenant.api_key, "B api key": world.b.tenant.api_key,
        "A webhook secret": a.endpoint_secret, "B webhook secret": world.b.endpoint_secret,
        "member token": a.member_token, "coach token": a.coach_token,
        "signing key": suite.env["NOCONTACT_SECRET_KEY"], "operator token": suite.env["NOCONTACT_OPERATOR_TOKEN"],
    }
    with httpx.Client(timeout=15) as client:
        # Operations that handle secrets, including the failing paths that tend to log inputs.
        issued = client.post(suite.url("commitment", "/v1/api-keys"), headers=a.admin).json()
        secrets["issued key"] = issued["api_key"]
        client.delete(suite.url("commitment", f"/v1/api-keys/{issued['id']}"), headers=a.admin)
        for service in suite.urls:
            client.get(suite.url(service, "/v1/webhook-endpoints"), headers=bearer(issued["api_key"]))
            client.get(suite.url(service, "/v1/settings"), headers={"Authorization": issued["api_key"]})
        rotated = client.post(suite.url("notification", f"/v1/webhook-endpoints/{a.endpoint_id}/rotate-secret"),
                              headers=a.admin)
        assert rotated.status_code == 200, rotated.text
        secrets["rotated webhook secret"] = rotated.json()["secret"]
        token = client.post(suite.url("commitment", "/v1/tokens"), headers=a.admin,
                            json={"role": "member", "subject_id": a.member_id, "ttl_seconds": 600}).json()["token"]
        secrets["new token"] = token
        client.get(suite.url("checkin", "/v1/settings"), headers=bearer(token + "x"))
        client.post(suite.url("commitment", "/v1/tenants"), json={"name": ""},
                    headers=bearer(suite.env["NOCONTACT_OPERATOR_TOKEN"]))
        # A secret in a place it does not belong (the query string) must not be logged either.
        client.get(suite.url("commitment", "/v1/commitments"), params={"api_key": a.tenant.api_key},
                   headers=a.admin)
    logs = suite.logs()
    assert len(logs) > 1000, "no logs were captured: the scan would prove nothing"
    found = {name: value for name, value in secrets.items() if value and value in logs}
    # Secrets are long random strings: a leaked prefix or the secret part of a whsec_ is a leak too.
    found.update({f"{name} (part)": value for name, value in secrets.items()
                  if value and len(value) > 24 and value[-20:] in logs})
    assert not found, f"secrets in the logs: {sorted(found)}"
