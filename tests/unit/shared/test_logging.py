"""Masking of credentials in log lines (shared.logging): pure, no I/O."""

from __future__ import annotations

import pytest

from shared.logging import _redact_processor, redact


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("key nck_AbCdEfGh12345678 used", "key [redacted] used"),
        ("secret whsec_c2VjcmV0c2VjcmV0 set", "secret [redacted] set"),
        ("token eyJhbGciOiJI.eyJzdWIiOiIx.c2lnbmF0dXJl!", "token [redacted]!"),
        ("Authorization: Bearer abc.def", "Authorization: Bearer [redacted]"),
        ("authorization: BEARER abc", "authorization: BEARER [redacted]"),
    ],
)
def test_every_kind_of_credential_is_masked(text: str, masked: str) -> None:
    assert redact(text) == masked


def test_text_without_a_credential_is_left_as_it_is() -> None:
    text = "/v1/commitments/5542b530-ff81-466f-90f6-11e724fb05ea/check-ins nck_ short"
    assert redact(text) == text  # "nck_ short": too short to be a key


def test_fields_named_like_secrets_are_masked_whatever_they_hold() -> None:
    line = _redact_processor(None, "info", {"event": "issued", "api_key": "anything", "Token": 3,
                                            "path": "/v1/x?k=nck_AbCdEfGh12345678"})
    assert line == {"event": "issued", "api_key": "[redacted]", "Token": "[redacted]", "path": "/v1/x?k=[redacted]"}
