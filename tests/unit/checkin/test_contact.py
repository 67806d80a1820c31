"""Contact attempts and necessary contact on a kept check-in (CONTRACT v1.1): a held-firm
day is kept and counted as ``held_firm_days``; both only on a kept day; a necessary contact
names one of the commitment's exceptions."""

from __future__ import annotations

from dataclasses import replace

import pytest

from services.checkin.domain import (
    CheckInRejected,
    CommitmentState,
    ContactAttempt,
    NecessaryContact,
    Outcome,
    correct,
    record,
    withdraw,
)
from services.checkin.domain.state import HELD_FIRM, KEPT
from tests.unit.checkin.factories import stored
from tests.unit.checkin.test_history import COMMITMENT, NOW, SETTINGS, kept, slipped, state_of

WITH_EXCEPTIONS = replace(COMMITMENT, exception_count=2)
TODAY = COMMITMENT.today(NOW)
CALLED = (ContactAttempt("calls"), ContactAttempt("texts"))


def test_a_held_firm_day_is_kept_and_counted() -> None:
    decision = record(CommitmentState(COMMITMENT.starts_on), COMMITMENT, SETTINGS,
                      replace(kept(TODAY), contact_attempts=CALLED), NOW)
    told = decision.events[0].data
    assert told["contact_attempts"] == [{"channel": "calls", "answered": False},
                                        {"channel": "texts", "answered": False}]
    assert (told["held_firm_days"], told["kept_days"]) == (1, 1)
    assert decision.state.days.endswith(HELD_FIRM) and decision.state.outcome(TODAY) == Outcome.KEPT
    assert decision.state == state_of(stored([], decision.events))
    # Corrected without the attempts: kept, no longer held firm; withdrawn: nothing.
    corrected = correct(decision.state, COMMITMENT, SETTINGS, kept(TODAY), NOW)
    assert corrected.state.days.endswith(KEPT) and corrected.streak.held_firm_days == 0
    assert withdraw(decision.state, COMMITMENT, SETTINGS, TODAY, NOW).streak.held_firm_days == 0


def test_a_report_without_them_carries_neither() -> None:
    data = record(CommitmentState(COMMITMENT.starts_on), COMMITMENT, SETTINGS, kept(TODAY), NOW).events[0].data
    assert "contact_attempts" not in data and "necessary_contact" not in data


@pytest.mark.parametrize(("report", "fields"), [
    (replace(slipped(TODAY), contact_attempts=CALLED), {"contact_attempts"}),
    (replace(kept(TODAY), contact_attempts=(ContactAttempt("calls", True),)), {"contact_attempts.0.answered"}),
    (replace(kept(TODAY), contact_attempts=(ContactAttempt("pigeon"),)), {"contact_attempts.0.channel"}),
    (replace(kept(TODAY), necessary_contact=NecessaryContact(2)), {"necessary_contact.exception"}),
    (replace(kept(TODAY), necessary_contact=NecessaryContact(-1)), {"necessary_contact.exception"}),
    (replace(slipped(TODAY), necessary_contact=NecessaryContact(0)), {"necessary_contact"}),
    (replace(kept(TODAY), necessary_contact=NecessaryContact(0, "x" * 2001)), {"necessary_contact.note"}),
])
def test_the_rules_name_the_field(report, fields: set[str]) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CheckInRejected) as raised:
        record(CommitmentState(COMMITMENT.starts_on), WITH_EXCEPTIONS, SETTINGS, report, NOW)
    assert set(raised.value.errors) == fields


def test_a_necessary_contact_keeps_the_day_kept() -> None:
    report = replace(kept(TODAY), necessary_contact=NecessaryContact(1, "handover at school"))
    decision = record(CommitmentState(COMMITMENT.starts_on), WITH_EXCEPTIONS, SETTINGS, report, NOW)
    assert decision.events[0].data["necessary_contact"] == {"exception": 1, "note": "handover at school"}
    assert decision.streak.kept_days == 1 and decision.streak.held_firm_days == 0
    with pytest.raises(CheckInRejected):  # the commitment without exceptions has no index 1
        record(CommitmentState(COMMITMENT.starts_on), COMMITMENT, SETTINGS, report, NOW)
