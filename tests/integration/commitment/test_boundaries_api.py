"""A commitment's boundaries over real HTTP (PostgreSQL, RabbitMQ, relay running): given on
creation, replaced with PUT .../boundaries, validated naming the field, sealed at rest,
and carried on the bus."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select, text

from shared import keyring
from shared.db import engine_for, read
from shared.schema import events

from .conftest import Client, Probe

PROBLEM = "application/problem+json"
HANDOVER = {"label": "Custody handover", "channels": ["texts", "in_person"]}
LAWYER = {"label": "Lawyer", "channels": ["email"]}


def test_boundaries_on_creation_and_replaced_with_if_match(service: Client) -> None:
    admin = service.tenant()
    created = admin.commit(exceptions=[HANDOVER], places=[{"label": "Their street"}])
    assert created["exceptions"] == [HANDOVER] and created["places"] == [{"label": "Their street"}]
    assert admin.commit()["exceptions"] == [] and admin.commit()["places"] == []
    path = f"/v1/commitments/{created['id']}"

    changed = admin.put(path + "/boundaries", json={"exceptions": [HANDOVER, LAWYER], "places": []},
                        headers={"If-Match": '"1"'})
    assert changed.status_code == 200, changed.text
    assert changed.headers["ETag"] == '"2"'
    assert changed.json()["exceptions"] == [HANDOVER, LAWYER] and changed.json()["places"] == []
    assert admin.get(path).json() == changed.json()
    # The same again: nothing recorded, the version stays.
    again = admin.put(path + "/boundaries", json={"exceptions": [HANDOVER, LAWYER], "places": []})
    assert again.status_code == 200 and again.json()["version"] == 2
    stale = admin.put(path + "/boundaries", json={"exceptions": [], "places": []}, headers={"If-Match": '"1"'})
    assert stale.status_code == 412 and stale.headers["Content-Type"].startswith(PROBLEM)

    history = admin.get(path + "/history").json()
    assert [e["type"] for e in history] == ["commitment.created", "commitment.boundaries_changed"]
    assert history[1]["data"] == {"commitment_id": created["id"], "member_id": "m-1",
                                  "exceptions": [HANDOVER, LAWYER], "places": []}

    assert admin.post(path + "/end", json={}).status_code == 200
    finished = admin.put(path + "/boundaries", json={"exceptions": [], "places": []})
    assert finished.status_code == 409 and finished.headers["Content-Type"].startswith(PROBLEM)


INVALID: list[tuple[dict[str, Any], str]] = [
    ({"exceptions": [{"label": "", "channels": ["calls"]}]}, "exceptions.0.label"),
    ({"exceptions": [{"label": "   ", "channels": ["calls"]}]}, "exceptions.0.label"),
    ({"exceptions": [LAWYER, {"label": "x" * 201, "channels": ["calls"]}]}, "exceptions.1.label"),
    ({"exceptions": [{"label": "Work"}]}, "exceptions.0.channels"),
    ({"exceptions": [{"label": "Work", "channels": []}]}, "exceptions.0.channels"),
    ({"exceptions": [{"label": "Work", "channels": ["pigeons"]}]}, "exceptions.0.channels.0"),
    ({"exceptions": [{"label": "Work", "channels": ["social_media"]}]}, "exceptions.0.channels"),
    ({"exceptions": [{"label": "Work", "channels": ["calls", "calls"]}]}, "exceptions.0.channels"),
    ({"exceptions": [LAWYER, LAWYER]}, "exceptions"),
    ({"exceptions": [{"label": f"e{i}", "channels": ["calls"]} for i in range(21)]}, "exceptions"),
    ({"exceptions": "Lawyer"}, "exceptions"),
    ({"exceptions": ["Lawyer"]}, "exceptions.0._schema"),
    ({"places": [{"label": ""}]}, "places.0.label"),
    ({"places": [{"label": 7}]}, "places.0.label"),
    ({"places": [{"label": "Gym"}, {"label": "Gym"}]}, "places"),
    ({"places": [{"label": f"p{i}"} for i in range(21)]}, "places"),
    ({"places": [{"label": "Gym", "address": "Main St 1"}]}, "places.0.address"),
]


def test_invalid_boundaries_are_422_naming_the_field(service: Client) -> None:
    admin = service.tenant()
    channels = ["calls", "texts", "email", "in_person"]
    target = admin.commit(channels=channels)
    for body, field in INVALID:
        on_create = admin.post("/v1/commitments", json={
            "member_id": "m-1", "contact": {"label": "Alex", "relationship": "romantic"}, "timezone": "UTC",
            "channels": channels, **body})
        assert on_create.status_code == 422, (body, on_create.text)
        assert on_create.headers["Content-Type"].startswith(PROBLEM)
        assert field in on_create.json()["errors"], (body, on_create.json())
        on_put = admin.put(f"/v1/commitments/{target['id']}/boundaries",
                           json={"exceptions": [], "places": [], **body})
        assert on_put.status_code == 422 and field in on_put.json()["errors"], (body, on_put.text)
    # PUT replaces both lists: neither may be left out.
    for missing in ("exceptions", "places"):
        body = {"exceptions": [], "places": []}
        del body[missing]
        refused = admin.put(f"/v1/commitments/{target['id']}/boundaries", json=body)
        assert refused.status_code == 422 and missing in refused.json()["errors"], refused.text
    assert admin.get(f"/v1/commitments/{target['id']}").json()["version"] == 1


def test_who_may_change_boundaries(service: Client) -> None:
    admin = service.tenant()
    mine = admin.commit(member_id="m-1")
    body = {"exceptions": [LAWYER], "places": []}
    member = admin.token("member", "m-1")
    assert member.put(f"/v1/commitments/{mine['id']}/boundaries", json=body).status_code == 200
    assert admin.token("member", "m-2").put(f"/v1/commitments/{mine['id']}/boundaries",
                                            json=body).status_code == 404
    assert admin.token("coach", "c-1").put(f"/v1/commitments/{mine['id']}/boundaries",
                                           json=body).status_code == 404
    assert service.tenant("Other").put(f"/v1/commitments/{mine['id']}/boundaries", json=body).status_code == 404
    assert admin.put(f"/v1/commitments/{uuid.uuid4()}/boundaries", json=body).status_code == 404
    assert service.put(f"/v1/commitments/{mine['id']}/boundaries", json=body).status_code == 401


def test_labels_are_sealed_at_rest_and_on_the_bus(service: Client, postgres_url: str, amqp_url: str,
                                                  probe_factory: Any) -> None:
    probe: Probe = probe_factory(amqp_url)
    admin = service.tenant()
    marker = f"Zq{uuid.uuid4().hex}"
    created = admin.commit(channels=["texts", "in_person"],
                           exceptions=[{"label": f"{marker}-handover", "channels": ["in_person"]}],
                           places=[{"label": f"{marker}-street"}])
    changed = admin.put(f"/v1/commitments/{created['id']}/boundaries", json={
        "exceptions": [{"label": f"{marker}-lawyer", "channels": ["texts"]}],
        "places": [{"label": f"{marker}-gym"}, {"label": f"{marker}-cafe"}]})
    assert changed.status_code == 200, changed.text
    assert changed.json()["places"] == [{"label": f"{marker}-gym"}, {"label": f"{marker}-cafe"}]

    with read(engine_for(postgres_url)) as conn:
        stored = conn.execute(select(events.c.data).where(events.c.stream_id == f"commitment-{created['id']}")
                              .order_by(events.c.stream_version)).scalars().all()
        row = conn.execute(text("SELECT exceptions, places FROM commitment_commitments WHERE commitment_id = :id"),
                           {"id": created["id"]}).one()
    assert marker not in str(stored) and marker not in str(row)
    assert keyring.is_sealed(stored[0]["exceptions"][0]["label"]) and keyring.is_sealed(row.places[1]["label"])
    assert stored[0]["exceptions"][0]["channels"] == ["in_person"]  # only the labels are personal

    carried = probe.wait_for(lambda body: body["stream_id"] == f"commitment-{created['id']}"
                             and body["type"] == "commitment.boundaries_changed")
    assert keyring.is_sealed(carried[0]["body"]["data"]["places"][0]["label"])
    assert marker not in str(probe.received)
