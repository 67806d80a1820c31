"""A commitment as the check-in service knows it: learnt from the commitment service's events.

Pure: its local "today", its status at an instant and its last counted day, decided from
the fields the inbox keeps (``checkin_commitments``) and the instant passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from shared.calendar import local_today

from .checkins import CommitmentStatus, CommitmentTerms

__all__ = ["STREAM_CATEGORY", "KnownCommitment", "stream_id"]

STREAM_CATEGORY = "checkin"


def stream_id(commitment_id: str) -> str:
    """The stream of a commitment's check-ins and the facts derived from them."""
    return f"{STREAM_CATEGORY}-{commitment_id}"


@dataclass(frozen=True)
class KnownCommitment:
    """A commitment as this service learnt it from the commitment service's events."""

    commitment_id: str
    tenant_id: str
    member_id: str
    coach_id: str | None
    contact_label: str
    relationship: str
    channels: tuple[str, ...]
    timezone: str
    starts_on: date
    ends_on: date | None
    recorded_status: str
    ended_on: date | None
    created_at: datetime
    exception_count: int = 0
    """How many necessary-contact exceptions its boundaries hold (a report names one by index)."""

    @property
    def stream_id(self) -> str:
        return stream_id(self.commitment_id)

    def today(self, now: datetime) -> date:
        return local_today(self.timezone, now)

    def status_at(self, now: datetime) -> CommitmentStatus:
        """As the commitment service defines it: a passed ``ends_on`` means completed, even
        before ``commitment.completed`` has reached this service."""
        status = CommitmentStatus(self.recorded_status)
        if status is CommitmentStatus.ACTIVE and self.ends_on is not None and self.ends_on < self.today(now):
            return CommitmentStatus.COMPLETED
        return status

    @property
    def last_day(self) -> date | None:
        """The last day that counts: ``ends_on``, or the day it was ended early."""
        if self.recorded_status == CommitmentStatus.ENDED and self.ended_on is not None:
            return self.ended_on if self.ends_on is None else min(self.ends_on, self.ended_on)
        return self.ends_on

    def terms(self, now: datetime) -> CommitmentTerms:
        return CommitmentTerms(
            starts_on=self.starts_on,
            ends_on=self.ends_on,
            timezone=self.timezone,
            channels=frozenset(self.channels),
            status=self.status_at(now),
            last_day=self.last_day,
            exception_count=self.exception_count,
        )
