"""What the OpenAPI documents say beyond what each view declares, and the combined reference.

flask-smorest documents what a view's decorators say: its arguments, its answer. The rest
of what an operation can answer follows from where it sits, and is added here, once for
every service (`describe`), from facts read off the app rather than written per view:

- a ``/v1/`` operation needs a credential (401), which may lack the role (403), counts
  against the rate limit (429), and refuses what the database cannot hold in a query or
  path parameter (422);
- a path parameter names a resource that may not exist, or be another tenant's (404); so
  does a view that raises `shared.errors.NotFound` itself (an id in the body);
- a POST, PUT or PATCH takes JSON (400 malformed, 413 too large, 415 not JSON) and runs a
  command (409: the state does not allow it, or, with Retry-After, it was busy); so does
  a DELETE (409);
- a view that calls `shared.web.if_match` honours If-Match (the header, and 412);
- every ``/v1/`` POST takes ``Idempotency-Key`` (`shared.idempotency`; 409 while the
  first request runs, 422 for a key used for another request).

Each error is ``application/problem+json`` with an example. A view that documents an
error itself (with what it means there) keeps its own description. Examples of request
and answer bodies are composed from the examples the schemas' fields carry
(``metadata={"example": ...}``), so an example is written once, next to the field, and
every operation using the schema shows it.

`merge` makes one document of the three services' (``GET /openapi-all.json`` on every
service, ``nocontact openapi --merged``, and Swagger UI over it at ``/reference``).
"""

from __future__ import annotations

import copy
import html
import importlib
import inspect
import json
import re
from collections.abc import Callable, Iterable, Mapping
from functools import cache
from http import HTTPStatus
from typing import Any

from flask import Flask

from shared import config
from shared.problems import PROBLEM_JSON, Problem

#: Where an app keeps its `shared.web.ProblemApi` (app.extensions).
EXTENSION = "nocontact.api"
#: Every service, each documented by its own app (services.<service>.app.create_app).
SERVICES = tuple(config.PORT_DEFAULTS)

WRITE_METHODS = ("post", "put", "patch")
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_RULE_ARGUMENT = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")
_MISSING = object()

RETRY_AFTER = {"description": "seconds to wait before sending the request again",
               "schema": {"type": "integer", "minimum": 1}, "example": 1}

#: What each error means wherever it is not documented more precisely, with an example detail.
ERRORS: dict[int, tuple[str, str]] = {
    400: ("The body is not valid JSON, or could not be read.", "the request body is not valid JSON"),
    401: ("No credential, or not a valid one: send `Authorization: Bearer <API key or token>`.",
          "an Authorization: Bearer credential is required"),
    403: ("The credential is valid, but its role may not do this (e.g. a member token on an admin "
          "operation, a coach reading another coach's clients).",
          "this requires one of the roles: admin"),
    404: ("No such resource, or one of another tenant (the same answer: existence never leaks).",
          "no such resource"),
    409: ("The current state does not allow it. With `Retry-After`: the resource was busy, nothing "
          "was written; send the same request again.",
          "the resource changed too often concurrently; retry the request"),
    412: ("`If-Match` names a version that is no longer current; the answer's `ETag` is the current one.",
          'If-Match does not match the current version 3'),
    413: ("The body is larger than 256 KiB.", "the body may be at most 262144 bytes"),
    415: ("A body that is not `application/json`.", "the body must be application/json"),
    422: ("Well-formed but invalid: `errors` names each offending field (or query, path or header "
          "parameter) with its messages.", "limit: Must be greater than or equal to 1 and less than or equal to 200."),
    429: ("Rate limited: `Retry-After` says when to send again.",
          "rate limit of 600 requests per minute exceeded for this credential; retry in 2 s"),
}
IDEMPOTENCY_409 = ("With `Retry-After`, also: the first request with this `Idempotency-Key` is still being "
                   "carried out; send it again for its answer. Without: that request was carried out but "
                   "its answer was lost; read the resource.")
