"""Idempotency-Key: a POST sent again gets its first answer and changes nothing.

CONTRACT v1.1, "Requests partners retry": a partner that got no answer (a timeout, a
dropped connection) sends the same ``POST`` again with the same ``Idempotency-Key``; within
24 hours it gets the first answer (status, body, ``Location``, ``ETag``) and nothing is
done twice. The key is the partner's (1-255 printable ASCII characters, e.g. a UUID, bare
or as the IETF draft's quoted string) and lives in the space of the credential's tenant
(the operator has one space of its own, per service).

One row of ``idempotency_keys`` per (service, tenant, key), in the service's own database:

1. **Reserve**, in a short transaction of its own before the command (a command's first
   write must be its append, `shared.commands`): the row is inserted ``running`` with a
   lease, the request's fingerprint (which request this is: method, path, body, and for a
   token its role and subject, so a member never receives what an admin's request
   answered) and a holder id. A second request with the key finds it: another request ->
   422 naming ``Idempotency-Key``; the first still running -> 409 with ``Retry-After`` (the
   IETF draft's answer); its answer kept -> that answer, replayed.
2. **The command** marks the row ``committed`` in its own transaction, after its append
   (`shared.commands.after_append`): the mark commits exactly when the command's effect
   does, and not at all when it is rolled back.
3. **Keep the answer**, after the command, in another short transaction: a success, or
   whatever answered a request whose command committed, is stored (``done``); any other
   answer (a refused request changed nothing) releases the key, so the partner may send
   it again. A server error after the command committed keeps no answer to replay.

A crash between 1 and 3 leaves the row ``running`` or ``committed`` with a lease that runs
out (`LEASE`, twice gunicorn's worker timeout): ``running`` means the command never
committed, so the next request with the key takes the row over and carries it out;
``committed`` means it did, and its answer is lost: the next request is told so (409,
"read the resource") instead of the command being carried out twice. Nothing stays
reserved beyond the lease, and every row is deleted 24 hours after the key's first use
(`purge_expired`, run by the APIs at most once a minute per process).

Stored answers hold what the command answered, personal values included (a check-in's
note, a commitment's label), so they are never stored in clear: an answer naming members
(``member_id`` anywhere in it) is sealed under each of those members' keys
(`shared.keyring`): a member's erasure destroys the key and with it every stored answer
about them (a replay then answers 404, like the member's commitments); any other answer
is sealed under the master key (`shared.crypto`), bound to its row. An answer that shows an
API key (a new tenant's, a new key's) is never kept at all, sealed or not: a key is shown
once and stored only as its hash (CONTRACT, "Tenants and credentials"), so a repeat is told
the request was carried out (409) and that the key must be listed and revoked if it was
never received. The fingerprint is an
HMAC under a key derived from the master key, so it tells nothing of the body either (a
master-key rotation therefore makes a retry across it a different request).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Index,
    String,
    Table,
    Text,
    Uuid,
    delete,
    select,
    update,
)

from shared import config, crypto, keyring
from shared.db import insert_new
from shared.errors import Busy, Conflict, NotFound, ValidationFailed
from shared.schema import UtcDateTime, metadata

log = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
#: Set on an answer that is a replay of the first one.
REPLAYED_HEADER = "Idempotent-Replayed"
KEY_MAX = 255
#: How long a key keeps its answer (the contract's 24 hours, from its first use).
TTL = timedelta(hours=24)
#: How long a reservation holds without an answer before it is presumed dead (its process
#: crashed): twice gunicorn's worker timeout (infra/gunicorn.conf.py), which kills a
#: request that runs longer.
LEASE = timedelta(seconds=60)
#: The answer's headers a replay gives back; the others are the replay's own
#: (X-Correlation-ID, rate limits, caching).
KEPT_HEADERS = ("Content-Type", "Location", "ETag")
#: How often a process deletes expired keys of its service.
PURGE_EVERY_S = 60.0

RUNNING, COMMITTED, DONE = "running", "committed", "done"

# Migration idempotency_0001 creates it, in every service's database.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("service", String(32), primary_key=True),
    Column("scope", String(64), primary_key=True),
    Column("key", String(KEY_MAX), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("holder", Uuid(), nullable=False),
    Column("state", String(16), nullable=False),
    Column("lease_until", UtcDateTime(), nullable=False),
    Column("answer", Text),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
    Index("idempotency_keys_expiry", "expires_at"),
)


#: Stored instead of an answer that showed an API key (see the module's docstring).
CREDENTIAL_NOT_KEPT = "credential-not-kept"


class KeyInUse(Busy):
    """The first request with this key is still being carried out (HTTP 409, Retry-After)."""

    def __init__(self) -> None:
        super().__init__(
            f"a request with this {HEADER} is still being carried out; send it again in a moment for its answer"
        )


class AnswerLost(Conflict):
    """The first request with this key was carried out, but its answer was not kept (HTTP 409)."""

    def __init__(self) -> None:
        super().__init__(
            f"the request with this {HEADER} was carried out, but its answer was lost (the server stopped "
            "before answering); read the resource instead of sending the request again"
        )


class CredentialNotKept(Conflict):
    """The first request with this key issued an API key: shown once, never kept (HTTP 409)."""

    def __init__(self) -> None:
        super().__init__(
            f"the request with this {HEADER} was carried out; its answer showed an API key, which is shown "
            "once and never stored: list the tenant's keys and revoke the one you did not receive"
        )


class AnswerErased(NotFound):
    """What the key answered named a member whose data has been erased since (HTTP 404)."""

    def __init__(self) -> None:
        super().__init__(f"what this {HEADER} answered is gone: the member's data was erased")


def parse_key(header: str | None) -> str | None:
    """The key of an ``Idempotency-Key`` header (None when absent): 1-255 printable ASCII
    characters, sent bare or as a structured-field string (``"..."``).
    `ValidationFailed` naming the header otherwise."""
    if header is None:
        return None
    value = header.strip()
    if len(value) >= 2 and value.startswith('"') and value.endswith('"'):
        value = value[1:-1]
    if not value:
        raise ValidationFailed(HEADER, "must not be empty")
    if len(value) > KEY_MAX:
        raise ValidationFailed(HEADER, f"must be at most {KEY_MAX} characters long")
    if not (value.isascii() and value.isprintable()):
        raise ValidationFailed(HEADER, "must be printable ASCII characters (e.g. a UUID)")
    return value


def _fingerprint_key() -> bytes:
    return hashlib.sha256(b"nocontact.idempotency-fingerprint:" + config.master_key().encode()).digest()


def fingerprint(method: str, path: str, caller: str, body: bytes) -> str:
    """Which request this is, as an HMAC (hex): method, path with query, who in the tenant
    (`caller`: the role, and a token's subject) and the body (JSON compared by value, so
    that key order and spacing do not make another request)."""
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except (ValueError, RecursionError):
        canonical = body.decode("latin-1")
    message = json.dumps([method.upper(), path, caller, canonical], ensure_ascii=False).encode()
    return hmac.new(_fingerprint_key(), message, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Keyed:
    """A request that carries an Idempotency-Key."""

    service: str
    scope: str  # the credential's tenant, or "operator"
    key: str
    fingerprint: str

    def where(self) -> Any:
        return (
            (idempotency_keys.c.service == self.service)
            & (idempotency_keys.c.scope == self.scope)
            & (idempotency_keys.c.key == self.key)
        )


@dataclass(frozen=True)
class Reservation:
    """The key, held by one request until its answer is kept."""

    request: Keyed
    holder: uuid.UUID

    def where(self) -> Any:
        return self.request.where() & (idempotency_keys.c.holder == self.holder)


@dataclass(frozen=True)
class Answer:
    """An HTTP answer as a replay gives it back."""

    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"status": self.status, "headers": dict(self.headers), "body": self.body.decode("utf-8")})

    @classmethod
    def from_json(cls, text: str) -> Answer:
        stored = json.loads(text)
        return cls(stored["status"], stored["body"].encode("utf-8"), stored["headers"])

    def shows_credential(self) -> bool:
        """Whether the answer shows an API key (``api_key`` in a JSON body)."""
        try:
            document = json.loads(self.body) if self.body else None
        except ValueError:
            return False
        return isinstance(document, dict) and "api_key" in document

    def members(self) -> list[str]:
        """Every member the answer names (``member_id`` anywhere in a JSON body)."""
        try:
            document = json.loads(self.body) if self.body else None
        except ValueError:
            return []
        return sorted(set(_member_ids(document)))


def _member_ids(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for name, item in value.items():
            if name == "member_id" and isinstance(item, str):
                yield item
            else:
                yield from _member_ids(item)
    elif isinstance(value, list):
        for item in value:
            yield from _member_ids(item)


# -- 1. reserve -------------------------------------------------------------------------------


def _insert_unless_present(conn: Connection, values: Mapping[str, Any]) -> None:
    conn.execute(insert_new(conn.dialect.name, idempotency_keys, "service", "scope", "key").values(**values))


def reserve(engine: Engine, request: Keyed, *, now: datetime) -> Reservation | Answer:
    """Hold the key for this request (a `Reservation`: carry the command out, then `keep`),
    or the first answer to replay. Raises `ValidationFailed` (the key was used for another
    request), `KeyInUse` (its first request is running), `AnswerLost`, `AnswerErased`."""
    holder = uuid.uuid4()
    fresh = {
        "fingerprint": request.fingerprint, "holder": holder, "state": RUNNING, "lease_until": now + LEASE,
        "answer": None, "created_at": now, "expires_at": now + TTL,
    }
    with engine.begin() as conn:
        _insert_unless_present(conn, {"service": request.service, "scope": request.scope, "key": request.key,
                                      **fresh})
        row = conn.execute(select(idempotency_keys).where(request.where())).one()
        if row.holder == holder:
            return Reservation(request, holder)
        if row.expires_at <= now:
            # The key's last use is over 24 hours old: this is a first use again.
            return _take_over(conn, request, row.holder, fresh)
        if not hmac.compare_digest(row.fingerprint, request.fingerprint):
            raise ValidationFailed(HEADER, "was used for a different request within the last 24 hours: "
                                           "use a new key for a new request")
        if row.state == DONE:
            return _stored_answer(conn, request, row)
        if row.lease_until > now:
            raise KeyInUse()
        if row.state == COMMITTED:
            raise AnswerLost()
        # Its request stopped (a crash) before its command committed: carry it out now.
        return _take_over(conn, request, row.holder, {"holder": holder, "lease_until": now + LEASE})


def _take_over(conn: Connection, request: Keyed, previous: uuid.UUID, values: Mapping[str, Any]) -> Reservation:
    taken = conn.execute(
        update(idempotency_keys).where(request.where(), idempotency_keys.c.holder == previous).values(**values)
    )
    if taken.rowcount != 1:
        raise KeyInUse()  # another request took it over first
    return Reservation(request, values["holder"])


def _stored_answer(conn: Connection, request: Keyed, row: Any) -> Answer:
    if row.answer is None:
        raise AnswerLost()
    if row.answer == CREDENTIAL_NOT_KEPT:
        raise CredentialNotKept()
    if not keyring.is_sealed(row.answer):
        return Answer.from_json(crypto.unseal_text(row.answer, _associated_data(request, row.holder)))
    opener = keyring.Opener(conn, request.scope)
    value: str | None = row.answer
    while keyring.is_sealed(value):
        opened = opener.open(value, event_id=row.holder)
        if opened == value:
            log.warning("a kept answer of %s cannot be opened: its key is missing", request.service)
            raise AnswerErased()
        value = opened
    if value is keyring.TOMBSTONE:
        raise AnswerErased()
    return Answer.from_json(value)


def _associated_data(request: Keyed, holder: uuid.UUID) -> str:
    return f"idempotency:{request.service}:{request.scope}:{request.key}:{holder}"


# -- 2. the command -----------------------------------------------------------------------------


def mark_committed(conn: Connection, reservation: Reservation) -> None:
    """In the command's transaction, after its append: its effect commits with this mark."""
    conn.execute(
        update(idempotency_keys).where(reservation.where(), idempotency_keys.c.state == RUNNING)
        .values(state=COMMITTED)
    )


