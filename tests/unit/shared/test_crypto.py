"""Sealing under the master key: round trips, bound data, tampering, keys, the key file."""

from __future__ import annotations

import base64
import os
import stat
import threading
from pathlib import Path

import pytest

from shared import config, crypto

KEY = base64.b64encode(bytes(range(32))).decode()
OTHER_KEY = base64.b64encode(bytes(range(1, 33))).decode()


@pytest.fixture
def master_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("NOCONTACT_MASTER_KEY", KEY)
    return KEY


def test_a_sealed_value_opens_with_the_same_associated_data(master_key: str) -> None:
    sealed = crypto.seal(b"whsec_abc", b"webhook_endpoint:1:secret")
    assert b"whsec_abc" not in sealed
    assert crypto.unseal(sealed, b"webhook_endpoint:1:secret") == b"whsec_abc"
    assert crypto.unseal(crypto.seal(b"", b"x"), b"x") == b""


def test_each_seal_is_different(master_key: str) -> None:
    # A fresh nonce each time: equal values do not show as equal ciphertexts.
    assert crypto.seal(b"same", b"ad") != crypto.seal(b"same", b"ad")


def test_text_round_trip_is_ascii(master_key: str) -> None:
    sealed = crypto.seal_text("https://example.com/hook?token=é", "webhook_endpoint:1:url")
    assert sealed.isascii() and "token" not in sealed
    assert crypto.unseal_text(sealed, "webhook_endpoint:1:url") == "https://example.com/hook?token=é"


@pytest.mark.parametrize("associated_data", [b"webhook_endpoint:2:secret", b"webhook_endpoint:1:url", b""])
def test_other_associated_data_does_not_open(master_key: str, associated_data: bytes) -> None:
    sealed = crypto.seal(b"whsec_abc", b"webhook_endpoint:1:secret")
    with pytest.raises(crypto.Unsealable):
        crypto.unseal(sealed, associated_data)


def test_an_altered_value_does_not_open(master_key: str) -> None:
    sealed = bytearray(crypto.seal(b"whsec_abc", b"ad"))
    for index in range(len(sealed)):
        altered = bytearray(sealed)
        altered[index] ^= 0x01
        with pytest.raises(crypto.Unsealable):
            crypto.unseal(bytes(altered), b"ad")
    with pytest.raises(crypto.Unsealable):
        crypto.unseal(bytes(sealed[:20]), b"ad")
    with pytest.raises(crypto.Unsealable):
        crypto.unseal_text("%%% not base64", "ad")


def test_a_value_sealed_under_another_master_key_is_told_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOCONTACT_MASTER_KEY", OTHER_KEY)
    sealed = crypto.seal(b"v", b"ad")
    monkeypatch.setenv("NOCONTACT_MASTER_KEY", KEY)
    with pytest.raises(crypto.Unsealable, match=r"master key [0-9a-f]{8}"):
        crypto.unseal(sealed, b"ad")
    # The header names the format and the key: a later rotation can pick the key.
    assert sealed[0] == crypto.FORMAT and sealed[1:5] != crypto.seal(b"v", b"ad")[1:5]


@pytest.mark.parametrize("value", ["short", base64.b64encode(b"x" * 31).decode(), "not base64 at all!"])
def test_a_malformed_master_key_is_refused_by_name(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("NOCONTACT_MASTER_KEY", value)
    with pytest.raises(ValueError, match="NOCONTACT_MASTER_KEY"):
        crypto.seal(b"v", b"ad")


def test_without_a_key_one_is_generated_once_into_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOCONTACT_MASTER_KEY", raising=False)
    monkeypatch.setenv("NOCONTACT_VAR_DIR", str(tmp_path))
    keys: list[str] = []
    threads = [threading.Thread(target=lambda: keys.append(config.master_key())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(keys)) == 1  # processes starting together agree on one key
    path = tmp_path / "master_key"
    assert len(base64.b64decode(path.read_text())) == 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    sealed = crypto.seal(b"v", b"ad")
    assert crypto.unseal(sealed, b"ad") == b"v"
