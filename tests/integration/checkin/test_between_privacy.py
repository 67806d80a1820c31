"""A member's pauses, urges and SOS in the check-in service's export and erasure, on the real
store (PostgreSQL and SQLite): their personal values (a pause's reason, an urge's trigger,
coping and note, an SOS message) sealed at rest, opened in the export, and gone with the
member's other rows when the member is erased."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from sqlalchemy import func, select

from services.checkin import handlers, members, tables
from shared.db import read
from tests.integration.checkin.support import deliver, new_commitment, new_tenant

NOW = datetime(2027, 6, 10, 12, tzinfo=UTC)


def test_exported_opened_and_erased(engine) -> None:  # type: ignore[no-untyped-def]
    tenant = new_tenant(engine)
    cid, events = new_commitment(engine, tenant, starts_on=date(2027, 6, 1),
                                 created_at=datetime(2027, 5, 31, tzinfo=UTC))
    deliver(engine, tenant.events + events)
    member, context = tenant.member("m-1"), tenant.context
    handlers.schedule_pause(engine, member, context, cid, {"from_": date(2027, 6, 12), "to": date(2027, 6, 13),
                                                           "reason": "knee surgery"}, now=NOW)
    handlers.log_urge(engine, member, context, cid, {"at": NOW - timedelta(hours=2), "intensity": 7,
                                                     "outcome": "passed", "trigger": "a song", "coping": "ran home",
                                                     "note": "it was hard"}, now=NOW)
    handlers.send_sos(engine, member, context, cid, "call me", now=NOW)
    with read(engine) as conn:
        stored = str([tuple(r) for t in (tables.pauses, tables.urges) for r in conn.execute(select(t))])
    # Every value holds a space, which no sealed value (base64url) does: a short word could
    # turn up inside a ciphertext by chance ("ran" did, in 1 CI run).
    assert not any(text in stored for text in ("knee surgery", "a song", "ran home", "it was hard"))

    exported = members.export_member(engine, tenant.tenant_id, "m-1", NOW)
    assert exported is not None
    [commitment] = exported["data"]["commitments"]
    assert commitment["pauses"][0]["reason"] == "knee surgery"
    assert (commitment["urges"][0]["trigger"], commitment["urges"][0]["note"]) == ("a song", "it was hard")
    sos = [e for e in commitment["history"] if e["type"] == "member.sos"]
    assert sos[0]["data"]["message"] == "call me"

    with engine.begin() as conn:
        members.scrub(conn, tenant.tenant_id, "m-1", NOW)
    with read(engine) as conn:
        for table in (tables.pauses, tables.urges, tables.sos_calls):
            assert conn.execute(select(func.count()).select_from(table).where(table.c.commitment_id == cid)
                                ).scalar_one() == 0, table.name
    assert members.export_member(engine, tenant.tenant_id, "m-1", NOW) is None
