"""Read-model queries of the check-in service: what the API and the commands read.

The streak of a commitment is served from its snapshot (``checkin_streaks``), which every
command, the scheduler (when the commitment's local day ends) and a settings change keep
current. A snapshot whose ``as_of`` is not the commitment's today (the scheduler lags, or
the snapshot was taken at another instant) is not served: the streak is then computed
from the check-in rows, as the snapshot itself would be.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, Select, and_, bindparam, func, select

from services.checkin import tables
from services.checkin.domain import (
    CheckIn,
    CommitmentState,
    Initiator,
    KnownCommitment,
    LoggedUrge,
    Outcome,
    Slip,
    Streak,
    TenantSettings,
    UrgeMark,
    contact_of,
    counted_through,
    standing_risk,
    streak_of,
)
from shared import keyring
from shared.calendar import date_range, day_bounds
from shared.db import DriverSelect
from shared.eventstore import read_stream
from shared.paging import decode_cursor, encode_cursor

# What a coach's client list shows of each commitment.
DAYS_SHOWN = 30
URGES_SHOWN = 7


# -- commitments and settings ---------------------------------------------------------------


def commitment_from_row(row: Row[Any]) -> KnownCommitment:
    return KnownCommitment(
        commitment_id=row.commitment_id,
        tenant_id=row.tenant_id,
        member_id=row.member_id,
        coach_id=row.coach_id,
        contact_label=row.contact_label,
        relationship=row.relationship,
        channels=tuple(row.channels),
        timezone=row.timezone,
        starts_on=row.starts_on,
        ends_on=row.ends_on,
        recorded_status=row.status,
        ended_on=row.ended_on,
        created_at=row.created_at,
        exception_count=len((row.boundaries or {}).get("exceptions") or ()),
    )


def load_commitment(conn: Connection, commitment_id: str) -> KnownCommitment | None:
    row = conn.execute(select(tables.commitments).where(tables.commitments.c.commitment_id == commitment_id)).first()
    return commitment_from_row(row) if row else None


def load_settings(conn: Connection, tenant_id: str) -> tuple[TenantSettings, int]:
    """The tenant's settings and their stream version (defaults at version 0)."""
    table = tables.settings
    row = conn.execute(select(table.c.data, table.c.version).where(table.c.tenant_id == tenant_id)).first()
    if row is None:
        return TenantSettings(), 0
    return TenantSettings.from_json(row.data), row.version


# -- what a command decides from -------------------------------------------------------------


@dataclass(frozen=True)
class StoredState:
    """The state row as the command loaded it: what its write is conditioned on."""

    exists: bool
    version: int | None  # None: the row holds no state yet (see tables.streaks)
    settings_version: int


@dataclass(frozen=True)
class CommandInputs:
    """Everything a command on one commitment decides from, loaded in one statement."""

    commitment: KnownCommitment
    settings: TenantSettings
    settings_version: int
    state: CommitmentState | None  # None: not built yet, the caller folds the stream
    stored: StoredState
    day: Mapping[str, Any] | None  # the check-in row of the day asked for, if it has one
    # The member's keyring row (None: no key yet), read with the rest so that sealing a
    # note costs no round trip of its own (services.checkin.personal.seal).
    key: keyring.KeyRow | None = None


