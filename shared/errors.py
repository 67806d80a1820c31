"""Domain errors of every service: what kind of rule a command broke.

The domains and handlers only say *what kind* of rule was broken; the HTTP edge maps the
kind to a status code in one place (`shared.web`: ``ValidationFailed`` -> 422,
``Forbidden`` -> 403, ``NotFound`` -> 404, ``Conflict`` -> 409, ``Busy`` -> 409 with a
retry hint, ``PreconditionFailed`` -> 412), so these classes carry no status numbers and
no I/O concerns. Pure: domain modules import it.
"""

from __future__ import annotations


class DomainError(Exception):
    """Base of every rule violation, so callers can catch "the domain said no" at once."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ValidationFailed(DomainError):
    """Input that is well-formed but breaks a rule (HTTP 422).

    ``field`` names the first offending input (dotted for nested values, e.g.
    ``contact.label``) so the caller can build the ``errors`` map of the problem
    document; ``errors`` holds every violation found, not only the first, because a
    form with three mistakes should not need three round trips.
    """

    def __init__(
        self,
        field: str,
        message: str,
        errors: dict[str, list[str]] | None = None,
    ) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.errors: dict[str, list[str]] = errors if errors else {field: [message]}


class Conflict(DomainError):
    """The command is valid in itself but not in the aggregate's current state (HTTP 409)."""


class NotFound(DomainError):
    """The command names something that does not exist, or that the caller may not know of:
    an id of another tenant is "not found" too, so existence never leaks (HTTP 404)."""

    def __init__(self, message: str = "no such resource") -> None:
        super().__init__(message)


class Forbidden(DomainError):
    """The caller is known and may see the resource, but may not do this to it (HTTP 403)."""

    def __init__(self, message: str = "this credential may not do that") -> None:
        super().__init__(message)


class PreconditionFailed(DomainError):
    """The caller decided on a version (If-Match) that is no longer current (HTTP 412)."""

    def __init__(self, current_version: int | None, message: str | None = None) -> None:
        if message is None:
            message = (
                "the resource changed meanwhile; read it again"
                if current_version is None
                else f"If-Match does not match the current version {current_version}"
            )
        super().__init__(message)
        self.current_version = current_version


def require_version(if_match: int | None, current_version: int) -> None:
    """The If-Match rule: a caller that named a version may only change that version."""
    if if_match is not None and if_match != current_version:
        raise PreconditionFailed(current_version)


class Busy(Conflict):
    """Concurrent writers kept moving the stream while the command retried (HTTP 409,
    ``Retry-After``): nothing was written, the same request can simply be sent again."""

    retry_after_s = 1

    def __init__(self, message: str = "the resource changed too often concurrently; retry the request") -> None:
        super().__init__(message)


class Validator:
    """Collects violations while checking a command's inputs, then raises them together.

    ``error_type`` is the ``ValidationFailed`` subclass to raise, so each aggregate keeps
    its own exception name (``InvalidCommitment``, ``InvalidTenant``, ...).
    """

    def __init__(self, error_type: type[ValidationFailed] = ValidationFailed) -> None:
        self.error_type = error_type
        self.errors: dict[str, list[str]] = {}

    def add(self, field: str, message: str) -> None:
        self.errors.setdefault(field, []).append(message)

    def has(self, field: str) -> bool:
        return field in self.errors

    def raise_if_any(self) -> None:
        if self.errors:
            field, messages = next(iter(self.errors.items()))
            raise self.error_type(field, messages[0], self.errors)

    def text(
        self,
        field: str,
        value: object,
        *,
        min_len: int,
        max_len: int,
        required: bool = True,
    ) -> str | None:
        """Check a string input; returns it when valid, else records why and returns None.

        A value of only whitespace counts as empty: a label or id of blanks is never
        what a client meant and would display as nothing.
        """
        if value is None:
            if required:
                self.add(field, "is required")
            return None
        if not isinstance(value, str):
            self.add(field, "must be a string")
            return None
        if min_len > 0 and not value.strip():
            self.add(field, "must not be blank")
            return None
        if not min_len <= len(value) <= max_len:
            self.add(field, f"must be {min_len}-{max_len} characters long")
            return None
        return value

    def integer(
        self, field: str, value: object, *, minimum: int, maximum: int
    ) -> int | None:
        """Check an integer input (``bool`` is refused although Python counts it as int)."""
        if isinstance(value, bool) or not isinstance(value, int):
            self.add(field, "must be an integer")
            return None
        if not minimum <= value <= maximum:
            self.add(field, f"must be between {minimum} and {maximum}")
            return None
        return value
