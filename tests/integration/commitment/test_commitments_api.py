"""Commitments over real HTTP, on PostgreSQL with the relay and scheduler running."""

from __future__ import annotations

import base64
import itertools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from services.commitment import handlers
from shared.commands import RetryPolicy
from shared.testing import wait_until

from .conftest import Client

PROBLEM = "application/problem+json"


def today(zone: str = "Europe/Berlin") -> date:
    return datetime.now(UTC).astimezone(ZoneInfo(zone)).date()


def test_create_get_and_defaults(service: Client) -> None:
    admin = service.tenant()
    response = admin.post("/v1/commitments", json={
        "member_id": "m-123",
        "contact": {"label": "Alex (ex)", "relationship": "romantic"},
        "channels": ["calls", "texts", "social_media"],
        "timezone": "Europe/Berlin",
        "starts_on": today().isoformat(),
        "duration_days": 30,
        "motivation": "I want my peace back.",
    })
    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["Location"].endswith(f"/v1/commitments/{body['id']}")
    assert response.headers["ETag"].strip('"') == "1" == str(body["version"])
    assert body["ends_on"] == (today() + timedelta(days=29)).isoformat()
    assert body["status"] == "active" and body["coach_id"] is None
    assert body["contact"] == {"label": "Alex (ex)", "relationship": "romantic"}
    assert body["channels"] == ["calls", "texts", "social_media"]
    assert body["motivation"] == "I want my peace back." and body["created_at"]
    fetched = admin.get(f"/v1/commitments/{body['id']}")
    assert fetched.status_code == 200 and fetched.json() == body

    # Defaults: every channel, today in the zone, indefinitely.
    minimal = admin.post("/v1/commitments", json={
        "member_id": "m-1", "contact": {"label": "Mum", "relationship": "family"}, "timezone": "Pacific/Auckland"})
    assert minimal.status_code == 201, minimal.text
    m = minimal.json()
    assert m["channels"] == ["calls", "texts", "social_media", "email", "in_person"]
    assert m["starts_on"] == today("Pacific/Auckland").isoformat()
    assert m["duration_days"] is None and m["ends_on"] is None and m["status"] == "active"


INVALID: list[tuple[dict[str, Any], str]] = [
    ({"member_id": ""}, "member_id"),
    ({"member_id": "   "}, "member_id"),
    ({"member_id": "m" * 129}, "member_id"),
    ({"member_id": 7}, "member_id"),
    ({"contact": {"label": "X", "relationship": "enemy"}}, "contact.relationship"),
    ({"contact": {"relationship": "friend"}}, "contact.label"),
    ({"contact": "Alex"}, "contact"),
    ({"channels": ["pigeons"]}, "channels.0"),
    ({"channels": []}, "channels"),
    ({"channels": ["calls", "calls"]}, "channels"),
    ({"timezone": "Mars/Olympus"}, "timezone"),
    ({"timezone": None}, "timezone"),
    ({"starts_on": "2026-13-01"}, "starts_on"),
    ({"starts_on": (date.today() - timedelta(days=400)).isoformat()}, "starts_on"),
    ({"starts_on": (date.today() + timedelta(days=40)).isoformat()}, "starts_on"),
    ({"duration_days": 0}, "duration_days"),
    ({"duration_days": 3651}, "duration_days"),
    ({"duration_days": "30"}, "duration_days"),
    ({"duration_days": True}, "duration_days"),
    ({"duration_days": 1.5}, "duration_days"),
    ({"motivation": "x" * 2001}, "motivation"),
    ({"surprise": 1}, "surprise"),
]


def test_invalid_commitments_are_422_naming_the_field(service: Client) -> None:
    # One service for every case: starting a stack per case would dominate the run time.
    admin = service.tenant()
    for body, field in INVALID:
        payload = {"member_id": "m-1", "contact": {"label": "Alex", "relationship": "romantic"},
                   "timezone": "Europe/Berlin", **body}
        response = admin.post("/v1/commitments", json=payload)
        assert response.status_code == 422, (body, response.text)
        assert response.headers["Content-Type"].startswith(PROBLEM)
        errors = response.json()["errors"]
        assert any(name == field or name.startswith(field + ".") for name in errors), (body, errors)
    assert admin.get("/v1/commitments").json()["items"] == []  # nothing was half-written


