"""The API reference as the running services serve it: examples, every error, one document.

- Every /v1/ operation of every service's /openapi.json carries examples, its request
  body's and each answer's with a body, composed of an example per field, each accepted by
  its own schema.
- Every operation documents, explicitly (not through ``default``) and as problem+json
  with an example, each error CONTRACT's rules give it: 401, 403, 422 and 429 on /v1/,
  404 with a path parameter, 400, 409, 413 and 415 with a body, 412 where it reads
  If-Match, and the Idempotency-Key header on every POST. And each error it is *seen*
  answering: every operation is called the ways it can fail (no credential, a role that
  may not, an unknown id, a NUL in the query, a body that is not JSON, malformed JSON, a
  JSON that is not an object, an invalid Idempotency-Key, a stale If-Match, its own
  example) in a tenant of the test's own, and every status it answers must be documented
  on it.
- /openapi-all.json, from any service, is one document holding every operation of every
  service, each naming the URL of the service that answers it, with every reference
  resolving; /reference is Swagger UI over it, under the policy of /docs (and renders in a
  browser under it: test_docs_policy.py).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import pytest
import schemathesis

from shared.testing import bearer, eventually, wait_until
from tests.security.conftest import World
from tests.support.suite import Suite, commitment_body, create_tenant, issue_token

SERVICES = ("commitment", "checkin", "notification")
METHODS = ("get", "put", "post", "patch", "delete")
PROBLEM_JSON = "application/problem+json"


def _document(suite: Suite, service: str, path: str = "/openapi.json") -> dict[str, Any]:
    response = httpx.get(suite.url(service, path), timeout=60)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        if path.startswith("/v1/"):
            for method in METHODS:
                if method in item:
                    yield path, method, item[method]


def _resolve(document: dict[str, Any], value: Any) -> Any:
    while isinstance(value, dict) and "$ref" in value:
        node: Any = document
        for part in value["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        value = node
    return value


def _json_schema(value: Any) -> Any:
    """An OpenAPI 3.0 schema as JSON Schema: `nullable` becomes a null alternative."""
    if isinstance(value, list):
        return [_json_schema(item) for item in value]
    if not isinstance(value, dict):
        return value
    converted = {key: _json_schema(item) for key, item in value.items() if key not in ("nullable", "example")}
    if isinstance(value.get("properties"), dict):  # property names are not keywords: "example" may be one
        converted["properties"] = {name: _json_schema(item) for name, item in value["properties"].items()}
    if value.get("nullable"):
        return {"anyOf": [converted, {"type": "null"}]}
    return converted


def _example_problems(document: dict[str, Any], where: str, media: dict[str, Any], *, complete: bool = True
                      ) -> list[str]:
    """What is wrong with the example of a body: missing, refused by its schema, or (when it
    should be `complete`: requests and answers, not problems) lacking a property."""
    if "example" not in media:
        return [f"{where}: no example"]
    problems = []
    schema = media["schema"]
    example = media["example"]

    def walk(schema: Any, value: Any, at: str) -> None:
        schema = _resolve(document, schema)
        if schema.get("allOf") and value is not None:
            walk(schema["allOf"][0], value, at)
            return
        if schema.get("anyOf") or schema.get("oneOf"):
            return  # alternatives: the schema's validation below says whether the example is one
        if schema.get("type") == "object" and schema.get("properties") and isinstance(value, dict):
            for name, prop in schema["properties"].items():
                if name not in value:
                    problems.append(f"{where}: the example lacks {at}{name}")
                else:
                    walk(prop, value[name], f"{at}{name}.")
        elif schema.get("type") == "array" and isinstance(value, list):
            for item in value:
                walk(schema.get("items", {}), item, f"{at}[].")

    if complete:
        walk(schema, example, "")
    validator = jsonschema.Draft7Validator({**_json_schema(_resolve(document, schema)),
                                            "components": _json_schema(document.get("components", {}))})
    problems += [f"{where}: the example is refused by its schema: {error.message} at "
                 f"{'/'.join(map(str, error.absolute_path))}" for error in validator.iter_errors(example)]
    return problems


@pytest.mark.parametrize("service", SERVICES)
def test_every_operation_has_examples_its_schemas_accept(world: World, service: str) -> None:
    document = _document(world.suite, service)
    problems: list[str] = []
    for path, method, operation in _operations(document):
        where = f"{method.upper()} {path}"
        for media in operation.get("requestBody", {}).get("content", {}).values():
            problems += _example_problems(document, f"{where} request", media)
        for status, response in operation["responses"].items():
            response = _resolve(document, response)
            for content_type, media in response.get("content", {}).items():
                if "schema" in media:
                    problems += _example_problems(document, f"{where} {status} {content_type}", media,
                                                  complete=content_type != PROBLEM_JSON)
    assert not problems, "\n".join(problems)


def _required_errors(path: str, method: str, operation: dict[str, Any]) -> set[str]:
    """The errors CONTRACT's rules give an operation (see the module's docstring)."""
    required = {"401", "403", "422", "429"}
    if "{" in path:
        required.add("404")
    if method in ("post", "put", "patch"):
        required |= {"400", "409", "413", "415"}
    if method == "delete":
        required.add("409")
    if any(parameter.get("name") == "If-Match" for parameter in operation.get("parameters", [])):
        required.add("412")
    return required


@pytest.mark.parametrize("service", SERVICES)
def test_every_operation_documents_the_errors_it_can_answer(world: World, service: str) -> None:
    document = _document(world.suite, service)
    problems: list[str] = []
    for path, method, operation in _operations(document):
        where = f"{method.upper()} {path}"
        responses = operation["responses"]
        for status in sorted(_required_errors(path, method, operation) - set(responses)):
            problems.append(f"{where}: {status} is not documented")
        for status, response in responses.items():
            if status.isdigit() and int(status) >= 400:
                media = _resolve(document, response).get("content", {}).get(PROBLEM_JSON)
                if media is None or "example" not in media:
                    problems.append(f"{where}: {status} is not problem+json with an example")
        names = {parameter.get("name") for parameter in operation.get("parameters", [])}
        if method == "post" and "Idempotency-Key" not in names:
            problems.append(f"{where}: no Idempotency-Key header")
    assert not problems, "\n".join(problems)


# -- the errors the operations are seen answering ----------------------------------------------


@pytest.fixture
def probed_tenant(world: World) -> dict[str, Any]:
    """A tenant of this test's own, whose resources the probes may change and delete (its
    {key_id} is a second key: revoking it leaves the probes their credential)."""
    suite = world.suite
    with httpx.Client(timeout=30) as client:
        tenant = create_tenant(suite, client, "Probed Support")
        tag = uuid.uuid4().hex[:8]
        member, coach = f"m-probed-{tag}", f"coach-probed-{tag}"
        created = client.post(suite.url("commitment", "/v1/commitments"), headers=bearer(tenant.api_key),
                              json=commitment_body(member, world.day))
        assert created.status_code == 201, created.text
        endpoint = client.post(suite.url("notification", "/v1/webhook-endpoints"), headers=bearer(tenant.api_key),
                               json={"url": "https://1.1.1.1/probed", "event_types": ["*"]})
        assert endpoint.status_code == 201, endpoint.text
        second_key = client.post(suite.url("commitment", "/v1/api-keys"), headers=bearer(tenant.api_key))
        assert second_key.status_code == 201, second_key.text
        # A kept day of the coach's client: a milestone in the coach's feed, its {item_id}.
        assert client.put(suite.url("commitment", f"/v1/coaches/{coach}/clients/{member}"),
                          headers=bearer(tenant.api_key)).status_code == 204
        # The feed tells a coach of what happens once it knows them (404 until then).
        eventually(lambda: client.get(suite.url("notification", f"/v1/coaches/{coach}/notifications"),
                                      headers=bearer(tenant.api_key)), 200)
        eventually(lambda: client.post(suite.url("checkin", f"/v1/commitments/{created.json()['id']}/check-ins"),
                                       headers=bearer(tenant.api_key), json={"date": world.day, "outcome": "kept"}),
                   201)

        def feed_item() -> str | None:
            answer = client.get(suite.url("notification", f"/v1/coaches/{coach}/notifications"),
                                headers=bearer(tenant.api_key))
            items = answer.json().get("items") if answer.status_code == 200 else None
            return str(items[0]["id"]) if items else None

        item_id = wait_until(feed_item, 30, message="the milestone in the coach's feed")
        # A pause of the commitment: its {pause_id} (from today: the day reported above stands).
        pause = client.post(suite.url("checkin", f"/v1/commitments/{created.json()['id']}/pauses"),
                            headers=bearer(tenant.api_key), json={"from": world.day, "to": world.day})
        assert pause.status_code == 201, pause.text
        return {
            "admin": bearer(tenant.api_key),
            "unassigned coach": bearer(issue_token(suite, client, tenant, "coach", f"other-{coach}")),
            "another member": bearer(issue_token(suite, client, tenant, "member", f"other-{member}")),
            "real": {"commitment_id": created.json()["id"], "endpoint_id": endpoint.json()["id"], "coach_id": coach,
                     "member_id": member, "day": world.day, "key_id": second_key.json()["id"],
                     "message_id": f"msg_{uuid.uuid4().hex}", "item_id": item_id,
                     "pause_id": pause.json()["pause_id"]},
        }


def _fill(path: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        path = path.replace("{" + name + "}", value)
    assert "{" not in path, f"no value for a parameter of {path}"
    return path


def _probes(path: str, method: str, operation: dict[str, Any], tenant: dict[str, Any]
            ) -> Iterator[tuple[str, dict[str, Any]]]:
    """(what, request) pairs: the ways the operation can fail, then its own example."""
    real = _fill(path, tenant["real"])
    unknown = _fill(path, {name: ("2001-01-01" if name == "day" else f"unknown-{uuid.uuid4().hex[:8]}")
                           for name in tenant["real"]})
    admin = tenant["admin"]
    media = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
    example = {"json": media["example"]} if "example" in media else {}
    yield "no credential", {"url": real, **example}
    yield "an unassigned coach", {"url": real, "headers": tenant["unassigned coach"], **example}
    yield "another member", {"url": real, "headers": tenant["another member"], **example}
    if unknown != real:
        yield "an unknown id", {"url": unknown, "headers": admin, **example}
    yield "a NUL in the query", {"url": real + "?q=%00", "headers": admin, **example}
    if method in ("post", "put", "patch"):
        yield "not JSON", {"url": real, "headers": {**admin, "Content-Type": "text/plain"}, "content": b"hello"}
        yield "malformed JSON", {"url": real, "headers": {**admin, "Content-Type": "application/json"},
                                 "content": b'{"a":'}
        if media:
            yield "JSON that is not an object", {"url": real, "headers": admin, "json": []}
    if method == "post":
        yield "an invalid Idempotency-Key", {"url": real, "headers": {**admin, "Idempotency-Key": ""}, **example}
    if method != "get":
        yield "a stale If-Match", {"url": real, "headers": {**admin, "If-Match": '"999999"'}, **example}
    yield "its own example", {"url": real, "headers": admin, **example}


@pytest.mark.parametrize("service", SERVICES)
def test_every_status_an_operation_answers_is_documented_on_it(world: World, probed_tenant: dict[str, Any],
                                                               service: str) -> None:
    suite = world.suite
    document = _document(suite, service)
    # Deletions last: the other probes want the tenant's resources.
    operations = sorted(_operations(document), key=lambda found: found[1] == "delete")
    problems: list[str] = []
    seen: set[str] = set()
    with httpx.Client(timeout=30) as client:
        for path, method, operation in operations:
            for what, request in _probes(path, method, operation, probed_tenant):
                request = {**request, "url": suite.url(service, request["url"])}
                response = client.request(method.upper(), **request)
                status = str(response.status_code)
                seen.add(status)
                if status not in operation["responses"]:
                    problems.append(f"{method.upper()} {path}, {what}: {status} is not documented "
                                    f"({response.text[:200]})")
                elif response.status_code >= 400 and response.headers.get("content-type") != PROBLEM_JSON:
                    problems.append(f"{method.upper()} {path}, {what}: {status} is not problem+json")
    assert not problems, "\n".join(problems)
    assert {"401", "403", "404", "415", "422"} <= seen, seen  # the probes reach what they aim at


# -- the combined reference ----------------------------------------------------------------------


def _refs(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "$ref":
                yield item
            else:
                yield from _refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from _refs(item)


def test_the_combined_reference_holds_every_operation_of_every_service(world: World) -> None:
    suite = world.suite
    combined = _document(suite, "commitment", "/openapi-all.json")
    for service in ("checkin", "notification"):
        assert _document(suite, service, "/openapi-all.json") == combined  # the same from every service
    missing = []
    for service in SERVICES:
        for path, item in _document(suite, service)["paths"].items():
            for method in METHODS:
                if method not in item:
                    continue
                merged = combined["paths"].get(path, {}).get(method)
                if merged is None or suite.url(service) not in [server["url"] for server in merged["servers"]]:
                    missing.append(f"{service}: {method.upper()} {path}")
                elif not any(tag.startswith(f"{service}: ") for tag in merged["tags"]):
                    missing.append(f"{service}: {method.upper()} {path} has no tag of its service")
    assert not missing, "\n".join(missing)
    for reference in set(_refs(combined)):
        _resolve(combined, {"$ref": reference})  # raises KeyError when it leads nowhere
    # A valid OpenAPI document: schemathesis loads it and every operation in it.
    loaded = schemathesis.openapi.from_dict(combined)
    operations = [result.ok() for result in loaded.get_all_operations()]
    assert len(operations) == sum(len([m for m in item if m in METHODS]) for item in combined["paths"].values())


def _policy(response: httpx.Response) -> dict[str, list[str]]:
    return {part.split()[0]: part.split()[1:] for part in response.headers["Content-Security-Policy"].split("; ")}


def test_the_reference_page_is_swagger_ui_over_it_under_the_docs_policy(world: World) -> None:
    suite = world.suite
    for service in SERVICES:
        page = httpx.get(suite.url(service, "/reference"), timeout=30)
        docs = httpx.get(suite.url(service, "/docs"), timeout=30)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert '"/openapi-all.json"' in page.text and "/docs/assets/swagger-ui-bundle.js" in page.text
        assert "//cdn" not in page.text and "https://" not in page.text
        policy, docs_policy = _policy(page), _policy(docs)
        assert policy.keys() == docs_policy.keys()
        assert {k: v for k, v in policy.items() if k != "script-src"} == \
            {k: v for k, v in docs_policy.items() if k != "script-src"}
        assert policy["script-src"][0] == "'self'" and len(policy["script-src"]) == 2
        assert page.headers["X-Content-Type-Options"] == "nosniff"


def test_the_cli_prints_the_same_combined_reference(world: World) -> None:
    from click.testing import CliRunner

    from services.cli import main

    result = CliRunner().invoke(main, ["openapi", "--merged"], env=world.suite.env)
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed == _document(world.suite, "commitment", "/openapi-all.json")
