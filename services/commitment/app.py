"""The commitment service's Flask app: tenants, credentials, commitments, coaches."""

from __future__ import annotations

from flask import Flask, Response

from shared.eventstore import ConcurrencyError
from shared.problems import Problem
from shared.web import create_app as create_service_app
from shared.web import problem_response

from .api import BLUEPRINTS
from .domain.errors import Conflict, DomainError, NotFound, ValidationFailed
from .tables import CREDENTIALS


def _domain_problem(error: DomainError) -> Response:
    # The domain names the kind of rule broken; the status codes are decided here only.
    if isinstance(error, ValidationFailed):
        return problem_response(Problem(422, str(error), errors=error.errors))
    if isinstance(error, NotFound):
        return problem_response(Problem(404, error.message))
    if isinstance(error, Conflict):
        return problem_response(Problem(409, error.message))
    return problem_response(Problem(422, error.message))


def _concurrency_problem(_error: ConcurrencyError) -> Response:
    return problem_response(Problem(409, "the resource changed concurrently; retry the request"))


def create_app() -> Flask:
    app = create_service_app(
        "commitment",
        title="nocontact commitment service",
        description="Tenants, API keys, scoped tokens, commitments of no contact and coach assignments.",
        blueprints=BLUEPRINTS,
        credentials=CREDENTIALS,
        # This service revokes keys: here a revoked key stops working at once, on every
        # worker, so it never answers from the per-process cache of key lookups.
        cache_api_keys=False,
    )
    app.register_error_handler(DomainError, _domain_problem)
    app.register_error_handler(ConcurrencyError, _concurrency_problem)
    return app
