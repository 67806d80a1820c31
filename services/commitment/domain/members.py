"""A member of a tenant: the optional profile, and the erasure of everything personal.

Pure domain. The ``member_id`` is the platform's pseudonymous id; the profile's
``display_name`` is a personal value (sealed before it is recorded: services.commitment.
personal). Erasure follows the protocol of `shared.erasure`: this service requests it,
erases its own copies at once, and collects the other services' reports.

Stream ``member-<tenant_id>:<member_id>``. Events (``schema_version`` 1):

``member.profile_updated``
    ``member_id``, ``display_name`` (sealed; null when cleared).
``member.erasure_requested``
    ``member_id``, ``services`` (every service that must report its part). No personal value.
``member.erased``
    ``member_id``, ``services``: every service reported. No personal value.

The reports, ``member.erasure_completed`` {``member_id``, ``service``}, are on the
reporting services' own streams (`shared.erasure.completion_stream`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from shared import erasure
from shared.auth import Principal
from shared.errors import Forbidden, NotFound, Validator
from shared.events import NewEvent

from .commitment import MEMBER_ID_MAX, InvalidCommitment
from .tenancy import may_write_commitment

PROFILE_UPDATED = "member.profile_updated"
ERASURE_REQUESTED = erasure.REQUESTED
ERASURE_COMPLETED = erasure.COMPLETED
ERASED = erasure.ERASED
#: The events of the member stream (the reports are other services' events).
EVENT_TYPES: frozenset[str] = frozenset({PROFILE_UPDATED, ERASURE_REQUESTED, ERASED})

STREAM_CATEGORY = "member"
DISPLAY_NAME_MAX = 100
SERVICE = "commitment"


class MemberNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("no such member")


def stream_id(tenant_id: str, member_id: str) -> str:
    return f"{STREAM_CATEGORY}-{tenant_id}:{member_id}"


def require_may_act_for(caller: Principal, member_id: str) -> None:
    """A member's own data (profile, export, erasure status): an admin key, or the member's
    own token. Erasing takes an admin key (the API says so)."""
    if not may_write_commitment(caller, member_id):
        raise Forbidden("only an admin key or the member's own token may do this")


def update_profile(*, member_id: object, display_name: object, now: datetime) -> list[NewEvent]:
    """The member's profile as given (``display_name`` null clears it)."""
    v = Validator(InvalidCommitment)
    member = v.text("member_id", member_id, min_len=1, max_len=MEMBER_ID_MAX)
    name = v.text("display_name", display_name, min_len=1, max_len=DISPLAY_NAME_MAX, required=False)
    v.raise_if_any()
    return [NewEvent(PROFILE_UPDATED, {"member_id": member, "display_name": name}, occurred_at=now)]


@dataclass(frozen=True)
class Erasure:
    """Where a member's erasure stands: when each service reported its part."""

    member_id: str
    requested_at: datetime
    services: tuple[str, ...] = erasure.SERVICES
    parts: Mapping[str, datetime] = field(default_factory=dict)
    erased_at: datetime | None = None

    @property
    def status(self) -> str:
        return "erased" if self.erased_at is not None else "erasing"

    def service_status(self) -> dict[str, str]:
        """Each service's part: "erased" once reported, "erasing" while pending."""
        return {service: "erased" if service in self.parts else "erasing" for service in self.services}

    @property
    def pending(self) -> list[str]:
        return [service for service in self.services if service not in self.parts]

    def reported(self, service: str, at: datetime) -> Erasure:
        """The erasure once `service` reported its part at `at` (a repeat changes nothing)."""
        if service in self.parts:
            return self
        return Erasure(self.member_id, self.requested_at, self.services, {**self.parts, service: at}, self.erased_at)


def request_erasure(*, member_id: str, known: bool, current: Erasure | None, now: datetime) -> list[NewEvent]:
    """Erase a member the tenant knows; asking again changes nothing (the erasure under
    way, or done, stands). `MemberNotFound` for a member the tenant never had."""
    if current is not None:
        return []
    if not known:
        raise MemberNotFound()
    return [NewEvent(ERASURE_REQUESTED, {"member_id": member_id, "services": list(erasure.SERVICES)},
                     occurred_at=now)]


def record_erased(current: Erasure, *, now: datetime) -> list[NewEvent]:
    """``member.erased`` once every service reported, and only once."""
    if current.erased_at is not None or current.pending:
        return []
    return [NewEvent(ERASED, {"member_id": current.member_id, "services": list(current.services)}, occurred_at=now)]
