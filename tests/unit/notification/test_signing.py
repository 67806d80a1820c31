"""Signatures must verify with the reference ``standardwebhooks`` package."""

from __future__ import annotations

import base64
import time

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from services.notification.domain import signing
from services.notification.domain.signing import (
    SigningError,
    decode_secret,
    generate_secret,
    headers,
    sign,
)

BODY = b'{"type":"streak.milestone_reached","timestamp":"2024-05-01T10:00:00Z","data":{"days":7}}'


def test_generate_secret_is_prefixed_base64_of_enough_random_bytes() -> None:
    secret = generate_secret()
    assert secret.startswith("whsec_")
    raw = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    assert 24 <= len(raw) <= 32
    assert generate_secret() != secret


def test_generate_secret_uses_the_injected_random_source() -> None:
    secret = generate_secret(24, random_bytes=lambda n: b"\x01" * n)
    assert secret == "whsec_" + base64.b64encode(b"\x01" * 24).decode()


def test_generate_secret_refuses_too_small() -> None:
    with pytest.raises(SigningError):
        generate_secret(16)


def test_single_secret_verifies_with_standardwebhooks() -> None:
    secret = generate_secret()
    now = int(time.time())
    hdrs = headers([secret], "msg_2Lh9", now, BODY)
    assert hdrs["webhook-id"] == "msg_2Lh9"
    assert hdrs["webhook-timestamp"] == str(now)
    assert hdrs["content-type"] == "application/json"
    assert hdrs["webhook-signature"].startswith("v1,")
    assert Webhook(secret).verify(BODY, hdrs)["data"] == {"days": 7}


def test_each_secret_of_a_rotation_verifies() -> None:
    old, new = generate_secret(), generate_secret()
    hdrs = headers([new, old], "msg_1", int(time.time()), BODY)
    assert len(hdrs["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        Webhook(secret).verify(BODY, hdrs)


def test_a_secret_not_used_does_not_verify() -> None:
    hdrs = headers([generate_secret()], "msg_1", int(time.time()), BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(BODY, hdrs)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda b, h: (b.replace(b"7", b"8"), h),
        lambda b, h: (b, {**h, "webhook-id": "msg_other"}),
        lambda b, h: (
            b,
            {**h, "webhook-timestamp": str(int(h["webhook-timestamp"]) + 1)},
        ),
    ],
    ids=["body", "id", "timestamp"],
)
def test_tampering_fails_verification(tamper) -> None:  # type: ignore[no-untyped-def]
    secret = generate_secret()
    hdrs = headers([secret], "msg_1", int(time.time()), BODY)
    body, hdrs = tamper(BODY, hdrs)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, hdrs)


def test_signature_matches_known_vector() -> None:
    # Vector from the Standard Webhooks reference tests.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    assert decode_secret(secret)
    assert (
        sign([secret], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
        == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


def test_sign_is_deterministic_and_bytes_exact() -> None:
    secret = generate_secret()
    a = sign([secret], "m", 1, b"\xc3\xa9")
    assert a == sign([secret], "m", 1, b"\xc3\xa9")
    assert a != sign([secret], "m", 1, b"\xc3\xa8")


@pytest.mark.parametrize(
    ("secrets", "msg_id", "timestamp"),
    [
        ([], "m", 1),
        ("whsec_abc", "m", 1),
        (["not-prefixed"], "m", 1),
        (["whsec_!!!!"], "m", 1),
        (["whsec_" + base64.b64encode(b"short").decode()], "m", 1),
        (["VALID"], "", 1),
        (["VALID"], "a b", 1),
        (["VALID"], "a\nb", 1),
        (["VALID"], "m", -1),
        (["VALID"], "m", True),
    ],
)
def test_sign_refuses_bad_input(secrets: list[str] | str, msg_id: str, timestamp: int) -> None:
    if isinstance(secrets, list):
        secrets = [generate_secret() if s == "VALID" else s for s in secrets]
    with pytest.raises(SigningError):
        sign(secrets, msg_id, timestamp, b"{}")


def test_decode_secret_accepts_unpadded() -> None:
    raw = bytes(range(25))
    unpadded = base64.b64encode(raw).decode().rstrip("=")
    assert decode_secret(signing.SECRET_PREFIX + unpadded) == raw
