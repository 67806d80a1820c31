"""Webhook SSRF: private, loopback, link-local and metadata targets are refused through the
notification service's HTTP API (private addresses not allowed, as in production), and the
sender never follows a redirect nor connects to a name that also resolves privately."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from services.notification.delivery.sender import send
from tests.security.conftest import PUBLIC_HOOK_URL, World

REFUSED = [
    "http://127.0.0.1/hooks",
    "http://127.1/hooks",  # short IPv4 form
    "http://0.0.0.0/hooks",
    "http://10.1.2.3/hooks",
    "http://172.16.0.1/hooks",
    "http://172.31.255.254/hooks",
    "http://192.168.1.1/hooks",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]/hooks",
    "http://[::ffff:127.0.0.1]/hooks",
    "http://[::ffff:7f00:1]/hooks",
    "http://[fd00::1]/hooks",  # IPv6 unique local
    "http://[fe80::1]/hooks",  # IPv6 link-local
    "http://2130706433/hooks",  # 127.0.0.1 as one decimal number
    "http://0177.0.0.1/hooks",  # octal
    "http://0x7f.0.0.1/hooks",  # hexadecimal
    "http://017700000001/hooks",  # one octal number
    "http://localhost/hooks",  # a name resolving to 127.0.0.1
    "http://localhost./hooks",
    "http://LOCALHOST:8003/hooks",
    "http://user:pass@127.0.0.1/hooks",
    "file:///etc/passwd",
    "gopher://127.0.0.1:25/",
    "ftp://1.1.1.1/",
    # A public host, but no webhook port: 80, 443 and 1024-65535 only.
    "https://1.1.1.1:22/hooks",
    "http://1.1.1.1:25/",
    "https://1.1.1.1:1023/",
]


@pytest.mark.parametrize("url", REFUSED)
def test_private_targets_are_refused_by_the_api(world: World, url: str) -> None:
    a = world.a
    created = httpx.post(world.suite.url("notification", "/v1/webhook-endpoints"), headers=a.admin,
                         json={"url": url, "event_types": ["*"]}, timeout=15)
    assert created.status_code == 422, (url, created.status_code, created.text)
    assert created.headers["content-type"] == "application/problem+json"
    assert "url" in created.json()["errors"], created.json()
    patched = httpx.patch(world.suite.url("notification", f"/v1/webhook-endpoints/{a.endpoint_id}"),
                          headers=a.admin, json={"url": url}, timeout=15)
    assert patched.status_code == 422 and "url" in patched.json()["errors"], (url, patched.text)


def test_a_refused_private_address_or_port_says_how_development_allows_it(world: World) -> None:
    for url in ("http://127.0.0.1:8000/hooks", "http://localhost:3000/", "https://1.1.1.1:22/"):
        refused = httpx.post(world.suite.url("notification", "/v1/webhook-endpoints"), headers=world.a.admin,
                             json={"url": url, "event_types": ["*"]}, timeout=15)
        assert refused.status_code == 422, (url, refused.text)
        assert "NOCONTACT_WEBHOOK_ALLOW_PRIVATE=true" in refused.json()["errors"]["url"][0], refused.text
    metadata = httpx.post(world.suite.url("notification", "/v1/webhook-endpoints"), headers=world.a.admin,
                          json={"url": "http://169.254.169.254/", "event_types": ["*"]}, timeout=15)
    assert metadata.status_code == 422 and "NOCONTACT_WEBHOOK_ALLOW_PRIVATE" not in metadata.text


def test_a_public_address_is_accepted(world: World) -> None:
    # The refusals above are about the address, not about every URL.
    endpoint = httpx.get(world.suite.url("notification", f"/v1/webhook-endpoints/{world.a.endpoint_id}"),
                         headers=world.a.admin, timeout=15)
    assert endpoint.status_code == 200 and endpoint.json()["url"] == PUBLIC_HOOK_URL


class _Recorder(BaseHTTPRequestHandler):
    hits: list[str] = []
    location = ""

    def do_POST(self) -> None:  # http.server calls do_<METHOD>
        type(self).hits.append(self.path)
        if self.location:
            self.send_response(302)
            self.send_header("Location", self.location)
        else:
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _serve(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_a_redirect_to_a_private_address_is_not_followed() -> None:
    class Inside(_Recorder):
        hits: list[str] = []

    class Redirector(_Recorder):
        hits: list[str] = []

    inside = _serve(Inside)
    Redirector.location = f"http://127.0.0.1:{inside.server_port}/admin"
    outside = _serve(Redirector)
    try:
        # allow_private only so that the test's redirector on loopback can be reached at all.
        result = send(f"http://127.0.0.1:{outside.server_port}/hooks", {}, b"{}", timeout_s=5, allow_private=True)
        assert Redirector.hits == ["/hooks"]
        assert Inside.hits == [], "the sender followed a redirect"
        assert result.status_code == 302  # recorded as a failed attempt, not success
    finally:
        inside.shutdown()
        outside.shutdown()


def test_a_name_that_also_resolves_privately_is_refused_before_connecting() -> None:
    """DNS rebinding: one public and one private answer; no connection is attempted."""
    def resolve(host: str, port: int | None, **_: object) -> list[tuple[object, ...]]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("1.1.1.1", port or 80)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.5", port or 80))]

    result = send("http://partner.example/hooks", {}, b"{}", timeout_s=2, allow_private=False, resolve=resolve)
    assert result.status_code is None and "refused" in (result.error or ""), result
