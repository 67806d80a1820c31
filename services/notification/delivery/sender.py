"""One HTTP attempt of a webhook delivery, hardened against SSRF.

The request goes to an address vetted by :func:`vet_url`, not to whatever an HTTP
client would resolve: the connection is opened to the vetted IP, while the ``Host``
header and the TLS SNI / certificate check keep the partner's host name, so virtual
hosting and TLS verification work as if we had connected by name.

The client is the standard library's ``http.client`` on connections this module opens
and keeps (:class:`ClientPool`). It does nothing we did not ask for, which is what the
guard needs, and an attempt costs half the CPU it did through httpx (``send`` on a
kept-alive loopback connection: 0.75 against 1.5 ms), httpx having been the largest part
of the delivery worker's own work.

Other choices and why:

* No redirects: ``http.client`` never follows one (a redirect to
  ``http://169.254.169.254/`` would bypass every check); a 3xx is recorded as a failed
  attempt.
* No proxies, no .netrc: nothing here reads the environment (an ``HTTP(S)_PROXY`` would
  make the proxy resolve the name again, undoing the pinning). The default trust store
  is the one httpx used: ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` when set, else certifi's.
* ``accept-encoding: identity`` and a bounded read: we keep only the first
  :data:`EXCERPT_BYTES` of the answer for the deliveries log (as safe text:
  ``outcomes.reply_excerpt``), and a receiver must not be able to make us download or
  decompress a large body. A connection whose answer was not read to its end is closed,
  never reused.
* Every failure is returned as an error string, never raised: the caller is a worker loop
  that must record the attempt and move on.
* Connection reuse (:class:`ClientPool`): a TCP (+TLS) handshake per attempt capped
  delivery at a few dozen per second. Kept connections are keyed by the *vetted*
  ``(scheme, ip, port, SNI host, verify)``, never by the URL: the name is still resolved
  and vetted at every attempt, and a connection is only reused for the very address (and,
  for TLS, the very certificate name) that this attempt's vetting allowed. Resolutions are
  NOT cached: getaddrinfo costs microseconds next to an HTTP round trip.

Timeouts: each phase (connect with its TLS handshake, sending, waiting for the status
line, each read) gets what is left of ``timeout_s``. Known limit: a peer dripping its
response headers (or a chunked body's framing) a byte at a time restarts the wait with
every byte, so it can hold an attempt longer than ``timeout_s``; the per-endpoint
concurrency cap of the worker bounds the damage. Between reads, the body read is cut at
the overall deadline; interim (1xx) answers and a chunked body's trailer are bounded
(:class:`_Response`), so a receiver cannot keep an attempt reading at full speed.
"""

from __future__ import annotations

import functools
import http.client
import os
import select
import socket
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

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
_default_tls_lock = threading.Lock()


def _tls_context(verify: ssl.SSLContext | bool) -> ssl.SSLContext:
    """The context a TLS connection is verified with.

    ``True``: one verifying context for the process (building it loads the CA bundle,
    tens of ms; an ``SSLContext`` is safe to share between threads once configured).
    ``False`` (tests and development only): no verification at all.
    """
    global _default_tls
    if isinstance(verify, ssl.SSLContext):
        return verify
    if verify is False:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    with _default_tls_lock:
        if _default_tls is None:
            if os.environ.get("SSL_CERT_FILE"):
                _default_tls = ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
            elif os.environ.get("SSL_CERT_DIR"):
                _default_tls = ssl.create_default_context(capath=os.environ["SSL_CERT_DIR"])
            else:
                import certifi

                _default_tls = ssl.create_default_context(cafile=certifi.where())
        return _default_tls


#: Idle keep-alive connections are dropped after this long: below the 5 s idle timeout
#: of common servers (Node's default), so we rarely send on a connection the peer is
#: closing at that very moment.
KEEPALIVE_EXPIRY_S = 4.0

ClientKey = tuple[str, str, int, str, int]

