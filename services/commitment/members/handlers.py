"""Commands on members: the profile, and the erasure of everything personal.

Both take the member's lock (the one opening a commitment and assigning a coach take), so
an erasure and a command writing for the same member never interleave: the erasure either
sees what the other wrote and scrubs it, or the other finds the key destroyed and is
refused (`shared.keyring.MemberErased`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine

from shared import keyring
from shared.auth import Principal
from shared.commands import Context, UnitOfWork

from .. import personal
from ..domain import members as domain
from ..handlers import PIPELINE, _lock_member
from . import queries


def _tenant(context: Context) -> str:
    assert context.tenant_id is not None  # the views admit tenant credentials only
    return context.tenant_id


def update_profile(engine: Engine, caller: Principal, context: Context, member_id: str, *,
                   display_name: object, now: datetime) -> None:
    """Set (or, with None, clear) the member's display name."""
    domain.require_may_act_for(caller, member_id)
    tenant_id = _tenant(context)

    def command(uow: UnitOfWork) -> None:
        events = domain.update_profile(member_id=member_id, display_name=display_name, now=uow.now)
        _lock_member(uow.conn, tenant_id, member_id)
        # The member lock orders the member stream's writers: any version will do.
        uow.record(domain.stream_id(tenant_id, member_id), personal.seal(uow.conn, tenant_id, events),
                   expected_version=None)

    keyring.creating_keys(engine, lambda: PIPELINE.run(engine, context, command, now=now), now=now)


def request_erasure(engine: Engine, context: Context, member_id: str, *, now: datetime) -> domain.Erasure:
    """Erase the member: record the request, destroy their key, scrub this service's read
    models (the projections of the request), all in one transaction; the other services
    follow from the bus. Asking again returns the erasure as it stands, unchanged."""
    tenant_id = _tenant(context)

    def command(uow: UnitOfWork) -> domain.Erasure:
        _lock_member(uow.conn, tenant_id, member_id)
        current = queries.erasure(uow.conn, tenant_id, member_id)
        known = current is not None or queries.member_known(uow.conn, tenant_id, member_id)
        events = domain.request_erasure(member_id=member_id, known=known, current=current, now=uow.now)
        if not events:
            assert current is not None
            return current
        uow.record(domain.stream_id(tenant_id, member_id), events, expected_version=None)
        uow.commit()  # the append first; then the projections scrub, and the key goes
        keyring.destroy(uow.conn, tenant_id, member_id, now=uow.now)
        erased = queries.erasure(uow.conn, tenant_id, member_id)
        assert erased is not None
        return erased

    return PIPELINE.run(engine, context, command, now=now)