IDEMPOTENCY_422 = "Also: `Idempotency-Key` is invalid, or was used for a different request within 24 hours."

IDEMPOTENCY_KEY = {
    "in": "header",
    "name": "Idempotency-Key",
    "required": False,
    "description": (
        "Makes the request safe to send again (IETF draft `Idempotency-Key`): a repeat with the same key, "
        "by a credential of the same tenant (and, for a token, the same role and subject), with the same "
        "body within 24 hours changes nothing and returns the first answer (status, body, `Location`, "
        "`ETag`) with `Idempotent-Replayed: true`. The same key with another body: 422; while the first "
        "request is still running: 409 with `Retry-After`. 1-255 printable ASCII characters, e.g. a UUID."
    ),
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[ -~]+$"},
}
IF_MATCH = {
    "in": "header",
    "name": "If-Match",
    "required": False,
    "description": "The resource's `ETag` (its `version`, e.g. `\"3\"`) the change was decided on; "
                   "if it changed meanwhile: 412, nothing written.",
    "schema": {"type": "string"},
}


def openapi_path(rule: str) -> str:
    """A Flask rule (``/v1/commitments/<string:commitment_id>``) as an OpenAPI path."""
    return _RULE_ARGUMENT.sub(r"{\1}", rule)


def problem_example(status: int, detail: str | None = None) -> dict[str, Any]:
    problem = Problem(status, detail or ERRORS.get(status, ("", None))[1])
    if status == 422 and problem.detail and ": " in problem.detail:
        field, message = problem.detail.split(": ", 1)
        problem.errors = {field: [message]}
    return problem.body()


def problem_response(status: int, description: str | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description or ERRORS.get(status, (HTTPStatus(status).phrase,))[0],
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"},
                                   "example": problem_example(status)}},
    }
    if status in (409, 429):
        response["headers"] = {"Retry-After": RETRY_AFTER}
    if status == 412:
        response["headers"] = {"ETag": {"description": "the current version", "schema": {"type": "string"}}}
    return response


# -- what each operation can answer ---------------------------------------------------------------


def _names(view: Callable[..., Any]) -> tuple[str, ...]:
    """The global names a view's own code uses (what it calls, what it raises)."""
    code = getattr(inspect.unwrap(view), "__code__", None)
    return () if code is None else code.co_names


def honours_if_match(view: Callable[..., Any]) -> bool:
    """Whether a view reads If-Match: it calls `shared.web.if_match` itself."""
    return "if_match" in _names(view)


def raises_not_found(view: Callable[..., Any]) -> bool:
    """Whether a view answers 404 of its own accord: it raises `shared.errors.NotFound`."""
    return "NotFound" in _names(view)


def errors_of(path: str, method: str, *, authenticated: bool, if_match: bool, not_found: bool = False
              ) -> list[int]:
    """The error statuses an operation can answer (see the module's docstring)."""
    if not path.startswith("/v1/"):
        return []
    statuses = {422}
    if authenticated:
        statuses |= {401, 403, 429}
    if "{" in path or not_found:
        statuses.add(404)
    if method in WRITE_METHODS:
        statuses |= {400, 409, 413, 415}
    if method == "delete":
        statuses.add(409)
    if if_match:
        statuses.add(412)
    return sorted(statuses)


def _views(app: Flask) -> Iterable[tuple[str, str, Callable[..., Any]]]:
    """(OpenAPI path, method, view function) of every route of the app."""
    for rule in app.url_map.iter_rules():
        view = app.view_functions.get(rule.endpoint)
        if view is None:
            continue
        view_class = getattr(view, "view_class", None)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            handler = getattr(view_class, method.lower(), None) if view_class is not None else view
            if handler is not None:
                yield openapi_path(rule.rule), method.lower(), handler


