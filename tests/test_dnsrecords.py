"""DNS lookups with dnspython against a real server on loopback (dnslib), and the pure parts."""

from __future__ import annotations

import pytest

from digest.dnsrecords import aligned, make_resolver, mx, organizational_domain, tags, txt
from digest.settings import load_settings
from tests.dns_server import Zone, dns_server


def test_lookups_against_a_loopback_server() -> None:
    long_key = "v=DKIM1; k=rsa; p=" + "A" * 400  # more than one 255-byte string
    zone = Zone(
        txt={"example.org": ["v=spf1 -all", long_key]},
        mx={"example.org": [(20, "mx2.example.org"), (10, "mx1.example.org")]},
    )
    with dns_server(zone) as nameserver:
        resolver = make_resolver(load_settings(env={}, overrides={"dns_nameserver": nameserver}))
        found = txt(resolver, "example.org")
        exchangers = mx(resolver, "example.org")
        missing = txt(resolver, "nowhere.example.org")
        empty = mx(resolver, "nowhere.example.org")
    assert found.records == ("v=spf1 -all", long_key) and found.error is None
    assert exchangers.records == ("10 mx1.example.org", "20 mx2.example.org")
    assert missing.records == () and "NXDOMAIN" in (missing.error or "")
    assert empty.error and "NXDOMAIN" in empty.error


def test_a_server_that_does_not_answer_is_a_timeout_not_a_hang() -> None:
    from tests.conftest import free_port

    settings = load_settings(
        env={}, overrides={"dns_nameserver": f"127.0.0.1:{free_port()}", "dns_timeout": 0.5}
    )
    found = txt(make_resolver(settings), "example.org")
    assert found.records == () and found.error


@pytest.mark.parametrize(
    ("value", "servers", "port"),
    [
        ("192.0.2.53", ["192.0.2.53"], 53),
        ("127.0.0.1:5353", ["127.0.0.1"], 5353),
        ("[::1]:5353", ["::1"], 5353),
        ("192.0.2.1, 192.0.2.2", ["192.0.2.1", "192.0.2.2"], 53),
    ],
)
def test_nameserver_setting(value: str, servers: list[str], port: int) -> None:
    resolver = make_resolver(load_settings(env={}, overrides={"dns_nameserver": value}))
    assert resolver.nameservers == servers and resolver.port == port


@pytest.mark.parametrize("value", ["dns.example.org", "192.0.2.1:53,192.0.2.2:54"])
def test_bad_nameserver_setting(value: str) -> None:
    with pytest.raises(ValueError, match="dns_nameserver"):
        make_resolver(load_settings(env={}, overrides={"dns_nameserver": value}))


def test_organizational_domain_and_alignment() -> None:
    assert organizational_domain("bounce.news.example.org") == "example.org"
    assert organizational_domain("news.example.co.uk") == "example.co.uk"
    assert aligned("bounce.news.example.org", "news.example.org", "r")
    assert not aligned("bounce.news.example.org", "news.example.org", "s")
    assert not aligned("example.net", "example.org", "r")
    assert tags("v=DMARC1; p=reject;adkim=s") == {"v": "DMARC1", "p": "reject", "adkim": "s"}