def test_malformed_and_non_json_bodies(service: Client) -> None:
    admin = service.tenant()
    malformed = admin.post("/v1/commitments", content=b"{nope", headers={"Content-Type": "application/json"})
    assert malformed.status_code == 400 and malformed.headers["Content-Type"].startswith(PROBLEM)
    not_json = admin.post("/v1/commitments", content=b"member_id=m", headers={"Content-Type": "text/plain"})
    assert not_json.status_code == 415
    array = admin.post("/v1/commitments", json=[1, 2])
    assert array.status_code in (400, 422) and array.headers["Content-Type"].startswith(PROBLEM)
    assert admin.get("/v1/commitments/does-not-exist").status_code == 404


def test_extend_end_history_and_conflicts(service: Client) -> None:
    admin = service.tenant()
    c = admin.commit(duration_days=30)
    path = f"/v1/commitments/{c['id']}"
    extended = admin.post(path + "/extend", json={"additional_days": 10})
    assert extended.status_code == 200, extended.text
    assert extended.json()["ends_on"] == (date.fromisoformat(c["ends_on"]) + timedelta(days=10)).isoformat()
    assert extended.json()["duration_days"] == 40 and extended.json()["version"] == 2
    for bad, field in (({}, "additional_days"), ({"additional_days": 0}, "additional_days"),
                       ({"additional_days": 5, "indefinite": True}, "additional_days"),
                       ({"indefinite": "yes"}, "indefinite")):
        response = admin.post(path + "/extend", json=bad)
        assert response.status_code == 422 and field in response.json()["errors"], (bad, response.text)
    forever = admin.post(path + "/extend", json={"indefinite": True})
    assert forever.json()["ends_on"] is None and forever.json()["duration_days"] is None
    assert admin.post(path + "/extend", json={"additional_days": 1}).status_code == 409
    assert admin.post(path + "/end", json={"reason": "x" * 501}).status_code == 422
    ended = admin.post(path + "/end", json={"reason": "I am ready to move on"})
    assert ended.status_code == 200 and ended.json()["status"] == "ended"
    assert ended.json()["ended_on"] == today().isoformat()
    again = admin.post(path + "/end", json={})
    assert again.status_code == 409 and again.headers["Content-Type"].startswith(PROBLEM)
    assert admin.post(path + "/extend", json={"additional_days": 1}).status_code == 409

    history = admin.get(path + "/history")
    assert history.status_code == 200
    events = history.json()
    assert [e["type"] for e in events] == ["commitment.created", "commitment.extended", "commitment.extended",
                                           "commitment.ended"]
    assert [e["stream_version"] for e in events] == [1, 2, 3, 4]
    assert all(e["data"]["commitment_id"] == c["id"] and e["data"]["member_id"] == "m-1" for e in events)
    assert events[3]["data"]["reason"] == "I am ready to move on"
    assert events[0]["actor"].startswith("api_key:")


def test_if_match_and_etag(service: Client) -> None:
    admin = service.tenant()
    c = admin.commit()
    path = f"/v1/commitments/{c['id']}"
    stale = admin.post(path + "/extend", json={"additional_days": 1}, headers={"If-Match": '"7"'})
    assert stale.status_code == 412 and stale.headers["Content-Type"].startswith(PROBLEM)
    assert admin.post(path + "/extend", json={"additional_days": 1}, headers={"If-Match": "garbage"}).status_code == 412
    ok = admin.post(path + "/extend", json={"additional_days": 1}, headers={"If-Match": "1"})
    assert ok.status_code == 200 and ok.headers["ETag"] == '"2"'
    # The same tag again is stale now: the first writer won, the second must re-read.
    assert admin.post(path + "/end", json={}, headers={"If-Match": '"1"'}).status_code == 412
    assert admin.post(path + "/end", json={}, headers={"If-Match": '"2"'}).status_code == 200
    assert admin.get(path).headers["ETag"] == '"3"'


