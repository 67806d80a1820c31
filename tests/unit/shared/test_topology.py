"""Where a stream's events are queued when a component is partitioned (shared.topology)."""

from __future__ import annotations

import uuid

import pytest

from shared.topology import partition_key, partition_of, partition_slot


def test_a_commitments_check_in_stream_is_placed_with_its_commitment_stream() -> None:
    commitment_id = str(uuid.uuid4())
    assert partition_key(f"checkin-{commitment_id}") == f"commitment-{commitment_id}"
    assert partition_slot(f"checkin-{commitment_id}") == partition_slot(f"commitment-{commitment_id}")
    for count in range(1, 65):
        assert partition_of(f"checkin-{commitment_id}", count) == partition_of(f"commitment-{commitment_id}", count)


@pytest.mark.parametrize("stream_id", ["commitment-c1", "tenant-t1", "member-t1-m1", "settings-t1", "checkin",
                                       "scale-3"])
def test_other_streams_are_placed_by_their_own_name(stream_id: str) -> None:
    assert partition_key(stream_id) == stream_id
