"""Member and coach ids are any 1-128 characters (CONTRACT: `member_id` 1-128 chars), `/`
and `%` included: sent escaped in a path (`%2F`, `%25`) they name the one id, over the real
servers (gunicorn), on every service. WSGI servers decode `%2F` before routing; the ids must
not fall apart into path segments there."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from urllib.parse import quote, unquote

import httpx
import pytest
from werkzeug.routing import Map

from shared.rawpath import RawPath, Segment
from shared.testing import bearer, eventually, wait_until
from tests.support.suite import Suite, commitment_body, create_tenant, issue_token


def _p(value: str) -> str:
    """An id as one path segment."""
    return quote(value, safe="")


@pytest.mark.parametrize(("member_id", "coach_id"), [
    ("partner/m/1", "coach/a"),
    ("50%off/x", "100%25"),  # a literal "%25" in the id: sent as %2525
], ids=["slash", "percent"])
def test_ids_with_a_slash_or_a_percent_are_one_id_on_every_service(security_suite: Suite, member_id: str,
                                                                     coach_id: str) -> None:
    suite = security_suite
    tag = uuid.uuid4().hex[:6]
    member_id, coach_id = f"{member_id}-{tag}", f"{coach_id}-{tag}"
    with httpx.Client(timeout=15) as client:
        tenant = create_tenant(suite, client, f"slash-{tag}")
        admin = bearer(tenant.api_key)
        day = (date.today() - timedelta(days=1)).isoformat()
        created = client.post(suite.url("commitment", "/v1/commitments"), headers=admin,
                              json=commitment_body(member_id, day))
        assert created.status_code == 201, created.text
        commitment_id = created.json()["id"]
        assignment = suite.url("commitment", f"/v1/coaches/{_p(coach_id)}/clients/{_p(member_id)}")
        assigned = client.put(assignment, headers=admin)
        assert assigned.status_code == 204, assigned.text
        commitment = client.get(suite.url("commitment", f"/v1/commitments/{commitment_id}"), headers=admin).json()
        assert (commitment["member_id"], commitment["coach_id"]) == (member_id, coach_id)

        def clients_of_coach() -> list[str]:
            answer = client.get(suite.url("checkin", f"/v1/coaches/{_p(coach_id)}/clients"), headers=admin)
            assert answer.status_code == 200, answer.text
            assert answer.json()["coach_id"] == coach_id
            return [c["commitment_id"] for item in answer.json()["items"] for c in item["commitments"]]

        assert wait_until(clients_of_coach, 30, message="the coach's client on the check-in service") == [
            commitment_id]
        coach_token = issue_token(suite, client, tenant, "coach", coach_id)
        as_coach = client.get(suite.url("checkin", f"/v1/coaches/{_p(coach_id)}/clients"),
                              headers=bearer(coach_token))
        assert as_coach.status_code == 200, as_coach.text
        feed = eventually(lambda: client.get(suite.url("notification", f"/v1/coaches/{_p(coach_id)}/notifications"),
                                             headers=bearer(coach_token)), 200, timeout=30)
        assert "items" in feed.json(), feed.json()

        member_token = issue_token(suite, client, tenant, "member", member_id)
        for service in ("commitment", "notification"):
            export = client.get(suite.url(service, f"/v1/members/{_p(member_id)}/export"),
                                headers=bearer(member_token))
            assert export.status_code == 200, (service, export.text)
            assert export.json()["member_id"] == member_id

        # Unescaped, the same characters are more path segments: no such resource.
        split = client.put(suite.url("commitment", f"/v1/coaches/{coach_id}/clients/{member_id}"), headers=admin)
        assert split.status_code == 404, split.text

        unassigned = client.delete(assignment, headers=admin)
        assert unassigned.status_code == 204, unassigned.text
        wait_until(lambda: clients_of_coach() == [], 30, message="the client gone from the coach's view")


@pytest.mark.parametrize(("environ", "path_info"), [
    ({"RAW_URI": "/v1/coaches/c%2F1/clients?x=%2F", "PATH_INFO": "/v1/coaches/c/1/clients"},
     "/v1/coaches/c%2F1/clients"),
    ({"REQUEST_URI": "/v1/members/a%252F%25b/export", "PATH_INFO": "/v1/members/a%2F%b/export"},
     "/v1/members/a%252F%25b/export"),
    ({"RAW_URI": "http://api.example/v1/members/a%2Fb/export", "PATH_INFO": "/v1/members/a/b/export"},
     "/v1/members/a%2Fb/export"),
    # Nothing raw to trust: the path as decoded, its % read back unchanged by Segment.
    ({"RAW_URI": "*", "PATH_INFO": "*"}, "*"),
    ({"PATH_INFO": "/v1/members/50%/export"}, "/v1/members/50%25/export"),
    ({"RAW_URI": "/v1/members/a%2Fb", "PATH_INFO": "/v1/members/a/b", "SCRIPT_NAME": "/api"}, "/v1/members/a/b"),
    ({"RAW_URI": "/rewritten/a%2Fb", "PATH_INFO": "/v1/members/a/b"}, "/v1/members/a/b"),
])
def test_the_path_routed_on_keeps_a_slash_and_a_percent_of_a_segment_escaped(environ: dict[str, str],
                                                                               path_info: str) -> None:
    assert RawPath.path_info(environ) == path_info


def test_a_segment_is_read_and_written_back_as_the_id_it_names() -> None:
    converter = Segment(Map())
    for value in ("partner/m/1", "50%off", "a%2Fb", "%25", "名前"):
        sent = converter.to_url(value)
        assert "/" not in sent
        # As a server passes it on: decoded (WSGI's latin-1 text), beside the raw target.
        decoded = unquote(sent, encoding="latin-1")
        routed = RawPath.path_info({"RAW_URI": f"/x/{sent}", "PATH_INFO": f"/x/{decoded}"})
        assert converter.to_python(routed.removeprefix("/x/")) == value.encode().decode("latin-1")
