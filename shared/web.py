"""The Flask application every service is built on.

flask-smorest turns each marshmallow schema into validation, OpenAPI and serialisation at
once (`/openapi.json`, Swagger UI at `/docs`, served locally: no CDN); `shared.openapi`
adds what every operation can answer besides, and the combined reference of all services
(`/openapi-all.json`, Swagger UI at `/reference`). Every error leaves as
application/problem+json. Every /v1/ POST honours Idempotency-Key (`shared.idempotency`).
`/healthz`, `/readyz` and `/metrics` come with every app.
Connections are made lazily per process (after gunicorn forks), never at import time.
"""

from __future__ import annotations

import base64
import hashlib
import io
import ipaddress
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
from functools import partial
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

import marshmallow as ma
import structlog
from flask import Flask, Response, current_app, g, json, request, send_from_directory
from flask.globals import request_ctx
from flask_smorest import Api, Blueprint
from flask_smorest.utils import prepare_response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sqlalchemy import Connection, Engine, text
from werkzeug.exceptions import HTTPException

from shared import bus, commands, config, idempotency, metrics, openapi, ratelimit
from shared import logging as nclog
from shared.auth import CredentialTables, Principal, admit
from shared.clock import Clock, utcnow
from shared.commands import Context
from shared.db import engine_for, read
from shared.errors import Busy, DomainError, Forbidden, NotFound, PreconditionFailed, ValidationFailed
from shared.eventstore import ConcurrencyError
from shared.problems import PROBLEM_JSON, Problem, flatten_errors, invalid
from shared.rawpath import RawPath, Segment

log = logging.getLogger(__name__)
access_log = nclog.get_logger("nocontact.access")

MAX_BODY_BYTES = 256 * 1024
WRITE_METHODS = {"POST", "PUT", "PATCH"}
#: What the event store keeps of a client's X-Correlation-ID (events.correlation_id).
CORRELATION_ID_MAX = 64
# Text PostgreSQL cannot store: NUL, and lone UTF-16 surrogates (not encodable as UTF-8).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.S)
#: Endpoints of the Swagger UI pages, served under `_docs_policy`.
DOCS_PAGES = ("api-docs.openapi_swagger_ui", "reference")


class ProblemSchema(ma.Schema):
    """RFC 9457 problem details, as every error of every service is shaped."""

    type = ma.fields.String(required=True, metadata={"example": "https://nocontact.dev/problems/unprocessable-entity"})
    title = ma.fields.String(required=True, metadata={"example": "Unprocessable Entity"})
    status = ma.fields.Integer(required=True, metadata={"example": 422})
    detail = ma.fields.String(required=True, metadata={"example": "timezone: must be an IANA time zone name"})
    errors = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.List(ma.fields.String()),
                            metadata={"description": "validation errors only: each offending field (dotted when "
                                                     "nested) with its messages",
                                      "example": {"timezone": ["must be an IANA time zone name"]}})


class ProblemApi(Api):
    """flask-smorest's Api whose errors are RFC 9457 problems naming the fields."""

    ERROR_SCHEMA = ProblemSchema

    def document(self) -> dict[str, Any]:
        """The service's OpenAPI document as /openapi.json serves it: flask-smorest's, with
        what every operation can answer besides (`shared.openapi.describe`). Made once."""
        described: dict[str, Any] | None = getattr(self, "_described", None)
        if described is None:
            described = openapi.describe(self.spec.to_dict(), self._app,
                                         public_paths=self._app.config["NOCONTACT_PUBLIC_PATHS"])
            self._described = described
        return described

    def _openapi_json(self) -> Response:
        return Response(json.dumps(self.document(), indent=2), mimetype="application/json")

    def _register_responses(self) -> None:
        # flask-smorest documents its error responses as application/json; ours are
        # application/problem+json, and the OpenAPI document must say what is served.
        for status in HTTPStatus:
            response: dict[str, Any] = {"description": status.phrase}
            if not (100 <= status < 200) and status not in (204, 304):
                response["schema"] = self.ERROR_SCHEMA
            prepare_response(response, self.spec, PROBLEM_JSON)
            self.spec.components.response(status.name, response, lazy=True)
        response = {"description": "Default error response", "schema": self.ERROR_SCHEMA}
        prepare_response(response, self.spec, PROBLEM_JSON)
        self.spec.components.response("DEFAULT_ERROR", response, lazy=True)

    def handle_http_exception(self, error: HTTPException):  # type: ignore[no-untyped-def, override]
        data = getattr(error, "data", None) or {}
        messages = data.get("messages") or data.get("errors")
        errors = None
        if messages:
            # webargs nests by location ({"json": {...}, "query": {...}}); the client wants fields.
            merged: dict[str, Any] = {}
            for location, value in messages.items() if isinstance(messages, dict) else []:
                if location in ("json", "query", "querystring", "form", "headers", "view_args", "path"):
                    merged.update(value if isinstance(value, dict) else {"_schema": value})
                else:
                    merged[location] = value
            errors = flatten_errors(merged or messages)
        status = error.code or 500
        if status == 400 and errors and any("Invalid JSON" in m for ms in errors.values() for m in ms):
            detail = "the request body is not valid JSON"
            errors = None
        elif errors:
            detail = "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in errors.items())
        else:
            detail = data.get("message") or error.description or error.name
        # Werkzeug's own headers of the error (Allow of a 405), without its HTML content type.
        headers = {name: value for name, value in error.get_headers() if name.lower() != "content-type"}
        headers.update(data.get("headers") or {})
        return problem_response(Problem(status, detail, errors=errors, headers=headers))


