"""The gunicorn worker every API runs in: gthread, except that no slow client holds a thread.

gunicorn's gthread worker gives a connection to a thread as soon as its first byte arrives,
and the thread then blocks until the rest of the request has come: a dozen clients sending
one header line every few seconds held every thread, and the service stopped answering
(issue 18). Here the worker's main loop reads each request without blocking, next to all
the other connections, and a thread takes the connection only once the request's head and
the body it announces (up to BODY_BUFFER_BYTES) are in memory. A head not complete within
HEAD_TIMEOUT_S, or a body not within BODY_TIMEOUT_S after it, is answered 408 and closed.

The framing read here only decides when enough has arrived: the request is then parsed by
gunicorn's own parser, from the buffered bytes, which refuses whatever is malformed.
What it refuses leaves as application/problem+json, like every other answer of the APIs,
not as gunicorn's HTML error page.

TLS is terminated in front (infra/proxy): with a certificate configured the worker reads
requests like plain gthread.
"""

from __future__ import annotations

import json
import re
import selectors
import time
import uuid
from functools import partial
from typing import Any

from gunicorn import http, util
from gunicorn.workers.gthread import STOP_KEEPALIVE_LINGER, TConn, ThreadWorker

from shared.problems import PROBLEM_JSON, Problem

#: The request line and header fields must arrive within this (from the first byte of a
#: request, or from the connection when it is new).
HEAD_TIMEOUT_S = 10.0
#: A body must arrive within this after its head.
BODY_TIMEOUT_S = 30.0
#: A head longer than this is refused (431; 414 while it is still the request line).
HEAD_LIMIT_BYTES = 64 * 1024
#: A body up to this is read here; a longer one is left to the thread. The APIs refuse
#: anything over 256 KiB, having read no more than that.
BODY_BUFFER_BYTES = 512 * 1024
RECV_BYTES = 64 * 1024
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")


def write_problem(sock: Any, status: int, reason: str, detail: str) -> None:
    """An error gunicorn itself answers, as the APIs answer every error (problem+json)."""
    body = json.dumps(Problem(status, detail or reason, title=reason).body()).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "Connection: close\r\n"
        f"Content-Type: {PROBLEM_JSON}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "X-Content-Type-Options: nosniff\r\n"
        "Cache-Control: no-store\r\n"
        f"X-Correlation-ID: {uuid.uuid4()}\r\n"
        "\r\n"
    )
    util.write_nonblock(sock, head.encode("latin-1") + body)


class IncomingRequest:
    """The bytes of one request read so far, and whether a thread may take it yet.

    Incremental: each call to `complete` looks only at what arrived since the last one, so
    a client sending a byte at a time costs no more than one sending it all at once.
    """

    def __init__(self, data: bytes, now: float) -> None:
        self.data = bytearray(data)
        self.deadline = now + HEAD_TIMEOUT_S
        self._start = 0  # where the request line starts: empty lines before it are ignored
        self._scanned = 0  # how far the head's end has been looked for
        self.head_end: int | None = None
        self._body_end: int | None = None  # Content-Length framing: where the body ends
        self._chunk_at: int | None = None  # chunked framing: where the next chunk size starts

    def add(self, chunk: bytes) -> None:
        self.data += chunk

    def started(self) -> bool:
        """Whether any of a request has arrived (not only the empty lines allowed before it)."""
        self._skip_empty_lines()
        return self._start < len(self.data)

    def head_too_long(self) -> tuple[int, str] | None:
        """The status refusing a head longer than HEAD_LIMIT_BYTES (414 when its request
        line alone is), if it is."""
        end = len(self.data) if self.head_end is None else self.head_end
        if end - self._start <= HEAD_LIMIT_BYTES:
            return None
        line_end = self.data.find(b"\n", self._start, self._start + HEAD_LIMIT_BYTES + 1)
        if line_end < 0:
            return 414, "URI Too Long"
        return 431, "Request Header Fields Too Large"

    def complete(self, now: float) -> bool:
        """Whether the head and a body of known framing (up to the buffer) are all here."""
        if self.head_end is None:
            end = self._find_head_end()
            if end is None:
                return False
            self.head_end = end
            self.deadline = now + BODY_TIMEOUT_S
            if not self._frame_body():
                return True
        if len(self.data) - self.head_end > BODY_BUFFER_BYTES:
            return True
        if self._body_end is not None:
            return len(self.data) >= self._body_end
        return self._chunks_complete()

    def _skip_empty_lines(self) -> None:
        data = self.data
        while self._start < len(data) and data[self._start] in b"\r\n":
            self._start += 1

    def _find_head_end(self) -> int | None:
        data = self.data
        self._skip_empty_lines()
        begin = max(self._scanned - 3, self._start)
        self._scanned = len(data)
        ends = [found + len(marker) for marker in (b"\r\n\r\n", b"\n\n")
                if (found := data.find(marker, begin)) >= 0]
        return min(ends) if ends else None

    def _frame_body(self) -> bool:
        """Read the body's framing from the head; False when there is no body to wait for."""
        assert self.head_end is not None
        fields: dict[str, list[str]] = {}
        head = bytes(self.data[self._start:self.head_end]).decode("latin-1")
        for line in head.split("\n")[1:]:
            name, colon, value = line.partition(":")
            if colon:
                fields.setdefault(name.strip().lower(), []).append(value.strip())
        if "expect" in fields:
            return False  # the client waits for "100 Continue", which the thread sends
        if "transfer-encoding" in fields:
            codings = ",".join(fields["transfer-encoding"]).split(",")
            if codings[-1].strip().lower() != "chunked":
                return False  # a framing the parser refuses
            self._chunk_at = self.head_end
            return True
        lengths = fields.get("content-length", [])
        if len(lengths) != 1 or not lengths[0].isdigit() or int(lengths[0]) > BODY_BUFFER_BYTES:
            return False  # none, invalid (the parser refuses it) or too long to wait for
        self._body_end = self.head_end + int(lengths[0])
        return True

    def _chunks_complete(self) -> bool:
        data = self.data
        assert self._chunk_at is not None
        while True:
            line_end = data.find(b"\r\n", self._chunk_at)
            if line_end < 0:
                return False
            size_field = bytes(data[self._chunk_at:line_end]).split(b";", 1)[0].strip()
            if not _CHUNK_SIZE.fullmatch(size_field):
                return True  # malformed: the parser answers it
            size = int(size_field, 16)
            if size == 0:
                # The last chunk; then trailer fields, if any, up to an empty line.
                return data.find(b"\r\n\r\n", line_end) >= 0
            following = line_end + 2 + size + 2
            if following > len(data):
                return False
            self._chunk_at = following


