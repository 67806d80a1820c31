"""The request/response edge of every API (issue 18): inputs that used to end in a 500 or in
an HTML page, and the headers every answer carries. Over real HTTP against the gunicorn-served
APIs of the security suite, on PostgreSQL.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from shared.testing import bearer
from shared.web import MAX_BODY_BYTES
from tests.security.clients import raw
from tests.security.conftest import World
from tests.support.suite import commitment_body

SERVICES = ("commitment", "checkin", "notification")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
LONE_SURROGATE = "\ud800"


def _write(world: World, service: str) -> tuple[str, str, dict[str, Any]]:
    """One write of each service that succeeds every time it is sent (method, url, body)."""
    if service == "commitment":
        return "POST", world.suite.url(service, "/v1/commitments"), commitment_body("m-edge", world.day)
    if service == "checkin":
        # The day's report again: a correction, recorded each time (settings sent again
        # unchanged record nothing, so they would not reach the store).
        return "PUT", world.suite.url(service, f"/v1/commitments/{world.b.commitment_id}/check-ins/{world.day}"), {
            "outcome": "kept", "urge": 3, "note": world.b.note}
    return "POST", world.suite.url(service, "/v1/webhook-endpoints"), {
        "url": "https://1.1.1.1/nocontact-edge", "event_types": ["commitment.created"]}


def _problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["content-type"] == "application/problem+json", response.headers
    body = response.json()
    assert body["status"] == status
    return body


# -- X-Correlation-ID ---------------------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES)
def test_a_correlation_id_too_long_or_not_printable_ascii_is_replaced_by_a_generated_one(
        world: World, service: str) -> None:
    method, url, body = _write(world, service)
    sent: dict[str, bytes] = {
        "65 characters": b"a" * 65,
        "2000 characters": b"c" * 2000,
        "latin-1": "caf\xe9".encode("latin-1"),
        "UTF-8": "名前".encode(),
        "tab": b"a\tb",
    }
    with httpx.Client(timeout=30, headers=world.b.admin) as client:
        for name, value in sent.items():
            response = client.request(method, url, json=body, headers={"X-Correlation-ID": value})
            assert response.status_code in (200, 201), (name, response.status_code, response.text[:300])
            assert UUID.match(response.headers["X-Correlation-ID"]), (name, response.headers["X-Correlation-ID"])
        # One that fits is kept, as before.
        kept = "order-" + "7" * 58
        response = client.request(method, url, json=body, headers={"X-Correlation-ID": kept})
        assert response.status_code in (200, 201) and response.headers["X-Correlation-ID"] == kept


# -- text the database cannot hold ----------------------------------------------------------------


def _surrogate_cases(world: World) -> Iterator[tuple[str, str, str, dict[str, str], dict[str, Any], str]]:
    """(service, method, path, headers, body, the field the problem must name)."""
    b = world.b
    base = commitment_body("m-surrogate", world.day)
    yield "commitment", "POST", "/v1/commitments", b.admin, {**base, "member_id": LONE_SURROGATE}, "member_id"
    yield ("commitment", "POST", "/v1/commitments", b.admin,
           {**base, "contact": {"label": f"x{LONE_SURROGATE}y", "relationship": "friend"}}, "contact.label")
    yield "commitment", "POST", "/v1/commitments", b.admin, {**base, "motivation": LONE_SURROGATE}, "motivation"
    yield "commitment", "POST", "/v1/commitments", b.admin, {**base, f"k{LONE_SURROGATE}": 1}, "_schema"
    yield ("commitment", "POST", "/v1/tenants", bearer(world.suite.env["NOCONTACT_OPERATOR_TOKEN"]),
           {"name": LONE_SURROGATE}, "name")
    yield ("commitment", "POST", "/v1/tokens", b.admin,
           {"role": "member", "subject_id": LONE_SURROGATE, "ttl_seconds": 60}, "subject_id")
    yield ("checkin", "POST", f"/v1/commitments/{b.other_commitment_id}/check-ins", b.admin,
           {"date": world.day, "outcome": "kept", "note": LONE_SURROGATE}, "note")
    yield ("notification", "POST", "/v1/webhook-endpoints", b.admin,
           {"url": "https://1.1.1.1/x", "event_types": ["*"], "description": LONE_SURROGATE}, "description")
    yield ("notification", "POST", "/v1/webhook-endpoints", b.admin,
           {"url": f"https://1.1.1.1/{LONE_SURROGATE}", "event_types": ["*"]}, "url")
    yield ("notification", "POST", "/v1/webhook-endpoints", b.admin,
           {"url": "https://1.1.1.1/x", "event_types": ["*", LONE_SURROGATE]}, "event_types.1")


def test_a_lone_surrogate_in_any_json_string_is_a_422_naming_the_field(world: World) -> None:
    failures = []
    with httpx.Client(timeout=30) as client:
        for service, method, path, headers, body, field in _surrogate_cases(world):
            # json.dumps writes the surrogate as the escape \ud800: valid JSON, not storable text.
            response = client.request(method, world.suite.url(service, path), content=json.dumps(body),
                                      headers={**headers, "Content-Type": "application/json"})
            if (response.status_code != 422 or response.headers["content-type"] != "application/problem+json"
                    or field not in response.json().get("errors", {})):
                failures.append(f"{service} {method} {path} {field}: {response.status_code} {response.text[:200]}")
    assert not failures, "\n".join(failures)


def test_bytes_that_are_not_utf8_in_a_query_or_path_are_a_422_naming_the_parameter(world: World) -> None:
    b = world.b
    with httpx.Client(timeout=30, headers=b.admin) as client:
        # %ED%A0%80 is the UTF-8-style encoding of the surrogate U+D800, which UTF-8 forbids.
        listed = client.get(world.suite.url("commitment", "/v1/commitments?member_id=%ED%A0%80"))
        assert "member_id" in _problem(listed, 422)["errors"]
        assigned = client.put(world.suite.url("commitment", f"/v1/coaches/c%ED%A0%80/clients/{b.other_member_id}"))
        assert "coach_id" in _problem(assigned, 422)["errors"]
        # A path that names nothing stays a 404.
        _problem(client.get(world.suite.url("commitment", "/v1/nothing/%ED%A0%80")), 404)


# -- bodies -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES)
def test_a_chunked_body_over_the_limit_is_413_not_its_prefix_processed(world: World, service: str) -> None:
    method, url, body = _write(world, service)
    # Valid JSON, then whitespace past the limit: a body cut at the limit would parse and be
    # processed.
    text = json.dumps(body).encode()

    def chunks() -> Iterator[bytes]:  # a generator: httpx sends it chunked, with no Content-Length
        yield text
        for _ in range(MAX_BODY_BYTES // 8192 + 2):
            yield b" " * 8192

    response = httpx.request(method, url, content=chunks(), timeout=30,
                             headers={**world.b.admin, "Content-Type": "application/json"})
    _problem(response, 413)

    def within_limit() -> Iterator[bytes]:
        yield text
        yield b" " * (MAX_BODY_BYTES - len(text))

    accepted = httpx.request(method, url, content=within_limit(), timeout=30,
                             headers={**world.b.admin, "Content-Type": "application/json"})
    assert accepted.status_code in (200, 201), accepted.text[:300]


# -- what gunicorn itself answers ---------------------------------------------------------------------


@pytest.mark.parametrize(("name", "request_bytes", "status"), [
    ("request line too long", b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    ("request line longer than a head may be", b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    ("too many header fields", b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
     + b"".join(b"X-%d: y\r\n" % i for i in range(120)) + b"\r\n", 431),
    ("a header field too large", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", 431),
    ("a head larger than 64 KiB", b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
     + b"".join(b"X-%d: %s\r\n" % (i, b"y" * 8000) for i in range(9)) + b"\r\n", 431),
    ("Content-Length and Transfer-Encoding", b"POST /v1/commitments HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("not HTTP", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),
    ("malformed chunk size", b"POST /v1/commitments HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"zz\r\n\r\n", 400),
])
def test_errors_gunicorn_answers_itself_are_problem_json(world: World, name: str, request_bytes: bytes,
                                                         status: int) -> None:
    answered, headers, body = raw(world.suite.url("commitment"), request_bytes)
    assert answered == status, (name, answered, body[:300])
    assert headers["content-type"] == "application/problem+json", (name, headers)
    problem = json.loads(body)
    assert problem["status"] == status and problem["title"] and problem["detail"], problem
    assert headers["x-content-type-options"] == "nosniff"


# -- methods ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES)
def test_options_is_204_with_allow_and_trace_is_405_with_allow(world: World, service: str) -> None:
    paths = {"commitment": "/v1/commitments", "checkin": "/v1/settings", "notification": "/v1/webhook-endpoints"}
    with httpx.Client(timeout=30) as client:
        for path in (paths[service], "/healthz", "/openapi.json"):
            options = client.request("OPTIONS", world.suite.url(service, path))
            assert options.status_code == 204, (path, options.status_code, options.text[:200])
            allowed = {method.strip() for method in options.headers["Allow"].split(",")}
            assert {"GET", "OPTIONS"} <= allowed and "TRACE" not in allowed, (path, allowed)
            assert options.content == b"" and "content-type" not in options.headers, options.headers
            trace = client.request("TRACE", world.suite.url(service, path))
            _problem(trace, 405)
            assert {method.strip() for method in trace.headers["Allow"].split(",")} == allowed
        # The whole server (OPTIONS *), and a path that names nothing.
        whole_server = b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        status, headers, body = raw(world.suite.url(service), whole_server)
        assert status == 204 and "GET" in headers["allow"] and body == b"", (status, headers, body)
        _problem(client.request("OPTIONS", world.suite.url(service, "/v1/nothing-here")), 404)
        _problem(client.request("TRACE", world.suite.url(service, "/v1/nothing-here")), 404)


# -- headers of every answer ------------------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES)
def test_every_v1_answer_is_nosniff_and_never_cached(world: World, service: str) -> None:
    b = world.b
    paths = {
        "commitment": [f"/v1/commitments/{b.commitment_id}", "/v1/commitments", "/v1/api-keys"],
        "checkin": [f"/v1/commitments/{b.commitment_id}/check-ins", f"/v1/commitments/{b.commitment_id}/streak"],
        "notification": ["/v1/webhook-endpoints", f"/v1/webhook-endpoints/{b.endpoint_id}"],
    }
    with httpx.Client(timeout=30) as client:
        answers = [client.get(world.suite.url(service, path), headers=b.admin) for path in paths[service]]
        answers.append(client.get(world.suite.url(service, paths[service][0])))  # 401
        answers.append(client.get(world.suite.url(service, "/v1/no-such-thing"), headers=b.admin))  # 404
        method, url, body = _write(world, service)
        answers.append(client.request(method, url, json=body, headers=b.admin))
        for answer in answers:
            where = f"{answer.request.method} {answer.request.url.path}: {answer.status_code}"
            assert answer.headers.get("X-Content-Type-Options") == "nosniff", where
            assert answer.headers.get("Cache-Control") == "no-store", where
        # Outside /v1/: public documents, still never sniffed.
        for path in ("/healthz", "/openapi.json"):
            assert client.get(world.suite.url(service, path)).headers.get("X-Content-Type-Options") == "nosniff"