def domain_problem(error: DomainError) -> Problem:
    """The one mapping from the kind of rule a command broke to its HTTP answer."""
    if isinstance(error, ValidationFailed):
        return Problem(422, str(error), errors=error.errors)
    if isinstance(error, NotFound):
        return Problem(404, error.message)
    if isinstance(error, Forbidden):
        return Problem(403, error.message)
    if isinstance(error, PreconditionFailed):
        headers = {} if error.current_version is None else {"ETag": etag(error.current_version)}
        return Problem(412, error.message, headers=headers)
    if isinstance(error, Busy):
        return Problem(409, error.message, headers={"Retry-After": str(error.retry_after_s)})
    # Conflict, and any other kind a domain adds: the state does not allow it.
    return Problem(409, error.message)


def problem_response(problem: Problem) -> Response:
    response = Response(json.dumps(problem.body()), status=problem.status, mimetype=PROBLEM_JSON)
    for name, value in problem.headers.items():
        response.headers[name] = value
    return response


# -- per-request state -------------------------------------------------------------------


def service_name() -> str:
    return current_app.config["NOCONTACT_SERVICE"]


def engine() -> Engine:
    """This process's engine for the current service's database."""
    return engine_for(config.database_url(service_name()))


def principal() -> Principal:
    """The authenticated caller of this /v1/ request."""
    found = g.get("principal")
    if found is None:
        raise Problem(401, "an Authorization: Bearer credential is required")
    return found


def correlation_id() -> str:
    return g.get("correlation_id") or str(uuid.uuid4())


def now() -> datetime:
    """The current instant by the app's clock (``NOCONTACT_CLOCK`` in its config, which
    tests set; the system clock otherwise): the one clock of every service's requests."""
    clock: Clock = current_app.config.get("NOCONTACT_CLOCK") or utcnow
    return clock()


def context() -> Context:
    """The command context of this request: the caller's tenant, how events record the
    caller, and the request's correlation id."""
    caller = principal()
    return Context(tenant_id=caller.tenant_id, actor=caller.actor, correlation_id=correlation_id())


def etag(version: int) -> str:
    """The ETag of a resource at `version` (quoted, as RFC 9110 wants)."""
    return f'"{version}"'


def if_match() -> int | None:
    """The version named by If-Match (``3``, ``"3"`` or ``W/"3"``); None when absent or ``*``."""
    header = request.headers.get("If-Match")
    if header is None or header.strip() == "*":
        return None
    value = header.strip().removeprefix("W/").strip('"')
    if not value.isascii() or not value.isdigit() or len(value) > 18:
        # A tag this API never issued cannot match any version.
        raise Problem(412, 'If-Match must name a version this API issued, e.g. "3"')
    return int(value)


def require_role(*roles: str) -> Principal:
    """The caller, if its role is one of `roles`; a 403 problem otherwise."""
    caller = principal()
    if caller.role not in roles:
        raise Problem(403, f"this requires one of the roles: {', '.join(roles)}")
    return caller


def require_tenant() -> Principal:
    """A caller acting within a tenant (not the operator)."""
    caller = principal()
    if caller.tenant_id is None:
        raise Problem(403, "this requires a tenant credential")
    return caller


