"""Boundaries of a commitment: necessary-contact exceptions and places to avoid."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from services.commitment.domain.commitment import (
    BOUNDARIES_CHANGED,
    EXCEPTIONS_MAX,
    PLACES_MAX,
    Commitment,
    CommitmentConflict,
    InvalidCommitment,
    NecessaryContact,
    Place,
)

from ._support import record
from .test_commitment_lifecycle import NOW
from .test_commitment_lifecycle import create as create_any

HANDOVER = {"label": "Custody handover", "channels": ["texts", "in_person"]}
LAWYER = {"label": "Lawyer", "channels": ["email"]}


def create(**overrides: Any) -> Commitment:
    """A commitment over every channel but social media (an exception can name only its own)."""
    return create_any(**{"channels": ["calls", "texts", "email", "in_person"], **overrides})


def errors_of(call: Any) -> dict[str, list[str]]:
    with pytest.raises(InvalidCommitment) as raised:
        call()
    return raised.value.errors


def test_created_with_boundaries_carries_them_in_the_event_and_the_state() -> None:
    c = create(exceptions=[HANDOVER, LAWYER], places=[{"label": "Their street"}])

    data = c.pending_events[0].data
    assert data["exceptions"] == [HANDOVER, LAWYER]
    assert data["places"] == [{"label": "Their street"}]
    assert c.exceptions == (
        NecessaryContact("Custody handover", ("texts", "in_person")),
        NecessaryContact("Lawyer", ("email",)),
    )
    assert c.places == (Place("Their street"),)
    # Labels are personal: never in a repr, hence never in a log line or traceback.
    assert "Lawyer" not in repr(c) and "Their street" not in repr(c)


def test_without_boundaries_both_lists_are_empty() -> None:
    c = create()
    assert c.pending_events[0].data["exceptions"] == [] == c.pending_events[0].data["places"]
    assert c.exceptions == () and c.places == ()


def test_a_created_event_from_before_boundaries_reads_as_none() -> None:
    (event,) = record(create().pending_events, "commitment-c-1")
    del event.data["exceptions"], event.data["places"]
    old = Commitment.from_events([event])
    assert old.exceptions == () and old.places == ()


INVALID: list[tuple[dict[str, Any], str]] = [
    ({"exceptions": "Lawyer"}, "exceptions"),
    ({"exceptions": {"label": "Lawyer"}}, "exceptions"),
    ({"exceptions": [HANDOVER] * (EXCEPTIONS_MAX + 1)}, "exceptions"),
    ({"exceptions": ["Lawyer"]}, "exceptions.0"),
    ({"exceptions": [{"channels": ["email"]}]}, "exceptions.0.label"),
    ({"exceptions": [LAWYER, {"label": "   ", "channels": ["email"]}]}, "exceptions.1.label"),
    ({"exceptions": [{"label": "x" * 201, "channels": ["email"]}]}, "exceptions.0.label"),
    ({"exceptions": [{"label": 7, "channels": ["email"]}]}, "exceptions.0.label"),
    ({"exceptions": [{"label": "Lawyer"}]}, "exceptions.0.channels"),
    ({"exceptions": [{"label": "Lawyer", "channels": []}]}, "exceptions.0.channels"),
    ({"exceptions": [{"label": "Lawyer", "channels": "email"}]}, "exceptions.0.channels"),
    ({"exceptions": [{"label": "Lawyer", "channels": ["pigeons"]}]}, "exceptions.0.channels"),
    ({"exceptions": [{"label": "Lawyer", "channels": ["email", "email"]}]}, "exceptions.0.channels"),
    # Known, but not one of this commitment's channels.
    ({"exceptions": [{"label": "Lawyer", "channels": ["social_media"]}]}, "exceptions.0.channels"),
    ({"exceptions": [LAWYER, {**LAWYER, "channels": ["calls"]}]}, "exceptions"),
    ({"places": [{"label": "Gym"}] * 2}, "places"),
    ({"places": [{"label": f"p{i}"} for i in range(PLACES_MAX + 1)]}, "places"),
    ({"places": [{}]}, "places.0.label"),
    ({"places": [{"label": ""}]}, "places.0.label"),
    ({"places": [None]}, "places.0"),
    ({"places": "Gym"}, "places"),
]


@pytest.mark.parametrize(("overrides", "field"), INVALID)
def test_invalid_boundaries_name_their_field(overrides: dict[str, Any], field: str) -> None:
    assert field in errors_of(lambda: create(**overrides))
    # The same rules when they are changed later.
    c = create()
    body = {"exceptions": [], "places": [], **overrides}
    assert field in errors_of(lambda: c.change_boundaries(now=NOW, **body))


def test_at_most_the_maximum_is_fine() -> None:
    c = create(
        exceptions=[{"label": f"e{i}", "channels": ["calls"]} for i in range(EXCEPTIONS_MAX)],
        places=[{"label": f"p{i}"} for i in range(PLACES_MAX)],
    )
    assert len(c.exceptions) == EXCEPTIONS_MAX and len(c.places) == PLACES_MAX


def test_exceptions_are_checked_against_the_channels_chosen_with_them() -> None:
    # Default channels are all of them: any known channel fits.
    c = create(channels=None, exceptions=[{"label": "Work", "channels": ["social_media"]}])
    assert c.exceptions[0].channels == ("social_media",)
    # Invalid commitment channels: their own error, and the exception's shape only.
    errors = errors_of(lambda: create(channels=["pigeons"], exceptions=[{"label": "Work", "channels": ["calls"]}]))
    assert "channels" in errors and "exceptions.0.channels" not in errors


def test_changing_boundaries_replaces_both_lists_and_rebuilds_the_same() -> None:
    c = create(exceptions=[HANDOVER], places=[{"label": "Gym"}])
    (event,) = c.change_boundaries(now=NOW + timedelta(days=1), exceptions=[LAWYER], places=[])

    assert event.type == BOUNDARIES_CHANGED
    assert event.data == {"commitment_id": "c-1", "member_id": "m-1", "exceptions": [LAWYER], "places": []}
    assert c.exceptions == (NecessaryContact("Lawyer", ("email",)),) and c.places == ()
    assert Commitment.from_events(record(c.pending_events, c.stream_id)) == c


def test_the_same_boundaries_again_emit_nothing() -> None:
    c = create(exceptions=[HANDOVER], places=[{"label": "Gym"}])
    assert c.change_boundaries(now=NOW, exceptions=[HANDOVER], places=[{"label": "Gym"}]) == []
    assert c.version == 1


def test_boundaries_of_a_finished_commitment_do_not_change() -> None:
    ended = create()
    ended.end(now=NOW)
    with pytest.raises(CommitmentConflict):
        ended.change_boundaries(now=NOW, exceptions=[LAWYER], places=[])
    over = create(duration_days=1)
    with pytest.raises(CommitmentConflict):
        over.change_boundaries(now=NOW + timedelta(days=2), exceptions=[LAWYER], places=[])
    # Bad input is named before the state is looked at (a 422 says what to fix).
    with pytest.raises(InvalidCommitment):
        ended.change_boundaries(now=NOW, exceptions="x", places=[])
