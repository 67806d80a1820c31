"""The operator's CLI: `nocontact tenants list` and `nocontact keys issue|list|revoke`, so a
tenant that revoked its last key is not locked out; what the CLI does counts on every
service at once (it records the same events as the API)."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

from services.cli import main as cli
from shared.auth import lookup, present
from shared.db import engine_for, read


def _run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _fails(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code != 0, result.output
    return result.output


def _fields(output: str) -> dict[str, str]:
    return {name.strip(): value.strip() for name, value in (line.split(":", 1) for line in output.splitlines())}


def _works(url: str, api_key: str) -> bool:
    with read(engine_for(url)) as conn:
        return lookup(conn, present(f"Bearer {api_key}")) is not None


@pytest.fixture
def store(database_url: str, monkeypatch: Any) -> str:
    monkeypatch.setenv("NOCONTACT_DATABASE_URL", database_url)
    return database_url


def test_the_operator_lists_tenants_and_issues_lists_and_revokes_their_keys(store: str) -> None:
    created = _fields(_run("tenants", "create", "Acme Support"))
    tenant_id, first_key = created["tenant_id"], created["api_key"]
    assert f"{tenant_id}" in _run("tenants", "list") and "keys: 1  Acme Support" in _run("tenants", "list")
    [listed] = _run("keys", "list", tenant_id).splitlines()
    first_id = listed.split()[0]
    assert first_key[:12] in listed and listed.endswith("working")

    _run("keys", "revoke", tenant_id, first_id)
    assert not _works(store, first_key)
    assert "keys: 0  Acme Support" in _run("tenants", "list")  # locked out ...
    issued = _fields(_run("keys", "issue", tenant_id))  # ... until the operator issues a key
    assert _works(store, issued["api_key"])
    listing = _run("keys", "list", tenant_id).splitlines()
    assert [line.split()[0] for line in listing] == [first_id, issued["key_id"]]
    assert "revoked" in listing[0] and listing[1].endswith("working")
    assert "keys: 1  Acme Support" in _run("tenants", "list")

    assert "already revoked" in _fails("keys", "revoke", tenant_id, first_id)
    assert "no API key" in _fails("keys", "revoke", tenant_id, "no-such-key")
    for command in (("keys", "issue", "no-such-tenant"), ("keys", "list", "no-such-tenant")):
        assert "no such tenant" in _fails(*command)
