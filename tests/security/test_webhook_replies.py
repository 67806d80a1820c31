"""A receiver's reply is the receiver's text: the attempt log keeps its first KiB, as plain
text with invalid UTF-8 and control characters replaced, and the API serves it as JSON."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from services.notification.delivery.sender import send

HOSTILE = (b"<html><script>alert(document.cookie)</script>\x00\x07\x1b]0;pwned\x07\x1b[2J\r"
           + "\u202e\u2066".encode() + b"\xc3\x28\xa0\xa1" + b"A" * 5000)


class _Hostile(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # http.server calls do_<METHOD>
        self.rfile.read(int(self.headers.get("content-length", "0")))
        self.send_response(500)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.send_header("content-length", str(len(HOSTILE)))
        self.end_headers()
        self.wfile.write(HOSTILE)

    def log_message(self, *args: object) -> None:
        pass


def test_a_hostile_reply_is_kept_capped_and_as_inert_text() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        # allow_private only so that the test's receiver on loopback can be reached at all.
        result = send(f"http://127.0.0.1:{server.server_port}/hooks", {}, b"{}", timeout_s=5, allow_private=True)
    finally:
        server.shutdown()
        server.server_close()
    assert result.status_code == 500
    excerpt = result.response_excerpt
    assert len(excerpt) <= 1024 and excerpt.endswith("A")
    assert not any(ord(ch) < 0x20 and ch not in "\n\t" for ch in excerpt)  # no terminal escapes, no NUL
    assert not any(ch in excerpt for ch in "\x7f\u202e\u2066")  # no text reordering
    assert "\ufffd(" in excerpt  # invalid UTF-8 shown as such, the valid rest kept
    # HTML stays text: the attempt log is JSON (nosniff), and nothing renders it.
    assert excerpt.startswith("<html><script>alert(document.cookie)</script>")
