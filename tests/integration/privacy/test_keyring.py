"""The keyring on PostgreSQL and SQLite: keys made once, opened by their tenant only,
destroyed for good (tombstones, a fence against new keys), the cache's bound, and the
master-key rotation that re-wraps keys without touching a sealed value."""

from __future__ import annotations

import base64
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, func, select, update

from services.cli import main as cli
from services.notification.domain.endpoints import secret_associated_data
from services.notification.handlers import create_endpoint
from services.notification.tables import endpoints
from shared import crypto, keyring
from shared.commands import Context
from shared.db import read
from shared.events import NewEvent
from shared.schema import keyring as keyring_table
from shared.testing import wait_until

NOW = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
OLD_MASTER = base64.b64encode(bytes(range(32))).decode()
NEW_MASTER = base64.b64encode(bytes(range(1, 33))).decode()


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOCONTACT_MASTER_KEY", OLD_MASTER)
    monkeypatch.delenv("NOCONTACT_MASTER_KEY_PREVIOUS", raising=False)
    keyring.CACHE.clear()


def _seal(engine: Engine, tenant_id: str, member_id: str, value: str) -> str:
    keyring.ensure_key(engine, tenant_id, member_id, now=NOW)
    with read(engine) as conn:
        key = keyring.member_key(conn, tenant_id, member_id)
    return key.seal(value, uuid.uuid4())


def _open(engine: Engine, tenant_id: str, value: str) -> object:
    with read(engine) as conn:
        return keyring.Opener(conn, tenant_id).open(value)


def test_a_member_gets_one_key_even_when_asked_for_at_once(engine: Engine) -> None:
    errors: list[BaseException] = []

    def ensure() -> None:
        try:
            keyring.ensure_key(engine, "t-1", "m-1", now=NOW)
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=ensure) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    with read(engine) as conn:
        rows = conn.execute(select(keyring_table)).all()
    assert len(rows) == 1 and rows[0].wrapped_key and rows[0].destroyed_at is None


def test_values_open_for_their_tenant_only_and_pass_through_when_not_sealed(engine: Engine) -> None:
    sealed = _seal(engine, "t-1", "m-1", "Alex (ex)")
    assert _open(engine, "t-1", sealed) == "Alex (ex)"
    # Another tenant's reader does not open it (a copy in its data stays what it is).
    assert _open(engine, "t-2", sealed) == sealed
    looks_sealed = "pii:1:" + base64.urlsafe_b64encode(b"x" * 60).decode()  # an id shaped like one
    for plain in ("Alex (ex)", "pii:1:looks-sealed-but-is-not", looks_sealed):
        assert _open(engine, "t-1", plain) == plain
    with read(engine) as conn:
        opener = keyring.Opener(conn, "t-1")
        document = {"a": [sealed, {"b": sealed}], "n": 3, "none": None}
        opener.prefetch([document])
        assert opener.open_all(document) == {"a": ["Alex (ex)", {"b": "Alex (ex)"}], "n": 3, "none": None}


def test_an_event_is_sealed_in_the_command_transaction_and_a_missing_key_is_made(engine: Engine) -> None:
    runs = []

    def command() -> list[NewEvent]:
        runs.append(1)
        with engine.begin() as conn:
            event = NewEvent("member.profile_updated", {"member_id": "m-3", "display_name": "Sam"})
            return keyring.seal_events(conn, "t-1", [event], {"member.profile_updated": ("display_name",)})

    (sealed,) = keyring.creating_keys(engine, command, now=NOW)
    assert len(runs) == 2  # the first run found no key; the key was made; the second sealed
    assert keyring.is_sealed(sealed.data["display_name"])
    with read(engine) as conn:
        assert keyring.Opener(conn, "t-1").open(sealed.data["display_name"], event_id=sealed.id) == "Sam"
        # Moved into another event, it stays sealed.
        moved = keyring.Opener(conn, "t-1").open(sealed.data["display_name"], event_id=uuid.uuid4())
        assert moved == sealed.data["display_name"]


def test_a_destroyed_key_reads_as_the_tombstone_and_fences_off_new_keys(engine: Engine) -> None:
    sealed = _seal(engine, "t-1", "m-1", "Alex (ex)")
    other = _seal(engine, "t-1", "m-2", "Kim")
    assert _open(engine, "t-1", sealed) == "Alex (ex)"  # now cached in this process
    with engine.begin() as conn:
        keyring.destroy(conn, "t-1", "m-1", now=NOW)
        keyring.destroy(conn, "t-1", "m-never-had-one", now=NOW)
    assert _open(engine, "t-1", sealed) is keyring.TOMBSTONE  # forgotten at once here
    assert _open(engine, "t-1", other) == "Kim"
    for member in ("m-1", "m-never-had-one"):
        with pytest.raises(keyring.MemberErased):
            keyring.ensure_key(engine, "t-1", member, now=NOW)
        with read(engine) as conn, pytest.raises(keyring.MemberErased):
            keyring.member_key(conn, "t-1", member)
    with read(engine) as conn:
        assert keyring.erased_members(conn, "t-1", ["m-1", "m-2", "m-never-had-one"]) == {"m-1", "m-never-had-one"}
        assert keyring.erased_members(conn, "t-2", ["m-1"]) == set()
        destroyed = conn.execute(select(func.count()).select_from(keyring_table)
                                 .where(keyring_table.c.wrapped_key.is_(None))).scalar()
    assert destroyed == 2
    with engine.begin() as conn:  # destroying again changes nothing
        keyring.destroy(conn, "t-1", "m-1", now=datetime(2027, 1, 1, tzinfo=UTC))
    with read(engine) as conn:
        assert keyring.destroyed_at(conn, "t-1", "m-1") == NOW


