"""Opaque list cursors: the one cursor codec of every service.

A cursor names where the next page starts (a sequence number, a position, an offset).
It is sealed (AES-GCM under a key derived from ``NOCONTACT_SECRET_KEY``) with the list it
belongs to as associated data, e.g. ``"<tenant>:commitments"``, so:

- it reveals nothing: a store position inside a cursor would let a tenant count another
  tenant's writes between two pages;
- it cannot be forged, altered or replayed on another tenant's list or another list:
  any of those is a 422 naming ``cursor``, never a 500 (negative or huge numbers cannot
  be sent at all).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared import config
from shared.errors import ValidationFailed

_NONCE_BYTES = 12
_VALUE = struct.Struct(">Q")  # 0 .. 2**64-1: what a database key or offset can be
MAX_VALUE = 2**63 - 1  # BIGINT's largest


def _key() -> bytes:
    # A key of its own for cursors (never the token-signing key itself).
    return hashlib.sha256(b"nocontact.cursor:" + config.secret_key().encode()).digest()


def encode_cursor(scope: str, value: int) -> str:
    """The cursor of `value` in the list named `scope` (bind the tenant into it)."""
    if not 0 <= value <= MAX_VALUE:
        raise ValueError(f"cursor value out of range: {value}")
    nonce = os.urandom(_NONCE_BYTES)
    sealed = AESGCM(_key()).encrypt(nonce, _VALUE.pack(value), scope.encode())
    return base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")


def decode_cursor(scope: str, cursor: str | None) -> int | None:
    """The value a cursor of this list carries; None for no cursor. A cursor this API did
    not issue for this very list is a validation error naming ``cursor``."""
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        if len(raw) != _NONCE_BYTES + _VALUE.size + 16:
            raise ValueError("wrong length")
        plain = AESGCM(_key()).decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], scope.encode())
        (value,) = _VALUE.unpack(plain)
    except (binascii.Error, ValueError, InvalidTag, UnicodeEncodeError):
        raise ValidationFailed("cursor", "is not a cursor this API returned for this list") from None
    if value > MAX_VALUE:
        raise ValidationFailed("cursor", "is not a cursor this API returned for this list")
    return int(value)
