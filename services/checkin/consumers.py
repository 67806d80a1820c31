"""The inbox: what the check-in service learns from the commitment service over the bus.

One handler for the ``checkin.inbox`` component (shared.topology.CHECKIN_INBOX): tenant
and API-key events feed the credentials read model, commitment.* and coach.* events the
commitments read model. The Consumer base records each event id in the same transaction,
so redeliveries change nothing.

A check-in for a commitment whose ``commitment.created`` has not arrived yet answers 404;
the relay and the inbox usually close that gap within a fraction of a second.
"""

from __future__ import annotations

from functools import partial

from sqlalchemy import Connection, Engine

from services.checkin.profiles import PROFILE_UPDATED, apply_profile_event
from services.checkin.projections import COMMITMENT_EVENTS, CREDENTIALS_PROJECTION, apply_commitment_event
from shared.clock import Clock, utcnow
from shared.consumer import Consumer
from shared.events import RecordedEvent
from shared.topology import CHECKIN_INBOX, CREDENTIAL_EVENTS


def handle_inbox(conn: Connection, event: RecordedEvent, clock: Clock = utcnow) -> None:
    if event.type in CREDENTIAL_EVENTS:
        CREDENTIALS_PROJECTION.apply(conn, event)
    elif event.type in COMMITMENT_EVENTS:
        apply_commitment_event(conn, event, clock())
    elif event.type == PROFILE_UPDATED:
        apply_profile_event(conn, event)  # the members' display names (the coach dashboard)
    # Anything else bound to the queue later (commitment.*) is not ours to know: ignored.


def inbox_consumer(engine: Engine, broker_url: str | None = None, clock: Clock = utcnow) -> Consumer:
    return Consumer(engine, CHECKIN_INBOX, partial(handle_inbox, clock=clock), broker_url=broker_url)
