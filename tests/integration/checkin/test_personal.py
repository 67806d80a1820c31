"""A member's notes in the check-in service (real HTTP, PostgreSQL, RabbitMQ): sealed at
rest under the member's key, opened for the member and admins, exported, and erased on
``member.erasure_requested`` so that nothing comes back (inbox, scheduler, rebuilds)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import Engine, Table, func, select

from services.checkin import members, tables
from services.checkin.projections import inbox_projection, own_projection
from services.checkin.rebuild import CheckinRebuild, rebuild_checkin
from services.checkin.scheduler import Scheduler
from services.commitment.domain.members import stream_id as member_stream
from shared import erasure, keyring
from shared.db import read
from shared.events import Metadata, NewEvent
from shared.eventstore import LogCursor, append, read_stream
from shared.projection import rebuild, rebuild_aside
from shared.relay import Relay
from shared.schema import events
from shared.testing import wait_until
from tests.integration.checkin.conftest import CheckinStack
from tests.integration.checkin.support import Tenant, api, body, commitment_event, deliver

TODAY = datetime.now(UTC).date()
STARTS_ON = TODAY - timedelta(days=5)


@pytest.fixture(params=["pg_stack", "embedded_stack"])
def stack(request: pytest.FixtureRequest) -> Iterator[CheckinStack]:
    """The check-in service on PostgreSQL and RabbitMQ, or embedded (SQLite, the filesystem
    broker), with the commitment service's relay of the ``member`` category
    (member.erasure_requested)."""
    running: CheckinStack = request.getfixturevalue(request.param)
    stop = threading.Event()
    relay = Relay(running.engine, name="test:member", categories=["member"], poll_interval_s=0.02)
    thread = threading.Thread(target=relay.run, args=(stop,), daemon=True)
    thread.start()
    yield running
    stop.set()
    thread.join(timeout=10)


def _request_erasure(stack: CheckinStack, tenant: Tenant, member_id: str) -> None:
    """What the commitment service does on DELETE /v1/members/{id}: the request, and the key destroyed."""
    now = datetime.now(UTC)
    with stack.engine.begin() as conn:
        append(conn, member_stream(tenant.tenant_id, member_id),
               [NewEvent(erasure.REQUESTED, {"member_id": member_id, "services": list(erasure.SERVICES)})],
               metadata=Metadata(tenant_id=tenant.tenant_id, actor="tests"))
        keyring.destroy(conn, tenant.tenant_id, member_id, now=now)


def _plaintext_check_in(stack: CheckinStack, tenant: Tenant, commitment_id: str, member_id: str, day: date,
                        note: str) -> None:
    """A check-in recorded before notes were sealed: its note is plain text in the log."""
    with stack.engine.begin() as conn:
        append(conn, f"checkin-{commitment_id}", [NewEvent("checkin.recorded", {
            "commitment_id": commitment_id, "member_id": member_id, "date": day.isoformat(), "outcome": "kept",
            "urge": 1, "mood": 3, "slip": None, "note": note})], metadata=Metadata(tenant_id=tenant.tenant_id,
                                                                               actor="tests"))


def _stored(stack: CheckinStack) -> str:
    """Every event's data and every check-in row, as text."""
    with read(stack.engine) as conn:
        logged = [str(data) for data in conn.execute(select(events.c.data)).scalars()]
        rows = [str(tuple(row)) for row in conn.execute(select(tables.check_ins))]
    return "\n".join(logged + rows)


def _told(stack: CheckinStack, commitment_id: str) -> int:
    with read(stack.engine) as conn:
        return conn.execute(select(func.count()).where(events.c.stream_id == f"checkin-{commitment_id}")).scalar_one()


def _member_rows(stack: CheckinStack, member_id: str) -> int:
    with read(stack.engine) as conn:
        return sum(conn.execute(select(func.count()).select_from(table).where(table.c.member_id == member_id))
                   .scalar_one() for table in (tables.commitments, tables.check_ins, tables.streaks, tables.pauses,
                                               tables.urges))


