"""Test helpers: turn emitted events into what the store would hand back."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime

from shared.events import NewEvent, RecordedEvent

FALLBACK_TIME = datetime(2026, 1, 1, tzinfo=UTC)


def record(
    events: Sequence[NewEvent], stream_id: str, tenant_id: str = "t-1"
) -> list[RecordedEvent]:
    """Store-shaped copies of ``events``; data goes through JSON like a real store.

    The JSON round trip proves payloads are serialisable and that ``apply`` does not
    rely on Python-only values (dates, tuples) surviving storage.
    """
    recorded_at = datetime(2030, 1, 1, tzinfo=UTC)
    return [
        RecordedEvent(
            id=e.id,
            type=e.type,
            schema_version=e.schema_version,
            stream_id=stream_id,
            stream_version=i,
            position=1000 + i,
            data=json.loads(json.dumps(e.data)),
            tenant_id=tenant_id,
            correlation_id=None,
            causation_id=None,
            actor=None,
            occurred_at=e.occurred_at or FALLBACK_TIME,
            recorded_at=recorded_at,
        )
        for i, e in enumerate(events, start=1)
    ]
