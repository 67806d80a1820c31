"""What the check-in service seals (services.checkin.personal): the notes of its reports,
nothing else; a report without a note needs no key (no database here)."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.checkin import personal
from services.checkin.domain import (
    CHECKIN_CORRECTED,
    CHECKIN_MISSED,
    CHECKIN_RECORDED,
    CHECKIN_WITHDRAWN,
    CheckIn,
    Outcome,
    checkin_corrected_data,
    checkin_recorded_data,
    checkin_withdrawn_data,
)
from shared import keyring
from shared.events import NewEvent

DAY = date(2026, 11, 21)


def _report(note: str | None) -> dict[str, Any]:
    return checkin_recorded_data(commitment_id="c-1", member_id="m-1",
                                 check_in=CheckIn(DAY, Outcome.KEPT, urge=3, mood=4, note=note))


def test_only_a_reports_note_is_personal() -> None:
    assert personal.carries_personal(NewEvent(CHECKIN_RECORDED, _report("walked past the cafe")))
    corrected = checkin_corrected_data(commitment_id="c-1", member_id="m-1",
                                       check_in=CheckIn(DAY, Outcome.KEPT, note="x"))
    assert personal.carries_personal(NewEvent(CHECKIN_CORRECTED, corrected))
    assert not personal.carries_personal(NewEvent(CHECKIN_RECORDED, _report(None)))
    withdrawn = checkin_withdrawn_data(commitment_id="c-1", member_id="m-1", day=DAY,
                                       previous=CheckIn(DAY, Outcome.KEPT))
    assert not personal.carries_personal(NewEvent(CHECKIN_WITHDRAWN, withdrawn))
    assert not personal.carries_personal(NewEvent(CHECKIN_MISSED, {"member_id": "m-1", "note": "not a field of it"}))
    necessary = {**_report(None), "necessary_contact": {"exception": 0, "note": "handover ran late"}}
    assert personal.carries_personal(NewEvent(CHECKIN_RECORDED, necessary))
    assert not personal.carries_personal(NewEvent(CHECKIN_RECORDED, {**necessary, "necessary_contact": None}))


def test_events_without_a_note_go_as_they_are_without_reading_a_key() -> None:
    events = [NewEvent(CHECKIN_RECORDED, _report(None)), NewEvent(CHECKIN_MISSED, {"member_id": "m-1"})]
    # No connection: a key read would fail.
    assert personal.seal(None, "t-1", events) == events  # type: ignore[arg-type]


def test_the_note_is_sealed_for_its_event_and_everything_else_stays_in_clear() -> None:
    key = keyring.DataKey(uuid.uuid4(), "t-1", "m-1", AESGCM(AESGCM.generate_key(256)))
    event = NewEvent(CHECKIN_RECORDED, {**_report("walked past the cafe"), "current_days": 12})
    sealed = keyring.seal_event(key, event, personal.EVENT_FIELDS[CHECKIN_RECORDED])
    assert keyring.is_sealed(sealed.data["note"]) and "cafe" not in str(sealed.data)
    assert {k: v for k, v in sealed.data.items() if k != "note"} == {
        k: v for k, v in event.data.items() if k != "note"}
    parsed = keyring.Sealed.parse(sealed.data["note"])
    assert parsed is not None and parsed.event_id == event.id and parsed.open(key.cipher) == "walked past the cafe"


def test_a_necessary_contacts_note_is_sealed_and_its_exception_stays_in_clear() -> None:
    key = keyring.DataKey(uuid.uuid4(), "t-1", "m-1", AESGCM(AESGCM.generate_key(256)))
    event = NewEvent(CHECKIN_RECORDED, {**_report(None), "necessary_contact": {"exception": 1, "note": "lawyer"}})
    sealed = keyring.seal_event(key, event, personal.EVENT_FIELDS[CHECKIN_RECORDED])
    assert sealed.data["note"] is None and sealed.data["necessary_contact"]["exception"] == 1
    assert keyring.is_sealed(sealed.data["necessary_contact"]["note"]) and "lawyer" not in str(sealed.data)