class RequestBufferingWorker(ThreadWorker):
    """gthread whose threads only ever take requests that have arrived whole."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.incoming: dict[TConn, IncomingRequest] = {}

    def init_process(self) -> None:
        # gunicorn writes its own error answers (414, 431, 400 ...) through this one function.
        util.write_error = write_problem
        super().init_process()

    def enqueue_req(self, conn: TConn) -> None:
        """Every way a connection reaches the thread pool (new, kept alive, pipelined) comes
        here; it goes on to a thread once its next request is in memory."""
        if self.cfg.is_ssl:
            super().enqueue_req(conn)
            return
        pending = conn.parser.unreader.take_buffered() if conn.parser is not None else b""
        incoming = IncomingRequest(pending, time.monotonic())
        conn.sock.setblocking(False)
        self.incoming[conn] = incoming
        if pending and self._advance(conn, incoming):
            return
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))

    def _on_readable(self, conn: TConn, _sock: Any) -> None:
        try:
            chunk = conn.sock.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        incoming = self.incoming[conn]
        if not chunk:  # the client went away
            self._close(conn)
            return
        incoming.add(chunk)
        self._advance(conn, incoming)

    def _advance(self, conn: TConn, incoming: IncomingRequest) -> bool:
        """Hand the connection to a thread, or refuse its request, if either is due."""
        complete = incoming.complete(time.monotonic())
        too_long = incoming.head_too_long()
        if too_long:
            self._refuse(conn, *too_long, f"the request head may be at most {HEAD_LIMIT_BYTES} bytes")
            return True
        if complete:
            self._forget(conn)
            if conn.parser is None:
                conn.parser = http.get_parser(self.cfg, conn.sock, conn.client)
            conn.parser.unreader.unread(bytes(incoming.data))
            conn.data_ready = True
            super().enqueue_req(conn)
            return True
        return False

    def murder_pending(self) -> None:
        """Called by the main loop at least once a second: requests past their deadline."""
        super().murder_pending()
        now = time.monotonic()
        for conn, incoming in list(self.incoming.items()):
            if not self.alive and not incoming.started():
                # Stopping: a connection with no request begun waits no longer than a kept-alive one.
                incoming.deadline = min(incoming.deadline, now + STOP_KEEPALIVE_LINGER)
            if incoming.deadline > now:
                continue
            if incoming.started():
                self._refuse(conn, 408, "Request Timeout", "the request did not arrive in time")
            else:  # an idle connection that never started a request: nothing to answer
                self._close(conn)

    def _refuse(self, conn: TConn, status: int, reason: str, detail: str) -> None:
        try:
            write_problem(conn.sock, status, reason, detail)
        except OSError:
            pass  # the client is gone
        self._close(conn)

    def _forget(self, conn: TConn) -> None:
        del self.incoming[conn]
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError):
            pass  # handed over before it was ever registered (a pipelined request)

    def _close(self, conn: TConn) -> None:
        self._forget(conn)
        self.nr_conns -= 1
        conn.close()
