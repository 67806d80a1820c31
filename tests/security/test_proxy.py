"""The reverse proxy of docker-compose.yml (infra/proxy/), run for real: Debian's nginx with
the repository's configuration, in front of the security suite's gunicorn-served APIs.

Only the upstream addresses and the listening ports are changed (there is no Docker here);
every other line is the one production runs.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

import httpx
import pytest

from shared import testing
from shared.config import PORT_DEFAULTS, REPO_ROOT
from shared.testing import bearer, wait_until
from shared.web import MAX_BODY_BYTES
from tests.security.clients import REQUEST_TIMEOUT_S, address_of, raw, slow_clients
from tests.security.conftest import World
from tests.support import debian
from tests.support.suite import SERVICES, commitment_body, create_tenant, free_port

PROXY = REPO_ROOT / "infra" / "proxy"


def _nginx() -> str:
    """Debian's nginx, installed with apt-get when missing."""
    return debian.program(shutil.which("nginx") or "/usr/sbin/nginx", "nginx")


@dataclass
class Proxy:
    urls: dict[str, str]

    def url(self, service: str, path: str = "") -> str:
        return self.urls[service] + path


@pytest.fixture(scope="module")
def proxy(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    binary = _nginx()
    folder = tmp_path_factory.mktemp("proxy")
    config = (PROXY / "nginx.conf").read_text()
    # One more server like the commitment API's, in front of an address nothing listens on.
    server = re.search(r"\n    server \{\n        listen 8001;.*?\n    \}\n", config, re.S)
    assert server, "the commitment API's server block"
    unreachable = free_port()
    urls = {"unreachable": f"http://127.0.0.1:{unreachable}"}
    config = config.replace(server.group(), server.group() + server.group()
                            .replace("listen 8001;", f"listen 127.0.0.1:{unreachable};")
                            .replace("commitment-api:8001", f"127.0.0.1:{free_port()}"))
    for service in SERVICES:
        port = free_port()
        urls[service] = f"http://127.0.0.1:{port}"
        upstream = world.suite.url(service).removeprefix("http://")
        for production, here in ((f"listen {PORT_DEFAULTS[service]};", f"listen 127.0.0.1:{port};"),
                                 (f"set $api {service}-api:{PORT_DEFAULTS[service]};", f"set $api {upstream};")):
            assert production in config, production
            config = config.replace(production, here)
    (folder / "nginx.conf").write_text(config)
    shutil.copy(PROXY / "api.conf", folder / "api.conf")
    settings = f"daemon off; pid {folder}/nginx.pid; error_log {folder}/error.log;"
    checked = subprocess.run([binary, "-t", "-c", str(folder / "nginx.conf"), "-g", settings],
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stderr
    with open(folder / "access.log", "wb") as log:
        process = subprocess.Popen([binary, "-c", str(folder / "nginx.conf"), "-g", settings],
                                   stdout=log, stderr=subprocess.STDOUT)
    try:
        running = Proxy(urls)
        for service in SERVICES:
            wait_until(lambda s=service: testing.port_answers(*address_of(running.url(s))), 30,
                       message=f"the proxy on {running.url(service)}")
        yield running
    finally:
        process.terminate()
        process.wait(30)


def _problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["content-type"] == "application/problem+json", response.headers
    assert response.headers["x-content-type-options"] == "nosniff"
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    return body


@pytest.mark.parametrize("service", SERVICES)
def test_every_api_answers_through_the_proxy_and_its_metrics_stay_inside(proxy: Proxy, world: World,
                                                                         service: str) -> None:
    paths = {"commitment": "/v1/commitments", "checkin": "/v1/settings", "notification": "/v1/webhook-endpoints"}
    with httpx.Client(timeout=REQUEST_TIMEOUT_S) as client:
        health = client.get(proxy.url(service, "/healthz"))
        assert health.status_code == 200 and health.json()["service"] == service
        listed = client.get(proxy.url(service, paths[service]), headers={**world.b.admin, "X-Correlation-ID": "c-1"})
        assert listed.status_code == 200 and listed.headers["X-Correlation-ID"] == "c-1"
        assert listed.headers["Cache-Control"] == "no-store"  # the API's own headers pass through
        # An API's own problem passes through untouched.
        assert _problem(client.get(proxy.url(service, paths[service])), 401)["type"].endswith("unauthorized")
        _problem(client.get(proxy.url(service, "/metrics")), 404)
        assert client.get(world.suite.url(service, "/metrics")).status_code == 200  # inside: still there


def test_the_proxy_refuses_bodies_over_the_api_limit_as_problems(proxy: Proxy, world: World) -> None:
    url = proxy.url("commitment", "/v1/commitments")
    headers = {**world.b.admin, "Content-Type": "application/json"}
    text = json.dumps(commitment_body("m-proxy", world.day)).encode()
    _problem(httpx.post(url, content=text + b" " * MAX_BODY_BYTES, headers=headers, timeout=30), 413)

    def chunked() -> Iterator[bytes]:
        yield text
        for _ in range(MAX_BODY_BYTES // 8192 + 2):
            yield b" " * 8192

    _problem(httpx.post(url, content=chunked(), headers=headers, timeout=30), 413)
    within = httpx.post(url, content=text + b" " * (MAX_BODY_BYTES - len(text)), headers=headers, timeout=30)
    assert within.status_code == 201, within.text[:300]


@pytest.mark.parametrize(("name", "request_bytes", "status"), [
    ("request line too long", b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    ("a header field too large", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 20_000 + b"\r\n\r\n", 431),
    ("all header fields too large", b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
     + b"".join(b"X-%d: %s\r\n" % (i, b"y" * 15_000) for i in range(6)) + b"\r\n", 431),
    ("not HTTP", b"GET / HTTP/1.1\r\nHost: x\r\nX: \x00\r\n\r\n", 400),
])
def test_what_the_proxy_refuses_itself_is_problem_json(proxy: Proxy, name: str, request_bytes: bytes,
                                                       status: int) -> None:
    answered, headers, body = raw(proxy.url("checkin"), request_bytes)
    assert answered == status, (name, answered, body[:300])
    assert headers["content-type"] == "application/problem+json", (name, headers)
    assert json.loads(body)["status"] == status


def test_slow_clients_at_the_proxy_do_not_keep_requests_from_being_answered(proxy: Proxy, world: World) -> None:
    with slow_clients(address_of(proxy.url("checkin")), count=10) as clients:
        with httpx.Client(timeout=REQUEST_TIMEOUT_S) as client:
            for _ in range(3):
                assert client.get(proxy.url("checkin", "/healthz"), headers={"Connection": "close"}).status_code == 200
                answer = client.get(proxy.url("checkin", "/v1/settings"), headers={**world.b.admin,
                                                                                   "Connection": "close"})
                assert answer.status_code == 200, answer.text
        assert all(client.unanswered() for client in clients)


def test_an_api_the_proxy_cannot_reach_is_a_503_problem(proxy: Proxy) -> None:
    _problem(httpx.get(proxy.url("unreachable", "/v1/commitments"), timeout=REQUEST_TIMEOUT_S), 503)


def test_the_access_log_has_the_client_address_the_proxy_forwards(proxy: Proxy, world: World) -> None:
    correlation_id = f"xff-{uuid.uuid4().hex[:8]}"
    # What a client claims was forwarded is dropped: the proxy sends the address it saw.
    response = httpx.get(proxy.url("commitment", "/healthz"), timeout=REQUEST_TIMEOUT_S,
                         headers={"X-Correlation-ID": correlation_id, "X-Forwarded-For": "203.0.113.9"})
    assert response.status_code == 200

    def access_line() -> dict[str, object] | None:
        for line in world.suite.logs().splitlines():
            if correlation_id in line and '"nocontact.access"' in line:
                return dict(json.loads(line))
        return None

    logged = wait_until(access_line, 15, message="the request's access line")
    assert logged["forwarded_for"] == "127.0.0.1" and logged["client"] == "127.0.0.1"
    assert logged["route"] == "/healthz" and logged["status"] == 200


def test_an_id_with_a_slash_reaches_the_api_through_the_proxy(proxy: Proxy, world: World) -> None:
    # nginx passes the request target on as sent: %2F stays inside the id (shared.rawpath).
    coach, member = f"coach/proxy/{uuid.uuid4().hex[:6]}", f"m/proxy/{uuid.uuid4().hex[:6]}"
    with httpx.Client(timeout=REQUEST_TIMEOUT_S) as client:
        admin = bearer(create_tenant(world.suite, client, "Proxy Slash").api_key)
        created = client.post(proxy.url("commitment", "/v1/commitments"), headers=admin,
                              json=commitment_body(member, world.day))
        assert created.status_code == 201, created.text
        path = f"/v1/coaches/{quote(coach, safe='')}/clients/{quote(member, safe='')}"
        assigned = client.put(proxy.url("commitment", path), headers=admin)
        assert assigned.status_code == 204, assigned.text
        read = client.get(proxy.url("commitment", f"/v1/commitments/{created.json()['id']}"), headers=admin)
        assert read.json()["coach_id"] == coach