def test_concurrent_extensions_never_lose_an_event(service: Client) -> None:
    admin = service.tenant()
    c = admin.commit(duration_days=30)
    path = f"/v1/commitments/{c['id']}/extend"
    writers = 12
    with ThreadPoolExecutor(writers) as pool:
        responses = list(pool.map(lambda _: admin.post(path, json={"additional_days": 1}), range(writers)))
    assert [r.status_code for r in responses] == [200] * writers, [r.text for r in responses if r.status_code != 200]
    final = admin.get(f"/v1/commitments/{c['id']}").json()
    assert final["version"] == 1 + writers
    assert final["ends_on"] == (date.fromisoformat(c["ends_on"]) + timedelta(days=writers)).isoformat()
    history = admin.get(f"/v1/commitments/{c['id']}/history").json()
    assert [e["type"] for e in history].count("commitment.extended") == writers
    # Each extension was decided on the state left by the previous one: a chain, no overwrite.
    extensions = [e["data"] for e in history[1:]]
    assert all(a["ends_on"] == b["previous_ends_on"] for a, b in itertools.pairwise(extensions))


def test_list_pagination_and_filters(service: Client) -> None:
    admin = service.tenant()
    created = [admin.commit(member_id=f"m-{i % 2}") for i in range(5)]
    long_ago = (today() - timedelta(days=100)).isoformat()
    over = admin.commit(member_id="m-0", starts_on=long_ago, duration_days=10)
    ended = admin.commit(member_id="m-1")
    admin.post(f"/v1/commitments/{ended['id']}/end", json={})

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = admin.get("/v1/commitments", params=query).json()
        seen += [item["id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == [c["id"] for c in [*created, over, ended]]

    def ids(**params: Any) -> list[str]:
        response = admin.get("/v1/commitments", params=params)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    assert ids(member_id="m-1") == [created[1]["id"], created[3]["id"], ended["id"]]
    assert ids(status="completed") == [over["id"]]  # by time, whether or not the scheduler got there yet
    assert ids(status="ended") == [ended["id"]]
    assert ids(status="active", member_id="m-0") == [created[0]["id"], created[2]["id"], created[4]["id"]]
    for params, field in (({"status": "paused"}, "status"), ({"limit": 0}, "limit"), ({"limit": "x"}, "limit"),
                          ({"cursor": "!!garbage"}, "cursor"), ({"cursor": "Zm9v"}, "cursor")):
        response = admin.get("/v1/commitments", params=params)
        assert response.status_code == 422 and field in response.json()["errors"], (params, response.text)


def test_status_reflects_time_and_the_scheduler_records_completion_once(service: Client) -> None:
    admin = service.tenant()
    c = admin.commit(starts_on=(today() - timedelta(days=40)).isoformat(), duration_days=30)
    assert c["status"] == "completed"  # ends_on passed: completed even before any event says so
    path = f"/v1/commitments/{c['id']}"
    assert admin.post(path + "/extend", json={"additional_days": 5}).status_code == 409
    assert admin.post(path + "/end", json={}).status_code == 409

    def completed() -> list[dict[str, Any]]:
        return [e for e in admin.get(path + "/history").json() if e["type"] == "commitment.completed"]

    [event] = wait_until(completed, 15, message="the completions scheduler")
    assert event["data"] == {"commitment_id": c["id"], "member_id": "m-1", "ends_on": c["ends_on"]}
    assert event["actor"] == "scheduler:completions" and event["causation_id"]
    # Several more scheduler rounds (interval 0.2 s in tests) add nothing.
    wait_until(lambda: admin.get(path).json()["version"] == 2, 5)
    final = admin.get(path).json()
    assert final["status"] == "completed"
    assert len(completed()) == 1


@pytest.mark.parametrize("attempts", [RetryPolicy().attempts, 2])
def test_a_crowd_on_one_commitment_gets_answers_never_a_server_error(service: Client, monkeypatch: Any,
                                                                     attempts: int) -> None:
    """20 extends and ends at once, with the service's retries and with retries that run
    out quickly: each request is either carried out (200), refused by the state (409:
    already ended) or busy (409 with Retry-After: nothing written, send again); never a
    5xx, and nothing half-written."""
    monkeypatch.setattr(handlers, "PIPELINE", replace(handlers.PIPELINE, retry=RetryPolicy(attempts=attempts)))
    admin = service.tenant()
    c = admin.commit(duration_days=30)
    path = f"/v1/commitments/{c['id']}"

    def act(i: int) -> Any:
        if i % 5 == 4:
            return admin.post(path + "/end", json={})
        return admin.post(path + "/extend", json={"additional_days": 1})

    with ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(act, range(20)))
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 409}, [(r.status_code, r.text) for r in responses if r.status_code not in (200, 409)]
    for refused in (r for r in responses if r.status_code == 409):
        assert refused.headers["Content-Type"].startswith(PROBLEM)
        if "concurrently" in refused.json()["detail"]:
            assert refused.headers["Retry-After"]
    history = admin.get(path + "/history").json()
    assert statuses.count(200) == len(history) - 1  # every 200 is one event, every 409 none
    types = [e["type"] for e in history]
    assert types.count("commitment.ended") <= 1
    assert "commitment.ended" not in types[:-1]  # nothing after the end
    extensions = [e["data"] for e in history if e["type"] == "commitment.extended"]
    assert all(a["ends_on"] == b["previous_ends_on"] for a, b in itertools.pairwise(extensions))


