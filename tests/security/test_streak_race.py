"""No streak update is lost under concurrent check-ins (PostgreSQL, gunicorn).

Every command on a commitment decides from its decision-state row (`checkin_streaks`) and
writes it back after its append. Twenty reports and corrections of one commitment at once,
over HTTP: each is answered 2xx, or 409 with Retry-After and then 2xx when sent again;
afterwards the state row is the fold of the commitment's stream and the streak served is
the streak a replay of the stream computes. A write that overwrote a concurrent one's row
would show as a difference.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, date, datetime, timedelta

import httpx

from services.checkin.domain import CommitmentState, fold_streak
from services.checkin.queries import command_inputs
from shared.db import engine_for, read
from shared.eventstore import read_stream
from shared.testing import bearer, eventually
from tests.support.suite import Suite, commitment_body, create_tenant

WRITERS = 20
SLIP = {"channel": "texts", "initiated_by": "me"}


def _report(outcome: str, day: date | None = None) -> dict[str, object]:
    body: dict[str, object] = {"outcome": outcome, "urge": 4}
    if day is not None:
        body["date"] = day.isoformat()
    if outcome == "slipped":
        body["slip"] = SLIP
    return body


def _until_accepted(method: str, url: str, body: dict[str, object], headers: dict[str, str],
                    start: threading.Barrier) -> list[int]:
    """Send, and send again after each 409 that asks for a retry; every status answered."""
    statuses: list[int] = []
    with httpx.Client(timeout=60) as client:
        start.wait()
        for _ in range(30):
            answer = client.request(method, url, json=body, headers=headers)
            statuses.append(answer.status_code)
            if answer.status_code != 409 or "Retry-After" not in answer.headers:
                break
            time.sleep(float(answer.headers["Retry-After"]) / 10)  # a quicker client than asked; still correct
    return statuses


def test_twenty_reports_and_corrections_at_once_lose_no_streak_update(security_suite: Suite) -> None:
    suite = security_suite
    today = datetime.now(UTC).date()
    starts_on = today - timedelta(days=2 * WRITERS)
    with httpx.Client(timeout=30) as client:
        tenant = create_tenant(suite, client, f"race-{uuid.uuid4().hex[:6]}")
        admin = bearer(tenant.api_key)
        assert client.put(suite.url("checkin", "/v1/settings"), headers=admin,
                          json={"backdate_days": 2 * WRITERS + 5}).status_code == 200
        created = client.post(suite.url("commitment", "/v1/commitments"), headers=admin,
                              json=commitment_body(f"m-race-{uuid.uuid4().hex[:6]}", starts_on.isoformat()))
        assert created.status_code == 201, created.text
        cid = created.json()["id"]
        check_ins = suite.url("checkin", f"/v1/commitments/{cid}/check-ins")
        eventually(lambda: client.get(suite.url("checkin", f"/v1/commitments/{cid}/streak"), headers=admin), 200)
        # Half the writers correct days already reported, half report new ones.
        corrected_days = [today - timedelta(days=WRITERS + n) for n in range(WRITERS // 2)]
        new_days = [today - timedelta(days=n) for n in range(WRITERS // 2)]
        for day in corrected_days:
            answer = client.post(check_ins, headers=admin, json=_report("kept", day))
            assert answer.status_code == 201, answer.text

    # Slips scattered so that every write moves the runs, the milestones and the standing.
    wanted = {day: "slipped" if n % 3 == 1 else "kept" for n, day in enumerate(sorted(corrected_days + new_days))}
    requests = [("PUT", f"{check_ins}/{day.isoformat()}", _report(wanted[day])) for day in corrected_days]
    requests += [("POST", check_ins, _report(wanted[day], day)) for day in new_days]
    start = threading.Barrier(len(requests))
    answered: list[list[int]] = [[] for _ in requests]

    def write(index: int) -> None:
        method, url, body = requests[index]
        answered[index] = _until_accepted(method, url, body, admin, start)

    writers = [threading.Thread(target=write, args=(n,)) for n in range(len(requests))]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(120)
    assert not any(writer.is_alive() for writer in writers)
    for (method, _, _), statuses in zip(requests, answered, strict=True):
        assert statuses and statuses[-1] == (200 if method == "PUT" else 201), (method, statuses)
        assert set(statuses[:-1]) <= {409}, (method, statuses)

    with httpx.Client(timeout=30) as client:
        served = client.get(suite.url("checkin", f"/v1/commitments/{cid}/streak"), headers=admin)
    assert served.status_code == 200, served.text
    engine = engine_for(suite.database_url)
    try:
        with read(engine) as conn:
            stream = read_stream(conn, f"checkin-{cid}")
            inputs = command_inputs(conn, cid)
    finally:
        engine.dispose()
    assert inputs is not None
    # The decision state row is the stream folded: no concurrent write was overwritten.
    assert inputs.state == CommitmentState.folded(starts_on, stream)
    replayed = fold_streak(stream, starts_on=starts_on, ends_on=inputs.commitment.ends_on, today=today,
                           policy=inputs.settings.streak_policy, milestones=inputs.settings.milestones).as_json(cid)
    assert {key: served.json()[key] for key in served.json()} == {key: replayed[key] for key in served.json()}
    # And the stream holds what the writers asked for: each day's latest report.
    assert served.json()["slipped_days"] == list(wanted.values()).count("slipped")
    assert served.json()["kept_days"] == list(wanted.values()).count("kept")