_STATE = tables.streaks
_SETTINGS = tables.settings
_DAY = tables.check_ins
_STATE_COLUMNS = (
    _STATE.c.commitment_id.label("st_present"),
    _STATE.c.version.label("st_version"),
    _STATE.c.settings_version.label("st_settings_version"),
    _STATE.c.days.label("st_days"),
    _STATE.c.urges.label("st_urges"),
    _STATE.c.milestones_announced.label("st_milestones"),
    _STATE.c.missed_told.label("st_missed"),
    _STATE.c.standing_announced.label("st_standing"),
    _STATE.c.pauses.label("st_pauses"),
    _STATE.c.urge_log.label("st_urge_log"),
    _STATE.c.reminded_on.label("st_reminded_on"),
)
_DAY_COLUMNS = tuple(column.label(f"d_{column.name}") for column in _DAY.c)
_KEYRING = keyring.keyring
_KEY_COLUMNS = (_KEYRING.c.key_id.label("k_key_id"), _KEYRING.c.wrapped_key.label("k_wrapped_key"))
_JOINED = (
    tables.commitments
    .outerjoin(_SETTINGS, _SETTINGS.c.tenant_id == tables.commitments.c.tenant_id)
    .outerjoin(_STATE, _STATE.c.commitment_id == tables.commitments.c.commitment_id)
    .outerjoin(_KEYRING, and_(_KEYRING.c.tenant_id == tables.commitments.c.tenant_id,
                              _KEYRING.c.member_id == tables.commitments.c.member_id))
)
_INPUTS = select(tables.commitments, _SETTINGS.c.data.label("s_data"), _SETTINGS.c.version.label("s_version"),
                 *_STATE_COLUMNS, *_KEY_COLUMNS).select_from(_JOINED)
_INPUTS_WITH_DAY = select(
    tables.commitments, _SETTINGS.c.data.label("s_data"), _SETTINGS.c.version.label("s_version"), *_STATE_COLUMNS,
    *_KEY_COLUMNS, *_DAY_COLUMNS,
).select_from(_JOINED.outerjoin(_DAY, and_(_DAY.c.commitment_id == tables.commitments.c.commitment_id,
                                           _DAY.c.day == bindparam("day", type_=_DAY.c.day.type))))


def state_from_row(row: Any, starts_on: date) -> CommitmentState | None:
    """The decision state a ``st_``-labelled row holds; None when it holds none yet."""
    if row.st_version is None:
        return None
    return CommitmentState(
        starts_on=starts_on,
        version=row.st_version,
        days=row.st_days,
        urges=row.st_urges,
        milestones=frozenset((threshold, date.fromisoformat(day)) for threshold, day in row.st_milestones),
        missed=frozenset(date.fromisoformat(day) for day in row.st_missed),
        standing=tuple(row.st_standing),
        pauses=frozenset((pause_id, date.fromisoformat(first), date.fromisoformat(last))
                         for pause_id, first, last in row.st_pauses),
        urge_log=tuple(UrgeMark.from_json(mark) for mark in row.st_urge_log),
        reminded_on=row.st_reminded_on,
    )


# A tenant's settings at a version never change: parsed once per process, not per command.
_SETTINGS_AT: dict[tuple[str, int], TenantSettings] = {}
_SETTINGS_KEPT = 10_000


def _settings_at(tenant_id: str, version: int, data: Mapping[str, Any] | None) -> TenantSettings:
    key = (tenant_id, version)
    settings = _SETTINGS_AT.get(key)
    if settings is None:
        settings = TenantSettings() if data is None else TenantSettings.from_json(dict(data))
        if len(_SETTINGS_AT) >= _SETTINGS_KEPT:
            _SETTINGS_AT.clear()
        _SETTINGS_AT[key] = settings
    return settings


def _inputs(row: Any, day: Mapping[str, Any] | None) -> CommandInputs:
    commitment = commitment_from_row(row)
    settings_version = row.s_version or 0
    settings = _settings_at(commitment.tenant_id, settings_version, row.s_data)
    stored = StoredState(row.st_present is not None, row.st_version, row.st_settings_version or 0)
    key = None if row.k_key_id is None else keyring.KeyRow(row.k_key_id, commitment.tenant_id, commitment.member_id,
                                                           row.k_wrapped_key)
    return CommandInputs(commitment, settings, settings_version, state_from_row(row, commitment.starts_on), stored,
                         day, key)