#: Interim (1xx) answers skipped before the final one; more is a receiver stalling us.
MAX_INTERIM_ANSWERS = 8
#: Lines of a chunked body's trailer read (and discarded) at most.
MAX_TRAILER_LINES = 16
#: The longest line of an interim answer's headers or of a trailer.
MAX_LINE_BYTES = 8192


class _Response(http.client.HTTPResponse):
    """``http.client``'s response with two limits it lacks, which h11 (httpx) had: interim
    answers and a chunked body's trailer. Unbounded, a receiver could keep an attempt
    reading forever, or have its ``102`` taken for the final answer (the real one then
    waiting on the kept connection, read as the NEXT delivery's answer)."""

    def _read_status(self) -> tuple[str, int, str]:
        # http.client skips only 100 Continue, without bound; every 1xx but 101 (which
        # ends HTTP on this connection: a final answer, never kept) is interim.
        for _ in range(MAX_INTERIM_ANSWERS):
            version, status, reason = super()._read_status()
            if not 100 <= status < 200 or status == 101:
                return version, status, reason
            http.client.parse_headers(self.fp)  # the interim answer's headers: skipped
        raise http.client.HTTPException(f"more than {MAX_INTERIM_ANSWERS} interim (1xx) answers")

    def _read_and_discard_trailer(self) -> None:
        for _ in range(MAX_TRAILER_LINES):
            line = self.fp.readline(MAX_LINE_BYTES + 1)
            if len(line) > MAX_LINE_BYTES:
                raise http.client.LineTooLong("trailer line")
            if line in (b"\r\n", b"\n", b""):
                return
        raise http.client.HTTPException(f"a trailer of more than {MAX_TRAILER_LINES} lines")


class _PinnedConnection(http.client.HTTPConnection):
    """An HTTP/1.1 connection to one vetted address. With ``tls``, the socket is wrapped
    for ``server_name``: the SNI sent and the name the certificate must carry (the
    partner's host name, or the IP literal the URL gave)."""

    response_class = _Response

    def __init__(self, ip: IPAddress, port: int, timeout: float, tls: ssl.SSLContext | None,
                 server_name: str) -> None:
        super().__init__(str(ip), port, timeout=timeout)
        self.tls = tls
        self.server_name = server_name
        #: When it last finished an exchange and became idle (time.monotonic()).
        self.idle_since = 0.0

    def connect(self) -> None:
        super().connect()  # TCP to the vetted address, TCP_NODELAY
        if self.tls is not None:
            self.sock = self.tls.wrap_socket(self.sock, server_hostname=self.server_name)

    def settimeout(self, seconds: float) -> None:
        if self.sock is not None:
            self.sock.settimeout(seconds)

    def peer_has_spoken(self) -> bool:
        """Whether an idle connection is readable: the peer closed it (or sent what no
        request asked for). Either way it must not carry the next request."""
        if self.sock is None:
            return True
        try:
            poller = select.poll()
            poller.register(self.sock, select.POLLIN)
            return bool(poller.poll(0))
        except (OSError, ValueError):
            return True


class _Entry:
    __slots__ = ("idle", "retired")

    def __init__(self) -> None:
        self.idle: list[_PinnedConnection] = []
        #: Evicted, or the pool closed: a connection given back is closed, not kept.
        self.retired = False


