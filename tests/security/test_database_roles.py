"""The services connect to PostgreSQL as a role that can only read and append to the event
store; migrations run as the schema's owner (issue 18: the app connected as a superuser,
which can switch the append-only trigger off).

`nocontact migrate` with NOCONTACT_MIGRATION_DATABASE_URL (the owner) and
NOCONTACT_DATABASE_URL (the services' role) grants that role what the services need. As
that role: no UPDATE, DELETE or TRUNCATE of events, no way to alter or disable the
trigger; and the suite's normal operations (APIs, relays, consumers, schedulers, a
rebuild) all work.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import DBAPIError

from services.cli import main as cli
from shared import testing
from shared.db import engine_for
from shared.events import Metadata, NewEvent
from shared.eventstore import append, read_stream
from shared.testing import bearer, eventually

OPERATOR = "operator-" + uuid.uuid4().hex


@pytest.fixture
def roles(postgres_database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    """(owner URL, app URL) of a fresh schema: the owner is the test server's superuser, the
    app a new login role with no privilege of its own."""
    role = f"nocontact_app_{uuid.uuid4().hex[:8]}"
    admin = create_engine(postgres_database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE ROLE "{role}" LOGIN'))
    try:
        with testing.fresh_postgres_schema(postgres_database_url) as owner_url:
            app_url = make_url(owner_url).set(username=role).render_as_string(hide_password=False)
            monkeypatch.setenv("NOCONTACT_MIGRATION_DATABASE_URL", owner_url)
            monkeypatch.setenv("NOCONTACT_DATABASE_URL", app_url)
            result = CliRunner().invoke(cli, ["migrate"], catch_exceptions=False)
            assert result.exit_code == 0 and f"granted {role}" in result.output, result.output
            yield owner_url, app_url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP OWNED BY "{role}"'))
            conn.execute(text(f'DROP ROLE "{role}"'))
        admin.dispose()


def _refused(engine: Any, statement: str) -> str:
    with engine.connect() as conn, pytest.raises(DBAPIError) as refused:
        conn.execute(text(statement))
    return str(refused.value.orig)


def test_the_app_role_can_append_and_read_but_never_rewrite_history(roles: tuple[str, str]) -> None:
    _, app_url = roles
    app = engine_for(app_url)
    with app.begin() as conn:
        assert conn.execute(text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")).scalar() is False
        append(conn, "probe-1", [NewEvent("probe.happened", {"n": 1})], metadata=Metadata(tenant_id="t"))
    with app.connect() as conn:
        assert [e.data for e in read_stream(conn, "probe-1")] == [{"n": 1}]
    for statement in ("UPDATE events SET data = '{}'", "DELETE FROM events", "TRUNCATE events",
                      "ALTER TABLE events DISABLE TRIGGER events_append_only",
                      "ALTER TABLE events DISABLE TRIGGER ALL",
                      "DROP TRIGGER events_append_only ON events",
                      "CREATE OR REPLACE FUNCTION events_refuse_change() RETURNS trigger AS $$ BEGIN RETURN NULL; "
                      "END $$ LANGUAGE plpgsql",
                      "ALTER TABLE events OWNER TO CURRENT_USER",
                      "SET session_replication_role = replica",
                      "UPDATE alembic_version SET version_num = 'x'"):
        reason = _refused(app, statement)
        assert "permission denied" in reason or "must be owner" in reason, (statement, reason)
    with app.connect() as conn:
        assert [e.data for e in read_stream(conn, "probe-1")] == [{"n": 1}]


def test_the_suite_runs_as_the_app_role(roles: tuple[str, str], amqp_url: str, stack_factory: Any,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    _, app_url = roles
    stack = stack_factory(app_url, ["commitment", "checkin", "notification"],
                          env={"NOCONTACT_OPERATOR_TOKEN": OPERATOR})
    with httpx.Client(timeout=15) as client:
        tenant = client.post(stack.url("commitment", "/v1/tenants"), json={"name": "Least privilege"},
                             headers=bearer(OPERATOR))
        assert tenant.status_code == 201, tenant.text
        admin = bearer(tenant.json()["api_key"])
        created = client.post(stack.url("commitment", "/v1/commitments"), headers=admin, json={
            "member_id": "m-1", "contact": {"label": "Alex", "relationship": "friend"}, "timezone": "UTC",
            "duration_days": 30})
        assert created.status_code == 201, created.text
        day = created.json()["starts_on"]
        eventually(lambda: client.post(stack.url("checkin", f"/v1/commitments/{created.json()['id']}/check-ins"),
                                       headers=admin, json={"date": day, "outcome": "kept"}), 201)
        recorded = client.get(stack.url("checkin", f"/v1/commitments/{created.json()['id']}/check-ins/{day}"),
                              headers=admin)
        assert recorded.status_code == 200 and recorded.json()["outcome"] == "kept", recorded.text
        streak = client.get(stack.url("checkin", f"/v1/commitments/{created.json()['id']}/streak"), headers=admin)
        assert streak.status_code == 200, streak.text
        assert client.put(stack.url("commitment", "/v1/coaches/c-1/clients/m-1"), headers=admin).status_code == 204
        hook = client.post(stack.url("notification", "/v1/webhook-endpoints"), headers=admin, json={
            "url": "http://127.0.0.1:9/hook", "event_types": ["*"], "description": "roles"})
        assert hook.status_code == 201, hook.text
        token = client.post(stack.url("commitment", "/v1/tokens"), headers=admin,
                            json={"role": "coach", "subject_id": "c-1"}).json()["token"]
        assert client.post(stack.url("commitment", "/v1/tokens/revoke"), headers=admin,
                           json={"token": token}).status_code == 204
        assert client.get(stack.url("checkin", "/v1/coaches/c-1/clients"), headers=bearer(token)).status_code == 401
    # A read-model rebuild (empties its tables and replays) is the app role's to run too.
    monkeypatch.setenv("NOCONTACT_DATABASE_URL", app_url)
    result = CliRunner().invoke(cli, ["commitment", "rebuild"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    # The check-in rebuild builds aside and swaps (DDL): it connects as the owner
    # (NOCONTACT_MIGRATION_DATABASE_URL), and the app role keeps its privileges on the
    # swapped-in tables: the service still reads and records.
    result = CliRunner().invoke(cli, ["checkin", "rebuild"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    with httpx.Client(timeout=15) as client:
        commitment_id = created.json()["id"]
        after = client.get(stack.url("checkin", f"/v1/commitments/{commitment_id}/streak"), headers=admin)
        assert after.status_code == 200 and after.json() == streak.json(), after.text
        recorded = client.get(stack.url("checkin", f"/v1/commitments/{commitment_id}/check-ins/{day}"),
                              headers=admin)
        assert recorded.status_code == 200 and recorded.json()["outcome"] == "kept", recorded.text
        settings = client.get(stack.url("checkin", "/v1/settings"), headers=admin)
        assert settings.status_code == 200, settings.text
        changed = client.put(stack.url("checkin", "/v1/settings"), headers=admin,
                             json={k: v for k, v in settings.json().items() if k != "version"})
        assert changed.status_code == 200, changed.text
