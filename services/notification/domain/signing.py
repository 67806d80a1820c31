"""Standard Webhooks signing (https://www.standardwebhooks.com/).

Receivers verify our deliveries with the off-the-shelf ``standardwebhooks``
package, so the exact byte layout matters more than anything else here: the
signed content is ``f"{msg_id}.{timestamp}.{body}"`` and the header carries
``v1,<base64 HMAC-SHA256>``, one entry per active secret, space separated, so
that a secret rotation can overlap (receivers accept any matching entry).

Pure: no clock, no I/O. The only randomness is secret generation, which must
come from a CSPRNG, so it uses :mod:`secrets` (injectable for tests).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable, Sequence
from secrets import token_bytes

SECRET_PREFIX = "whsec_"
#: Svix uses 24 bytes, the spec allows 24..64; 32 bytes is a full SHA-256 block key.
SECRET_BYTES = 32
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64
SIGNATURE_VERSION = "v1"
DEFAULT_CONTENT_TYPE = "application/json"

_FORBIDDEN_ID_CHARS = frozenset(" \t\r\n\x00")


class SigningError(ValueError):
    """A secret, message id or timestamp cannot be used to sign."""


def generate_secret(
    nbytes: int = SECRET_BYTES,
    random_bytes: Callable[[int], bytes] = token_bytes,
) -> str:
    """Return a new endpoint secret ``whsec_<base64>``.

    The ``whsec_`` prefix is what ``standardwebhooks.Webhook`` strips, so the
    value can be pasted into a receiver's configuration as is.
    """
    if not MIN_SECRET_BYTES <= nbytes <= MAX_SECRET_BYTES:
        raise SigningError(f"secret size must be {MIN_SECRET_BYTES}..{MAX_SECRET_BYTES} bytes")
    raw = random_bytes(nbytes)
    if len(raw) != nbytes:
        raise SigningError("random source returned the wrong number of bytes")
    return SECRET_PREFIX + base64.b64encode(raw).decode("ascii")


def decode_secret(secret: str) -> bytes:
    """Return the HMAC key of a ``whsec_`` secret.

    Strict on purpose: a malformed secret stored by mistake must fail loudly at
    signing time rather than produce signatures nobody can verify.
    """
    if not secret.startswith(SECRET_PREFIX):
        raise SigningError("secret must start with 'whsec_'")
    encoded = secret[len(SECRET_PREFIX) :]
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SigningError("secret is not valid base64") from exc
    if len(key) < MIN_SECRET_BYTES:
        raise SigningError(f"secret must hold at least {MIN_SECRET_BYTES} bytes")
    return key


def _check_msg_id(msg_id: str) -> None:
    # The id goes into a header and into the signed content: whitespace or a
    # NUL would break the header or make the signed string ambiguous.
    if not msg_id or any(ch in _FORBIDDEN_ID_CHARS for ch in msg_id):
        raise SigningError("message id must be non-empty and contain no whitespace")


def signed_content(msg_id: str, timestamp: int, body: bytes) -> bytes:
    """Return the exact bytes that are MAC'd: ``{msg_id}.{timestamp}.{body}``."""
    _check_msg_id(msg_id)
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or timestamp < 0:
        raise SigningError("timestamp must be a non-negative integer (unix seconds)")
    return f"{msg_id}.{timestamp}.".encode() + body


def sign(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """Return the ``webhook-signature`` header value for ``body``.

    One ``v1,<sig>`` per secret, in the given order, space separated: during a
    rotation both the new and the old secret sign, so receivers that still hold
    the old one keep verifying until the overlap ends.
    """
    if isinstance(secrets, str):
        # A bare string is a sequence of characters: refuse the classic mistake.
        raise SigningError("secrets must be a list of secrets, not a single string")
    if not secrets:
        raise SigningError("at least one secret is required")
    content = signed_content(msg_id, timestamp, body)
    parts = []
    for secret in secrets:
        mac = hmac.new(decode_secret(secret), content, hashlib.sha256).digest()
        parts.append(f"{SIGNATURE_VERSION},{base64.b64encode(mac).decode('ascii')}")
    return " ".join(parts)


def headers(
    secrets: Sequence[str],
    msg_id: str,
    timestamp: int,
    body: bytes,
    content_type: str = DEFAULT_CONTENT_TYPE,
) -> dict[str, str]:
    """Return the delivery headers of one attempt.

    ``msg_id`` must be the same on every retry of a message (receivers
    deduplicate on it); ``timestamp`` is the attempt time, so each retry is
    signed afresh and stays within receivers' replay-tolerance window.
    """
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secrets, msg_id, timestamp, body),
        "content-type": content_type,
    }
