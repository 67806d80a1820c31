"""A commitment's events applied again, or late, never take ``checkin_commitments`` back.

Once the inbox has forgotten an event (shared.consumer's dedup window), a relay moved back
beyond the window (``nocontact relay reset-checkpoint --reapply-beyond-window``) makes it
apply that event again while it skips the later ones it still remembers; a parked message
requeued arrives after later ones. Each field the events set keeps the version of the
commitment's stream that set it, and only a later event moves it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, delete, select, text

from services.checkin import members
from services.checkin.consumers import handle_inbox
from services.checkin.projections import CommitmentNotYetKnown, inbox_projection
from services.checkin.tables import commitments
from services.commitment import handlers
from shared import eventstore
from shared.auth import Principal
from shared.commands import Context
from shared.consumer import apply_once
from shared.db import engine_for, migrate, read
from shared.events import Metadata, NewEvent, RecordedEvent
from shared.eventstore import read_stream
from shared.projection import rebuild
from shared.schema import processed_events

NOW = datetime.now(UTC)
INBOX = "checkin.inbox"
MEMBER = "m-1"
# What the events decide, and the versions that decided it (the scheduler's due time moves
# with the clock of whoever applied last: left out).
FOLDED = (commitments.c.coach_id, commitments.c.ends_on, commitments.c.status, commitments.c.ended_on,
          commitments.c.coach_version, commitments.c.ends_on_version, commitments.c.status_version)


class Commitment:
    """One member's commitment, changed by the commitment service's own commands (so the
    events are exactly as it records them)."""

    def __init__(self, engine: Engine, *, duration_days: int = 30) -> None:
        self.engine = engine
        tenant_id = str(uuid.uuid4())
        self.admin = Principal(role="admin", tenant_id=tenant_id, credential_id="k-1")
        self.context = Context(tenant_id=tenant_id, actor="test")
        self.id = handlers.create_commitment(
            engine, self.admin, self.context, now=NOW, member_id=MEMBER, timezone="Europe/Berlin",
            contact={"label": "Alex", "relationship": "romantic"}, duration_days=duration_days,
        )

    def assign(self, coach_id: str) -> None:
        handlers.assign_coach(self.engine, self.context, coach_id=coach_id, member_id=MEMBER, now=NOW)

    def unassign(self, coach_id: str) -> None:
        handlers.unassign_coach(self.engine, self.context, coach_id=coach_id, member_id=MEMBER, now=NOW)

    def extend(self, days: int) -> None:
        handlers.extend_commitment(self.engine, self.admin, self.context, self.id, now=NOW, additional_days=days)

    def end(self) -> None:
        handlers.end_commitment(self.engine, self.admin, self.context, self.id, now=NOW, reason="enough")

    def events(self) -> list[RecordedEvent]:
        with read(self.engine) as conn:
            return read_stream(conn, f"commitment-{self.id}")

    def row(self, *columns: Any) -> Any:
        return _row(self.engine, self.id, *columns)


def _row(engine: Engine, commitment_id: str, *columns: Any) -> Any:
    """The commitment's row in ``checkin_commitments``: `columns`, or what the events decide."""
    with read(engine) as conn:
        return conn.execute(select(*(columns or FOLDED)).where(commitments.c.commitment_id == commitment_id)).one()


def _deliver(engine: Engine, events: Sequence[RecordedEvent]) -> None:
    for event in events:
        assert apply_once(engine, INBOX, handle_inbox, event)


def _republished_after_forgetting(engine: Engine, events: Sequence[RecordedEvent],
                                  forgotten: Sequence[RecordedEvent]) -> None:
    """What a relay moved back beyond the dedup window does: the inbox forgot `forgotten`
    (their processed_events rows deleted), then the whole stream comes again in order; the
    events it still remembers are skipped."""
    with engine.begin() as conn:
        conn.execute(delete(processed_events).where(
            processed_events.c.component == INBOX,
            processed_events.c.event_id.in_([event.id for event in forgotten]),
        ))
    applied = [event.id for event in events if apply_once(engine, INBOX, handle_inbox, event)]
    assert set(applied) == {event.id for event in forgotten}


def _rebuilt_the_same(commitment: Commitment) -> None:
    before = commitment.row()
    rebuild(commitment.engine, inbox_projection())
    assert commitment.row() == before


