"""Event values shared by every service: what a domain emits and what the store records.

Pure data, no I/O: domain modules may import this.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class NewEvent:
    """A fact a command produced, not yet stored.

    `type` is the past-tense name used as routing key (``checkin.recorded``); `data` is
    the JSON-serialisable payload documented next to the code that emits it.
    """

    type: str
    data: dict[str, Any]
    schema_version: int = 1
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    occurred_at: datetime | None = None


@dataclass(frozen=True)
class Metadata:
    """Who and what caused an append; stored with every event of the append."""

    tenant_id: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    actor: str | None = None


@dataclass(frozen=True)
class RecordedEvent:
    """An event as the store holds it, with its place in its stream and in the log."""

    id: uuid.UUID
    type: str
    schema_version: int
    stream_id: str
    stream_version: int
    position: int
    data: dict[str, Any]
    tenant_id: str | None
    correlation_id: str | None
    causation_id: str | None
    actor: str | None
    occurred_at: datetime
    recorded_at: datetime

    @property
    def category(self) -> str:
        """The stream's category: the part of ``commitment-<id>`` before the first dash."""
        return self.stream_id.split("-", 1)[0]
