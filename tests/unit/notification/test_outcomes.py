"""Attempt classification and the endpoint health rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.notification.domain.outcomes import (
    EXCERPT_BYTES,
    Outcome,
    Verdict,
    after_attempt,
    classify,
    failing_since,
    reply_excerpt,
    should_disable,
)

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
OK = Outcome(Verdict.DELIVERED, "HTTP 200")
FAIL = Outcome(Verdict.RETRY, "HTTP 500")
GONE = Outcome(Verdict.DISABLE_ENDPOINT, "HTTP 410")


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_2xx_is_delivered(status: int) -> None:
    assert classify(status, None, now=NOW).verdict is Verdict.DELIVERED


def test_410_disables_the_endpoint() -> None:
    assert classify(410, None, now=NOW).verdict is Verdict.DISABLE_ENDPOINT


@pytest.mark.parametrize(
    "status",
    [100, 301, 302, 303, 307, 308, 400, 401, 403, 404, 409, 429, 500, 502, 503, 504],
)
def test_everything_else_is_retried(status: int) -> None:
    outcome = classify(status, None, now=NOW)
    assert outcome.verdict is Verdict.RETRY
    assert str(status) in outcome.reason


def test_redirect_reason_says_it_was_not_followed() -> None:
    assert "not followed" in classify(302, None, now=NOW).reason


@pytest.mark.parametrize("error", ["timeout: ReadTimeout", "connect: refused", "refused: loopback"])
def test_transport_errors_are_retried(error: str) -> None:
    outcome = classify(None, error, now=NOW)
    assert outcome.verdict is Verdict.RETRY
    assert outcome.reason == error


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_kept_for_429_and_503(status: int) -> None:
    assert classify(status, None, retry_after="30", now=NOW).retry_after_s == 30.0


@pytest.mark.parametrize("status", [500, 302, 200])
def test_retry_after_ignored_for_other_statuses(status: int) -> None:
    assert classify(status, None, retry_after="30", now=NOW).retry_after_s is None


def test_failure_starts_the_clock_and_later_failures_keep_it() -> None:
    first = failing_since(None, FAIL, NOW)
    assert first == NOW
    assert failing_since(first, FAIL, NOW + timedelta(days=1)) == NOW


def test_success_resets_the_clock() -> None:
    assert failing_since(NOW, OK, NOW + timedelta(days=4)) is None


def test_disabled_after_five_days_of_failures_only() -> None:
    assert not should_disable(None, NOW)
    assert not should_disable(NOW, NOW + timedelta(days=5) - timedelta(seconds=1))
    assert should_disable(NOW, NOW + timedelta(days=5))


def test_threshold_is_configurable() -> None:
    assert should_disable(NOW, NOW + timedelta(days=2), threshold=timedelta(days=2))
    with pytest.raises(ValueError, match="threshold"):
        should_disable(NOW, NOW, threshold=timedelta(0))


def test_after_attempt_success_in_between_restarts_the_count() -> None:
    since, disable = after_attempt(None, FAIL, NOW)
    assert (since, disable) == (NOW, False)
    since, disable = after_attempt(since, OK, NOW + timedelta(days=3))
    assert (since, disable) == (None, False)
    since, disable = after_attempt(since, FAIL, NOW + timedelta(days=4))
    since, disable = after_attempt(since, FAIL, NOW + timedelta(days=8, hours=23))
    assert not disable
    _, disable = after_attempt(since, FAIL, NOW + timedelta(days=9))
    assert disable


def test_after_attempt_410_disables_at_once() -> None:
    assert after_attempt(None, GONE, NOW) == (NOW, True)


def test_a_reply_excerpt_is_its_first_kib_as_safe_plain_text() -> None:
    assert reply_excerpt(b"ok") == "ok"
    assert reply_excerpt(b"") == ""
    # Invalid UTF-8 and control characters (but tabs and line feeds) are replaced, never kept.
    assert reply_excerpt(b"a\xffb\x00c\x1b[31md\r\ne\tf\rg\x7fh\xc2\x85i") == (
        "a\ufffdb\ufffdc\ufffd[31md\ne\tf\ufffdg\ufffdh\ufffdi"
    )
    # Text that hides or reorders what follows, and HTML, which stays text (the answer is JSON).
    assert reply_excerpt("x\u202egnp.exe\u2066y".encode()) == "x\ufffdgnp.exe\ufffdy"
    assert reply_excerpt(b"<script>alert(1)</script>") == "<script>alert(1)</script>"
    # At most EXCERPT_BYTES: a character cut in two by the limit is dropped, not garbled.
    euro = "\u20ac".encode()  # 3 bytes
    long = euro * 400  # 1200 bytes
    cut = reply_excerpt(long)
    assert cut == "\u20ac" * (EXCERPT_BYTES // 3) and len(cut.encode()) <= EXCERPT_BYTES
    # A reply that ends in a broken character is not cut: the break is shown.
    assert reply_excerpt(b"ok\xe2\x82") == "ok\ufffd"
    assert reply_excerpt(b"x" * 5000) == "x" * EXCERPT_BYTES