class ClientPool:
    """Kept-alive connections for vetted targets, for at most ``max_clients`` targets,
    with at most ``max_keepalive_per_client`` idle connections each.

    A connection serves one attempt at a time: an attempt takes an idle one (or opens a
    new one) and gives it back once its answer was read to the end. The least recently
    used target is retired when a new key needs room; its idle connections are closed at
    once, those in use when their attempts end. Thread-safe: the delivery worker's threads
    share one pool.
    """

    def __init__(self, max_clients: int = 64, max_keepalive_per_client: int = 32) -> None:
        self.max_clients = max_clients
        self.max_keepalive = max_keepalive_per_client
        self._entries: OrderedDict[ClientKey, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def take(self, key: ClientKey) -> tuple[_Entry, _PinnedConnection | None]:
        """The target's entry (registered, most recently used) and a kept connection that
        is still fresh and quiet, if any."""
        retire: list[_PinnedConnection] = []
        kept: _PinnedConnection | None = None
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = _Entry()
                while len(self._entries) > self.max_clients:
                    _, old = self._entries.popitem(last=False)
                    old.retired = True
                    retire.extend(old.idle)
                    old.idle.clear()
            else:
                self._entries.move_to_end(key)
            # Every expired one goes, not only those above the newest fresh one: under
            # steady traffic the older ones would otherwise stay open (in CLOSE_WAIT once
            # the peer dropped them) for as long as the target is busy.
            fresh = [c for c in entry.idle if now - c.idle_since < KEEPALIVE_EXPIRY_S]
            expired = [c for c in entry.idle if now - c.idle_since >= KEEPALIVE_EXPIRY_S]
            entry.idle = fresh
        for connection in (*retire, *expired):
            connection.close()
        while kept is None:
            with self._lock:
                if entry.retired or not entry.idle:
                    break
                candidate = entry.idle.pop()  # the most recently used: the likeliest alive
            if candidate.peer_has_spoken():
                candidate.close()
            else:
                kept = candidate
        return entry, kept

    def give_back(self, entry: _Entry, connection: _PinnedConnection) -> None:
        """Keep ``connection`` (its last answer read to the end) for the target's next
        attempt, unless the target was retired or enough are kept already."""
        with self._lock:
            keep = not entry.retired and len(entry.idle) < self.max_keepalive
            if keep:
                connection.idle_since = time.monotonic()
                entry.idle.append(connection)
        if not keep:
            connection.close()

    def close(self) -> None:
        """Close every kept connection; those in use are closed when their attempts end.

        The pool stays usable (new connections are made on demand).
        """
        idle: list[_PinnedConnection] = []
        with self._lock:
            for entry in self._entries.values():
                entry.retired = True
                idle.extend(entry.idle)
                entry.idle.clear()
            self._entries.clear()
        for connection in idle:
            connection.close()


def _elapsed_ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _remaining(deadline: float) -> float:
    return max(deadline - time.perf_counter(), 0.001)


class _ConnectFailed(Exception):
    """No connection to this address (refused, unreachable, TLS handshake or certificate
    refused): the next vetted address may be tried."""


class _PeerClosed(Exception):
    """A kept connection the peer had closed by the time the request went out on it."""


def _request_headers(target: VettedTarget, headers: Mapping[str, str], body: bytes) -> dict[str, str]:
    sent = {k.lower(): v for k, v in headers.items()}
    sent["host"] = target.host_header
    sent.setdefault("user-agent", USER_AGENT)
    sent["accept-encoding"] = "identity"
    sent["content-length"] = str(len(body))
    return sent


def _exchange(
    connection: _PinnedConnection,
    target: VettedTarget,
    headers: Mapping[str, str],
    body: bytes,
    deadline: float,
    reused: bool,
) -> tuple[int, str | None, str, bool]:
    """Send the request and read the answer's status, Retry-After and excerpt; whether the
    connection may carry another request (the answer was read to its end)."""
    if connection.sock is None:
        try:
            connection.timeout = _remaining(deadline)
            connection.connect()
        except TimeoutError:
            raise
        except OSError as exc:  # refused, unreachable, ssl.SSLError (a CertificateError too)
            raise _ConnectFailed(_describe(exc)) from exc
    try:
        connection.putrequest("POST", target.target, skip_host=True, skip_accept_encoding=True)
        for name, value in headers.items():
            connection.putheader(name, value)
    except ValueError as exc:  # a value http.client will not send (CR/LF): nothing went out
        raise http.client.HTTPException(_describe(exc)) from exc
    # A kept connection may have been closed by the peer just before our request reached
    # it: then the request was never read, and going once more on a fresh connection is
    # safe. That shows as a reset or broken pipe while sending, or as the connection
    # closing without a byte of answer. A reset while WAITING for the answer is not
    # retried: the peer had the whole request and may have acted on it.
    try:
        connection.settimeout(_remaining(deadline))
        connection.endheaders(body)
    except (ConnectionResetError, BrokenPipeError) as exc:
        if reused:
            raise _PeerClosed(_describe(exc)) from exc
        raise
    try:
        connection.settimeout(_remaining(deadline))
        response = connection.getresponse()
    except (http.client.RemoteDisconnected, BrokenPipeError) as exc:
        if reused:
            raise _PeerClosed(_describe(exc)) from exc
        raise
    excerpt = bytearray()
    try:
        while not response.isclosed() and len(excerpt) < EXCERPT_BYTES and time.perf_counter() < deadline:
            connection.settimeout(_remaining(deadline))
            chunk = response.read1(EXCERPT_BYTES - len(excerpt))
            if not chunk:
                break
            excerpt += chunk
    except (OSError, http.client.HTTPException):
        pass  # the status is what counts; a body cut short only shortens the log
    if response.length == 0:
        response.close()  # read to its announced end, which read1 does not mark as done
    # Read to its end (a body cut short by the peer also closes the response, with
    # bytes still owed), on a connection HTTP/1.1 keeps: the next request may use it.
    reusable = (response.isclosed() and not response.will_close and not response.length
                and response.status >= 200)
    if not reusable:
        response.close()  # its socket too, once the connection lets go of it (the caller)
    return response.status, response.getheader("retry-after"), reply_excerpt(bytes(excerpt)), reusable


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
    be established (refused, unreachable, TLS refused), never after a request was
    sent. ``verify``: True (the default trust store), an ``ssl.SSLContext`` (tests
    use a private CA) or False. With a ``pool``, connections are kept alive and
    reused for the same vetted target; without one, the attempt uses a fresh
    connection and closes it.
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
    tls = target.scheme == "https"
    sni = target.host if tls and not target.is_ip_literal else ""
    request_headers = _request_headers(target, headers, body)
    try:
        context = _tls_context(verify) if tls else None
        for ip in target.ips:
            last_ip = str(ip)
            key: ClientKey = (target.scheme, last_ip, target.port, sni,
                              id(verify) if verify is not True else 0)
            entry, kept = pool.take(key) if pool is not None else (None, None)
            opened = functools.partial(_PinnedConnection, ip, target.port, timeout_s, context, sni or last_ip)
            connection = kept or opened()
            reusable = False
            try:
                try:
                    status, retry_after, excerpt, reusable = _exchange(
                        connection, target, request_headers, body, deadline, reused=kept is not None)
                except _PeerClosed:
                    # A kept connection the peer closed as we sent on it: once more on a
                    # fresh connection (same webhook-id, so an at-least-once repeat at worst).
                    connection.close()
                    if time.perf_counter() >= deadline:
                        raise
                    connection = opened()
                    status, retry_after, excerpt, reusable = _exchange(
                        connection, target, request_headers, body, deadline, reused=False)
            except TimeoutError as exc:
                error = f"{ERR_TIMEOUT}: {_describe(exc)}"
                break
            except _ConnectFailed as exc:
                error = f"{ERR_CONNECT}: {exc}"
                if time.perf_counter() >= deadline:
                    break
                continue
            except (OSError, http.client.HTTPException, _PeerClosed) as exc:
                error = f"{ERR_PROTOCOL}: {_describe(exc)}"
                break
            finally:
                if reusable and pool is not None and entry is not None:
                    pool.give_back(entry, connection)
                else:
                    connection.close()
            return AttemptResult(status, _elapsed_ms(started), None, retry_after, excerpt, last_ip)
    except Exception as exc:  # noqa: BLE001 - an attempt must never raise
        error = f"{ERR_UNEXPECTED}: {_describe(exc)}"
    return AttemptResult(None, _elapsed_ms(started), error, None, "", last_ip)
