"""Resolve a webhook URL and vet every address it resolves to.

Used when an endpoint is created (so a partner learns at once that a URL is
refused) and again before every delivery (DNS answers change). The sender then
connects to one of the vetted addresses itself instead of letting the HTTP
client resolve the name a second time: a DNS-rebinding attacker who answers
"public" to the check and "127.0.0.1" to the connection gets nowhere.

*Any* forbidden address refuses the URL, not just the first one: the client
may try them in any order, and a name answering one public and one private
address is an attack, not a configuration.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from services.notification.domain.ssrf import (
    IPAddress,
    ParsedUrl,
    UrlError,
    forbidden_reason,
    is_metadata,
    parse_url_host,
    port_refusal,
)

#: ``socket.getaddrinfo``-compatible callable. Called as
#: ``resolve(host, port, type=socket.SOCK_STREAM)``; returns 5-tuples whose
#: last item is a sockaddr starting with the address text.
Resolver = Callable[..., Sequence[tuple[Any, ...]]]


class UrlRefused(ValueError):
    """The URL must not be delivered to; ``reason`` says why (safe to show).
    ``development_allows``: refused only by what ``allow_private`` lifts (a loopback or
    private address, a port outside the webhook ports)."""

    def __init__(self, reason: str, *, development_allows: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.development_allows = development_allows


class ResolutionFailed(UrlRefused):
    """The host name did not resolve (may be temporary: retry later)."""


@dataclass(frozen=True, slots=True)
class VettedTarget:
    """A URL whose addresses were all checked; connect only to ``ips``."""

    host: str
    port: int
    scheme: str
    ips: tuple[IPAddress, ...]
    target: str = "/"
    host_header: str = ""
    #: True when ``host`` is an IP literal (no SNI hostname to send).
    is_ip_literal: bool = False


def _addresses(infos: Sequence[tuple[Any, ...]]) -> tuple[IPAddress, ...]:
    seen: dict[IPAddress, None] = {}
    for info in infos:
        sockaddr = info[4]
        text = str(sockaddr[0])
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            raise ResolutionFailed(f"resolver returned a non-IP address {text!r}") from None
        if isinstance(address, ipaddress.IPv6Address) and len(sockaddr) >= 4 and sockaddr[3]:
            # Keep the zone id visible to the vetting (it is refused there).
            address = ipaddress.IPv6Address(f"{text.split('%')[0]}%{sockaddr[3]}")
        seen.setdefault(address, None)
    return tuple(seen)


def _check(ip: IPAddress, allow_private: bool, host: str) -> None:
    if is_metadata(ip):
        # Even in development: instance credentials live there.
        raise UrlRefused(f"{host} resolves to {ip}: cloud metadata address")
    if allow_private:
        return
    reason = forbidden_reason(ip)
    if reason is not None:
        raise UrlRefused(f"{host} resolves to {ip}: {reason}", development_allows=True)


def vet_url(
    url: str,
    allow_private: bool,
    resolve: Resolver = socket.getaddrinfo,
) -> VettedTarget:
    """Parse, resolve and vet ``url``; raise :class:`UrlRefused` if unsafe.

    ``allow_private`` (``NOCONTACT_WEBHOOK_ALLOW_PRIVATE``, development and
    tests only) lets loopback/private addresses and any port through (a
    developer's receiver listens where it likes); cloud metadata addresses stay
    refused regardless. Otherwise only ports 80, 443 and 1024-65535 are
    webhook ports.
    """
    try:
        parsed: ParsedUrl = parse_url_host(url)
    except UrlError as exc:
        raise UrlRefused(str(exc)) from None
    if not allow_private and (refusal := port_refusal(parsed.port)) is not None:
        raise UrlRefused(refusal, development_allows=True)
    if parsed.ip is not None:
        ips: tuple[IPAddress, ...] = (parsed.ip,)
    else:
        try:
            infos = resolve(parsed.host, parsed.port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise ResolutionFailed(f"cannot resolve {parsed.host}: {exc}") from None
        ips = _addresses(infos)
        if not ips:
            raise ResolutionFailed(f"{parsed.host} resolves to no address")
    for ip in ips:
        _check(ip, allow_private, parsed.host)
    return VettedTarget(
        host=parsed.host,
        port=parsed.port,
        scheme=parsed.scheme,
        ips=ips,
        target=parsed.target,
        host_header=parsed.host_header,
        is_ip_literal=parsed.ip is not None,
    )