# -- 3. keep the answer ----------------------------------------------------------------------------


def keep(engine: Engine, reservation: Reservation, answer: Answer, *, now: datetime) -> None:
    """Store the answer of the reservation's request, or release the key when the request
    was refused without effect (see the module's docstring)."""
    try:
        keyring.creating_keys(engine, lambda: _keep(engine, reservation, answer), now=now)
    except keyring.MemberErased:
        _keep(engine, reservation, answer, erased=True)  # erased meanwhile: nothing about them is kept


def _keep(engine: Engine, reservation: Reservation, answer: Answer, *, erased: bool = False) -> None:
    request = reservation.request
    with engine.begin() as conn:
        state = conn.execute(select(idempotency_keys.c.state).where(reservation.where())).scalar()
        if state is None:
            return  # presumed dead and taken over meanwhile: the request that holds it answers
        if state != COMMITTED and not 200 <= answer.status < 300:
            conn.execute(delete(idempotency_keys).where(reservation.where()))
            return
        if answer.status >= 500 or erased:
            kept = None
        elif answer.shows_credential():
            kept = CREDENTIAL_NOT_KEPT
        else:
            kept = _seal(conn, request, reservation.holder, answer)
        conn.execute(update(idempotency_keys).where(reservation.where()).values(state=DONE, answer=kept))


