"""The check-in service learns each commitment's boundaries from the commitment service's
events (its inbox, and the rebuild of its commitments), sealed as they were recorded: a
kept check-in's ``necessary_contact`` names an exception of them by its index."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select

from services.checkin.consumers import handle_inbox
from services.checkin.projections import inbox_projection
from services.checkin.tables import commitments
from services.commitment import handlers
from shared import keyring
from shared.auth import Principal
from shared.commands import Context
from shared.consumer import apply_once
from shared.db import read
from shared.events import RecordedEvent
from shared.eventstore import read_stream
from shared.projection import rebuild

NOW = datetime.now(UTC)
INBOX = "checkin.inbox"


def _row(engine: Engine, commitment_id: str) -> Any:
    with read(engine) as conn:
        return conn.execute(
            select(commitments.c.tenant_id, commitments.c.boundaries, commitments.c.boundaries_version)
            .where(commitments.c.commitment_id == commitment_id)
        ).one()


def _opened(engine: Engine, row: Any) -> dict[str, Any]:
    with read(engine) as conn:
        return dict(keyring.Opener(conn, row.tenant_id).open_all(row.boundaries))


def _commitment_with_changes(engine: Engine, marker: str) -> list[RecordedEvent]:
    """A commitment created with boundaries and changed twice, by the commitment service's
    own commands (so the events are exactly as it records them, labels sealed)."""
    tenant_id = str(uuid.uuid4())
    admin = Principal(role="admin", tenant_id=tenant_id, credential_id="k-1")
    context = Context(tenant_id=tenant_id, actor="test")
    commitment_id = handlers.create_commitment(
        engine, admin, context, now=NOW, member_id="m-1", contact={"label": "Alex", "relationship": "romantic"},
        timezone="Europe/Berlin", channels=["texts", "in_person", "email"],
        exceptions=[{"label": f"{marker}-handover", "channels": ["in_person"]}], places=[{"label": f"{marker}-street"}],
    )
    for exceptions, places in (
        ([{"label": f"{marker}-lawyer", "channels": ["email"]}], []),
        ([{"label": f"{marker}-lawyer", "channels": ["email"]}, {"label": f"{marker}-work", "channels": ["texts"]}],
         [{"label": f"{marker}-gym"}]),
    ):
        handlers.change_boundaries(engine, admin, context, commitment_id, now=NOW, exceptions=exceptions,
                                   places=places)
    with read(engine) as conn:
        return read_stream(conn, f"commitment-{commitment_id}")


LATEST = {
    "exceptions": [{"label": "{m}-lawyer", "channels": ["email"]}, {"label": "{m}-work", "channels": ["texts"]}],
    "places": [{"label": "{m}-gym"}],
}


def _latest(marker: str) -> dict[str, Any]:
    return {name: [{**item, "label": item["label"].format(m=marker)} for item in items]
            for name, items in LATEST.items()}


def test_the_inbox_folds_boundaries_sealed_and_the_latest_version_wins(engine: Engine) -> None:
    marker = f"Zq{uuid.uuid4().hex}"
    created, first_change, second_change = _commitment_with_changes(engine, marker)
    commitment_id = created.data["commitment_id"]

    assert apply_once(engine, INBOX, handle_inbox, created)
    row = _row(engine, commitment_id)
    assert row.boundaries_version == 1 and marker not in str(row.boundaries)
    assert _opened(engine, row) == {"exceptions": [{"label": f"{marker}-handover", "channels": ["in_person"]}],
                                    "places": [{"label": f"{marker}-street"}]}

    # Out of order (a message parked and replayed later): the later version stays.
    assert apply_once(engine, INBOX, handle_inbox, second_change)
    assert apply_once(engine, INBOX, handle_inbox, first_change)
    row = _row(engine, commitment_id)
    assert row.boundaries_version == 3 and _opened(engine, row) == _latest(marker)
    # A redelivery changes nothing.
    assert not apply_once(engine, INBOX, handle_inbox, second_change)

    # The rebuild of the commitments this service knows folds the same.
    rebuild(engine, inbox_projection())
    assert _row(engine, commitment_id) == row


def test_a_commitment_created_before_boundaries_existed_has_none(engine: Engine) -> None:
    created, *_ = _commitment_with_changes(engine, "old")
    data = {key: value for key, value in created.data.items() if key not in ("exceptions", "places")}
    commitment_id = str(uuid.uuid4())
    old = dataclasses.replace(created, id=uuid.uuid4(), data={**data, "commitment_id": commitment_id})
    assert apply_once(engine, INBOX, handle_inbox, old)
    row = _row(engine, commitment_id)
    assert row.boundaries == {"exceptions": [], "places": []} and row.boundaries_version == 1
