"""Members' data keys: personal values sealed per member, unreadable once the member is erased.

Crypto-shredding (DESIGN.md, "Personal data in an immutable log"): every personal value is
encrypted, before it is appended, under a key of its own data subject (one per tenant and
member), and erasing the member destroys that key. The log keeps its order, ids, dates and
outcomes; the personal values in it, and in every copy of them, become unreadable.

- **Keys.** One random AES-256 key per (tenant, member), in the ``keyring`` table beside
  the event store, wrapped (sealed) by the master key (`shared.crypto`, bound to the key's
  id, tenant and member). Rotating the master key re-wraps these small keys and never
  touches an event (`rotate_master`).
- **Sealed values are self-describing strings**: ``pii:1:`` + base64url of (key id, event
  id, nonce, AES-GCM ciphertext and tag), the first two bound as associated data. A value
  copied into a read model, a queued webhook, a feed item or a dead letter therefore opens
  wherever it is read, with nothing but the keyring; a value moved into another event does
  not open as that event's (`Opener.open_all` with ``event_id``).
- **Reading an erased value gives the tombstone** ``None``, never an exception, so read
  models and rebuilds keep working for everyone else. Readers open with their tenant's
  keys only (`Opener`); a value that cannot be opened (altered, its key missing: a keyring
  that does not belong to this store) stays sealed and is logged: damage, not erasure.
- **Which fields are personal** is decided in one place per service (its ``personal``
  module); everything else stays in clear, so projections, rebuilds and metrics never
  need a key.
- **Writing for an erased member is refused** (`MemberErased`): the destroyed key's row
  stays as a fence, so no new key is ever made for that member (a fresh key would silently
  restart protection for someone who asked to be forgotten).

Keys are created by `ensure_key` in a transaction of their own, before a command's (a
command's first write must be its append: shared.commands; `creating_keys` runs a command
again once it made the key it lacked); a command reads the key in its own transaction
(`member_key`, never cached, so it sees a destruction that committed before it). Readers
open values through an `Opener`, which reads the keys it lacks in one query and keeps
unwrapped keys in a per-process cache for at most ``NOCONTACT_KEYRING_CACHE_TTL_S``
(default 1 s, at most 5 s, 0: no cache). That is the bound on erasure: a key destroyed at
T opens in no process after T + TTL (``member.erased`` is recorded only after it, see
services.commitment.members.consumers).
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, NamedTuple, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Connection, Engine, bindparam, select, update

from shared import config, crypto
from shared.db import DriverSelect, insert_new
from shared.errors import Conflict
from shared.events import NewEvent
from shared.schema import keyring

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The prefix of a sealed personal value, with its format version.
PREFIX = "pii:1:"
#: What an erased value reads as.
TOMBSTONE = None

_AAD = b"nocontact.pii:1:"
_UUID_BYTES = 16
_NONCE_BYTES = 12
_TAG_BYTES = 16
_HEADER_BYTES = 2 * _UUID_BYTES
KEY_BYTES = 32

DEFAULT_CACHE_TTL_S = 1.0
MAX_CACHE_TTL_S = 5.0


class MemberErased(Conflict):
    """Nothing personal may be written for a member whose data was erased (HTTP 409)."""

    def __init__(self) -> None:
        super().__init__("the member's data was erased: nothing personal can be recorded for them")


class KeyMissing(RuntimeError):
    """A member a command seals for has no key yet (`creating_keys` makes it)."""

    def __init__(self, message: str, tenant_id: str, member_id: str) -> None:
        super().__init__(message)
        self.tenant_id = tenant_id
        self.member_id = member_id


@config.setting
def cache_ttl_s() -> float:
    """NOCONTACT_KEYRING_CACHE_TTL_S: how long a process keeps an unwrapped key (0-5 s; 0:
    no cache). The bound on when an erasure holds everywhere, so a value above it is
    refused (shared.config), not cut down quietly."""
    return config.number("NOCONTACT_KEYRING_CACHE_TTL_S", DEFAULT_CACHE_TTL_S, minimum=0, maximum=MAX_CACHE_TTL_S)


def is_sealed(value: object) -> bool:
    """True for a string in the sealed form (whether or not a key of this keyring opens it)."""
    return isinstance(value, str) and value.startswith(PREFIX)


# -- the sealed form ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Sealed:
    """A parsed sealed value: whose key, which event, and the ciphertext."""

    key_id: uuid.UUID
    event_id: uuid.UUID
    header: bytes
    nonce: bytes
    ciphertext: bytes

    @classmethod
    def parse(cls, value: str) -> Sealed | None:
        """The parts of `value`, or None when it is not in the sealed form at all."""
        if not is_sealed(value):
            return None
        try:
            raw = base64.urlsafe_b64decode(value[len(PREFIX):].encode("ascii"))
        except (binascii.Error, ValueError, UnicodeEncodeError):
            return None
        if len(raw) < _HEADER_BYTES + _NONCE_BYTES + _TAG_BYTES:
            return None
        header = raw[:_HEADER_BYTES]
        return cls(
            key_id=uuid.UUID(bytes=header[:_UUID_BYTES]),
            event_id=uuid.UUID(bytes=header[_UUID_BYTES:]),
            header=header,
            nonce=raw[_HEADER_BYTES:_HEADER_BYTES + _NONCE_BYTES],
            ciphertext=raw[_HEADER_BYTES + _NONCE_BYTES:],
        )

    def open(self, cipher: AESGCM) -> str:
        try:
            return cipher.decrypt(self.nonce, self.ciphertext, _AAD + self.header).decode()
        except InvalidTag:
            raise crypto.Unsealable("a personal value was altered, or moved from its event") from None


@dataclass(frozen=True)
class DataKey:
    """A member's data key, unwrapped: it seals that member's personal values."""

    key_id: uuid.UUID
    tenant_id: str
    member_id: str
    cipher: AESGCM = field(repr=False, compare=False)

    def seal(self, value: str, event_id: uuid.UUID) -> str:
        """`value` sealed for the event `event_id` (the event that carries it first)."""
        header = self.key_id.bytes + event_id.bytes
        nonce = os.urandom(_NONCE_BYTES)
        ciphertext = self.cipher.encrypt(nonce, value.encode(), _AAD + header)
        return PREFIX + base64.urlsafe_b64encode(header + nonce + ciphertext).decode("ascii")


def _wrap_associated_data(key_id: uuid.UUID, tenant_id: str, member_id: str) -> str:
    return f"keyring:{key_id}:{tenant_id}:{member_id}"


def _wrap(key: bytes, key_id: uuid.UUID, tenant_id: str, member_id: str) -> str:
    """The key sealed under the master key, as text (`shared.crypto.seal_text` of its base64)."""
    return crypto.seal_text(base64.b64encode(key).decode("ascii"), _wrap_associated_data(key_id, tenant_id, member_id))


def _unwrap(row: Any) -> DataKey:
    # Commands read the row every time (to see a destruction), but the unwrapped key may come
    # from the per-process cache: it lives there no longer than any reader's copy (the TTL
    # `member.erased` waits for), and unwrapping again would only cost the master key's AES.
    cached = CACHE.get(row.key_id)
    if cached is not None and cached.cipher is not None:
        return DataKey(row.key_id, row.tenant_id, row.member_id, cached.cipher)
    encoded = crypto.unseal_text(row.wrapped_key, _wrap_associated_data(row.key_id, row.tenant_id, row.member_id))
    key = DataKey(row.key_id, row.tenant_id, row.member_id, AESGCM(base64.b64decode(encoded)))
    CACHE.put(row.key_id, _Entry(row.tenant_id, key.cipher))
    return key


# -- the per-process cache -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    """A key as readers need it: whose tenant, and the cipher (None: destroyed)."""

    tenant_id: str
    cipher: AESGCM | None = field(repr=False)


class _KeyCache:
    """Unwrapped keys (or "destroyed") by key id, each kept for the TTL read when stored."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[uuid.UUID, tuple[float, _Entry]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key_id: uuid.UUID) -> _Entry | None:
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(key_id)
            if entry is None:
                return None
            if entry[0] <= now:
                del self._entries[key_id]
                return None
            return entry[1]

    def put(self, key_id: uuid.UUID, entry: _Entry) -> None:
        ttl = cache_ttl_s()
        if ttl <= 0:
            return
        with self._lock:
            self._entries[key_id] = (time.monotonic() + ttl, entry)
            self._entries.move_to_end(key_id)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def forget(self, key_ids: Iterable[uuid.UUID]) -> None:
        with self._lock:
            for key_id in key_ids:
                self._entries.pop(key_id, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


CACHE = _KeyCache()


# -- keys: create, read, destroy -----------------------------------------------------------------


def _insert_unless_present(conn: Connection, values: Mapping[str, Any]) -> None:
    conn.execute(insert_new(conn.dialect.name, keyring, "tenant_id", "member_id").values(**values))


def _member_row(conn: Connection, tenant_id: str, member_id: str) -> Any:
    return conn.execute(
        select(keyring).where(keyring.c.tenant_id == tenant_id, keyring.c.member_id == member_id)
    ).first()


def ensure_key(engine: Engine, tenant_id: str, member_id: str, *, now: datetime) -> None:
    """Make sure the member has a key, in a transaction of its own (run it BEFORE the
    command that seals: a command's first write is its append). `MemberErased` when the
    member was erased. Two processes creating it at once agree on one key."""
    with engine.begin() as conn:
        row = _member_row(conn, tenant_id, member_id)
        if row is None:
            key_id = uuid.uuid4()
            _insert_unless_present(conn, {
                "key_id": key_id,
                "tenant_id": tenant_id,
                "member_id": member_id,
                "wrapped_key": _wrap(AESGCM.generate_key(KEY_BYTES * 8), key_id, tenant_id, member_id),
                "created_at": now,
            })
            row = _member_row(conn, tenant_id, member_id)
    if row is None or row.wrapped_key is None:
        raise MemberErased()


def member_key(conn: Connection, tenant_id: str, member_id: str) -> DataKey:
    """The member's key, read in the caller's transaction (never from the cache: a command
    must see a destruction that committed before it). A read, so it may precede the append.
    `MemberErased` once destroyed; `KeyMissing` when `ensure_key` was not run."""
    return key_of_row(_member_row(conn, tenant_id, member_id), tenant_id, member_id)


class KeyRow(NamedTuple):
    """A keyring row as `key_of_row` needs it (read joined to a command's other inputs)."""

    key_id: uuid.UUID
    tenant_id: str
    member_id: str
    wrapped_key: str | None


def key_of_row(row: Any, tenant_id: str, member_id: str) -> DataKey:
    """`member_key` from a keyring row the caller read in its transaction (None: no row),
    e.g. joined to the other inputs of its command to save a round trip."""
    if row is None:
        raise KeyMissing(f"no key for a member of tenant {tenant_id}", tenant_id, member_id)
    if row.wrapped_key is None:
        raise MemberErased()
    return _unwrap(row)


def creating_keys(engine: Engine, run: Callable[[], T], *, now: datetime) -> T:
    """Run a command that seals; if a member it seals for has no key yet, make the key (a
    transaction of its own) and run the command again. The common case costs nothing: the
    key exists after a member's first personal value."""
    made: set[tuple[str, str]] = set()
    while True:
        try:
            return run()
        except KeyMissing as missing:
            wanted = (missing.tenant_id, missing.member_id)
            if wanted in made:
                raise
            made.add(wanted)
            ensure_key(engine, missing.tenant_id, missing.member_id, now=now)


def destroy(conn: Connection, tenant_id: str, member_id: str, *, now: datetime) -> None:
    """Destroy the member's key, or fence off a key for a member who had none: a write, so
    after the transaction's append. Idempotent. This process forgets the key at once;
    others within the cache TTL."""
    _insert_unless_present(conn, {
        "key_id": uuid.uuid4(), "tenant_id": tenant_id, "member_id": member_id,
        "wrapped_key": None, "created_at": now, "destroyed_at": now,
    })
    where = (keyring.c.tenant_id == tenant_id) & (keyring.c.member_id == member_id)
    conn.execute(update(keyring).where(where, keyring.c.destroyed_at.is_(None)).values(destroyed_at=now))
    conn.execute(update(keyring).where(where).values(wrapped_key=None))
    CACHE.forget(conn.execute(select(keyring.c.key_id).where(where)).scalars())


def destroyed_at(conn: Connection, tenant_id: str, member_id: str) -> datetime | None:
    row = _member_row(conn, tenant_id, member_id)
    return None if row is None else row.destroyed_at


def erased_members(conn: Connection, tenant_id: str, member_ids: Iterable[str]) -> set[str]:
    """Which of these members of the tenant were erased (their key destroyed)."""
    wanted = sorted(set(member_ids))
    if not wanted:
        return set()
    return {row.member_id for row in _ERASED_AMONG.all(conn, {"tenant_id": tenant_id, "member_ids": wanted})}


# Built once: every inbox batch asks, and building the statement and its cache key each
# time was a fifth of the notification inbox's CPU; on the driver on PostgreSQL.
_ERASED_AMONG = DriverSelect(select(keyring.c.member_id).where(
    keyring.c.tenant_id == bindparam("tenant_id"),
    keyring.c.member_id.in_(bindparam("member_ids", expanding=True)),
    keyring.c.wrapped_key.is_(None),
))


# -- sealing -------------------------------------------------------------------------------------

#: Paths of the personal values of each event type: dotted (``contact.label``), ``*`` for
#: every item of a list (``places.*.label``).
PersonalFields = Mapping[str, Sequence[str]]


def _at_path(value: Any, path: str, transform: Any) -> Any:
    """`value` with `transform` applied at `path` (dotted; ``*`` is every item of a list),
    copied along the way; absent or null values are left alone."""
    if value is None:
        return None
    if not path:
        return transform(value)
    head, _, rest = path.partition(".")
    if head == "*":
        return [_at_path(item, rest, transform) for item in value] if isinstance(value, list) else value
    if not isinstance(value, dict) or head not in value:
        return value
    return {**value, head: _at_path(value[head], rest, transform)}


def seal_event(key: DataKey, event: NewEvent, paths: Sequence[str]) -> NewEvent:
    """The event with its personal values (at `paths`; absent or null ones stay as they
    are) sealed under the member's key, bound to the event's id."""
    data = event.data
    for path in paths:
        # Whatever the value looks like: a member's text shaped like a sealed value is sealed too.
        data = _at_path(data, path, lambda value: key.seal(str(value), event.id))
    return replace(event, data=data)


def seal_events(conn: Connection, tenant_id: str, events: Sequence[NewEvent], fields: PersonalFields,
                known: Mapping[str, DataKey] | None = None) -> list[NewEvent]:
    """`events` with the personal values of their types (`fields`) sealed under the key of
    the member each names (``data["member_id"]``), read in the caller's transaction
    (`known`: keys the caller already read in it, by member)."""
    keys: dict[str, DataKey] = dict(known or {})
    sealed = []
    for event in events:
        paths = fields.get(event.type)
        if not paths:
            sealed.append(event)
            continue
        member_id = str(event.data["member_id"])
        if member_id not in keys:
            keys[member_id] = member_key(conn, tenant_id, member_id)
        sealed.append(seal_event(keys[member_id], event, paths))
    return sealed


# -- opening -------------------------------------------------------------------------------------


class Opener:
    """Opens sealed values where they are read: plaintext, or the tombstone once erased.

    Bound to the reader's tenant: only keys of that tenant open, so a sealed value copied
    into another tenant's data (a member id chosen to look like one) opens nowhere there.
    One per transaction (or request): the keys it lacks are read in one query (`prefetch`)
    on its connection, then served from the per-process cache for the TTL.

    Never raises: anything that is not a sealed value of this tenant's keyring passes
    through unchanged (values written before encryption existed, ids that merely look
    sealed); one that cannot be opened (altered, moved from its event, its key missing) is
    left sealed, with a warning in the log.
    """

    def __init__(self, conn: Connection, tenant_id: str) -> None:
        self.conn = conn
        self.tenant_id = tenant_id

    def prefetch(self, values: Iterable[Any]) -> None:
        """Read, in one query, the keys of these sealed values (and of those nested in
        them) that the cache does not hold."""
        wanted: set[uuid.UUID] = set()
        for value in values:
            for text in _strings(value):
                parsed = Sealed.parse(text)
                if parsed is not None and CACHE.get(parsed.key_id) is None:
                    wanted.add(parsed.key_id)
        if wanted:
            self._load(wanted)

    def _load(self, key_ids: set[uuid.UUID]) -> dict[uuid.UUID, _Entry]:
        rows = self.conn.execute(select(keyring).where(keyring.c.key_id.in_(sorted(key_ids)))).all()
        found: dict[uuid.UUID, _Entry] = {}
        for row in rows:
            found[row.key_id] = _Entry(row.tenant_id, None if row.wrapped_key is None else _unwrap(row).cipher)
            CACHE.put(row.key_id, found[row.key_id])
        return found

    def _entry(self, key_id: uuid.UUID) -> _Entry | None:
        return CACHE.get(key_id) or self._load({key_id}).get(key_id)

    def open(self, value: Any, *, event_id: uuid.UUID | None = None) -> Any:
        """The plaintext of a sealed value; the tombstone once its key is destroyed; any
        other value as it is. With `event_id`, a value sealed for another event stays sealed."""
        if not isinstance(value, str):
            return value
        parsed = Sealed.parse(value)
        if parsed is None:
            return value
        entry = self._entry(parsed.key_id)
        if entry is None or entry.tenant_id != self.tenant_id:
            return value  # not a key of this tenant: an id that looks sealed, or a foreign copy
        if entry.cipher is None:
            return TOMBSTONE
        if event_id is not None and parsed.event_id != event_id:
            log.warning("a personal value sealed for event %s found in event %s: left sealed", parsed.event_id,
                        event_id)
            return value
        try:
            return parsed.open(entry.cipher)
        except crypto.Unsealable as error:
            log.warning("a personal value under key %s cannot be opened (%s): left sealed", parsed.key_id, error)
            return value

    def open_all(self, value: Any, *, event_id: uuid.UUID | None = None) -> Any:
        """`value` (a JSON document) with every sealed string in it opened."""
        if isinstance(value, dict):
            return {key: self.open_all(item, event_id=event_id) for key, item in value.items()}
        if isinstance(value, list):
            return [self.open_all(item, event_id=event_id) for item in value]
        return self.open(value, event_id=event_id)


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


# -- master-key rotation -------------------------------------------------------------------------


@dataclass(frozen=True)
class Rotation:
    rewrapped: int
    already_current: int


def rotate_master(engine: Engine, *, retired: Sequence[str] = (), batch_size: int = 500) -> Rotation:
    """Re-wrap every live key under the current master key (opened with the key that
    wrapped it: NOCONTACT_MASTER_KEY_PREVIOUS or one of `retired`). Events are not touched.

    Safe while the services run and to run again: each row is swapped only if it still
    holds what was read (a key destroyed meanwhile stays destroyed)."""
    rewrapped = already = 0
    after: uuid.UUID | None = None
    while True:
        with engine.begin() as conn:
            query = select(keyring).where(keyring.c.wrapped_key.is_not(None)).order_by(keyring.c.key_id)
            if after is not None:
                query = query.where(keyring.c.key_id > after)
            rows = conn.execute(query.limit(batch_size)).all()
            for row in rows:
                if crypto.is_current(row.wrapped_key):
                    already += 1
                    continue
                associated_data = _wrap_associated_data(row.key_id, row.tenant_id, row.member_id)
                fresh = crypto.reseal_text(row.wrapped_key, associated_data, retired=retired)
                conn.execute(
                    update(keyring)
                    .where(keyring.c.key_id == row.key_id, keyring.c.wrapped_key == row.wrapped_key)
                    .values(wrapped_key=fresh)
                )
                rewrapped += 1
        if len(rows) < batch_size:
            return Rotation(rewrapped, already)
        after = rows[-1].key_id

