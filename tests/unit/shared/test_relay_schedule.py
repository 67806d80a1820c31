"""When a woken relay looks again while its event is held back (shared.relay): pure logic."""

from __future__ import annotations

from shared.relay import RETRY_AFTER_WAKE_FOR_S, RETRY_AFTER_WAKE_MAX_S, RETRY_AFTER_WAKE_S, next_look_after_wake


def _looks(poll_interval_s: float, hold_s: float) -> list[float]:
    """The waits between a wake-up and the first look after a hold of `hold_s` ends."""
    waits, since, wait = [], 0.0, RETRY_AFTER_WAKE_S
    while since < hold_s:
        waits.append(wait)
        since += wait
        following = next_look_after_wake(wait, since, poll_interval_s)
        if following is None:
            break
        wait = following
    return waits


def test_a_long_poll_interval_never_spaces_the_looks_more_than_a_second() -> None:
    waits = _looks(poll_interval_s=60.0, hold_s=20.0)
    assert waits[:3] == [0.002, 0.004, 0.008]  # soon at first: most holds are one transaction
    assert max(waits) == RETRY_AFTER_WAKE_MAX_S == 1.0
    # Found within a second of the hold's end (it was up to about the hold again).
    assert sum(waits) - 20.0 <= RETRY_AFTER_WAKE_MAX_S


def test_the_looks_stop_a_minute_after_the_wake_up_or_a_poll_interval_if_longer() -> None:
    assert RETRY_AFTER_WAKE_FOR_S == 60.0
    assert next_look_after_wake(1.0, 59.0, 0.05) == 0.05  # never longer apart than a poll
    assert next_look_after_wake(1.0, 60.0, 0.05) is None  # then the plain 50 ms poll
    assert next_look_after_wake(1.0, 60.0, 90.0) == 1.0
    assert next_look_after_wake(1.0, 90.0, 90.0) is None
    waits = _looks(poll_interval_s=0.05, hold_s=1000.0)
    assert max(waits) == 0.05 and 60.0 <= sum(waits) < 60.05
