"""Values sealed under the master key: stored and sent encrypted, opened only where used.

``seal`` encrypts with AES-256-GCM (``cryptography``) under ``NOCONTACT_MASTER_KEY``
(`shared.config.master_key`). ``associated_data`` names what the value is and whose (e.g.
``b"webhook_endpoint:<id>:secret"``): it is not stored, the reader must give it again, so
a sealed value copied onto another record, or into another field, does not open.

A sealed value starts with a format version and the id of the key that sealed it (a
fingerprint, not the key), so that after a master-key rotation a reader can tell which
key opens which value; the header is authenticated with the rest.

Rotation: ``NOCONTACT_MASTER_KEY_PREVIOUS`` (comma-separated, same form as the master key)
lists retired master keys that still OPEN what they sealed; everything new is sealed under
``NOCONTACT_MASTER_KEY``. `reseal` moves one value to the current key
(``nocontact keyring rotate-master`` does it for every stored key, see shared.keyring).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import struct
from collections.abc import Sequence
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared import config

#: Format 1: AES-256-GCM, header (version, key id), 96-bit random nonce, ciphertext + tag.
FORMAT = 1
_HEADER = struct.Struct(">B4s")
_NONCE_BYTES = 12
_TAG_BYTES = 16
KEY_BYTES = 32


class Unsealable(ValueError):
    """A sealed value that cannot be opened: altered, bound to other data, or sealed under
    a key this process does not hold."""


@lru_cache(maxsize=8)
def _master(encoded: str) -> tuple[bytes, AESGCM]:
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise ValueError(f"NOCONTACT_MASTER_KEY must be the base64 of {KEY_BYTES} bytes")
    key_id = hashlib.sha256(b"nocontact.master-key-id:" + key).digest()[:4]
    return key_id, AESGCM(key)


def _current() -> tuple[bytes, AESGCM]:
    return _master(config.master_key())


def previous_keys_setting() -> str:
    """NOCONTACT_MASTER_KEY_PREVIOUS: retired master keys, still accepted for opening."""
    return os.environ.get("NOCONTACT_MASTER_KEY_PREVIOUS", "")


def _openers(retired: Sequence[str] = ()) -> dict[bytes, AESGCM]:
    """Every master key this process may open with, by key id: the current one first, then
    NOCONTACT_MASTER_KEY_PREVIOUS and `retired` (keys an operator hands a command)."""
    current_id, current = _current()
    keys = {current_id: current}
    for encoded in [*previous_keys_setting().split(","), *retired]:
        if encoded.strip():
            key_id, cipher = _master(encoded.strip())
            keys.setdefault(key_id, cipher)
    return keys


def current_key_id() -> bytes:
    """The fingerprint of the master key that seals now."""
    return _current()[0]


def is_current(sealed: bytes | str) -> bool:
    """Whether a sealed value (`seal`'s bytes or `seal_text`'s text) names the current master
    key in its header: False means `reseal` it."""
    raw = _from_text(sealed) if isinstance(sealed, str) else sealed
    if len(raw) < _HEADER.size:
        raise Unsealable("too short to be a sealed value")
    return bool(_HEADER.unpack(raw[: _HEADER.size])[1] == current_key_id())


def seal(plaintext: bytes, associated_data: bytes) -> bytes:
    """`plaintext` encrypted under the current master key, bound to `associated_data`."""
    key_id, cipher = _current()
    header = _HEADER.pack(FORMAT, key_id)
    nonce = os.urandom(_NONCE_BYTES)
    return header + nonce + cipher.encrypt(nonce, plaintext, header + associated_data)


def unseal(sealed: bytes, associated_data: bytes, *, retired: Sequence[str] = ()) -> bytes:
    """The plaintext of a value `seal` returned for the same `associated_data` (under the
    current master key, a previous one, or one of `retired`)."""
    if len(sealed) < _HEADER.size + _NONCE_BYTES + _TAG_BYTES:
        raise Unsealable("too short to be a sealed value")
    header, rest = sealed[: _HEADER.size], sealed[_HEADER.size :]
    version, key_id = _HEADER.unpack(header)
    if version != FORMAT:
        raise Unsealable(f"unknown sealed format {version}")
    cipher = _openers(retired).get(key_id)
    if cipher is None:
        raise Unsealable(
            f"sealed under master key {key_id.hex()}, not the current one ({current_key_id().hex()}) "
            "nor one of NOCONTACT_MASTER_KEY_PREVIOUS"
        )
    try:
        return cipher.decrypt(rest[:_NONCE_BYTES], rest[_NONCE_BYTES:], header + associated_data)
    except InvalidTag:
        raise Unsealable("altered, or bound to other data") from None


def reseal(sealed: bytes, associated_data: bytes, *, retired: Sequence[str] = ()) -> bytes:
    """`sealed` under the current master key (opened with whichever key sealed it)."""
    return seal(unseal(sealed, associated_data, retired=retired), associated_data)


def seal_text(plaintext: str, associated_data: str) -> str:
    """`seal` for text columns and JSON payloads: URL-safe base64 of the sealed bytes."""
    return base64.urlsafe_b64encode(seal(plaintext.encode(), associated_data.encode())).decode()


def _from_text(sealed: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(sealed.encode())
    except (binascii.Error, ValueError):
        raise Unsealable("not base64") from None


def unseal_text(sealed: str, associated_data: str) -> str:
    """The text `seal_text` sealed for the same `associated_data`."""
    return unseal(_from_text(sealed), associated_data.encode()).decode()


def reseal_text(sealed: str, associated_data: str, *, retired: Sequence[str] = ()) -> str:
    """`reseal` for `seal_text`'s values."""
    return base64.urlsafe_b64encode(reseal(_from_text(sealed), associated_data.encode(), retired=retired)).decode()
