"""What the commitment service puts on the bus, how its read models rebuild, and the
embedded SQLite + filesystem-broker setup end to end."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from click.testing import CliRunner
from sqlalchemy import select

from services.cli import main as cli
from services.commitment.projections import PROJECTIONS
from shared import keyring
from shared.db import engine_for, read

from .conftest import OPERATOR, Client, start

ENVELOPE = {"id", "type", "schema_version", "tenant_id", "stream_id", "stream_version", "position", "occurred_at",
            "recorded_at", "correlation_id", "causation_id", "actor", "data"}


def test_events_reach_the_broker_with_the_contract_envelope(postgres_url: str, amqp_url: str, stack_factory: Any,
                                                            probe_factory: Any) -> None:
    probe = probe_factory(amqp_url)  # bound before anything is published
    service = start(stack_factory, postgres_url)
    created = service.post("/v1/tenants", auth=OPERATOR, json={"name": "Acme"})
    tenant_id, admin = created.json()["id"], service.as_(created.json()["api_key"])
    correlation = str(uuid.uuid4())
    response = admin.post("/v1/commitments", headers={"X-Correlation-ID": correlation}, json={
        "member_id": "m-1", "contact": {"label": "Alex", "relationship": "romantic"}, "timezone": "UTC",
        "duration_days": 30})
    commitment = response.json()
    admin.post(f"/v1/commitments/{commitment['id']}/extend", json={"additional_days": 5})
    admin.put("/v1/coaches/coach-1/clients/m-1")
    admin.delete("/v1/coaches/coach-1/clients/m-1")
    admin.post(f"/v1/commitments/{commitment['id']}/end", json={"reason": "done"})
    key = admin.post("/v1/api-keys").json()
    admin.delete(f"/v1/api-keys/{key['id']}")

    expected = ["tenant.created", "api_key.issued", "commitment.created", "commitment.extended", "coach.assigned",
                "coach.unassigned", "commitment.ended", "api_key.issued", "api_key.revoked"]
    # The revocation is the last event appended: once it arrived, so had every earlier one.
    probe.wait_for(lambda body: body["tenant_id"] == tenant_id and body["type"] == "api_key.revoked")
    messages = probe.received
    bodies = [m["body"] for m in messages if m["body"]["tenant_id"] == tenant_id]
    assert [b["type"] for b in bodies] == expected
    assert all(set(b) == ENVELOPE for b in bodies)
    assert all(m["routing_key"] == m["body"]["type"] for m in messages)
    assert all(m["properties"]["delivery_mode"] == 2 for m in messages)
    # No internal coaching events and no secret ever leave the service.
    assert not any(b["type"].startswith("coaching.") for b in bodies)
    assert not any(key["api_key"] in str(b) or created.json()["api_key"] in str(b) for b in bodies)
    by_type = {b["type"]: b for b in bodies}
    created_event = by_type["commitment.created"]
    assert created_event["stream_id"] == f"commitment-{commitment['id']}" and created_event["stream_version"] == 1
    assert created_event["correlation_id"] == correlation
    assert created_event["actor"].startswith("api_key:")
    # The label is personal: it travels sealed (shared.keyring) and opens with the store's keyring.
    contact = created_event["data"]["contact"]
    assert contact["relationship"] == "romantic" and keyring.is_sealed(contact["label"])
    with read(engine_for(postgres_url)) as conn:
        assert keyring.Opener(conn, tenant_id).open(contact["label"]) == "Alex"
    for name in ("commitment.created", "commitment.extended", "coach.assigned", "coach.unassigned",
                 "commitment.ended"):
        assert by_type[name]["data"]["commitment_id"] == commitment["id"], name
        assert by_type[name]["data"]["member_id"] == "m-1", name
    assert by_type["api_key.revoked"]["data"] == {"tenant_id": tenant_id, "key_id": key["id"]}
    assert by_type["tenant.created"]["stream_id"] == f"tenant-{tenant_id}"
    assert [b["position"] for b in bodies] == sorted(b["position"] for b in bodies)


def _read_models(url: str) -> dict[str, list[dict[str, Any]]]:
    engine = engine_for(url)
    with read(engine) as conn:
        return {
            table.name: sorted((dict(row) for row in conn.execute(select(table)).mappings()), key=str)
            for projection in PROJECTIONS for table in projection.tables
        }


def test_rebuild_gives_the_same_read_models(service: Client, postgres_url: str) -> None:
    admin = service.tenant()
    for i in range(4):
        c = admin.commit(member_id=f"m-{i % 2}")
        admin.post(f"/v1/commitments/{c['id']}/extend", json={"additional_days": 3})
    admin.put("/v1/coaches/coach-1/clients/m-1")
    admin.commit(member_id="m-1")
    ended = admin.commit(member_id="m-0")
    admin.post(f"/v1/commitments/{ended['id']}/end", json={})
    key = admin.post("/v1/api-keys").json()
    admin.delete(f"/v1/api-keys/{key['id']}")
    before = _read_models(postgres_url)
    assert len(before["commitment_commitments"]) == 6 and len(before["commitment_coach_assignments"]) == 1

    result = CliRunner().invoke(cli, ["commitment", "rebuild"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "commitment.commitments:" in result.output and "events/s" in result.output
    assert _read_models(postgres_url) == before
    assert admin.get("/v1/commitments").status_code == 200


def test_tenants_create_command(postgres_url: str, monkeypatch: Any) -> None:
    monkeypatch.setenv("NOCONTACT_DATABASE_URL", postgres_url)
    result = CliRunner().invoke(cli, ["tenants", "create", "Acme Support"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = dict(line.split(":", 1) for line in result.output.strip().splitlines())
    tenant_id, api_key = lines["tenant_id"].strip(), lines["api_key"].strip()
    uuid.UUID(tenant_id)
    assert api_key.startswith("nck_")
    from services.commitment.tables import CREDENTIALS
    from shared.auth import lookup, present

    with read(engine_for(postgres_url)) as conn:
        # In the store, as every service sharing the database checks it, and in the read model.
        for tables in (None, CREDENTIALS):
            principal = lookup(conn, present(f"Bearer {api_key}"), tables)
            assert principal is not None and principal.tenant_id == tenant_id
    refused = CliRunner().invoke(cli, ["tenants", "create", ""])
    assert refused.exit_code != 0 and "name" in refused.output


def test_embedded_sqlite_and_filesystem_broker(sqlite_url: str, filesystem_broker_url: str, stack_factory: Any,
                                               probe_factory: Any) -> None:
    probe = probe_factory(filesystem_broker_url)
    service = start(stack_factory, sqlite_url)
    admin = service.tenant()
    start_day = (datetime.now(UTC) - timedelta(days=40)).date().isoformat()
    over = admin.commit(member_id="m-1", timezone="UTC", starts_on=start_day, duration_days=30)
    assert over["status"] == "completed"
    c = admin.commit(member_id="m-1", duration_days=10)
    assert admin.post(f"/v1/commitments/{c['id']}/extend", json={"additional_days": 2},
                      headers={"If-Match": '"1"'}).status_code == 200
    assert admin.put("/v1/coaches/coach-1/clients/m-1").status_code == 204
    coach = admin.token("coach", "coach-1")
    assert {item["id"] for item in coach.get("/v1/commitments").json()["items"]} == {over["id"], c["id"]}
    assert admin.get("/v1/commitments", params={"status": "completed"}).json()["items"][0]["id"] == over["id"]
    assert admin.post(f"/v1/commitments/{c['id']}/end", json={}).json()["status"] == "ended"
    completed = probe.wait_for(lambda body: body["type"] == "commitment.completed", timeout=20)
    assert completed[0]["body"]["data"]["commitment_id"] == over["id"]
    ended = probe.wait_for(lambda body: body["type"] == "commitment.ended", timeout=20)
    assert set(ended[0]["body"]) == ENVELOPE
