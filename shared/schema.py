"""Tables the shared machinery owns: the event log and the bookkeeping of its readers.

Migrations in infra/migrations create them; this module is what the code queries.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, UserDefinedType

metadata = MetaData()

# SQLite only autoincrements an INTEGER PRIMARY KEY (the rowid); PostgreSQL wants BIGINT.
Position = BigInteger().with_variant(Integer(), "sqlite")
Json = JSON().with_variant(JSONB(), "postgresql")


class UtcDateTime(TypeDecorator[datetime]):
    """An instant: written from an aware datetime, always read back aware, in UTC.

    PostgreSQL's timestamptz does this by itself; SQLite stores text without an offset and
    hands back naive datetimes. One column type instead of an ``aware()`` call wherever a
    row is read. A naive datetime is refused when written: it names no instant.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if isinstance(value, datetime):
            if value.tzinfo is None or value.utcoffset() is None:
                raise ValueError("a naive datetime names no instant; pass an aware one")
            if dialect.name == "sqlite":
                return value.astimezone(UTC)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if isinstance(value, datetime) and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class _Xid8(UserDefinedType[int]):
    cache_ok = True

    def get_col_spec(self, **_kw: Any) -> str:
        return "xid8"


class TransactionId(TypeDecorator[int]):
    """A transaction id as a Python int: PostgreSQL's ``xid8`` (64 bits, epoch included, never
    wraps), a plain integer on SQLite, where it is always 0.

    psycopg has no loader for xid8 and hands back its text; written as text, PostgreSQL
    converts it to the column's type.
    """

    impl = BigInteger
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        return dialect.type_descriptor(_Xid8() if dialect.name == "postgresql" else BigInteger())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return str(value) if value is not None and dialect.name == "postgresql" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        return int(value) if value is not None else None


# The log. `xid` is the id of the transaction that appended the event (PostgreSQL: default
# pg_current_xact_id(); SQLite: 0): tailing readers follow (xid, position), see
# shared.eventstore. Migrations 0001 and 0003 create it.
events = Table(
    "events",
    metadata,
    Column("position", Position, primary_key=True, autoincrement=True),
    Column("id", Uuid(), nullable=False, unique=True),
    Column("stream_id", String(200), nullable=False),
    Column("stream_version", Integer, nullable=False),
    Column("category", String(64), nullable=False),
    Column("type", String(100), nullable=False),
    Column("schema_version", Integer, nullable=False),
    Column("data", Json, nullable=False),
    Column("tenant_id", String(64)),
    Column("correlation_id", String(64)),
    Column("causation_id", String(64)),
    Column("actor", String(200)),
    Column("occurred_at", UtcDateTime(), nullable=False),
    Column("recorded_at", UtcDateTime(), nullable=False),
    Column("xid", TransactionId(), nullable=False),
    UniqueConstraint("stream_id", "stream_version", name="events_stream_version_key"),
    Index("events_category_position", "category", "position"),
    Index("events_tenant_position", "tenant_id", "position"),
    Index("events_xid_position", "xid", "position").ddl_if(dialect="postgresql"),
)

# Where each tailing reader (relay, projection runner) has got to in the log: the event it
# read last, by position and by the transaction that appended it (its place in the feed).
checkpoints = Table(
    "checkpoints",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("position", BigInteger, nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("xid", TransactionId(), nullable=False),
)

# Which bus events a consuming component has applied: written in the handler's own
# transaction, so a redelivered message is recognised and changes nothing.
processed_events = Table(
    "processed_events",
    metadata,
    Column("component", String(100), primary_key=True),
    Column("event_id", Uuid(), primary_key=True),
    Column("stream_id", String(200), nullable=False),
    Column("stream_version", Integer, nullable=False),
    Column("processed_at", UtcDateTime(), nullable=False),
    # The oldest rows of a component first: what it forgets past the dedup window.
    Index("processed_events_component_age", "component", "processed_at"),
)

# Messages a consumer gave up on, with the reason; also published to the dead-letter queue.
dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", Position, primary_key=True, autoincrement=True),
    Column("component", String(100), nullable=False),
    Column("event_id", String(64)),
    Column("event_type", String(100)),
    Column("reason", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("headers", Json),
    Column("attempts", Integer, nullable=False),
    Column("failed_at", UtcDateTime(), nullable=False),
    Column("requeued_at", UtcDateTime()),
)

# Members' data keys (shared.keyring): one per (tenant, member), wrapped by the master key.
# A destroyed key keeps its row, without the key: the member's erasure, which also fences
# off any new key for that member.
keyring = Table(
    "keyring",
    metadata,
    Column("key_id", Uuid(), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("member_id", String(128), nullable=False),
    Column("wrapped_key", Text),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("destroyed_at", UtcDateTime()),
    UniqueConstraint("tenant_id", "member_id", name="keyring_member"),
)