def describe(document: dict[str, Any], app: Flask, *, public_paths: Iterable[str] = ()) -> dict[str, Any]:
    """`document` (a service's, as flask-smorest made it) with every operation's errors,
    headers and examples added; a new dict."""
    document = copy.deepcopy(document)
    public = tuple(public_paths)
    components = document.setdefault("components", {})
    _exemplify_responses(components)
    for path, method, view in _views(app):
        operation = document.get("paths", {}).get(path, {}).get(method)
        if operation is None:
            continue
        reads_if_match = honours_if_match(view)
        responses = operation.setdefault("responses", {})
        for status in errors_of(path, method, authenticated=not path.startswith(public), if_match=reads_if_match,
                                not_found=raises_not_found(view)):
            _document_error(components, responses, str(status), path, method)
        parameters = operation.setdefault("parameters", [])
        if reads_if_match:
            _add_parameter(parameters, IF_MATCH)
        if method == "post" and path.startswith("/v1/"):
            _add_parameter(parameters, IDEMPOTENCY_KEY)
            for response in _success_responses(responses):
                response.setdefault("headers", {}).setdefault("Idempotent-Replayed", {
                    "description": "`true` when this is the first answer to the same request, replayed "
                                   "(Idempotency-Key)", "schema": {"type": "string", "enum": ["true"]}})
        if not parameters:
            del operation["parameters"]
        _add_examples(operation, components)
    return document


def _document_error(components: dict[str, Any], responses: dict[str, Any], status: str, path: str,
                    method: str) -> None:
    generic = problem_response(int(status))
    existing = responses.get(status)
    if existing is None or "$ref" in existing:
        response = generic  # flask-smorest's shared one says only the status's name
    else:
        # The view's own description of the error, on the problem+json it answers with.
        response = copy.deepcopy(existing)
        content = response.setdefault("content", {})
        content.pop("application/json", None)
        media = content.setdefault(PROBLEM_JSON, {"schema": {"$ref": "#/components/schemas/Problem"}})
        if "example" not in media and "examples" not in media:
            media["example"] = generic["content"][PROBLEM_JSON]["example"]
        for name, header in generic.get("headers", {}).items():
            response.setdefault("headers", {}).setdefault(name, header)
    if method == "post" and path.startswith("/v1/") and status in ("409", "422"):
        extra = IDEMPOTENCY_409 if status == "409" else IDEMPOTENCY_422
        if extra not in response["description"]:
            response["description"] = f"{response['description']} {extra}"
    responses[status] = response


def _add_parameter(parameters: list[dict[str, Any]], parameter: dict[str, Any]) -> None:
    if not any(p.get("in") == parameter["in"] and str(p.get("name")).lower() == parameter["name"].lower()
               for p in parameters):
        parameters.append(copy.deepcopy(parameter))


