"""One HTTP attempt of a webhook delivery, hardened against SSRF.

The request goes to an address vetted by :func:`vet_url`, not to whatever the
HTTP client would resolve: the URL handed to httpx carries the IP, while the
``Host`` header and the TLS SNI / certificate check (httpx request extension
``sni_hostname``) keep the partner's host name, so virtual hosting and TLS
verification work as if we had connected by name.

Other choices and why:

* ``follow_redirects=False``: a redirect to ``http://169.254.169.254/`` would
  bypass every check; a 3xx is recorded as a failed attempt.
* ``trust_env=False``: an ``HTTP(S)_PROXY`` in the environment would make the
  proxy resolve the name again, undoing the pinning (and .netrc would add
  credentials).
* ``accept-encoding: identity`` and a bounded read: we keep only the first
  :data:`EXCERPT_BYTES` of the answer for the deliveries log (as safe text:
  ``outcomes.reply_excerpt``), and a receiver must not be able to make us
  download or decompress a large body.
* Every failure is returned as an error string, never raised: the caller is a
  worker loop that must record the attempt and move on.
* Connection reuse (:class:`ClientPool`): a TCP (+TLS) handshake per attempt
  capped delivery at a few dozen per second. Keep-alive clients are keyed by
  the *vetted* ``(scheme, ip, port, SNI host, verify)``, never by the URL: the
  name is still resolved and vetted at every attempt, and a connection is only
  reused for the very address (and, for TLS, the very certificate name) that
  this attempt's vetting allowed. One client per key because httpcore pools by
  origin (the IP) alone and would otherwise hand a TLS connection verified for
  one host name to a request for another name on the same IP. Resolutions are
  NOT cached: getaddrinfo costs microseconds next to an HTTP round trip.

Known limit: httpx timeouts apply per phase (connect, each read), so a peer
dripping its response headers can hold an attempt longer than ``timeout_s``;
the per-endpoint concurrency cap of the worker bounds the damage. The body
read is additionally cut at the overall deadline.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

from services.notification.delivery.resolver import (
    ResolutionFailed,
    Resolver,
    UrlRefused,
    VettedTarget,
    vet_url,
)
from services.notification.domain.outcomes import EXCERPT_BYTES, reply_excerpt
from services.notification.domain.ssrf import IPAddress

USER_AGENT = "nocontact-webhooks/1"

# Error kinds: the prefix of ``AttemptResult.error`` (``"<kind>: <detail>"``).
ERR_REFUSED = "refused"
ERR_DNS = "dns"
ERR_TIMEOUT = "timeout"
ERR_CONNECT = "connect"
ERR_PROTOCOL = "protocol"
ERR_UNEXPECTED = "unexpected"


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What happened on one attempt, ready to be logged and classified.

    Exactly one of ``status_code`` and ``error`` is set. ``retry_after`` is the
    raw ``Retry-After`` header (parse it with the domain's clock).
    ``ip`` is the address actually contacted, for the operator's log.
    """

    status_code: int | None
    duration_ms: int
    error: str | None
    retry_after: str | None
    response_excerpt: str
    ip: str | None = None


_default_tls: ssl.SSLContext | None = None


def _tls_context(verify: ssl.SSLContext | bool) -> ssl.SSLContext | bool:
    """Reuse one verifying context: building it loads the CA bundle (tens of ms).

    An ``SSLContext`` is safe to share between threads once configured.
    """
    global _default_tls
    if verify is not True:
        return verify
    if _default_tls is None:
        _default_tls = httpx.create_ssl_context()
    return _default_tls


#: Idle keep-alive connections are dropped after this long: below the 5 s idle timeout
#: of common servers (Node's default), so we rarely send on a connection the peer is
#: closing at that very moment.
KEEPALIVE_EXPIRY_S = 4.0

#: httpcore's message when the peer closed the connection before answering.
STALE_CONNECTION = "without sending a response"

ClientKey = tuple[str, str, int, str, int]


class _Entry:
    __slots__ = ("client", "retired", "users")

    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        self.users = 0
        self.retired = False


