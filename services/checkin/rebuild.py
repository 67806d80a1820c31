"""Rebuild the check-in read models aside and swap them in (`nocontact checkin rebuild`).

The shared lock-based `rebuild` replays event by event (one read and one write each) while
holding the store's append lock: every service sharing the store stops appending for the
whole replay. Here the replay is a fold in memory:

1. fill (no lock): read the feed up to a settled cursor P in big batches, only the check-in and
   settings events and only the columns the fold needs; fold the day rows and the settings
   rows in dicts with the same merge rules as the inline path (`merge_check_in`,
   `merge_settings`); compute every commitment's streak snapshot with the same pure
   function (`streak_row`); bulk-insert all into the shadow tables (multi-row inserts);
2. catch up (no lock) on what was appended meanwhile, a few times, while the gap is big;
3. final (append lock + the live tables locked, see `shared.projection.lock_for_swap`):
   apply the last events, re-project the streaks whose inputs moved since the fill (their
   check-ins, their tenant's settings, their commitment row as the inbox keeps it, or their
   local "today"), swap the tables, set the checkpoint.

The result is what a full recompute at the moment of the swap would give, which is what
the inline path keeps up incrementally.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, Engine, Table, and_, bindparam, delete, select
from sqlalchemy.sql import ColumnElement

from services.checkin import tables
from services.checkin.domain import CHECK_IN_EVENT_TYPES, SETTINGS_UPDATED, KnownCommitment, TenantSettings
from services.checkin.projections import merge_check_in, merge_settings, streak_row
from services.checkin.queries import check_in_from_row, commitment_from_row
from shared.clock import Clock, utcnow
from shared.db import read
from shared.eventstore import START, LogCursor, feed_range, head
from shared.projection import AsideReport, bulk_insert, rebuild_aside
from shared.schema import events

NAME = "checkin.read_models"  # the checkpoint of the lock-based own_projection too
READ_BATCH = 20_000
WRITE_BATCH = 5_000


@dataclass(frozen=True)
class _Event:
    """The columns of a log row the fold reads (a RecordedEvent without the rest)."""

    position: int
    stream_version: int
    data: dict[str, Any]
    tenant_id: str | None
    recorded_at: datetime
    settings: bool = False  # settings.updated; else checkin.recorded / checkin.corrected


_DATA = events.c.data
# The check-in fields picked out by the database (->> / json_extract, in C) rather than
# the whole document decoded in Python: reading is most of a rebuild's time.
_CHECK_IN_COLUMNS = (
    events.c.position,
    events.c.stream_version,
    events.c.tenant_id,
    events.c.recorded_at,
    _DATA["commitment_id"].as_string(),
    _DATA["member_id"].as_string(),
    _DATA["date"].as_string(),
    _DATA["outcome"].as_string(),
    _DATA["urge"].as_integer(),
    _DATA["mood"].as_integer(),
    _DATA[("slip", "channel")].as_string(),
    _DATA[("slip", "initiated_by")].as_string(),
    _DATA["note"].as_string(),
)


# The ranges read are final (up to a settled cursor, or under the append lock), so they are
# read in position order, paged by position: within a stream that is version order.
def _read_check_ins(conn: Connection, after: int, within: ColumnElement[bool], limit: int | None) -> list[_Event]:
    query = (
        select(*_CHECK_IN_COLUMNS)
        .where(events.c.position > after, within, events.c.type.in_(CHECK_IN_EVENT_TYPES))
        .order_by(events.c.position)
        .limit(limit)
    )
    return [
        _Event(position, version, {
            "commitment_id": cid, "member_id": member, "date": day, "outcome": outcome, "urge": urge,
            "mood": mood, "slip": {"channel": channel, "initiated_by": by} if channel else None, "note": note,
        }, tenant_id, recorded_at)
        for (position, version, tenant_id, recorded_at, cid, member, day, outcome, urge, mood, channel, by, note)
        in conn.execute(query)
    ]


def _read_settings(conn: Connection, within: ColumnElement[bool]) -> list[_Event]:
    query = (
        select(events.c.position, events.c.stream_version, events.c.data, events.c.tenant_id, events.c.recorded_at)
        .where(within, events.c.type == SETTINGS_UPDATED)
        .order_by(events.c.position)
    )
    return [_Event(r[0], r[1], r[2], r[3], r[4], settings=True) for r in conn.execute(query)]


def _chunks(rows: Sequence[dict[str, Any]], size: int) -> Iterator[Sequence[dict[str, Any]]]:
    for start in range(0, len(rows), size):
        yield rows[start:start + size]


class CheckinRebuild:
    """Check-in rows, streak snapshots and settings, folded in memory (an AsideProjection)."""

    name = NAME
    tables: Sequence[Table] = (tables.check_ins, tables.streaks, tables.settings)

    def __init__(self, clock: Clock = utcnow) -> None:
        self.clock = clock
        self.days: dict[str, dict[date, dict[str, Any]]] = {}  # commitment -> day -> row
        self.settings_rows: dict[str, dict[str, Any]] = {}  # tenant -> row
        self.commitments: dict[str, KnownCommitment] = {}  # as the inbox had them at the last projection
        self.projected_on: dict[str, date] = {}  # the local "today" each snapshot was computed for
        self._settings_cache: dict[str, TenantSettings] = {}

    # -- the fold ----------------------------------------------------------------------------

    def _fold(self, event: _Event) -> tuple[str | None, str | None]:
        """Apply one event; returns (commitment touched, tenant whose settings changed)."""
        if event.settings:
            tenant_id = event.data.get("tenant_id") or event.tenant_id
            merged = merge_settings(self.settings_rows.get(tenant_id), event)
            if merged is not None:
                self.settings_rows[tenant_id] = merged
                self._settings_cache.pop(tenant_id, None)
            return None, tenant_id
        commitment_id = event.data["commitment_id"]
        days = self.days.setdefault(commitment_id, {})
        day = date.fromisoformat(event.data["date"])
        merged = merge_check_in(days.get(day), event)
        if merged is not None:
            days[day] = merged
        return commitment_id, None

    def _tenant_settings(self, tenant_id: str) -> TenantSettings:
        cached = self._settings_cache.get(tenant_id)
        if cached is None:
            row = self.settings_rows.get(tenant_id)
            cached = TenantSettings() if row is None else TenantSettings.from_json(row["data"])
            self._settings_cache[tenant_id] = cached
        return cached

    def _streak(self, commitment: KnownCommitment, now: datetime) -> dict[str, Any]:
        rows = self.days.get(commitment.commitment_id, {})
        reports = [check_in_from_row(row) for row in rows.values()]
        self.projected_on[commitment.commitment_id] = commitment.today(now)
        return streak_row(commitment, reports, self._tenant_settings(commitment.tenant_id), now)[1]

    @staticmethod
    def _load_commitments(conn: Connection) -> dict[str, KnownCommitment]:
        return {row.commitment_id: commitment_from_row(row) for row in conn.execute(select(tables.commitments))}

    # -- AsideProjection ---------------------------------------------------------------------

    def fill(self, engine: Engine, shadows: Mapping[str, Table], up_to: LogCursor) -> int:
        with read(engine) as conn:
            within = feed_range(conn, START, up_to)
            batch = _read_settings(conn, within)
        for event in batch:
            self._fold(event)
        count = len(batch)
        position = 0
        while True:
            with read(engine) as conn:
                batch = _read_check_ins(conn, position, within, READ_BATCH)
            if not batch:
                break
            for event in batch:
                self._fold(event)
            count += len(batch)
            position = batch[-1].position
        with read(engine) as conn:
            self.commitments = self._load_commitments(conn)
        now = self.clock()
        streaks = [self._streak(commitment, now) for commitment in self.commitments.values()]
        check_ins = [row for days in self.days.values() for row in days.values()]
        for name, rows in ((tables.check_ins.name, check_ins), (tables.streaks.name, streaks),
                           (tables.settings.name, list(self.settings_rows.values()))):
            # One transaction per chunk: on SQLite each holds the write lock, so appends interleave.
            for chunk in _chunks(rows, WRITE_BATCH):
                with engine.begin() as conn:
                    bulk_insert(conn, shadows[name], chunk)
        return count

    def catch_up(
        self, conn: Connection, shadows: Mapping[str, Table], after: LogCursor, *, final: bool
    ) -> tuple[int, LogCursor]:
        touched: set[tuple[str, date]] = set()
        tenants: set[str] = set()
        up_to = head(conn, settled=not final)
        within = feed_range(conn, after, up_to)
        batch = _read_settings(conn, within) + _read_check_ins(conn, 0, within, None)
        for event in batch:
            commitment_id, tenant_id = self._fold(event)
            if commitment_id is not None:
                touched.add((commitment_id, date.fromisoformat(event.data["date"])))
            if tenant_id is not None:
                tenants.add(tenant_id)
        # Every touched key is rewritten, changed or not: a retried final pass (after a lock
        # timeout rolled back the previous one) must write what the first attempt folded.
        _replace(conn, shadows[tables.check_ins.name], ("commitment_id", "day"),
                 [self.days[cid][day] for cid, day in touched])
        _replace(conn, shadows[tables.settings.name], ("tenant_id",),
                 [self.settings_rows[t] for t in tenants if t in self.settings_rows])

        now = self.clock()
        stale = {cid for cid, _ in touched}
        current = self._load_commitments(conn)
        for cid, commitment in current.items():
            # The inbox changed it (created, extended, ended, coach), its settings moved, or its
            # local day turned since its snapshot was computed.
            if (self.commitments.get(cid) != commitment or commitment.tenant_id in tenants
                    or self.projected_on.get(cid) != commitment.today(now)):
                stale.add(cid)
        self.commitments = current
        _replace(conn, shadows[tables.streaks.name], ("commitment_id",),
                 [self._streak(current[cid], now) for cid in stale if cid in current])
        return len(batch), up_to


def _replace(conn: Connection, table: Table, key: Sequence[str], rows: Iterable[dict[str, Any]]) -> None:
    """Delete-and-insert by key: plain SQL both dialects understand, in bulk."""
    rows = list(rows)
    if not rows:
        return
    where = and_(*(table.c[k] == bindparam(f"k_{k}") for k in key))
    for chunk in _chunks(rows, WRITE_BATCH):
        conn.execute(delete(table).where(where), [{f"k_{k}": row[k] for k in key} for row in chunk])
        bulk_insert(conn, table, chunk)


def rebuild_checkin(engine: Engine, clock: Clock = utcnow) -> AsideReport:
    """Rebuild check-in rows, streak snapshots and settings aside and swap them in."""
    return rebuild_aside(engine, CheckinRebuild(clock))