def test_notes_are_sealed_at_rest_opened_for_their_readers_exported_and_erased(stack: CheckinStack) -> None:
    tenant, other_tenant = stack.tenant(), stack.tenant()
    marker, other_marker, old_marker = (f"Zq{uuid.uuid4().hex}" for _ in range(3))
    # A note recorded before sealing existed (its commitment's stream older than this
    # service's knowledge of it) still reads, once the rebuild folded it into the day rows.
    first = str(uuid.uuid4())
    _plaintext_check_in(stack, tenant, first, "m-1", STARTS_ON, f"{old_marker}-old")
    commitment_event(stack.engine, tenant, first, "commitment.created", {
        "commitment_id": first, "member_id": "m-1", "contact": {"label": "Alex (ex)", "relationship": "romantic"},
        "channels": ["calls", "texts"], "timezone": "UTC", "starts_on": STARTS_ON.isoformat(), "duration_days": 30,
        "ends_on": (STARTS_ON + timedelta(days=29)).isoformat(), "motivation": "peace", "coach_id": "c-1"})
    wait_until(lambda: stack.known(first), 60, message="commitment.created to reach the inbox")
    rebuild_checkin(stack.engine)
    second = stack.commitment(tenant, member_id="m-2", timezone="UTC", starts_on=STARTS_ON)
    client = api(stack.base_url)
    admin, member = tenant.headers(), tenant.headers("member", "m-1")

    day = STARTS_ON + timedelta(days=1)
    posted = client.post(f"/v1/commitments/{first}/check-ins", headers=member,
                         json=body("kept", day, urge=3, note=f"{marker}-note"))
    assert posted.status_code == 201, posted.text
    assert posted.json()["note"] == f"{marker}-note"
    corrected = client.put(f"/v1/commitments/{first}/check-ins/{day}", headers=admin,
                           json=body("kept", urge=4, note=f"{marker}-corrected"))
    assert corrected.status_code == 200 and corrected.json()["note"] == f"{marker}-corrected", corrected.text
    assert client.post(f"/v1/commitments/{first}/check-ins", headers=member,
                       json=body("kept", day + timedelta(days=1))).json()["note"] is None
    theirs = client.post(f"/v1/commitments/{second}/check-ins", headers=admin,
                         json=body("kept", day, note=f"{other_marker}-note"))
    assert theirs.status_code == 201, theirs.text

    # Opened for the member and admins; a coach never sees a note.
    for headers in (admin, member):
        listed = client.get(f"/v1/commitments/{first}/check-ins", headers=headers).json()["items"]
        assert [item["note"] for item in listed] == [f"{old_marker}-old", f"{marker}-corrected", None]
        assert client.get(f"/v1/commitments/{first}/check-ins/{day}", headers=headers).json()["note"] \
            == f"{marker}-corrected"
    coach = tenant.headers("coach", "c-1")
    assert all(item["note"] is None for item in client.get(f"/v1/commitments/{first}/check-ins",
                                                           headers=coach).json()["items"])
    # Sealed at rest: in the log and in the day rows.
    stored = _stored(stack)
    assert marker not in stored and other_marker not in stored and "pii:1:" in stored

    # The export: everything held, in clear; the member's own token or an admin's.
    exported = client.get("/v1/members/m-1/export", headers=member)
    assert exported.status_code == 200, exported.text
    document = exported.json()
    assert document["member_id"] == "m-1" and document["service"] == "checkin" and document["exported_at"]
    [held] = document["data"]["commitments"]
    assert held["commitment_id"] == first and held["contact"]["label"] == "Alex (ex)"
    assert [c["note"] for c in held["check_ins"]] == [f"{old_marker}-old", f"{marker}-corrected", None]
    assert f"{marker}-note" in exported.text  # the first report, in the history
    assert marker not in client.get("/v1/members/m-2/export", headers=admin).text
    assert client.get("/v1/members/m-1/export", headers=admin).json()["data"] == document["data"]
    for refused, status in ((tenant.headers("member", "m-2"), 403), (coach, 403), (other_tenant.headers(), 404)):
        assert client.get("/v1/members/m-1/export", headers=refused).status_code == status
    assert client.get("/v1/members/m-nobody/export", headers=admin).status_code == 404

    # Between check-ins, the member's own words, sent with Idempotency-Keys (their kept
    # answers are sealed under the member's key: the erasure leaves none readable).
    between = {
        "pauses": {"from": (TODAY + timedelta(days=2)).isoformat(), "to": (TODAY + timedelta(days=3)).isoformat(),
                   "reason": f"{marker}-reason"},
        "urges": {"intensity": 7, "outcome": "passed", "trigger": f"{marker}-trigger", "coping": f"{marker}-coping",
                  "note": f"{marker}-urge-note"},
    }
    for path, sent in between.items():
        keyed = {**member, "Idempotency-Key": f"{path}-{marker}"}
        answered = client.post(f"/v1/commitments/{first}/{path}", headers=keyed, json=sent)
        assert answered.status_code == 201 and marker in answered.text, answered.text
        assert client.post(f"/v1/commitments/{first}/{path}", headers=keyed, json=sent).text == answered.text

    # The erasure: the check-in service scrubs and reports.
    _request_erasure(stack, tenant, "m-1")
    def reports() -> int:
        with read(stack.engine) as conn:
            return conn.execute(select(func.count()).where(
                events.c.type == erasure.COMPLETED,
                events.c.stream_id == erasure.completion_stream("checkin", tenant.tenant_id, "m-1"))).scalar_one()

    wait_until(lambda: reports() == 1, 60, message="the check-in service's erasure report")

    def nothing_left() -> None:
        assert _member_rows(stack, "m-1") == 0
        assert client.get(f"/v1/commitments/{first}/check-ins", headers=admin).status_code == 404
        assert client.get(f"/v1/commitments/{first}/streak", headers=admin).status_code == 404
        assert client.post(f"/v1/commitments/{first}/check-ins", headers=admin,
                           json=body("kept", TODAY, note="again")).status_code == 404
        assert client.get("/v1/members/m-1/export", headers=admin).status_code == 404
        for path, sent in between.items():  # a repeat of a kept answer opens nothing
            repeated = client.post(f"/v1/commitments/{first}/{path}", json=sent,
                                   headers={**member, "Idempotency-Key": f"{path}-{marker}"})
            assert marker not in repeated.text and repeated.status_code != 201, repeated.text
        # The other member is untouched.
        kept = client.get(f"/v1/commitments/{second}/check-ins", headers=admin).json()["items"]
        assert [item["note"] for item in kept] == [f"{other_marker}-note"]
        assert other_marker in client.get("/v1/members/m-2/export", headers=admin).text

    nothing_left()
    # Nothing comes back: a late or replayed commitment.created, the scheduler, every rebuild.
    told = _told(stack, first)
    with read(stack.engine) as conn:
        created = read_stream(conn, f"commitment-{first}")
    deliver(stack.engine, created)
    Scheduler(stack.engine).tick(datetime.now(UTC) + timedelta(days=3))
    rebuild(stack.engine, inbox_projection())
    rebuild_checkin(stack.engine)
    rebuild(stack.engine, own_projection())
    rebuild_checkin(stack.engine)
    nothing_left()
    assert _told(stack, first) == told  # nothing recorded about them since
    assert marker not in _stored(stack)

    # A second request (a redelivery) reports again and changes nothing else.
    _request_erasure(stack, tenant, "m-1")
    wait_until(lambda: reports() == 2, 60, message="the second report")
    nothing_left()