# -- readiness -------------------------------------------------------------------------------

Check = Callable[[], None]


def database_check() -> None:
    with engine().connect() as conn:
        conn.execute(text("SELECT 1"))


def broker_check() -> None:
    connection = bus.connect()
    try:
        connection.ensure_connection(max_retries=1, timeout=3)
    finally:
        connection.release()


# -- the factory ------------------------------------------------------------------------------


def create_app(
    service: str,
    *,
    title: str,
    description: str,
    blueprints: Iterable[Blueprint],
    credentials: CredentialTables,
    extra_checks: dict[str, Check] | None = None,
    public_paths: Iterable[str] = (),
) -> Flask:
    """A service's Flask app: API, docs, errors, auth, health and metrics wired once."""
    # A malformed setting stops the app from loading (gunicorn: the worker fails to boot),
    # named, instead of answering 500 to every request that reads it; all of them at once,
    # before logging (it reads one) fails on the first.
    config.check()
    nclog.configure(service)
    app = Flask(service)
    # Ids may hold a `/` (sent as %2F): route on the path as sent (shared.rawpath).
    app.wsgi_app = RawPath(app.wsgi_app)  # type: ignore[method-assign]
    app.url_map.converters["default"] = app.url_map.converters["string"] = Segment
    app.config.update(
        NOCONTACT_SERVICE=service,
        API_TITLE=title,
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL="/docs/assets/",
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
        NOCONTACT_PUBLIC_PATHS=tuple(public_paths),
        API_SPEC_OPTIONS={
            "info": {"description": description},
            "components": {
                "securitySchemes": {
                    "bearer": {
                        "type": "http",
                        "scheme": "bearer",
                        "description": "API key (admin), scoped token (coach/member) or operator token",
                    }
                }
            },
            "security": [{"bearer": []}],
        },
    )
    api = ProblemApi(app)
    app.extensions[openapi.EXTENSION] = api
    for blueprint in blueprints:
        api.register_blueprint(blueprint)
    checks: dict[str, Check] = {"database": database_check, "broker": broker_check, **(extra_checks or {})}
    public = tuple(public_paths)

    @app.teardown_request
    def _forget_request_log_context(_error: BaseException | None) -> None:
        # The thread serves other work next (a test client's caller, the next request):
        # nothing of this request's log context may stay bound to it.
        structlog.contextvars.clear_contextvars()
        # Nor the command hook of its Idempotency-Key (shared.idempotency).
        commands.after_append.set(())

    @app.before_request
    def _before() -> Response | None:
        g.started = time.perf_counter()
        g.correlation_id = _client_correlation_id() or str(uuid.uuid4())
        # Every log line of this request carries its correlation id; the events it appends
        # carry it too, so one id follows the request through the broker to the webhook.
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(
            correlation_id=g.correlation_id, method=request.method, path=request.path
        )
        if request.method == "OPTIONS":
            return _options()
        if request.method == "TRACE" and request.routing_exception is not None:
            # No route serves TRACE: 405 (with Allow) or 404, whoever asks.
            raise request.routing_exception
        if request.method in WRITE_METHODS and request.path.startswith("/v1/"):
            if request.content_length and request.content_length > MAX_BODY_BYTES:
                raise Problem(413, f"the body may be at most {MAX_BODY_BYTES} bytes")
            if request.content_length is None and "wsgi.input_terminated" in request.environ:
                _buffer_unsized_body()
            if (request.content_length or request.data) and not request.is_json:
                raise Problem(415, "the body must be application/json")
            if request.content_length or request.data:
                _vet_json_body()
        _vet_url()
        if request.path.startswith("/v1/") and not request.path.startswith(public):
            admitted = admit(engine(), service, credentials, request.headers.get("Authorization"),
                             ratelimit.client_address(request.environ))
            g.principal, g.rate_limit = admitted.principal, admitted.rate_limit
            if request.method == "POST":
                return _idempotent_start(service)
        return None

    @app.after_request
    def _after(response: Response) -> Response:
        response.headers["X-Correlation-ID"] = correlation_id()
        # No answer is ever to be read as anything but its declared type.
        response.headers["X-Content-Type-Options"] = "nosniff"
        if request.path.startswith("/v1/"):
            # /v1/ answers carry members' private notes: no shared or browser cache keeps them.
            response.headers["Cache-Control"] = "no-store"
        elif request.url_rule is not None and request.url_rule.endpoint in DOCS_PAGES:
            response.headers["Content-Security-Policy"] = _docs_policy(response.get_data())
        if g.get("rate_limit") is not None:
            response.headers.update(g.rate_limit.headers())
        _idempotent_finish(service, response)
        started = g.get("started")
        if started is not None:
            endpoint = request.url_rule.rule if request.url_rule else "unmatched"
            metrics.REQUEST_LATENCY.labels(service, request.method, endpoint, response.status_code).observe(
                time.perf_counter() - started
            )
        log_request(response)
        return response

    @app.errorhandler(Problem)
    def _problem(problem: Problem) -> Response:
        return problem_response(problem)

    @app.errorhandler(DomainError)
    def _domain(error: DomainError) -> Response:
        return problem_response(domain_problem(error))

    @app.errorhandler(ConcurrencyError)
    def _concurrency(_error: ConcurrencyError) -> Response:
        # The pipeline retries lost races and reports Busy; a ConcurrencyError reaching the
        # edge comes from outside it, and is the same answer: nothing written, send again.
        return problem_response(domain_problem(Busy()))

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        if isinstance(error, HTTPException):
            return api.handle_http_exception(error)
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problem_response(Problem(500, "an unexpected error occurred; it has been logged"))

    @app.get("/healthz")
    def healthz() -> Response:
        return Response(json.dumps({"status": "alive", "service": service}), mimetype="application/json")

    @app.get("/readyz")
    def readyz() -> Response:
        failing: dict[str, str] = {}
        for name, check in checks.items():
            try:
                check()
            except Exception as error:  # noqa: BLE001 - any failure means not ready
                failing[name] = f"{type(error).__name__}: {error}"[:300]
        if failing:
            problem = Problem(503, "not ready: " + ", ".join(sorted(failing)), title="Service Unavailable")
            body = {**problem.body(), "failing": failing}
            return Response(json.dumps(body), status=503, mimetype=PROBLEM_JSON)
        return Response(json.dumps({"status": "ready", "checks": sorted(checks)}), mimetype="application/json")

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            payload = generate_latest(registry)
        else:
            payload = generate_latest()
        return Response(payload, mimetype=CONTENT_TYPE_LATEST)

    @app.get("/openapi-all.json")
    def reference_json() -> Response:
        """One OpenAPI document of every service's API (shared.openapi.combined)."""
        return Response(json.dumps(openapi.combined(app), indent=2), mimetype="application/json")

    @app.get("/reference")
    def reference() -> Response:
        """Swagger UI over /openapi-all.json, from this service's own assets."""
        return Response(openapi.reference_page("/openapi-all.json", "/docs/assets/"), mimetype="text/html")

    @app.get("/docs/assets/<path:filename>")
    def swagger_assets(filename: str) -> Response:
        import swagger_ui_bundle

        return send_from_directory(swagger_ui_bundle.swagger_ui_path, filename)

    return app


