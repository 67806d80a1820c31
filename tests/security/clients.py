"""Clients the security tests play: slow ones that hold connections, and raw HTTP/1.1 for
requests no HTTP library would send."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

# Far longer than an answer takes, even on a loaded machine; the slow clients below are
# still connected when it comes, or the test fails.
REQUEST_TIMEOUT_S = 15.0
DRIP_INTERVAL_S = 1.0
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: nocontact\r\n\r\n"


def _read_response(sock: socket.socket) -> bytes:
    """One whole response (head and Content-Length body) from a kept-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        body += sock.recv(65536)
    return head


class SlowClient:
    """A connection that sends its request a piece at a time and never finishes it."""

    def __init__(self, address: tuple[str, int], opening: bytes, piece: bytes, *, kept_alive: bool = False):
        self.sock = socket.create_connection(address, timeout=REQUEST_TIMEOUT_S)
        self.piece = piece
        if kept_alive:  # one whole request first: the slow one comes on a kept-alive connection
            self.sock.sendall(HEALTHZ)
            assert _read_response(self.sock).startswith(b"HTTP/1.1 200")
        self.sock.sendall(opening)

    def send_piece(self) -> None:
        self.sock.sendall(self.piece)

    def unanswered(self) -> bool:
        """Still connected, and nothing came back (neither an answer nor a close)."""
        self.sock.setblocking(False)
        try:
            self.sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return True
        finally:
            self.sock.settimeout(REQUEST_TIMEOUT_S)
        return False


@contextmanager
def slow_clients(address: tuple[str, int], count: int) -> Iterator[list[SlowClient]]:
    """`count` slow clients of each kind, each sending a piece every DRIP_INTERVAL_S."""
    clients = []
    stop = threading.Event()
    try:
        for _ in range(count):
            clients.append(SlowClient(address, b"GET /healthz HTTP/1.1\r\nHost: nocontact\r\n", b"X-Slow: 1\r\n"))
            clients.append(SlowClient(address, b"GET /healthz HTTP/1.1\r\n", b"X-Slow: 1\r\n", kept_alive=True))
            clients.append(SlowClient(address, b"POST /v1/commitments HTTP/1.1\r\nHost: nocontact\r\n"
                                               b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{",
                                      b" "))

        def drip() -> None:
            while not stop.wait(DRIP_INTERVAL_S):
                for client in clients:
                    try:
                        client.send_piece()
                    except OSError:
                        pass  # answered and closed: unanswered() reports it

        dripping = threading.Thread(target=drip, daemon=True)
        dripping.start()
        yield clients
    finally:
        stop.set()
        for client in clients:
            client.sock.close()


def address_of(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


def raw(url: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send `request` as it is to `url`'s server, and read the answer until it closes."""
    with socket.create_connection(address_of(url), timeout=REQUEST_TIMEOUT_S * 2) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body
