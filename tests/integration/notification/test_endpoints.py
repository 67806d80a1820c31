"""Webhook endpoints as event-sourced state: the table is the projection of their streams,
concurrent commands all land, and secrets and URL queries are never stored in clear."""

from __future__ import annotations

import base64
import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from services.cli import main
from services.notification import handlers
from services.notification.domain.endpoints import secret_associated_data
from services.notification.projections import endpoints_projection
from services.notification.tables import endpoints
from shared import crypto, eventstore
from shared.commands import Context
from shared.db import engine_for, read
from shared.projection import rebuild
from shared.testing import wait_until
from tests.integration.notification.conftest import commitment_data

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ADMIN = Context("t1", "api_key:k1", correlation_id="req-1")


@pytest.fixture
def engine(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("NOCONTACT_WEBHOOK_ALLOW_PRIVATE", "true")
    monkeypatch.setenv("NOCONTACT_DATABASE_URL", database_url)
    return engine_for(database_url)


def _table(engine: Any) -> list[dict[str, Any]]:
    with read(engine) as conn:
        return [dict(row) for row in conn.execute(select(endpoints).order_by(endpoints.c.id)).mappings()]


def _audit(engine: Any) -> list[Any]:
    with read(engine) as conn:
        return eventstore.read_all(conn, 0, limit=1000, types=endpoints_projection().event_types, settled=False)


def test_the_table_is_the_projection_of_the_endpoint_streams(engine: Any) -> None:
    first, secret = handlers.create_endpoint(
        engine, ADMIN, url="http://127.0.0.1:9/a?token=abc", event_types=["*"], description="a", now=T0
    )
    later = T0 + timedelta(minutes=1)
    handlers.update_endpoint(
        engine, ADMIN, first, {"url": "http://127.0.0.1:9/b?token=def", "description": "b"}, now=later
    )
    rotated = handlers.rotate_secret(engine, ADMIN, first, now=later)
    handlers.disable_endpoint(engine, ADMIN, first, now=later)
    handlers.enable_endpoint(engine, ADMIN, first, now=later)
    second, _ = handlers.create_endpoint(
        engine, ADMIN, url="http://127.0.0.1:9/c", event_types=["checkin.missed"], description="", now=later
    )
    handlers.disable_failing_endpoint(engine, "t1", second, "HTTP 410 Gone: receiver asked to stop", now=later)
    gone, _ = handlers.create_endpoint(engine, ADMIN, url="http://127.0.0.1:9/d", event_types=["*"], description="")
    handlers.delete_endpoint(engine, ADMIN, gone)

    live = _table(engine)
    assert [row["id"] for row in live] == sorted([first, second])
    row = next(r for r in live if r["id"] == first)
    assert row["url"] == "http://127.0.0.1:9/b?token=def" and row["description"] == "b"
    assert row["status"] == "enabled" and row["disabled_reason"] is None and row["version"] == 5
    assert row["created_at"] == T0 and row["updated_at"] == later
    assert row["previous_secret_expires_at"] == later + timedelta(hours=24)
    # Sealed at rest, opened only with the endpoint's own binding.
    assert not row["secret"].startswith("whsec_") and not row["previous_secret"].startswith("whsec_")
    assert crypto.unseal_text(row["secret"], secret_associated_data(first)) == rotated
    assert crypto.unseal_text(row["previous_secret"], secret_associated_data(first)) == secret
    with pytest.raises(crypto.Unsealable):
        crypto.unseal_text(row["secret"], secret_associated_data(second))
    disabled = next(r for r in live if r["id"] == second)
    assert disabled["status"] == "disabled" and disabled["disabled_reason"].startswith("HTTP 410")

    # Nothing secret in the log: no secret, no query string, not even sealed the old way.
    audit = _audit(engine)
    text = json.dumps([e.data for e in audit])
    assert "whsec_" not in text and "token=" not in text
    assert secret not in text and rotated not in text
    assert all(e.tenant_id == "t1" for e in audit)
    assert {e.actor for e in audit} == {"api_key:k1", "system:delivery"}

    report = rebuild(engine, endpoints_projection())
    assert report.events == len(audit)
    assert _table(engine) == live
    result = CliRunner().invoke(main, ["notification", "rebuild"])
    assert result.exit_code == 0, result.output
    assert "notification.endpoints" in result.output
    assert _table(engine) == live


def test_concurrent_commands_on_one_endpoint_all_land(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOCONTACT_WEBHOOK_ALLOW_PRIVATE", "true")
    engine = engine_for(postgres_url)
    endpoint_id, _ = handlers.create_endpoint(
        engine, ADMIN, url="http://127.0.0.1:9/a", event_types=["*"], description="0"
    )
    writers = 12
    start = threading.Barrier(writers, timeout=30)
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            start.wait()
            if n % 3 == 0:
                handlers.rotate_secret(engine, ADMIN, endpoint_id)
            else:
                handlers.update_endpoint(engine, ADMIN, endpoint_id, {"description": str(n)})
        except BaseException as error:  # reported below, whatever it is
            errors.append(error)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    with read(engine) as conn:
        stream = eventstore.read_stream(conn, f"webhook_endpoint-{endpoint_id}")
        row = conn.execute(select(endpoints).where(endpoints.c.id == endpoint_id)).one()
    assert [e.stream_version for e in stream] == list(range(1, writers + 2))
    assert row.version == writers + 1
    last_update = [e for e in stream if e.type == "webhook_endpoint.updated"][-1]
    assert row.description == last_update.data["changes"]["description"]
    last_rotation = [e for e in stream if e.type == "webhook_endpoint.secret_rotated"][-1]
    assert row.secret == last_rotation.data["sealed_secret"]


def _old_style(value: int) -> str:
    return base64.urlsafe_b64encode(str(value).encode()).decode().rstrip("=")


def test_cursors_are_opaque_and_bound_to_the_tenant_and_the_list(
    postgres_url: str, amqp_url: str, start_notification: Any
) -> None:
    harness = start_notification(postgres_url)
    tenant, other = harness.tenant("A"), harness.tenant("B")
    created = [harness.create_endpoint(tenant, f"http://127.0.0.1:9/{n}") for n in range(3)]
    first_page = tenant.client.get("/v1/webhook-endpoints", params={"limit": 2}).json()
    cursor = first_page["next_cursor"]
    assert cursor and cursor != _old_style(2)  # not the offset in plain sight
    second_page = tenant.client.get("/v1/webhook-endpoints", params={"limit": 2, "cursor": cursor}).json()
    assert [e["id"] for e in first_page["items"] + second_page["items"]] == [e["id"] for e in created]

    endpoint = created[0]["id"]
    harness.emit(tenant, "coach.assigned", {**commitment_data(), "coach_id": "coach-1", "previous_coach_id": None})
    wait_until(lambda: tenant.client.get("/v1/coaches/coach-1/notifications").status_code == 200, 15)
    lists = {
        "endpoints": (tenant.client, "/v1/webhook-endpoints"),
        "deliveries": (tenant.client, f"/v1/webhook-endpoints/{endpoint}/deliveries"),
        "messages": (tenant.client, f"/v1/webhook-endpoints/{endpoint}/messages"),
        "coach feed": (tenant.client, "/v1/coaches/coach-1/notifications"),
    }
    bad = {
        "garbage": "%%%",
        "negative": _old_style(-1),
        "huge": _old_style(2**70),
        "an old plain offset": _old_style(2),
        "another list's": cursor,
    }
    for name, (client, path) in lists.items():
        for kind, value in bad.items():
            if name == "endpoints" and kind == "another list's":
                continue
            response = client.get(path, params={"cursor": value})
            assert response.status_code == 422, (name, kind, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            assert "cursor" in response.json()["errors"], (name, kind)
    # Another tenant cannot replay this tenant's cursor on its own list.
    response = other.client.get("/v1/webhook-endpoints", params={"limit": 2, "cursor": cursor})
    assert response.status_code == 422 and "cursor" in response.json()["errors"]
