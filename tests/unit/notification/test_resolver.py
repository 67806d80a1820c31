"""URL vetting with an injected resolver (no network)."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import pytest

from services.notification.delivery.resolver import (
    ResolutionFailed,
    UrlRefused,
    vet_url,
)


def resolver(*addresses: str, calls: list[str] | None = None) -> Any:
    """Build a getaddrinfo stand-in answering ``addresses`` for any name."""

    def resolve(host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        if calls is not None:
            calls.append(host)
        infos: list[tuple[Any, ...]] = []
        for address in addresses:
            if ":" in address:
                infos.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0)))
            else:
                infos.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port)))
        return infos

    return resolve


def failing_resolver(*args: Any, **kwargs: Any) -> Any:
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


def test_public_name_is_vetted() -> None:
    calls: list[str] = []
    target = vet_url(
        "https://hooks.example.com/x?y=1",
        False,
        resolver("93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c", calls=calls),
    )
    assert calls == ["hooks.example.com"]
    assert target.host == "hooks.example.com"
    assert target.port == 443
    assert target.scheme == "https"
    assert target.target == "/x?y=1"
    assert target.host_header == "hooks.example.com"
    assert target.ips == (
        ipaddress.ip_address("93.184.215.14"),
        ipaddress.ip_address("2606:2800:21f:cb07:6820:80da:af6b:8b2c"),
    )
    assert not target.is_ip_literal


def test_duplicate_answers_are_collapsed() -> None:
    target = vet_url("https://a.example/", False, resolver("8.8.8.8", "8.8.8.8"))
    assert target.ips == (ipaddress.ip_address("8.8.8.8"),)


def test_name_resolving_to_loopback_is_refused() -> None:
    with pytest.raises(UrlRefused, match=r"127\.0\.0\.1: loopback"):
        vet_url("https://innocent.example/", False, resolver("127.0.0.1"))


def test_one_public_and_one_private_answer_is_refused() -> None:
    with pytest.raises(UrlRefused, match=r"10\.0\.0\.5: private"):
        vet_url("https://mixed.example/", False, resolver("8.8.8.8", "10.0.0.5"))


def test_mapped_ipv6_answer_is_refused() -> None:
    with pytest.raises(UrlRefused, match="IPv4-mapped"):
        vet_url("https://v6.example/", False, resolver("::ffff:192.168.0.1"))


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://10.1.2.3/",
        "http://172.16.5.4/",
        "http://192.168.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://2130706433/",
        "http://0177.0.0.1/",
        "http://127.1/",
    ],
)
def test_forbidden_literals_are_refused_without_resolving(url: str) -> None:
    calls: list[str] = []
    with pytest.raises(UrlRefused):
        vet_url(url, False, resolver("8.8.8.8", calls=calls))
    assert calls == []


def test_allow_private_lets_loopback_through() -> None:
    target = vet_url("http://localhost:8080/", True, resolver("127.0.0.1", "::1"))
    assert [str(ip) for ip in target.ips] == ["127.0.0.1", "::1"]
    assert target.host_header == "localhost:8080"


def test_allow_private_still_refuses_metadata() -> None:
    with pytest.raises(UrlRefused, match="metadata"):
        vet_url("http://169.254.169.254/", True, resolver())
    with pytest.raises(UrlRefused, match="metadata"):
        vet_url("http://meta.example/", True, resolver("169.254.169.254"))


def test_malformed_url_is_refused() -> None:
    with pytest.raises(UrlRefused, match="credentials"):
        vet_url("https://u:p@example.com/", False, resolver("8.8.8.8"))


def test_unresolvable_name_is_a_resolution_failure() -> None:
    with pytest.raises(ResolutionFailed, match="cannot resolve"):
        vet_url("https://nope.invalid/", False, failing_resolver)


def test_empty_answer_is_a_resolution_failure() -> None:
    with pytest.raises(ResolutionFailed, match="no address"):
        vet_url("https://empty.example/", False, resolver())


def test_literal_public_ip_needs_no_resolution() -> None:
    target = vet_url("https://8.8.8.8:8443/hook", False, failing_resolver)
    assert target.is_ip_literal
    assert target.ips == (ipaddress.ip_address("8.8.8.8"),)
    assert target.host_header == "8.8.8.8:8443"


@pytest.mark.parametrize("port", [80, 443, 1024, 8080, 8443, 65535])
def test_webhook_ports_of_a_public_host_are_accepted(port: int) -> None:
    target = vet_url(f"https://hooks.example.com:{port}/in", False, resolver("93.184.215.14"))
    assert target.port == port


@pytest.mark.parametrize("port", [1, 21, 22, 25, 53, 81, 110, 444, 1023])
def test_other_ports_are_refused_unless_development_allows_them(port: int) -> None:
    calls: list[str] = []
    with pytest.raises(UrlRefused) as refused:
        vet_url(f"http://hooks.example.com:{port}/in", False, resolver("93.184.215.14", calls=calls))
    assert refused.value.reason == f"port {port} is not a webhook port (80, 443 or 1024-65535)"
    assert refused.value.development_allows
    assert calls == []  # refused before any resolution
    # A developer's receiver listens where it likes (NOCONTACT_WEBHOOK_ALLOW_PRIVATE=true).
    assert vet_url(f"http://127.0.0.1:{port}/in", True).port == port


def test_what_development_may_allow_is_told_apart_from_what_it_may_not() -> None:
    with pytest.raises(UrlRefused) as loopback:
        vet_url("http://localhost:8000/hooks", False, resolver("127.0.0.1"))
    assert loopback.value.development_allows
    with pytest.raises(UrlRefused) as metadata:
        vet_url("http://169.254.169.254/latest/", True)
    assert not metadata.value.development_allows
    with pytest.raises(UrlRefused) as malformed:
        vet_url("ftp://hooks.example.com/", False, resolver("93.184.215.14"))
    assert not malformed.value.development_allows