def command_inputs(conn: Connection, commitment_id: str, day: date | None = None) -> CommandInputs | None:
    """The commitment, its tenant's settings, its state row and (with `day`) that day's
    check-in row: one statement. None when the commitment is unknown."""
    if day is None:
        row = _INPUTS_OF.first(conn, {"commitment_id": commitment_id})
        return None if row is None else _inputs(row, None)
    row = _INPUTS_WITH_DAY_OF.first(conn, {"commitment_id": commitment_id, "day": day})
    if row is None:
        return None
    day_row = None if row.d_commitment_id is None else {c.name: getattr(row, f"d_{c.name}") for c in _DAY.c}
    return _inputs(row, day_row)


_BY_ID = tables.commitments.c.commitment_id == bindparam("commitment_id")
# Every check-in command's first statement: on the driver (shared.db.DriverSelect).
_INPUTS_OF = DriverSelect(_INPUTS.where(_BY_ID))
_INPUTS_WITH_DAY_OF = DriverSelect(_INPUTS_WITH_DAY.where(_BY_ID))


def decision_state(conn: Connection, inputs: CommandInputs) -> CommitmentState:
    """The state the inputs hold, or, for a row not built yet, the commitment's stream folded
    (once: the command that decides on it writes it)."""
    if inputs.state is not None:
        return inputs.state
    commitment = inputs.commitment
    return CommitmentState.folded(commitment.starts_on, read_stream(conn, commitment.stream_id))


def tenant_inputs(conn: Connection, tenant_id: str) -> list[CommandInputs]:
    """`command_inputs` of every commitment of the tenant (one statement), oldest first."""
    query = _INPUTS.where(tables.commitments.c.tenant_id == tenant_id).order_by(
        tables.commitments.c.created_at, tables.commitments.c.commitment_id)
    return [_inputs(row, None) for row in conn.execute(query)]


# -- check-ins ---------------------------------------------------------------------------------


def check_in_rows(
    conn: Connection, commitment_id: str, first: date | None = None, last: date | None = None
) -> list[Row[Any]]:
    """The check-in rows of a commitment between `first` and `last` (inclusive), oldest first."""
    table = tables.check_ins
    query = select(table).where(table.c.commitment_id == commitment_id)
    if first is not None:
        query = query.where(table.c.day >= first)
    if last is not None:
        query = query.where(table.c.day <= last)
    return list(conn.execute(query.order_by(table.c.day)))


def check_in_row(conn: Connection, commitment_id: str, day: date) -> Row[Any] | None:
    rows = check_in_rows(conn, commitment_id, day, day)
    return rows[0] if rows else None


def check_in_from_row(row: Mapping[str, Any]) -> CheckIn:
    """The report a check-in row holds (a row's mapping, or the rebuild's row in memory)."""
    slip = Slip(row["slip_channel"], Initiator(row["slip_initiated_by"])) if row["slip_channel"] else None
    attempts, necessary = contact_of(row)
    return CheckIn(day=row["day"], outcome=Outcome(row["outcome"]), urge=row["urge"], mood=row["mood"],
                   slip=slip, note=row["note"], contact_attempts=attempts, necessary_contact=necessary)


def standing_reports(conn: Connection, commitment_id: str) -> list[CheckIn]:
    """The report standing for each reported day, oldest first."""
    return [check_in_from_row(row._mapping) for row in check_in_rows(conn, commitment_id)]


# -- streaks -----------------------------------------------------------------------------------


def current_streak(conn: Connection, commitment: KnownCommitment, settings: TenantSettings, now: datetime) -> Streak:
    """The streak as of today in the commitment's zone, computed from the check-in rows."""
    cid = commitment.commitment_id
    return _streak_of_rows(commitment, standing_reports(conn, cid), settings, now,
                           paused_days(conn, [cid]).get(cid, set()))


def _streak_of_rows(
    commitment: KnownCommitment, reports: Iterable[CheckIn], settings: TenantSettings, now: datetime,
    excused: set[date],
) -> Streak:
    reports = list(reports)
    return streak_of(commitment, {report.day: report.outcome for report in reports}, settings, commitment.today(now),
                     excused=excused, held_firm=[report.day for report in reports if report.contact_attempts])