def test_cursors_are_sealed_to_their_list(service: Client) -> None:
    admin, other = service.tenant(), service.tenant("Other")
    for _ in range(2):
        admin.commit()
        other.commit()
    cursor = admin.get("/v1/commitments", params={"limit": 1}).json()["next_cursor"]
    assert len(admin.get("/v1/commitments", params={"cursor": cursor}).json()["items"]) == 1
    foreign = other.get("/v1/commitments", params={"limit": 1}).json()["next_cursor"]

    def legacy(value: int) -> str:  # the old, unsealed format: base64 of "s<seq>"
        return base64.urlsafe_b64encode(f"s{value}".encode()).decode().rstrip("=")

    for bad in ("-1", legacy(-1), legacy(0), legacy(2**70), str(2**64), "9" * 400, cursor[:-2], cursor + "AA",
                foreign):
        response = admin.get("/v1/commitments", params={"cursor": bad})
        assert response.status_code == 422, (bad, response.text)
        assert response.headers["Content-Type"].startswith(PROBLEM)
        assert list(response.json()["errors"]) == ["cursor"], (bad, response.text)


def test_a_coach_assigned_while_commitments_open_is_never_missed(service: Client) -> None:
    """Opening a commitment reads the member's assignment; assigning a coach reads the
    member's commitments. Racing each other, neither may miss the other."""
    admin = service.tenant()
    opened: list[str] = []
    for coach in ("coach-1", "coach-2", "coach-3"):
        with ThreadPoolExecutor(7) as pool:
            creations = [pool.submit(admin.commit, "m-1") for _ in range(6)]
            assignment = pool.submit(admin.put, f"/v1/coaches/{coach}/clients/m-1")
            opened += [future.result()["id"] for future in creations]
        assert assignment.result().status_code == 204
        coaches = {admin.get(f"/v1/commitments/{cid}").json()["coach_id"] for cid in opened}
        assert coaches == {coach}, coach
    coach = admin.token("coach", "coach-3")
    assert {item["id"] for item in coach.get("/v1/commitments", params={"limit": 200}).json()["items"]} == set(opened)
