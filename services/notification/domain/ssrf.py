"""SSRF guard: which addresses a webhook may never reach, and URL parsing.

A partner chooses the webhook URL, and our server makes the request: without a
guard, a URL is a way to make us probe our own network, cloud metadata
(credentials!) or loopback admin ports. Guards usually fail in three ways, all
handled here or in ``delivery``:

* alternative spellings of an address: ``2130706433``, ``0177.0.0.1``,
  ``0x7f.1``, ``127.1``, ``[::ffff:127.0.0.1]``, NAT64/6to4 forms. We parse host
  literals the way browsers and libc's ``inet_aton`` do (WHATWG URL "IPv4
  parser"), so what we vet is what a connection would reach;
* DNS: a name resolving to a private address (vetted after resolution, every
  resolved address, then the connection is pinned to the vetted address, so a
  rebinding between check and connect achieves nothing);
* redirects: never followed.

The policy is a deny-list of special-purpose ranges plus a catch-all "not
globally routable" (``ipaddress``'s ``is_global``), so a range we forgot to
name is still refused.

Pure: no resolution, no sockets.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ALLOWED_SCHEMES = frozenset({"https", "http"})
DEFAULT_PORTS = {"https": 443, "http": 80}

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

#: Cloud instance-metadata services (AWS/GCP/Azure/OpenStack, AWS IPv6, Alibaba).
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    {
        ipaddress.IPv4Address("169.254.169.254"),
        ipaddress.IPv4Address("169.254.170.2"),  # AWS ECS task metadata
        ipaddress.IPv4Address("100.100.100.200"),  # Alibaba Cloud
        ipaddress.IPv6Address("fd00:ec2::254"),
    }
)

_V4_RULES: tuple[tuple[ipaddress.IPv4Network, str], ...] = (
    (_V4("0.0.0.0/8"), "unspecified/'this network' address"),
    (_V4("127.0.0.0/8"), "loopback address"),
    (_V4("10.0.0.0/8"), "private address (10/8)"),
    (_V4("172.16.0.0/12"), "private address (172.16/12)"),
    (_V4("192.168.0.0/16"), "private address (192.168/16)"),
    (_V4("169.254.0.0/16"), "link-local address"),
    (_V4("100.64.0.0/10"), "carrier-grade NAT address (100.64/10)"),
    (_V4("192.0.0.0/24"), "IETF protocol assignment address"),
    (_V4("198.18.0.0/15"), "benchmarking address"),
    (_V4("224.0.0.0/4"), "multicast address"),
    (_V4("255.255.255.255/32"), "broadcast address"),
    (_V4("240.0.0.0/4"), "reserved address"),
)

# IPv6 prefixes that embed an IPv4 address in their low 32 bits.
_V6_EMBEDDING_LOW32: tuple[tuple[ipaddress.IPv6Network, str], ...] = (
    (_V6("::ffff:0:0/96"), "IPv4-mapped"),
    (_V6("::ffff:0:0:0/96"), "IPv4-translated"),
    (_V6("64:ff9b::/96"), "NAT64"),
)

_V6_RULES: tuple[tuple[ipaddress.IPv6Network, str], ...] = (
    (_V6("::/128"), "unspecified address"),
    (_V6("::1/128"), "loopback address"),
    (_V6("::/96"), "IPv4-compatible address (deprecated)"),
    (_V6("64:ff9b:1::/48"), "local-use NAT64 address"),
    (_V6("2001::/32"), "Teredo address"),
    (_V6("fe80::/10"), "link-local address"),
    (_V6("fec0::/10"), "site-local address (deprecated)"),
    (_V6("fc00::/7"), "unique-local address"),
    (_V6("ff00::/8"), "multicast address"),
    (_V6("100::/64"), "discard-only address"),
)

_SIXTOFOUR = _V6("2002::/16")

#: Below this, only the web's own ports: 22 (ssh), 25 (smtp) and the like of a partner's
#: host are no webhook receivers, and a URL naming them is a probe.
FIRST_UNPRIVILEGED_PORT = 1024


def port_refusal(port: int) -> str | None:
    """Why a webhook may not go to `port` (of any host), or None: 80, 443 and 1024-65535 may."""
    if port in DEFAULT_PORTS.values() or FIRST_UNPRIVILEGED_PORT <= port <= 65535:
        return None
    return f"port {port} is not a webhook port (80, 443 or 1024-65535)"


def is_metadata(ip: IPAddress) -> bool:
    """True for cloud metadata endpoints, including IPv6 forms embedding them.

    Kept separate because these stay refused even when private addresses are
    allowed for development: leaking instance credentials is never useful.
    """
    embedded = _embedded_ipv4(ip) if isinstance(ip, ipaddress.IPv6Address) else None
    return ip in METADATA_ADDRESSES or (embedded is not None and embedded in METADATA_ADDRESSES)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    for network, _name in _V6_EMBEDDING_LOW32:
        if ip in network:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _SIXTOFOUR:
        return ipaddress.IPv4Address((int(ip) >> 80) & 0xFFFFFFFF)
    return None


def forbidden_reason(ip: IPAddress) -> str | None:
    """Why a webhook may not connect to ``ip``, or None if it may.

    IPv6 forms that carry an IPv4 address (mapped ``::ffff:a.b.c.d``, NAT64,
    6to4, SIIT) are judged by the address they carry, since that is what the
    packets reach; deprecated IPv4-compatible and Teredo forms are refused
    outright, no legitimate receiver uses them.
    """
    if ip in METADATA_ADDRESSES:
        return "cloud metadata address"
    if isinstance(ip, ipaddress.IPv4Address):
        for network, reason in _V4_RULES:
            if ip in network:
                return reason
    else:
        if ip.scope_id:
            return "scoped (zone id) IPv6 address"
        for network, name in _V6_EMBEDDING_LOW32:
            if ip in network:
                inner = forbidden_reason(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
                return f"{name} form of a {inner}" if inner else None
        if ip in _SIXTOFOUR:
            inner = forbidden_reason(ipaddress.IPv4Address((int(ip) >> 80) & 0xFFFFFFFF))
            return f"6to4 form of a {inner}" if inner else None
        for network6, reason in _V6_RULES:
            if ip in network6:
                return reason
    if not ip.is_global:
        return "address that is not globally routable"
    return None


class UrlError(ValueError):
    """A webhook URL is malformed or not acceptable."""


@dataclass(frozen=True, slots=True)
class ParsedUrl:
    """A validated webhook URL.

    ``host`` is normalised: a lowercase ASCII hostname without trailing dot, or
    the canonical text of an IP literal (``ip`` is then set). ``target`` is the
    request target (path and query) to send, at least ``/``.
    """

    scheme: str
    host: str
    port: int
    target: str
    ip: IPAddress | None

    @property
    def host_header(self) -> str:
        """The ``Host`` header value: brackets for IPv6, port only if not default."""
        host = f"[{self.host}]" if isinstance(self.ip, ipaddress.IPv6Address) else self.host
        if self.port == DEFAULT_PORTS[self.scheme]:
            return host
        return f"{host}:{self.port}"


_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f\\]")
_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
_HEX_PART = re.compile(r"^0[xX][0-9a-fA-F]*$")


def _ends_in_number(labels: list[str]) -> bool:
    last = labels[-1]
    return bool(last) and ((last.isascii() and last.isdigit()) or bool(_HEX_PART.match(last)))


def _ipv4_part(part: str, host: str) -> int:
    if not part:
        raise UrlError(f"invalid IPv4 address {host!r}: empty part")
    try:
        if _HEX_PART.match(part):
            return int(part, 0) if len(part) > 2 else 0
        if not (part.isascii() and part.isdigit()):
            raise ValueError(part)
        if len(part) > 1 and part.startswith("0"):
            return int(part, 8)
        return int(part, 10)
    except ValueError:
        raise UrlError(f"invalid IPv4 address {host!r}: bad part {part!r}") from None


def parse_ipv4_literal(host: str) -> ipaddress.IPv4Address | None:
    """Parse ``host`` like a browser / ``inet_aton`` would, or None if a name.

    A host whose last label is numeric *is* an IPv4 address (WHATWG rule) and
    must parse, or it is refused: ``1.2.3.999`` is not a hostname we would
    hand to DNS. Accepts 1 to 4 parts in decimal, octal (leading 0) or hex
    (0x): ``2130706433``, ``0177.0.0.1``, ``0x7f.0.0.1``, ``127.1``.
    """
    labels = host.split(".")
    if len(labels) > 1 and labels[-1] == "":
        labels.pop()
    if not _ends_in_number(labels):
        return None
    if len(labels) > 4:
        raise UrlError(f"invalid IPv4 address {host!r}: too many parts")
    numbers = [_ipv4_part(label, host) for label in labels]
    if any(n > 255 for n in numbers[:-1]) or numbers[-1] >= 256 ** (5 - len(numbers)):
        raise UrlError(f"invalid IPv4 address {host!r}: part out of range")
    value = numbers[-1]
    for index, number in enumerate(numbers[:-1]):
        value += number << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def _normalise_name(host: str) -> str:
    if not host.isascii():
        try:
            # Nameprep maps look-alikes (full-width digits and dots) to ASCII,
            # so the IPv4 check below sees what a resolver would.
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise UrlError(f"invalid internationalised host name {host!r}") from None
    return host.lower()


def parse_url_host(url: str) -> ParsedUrl:
    """Validate a webhook URL and normalise its host.

    Refuses: other schemes than http/https, credentials (``user:pass@``, they
    would be sent to the receiver and confuse parsers), whitespace, control
    characters and backslashes (parsers disagree on them), empty or malformed
    hosts and ports. IP literals in any spelling are normalised to the address
    they designate, so the caller can vet it.
    """
    if not isinstance(url, str) or not url:
        raise UrlError("URL is empty")
    if len(url) > 2048:
        raise UrlError("URL is longer than 2048 characters")
    if _CONTROL_OR_SPACE.search(url):
        raise UrlError("URL contains whitespace, control characters or a backslash")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UrlError(f"invalid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise UrlError("URL scheme must be https or http")
    netloc = parts.netloc
    if "@" in netloc or parts.username is not None or parts.password is not None:
        raise UrlError("URL must not contain credentials")
    hostport = netloc
    ip: IPAddress | None
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise UrlError("unterminated IPv6 literal")
        literal = hostport[1:end]
        rest = hostport[end + 1 :]
        if rest and not rest.startswith(":"):
            raise UrlError("garbage after IPv6 literal")
        try:
            ip = ipaddress.IPv6Address(literal)
        except ValueError:
            raise UrlError(f"invalid IPv6 literal {literal!r}") from None
        host = str(ip)
    else:
        raw_host = hostport.rsplit(":", 1)[0] if ":" in hostport else hostport
        if not raw_host:
            raise UrlError("URL has no host")
        name = _normalise_name(raw_host)
        ip = parse_ipv4_literal(name)
        if ip is not None:
            host = str(ip)
        else:
            name = name.removesuffix(".")
            labels = name.split(".")
            if len(name) > 253 or not all(_LABEL.match(label) for label in labels):
                raise UrlError(f"invalid host name {raw_host!r}")
            host = name
    if port is None:
        if hostport.endswith(":"):
            raise UrlError("empty port")
        port = DEFAULT_PORTS[scheme]
    if not 1 <= port <= 65535:
        raise UrlError("port must be 1..65535")
    target = parts.path or "/"
    if parts.query:
        target = f"{target}?{parts.query}"
    return ParsedUrl(scheme=scheme, host=host, port=port, target=target, ip=ip)