def test_erased_members_are_refused_while_their_rows_are_not_scrubbed_yet(pg_stack: CheckinStack) -> None:
    """Between the key's destruction and the scrub: a note cannot be sealed (409), and the
    scheduler does not look at the member's commitments."""
    tenant = pg_stack.tenant()
    commitment = pg_stack.commitment(tenant, member_id="m-1", timezone="UTC", starts_on=STARTS_ON)
    client = api(pg_stack.base_url)
    with pg_stack.engine.begin() as conn:
        keyring.destroy(conn, tenant.tenant_id, "m-1", now=datetime.now(UTC))
    refused = client.post(f"/v1/commitments/{commitment}/check-ins", headers=tenant.headers(),
                          json=body("kept", TODAY, note="not any more"))
    assert refused.status_code == 409, refused.text
    assert all(row.commitment_id != commitment
               for row in Scheduler(pg_stack.engine).due(datetime.now(UTC) + timedelta(days=30)))
    assert "not any more" not in _stored(pg_stack)


class ErasedDuringFill(CheckinRebuild):
    """A rebuild during which a member is erased: after the fill folded their days, before the swap."""

    def __init__(self, erase: Callable[[], None]) -> None:
        super().__init__()
        self.erase = erase

    def fill(self, engine: Engine, shadows: Mapping[str, Table], up_to: LogCursor) -> int:
        count = super().fill(engine, shadows, up_to)
        self.erase()
        return count


def test_a_member_erased_during_a_rebuild_does_not_come_back_with_the_swap(pg_stack: CheckinStack) -> None:
    tenant = pg_stack.tenant()
    client = api(pg_stack.base_url)
    for member_id in ("m-1", "m-2"):
        commitment = pg_stack.commitment(tenant, member_id=member_id, timezone="UTC", starts_on=STARTS_ON)
        posted = client.post(f"/v1/commitments/{commitment}/check-ins", headers=tenant.headers(),
                             json=body("kept", STARTS_ON, note=f"{member_id}'s day"))
        assert posted.status_code == 201, posted.text

    def erase() -> None:
        with pg_stack.engine.begin() as conn:
            members.scrub(conn, tenant.tenant_id, "m-1", datetime.now(UTC))

    rebuild_aside(pg_stack.engine, ErasedDuringFill(erase))
    assert _member_rows(pg_stack, "m-1") == 0
    assert _member_rows(pg_stack, "m-2") == 3  # the commitment, the day, the state