# -- Idempotency-Key ---------------------------------------------------------------------------

#: The key space of the operator's requests (tenants' are their ids).
OPERATOR_SCOPE = "operator"


def _caller_in_tenant(caller: Principal) -> str:
    """Who in the tenant sent a request, as far as its Idempotency-Key cares: every admin key
    of a tenant may do the same, a token only its subject's part."""
    if caller.role in ("admin", "operator"):
        return caller.role
    return f"{caller.role}:{caller.subject_id}"


def _idempotent_start(service: str) -> Response | None:
    """For a POST with an Idempotency-Key: the first answer to replay, or the key reserved
    for this request (and its command's transaction set to mark it carried out)."""
    key = idempotency.parse_key(request.headers.get(idempotency.HEADER))
    if key is None:
        return None
    caller = principal()
    keyed = idempotency.Keyed(
        service=service,
        scope=caller.tenant_id or OPERATOR_SCOPE,
        key=key,
        fingerprint=idempotency.fingerprint(request.method, request.full_path, _caller_in_tenant(caller),
                                            request.get_data(cache=True)),
    )
    found = idempotency.reserve(engine(), keyed, now=now())
    if isinstance(found, idempotency.Answer):
        response = Response(found.body, status=found.status, headers=dict(found.headers))
        response.headers[idempotency.REPLAYED_HEADER] = "true"
        return response
    g.idempotency = found
    commands.after_append.set((partial(idempotency.mark_committed, reservation=found),))
    return None