def _seal(conn: Connection, request: Keyed, holder: uuid.UUID, answer: Answer) -> str:
    members = answer.members()
    if not members:
        return crypto.seal_text(answer.to_json(), _associated_data(request, holder))
    # Under each member's key in turn: destroying any one of them makes the answer unreadable.
    sealed = answer.to_json()
    for member_id in members:
        sealed = keyring.member_key(conn, request.scope, member_id).seal(sealed, holder)
    return sealed


# -- housekeeping ------------------------------------------------------------------------------------

_last_purge: dict[tuple[str, str], float] = {}


def purge_expired(engine: Engine, service: str, *, now: datetime) -> int:
    """Delete the service's keys whose 24 hours are over; returns how many."""
    with engine.begin() as conn:
        deleted = conn.execute(
            delete(idempotency_keys).where(idempotency_keys.c.service == service, idempotency_keys.c.expires_at <= now)
        )
    return deleted.rowcount or 0


def purge_when_due(engine: Engine, service: str, *, now: datetime) -> None:
    """`purge_expired`, at most once per `PURGE_EVERY_S` in this process."""
    which = (str(engine.url), service)
    if time.monotonic() < _last_purge.get(which, float("-inf")) + PURGE_EVERY_S:
        return
    _last_purge[which] = time.monotonic()
    purge_expired(engine, service, now=now)
