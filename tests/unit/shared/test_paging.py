"""Cursors reveal nothing, cannot be forged, and belong to one list of one tenant."""

from __future__ import annotations

import pytest

from shared.errors import ValidationFailed
from shared.paging import MAX_VALUE, decode_cursor, encode_cursor


def test_round_trip_and_opacity() -> None:
    cursor = encode_cursor("t1:commitments", 1234)
    assert decode_cursor("t1:commitments", cursor) == 1234
    assert "1234" not in cursor
    assert encode_cursor("t1:commitments", 1234) != cursor  # a fresh nonce each time
    assert decode_cursor("t1:commitments", None) is None


@pytest.mark.parametrize("cursor", ["", "x", "-1", "99999999999999999999999", "€€€", "a" * 10_000, "MTIz"])
def test_anything_not_issued_is_a_validation_error_naming_cursor(cursor: str) -> None:
    with pytest.raises(ValidationFailed) as raised:
        decode_cursor("t1:commitments", cursor)
    assert raised.value.field == "cursor"


def test_a_cursor_of_another_tenant_or_list_is_refused() -> None:
    cursor = encode_cursor("t1:commitments", 5)
    for scope in ("t2:commitments", "t1:endpoints"):
        with pytest.raises(ValidationFailed):
            decode_cursor(scope, cursor)


def test_values_outside_a_database_key_cannot_be_encoded() -> None:
    assert decode_cursor("s", encode_cursor("s", MAX_VALUE)) == MAX_VALUE
    for value in (-1, MAX_VALUE + 1):
        with pytest.raises(ValueError):
            encode_cursor("s", value)
