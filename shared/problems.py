"""Errors as RFC 9457 problem details: the one error shape of every service.

Views and handlers raise `Problem` (or a subclass); the web layer renders it, and every
other exception becomes a problem too, so no client ever sees an HTML error page.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

PROBLEM_JSON = "application/problem+json"


class Problem(Exception):
    """An HTTP-facing failure: status, short title, human detail, optional field errors."""

    def __init__(
        self,
        status: int,
        detail: str | None = None,
        *,
        title: str | None = None,
        errors: dict[str, list[str]] | None = None,
        headers: dict[str, str] | None = None,
        type_: str | None = None,
    ) -> None:
        self.status = status
        self.title = title or HTTPStatus(status).phrase
        self.detail = detail or self.title
        self.errors = errors
        self.headers = headers or {}
        self.type = type_ or f"https://nocontact.dev/problems/{self.title.lower().replace(' ', '-')}"
        super().__init__(self.detail)

    def body(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors:
            payload["errors"] = self.errors
        return payload


def invalid(field: str, message: str, status: int = 422) -> Problem:
    """A validation problem naming the offending field."""
    return Problem(status, f"{field}: {message}", errors={field: [message]})


def not_found(what: str = "resource") -> Problem:
    # Same answer for "does not exist" and "belongs to another tenant": no existence leak.
    return Problem(404, f"no such {what}")


def conflict(detail: str) -> Problem:
    return Problem(409, detail)


def flatten_errors(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """Marshmallow's nested {"contact": {"label": [..]}} as {"contact.label": [..]}."""
    flat: dict[str, list[str]] = {}
    if isinstance(messages, dict):
        for key, value in messages.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, list) and all(isinstance(item, str) for item in value):
                flat[name] = value
            else:
                flat.update(flatten_errors(value, name))
    elif isinstance(messages, list):
        flat[prefix or "_schema"] = [str(item) for item in messages]
    else:
        flat[prefix or "_schema"] = [str(messages)]
    return flat
