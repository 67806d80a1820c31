"""Slow clients cannot take a service down (issue 18: 12 connections sending one header line
every 3 s made an API stop answering).

Against the real gunicorn-served APIs of the security suite (one worker of 4 threads each):
many more slow connections than threads, in every phase where a thread used to wait for
the client, while ordinary requests are answered. Then the deadline that frees whatever a
slow client holds, and the framing rules that decide when a request has arrived whole.
"""

from __future__ import annotations

import socket

import httpx
import pytest

from shared.gunicorn_worker import BODY_BUFFER_BYTES, BODY_TIMEOUT_S, HEAD_TIMEOUT_S, IncomingRequest
from tests.security.clients import REQUEST_TIMEOUT_S, address_of, slow_clients
from tests.security.conftest import World


@pytest.mark.parametrize("service", ["commitment", "checkin", "notification"])
def test_requests_are_answered_while_slow_clients_hold_more_connections_than_there_are_threads(
        world: World, service: str) -> None:
    base = world.suite.url(service)
    address = address_of(base)
    path = {"commitment": "/v1/commitments", "checkin": "/v1/settings", "notification": "/v1/webhook-endpoints"}
    threads = 4  # infra/gunicorn.conf.py's default (NOCONTACT_WEB_THREADS), one worker here
    with slow_clients(address, count=threads + 2) as clients:
        assert len(clients) == 3 * (threads + 2)
        with httpx.Client(timeout=REQUEST_TIMEOUT_S) as client:
            for _ in range(3):  # new connections each time: none is already in a thread's hands
                assert client.get(base + "/healthz", headers={"Connection": "close"}).status_code == 200
                answer = client.get(base + path[service], headers={**world.b.admin, "Connection": "close"})
                assert answer.status_code == 200, answer.text
        still_waiting = [client.unanswered() for client in clients]
        assert all(still_waiting), f"slow clients answered or cut off too early: {still_waiting}"


def test_a_head_that_does_not_arrive_in_time_is_answered_408_and_closed(world: World) -> None:
    with socket.create_connection(address_of(world.suite.url("checkin")), timeout=HEAD_TIMEOUT_S * 4) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: nocontact\r\n")
        answer = b""
        while chunk := sock.recv(65536):  # until the server closes the connection
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), answer
    assert b"Content-Type: application/problem+json" in head
    assert b'"status": 408' in body


# -- when a request has arrived whole (the worker's framing, without a server) -----------------


def _arrives(*pieces: bytes) -> list[bool]:
    """After each piece, whether the request counts as complete."""
    incoming = IncomingRequest(b"", now=0.0)
    seen = []
    for piece in pieces:
        incoming.add(piece)
        seen.append(incoming.complete(now=0.0))
    return seen


def test_a_head_is_complete_at_its_empty_line_even_sent_a_byte_at_a_time() -> None:
    request = b"\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    assert _arrives(*(request[i:i + 1] for i in range(len(request)))) == [False] * (len(request) - 1) + [True]


def test_a_body_of_known_length_is_waited_for() -> None:
    head = b"POST /v1/x HTTP/1.1\r\nHost: x\r\ncontent-length: 4\r\n\r\n"
    assert _arrives(head, b"ab", b"cd") == [False, False, True]
    # Larger than the buffer: the thread reads it (the API refuses it after its first 256 KiB).
    huge = f"POST /v1/x HTTP/1.1\r\nContent-Length: {BODY_BUFFER_BYTES + 1}\r\n\r\n".encode()
    assert _arrives(huge) == [True]
    # Invalid or repeated: gunicorn's parser answers it at once.
    assert _arrives(b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n") == [True]
    assert _arrives(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n") == [True]
    # The client waits for "100 Continue" before it sends the body: nothing to wait for here.
    assert _arrives(b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 9\r\n\r\n") == [True]


def test_a_chunked_body_is_waited_for_up_to_its_last_chunk_and_trailers() -> None:
    head = b"POST /v1/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    body = b"3\r\nabc\r\n1;ext=1\r\nd\r\n0\r\n\r\n"
    assert _arrives(head, *(body[i:i + 1] for i in range(len(body))))[-2:] == [False, True]
    assert _arrives(head, b"3\r\nabc\r\n0\r\nX-Trailer: 1\r\n", b"\r\n") == [False, False, True]
    assert _arrives(head, b"zz\r\n") == [False, True]  # malformed: the parser answers it
    assert _arrives(head, b"+3\r\n") == [False, True]
    # Another coding than chunked last: gunicorn refuses it at once.
    assert _arrives(b"POST /v1/x HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n") == [True]
    # A byte some text codecs take for a line break is no line break in HTTP.
    assert _arrives(b"POST /v1/x HTTP/1.1\r\nX-A: b\x85Content-Length: 5\r\n\r\n") == [True]
    # Longer than the buffer: the thread reads the rest.
    assert _arrives(head, b"%x\r\n" % (BODY_BUFFER_BYTES + 10) + b"a" * (BODY_BUFFER_BYTES + 1)) == [False, True]


def test_a_head_too_long_is_refused() -> None:
    line = IncomingRequest(b"GET /" + b"a" * 70_000, now=0.0)
    assert not line.complete(now=0.0) and line.head_too_long() == (414, "URI Too Long")
    line.add(b" HTTP/1.1\r\n\r\n")
    assert line.complete(now=0.0) and line.head_too_long() == (414, "URI Too Long")
    fields = IncomingRequest(b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * 10_000, now=0.0)
    assert not fields.complete(now=0.0) and fields.head_too_long() == (431, "Request Header Fields Too Large")
    fields.add(b"\r\n")
    assert fields.complete(now=0.0) and fields.head_too_long() == (431, "Request Header Fields Too Large")
    assert IncomingRequest(b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * 100 + b"\r\n", now=0.0).head_too_long() is None


def test_deadlines_run_from_the_first_byte_then_from_the_end_of_the_head() -> None:
    incoming = IncomingRequest(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n", now=100.0)
    assert incoming.deadline == 100.0 + HEAD_TIMEOUT_S
    incoming.add(b"\r\n")
    assert not incoming.complete(now=105.0)
    assert incoming.deadline == 105.0 + BODY_TIMEOUT_S
