"""One running suite for the security tests: gunicorn APIs and workers as real processes.

Started once per session (starting a dozen processes costs seconds on a small machine),
with private webhook addresses refused (production's setting) and the rate limits out of
the way (tests/security/test_rate_limit.py proves them on their own processes): the
matrices send hundreds of bad credentials from one address. Two tenants, A and
B, each with a commitment (with boundaries), a check-in, a coach (with an item in their
feed), a member and a webhook endpoint; A's data carries markers that must never appear in
an answer to anyone but A.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta

import httpx
import pytest

from shared.testing import bearer, eventually, wait_until
from tests.support.suite import (
    Suite,
    Tenant,
    commitment_body,
    create_tenant,
    issue_token,
    running_suite,
)

# A globally routable address, so that the SSRF guard lets it through (the documentation
# ranges are refused too). The endpoints are disabled right after creation, so nothing is
# ever sent there.
PUBLIC_HOOK_URL = "https://1.1.1.1/nocontact-security-test"


@pytest.fixture(scope="session")
def security_suite(postgres_database_url: str, rabbitmq_url: str,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    log_dir = tmp_path_factory.mktemp("security-suite")
    with running_suite(postgres_database_url, rabbitmq_url, log_dir, split_parts=False, env={
        "NOCONTACT_WEBHOOK_ALLOW_PRIVATE": "false",
        "NOCONTACT_RATE_LIMIT_PER_MINUTE": "0",
        "NOCONTACT_AUTH_FAILURES_PER_MINUTE": "0",
        # One attempt, no retries: the documentation-range endpoint never answers.
        "NOCONTACT_WEBHOOK_RETRY_SCHEDULE": "0",
    }) as suite:
        yield suite


@dataclass
class Side:
    """One tenant's credentials and resources.

    `member_id` holds `commitment_id` (with a check-in carrying `note`) and is a client of
    `coach_id`; `other_member_id` holds `other_commitment_id` and has no coach. `markers`
    are strings of this tenant that no other tenant may ever see; `member_markers` are the
    first member's, which neither the other member nor another coach may see.
    """

    tenant: Tenant
    member_id: str
    other_member_id: str
    coach_id: str
    commitment_id: str
    other_commitment_id: str
    endpoint_id: str
    endpoint_secret: str
    member_token: str
    other_member_token: str
    coach_token: str
    other_coach_token: str
    feed_item_id: int = 0
    note: str = ""
    pause_id: str = ""
    markers: list[str] = field(default_factory=list)
    member_markers: list[str] = field(default_factory=list)

    @property
    def admin(self) -> dict[str, str]:
        return bearer(self.tenant.api_key)


@dataclass
class World:
    suite: Suite
    a: Side
    b: Side
    day: str


def _side(suite: Suite, client: httpx.Client, name: str, day: str) -> Side:
    tenant = create_tenant(suite, client, name)
    tag = uuid.uuid4().hex[:8]
    member, other, coach = f"m-{name}-{tag}", f"m2-{name}-{tag}", f"coach-{name}-{tag}"
    note = f"Note-{name}-{tag}"
    headers = bearer(tenant.api_key)
    ids, texts = [], []
    for who in (member, other):
        label, motivation = f"Label-{who}", f"Motivation-{who}"
        exception, place = f"Exception-{who}", f"Place-{who}"
        created = client.post(suite.url("commitment", "/v1/commitments"), headers=headers, json=commitment_body(
            who, day, contact={"label": label, "relationship": "friend"}, motivation=motivation,
            exceptions=[{"label": exception, "channels": ["calls"]}], places=[{"label": place}]))
        assert created.status_code == 201, created.text
        ids.append(created.json()["id"])
        texts.append([label, motivation, exception, place])
    assert client.put(suite.url("commitment", f"/v1/coaches/{coach}/clients/{member}"),
                      headers=headers).status_code == 204
    # The feed tells a coach of what happens once it knows them (404 until then).
    eventually(lambda: client.get(suite.url("notification", f"/v1/coaches/{coach}/notifications"), headers=headers),
               200)
    eventually(lambda: client.post(suite.url("checkin", f"/v1/commitments/{ids[0]}/check-ins"), headers=headers,
                                   json={"date": day, "outcome": "kept", "urge": 3, "note": note}), 201)
    # Between check-ins: a pause and an urge of the member's, their personal values as markers.
    reason, trigger = f"Pause-{name}-{tag}", f"Trigger-{name}-{tag}"
    pause = client.post(suite.url("checkin", f"/v1/commitments/{ids[0]}/pauses"), headers=headers,
                        json={"from": day, "to": day, "reason": reason})
    assert pause.status_code == 201, pause.text
    urge = client.post(suite.url("checkin", f"/v1/commitments/{ids[0]}/urges"), headers=headers,
                       json={"intensity": 4, "outcome": "passed", "trigger": trigger})
    assert urge.status_code == 201, urge.text
    endpoint = client.post(suite.url("notification", "/v1/webhook-endpoints"), headers=headers, json={
        "url": PUBLIC_HOOK_URL, "event_types": ["*"], "description": f"Hook-{name}-{tag}"})
    assert endpoint.status_code == 201, endpoint.text
    disabled = client.post(suite.url("notification", f"/v1/webhook-endpoints/{endpoint.json()['id']}/disable"),
                           headers=headers)
    assert disabled.status_code == 200, disabled.text

    def first_feed_item() -> int | None:
        answer = client.get(suite.url("notification", f"/v1/coaches/{coach}/notifications"), headers=headers)
        items = answer.json().get("items") if answer.status_code == 200 else None
        return items[0]["id"] if items else None

    # The kept day reaches a milestone: an item in the coach's feed.
    # A generous bound: test_loaded_machine runs this world while busy loops take every core.
    feed_item_id = wait_until(first_feed_item, 120, message="the milestone in the coach's feed")
    keys = client.get(suite.url("commitment", "/v1/api-keys"), headers=headers)
    assert keys.status_code == 200, keys.text
    tenant.key_id = keys.json()["items"][0]["id"]
    return Side(
        tenant, member, other, coach, ids[0], ids[1], endpoint.json()["id"], endpoint.json()["secret"],
        member_token=issue_token(suite, client, tenant, "member", member),
        other_member_token=issue_token(suite, client, tenant, "member", other),
        coach_token=issue_token(suite, client, tenant, "coach", coach),
        other_coach_token=issue_token(suite, client, tenant, "coach", f"coach2-{name}-{tag}"),
        feed_item_id=feed_item_id,
        note=note,
        pause_id=pause.json()["pause_id"],
        markers=[tenant.id, tenant.key_id, member, other, coach, note, *ids, *texts[0], *texts[1],
                 endpoint.json()["id"], f"Hook-{name}-{tag}", reason, trigger],
        member_markers=[member, ids[0], note, *texts[0], reason, trigger],
    )


@pytest.fixture(scope="session")
def world(security_suite: Suite) -> World:
    day = (date.today() - timedelta(days=1)).isoformat()
    with httpx.Client(timeout=15) as client:
        a = _side(security_suite, client, "A", day)
        b = _side(security_suite, client, "B", day)
    return World(security_suite, a, b, day)


@pytest.fixture(scope="session")
def operations(security_suite: Suite) -> dict[str, list[tuple[str, str]]]:
    """Every (METHOD, path template) under /v1/ of every service, read from its /openapi.json."""
    found: dict[str, list[tuple[str, str]]] = {}
    for service in security_suite.urls:
        spec = httpx.get(security_suite.url(service, "/openapi.json"), timeout=10).json()
        found[service] = [
            (method.upper(), path)
            for path, item in spec["paths"].items() if path.startswith("/v1/")
            for method in item if method in ("get", "post", "put", "patch", "delete")
        ]
    return found