def paused_days(conn: Connection, commitment_ids: list[str]) -> dict[str, set[date]]:
    """The days the pauses not cancelled cover, per commitment (the rows' view of
    `CommitmentState.paused_days`)."""
    table = tables.pauses
    found: dict[str, set[date]] = defaultdict(set)
    query = select(table.c.commitment_id, table.c.first_day, table.c.last_day).where(
        table.c.commitment_id.in_(commitment_ids), table.c.cancelled_at.is_(None))
    for row in conn.execute(query):
        found[row.commitment_id].update(date_range(row.first_day, row.last_day))
    return found


_SNAPSHOT_DAYS = ("as_of", "streak_started_on", "last_slip_on", "last_check_in_on")
_SNAPSHOT_FIGURES = (
    "policy",
    "current_days",
    "longest_days",
    "kept_days",
    "slipped_days",
    "unreported_days",
    "milestones_reached",
    "next_milestone",
    "excused_days",
    "held_firm_days",
)


def _iso(day: date | None) -> str | None:
    return None if day is None else day.isoformat()


def _snapshot_document(row: Row[Any], commitment: KnownCommitment) -> dict[str, Any]:
    """The streak document (`Streak.as_json`) of a current snapshot row."""
    document: dict[str, Any] = {"commitment_id": commitment.commitment_id}
    document.update({name: _iso(getattr(row, name)) for name in _SNAPSHOT_DAYS})
    document.update({name: getattr(row, name) for name in _SNAPSHOT_FIGURES})
    # A reported today is the only way today's report is the last one counted.
    through = counted_through(
        commitment.starts_on, commitment.last_day, row.as_of, today_reported=row.last_check_in_on == row.as_of
    )
    document["counted_through"] = _iso(through)
    return document


def _snapshots(
    conn: Connection, commitments: Iterable[KnownCommitment], now: datetime, where: Any
) -> dict[str, Row[Any]]:
    """The snapshot rows `where` selects that were taken on their commitment's today."""
    rows = {row.commitment_id: row for row in conn.execute(select(tables.streaks).where(where))}
    return {
        c.commitment_id: rows[c.commitment_id]
        for c in commitments
        if c.commitment_id in rows and rows[c.commitment_id].as_of == c.today(now)
    }


def streak_document(conn: Connection, commitment: KnownCommitment, now: datetime) -> dict[str, Any]:
    """GET .../streak: the snapshot while it is today's, else computed from the rows."""
    cid = commitment.commitment_id
    snapshot = _snapshots(conn, [commitment], now, tables.streaks.c.commitment_id == cid).get(cid)
    if snapshot is not None:
        return _snapshot_document(snapshot, commitment)
    settings, _ = load_settings(conn, commitment.tenant_id)
    return current_streak(conn, commitment, settings, now).as_json(cid)


# -- a coach's clients -------------------------------------------------------------------------


