"""The coach feed rebuilt from the store equals what the inbox folded from the bus."""

from __future__ import annotations

from datetime import UTC, datetime

from click.testing import CliRunner
from sqlalchemy import delete, select

from services.cli import main
from services.notification.consumers import InboxHandler
from services.notification.projections import feed_projection
from services.notification.tables import coach_assignments, coaches, feed_items
from shared import eventstore
from shared.consumer import apply_once
from shared.db import engine_for, read
from shared.events import Metadata, NewEvent, RecordedEvent
from shared.projection import rebuild
from shared.schema import processed_events


def _state(engine) -> dict[str, list[tuple]]:  # type: ignore[no-untyped-def, type-arg]
    with read(engine) as conn:
        return {
            "assignments": sorted(tuple(r) for r in conn.execute(select(coach_assignments))),
            "coaches": sorted(tuple(r) for r in conn.execute(select(coaches))),
            "feed": sorted(
                tuple(r) for r in conn.execute(select(
                    feed_items.c.tenant_id, feed_items.c.coach_id, feed_items.c.event_id, feed_items.c.kind,
                    feed_items.c.event_type, feed_items.c.commitment_id, feed_items.c.member_id, feed_items.c.position,
                ))
            ),
        }


def test_rebuild_equals_the_inbox_fold(database_url: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("NOCONTACT_DATABASE_URL", database_url)
    engine = engine_for(database_url)
    day = datetime.now(UTC).date().isoformat()
    script = [
        ("commitment-c1", "coach.assigned", {"coach_id": "coach-a"}),
        ("checkin-c1", "checkin.recorded", {"date": day, "outcome": "slipped",
                                            "slip": {"channel": "texts", "initiated_by": "me"}, "note": "private"}),
        ("checkin-c1", "streak.milestone_reached", {"milestone": 1, "run_started_on": day, "attempt": 1,
                                                    "reached_on": day}),
        ("commitment-c1", "coach.assigned", {"coach_id": "coach-b", "previous_coach_id": "coach-a"}),
        ("checkin-c1", "checkin.missed", {"date": day, "deadline": "2026-11-22T12:00:00+00:00"}),
        ("commitment-c2", "coach.assigned", {"coach_id": "coach-a"}),
        ("checkin-c2", "client.at_risk", {"at_risk": True, "reasons": ["recent_slip"], "previous_reasons": []}),
        ("commitment-c2", "coach.unassigned", {"coach_id": "coach-a"}),
        ("checkin-c2", "streak.reset", {"slipped_on": day, "ended_run_days": 4, "ended_run_started_on": day}),
    ]
    recorded = []
    for stream, kind, data in script:
        commitment_id = stream.split("-", 1)[1]
        with engine.begin() as conn:  # a transaction appends once
            recorded += eventstore.append(
                conn, stream, [NewEvent(kind, {"commitment_id": commitment_id, "member_id": "m-" + commitment_id,
                                               **data})],
                metadata=Metadata(tenant_id="t1"),
            )
    handler = InboxHandler()
    for event in recorded:
        apply_once(engine, "notification.inbox", handler, event)
    live = _state(engine)
    assert live["feed"], "the inbox folded no feed item"
    assert {row[1] for row in live["feed"]} == {"coach-a", "coach-b"}

    report = rebuild(engine, feed_projection())
    assert report.events == len(recorded)
    assert _state(engine) == live

    result = CliRunner().invoke(main, ["notification", "rebuild"])
    assert result.exit_code == 0, result.output
    assert "notification.feed" in result.output
    assert _state(engine) == live


def test_an_event_applied_again_after_the_dedup_window_keeps_its_feed_item(database_url: str) -> None:
    """Once the inbox has forgotten an event (shared.consumer's dedup window), a copy of it
    is applied again: the coach's feed keeps the item it made the first time, instead of the
    copy failing on the item's key and going to the dead letters."""
    engine = engine_for(database_url)
    day = datetime.now(UTC).date().isoformat()
    recorded = []
    for stream, kind, data in [
        ("commitment-c1", "coach.assigned", {"coach_id": "coach-a"}),
        ("checkin-c1", "checkin.missed", {"date": day, "deadline": "2026-11-22T12:00:00+00:00"}),
    ]:
        with engine.begin() as conn:
            recorded += eventstore.append(conn, stream, [NewEvent(kind, {"commitment_id": "c1", "member_id": "m-c1",
                                                                         **data})], metadata=Metadata(tenant_id="t1"))
    handler = InboxHandler()
    for event in recorded:
        assert apply_once(engine, "notification.inbox", handler, event)
    before = _state(engine)
    assert [row[2] for row in before["feed"]] == [str(recorded[1].id)]

    with engine.begin() as conn:  # what forgetting it after the window does
        conn.execute(delete(processed_events).where(processed_events.c.event_id == recorded[1].id))
    assert apply_once(engine, "notification.inbox", handler, recorded[1])  # applied, not refused
    assert _state(engine) == before


def _append(engine, stream: str, kind: str, data: dict) -> RecordedEvent:  # type: ignore[no-untyped-def, type-arg]
    commitment_id = stream.split("-", 1)[1]
    with engine.begin() as conn:  # a transaction appends once
        (event,) = eventstore.append(conn, stream, [NewEvent(kind, {"commitment_id": commitment_id,
                                                                    "member_id": "m-" + commitment_id, **data})],
                                     metadata=Metadata(tenant_id="t1"))
    return event


def _forget(engine, events: list[RecordedEvent]) -> None:  # type: ignore[no-untyped-def]
    """What the inbox's dedup window does to what it applied long ago."""
    with engine.begin() as conn:
        conn.execute(delete(processed_events).where(processed_events.c.event_id.in_([e.id for e in events])))


def _coach_of(engine, commitment_id: str) -> tuple[str | None, int]:  # type: ignore[no-untyped-def]
    with read(engine) as conn:
        return tuple(conn.execute(select(coach_assignments.c.coach_id, coach_assignments.c.version).where(
            coach_assignments.c.tenant_id == "t1", coach_assignments.c.commitment_id == commitment_id)).one())


def test_assignments_applied_again_after_the_dedup_window_stay_with_the_later_coach(database_url: str) -> None:
    """A relay moved back beyond the dedup window publishes a commitment's stream again: the
    inbox applies what it forgot and skips what it remembers. An old coach.assigned must not
    hand the member's feed back to a former coach, and an old coach.unassigned must not take
    it from the coach assigned since."""
    engine = engine_for(database_url)
    day = datetime.now(UTC).date().isoformat()
    handler = InboxHandler()
    replaced = [_append(engine, "commitment-c1", "coach.assigned", {"coach_id": "coach-a"}),
                _append(engine, "commitment-c1", "coach.assigned", {"coach_id": "coach-b",
                                                                    "previous_coach_id": "coach-a"})]
    back_again = [_append(engine, "commitment-c2", "coach.assigned", {"coach_id": "coach-a"}),
                  _append(engine, "commitment-c2", "coach.unassigned", {"coach_id": "coach-a"}),
                  _append(engine, "commitment-c2", "coach.assigned", {"coach_id": "coach-a"})]
    for event in replaced + back_again:
        assert apply_once(engine, "notification.inbox", handler, event)
    assert (_coach_of(engine, "c1")[0], _coach_of(engine, "c2")[0]) == ("coach-b", "coach-a")

    _forget(engine, [replaced[0], *back_again[:2]])
    applied = [event for event in replaced + back_again if apply_once(engine, "notification.inbox", handler, event)]
    assert applied == [replaced[0], *back_again[:2]]

    assert (_coach_of(engine, "c1")[0], _coach_of(engine, "c2")[0]) == ("coach-b", "coach-a")
    assert (_coach_of(engine, "c1")[1], _coach_of(engine, "c2")[1]) == (2, 3)  # the versions that set them
    # The member's next slip is in the current coach's feed, not the former one's.
    slip = _append(engine, "checkin-c1", "checkin.recorded", {
        "date": day, "outcome": "slipped", "slip": {"channel": "texts", "initiated_by": "me"}})
    assert apply_once(engine, "notification.inbox", handler, slip)
    live = _state(engine)
    assert [row[1] for row in live["feed"] if row[2] == str(slip.id)] == ["coach-b"]

    rebuild(engine, feed_projection())
    assert _state(engine) == live


def test_a_late_assignment_leaves_the_later_coach(database_url: str) -> None:
    """A parked coach.assigned requeued after the next assignment was applied."""
    engine = engine_for(database_url)
    handler = InboxHandler()
    to_a = _append(engine, "commitment-c1", "coach.assigned", {"coach_id": "coach-a"})
    to_b = _append(engine, "commitment-c1", "coach.assigned", {"coach_id": "coach-b", "previous_coach_id": "coach-a"})
    for event in (to_b, to_a):
        assert apply_once(engine, "notification.inbox", handler, event)

    assert _coach_of(engine, "c1")[0] == "coach-b"
    live = _state(engine)
    assert live["coaches"] == [("t1", "coach-a"), ("t1", "coach-b")]  # known, as the rebuild knows them
    rebuild(engine, feed_projection())
    assert _state(engine) == live


def test_an_assignment_requeued_after_its_unassignment_stays_ended(database_url: str) -> None:
    """The assignment was parked, its unassignment applied, then the assignment requeued:
    the coach it named must not get the member's feed."""
    engine = engine_for(database_url)
    handler = InboxHandler()
    assigned = _append(engine, "commitment-c1", "coach.assigned", {"coach_id": "coach-a"})
    unassigned = _append(engine, "commitment-c1", "coach.unassigned", {"coach_id": "coach-a"})
    for event in (unassigned, assigned):
        assert apply_once(engine, "notification.inbox", handler, event)

    assert _coach_of(engine, "c1")[0] is None
    day = datetime.now(UTC).date().isoformat()
    missed = _append(engine, "checkin-c1", "checkin.missed", {"date": day, "deadline": "2026-11-22T12:00:00+00:00"})
    assert apply_once(engine, "notification.inbox", handler, missed)
    live = _state(engine)
    assert live["feed"] == []
    rebuild(engine, feed_projection())
    assert _state(engine) == live


def test_a_coach_whose_assignment_comes_late_after_their_unassignment_gets_nothing(database_url: str) -> None:
    """A, then B assigned, then B unassigned; B's assignment parked and requeued after the
    unassignment. The unassignment left nobody as of its version, although the row named A
    when it came: B must not get the member's feed when their assignment arrives."""
    engine = engine_for(database_url)
    handler = InboxHandler()
    to_a = _append(engine, "commitment-c1", "coach.assigned", {"coach_id": "coach-a"})
    to_b = _append(engine, "commitment-c1", "coach.assigned", {"coach_id": "coach-b", "previous_coach_id": "coach-a"})
    b_gone = _append(engine, "commitment-c1", "coach.unassigned", {"coach_id": "coach-b"})
    for event in (to_a, b_gone, to_b):
        assert apply_once(engine, "notification.inbox", handler, event)

    assert _coach_of(engine, "c1") == (None, 3)
    live = _state(engine)
    rebuild(engine, feed_projection())
    assert _state(engine) == live
