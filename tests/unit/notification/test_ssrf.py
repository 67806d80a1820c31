"""SSRF guard: address policy and URL host parsing (pure)."""

from __future__ import annotations

import ipaddress

import pytest

from services.notification.domain.ssrf import (
    UrlError,
    forbidden_reason,
    is_metadata,
    parse_ipv4_literal,
    parse_url_host,
)


@pytest.mark.parametrize(
    ("address", "fragment"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("10.0.0.1", "private"),
        ("10.255.255.255", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "metadata"),
        ("169.254.1.1", "link-local"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("100.127.255.255", "carrier-grade NAT"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("255.255.255.255", "broadcast"),
        ("240.0.0.1", "reserved"),
        ("192.0.2.1", "not globally routable"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fc00::1", "unique-local"),
        ("fd12:3456::1", "unique-local"),
        ("fd00:ec2::254", "metadata"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "IPv4-mapped form of a loopback"),
        ("::ffff:10.0.0.1", "IPv4-mapped form of a private"),
        ("::ffff:169.254.169.254", "metadata"),
        ("::127.0.0.1", "IPv4-compatible"),
        ("::8.8.8.8", "IPv4-compatible"),
        ("64:ff9b::7f00:1", "NAT64 form of a loopback"),
        ("64:ff9b::a9fe:a9fe", "NAT64 form of a cloud metadata"),
        ("64:ff9b:1::1", "local-use NAT64"),
        ("2002:7f00:1::1", "6to4 form of a loopback"),
        ("2002:c0a8:101::", "6to4 form of a private"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
        ("2001:db8::1", "not globally routable"),
        ("fe80::1%eth0", "zone id"),
    ],
)
def test_forbidden_addresses(address: str, fragment: str) -> None:
    reason = forbidden_reason(ipaddress.ip_address(address))
    assert reason is not None
    assert fragment in reason


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "1.1.1.1",
        "93.184.215.14",
        "172.15.255.255",
        "172.32.0.1",
        "100.63.255.255",
        "100.128.0.1",
        "2606:4700:4700::1111",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "2002:808:808::1",
    ],
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert forbidden_reason(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    "address",
    ["169.254.169.254", "fd00:ec2::254", "::ffff:169.254.169.254", "100.100.100.200"],
)
def test_metadata_detection(address: str) -> None:
    assert is_metadata(ipaddress.ip_address(address))


def test_private_is_not_metadata() -> None:
    assert not is_metadata(ipaddress.ip_address("127.0.0.1"))


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://127.0.0.1/", "127.0.0.1"),
        ("http://2130706433/", "127.0.0.1"),
        ("http://0177.0.0.1/", "127.0.0.1"),
        ("http://0x7f.0.0.1/", "127.0.0.1"),
        ("http://0x7f000001/", "127.0.0.1"),
        ("http://017700000001/", "127.0.0.1"),
        ("http://127.1/", "127.0.0.1"),
        ("http://127.0.1/", "127.0.0.1"),
        ("http://127.0.0.1./", "127.0.0.1"),
        ("http://0/", "0.0.0.0"),
        ("http://169.254.43518/", "169.254.169.254"),
        ("http://0xA9FEA9FE/", "169.254.169.254"),
        ("http://\uff11\uff12\uff17\u3002\uff10\u3002\uff10\u3002\uff11/", "127.0.0.1"),
        ("http://[::1]/", "::1"),
        ("http://[::ffff:127.0.0.1]:8080/", "::ffff:7f00:1"),
        ("http://[0:0:0:0:0:ffff:7f00:1]/", "::ffff:7f00:1"),
    ],
)
def test_ip_literals_in_every_spelling_are_normalised(url: str, host: str) -> None:
    parsed = parse_url_host(url)
    assert parsed.ip == ipaddress.ip_address(host)
    assert parsed.host == host
    assert forbidden_reason(parsed.ip) is not None


def test_hostname_is_normalised_and_keeps_port_and_target() -> None:
    parsed = parse_url_host("HTTPS://Hooks.Example.COM.:8443/in/coming?a=1&b=%20")
    assert parsed.scheme == "https"
    assert parsed.host == "hooks.example.com"
    assert parsed.ip is None
    assert parsed.port == 8443
    assert parsed.target == "/in/coming?a=1&b=%20"
    assert parsed.host_header == "hooks.example.com:8443"


@pytest.mark.parametrize(
    ("url", "port", "host_header"),
    [
        ("https://example.com", 443, "example.com"),
        ("http://example.com", 80, "example.com"),
        ("http://[2606:4700::1]:81/", 81, "[2606:4700::1]:81"),
    ],
)
def test_default_ports_and_host_header(url: str, port: int, host_header: str) -> None:
    parsed = parse_url_host(url)
    assert parsed.port == port
    assert parsed.host_header == host_header
    assert parsed.target == "/"


def test_idn_is_converted_to_punycode() -> None:
    assert parse_url_host("https://bücher.example/").host == "xn--bcher-kva.example"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("gopher://127.0.0.1:6379/", "scheme"),
        ("//example.com/", "scheme"),
        ("https://user:pass@example.com/", "credentials"),
        ("https://user@example.com/", "credentials"),
        ("https://example.com@127.0.0.1/", "credentials"),
        ("https://:@example.com/", "credentials"),
        ("http://example.com\\@127.0.0.1/", "backslash"),
        ("http://exa mple.com/", "whitespace"),
        ("http://example.com/\n", "whitespace"),
        ("http://example.com\t/", "whitespace"),
        ("https:///path", "no host"),
        ("https://:443/", "no host"),
        ("http://1.2.3.999/", "IPv4"),
        ("http://1.2.3.4.5/", "IPv4"),
        ("http://256.1/", "IPv4"),
        ("http://08.0.0.1/", "IPv4"),
        ("http://1..2/", "IPv4"),
        ("http://[127.0.0.1]/", "IPv"),
        ("http://[::1/", "IPv6"),
        ("http://[not-ip]/", "IPv6"),
        ("http://example.com:0/", "port"),
        ("http://example.com:99999/", "ort"),
        ("http://example.com:80x/", "ort"),
        ("http://example.com:/", "port"),
        ("http://-bad.example/", "host name"),
        ("http://bad_%41.example/", "host name"),
        ("", "empty"),
        ("https://" + "a" * 2050 + ".com/", "longer"),
    ],
)
def test_bad_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(UrlError, match=message):
        parse_url_host(url)


def test_names_ending_in_letters_are_not_ip_literals() -> None:
    assert parse_ipv4_literal("1.2.3.example") is None
    assert parse_ipv4_literal("localhost") is None
