"""Bad input never produces a 5xx: hand-written hostile requests on every write endpoint, and
schemathesis generating requests from each service's own OpenAPI document."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import content_type_conformance, not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from shared.web import MAX_BODY_BYTES
from tests.security.conftest import World
from tests.support.suite import commitment_body

WRITES = [
    ("commitment", "POST", "/v1/commitments"),
    ("commitment", "POST", "/v1/commitments/{commitment_id}/extend"),
    ("checkin", "POST", "/v1/commitments/{commitment_id}/check-ins"),
    ("checkin", "PUT", "/v1/settings"),
    ("notification", "POST", "/v1/webhook-endpoints"),
    ("notification", "PATCH", "/v1/webhook-endpoints/{endpoint_id}"),
]

HOSTILE = [
    "'; DROP TABLE events; --",
    "Robert'); DELETE FROM commitment_commitments WHERE ('1'='1",
    "<script>alert(document.cookie)</script>",
    '"><img src=x onerror=alert(1)>',
    "{{7*7}} ${7*7} %s %n",
    "\u202eevil\u200b\u0000-nul",
    "名前 🚫📵 Ω",
]


def _url(world: World, service: str, template: str) -> str:
    return world.suite.url(service, template.format(commitment_id=world.b.other_commitment_id,
                                                    endpoint_id=world.b.endpoint_id))


@pytest.mark.parametrize(("service", "method", "template"), WRITES)
def test_hostile_bodies_get_a_4xx_problem(world: World, service: str, method: str, template: str) -> None:
    url = _url(world, service, template)
    headers = world.b.admin
    cases: dict[str, tuple[int | tuple[int, ...], httpx.Response]] = {}

    def hit(name: str, expected: int | tuple[int, ...], **kwargs: object) -> None:
        cases[name] = (expected, httpx.request(method, url, timeout=30, **kwargs))  # type: ignore[arg-type]

    big = b'{"x": "' + b"a" * (MAX_BODY_BYTES + 10) + b'"}'
    hit("huge body", 413, content=big, headers={**headers, "Content-Type": "application/json"})
    hit("huge body, no credential", 413, content=big, headers={"Content-Type": "application/json"})
    hit("text/plain", 415, content=b'{"a": 1}', headers={**headers, "Content-Type": "text/plain"})
    hit("form", 415, data={"a": "1"}, headers=headers)
    hit("no content type", 415, content=b'{"a": 1}', headers=headers)
    hit("invalid UTF-8", 400, content=b'{"label": "\xff\xfe\xc3\x28"}',
        headers={**headers, "Content-Type": "application/json"})
    hit("truncated JSON", 400, content=b'{"a": ', headers={**headers, "Content-Type": "application/json"})
    hit("JSON array", (400, 422), json=[1, 2, 3], headers=headers)
    hit("JSON null", (400, 422), content=b"null", headers={**headers, "Content-Type": "application/json"})
    nested = b"[" * 50_000 + b"]" * 50_000
    hit("deeply nested array", (400, 413, 422), content=nested,
        headers={**headers, "Content-Type": "application/json"})
    nested_object = b'{"a":' * 20_000 + b"1" + b"}" * 20_000
    hit("deeply nested object", (400, 413, 422), content=nested_object,
        headers={**headers, "Content-Type": "application/json"})
    hit("huge number", (400, 422), content=b'{"duration_days": 1' + b"0" * 5000 + b"}",
        headers={**headers, "Content-Type": "application/json"})
    hit("NaN", (400, 422), content=b'{"duration_days": NaN, "urge": Infinity}',
        headers={**headers, "Content-Type": "application/json"})
    hit("unknown field", 422, json={"surprise": "field", "__proto__": {"admin": True}}, headers=headers)

    failures = []
    for name, (expected, response) in cases.items():
        wanted = expected if isinstance(expected, tuple) else (expected,)
        if response.status_code not in wanted:
            failures.append(f"{name}: {response.status_code} (want {expected}) {response.text[:200]}")
        elif response.headers.get("content-type") != "application/problem+json":
            failures.append(f"{name}: content-type {response.headers.get('content-type')}")
    unknown = cases["unknown field"][1]
    if unknown.status_code == 422 and "surprise" not in unknown.json().get("errors", {}):
        failures.append(f"unknown field: the problem does not name it: {unknown.text[:200]}")
    assert not failures, "\n".join(failures)


def test_hostile_text_is_stored_and_returned_verbatim(world: World) -> None:
    b = world.b
    with httpx.Client(timeout=15) as client:
        for text in HOSTILE:
            label = text.replace("\u0000", "")  # labels are display text; NUL is refused below
            created = client.post(world.suite.url("commitment", "/v1/commitments"), headers=b.admin,
                                  json=commitment_body("m-hostile", world.day, contact={"label": label,
                                                       "relationship": "other"}, motivation=label))
            assert created.status_code == 201, (text, created.text)
            again = client.get(world.suite.url("commitment", f"/v1/commitments/{created.json()['id']}"),
                               headers=b.admin)
            assert again.json()["contact"]["label"] == label and again.json()["motivation"] == label
        # A NUL character cannot be stored in PostgreSQL text: refused naming the field, never a 500.
        nul = client.post(world.suite.url("commitment", "/v1/commitments"), headers=b.admin,
                          json=commitment_body("m-nul", world.day, contact={"label": "a\u0000b",
                                                                              "relationship": "other"}))
        assert nul.status_code == 422 and "contact.label" in nul.json()["errors"], nul.text
        # Notes: each hostile text on its own day (corrections replace the day's report).
        for index, text in enumerate(HOSTILE):
            note = text.replace("\u0000", "")
            day = f"/v1/commitments/{b.other_commitment_id}/check-ins/{world.day}"
            put = client.put(world.suite.url("checkin", day), headers=b.admin,
                             json={"outcome": "kept", "note": note})
            if put.status_code == 404:  # no report for the day yet: record it
                put = client.post(world.suite.url("checkin", f"/v1/commitments/{b.other_commitment_id}/check-ins"),
                                  headers=b.admin, json={"date": world.day, "outcome": "kept", "note": note})
            assert put.status_code in (200, 201), (index, put.text)
            read = client.get(world.suite.url("checkin", day), headers=b.admin)
            assert read.json()["note"] == note


def test_the_dashboard_never_renders_member_text_as_html(world: World) -> None:
    """The page is static; member text arrives as JSON and is put in with textContent only,
    under a Content-Security-Policy without inline scripts (a browser test drives it: tests/e2e)."""
    page = httpx.get(world.suite.url("checkin", "/dashboard"), timeout=15)
    assert page.status_code == 200
    policy = page.headers.get("Content-Security-Policy", "")
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
    static = Path(__file__).resolve().parents[2] / "services" / "checkin" / "dashboard" / "static"
    for script in static.glob("*.js"):
        source = script.read_text()
        assert not re.search(r"\.(innerHTML|outerHTML)\s*=|insertAdjacentHTML|document\.write", source), script


# -- schemathesis ----------------------------------------------------------------------------

MAX_EXAMPLES = 15


@pytest.mark.parametrize("service", ["commitment", "checkin", "notification"])
def test_generated_requests_never_5xx_nor_break_the_schema(world: World, service: str) -> None:
    schema = schemathesis.openapi.from_url(world.suite.url(service, "/openapi.json"))
    real = {"commitment_id": world.b.other_commitment_id, "endpoint_id": world.b.endpoint_id,
            "day": world.day, "coach_id": world.b.coach_id, "member_id": world.b.other_member_id}
    failures: list[str] = []
    tested = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if not operation.path.startswith("/v1/") or operation.method.upper() == "DELETE":
            continue  # deleting the fixtures' resources would only shrink what the others test
        if operation.path == "/v1/tenants":
            continue  # operator only; the tenant's key is refused with 403 there anyway

        @given(case=operation.as_strategy(), use_real=st.booleans())
        @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        def run(case: schemathesis.Case, use_real: bool) -> None:
            if use_real and case.path_parameters:
                # Half the cases address existing resources, so that more than the 404 path runs.
                case.path_parameters = {k: real.get(k, v) for k, v in case.path_parameters.items()}
            response = case.call(headers=world.b.admin, timeout=30)
            try:
                case.validate_response(
                    response,
                    checks=[not_a_server_error, response_schema_conformance, content_type_conformance],
                )
            except Exception as error:  # schemathesis raises a group of failures
                failures.append(f"{case.method} {case.path}: {str(error)[:600]}")

        run()
        tested += 1
    assert tested >= 3
    assert not failures, "\n\n".join(sorted(set(failures))[:20])