def test_another_process_forgets_a_destroyed_key_within_the_cache_ttl(engine: Engine,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOCONTACT_KEYRING_CACHE_TTL_S", "0.5")
    sealed = _seal(engine, "t-1", "m-1", "Alex (ex)")
    assert _open(engine, "t-1", sealed) == "Alex (ex)"
    # Destroyed by another process: this one's cache was not told.
    with engine.begin() as conn:
        conn.execute(update(keyring_table).values(wrapped_key=None, destroyed_at=NOW))
    destroyed = datetime.now(UTC)
    wait_until(lambda: _open(engine, "t-1", sealed) is keyring.TOMBSTONE, 5, interval=0.02,
               message="the cached key to expire")
    assert (datetime.now(UTC) - destroyed).total_seconds() < 0.5 + 0.5  # the TTL, plus the poll's slack


def test_rotating_the_master_key_rewraps_keys_and_leaves_sealed_values_as_they_are(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    values = {member: _seal(engine, "t-1", member, f"label of {member}") for member in ("m-1", "m-2", "m-3")}
    with engine.begin() as conn:
        keyring.destroy(conn, "t-1", "m-3", now=NOW)
    with read(engine) as conn:
        before = {row.key_id: row.wrapped_key for row in conn.execute(select(keyring_table))}
    monkeypatch.setenv("NOCONTACT_MASTER_KEY", NEW_MASTER)
    monkeypatch.setenv("NOCONTACT_MASTER_KEY_PREVIOUS", OLD_MASTER)
    keyring.CACHE.clear()
    rotation = keyring.rotate_master(engine, batch_size=1)
    assert (rotation.rewrapped, rotation.already_current) == (2, 0)
    assert keyring.rotate_master(engine) == keyring.Rotation(0, 2)
    with read(engine) as conn:
        after = {row.key_id: row.wrapped_key for row in conn.execute(select(keyring_table))}
    assert after.keys() == before.keys() and all(after[k] != before[k] for k in before if before[k] is not None)
    # The old master key is no longer needed; the sealed values open as before.
    monkeypatch.delenv("NOCONTACT_MASTER_KEY_PREVIOUS")
    keyring.CACHE.clear()
    assert _open(engine, "t-1", values["m-1"]) == "label of m-1"
    assert _open(engine, "t-1", values["m-2"]) == "label of m-2"
    assert _open(engine, "t-1", values["m-3"]) is keyring.TOMBSTONE


def test_the_rotate_master_command_rewraps_keys_and_reseals_webhook_secrets(
        database_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    sealed = _seal(engine, "t-1", "m-1", "Alex (ex)")
    endpoint_id, secret = create_endpoint(engine, Context("t-1", "test"), url="https://1.1.1.1/hook",
                                          event_types=["*"], description="")
    retired = tmp_path / "old_master_key"
    retired.write_text(OLD_MASTER + "\n")
    monkeypatch.setenv("NOCONTACT_DATABASE_URL", database_url)
    monkeypatch.setenv("NOCONTACT_MASTER_KEY", NEW_MASTER)
    rotated = CliRunner().invoke(cli, ["keyring", "rotate-master", "--previous-key-file", str(retired)])
    assert rotated.exit_code == 0, rotated.output
    assert "1 member key(s) re-wrapped, 0 already current; 1 webhook secret(s) re-sealed" in rotated.output
    again = CliRunner().invoke(cli, ["keyring", "rotate-master"])
    assert "0 member key(s) re-wrapped, 1 already current; 0 webhook secret(s) re-sealed" in again.output
    # Everything opens under the new master key alone.
    monkeypatch.delenv("NOCONTACT_MASTER_KEY_PREVIOUS", raising=False)
    keyring.CACHE.clear()
    assert _open(engine, "t-1", sealed) == "Alex (ex)"
    with read(engine) as conn:
        stored = conn.execute(select(endpoints.c.secret).where(endpoints.c.id == endpoint_id)).scalar()
    assert crypto.is_current(stored)
    assert crypto.unseal_text(stored, secret_associated_data(endpoint_id)) == secret
