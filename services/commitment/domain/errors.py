"""Domain exceptions of the commitment service.

The domain only says *what kind* of rule was broken; the HTTP layer maps the kind to a
status code (``ValidationFailed`` -> 422, ``Conflict`` -> 409, ``NotFound`` -> 404), so
these classes carry no status numbers and no I/O concerns.
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
    """The command names a part of the aggregate that does not exist (HTTP 404)."""


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