class ClientPool:
    """Keep-alive httpx clients for vetted targets, at most ``max_clients`` of them.

    The least recently used client is retired when a new key needs room; a retired
    client is closed once the attempts using it are done (never under their feet).
    Thread-safe: the delivery worker's threads share one pool.
    """

    def __init__(self, max_clients: int = 64, max_keepalive_per_client: int = 32) -> None:
        self.max_clients = max_clients
        self.limits = httpx.Limits(
            max_connections=None,  # concurrency is bounded by the worker's per-endpoint cap
            max_keepalive_connections=max_keepalive_per_client,
            keepalive_expiry=KEEPALIVE_EXPIRY_S,
        )
        self._entries: OrderedDict[ClientKey, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _new_client(self, verify: ssl.SSLContext | bool) -> httpx.Client:
        return httpx.Client(
            follow_redirects=False,
            trust_env=False,
            verify=_tls_context(verify),
            limits=self.limits,
        )

    @contextmanager
    def client(self, key: ClientKey, verify: ssl.SSLContext | bool) -> Iterator[httpx.Client]:
        retire: list[_Entry] = []
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = _Entry(self._new_client(verify))
                self._entries[key] = entry
                while len(self._entries) > self.max_clients:
                    _, old = self._entries.popitem(last=False)
                    old.retired = True
                    if old.users == 0:
                        retire.append(old)
            else:
                self._entries.move_to_end(key)
            entry.users += 1
        for old in retire:
            old.client.close()
        try:
            yield entry.client
        finally:
            with self._lock:
                entry.users -= 1
                done = entry.retired and entry.users == 0
            if done:
                entry.client.close()

    def close(self) -> None:
        """Close every client: idle ones now, those in use when their attempts end.

        The pool stays usable (new clients are made on demand).
        """
        idle: list[_Entry] = []
        with self._lock:
            for entry in self._entries.values():
                entry.retired = True
                if entry.users == 0:
                    idle.append(entry)
            self._entries.clear()
        for entry in idle:
            entry.client.close()


def _url_for(target: VettedTarget, ip: IPAddress) -> str:
    literal = f"[{ip}]" if isinstance(ip, ipaddress.IPv6Address) else str(ip)
    return f"{target.scheme}://{literal}:{target.port}{target.target}"


def _elapsed_ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _attempt(
    client: httpx.Client,
    target: VettedTarget,
    ip: IPAddress,
    headers: Mapping[str, str],
    body: bytes,
    deadline: float,
    timeout_s: float,
) -> tuple[int, str | None, str]:
    request_headers = {k.lower(): v for k, v in headers.items()}
    request_headers["host"] = target.host_header
    request_headers.setdefault("user-agent", USER_AGENT)
    request_headers["accept-encoding"] = "identity"
    extensions: dict[str, str] = {}
    if target.scheme == "https" and not target.is_ip_literal:
        extensions["sni_hostname"] = target.host
    request = client.build_request(
        "POST",
        _url_for(target, ip),
        headers=request_headers,
        content=body,
        extensions=extensions,
        timeout=httpx.Timeout(timeout_s),
    )
    response = client.send(request, stream=True)
    try:
        excerpt = bytearray()
        try:
            for chunk in response.iter_raw():
                excerpt += chunk
                if len(excerpt) >= EXCERPT_BYTES or time.perf_counter() >= deadline:
                    break
        except httpx.HTTPError:
            # The status is what counts; a body cut short only shortens the log.
            pass
        return response.status_code, response.headers.get("retry-after"), reply_excerpt(bytes(excerpt))
    finally:
        response.close()


def send(
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    timeout_s: float = 15.0,
    allow_private: bool = False,
    resolve: Resolver = socket.getaddrinfo,
    verify: ssl.SSLContext | bool = True,
    pool: ClientPool | None = None,
) -> AttemptResult:
    """POST ``body`` to ``url`` once and report what happened; never raises.

    The URL is resolved and vetted once per call; connection attempts go to the
    vetted addresses in order, moving to the next only when a connection cannot
    be established (refused, unreachable), never after a request was sent.
    ``verify`` is passed to httpx (tests use a private CA context). With a
    ``pool``, connections are kept alive and reused for the same vetted target;
    without one, the attempt uses a fresh connection and closes it.
    """
    started = time.perf_counter()
    deadline = started + timeout_s
    try:
        target = vet_url(url, allow_private, resolve)
    except ResolutionFailed as exc:
        return AttemptResult(None, _elapsed_ms(started), f"{ERR_DNS}: {exc.reason}", None, "")
    except UrlRefused as exc:
        return AttemptResult(None, _elapsed_ms(started), f"{ERR_REFUSED}: {exc.reason}", None, "")
    except Exception as exc:  # noqa: BLE001 - an attempt must never raise
        return AttemptResult(None, _elapsed_ms(started), f"{ERR_UNEXPECTED}: {_describe(exc)}", None, "")

    error = f"{ERR_CONNECT}: no address to try"
    last_ip: str | None = None
    one_shot = pool is None
    clients = pool if pool is not None else ClientPool(max_clients=len(target.ips))
    sni = target.host if target.scheme == "https" and not target.is_ip_literal else ""
    try:
        for ip in target.ips:
            last_ip = str(ip)
            key: ClientKey = (target.scheme, last_ip, target.port, sni, id(verify) if verify is not True else 0)
            try:
                with clients.client(key, verify) as client:
                    try:
                        status, retry_after, excerpt = _attempt(client, target, ip, headers, body, deadline, timeout_s)
                    except httpx.RemoteProtocolError as exc:
                        # A kept-alive connection the peer closed as we sent on it: once
                        # more on a fresh connection (same webhook-id, so an at-least-once
                        # repeat at worst). Without a pool there is no reuse to blame.
                        if one_shot or STALE_CONNECTION not in str(exc) or time.perf_counter() >= deadline:
                            raise
                        remaining = max(deadline - time.perf_counter(), 0.001)
                        status, retry_after, excerpt = _attempt(client, target, ip, headers, body, deadline, remaining)
            except httpx.TimeoutException as exc:
                error = f"{ERR_TIMEOUT}: {_describe(exc)}"
                break
            except httpx.ConnectError as exc:
                error = f"{ERR_CONNECT}: {_describe(exc)}"
                if time.perf_counter() >= deadline:
                    break
                continue
            except httpx.HTTPError as exc:
                error = f"{ERR_PROTOCOL}: {_describe(exc)}"
                break
            return AttemptResult(status, _elapsed_ms(started), None, retry_after, excerpt, last_ip)
    except Exception as exc:  # noqa: BLE001 - an attempt must never raise
        error = f"{ERR_UNEXPECTED}: {_describe(exc)}"
    finally:
        if one_shot:
            clients.close()
    return AttemptResult(None, _elapsed_ms(started), error, None, "", last_ip)
