"""Rebuild the check-in read models aside and swap them in (`nocontact checkin rebuild`).

The shared lock-based `rebuild` replays event by event (one read and one write each) while
holding the store's append lock: every service sharing the store stops appending for the
whole replay. Here the replay is a fold in memory:

1. fill (no lock): read the feed up to a settled cursor P in big batches, only this service's own
   events (`OWN_EVENTS`) and only the fields the folds need; fold the day rows and the
   settings rows in dicts with the same merge rules as the inline path (`merge_check_in`,
   `merge_settings`) and each commitment's decision state with THE fold
   (`domain.StateFold`); compute every state row with the same pure function as the
   commands (`snapshot_values`); bulk-insert all into the shadow tables;
2. catch up (no lock) on what was appended meanwhile, a few times, while the gap is big;
3. final (append lock + the live tables locked, see `shared.projection.lock_for_swap`):
   apply the last events, re-project the state rows whose inputs moved since the fill (their
   stream, their tenant's settings, their commitment row as the inbox keeps it, or their
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
from services.checkin.domain import (
    DAY_EVENT_TYPES,
    SETTINGS_UPDATED,
    STREAM_CATEGORY,
    CommitmentState,
    KnownCommitment,
    StateFold,
    TenantSettings,
)
from services.checkin.members import erased
from services.checkin.projections import (
    PAUSE_EVENT_TYPES,
    Removed,
    merge_check_in,
    merge_pause,
    merge_settings,
    snapshot_values,
)
from services.checkin.queries import commitment_from_row
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
    """The columns of a log row the folds read (a RecordedEvent without the rest)."""

    type: str
    position: int
    stream_version: int
    data: dict[str, Any]
    tenant_id: str | None
    recorded_at: datetime


_DATA = events.c.data
# The fields picked out by the database (->> / json_extract, in C) rather than the whole
# document decoded in Python: reading is most of a rebuild's time.
_STREAM_COLUMNS = (
    events.c.type,
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
    _DATA["milestone"].as_integer(),
    _DATA["run_started_on"].as_string(),
    _DATA["reasons"].as_json(),
    # Between check-ins: what the fold reads of contact on a kept day, pauses and urges.
    _DATA["contact_attempts"].as_json(),
    _DATA["necessary_contact"].as_json(),
    _DATA["pause_id"].as_string(),
    _DATA["from"].as_string(),
    _DATA["to"].as_string(),
    _DATA["urge_id"].as_string(),
    _DATA["at"].as_string(),
    _DATA["intensity"].as_integer(),
    _DATA["reason"].as_string(),
)


# The ranges read are final (up to a settled cursor, or under the append lock), so they are
# read in position order, paged by position: within a stream that is version order.
def _read_stream_events(conn: Connection, after: int, within: ColumnElement[bool], limit: int | None) -> list[_Event]:
    """Every event of the check-in streams (the category, not a list of types: a state's
    version counts every event of its stream)."""
    query = (
        select(*_STREAM_COLUMNS)
        .where(events.c.position > after, within, events.c.category == STREAM_CATEGORY)
        .order_by(events.c.position)
        .limit(limit)
    )
    return [
        _Event(type_, position, version, {
            "commitment_id": cid, "member_id": member, "date": day, "outcome": outcome, "urge": urge,
            "mood": mood, "slip": {"channel": channel, "initiated_by": by} if channel else None, "note": note,
            "milestone": milestone, "run_started_on": run_started_on, "reasons": reasons,
            "contact_attempts": attempts, "necessary_contact": necessary, "pause_id": pause_id, "from": first,
            "to": last, "urge_id": urge_id, "at": at, "intensity": intensity, "reason": reason,
        }, tenant_id, recorded_at)
        for (type_, position, version, tenant_id, recorded_at, cid, member, day, outcome, urge, mood, channel, by,
             note, milestone, run_started_on, reasons, attempts, necessary, pause_id, first, last, urge_id, at,
             intensity, reason) in conn.execute(query)
    ]


def _read_settings(conn: Connection, within: ColumnElement[bool]) -> list[_Event]:
    query = (
        select(events.c.position, events.c.stream_version, events.c.data, events.c.tenant_id, events.c.recorded_at)
        .where(within, events.c.type == SETTINGS_UPDATED)
        .order_by(events.c.position)
    )
    return [_Event(SETTINGS_UPDATED, *row) for row in conn.execute(query)]


def _chunks(rows: Sequence[dict[str, Any]], size: int) -> Iterator[Sequence[dict[str, Any]]]:
    for start in range(0, len(rows), size):
        yield rows[start:start + size]


class CheckinRebuild:
    """Check-in rows, state rows, settings and pauses, folded in memory (an AsideProjection)."""

    name = NAME
    tables: Sequence[Table] = (tables.check_ins, tables.streaks, tables.settings, tables.pauses)

    def __init__(self, clock: Clock = utcnow) -> None:
        self.clock = clock
        self.days: dict[str, dict[date, dict[str, Any]]] = {}  # commitment -> day -> row
        self.settings_rows: dict[str, dict[str, Any]] = {}  # tenant -> row
        self.pauses: dict[str, dict[str, Any]] = {}  # pause -> row
        self.pauses_touched: set[str] = set()
        self.states: dict[str, CommitmentState] = {}  # commitment -> its stream folded
        self.commitments: dict[str, KnownCommitment] = {}  # as the inbox had them at the last projection
        self.projected_on: dict[str, date] = {}  # the local "today" each snapshot was computed for
        self._settings_cache: dict[str, TenantSettings] = {}
        self.erased: set[str] = set()  # commitments of erased members: their events are skipped

    # -- the folds ---------------------------------------------------------------------------

    def _fold(self, batch: Iterable[_Event], conn: Connection) -> tuple[set[tuple[str, date]], set[str], set[str]]:
        """Apply events in log order; returns the (commitment, day) rows touched, the
        commitments whose state moved and the tenants whose settings changed."""
        rows: set[tuple[str, date]] = set()
        tenants: set[str] = set()
        folds: dict[str, tuple[StateFold, int]] = {}
        for event in batch:
            if event.type == SETTINGS_UPDATED:
                tenant_id = event.data.get("tenant_id") or event.tenant_id
                merged_settings = merge_settings(self.settings_rows.get(tenant_id), event)
                if merged_settings is not None:
                    self.settings_rows[tenant_id] = merged_settings
                    self._settings_cache.pop(tenant_id, None)
                tenants.add(tenant_id)
                continue
            commitment_id = event.data["commitment_id"]
            if commitment_id is None or commitment_id in self.erased:
                continue  # not a commitment's stream (this service's erasure reports), or an erased member's
            fold = folds.get(commitment_id)
            if fold is None:
                state = self._state(conn, commitment_id, event)
                if state is None:
                    self.erased.add(commitment_id)
                    continue
                fold = (StateFold(state), 0)
            if event.type in DAY_EVENT_TYPES:
                days = self.days.setdefault(commitment_id, {})
                day = date.fromisoformat(event.data["date"])
                merged = merge_check_in(days.get(day), event)
                if isinstance(merged, Removed):
                    del days[day]
                elif merged is not None:
                    days[day] = merged
                rows.add((commitment_id, day))
            elif event.type in PAUSE_EVENT_TYPES:
                pause_id = event.data["pause_id"]
                merged_pause = merge_pause(self.pauses.get(pause_id), event)
                if merged_pause is not None:
                    self.pauses[pause_id] = merged_pause
                self.pauses_touched.add(pause_id)
            fold[0].add(event.type, event.data)
            folds[commitment_id] = (fold[0], event.stream_version)
        for commitment_id, (fold, version) in folds.items():
            self.states[commitment_id] = fold.state(version)
        return rows, set(folds), tenants

    def _state(self, conn: Connection, commitment_id: str, event: _Event) -> CommitmentState | None:
        """The commitment's state folded so far; None when its member was erased (the
        erasure took the commitment's row: nothing of theirs is brought back)."""
        state = self.states.get(commitment_id)
        if state is not None:
            return state
        commitment = self.commitments.get(commitment_id)
        if commitment is None:
            if erased(conn, event.tenant_id, event.data["member_id"]):
                return None
            # Created after the commitments were read: it has its row by now.
            self.commitments = self._load_commitments(conn)
            commitment = self.commitments[commitment_id]
        return CommitmentState(commitment.starts_on)

    def _tenant_settings(self, tenant_id: str) -> tuple[TenantSettings, int]:
        row = self.settings_rows.get(tenant_id)
        cached = self._settings_cache.get(tenant_id)
        if cached is None:
            cached = TenantSettings() if row is None else TenantSettings.from_json(row["data"])
            self._settings_cache[tenant_id] = cached
        return cached, 0 if row is None else row["version"]

    def _state_row(self, commitment: KnownCommitment, now: datetime) -> dict[str, Any]:
        state = self.states.get(commitment.commitment_id) or CommitmentState(commitment.starts_on)
        self.projected_on[commitment.commitment_id] = commitment.today(now)
        settings, settings_version = self._tenant_settings(commitment.tenant_id)
        return snapshot_values(commitment, state, settings, settings_version, now)

    @staticmethod
    def _load_commitments(conn: Connection) -> dict[str, KnownCommitment]:
        return {row.commitment_id: commitment_from_row(row) for row in conn.execute(select(tables.commitments))}

    # -- AsideProjection ---------------------------------------------------------------------

    def fill(self, engine: Engine, shadows: Mapping[str, Table], up_to: LogCursor) -> int:
        with read(engine) as conn:
            self.commitments = self._load_commitments(conn)
            within = feed_range(conn, START, up_to)
            batch = _read_settings(conn, within)
            self._fold(batch, conn)
        count = len(batch)
        position = 0
        while True:
            with read(engine) as conn:
                batch = _read_stream_events(conn, position, within, READ_BATCH)
                self._fold(batch, conn)
            if not batch:
                break
            count += len(batch)
            position = batch[-1].position
        now = self.clock()
        states = [self._state_row(commitment, now) for commitment in self.commitments.values()]
        check_ins = [row for days in self.days.values() for row in days.values()]
        self.pauses_touched.clear()
        for name, rows in ((tables.check_ins.name, check_ins), (tables.streaks.name, states),
                           (tables.settings.name, list(self.settings_rows.values())),
                           (tables.pauses.name, list(self.pauses.values()))):
            # One transaction per chunk: on SQLite each holds the write lock, so appends interleave.
            for chunk in _chunks(rows, WRITE_BATCH):
                with engine.begin() as conn:
                    bulk_insert(conn, shadows[name], chunk)
        return count

    def catch_up(
        self, conn: Connection, shadows: Mapping[str, Table], after: LogCursor, *, final: bool
    ) -> tuple[int, LogCursor]:
        up_to = head(conn, settled=not final)
        within = feed_range(conn, after, up_to)
        current = self._load_commitments(conn)
        self.commitments, before = current, self.commitments
        batch = _read_settings(conn, within) + _read_stream_events(conn, 0, within, None)
        touched, moved, tenants = self._fold(batch, conn)
        # Every touched key is rewritten, changed or not: a retried final pass (after a lock
        # timeout rolled back the previous one) must write what the first attempt folded.
        table = shadows[tables.check_ins.name]
        _delete(conn, table, ("commitment_id", "day"), [{"commitment_id": c, "day": d} for c, d in touched])
        _insert(conn, table, [self.days[c][d] for c, d in touched if d in self.days.get(c, {})])
        _replace(conn, shadows[tables.settings.name], ("tenant_id",),
                 [self.settings_rows[t] for t in tenants if t in self.settings_rows])
        # Touched since the fill, not only in this pass: a retried final pass rewrites them too.
        _replace(conn, shadows[tables.pauses.name], ("pause_id",),
                 [self.pauses[p] for p in self.pauses_touched if p in self.pauses])

        now = self.clock()
        stale = set(moved)
        for cid, commitment in current.items():
            # The inbox changed it (created, extended, ended, coach), its settings moved, or its
            # local day turned since its snapshot was computed.
            if (before.get(cid) != commitment or commitment.tenant_id in tenants
                    or self.projected_on.get(cid) != commitment.today(now)):
                stale.add(cid)
        _replace(conn, shadows[tables.streaks.name], ("commitment_id",),
                 [self._state_row(current[cid], now) for cid in stale if cid in current])
        # A member erased since the fill: the erasure took their commitments' rows, the
        # shadows lose what the fill folded of them.
        gone = [{"commitment_id": cid} for cid in before.keys() - current.keys()]
        for name in (tables.check_ins.name, tables.streaks.name, tables.pauses.name):
            _delete(conn, shadows[name], ("commitment_id",), gone)
        for cid in before.keys() - current.keys():
            self.days.pop(cid, None)
            self.states.pop(cid, None)
            self.erased.add(cid)
        for pause_id in [p for p, row in self.pauses.items() if row["commitment_id"] in self.erased]:
            del self.pauses[pause_id]
        return len(batch), up_to


def _delete(conn: Connection, table: Table, key: Sequence[str], keys: Sequence[Mapping[str, Any]]) -> None:
    where = and_(*(table.c[k] == bindparam(f"k_{k}") for k in key))
    for chunk in _chunks(keys, WRITE_BATCH):
        conn.execute(delete(table).where(where), [{f"k_{k}": row[k] for k in key} for row in chunk])


def _insert(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    for chunk in _chunks(rows, WRITE_BATCH):
        bulk_insert(conn, table, chunk)


def _replace(conn: Connection, table: Table, key: Sequence[str], rows: Iterable[dict[str, Any]]) -> None:
    """Delete-and-insert by key: plain SQL both dialects understand, in bulk."""
    rows = list(rows)
    if rows:
        _delete(conn, table, key, rows)
        _insert(conn, table, rows)


def rebuild_checkin(engine: Engine, clock: Clock = utcnow) -> AsideReport:
    """Rebuild check-in rows, state rows and settings aside and swap them in."""
    return rebuild_aside(engine, CheckinRebuild(clock))