def test_an_old_assignment_applied_again_leaves_the_later_coach(engine: Engine) -> None:
    commitment = Commitment(engine)
    commitment.assign("coach-a")
    commitment.assign("coach-b")
    created, to_a, to_b = events = commitment.events()
    assert (to_a.type, to_a.stream_version, to_b.type, to_b.stream_version) == (
        "coach.assigned", 2, "coach.assigned", 3)
    _deliver(engine, events)
    assert commitment.row(commitments.c.coach_id).coach_id == "coach-b"

    _republished_after_forgetting(engine, events, forgotten=[created, to_a])

    # Not coach A again: a former coach sees nothing more of the member.
    assert commitment.row(commitments.c.coach_id).coach_id == "coach-b"
    assert commitment.row(commitments.c.coach_version).coach_version == 3
    _rebuilt_the_same(commitment)


def test_an_old_unassignment_applied_again_leaves_the_coach_assigned_since(engine: Engine) -> None:
    commitment = Commitment(engine)
    commitment.assign("coach-a")
    commitment.unassign("coach-a")
    commitment.assign("coach-a")  # back with the same coach: the unassignment names them
    events = commitment.events()
    assert [e.type for e in events] == ["commitment.created", "coach.assigned", "coach.unassigned", "coach.assigned"]
    _deliver(engine, events)
    assert commitment.row(commitments.c.coach_id).coach_id == "coach-a"

    _republished_after_forgetting(engine, events, forgotten=events[:3])

    assert commitment.row(commitments.c.coach_id).coach_id == "coach-a"
    assert commitment.row(commitments.c.coach_version).coach_version == 4
    _rebuilt_the_same(commitment)


def test_a_coach_whose_assignment_comes_late_after_their_unassignment_gets_nothing(engine: Engine) -> None:
    # A, then B assigned, then B unassigned; B's assignment parked and requeued after the
    # unassignment. The unassignment left nobody as of its version, although the row named
    # A when it came: B must not get the member back when their assignment arrives.
    commitment = Commitment(engine)
    commitment.assign("coach-a")
    commitment.assign("coach-b")
    commitment.unassign("coach-b")
    created, to_a, to_b, b_gone = commitment.events()
    assert (to_b.type, b_gone.type) == ("coach.assigned", "coach.unassigned")
    _deliver(engine, [created, to_a, b_gone, to_b])

    assert tuple(commitment.row(commitments.c.coach_id, commitments.c.coach_version)) == (None, 4)
    _rebuilt_the_same(commitment)


def test_an_old_extension_applied_again_leaves_the_later_last_day(engine: Engine) -> None:
    commitment = Commitment(engine)
    commitment.extend(10)
    commitment.extend(20)
    events = commitment.events()
    first, second = events[1].data["ends_on"], events[2].data["ends_on"]
    assert first < second
    _deliver(engine, events)

    _republished_after_forgetting(engine, events, forgotten=events[:2])

    assert commitment.row(commitments.c.ends_on).ends_on == date.fromisoformat(second)
    assert commitment.row(commitments.c.ends_on_version).ends_on_version == 3
    _rebuilt_the_same(commitment)


@pytest.mark.parametrize("finish", ["ended", "completed"])
def test_a_finished_commitment_applied_again_from_its_start_stays_as_it_is(engine: Engine, finish: str) -> None:
    """Ended and completed are final, so no replay could reopen it; every event of the
    stream applied again changes nothing at all, the scheduler's due time included."""
    commitment = Commitment(engine, duration_days=1)
    commitment.assign("coach-a")
    commitment.extend(1)
    if finish == "ended":
        commitment.end()
    else:
        assert handlers.complete_due(engine, now=NOW + timedelta(days=4)) == 1
    events = commitment.events()
    assert events[-1].type == f"commitment.{finish}"
    _deliver(engine, events)
    every_column = commitment.row(commitments)
    assert every_column.status == finish

    _republished_after_forgetting(engine, events, forgotten=events)

    assert commitment.row(commitments) == every_column
    assert commitment.row(commitments.c.status_version).status_version == 4
    _rebuilt_the_same(commitment)