def coach_clients(conn: Connection, tenant_id: str, coach_id: str, now: datetime) -> list[dict[str, Any]]:
    """Each client of the coach, with each commitment's status, streak, last 30 days, recent
    urges and risk: a fixed number of queries however many clients (snapshots, the last
    30 days' rows, the last urges), plus the rows of commitments whose snapshot is not today's."""
    table = tables.commitments
    coached = select(table.c.commitment_id).where(table.c.tenant_id == tenant_id, table.c.coach_id == coach_id)
    commitments = [
        commitment_from_row(row)
        for row in conn.execute(
            select(table)
            .where(table.c.tenant_id == tenant_id, table.c.coach_id == coach_id)
            .order_by(table.c.member_id, table.c.created_at)
        )
    ]
    if not commitments:
        return []
    snapshots = _snapshots(conn, commitments, now, tables.streaks.c.commitment_id.in_(coached))
    windows = {c.commitment_id: _window(c, now) for c in commitments}
    outcomes = _outcomes_since(conn, coached, min(first for first, _ in windows.values()))
    urges = _recent_urges(conn, coached)
    paused = paused_days(conn, [c.commitment_id for c in commitments])
    stale = [c for c in commitments if c.commitment_id not in snapshots]
    recomputed = _recompute(conn, tenant_id, stale, now, paused) if stale else {}

    # Labels are sealed (shared.keyring); a coach reads them opened.
    labels = keyring.Opener(conn, tenant_id)
    labels.prefetch(c.contact_label for c in commitments)
    clients: dict[str, dict[str, Any]] = {}
    for commitment in commitments:
        cid = commitment.commitment_id
        if cid in snapshots:
            streak = _snapshot_document(snapshots[cid], commitment)
            last_check_in_on = snapshots[cid].last_check_in_on
            reasons = list(snapshots[cid].risk_reasons)
        else:
            computed, reasons = recomputed[cid]
            streak = computed.as_json(cid)
            last_check_in_on = computed.last_check_in_on
        entry = clients.setdefault(
            commitment.member_id,
            {"member_id": commitment.member_id, "at_risk": False, "reasons": [], "commitments": []},
        )
        entry["commitments"].append({
            "commitment_id": cid,
            "contact_label": labels.open(commitment.contact_label),
            "relationship": commitment.relationship,
            "status": str(commitment.status_at(now)),
            "streak": streak,
            "last_check_in_on": last_check_in_on,
            "last_30_days": _day_states(commitment, now, windows[cid], outcomes.get(cid, {}),
                                        paused.get(cid, set())),
            "recent_urges": urges.get(cid, []),
            "at_risk": bool(reasons),
            "reasons": reasons,
        })
        for reason in reasons:
            if reason not in entry["reasons"]:
                entry["reasons"].append(reason)
        entry["at_risk"] = bool(entry["reasons"])
    return list(clients.values())


def _window(commitment: KnownCommitment, now: datetime) -> tuple[date, date]:
    """The days a client list shows: the last 30 up to today (or the commitment's last day)."""
    today = commitment.today(now)
    last = min(today, commitment.last_day) if commitment.last_day else today
    return max(commitment.starts_on, today - timedelta(days=DAYS_SHOWN - 1)), last


def _day_states(
    commitment: KnownCommitment, now: datetime, window: tuple[date, date], outcomes: dict[date, str],
    excused: set[date],
) -> list[dict[str, Any]]:
    today = commitment.today(now)
    first, last = window
    states = []
    for offset in range((last - first).days + 1):
        day = first + timedelta(days=offset)
        outcome = outcomes.get(day)
        if outcome is None and day == today:
            continue  # today is not over: not yet unreported
        # A paused day nobody reported is excused, not unreported (a report stands over a pause).
        states.append({"date": day, "state": outcome or ("excused" if day in excused else "unreported")})
    return states


def _outcomes_since(conn: Connection, coached: Select[Any], first: date) -> dict[str, dict[date, str]]:
    table = tables.check_ins
    found: dict[str, dict[date, str]] = defaultdict(dict)
    query = select(table.c.commitment_id, table.c.day, table.c.outcome).where(
        table.c.commitment_id.in_(coached), table.c.day >= first
    )
    for row in conn.execute(query):
        found[row.commitment_id][row.day] = row.outcome
    return found


def _recent_urges(conn: Connection, coached: Select[Any]) -> dict[str, list[dict[str, Any]]]:
    """The last reported urges of each commitment (whatever their age), oldest first."""
    table = tables.check_ins
    ranked = (
        select(
            table.c.commitment_id,
            table.c.day,
            table.c.urge,
            func.row_number().over(partition_by=table.c.commitment_id, order_by=table.c.day.desc()).label("rank"),
        )
        .where(table.c.commitment_id.in_(coached), table.c.urge.is_not(None))
        .subquery()
    )
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    query = (
        select(ranked.c.commitment_id, ranked.c.day, ranked.c.urge)
        .where(ranked.c.rank <= URGES_SHOWN)
        .order_by(ranked.c.commitment_id, ranked.c.day)
    )
    for row in conn.execute(query):
        found[row.commitment_id].append({"date": row.day, "urge": row.urge})
    return found


