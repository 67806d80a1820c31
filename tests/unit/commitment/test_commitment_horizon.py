"""The latest last day: no command leads a commitment past ENDS_ON_LATEST (422 naming the field)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from services.commitment.domain.commitment import ENDS_ON_LATEST, Commitment, InvalidCommitment

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


def _commitment(**overrides: object) -> Commitment:
    return Commitment.create(commitment_id="c-1", member_id="m-1", contact={"label": "A", "relationship": "friend"},
                             timezone="UTC", now=overrides.pop("now", NOW), **overrides)  # type: ignore[arg-type]


def test_extends_stop_at_the_horizon_and_name_the_field() -> None:
    c = _commitment(duration_days=3650)
    while c.ends_on is not None and (ENDS_ON_LATEST - c.ends_on).days >= 3650:
        c.extend(now=NOW, additional_days=3650)
    room = (ENDS_ON_LATEST - c.ends_on).days
    with pytest.raises(InvalidCommitment) as refused:
        c.extend(now=NOW, additional_days=room + 1)
    assert refused.value.field == "additional_days"
    c.extend(now=NOW, additional_days=room)
    assert c.ends_on == ENDS_ON_LATEST
    with pytest.raises(InvalidCommitment):
        c.extend(now=NOW, additional_days=1)
    c.extend(now=NOW, indefinite=True)
    assert c.ends_on is None


def test_a_commitment_extended_before_the_rule_is_refused_without_overflowing() -> None:
    """Stores may hold a commitment extended to the last representable days already."""
    c = _commitment(duration_days=30)
    c.ends_on = date(9999, 12, 30)  # as folded from an old commitment.extended
    with pytest.raises(InvalidCommitment) as refused:
        c.extend(now=NOW, additional_days=3650)
    assert refused.value.field == "additional_days"


def test_a_starting_duration_past_the_horizon_is_refused() -> None:
    late = datetime.combine(ENDS_ON_LATEST - timedelta(days=100), datetime.min.time(), UTC)
    with pytest.raises(InvalidCommitment) as refused:
        _commitment(now=late, duration_days=3650)
    assert refused.value.field == "duration_days"
    assert _commitment(now=late, duration_days=101).ends_on == ENDS_ON_LATEST