def _idempotent_finish(service: str, response: Response) -> None:
    """Keep the answer of a request that reserved an Idempotency-Key (or release the key).
    The answer goes out whatever happens here: a key left reserved is taken over (or, its
    command carried out, answered as lost) once its lease runs out."""
    reservation: idempotency.Reservation | None = g.pop("idempotency", None)
    if reservation is None:
        return
    answer = idempotency.Answer(
        response.status_code,
        response.get_data(),
        {name: response.headers[name] for name in idempotency.KEPT_HEADERS if name in response.headers},
    )
    try:
        idempotency.keep(engine(), reservation, answer, now=now())
        idempotency.purge_when_due(engine(), service, now=now())
    except Exception:  # the command's answer must still reach the client
        log.exception("the answer of %s %s could not be kept for its Idempotency-Key", request.method, request.path)


# -- the access log ---------------------------------------------------------------------------

#: The longest path an access-log line keeps (every route is far shorter; a client's is not).
LOGGED_PATH_MAX = 512
#: The most X-Forwarded-For hops an access-log line keeps (the nearest proxies' ones).
LOGGED_HOPS_MAX = 8


def forwarded_for() -> str | None:
    """X-Forwarded-For as received, if it is a list of addresses (else None: a header that
    is not one is not logged, whatever it holds). Behind docker-compose's proxy it is the
    client's address (infra/proxy sets it to the address it saw, dropping the client's);
    reaching an API directly, it is whatever the client claims."""
    header = request.headers.get("X-Forwarded-For")
    if not header:
        return None
    hops = [hop.strip() for hop in header.split(",")][-LOGGED_HOPS_MAX:]
    try:
        return ", ".join(str(ipaddress.ip_address(hop)) for hop in hops)
    except ValueError:
        return None


def log_request(response: Response) -> None:
    """One access-log line for this request: what was asked (method, route and path, never
    the query string: its values may be credentials), the answer (status, bytes, the time
    until it was ready), who asked (the peer's address and the X-Forwarded-For of a proxy;
    role and credential id, never the credential) and the correlation id, which every line
    of the request carries."""
    started = g.get("started")
    caller: Principal | None = g.get("principal")
    fields = {
        "method": request.method,
        "route": request.url_rule.rule if request.url_rule is not None else None,
        "path": request.path[:LOGGED_PATH_MAX],
        "status": response.status_code,
        "duration_ms": round((time.perf_counter() - started) * 1000, 2) if started is not None else None,
        "bytes": response.calculate_content_length(),
        "client": request.remote_addr,
        "forwarded_for": forwarded_for(),
        "correlation_id": correlation_id(),
        "role": caller.role if caller else None,
        "credential_id": caller.credential_id if caller else None,
        "tenant_id": caller.tenant_id if caller else None,
    }
    access_log.info("request", **{name: value for name, value in fields.items() if value is not None})


def _client_correlation_id() -> str | None:
    """The client's X-Correlation-ID, if the event store can carry it as it was sent: 1 to 64
    printable ASCII characters. Any other is accepted and replaced by a generated one
    (contract v1.1), which the response returns."""
    sent = request.headers.get("X-Correlation-ID")
    if sent and len(sent) <= CORRELATION_ID_MAX and sent.isascii() and sent.isprintable():
        return sent
    return None


def _options() -> Response | None:
    """OPTIONS: 204 with the methods of the path (of the server for ``OPTIONS *``); a path
    that names nothing stays a 404."""
    if request.environ.get("RAW_URI") == "*":
        allowed = ", ".join(sorted({m for rule in current_app.url_map.iter_rules() for m in rule.methods or ()}))
    elif request.routing_exception is None:
        allowed = current_app.make_default_options_response().headers["Allow"]
    else:
        return None
    response = Response(status=204, headers={"Allow": allowed})
    del response.headers["Content-Type"]
    return response