def _success_responses(responses: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [response for status, response in responses.items()
            if status.isdigit() and 200 <= int(status) < 300 and "$ref" not in response]


def _exemplify_responses(components: dict[str, Any]) -> None:
    """The shared error responses flask-smorest refers to (``UNPROCESSABLE_ENTITY``, ...)
    with an example each."""
    for name, response in components.get("responses", {}).items():
        status = HTTPStatus.__members__.get(name)
        for media in response.get("content", {}).values():
            if "example" not in media:
                media["example"] = problem_example(status.value if status is not None else 500,
                                                   None if status in ERRORS else "an unexpected error occurred")


# -- examples -------------------------------------------------------------------------------------


def _resolve(components: Mapping[str, Any], value: Any) -> Any:
    while isinstance(value, dict) and "$ref" in value:
        kind, name = value["$ref"].split("/")[-2:]
        value = components.get(kind, {}).get(name, {})
    return value


def compose_example(schema: Any, components: Mapping[str, Any], *, seen: tuple[str, ...] = ()) -> Any:
    """An example of a value of `schema`, made of the examples its fields carry (nothing
    is made up: a property without an example is left out, see `missing_examples`)."""
    if isinstance(schema, dict) and "$ref" in schema:
        if schema["$ref"] in seen:
            return _MISSING
        return compose_example(_resolve(components, schema), components, seen=(*seen, schema["$ref"]))
    if not isinstance(schema, dict):
        return _MISSING
    if "example" in schema:
        return schema["example"]
    for combinator in ("allOf", "oneOf", "anyOf"):  # a nullable Nested is allOf [its schema]
        if schema.get(combinator):
            return compose_example(schema[combinator][0], components, seen=seen)
    if schema.get("type") == "array" or "items" in schema:
        item = compose_example(schema.get("items", {}), components, seen=seen)
        return _MISSING if item is _MISSING else [item]
    properties = schema.get("properties")
    if properties:
        example = {}
        for name, prop in properties.items():
            value = compose_example(prop, components, seen=seen)
            if value is not _MISSING:
                example[name] = value
        return example or _MISSING
    return _MISSING


def missing_examples(schema: Any, components: Mapping[str, Any], where: str = "", *,
                     seen: tuple[str, ...] = ()) -> list[str]:
    """The properties of `schema` (dotted paths) for which no example can be composed."""
    if isinstance(schema, dict) and "$ref" in schema:
        if schema["$ref"] in seen:
            return []
        return missing_examples(_resolve(components, schema), components, where, seen=(*seen, schema["$ref"]))
    if not isinstance(schema, dict) or "example" in schema:
        return []
    for combinator in ("allOf", "oneOf", "anyOf"):
        if schema.get(combinator):
            return missing_examples(schema[combinator][0], components, where, seen=seen)
    if schema.get("type") == "array" or "items" in schema:
        return missing_examples(schema.get("items", {}), components, f"{where}[]", seen=seen)
    properties = schema.get("properties")
    if properties:
        return [missing for name, prop in properties.items()
                for missing in missing_examples(prop, components, f"{where}.{name}" if where else name, seen=seen)]
    return [where or "(the value)"]


def _add_examples(operation: dict[str, Any], components: Mapping[str, Any]) -> None:
    medias = list(operation.get("requestBody", {}).get("content", {}).values())
    medias += [media for response in _success_responses(operation.get("responses", {}))
               for media in response.get("content", {}).values()]
    for media in medias:
        if "example" in media or "examples" in media or "schema" not in media:
            continue
        example = compose_example(media["schema"], components)
        if example is not _MISSING:
            media["example"] = example


# -- the combined reference -------------------------------------------------------------------------


def _rename_refs(value: Any, renames: Mapping[str, str]) -> Any:
    if isinstance(value, dict):
        return {key: (renames.get(item, item) if key == "$ref" else _rename_refs(item, renames))
                for key, item in value.items()}
    if isinstance(value, list):
        return [_rename_refs(item, renames) for item in value]
    return value


def merge(documents: Mapping[str, dict[str, Any]], servers: Mapping[str, str], *, title: str,
          description: str) -> dict[str, Any]:
    """One OpenAPI document of several services' (`documents` by service name, each served
    at `servers[service]`). Every operation names the server that answers it; tags are
    prefixed with the service; a component two services define alike is kept once, one they
    define differently is renamed after its service (``CheckinExport``); an operation
    several services serve alike (a member's export) lists each of their servers."""
    merged: dict[str, Any] = {"openapi": "3.0.3", "info": {"title": title, "version": "v1",
                                                          "description": description},
                              "paths": {}, "tags": [], "components": {}}
    for service, document in documents.items():
        renames: dict[str, str] = {}
        for kind, items in document.get("components", {}).items():
            target = merged["components"].setdefault(kind, {})
            for name, item in items.items():
                if name in target and json.dumps(target[name], sort_keys=True) != json.dumps(
                        _rename_refs(item, renames), sort_keys=True):
                    renames[f"#/components/{kind}/{name}"] = f"#/components/{kind}/{service.title()}{name}"
        document = _rename_refs(document, renames)
        for kind, items in document.get("components", {}).items():
            target = merged["components"][kind]
            for name, item in items.items():
                final = renames.get(f"#/components/{kind}/{name}", f"#/components/{kind}/{name}").rsplit("/", 1)[1]
                target.setdefault(final, item)
        for tag in document.get("tags", []):
            merged["tags"].append({**tag, "name": f"{service}: {tag['name']}"})
        server = {"url": servers[service], "description": f"the {service} service"}
        for path, item in document.get("paths", {}).items():
            target_item = merged["paths"].setdefault(path, {})
            for key, value in item.items():
                if key not in HTTP_METHODS:
                    target_item.setdefault(key, value)
                    continue
                operation = {**value, "tags": [f"{service}: {tag}" for tag in value.get("tags", [])],
                             "servers": [server]}
                present = target_item.get(key)
                if present is None:
                    target_item[key] = operation
                else:
                    present["servers"].append(server)
                    present["tags"] = [*present["tags"], *operation["tags"]]
    return merged


def document_of(app: Flask) -> dict[str, Any]:
    """The OpenAPI document an app serves at /openapi.json."""
    return app.extensions[EXTENSION].document()  # type: ignore[no-any-return]


@cache
def service_document(service: str) -> dict[str, Any]:
    """A service's document, from its own app (made only to be read: nothing connects
    until a request)."""
    return document_of(importlib.import_module(f"services.{service}.app").create_app())


REFERENCE_DESCRIPTION = """Every operation of the three nocontact services in one document. Each
service answers on its own base URL, named on each operation (`servers`): commitment (tenants,
API keys, tokens, commitments, coach assignments, members), checkin (check-ins, streaks,
settings, a coach's clients), notification (webhook endpoints, deliveries, the coach feed).

**Credentials.** `Authorization: Bearer <credential>` on every `/v1/` request, accepted by every
service alike: an admin API key of a tenant (`nocontact tenants create`, `POST /v1/api-keys`),
a coach or member token (`POST /v1/tokens`), or the operator token (`POST /v1/tenants`).

**Errors** are `application/problem+json` (RFC 9457): `type`, `title`, `status`, `detail`, and
for 422 `errors` naming each field. Each operation lists the statuses it can answer.

**Retries.** Every `POST` takes `Idempotency-Key`: sent again with the same key and body within
24 hours, it changes nothing and answers as the first time (`Idempotent-Replayed: true`).
Changes decided on a version send it as `If-Match` (412 when it moved on). A `409` or `429`
with `Retry-After` asks to send the same request again after that many seconds.

**Webhooks** are signed as Standard Webhooks (`webhook-id`, `webhook-timestamp`,
`webhook-signature`); verify them with the `standardwebhooks` package and the endpoint's
`whsec_` secret, as the README's quickstart shows."""


def combined(own: Flask | None = None) -> dict[str, Any]:
    """The combined reference: every service's document merged (`merge`), each operation
    naming its service's base URL (NOCONTACT_<SERVICE>_URL, else 127.0.0.1 and its port).
    `own`: the app asking, whose document is taken as it serves it."""
    documents = {
        service: document_of(own) if own is not None and own.config.get("NOCONTACT_SERVICE") == service
        else service_document(service)
        for service in SERVICES
    }
    return merge(documents, {service: config.service_url(service) for service in SERVICES},
                 title="nocontact API reference", description=REFERENCE_DESCRIPTION)


_REFERENCE_PAGE = """<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <title>nocontact API reference</title>
    <link href="{assets}swagger-ui.css" rel="stylesheet" type="text/css">
  </head>
  <body>
    <div id="swagger-ui-container"></div>
    <script src="{assets}swagger-ui-bundle.js"></script>
    <script src="{assets}swagger-ui-standalone-preset.js"></script>
    <script>
      window.onload = function () {{
        window.ui = SwaggerUIBundle({{url: {spec}, dom_id: "#swagger-ui-container", deepLinking: true}});
      }};
    </script>
  </body>
</html>
"""


def reference_page(spec_url: str, assets_url: str) -> str:
    """Swagger UI over the combined reference, from the service's own copy of its assets
    (no CDN; its one inline script is allowed by hash, as on /docs)."""
    return _REFERENCE_PAGE.format(assets=html.escape(assets_url), spec=json.dumps(spec_url))
