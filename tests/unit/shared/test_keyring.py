"""The sealed form of personal values, sealing events by their personal fields, the key
cache's bound, and master-key rotation in shared.crypto (no database here)."""

from __future__ import annotations

import base64
import uuid

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared import config, crypto, keyring
from shared.events import NewEvent

OLD_MASTER = base64.b64encode(bytes(range(32))).decode()
NEW_MASTER = base64.b64encode(bytes(range(1, 33))).decode()


def _key() -> keyring.DataKey:
    return keyring.DataKey(uuid.uuid4(), "t-1", "m-1", AESGCM(AESGCM.generate_key(256)))


def test_a_sealed_value_is_self_describing_and_opens_with_its_key() -> None:
    key, event_id = _key(), uuid.uuid4()
    sealed = key.seal("Alex (ex) é", event_id)
    assert keyring.is_sealed(sealed) and sealed.isascii() and "Alex" not in sealed
    parsed = keyring.Sealed.parse(sealed)
    assert parsed is not None and parsed.key_id == key.key_id and parsed.event_id == event_id
    assert parsed.open(key.cipher) == "Alex (ex) é"
    # A fresh nonce each time: equal values never show as equal ciphertexts.
    assert key.seal("Alex (ex) é", event_id) != sealed


def test_the_ids_in_the_header_are_bound_to_the_ciphertext() -> None:
    key = _key()
    sealed = keyring.Sealed.parse(key.seal("x", uuid.uuid4()))
    assert sealed is not None
    moved = keyring.Sealed(sealed.key_id, uuid.uuid4(), sealed.key_id.bytes + uuid.uuid4().bytes, sealed.nonce,
                           sealed.ciphertext)
    with pytest.raises(crypto.Unsealable):
        moved.open(key.cipher)
    with pytest.raises(crypto.Unsealable):
        sealed.open(_key().cipher)


@pytest.mark.parametrize("value", ["Alex", "", "pii:1:", "pii:1:not base64!", "pii:1:" + "A" * 8, 42, None])
def test_what_is_not_in_the_sealed_form_is_not_parsed(value: object) -> None:
    assert keyring.Sealed.parse(value) is None  # type: ignore[arg-type]


def test_an_event_is_sealed_at_its_personal_paths_only() -> None:
    key = _key()
    event = NewEvent("commitment.created", {
        "commitment_id": "c-1", "member_id": "m-1", "contact": {"label": "Alex", "relationship": "romantic"},
        "motivation": None, "channels": ["calls"],
    })
    sealed = keyring.seal_event(key, event, ("contact.label", "motivation", "absent.path"))
    assert sealed.id == event.id and sealed.type == event.type
    assert sealed.data["contact"]["relationship"] == "romantic" and sealed.data["motivation"] is None
    assert sealed.data["channels"] == ["calls"] and sealed.data["member_id"] == "m-1"
    label = keyring.Sealed.parse(sealed.data["contact"]["label"])
    assert label is not None and label.event_id == event.id and label.open(key.cipher) == "Alex"
    assert event.data["contact"]["label"] == "Alex"  # the original is left as it was
    # A member's text shaped like a sealed value is sealed all the same: nothing personal is
    # ever stored as it came.
    shaped = NewEvent("commitment.created", {"member_id": "m-1", "motivation": sealed.data["contact"]["label"]})
    resealed = keyring.seal_event(key, shaped, ("motivation",)).data["motivation"]
    inner = keyring.Sealed.parse(resealed)
    assert inner is not None and inner.open(key.cipher) == sealed.data["contact"]["label"]


def test_every_item_of_a_list_is_sealed_with_a_star() -> None:
    key = _key()
    event = NewEvent("commitment.created", {"member_id": "m-1", "places": [{"label": "The gym"}, {"label": None}],
                                            "exceptions": "not a list"})
    sealed = keyring.seal_event(key, event, ("places.*.label", "exceptions.*.label"))
    first, second = sealed.data["places"]
    assert keyring.is_sealed(first["label"]) and second == {"label": None}
    assert sealed.data["exceptions"] == "not a list"
    parsed = keyring.Sealed.parse(first["label"])
    assert parsed is not None and parsed.open(key.cipher) == "The gym"


def test_the_key_cache_forgets_after_its_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(keyring.time, "monotonic", lambda: clock[0])
    monkeypatch.setenv("NOCONTACT_KEYRING_CACHE_TTL_S", "1")
    cache = keyring._KeyCache()
    key_id = uuid.uuid4()
    entry = keyring._Entry("t-1", None)
    cache.put(key_id, entry)
    assert cache.get(key_id) == entry
    clock[0] += 1.01
    assert cache.get(key_id) is None
    monkeypatch.setenv("NOCONTACT_KEYRING_CACHE_TTL_S", "0")
    cache.put(key_id, entry)
    assert cache.get(key_id) is None


@pytest.mark.parametrize(("setting", "ttl"), [("0.5", 0.5), ("0", 0.0), ("5", keyring.MAX_CACHE_TTL_S),
                                              ("", keyring.DEFAULT_CACHE_TTL_S)])
def test_the_cache_ttl_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch, setting: str, ttl: float) -> None:
    monkeypatch.setenv("NOCONTACT_KEYRING_CACHE_TTL_S", setting)
    assert keyring.cache_ttl_s() == ttl


@pytest.mark.parametrize("setting", ["60", "5.01", "-1", "nan", "soon"])
def test_a_cache_ttl_beyond_the_erasure_bound_or_malformed_is_refused(monkeypatch: pytest.MonkeyPatch,
                                                                      setting: str) -> None:
    # The TTL bounds when an erasure holds in every process: 60 s is not cut to 5 quietly,
    # the process refuses to start (shared.config.check) and says why.
    monkeypatch.setenv("NOCONTACT_KEYRING_CACHE_TTL_S", setting)
    with pytest.raises(config.SettingError, match="NOCONTACT_KEYRING_CACHE_TTL_S"):
        keyring.cache_ttl_s()


def test_a_retired_master_key_still_opens_and_reseal_moves_a_value_to_the_current_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOCONTACT_MASTER_KEY", OLD_MASTER)
    monkeypatch.delenv("NOCONTACT_MASTER_KEY_PREVIOUS", raising=False)
    old = crypto.seal_text("a data key", "keyring:1")
    monkeypatch.setenv("NOCONTACT_MASTER_KEY", NEW_MASTER)
    with pytest.raises(crypto.Unsealable, match="NOCONTACT_MASTER_KEY_PREVIOUS"):
        crypto.unseal_text(old, "keyring:1")
    monkeypatch.setenv("NOCONTACT_MASTER_KEY_PREVIOUS", f" , {OLD_MASTER}")
    assert crypto.unseal_text(old, "keyring:1") == "a data key" and not crypto.is_current(old)
    fresh = crypto.reseal_text(old, "keyring:1")
    assert crypto.is_current(fresh)
    monkeypatch.delenv("NOCONTACT_MASTER_KEY_PREVIOUS")
    assert crypto.unseal_text(fresh, "keyring:1") == "a data key"
    with pytest.raises(crypto.Unsealable):
        crypto.reseal_text(fresh, "keyring:2")
