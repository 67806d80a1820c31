"""CONTRACT v1.1 "Streak history and truthful events" over real HTTP, on PostgreSQL + RabbitMQ
and on SQLite + the filesystem broker: GET .../runs, a day's ETag and If-Match (412),
withdrawals (DELETE, ``checkin.withdrawn``), late reports and corrections of a completed or
ended commitment's own days, and the OpenAPI document saying all of it."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from services.checkin.domain import local_today
from shared.db import read
from shared.eventstore import read_stream
from tests.integration.checkin.support import api, body, commitment_event, deliver
from tests.unit.checkin.truthful import partner_view, runs_view

ZONE = "America/Sao_Paulo"
STACKS = ["pg_stack", "embedded_stack"]


def _stream(stack, cid: str):  # type: ignore[no-untyped-def]
    with read(stack.engine) as conn:
        return read_stream(conn, f"checkin-{cid}")


def _today() -> date:
    return local_today(ZONE, datetime.now(UTC))


@pytest.mark.parametrize("which", STACKS)
def test_runs_etags_and_withdrawals(which: str, request: pytest.FixtureRequest) -> None:
    stack = request.getfixturevalue(which)
    tenant = stack.tenant()
    today = _today()
    start = today - timedelta(days=10)
    cid = stack.commitment(tenant, timezone=ZONE, starts_on=start, duration_days=30, member_id="m-1",
                           coach_id="coach-1")
    url = f"/v1/commitments/{cid}"
    with api(stack.base_url) as client:
        client.headers.update(tenant.headers())
        assert client.put("/v1/settings", json={"backdate_days": 30, "milestones": [1, 3, 5]}).status_code == 200
        for offset in range(10):  # days 0-9 (today-10 .. today-1), day 6 a slip
            day = start + timedelta(days=offset)
            posted = client.post(f"{url}/check-ins", json=body("slipped" if offset == 6 else "kept", day))
            assert posted.status_code == 201, posted.text
            assert posted.headers["ETag"] == f'"{posted.json()["version"]}"'

        runs = client.get(f"{url}/runs")
        assert runs.status_code == 200
        assert runs.json()["items"] == [
            {"started_on": start.isoformat(), "ended_on": (start + timedelta(days=5)).isoformat(), "days": 6,
             "ended_by": "slip", "reported_days": 6, "milestones": [1, 3, 5]},
            {"started_on": (start + timedelta(days=7)).isoformat(), "ended_on": None, "days": 3, "ended_by": None,
             "reported_days": 3, "milestones": [1, 3]},
        ]
        streak = client.get(f"{url}/streak").json()
        assert streak["longest_days"] == 6 and streak["milestones_reached"] == [1, 3]
        assert partner_view(_stream(stack, cid)) == runs_view(runs.json()["items"])
        assert client.get(f"{url}/runs", headers=tenant.headers("coach", "coach-1")).status_code == 200
        assert client.get(f"{url}/runs", headers=tenant.headers("member", "someone-else")).status_code == 404

        # A day's ETag is its version; a PUT or DELETE decided on another one is refused.
        slip_day = (start + timedelta(days=6)).isoformat()
        day = client.get(f"{url}/check-ins/{slip_day}")
        assert day.status_code == 200 and day.headers["ETag"] == f'"{day.json()["version"]}"'
        stale = f'"{day.json()["version"] - 1}"'
        refused = client.put(f"{url}/check-ins/{slip_day}", json=body("kept"), headers={"If-Match": stale})
        assert refused.status_code == 412 and refused.headers["ETag"] == day.headers["ETag"]
        assert refused.headers["Content-Type"].startswith("application/problem+json")
        assert client.put(f"{url}/check-ins/{slip_day}", json=body("kept"),
                          headers={"If-Match": '"nonsense"'}).status_code == 412
        assert client.delete(f"{url}/check-ins/{slip_day}", headers={"If-Match": stale}).status_code == 412
        # Another day's report moves the stream, not this day: its ETag still holds.
        assert client.post(f"{url}/check-ins", json=body("kept", today)).status_code == 201
        corrected = client.put(f"{url}/check-ins/{slip_day}", json=body("slipped", urge=3),
                               headers={"If-Match": day.headers["ETag"]})
        assert corrected.status_code == 200, corrected.text
        assert corrected.headers["ETag"] == f'"{corrected.json()["version"]}"' != day.headers["ETag"]

        # Withdrawn: the day is unreported, the two runs are one, and the events say so.
        coach = tenant.headers("coach", "coach-1")
        assert client.delete(f"{url}/check-ins/{slip_day}", headers=coach).status_code == 403
        gone = client.delete(f"{url}/check-ins/{slip_day}", headers={"If-Match": corrected.headers["ETag"]})
        assert gone.status_code == 204 and gone.content == b""
        assert client.get(f"{url}/check-ins/{slip_day}").status_code == 404
        assert client.delete(f"{url}/check-ins/{slip_day}").status_code == 404
        assert client.put(f"{url}/check-ins/{slip_day}", json=body("kept")).status_code == 404
        assert client.delete(f"{url}/check-ins/{(today - timedelta(days=31)).isoformat()}").status_code == 422
        assert client.delete(f"{url}/check-ins/not-a-day").status_code == 422
        runs = client.get(f"{url}/runs").json()["items"]
        assert [(r["started_on"], r["days"], r["reported_days"], r["ended_by"]) for r in runs] == [
            (start.isoformat(), 11, 10, None)]
        assert client.get(f"{url}/streak").json()["current_days"] == 11

    stream = _stream(stack, cid)
    withdrawn = [e.data for e in stream if e.type == "checkin.withdrawn"]
    assert [(w["date"], w["previous_outcome"]) for w in withdrawn] == [(slip_day, "slipped")]
    assert "note" not in withdrawn[0]
    revoked = [(e.data["milestone"], e.data["run_started_on"]) for e in stream
               if e.type == "streak.milestone_revoked" and e.data["reason"] == "report_withdrawn"]
    second_run = (start + timedelta(days=7)).isoformat()
    assert revoked == [(1, second_run), (3, second_run)]  # the run from day 7 is now part of the first
    assert partner_view(stream) == runs_view(runs)


@pytest.mark.parametrize("which", STACKS)
def test_a_completed_or_ended_commitment_takes_reports_of_its_own_days(which: str,
                                                                        request: pytest.FixtureRequest) -> None:
    stack = request.getfixturevalue(which)
    tenant = stack.tenant()
    today = _today()
    completed = stack.commitment(tenant, timezone=ZONE, starts_on=today - timedelta(days=6), duration_days=4)
    ended = stack.commitment(tenant, timezone=ZONE, starts_on=today - timedelta(days=8), duration_days=None,
                             member_id="m-2")
    deliver(stack.engine, commitment_event(stack.engine, tenant, ended, "commitment.ended", {
        "commitment_id": ended, "member_id": "m-2", "reason": "done",
        "ended_on": (today - timedelta(days=2)).isoformat()}))
    with api(stack.base_url) as client:
        client.headers.update(tenant.headers())
        assert client.put("/v1/settings", json={"backdate_days": 10}).status_code == 200
        last_day = today - timedelta(days=3)  # the completed commitment's: starts today-6, 4 days
        assert client.post(f"/v1/commitments/{completed}/check-ins", json=body("kept", last_day)).status_code == 201
        fixed = client.put(f"/v1/commitments/{completed}/check-ins/{last_day.isoformat()}", json=body("slipped"))
        assert fixed.status_code == 200, fixed.text
        after_end = client.post(f"/v1/commitments/{completed}/check-ins", json=body("kept", today - timedelta(days=1)))
        assert after_end.status_code == 409 and "completed" in after_end.json()["detail"]
        assert client.post(f"/v1/commitments/{completed}/check-ins", json=body("kept")).status_code == 409

        for offset in (8, 7, 2):  # the ended one: days up to the day it was ended
            day = today - timedelta(days=offset)
            posted = client.post(f"/v1/commitments/{ended}/check-ins", json=body("kept", day))
            assert posted.status_code == 201, posted.text
        refused = client.post(f"/v1/commitments/{ended}/check-ins", json=body("kept", today - timedelta(days=1)))
        assert refused.status_code == 409 and "ended" in refused.json()["detail"]
        assert client.delete(f"/v1/commitments/{ended}/check-ins/{(today - timedelta(days=7)).isoformat()}"
                             ).status_code == 204
        runs = client.get(f"/v1/commitments/{ended}/runs").json()["items"]
        assert runs == [{"started_on": (today - timedelta(days=8)).isoformat(),
                         "ended_on": (today - timedelta(days=2)).isoformat(), "days": 7,
                         "ended_by": "commitment_end", "reported_days": 2, "milestones": [1, 3, 7]}]
        completed_runs = client.get(f"/v1/commitments/{completed}/runs").json()["items"]
        assert [(r["days"], r["ended_by"]) for r in completed_runs] == [(3, "slip")]
    for cid, runs_now in ((ended, runs), (completed, completed_runs)):
        assert partner_view(_stream(stack, cid)) == runs_view(runs_now)


def test_the_openapi_document_says_all_of_it(embedded_stack) -> None:  # type: ignore[no-untyped-def]
    with api(embedded_stack.base_url) as client:
        spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    runs = paths["/v1/commitments/{commitment_id}/runs"]["get"]["responses"]
    assert set(runs) >= {"200", "404"}
    day = paths["/v1/commitments/{commitment_id}/check-ins/{day}"]
    assert set(day["delete"]["responses"]) >= {"204", "404", "409", "412", "422"}
    assert set(day["put"]["responses"]) >= {"200", "404", "409", "412", "422"}
    assert "ETag" in day["put"]["responses"]["200"]["headers"] and "ETag" in day["get"]["responses"]["200"]["headers"]
    problem = day["put"]["responses"]["412"]["content"]
    assert list(problem) == ["application/problem+json"]
    for method in ("put", "delete"):
        assert any(p["in"] == "header" and p["name"] == "If-Match" for p in day[method]["parameters"]), method
    run_schema = spec["components"]["schemas"]["RunOut"]["properties"]
    assert set(run_schema) == {"started_on", "ended_on", "days", "ended_by", "reported_days", "milestones"}