def _recompute(
    conn: Connection, tenant_id: str, commitments: list[KnownCommitment], now: datetime,
    paused: Mapping[str, set[date]],
) -> dict[str, tuple[Streak, list[str]]]:
    """Streak and risk reasons of commitments without a current snapshot, from their rows."""
    settings, _ = load_settings(conn, tenant_id)
    reports: dict[str, list[CheckIn]] = defaultdict(list)
    table = tables.check_ins
    query = select(table).where(table.c.commitment_id.in_([c.commitment_id for c in commitments]))
    for row in conn.execute(query.order_by(table.c.day)):
        reports[row.commitment_id].append(check_in_from_row(row._mapping))
    logged = _logged_urges(conn, commitments, now - timedelta(days=settings.at_risk.urge_log_window_days + 1))
    result = {}
    for commitment in commitments:
        standing = reports[commitment.commitment_id]
        excused = paused.get(commitment.commitment_id, set())
        streak = _streak_of_rows(commitment, standing, settings, now, excused)
        assessment = standing_risk(commitment, standing, settings, now, excused=excused,
                                   urges=logged[commitment.commitment_id])
        result[commitment.commitment_id] = (streak, [str(reason) for reason in assessment.reasons])
    return result


# -- between check-ins: pauses and urges -----------------------------------------------------------


def _logged_urges(conn: Connection, commitments: list[KnownCommitment], since: datetime
                  ) -> dict[str, list[LoggedUrge]]:
    """The urges logged since `since`, oldest first, as the at-risk rules read them (the rows'
    view of `domain.logged_urges`)."""
    table = tables.urges
    of = {c.commitment_id: c for c in commitments}
    found: dict[str, list[LoggedUrge]] = defaultdict(list)
    query = select(table.c.commitment_id, table.c.at, table.c.intensity, table.c.outcome).where(
        table.c.commitment_id.in_(list(of)), table.c.at >= since).order_by(table.c.at, table.c.urge_id)
    for row in conn.execute(query):
        found[row.commitment_id].append(LoggedUrge(of[row.commitment_id].today(row.at), row.intensity, row.outcome))
    return found


def pause_rows(conn: Connection, commitment_id: str) -> list[Row[Any]]:
    """Every pause of the commitment (cancelled ones too), by first day."""
    table = tables.pauses
    return list(conn.execute(select(table).where(table.c.commitment_id == commitment_id)
                             .order_by(table.c.first_day, table.c.pause_id)))


def pause_row(conn: Connection, commitment_id: str, pause_id: str) -> Row[Any] | None:
    table = tables.pauses
    return conn.execute(select(table).where(table.c.commitment_id == commitment_id,
                                            table.c.pause_id == pause_id)).first()


_FIRST_ASKABLE, _LAST_ASKABLE = date.min + timedelta(days=2), date.max - timedelta(days=2)


def urge_page(conn: Connection, commitment: KnownCommitment, first: date | None, last: date | None, limit: int,
              cursor: str | None) -> tuple[list[Row[Any]], str | None]:
    """A page of the commitment's urges of the local days `first`..`last`, newest first, and
    the cursor of the next page (None on the last)."""
    table = tables.urges
    scope = f"{commitment.tenant_id}:urges:{commitment.commitment_id}"
    offset = decode_cursor(scope, cursor) or 0
    query = select(table).where(table.c.commitment_id == commitment.commitment_id)
    # Any date may be asked for, but a zone's calendar stops short of date.min and date.max:
    # a bound beyond every urge is clamped to one that still is.
    if first is not None:
        query = query.where(table.c.at >= day_bounds(commitment.timezone, max(first, _FIRST_ASKABLE))[0])
    if last is not None:
        query = query.where(table.c.at < day_bounds(commitment.timezone, min(last, _LAST_ASKABLE))[1])
    rows = list(conn.execute(query.order_by(table.c.at.desc(), table.c.urge_id.desc())
                             .offset(offset).limit(limit + 1)))
    more = len(rows) > limit
    return rows[:limit], encode_cursor(scope, offset + limit) if more else None