def _buffer_unsized_body() -> None:
    """A body sent without Content-Length (chunked), read here up to the limit.

    Werkzeug cuts such a stream at MAX_CONTENT_LENGTH without a word, and the prefix was
    processed (a 201 for a body whose cut-off rest was only whitespace). One byte past the
    limit is a 413; a body within it is kept as one of known length.
    """
    try:
        body = request.environ["wsgi.input"].read(MAX_BODY_BYTES + 1)
    except Exception as error:  # noqa: BLE001 - the server's framing error, whichever server it is
        raise Problem(400, f"the request body could not be read: {error}") from None
    if len(body) > MAX_BODY_BYTES:
        raise Problem(413, f"the body may be at most {MAX_BODY_BYTES} bytes")
    request.environ["wsgi.input"] = io.BytesIO(body)
    request.environ["CONTENT_LENGTH"] = str(len(body))
    request.environ.pop("HTTP_TRANSFER_ENCODING", None)


def _unstorable(text: str) -> str | None:
    """Why `text` cannot be stored as PostgreSQL text (a 500 at the INSERT), if it cannot."""
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    if found.group() == "\x00":
        return "must not contain NUL characters"
    return "must be valid Unicode text (it contains a lone surrogate)"


def _vet_json_body() -> None:
    """Refuse, as problems, the JSON that would otherwise crash a parser or the database.

    Werkzeug and webargs turn only JSONDecodeError into a 400: a nesting deeper than the
    interpreter's recursion limit (RecursionError) or an integer of more than 4300 digits
    (ValueError) escaped as 500s. Text PostgreSQL cannot hold (NUL; a lone surrogate, which
    JSON can spell as "\\ud800") would fail at the INSERT: refused here, naming the field.
    """
    try:
        body = json.loads(request.get_data(cache=True))
    except (ValueError, RecursionError):
        raise Problem(400, "the request body is not valid JSON") from None
    pending: list[tuple[str, Any]] = [("", body)]
    while pending:  # iterative: the body may be nested almost to the recursion limit
        path, value = pending.pop()
        if isinstance(value, str) and (reason := _unstorable(value)):
            raise invalid(path or "_schema", reason)
        if isinstance(value, dict):
            for key, item in value.items():
                if reason := _unstorable(key):
                    raise invalid("_schema", f"field names {reason}")
                pending.append((f"{path}.{key}" if path else str(key), item))
        elif isinstance(value, list):
            pending.extend((f"{path}.{index}" if path else str(index), item) for index, item in enumerate(value))


def _vet_url() -> None:
    """The path and query as text the database can hold.

    A NUL in either would reach PostgreSQL as text and fail there. Percent-escapes that are
    not UTF-8 (%ED%A0%80 spells a surrogate) are kept by Werkzeug as literal text in the
    query and replaced in the path, so the request would act on a value the client never
    sent: decoded here with their bytes kept (as lone surrogates), they are refused, naming
    the parameter.
    """
    if "\x00" in request.path:
        raise Problem(404, "no such resource")
    query = request.query_string.decode("latin-1")
    for name, value in parse_qsl(query, keep_blank_values=True, errors="surrogateescape"):
        if reason := _unstorable(value) or _unstorable(name):
            field = _UNSTORABLE.sub("", name) or "_schema"
            raise invalid(field, reason)
    if request.routing_exception is not None:
        return  # a path that names nothing: a 404 however it is spelt
    path = request.environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8", "surrogateescape")
    if reason := _unstorable(path):
        try:
            _endpoint, arguments = request_ctx.url_adapter.match(path, method=request.method)  # type: ignore[union-attr]
        except HTTPException:
            arguments = {}
        names = [name for name, value in arguments.items() if _unstorable(str(value))] or ["path"]
        raise Problem(422, f"{', '.join(names)}: {reason}", errors={name: [reason] for name in names})


def _docs_policy(page: bytes) -> str:
    """The Content-Security-Policy of the Swagger UI page: its scripts and styles from this
    origin only, its one inline script allowed by its hash, nothing else inline."""
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(script).digest()).decode()}'"
        for script in _INLINE_SCRIPT.findall(page)
    )
    return "; ".join([
        "default-src 'none'",
        f"script-src 'self' {hashes}".strip(),
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ])


def json_body() -> dict[str, Any]:
    """The parsed JSON object of the request (for views that validate by hand)."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise Problem(400, "the request body must be a JSON object")
    return body


def transaction() -> Any:
    """A write transaction on the service's database."""
    return engine().begin()


def read_transaction() -> Any:
    return read(engine())


__all__ = [
    "Connection",
    "ProblemApi",
    "create_app",
    "engine",
    "principal",
    "require_role",
    "require_tenant",
]