def test_a_late_event_of_one_kind_is_applied_after_a_later_one_of_another_kind(engine: Engine) -> None:
    """A parked message requeued: the extension and the assignment arrive after the end.
    Each field has its own version, so the later end does not refuse them."""
    commitment = Commitment(engine)
    commitment.extend(10)
    commitment.assign("coach-a")
    commitment.end()
    created, extended, assigned, ended = commitment.events()
    _deliver(engine, [created, ended, extended, assigned])

    assert commitment.row()[:4] == ("coach-a", date.fromisoformat(extended.data["ends_on"]), "ended",
                                    date.fromisoformat(ended.data["ended_on"]))
    assert commitment.row()[4:] == (3, 2, 4)  # each field's own version
    _rebuilt_the_same(commitment)


def test_rows_from_before_the_versions_take_the_next_event(blank_url: str) -> None:
    """checkin_0006: a row folded before it had versions gets 0 for each, so the
    commitment's next event of any kind (any version) applies as before."""
    migrate(blank_url, "dashboard_0002")
    engine = engine_for(blank_url)
    commitment_id = str(uuid.uuid4())
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO checkin_commitments (commitment_id, tenant_id, member_id, coach_id, contact_label, "
            "relationship, channels, timezone, starts_on, ends_on, status, created_at, scheduler_due_at) VALUES "
            "(:id, 't1', :member, 'coach-a', 'sealed', 'romantic', '[\"texts\"]', 'Europe/Berlin', :starts_on, "
            ":ends_on, 'active', :at, :at)"),
            {"id": commitment_id, "member": MEMBER, "starts_on": NOW.date(), "ends_on": NOW.date() + timedelta(days=9),
             "at": NOW})

    migrate(blank_url)

    assert _row(engine, commitment_id) == ("coach-a", NOW.date() + timedelta(days=9), "active", None, 0, 0, 0)
    new_ends_on = NOW.date() + timedelta(days=19)
    with engine.begin() as conn:
        recorded = eventstore.append(conn, f"commitment-{commitment_id}", [
            NewEvent("coach.unassigned", {"commitment_id": commitment_id, "member_id": MEMBER, "coach_id": "coach-a"}),
            NewEvent("commitment.extended", {"commitment_id": commitment_id, "member_id": MEMBER,
                                             "ends_on": new_ends_on.isoformat()}),
            NewEvent("commitment.ended", {"commitment_id": commitment_id, "member_id": MEMBER,
                                          "ended_on": NOW.date().isoformat()}),
        ], metadata=Metadata(tenant_id="t1"))
    _deliver(engine, recorded)
    assert _row(engine, commitment_id) == (None, new_ends_on, "ended", NOW.date(), 1, 2, 3)


def test_an_event_before_its_commitment_is_known_is_refused_then_applied_after_it(engine: Engine) -> None:
    # commitment.created parked (a poison message, say): the next events of the commitment
    # must not be recorded as applied having changed nothing, or the coach they name is
    # lost for good. Refused (the consumer tries again, then parks them too), they apply once
    # the creation is requeued before them.
    commitment = Commitment(engine)
    commitment.assign("coach-a")
    created, assigned = commitment.events()
    with pytest.raises(CommitmentNotYetKnown, match=r"whose commitment\.created"):
        apply_once(engine, INBOX, handle_inbox, assigned)
    with read(engine) as conn:
        assert conn.execute(select(processed_events.c.event_id).where(
            processed_events.c.event_id == assigned.id)).first() is None

    _deliver(engine, [created, assigned])
    assert commitment.row(commitments.c.coach_id).coach_id == "coach-a"


def test_an_erased_members_later_events_change_nothing_and_are_not_refused(engine: Engine) -> None:
    # Their commitments were scrubbed and their creation is ignored: nothing of them comes back.
    commitment = Commitment(engine)
    created = commitment.events()[0]
    _deliver(engine, [created])
    with engine.begin() as conn:
        members.scrub(conn, commitment.context.tenant_id, MEMBER, NOW)
    commitment.assign("coach-a")
    assert apply_once(engine, INBOX, handle_inbox, commitment.events()[-1])
    with read(engine) as conn:
        assert conn.execute(select(commitments).where(commitments.c.commitment_id == commitment.id)).first() is None
