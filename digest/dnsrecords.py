"""Reading the DNS records a bulk sender needs (SPF, DKIM, DMARC, MX), with dnspython.

``digest doctor`` asks these and judges the answers. The resolver is the system's unless
``dns_nameserver`` names one (``"192.0.2.53"``, ``"127.0.0.1:5353"``, ``"[::1]:53"``,
comma-separated for several): a split-horizon resolver, or a test's own server on loopback.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import dns.exception
import dns.resolver

from digest.settings import Settings


@dataclass(frozen=True)
class Lookup:
    """The records found at a name, or why there are none (``error``).

    ``answered``: the DNS said so (the records, or that there are none); False when no
    server answered, which says nothing about the records.
    """

    name: str
    records: tuple[str, ...] = ()
    error: str | None = None
    answered: bool = True


#: Domains reserved for examples and tests (RFC 2606, RFC 6761): not looked up in public DNS.
RESERVED = ("example.com", "example.net", "example.org", "example", "test", "invalid", "localhost")


def reserved(domain: str) -> bool:
    domain = domain.lower().rstrip(".")
    return any(domain == r or domain.endswith("." + r) for r in RESERVED)


def _nameserver(value: str, default_port: int) -> tuple[str, int]:
    value = value.strip()
    host, port = value, default_port
    if value.startswith("["):  # [v6]:port
        host, _, rest = value[1:].partition("]")
        if rest.startswith(":"):
            port = int(rest[1:])
    elif value.count(":") == 1:
        host, _, text = value.partition(":")
        port = int(text)
    ipaddress.ip_address(host)  # dnspython wants addresses, not names
    return host, port


def make_resolver(settings: Settings) -> dns.resolver.Resolver:
    """The resolver for these settings; ValueError names a bad ``dns_nameserver``."""
    if not settings.dns_nameserver.strip():
        resolver = dns.resolver.Resolver()  # /etc/resolv.conf
    else:
        resolver = dns.resolver.Resolver(configure=False)
        servers = []
        for item in settings.dns_nameserver.split(","):
            try:
                servers.append(_nameserver(item, settings.dns_port))
            except ValueError:
                raise ValueError(
                    f"dns_nameserver {item.strip()!r}: use an IP address, optionally with :port"
                ) from None
        ports = {port for _, port in servers}
        if len(ports) > 1:
            raise ValueError("dns_nameserver: every server must use the same port")
        resolver.nameservers = [host for host, _ in servers]
        resolver.port = ports.pop()
    resolver.timeout = settings.dns_timeout
    resolver.lifetime = settings.dns_timeout
    return resolver


def _query(
    resolver: dns.resolver.Resolver, name: str, kind: str
) -> tuple[list[object], str | None, bool]:
    try:
        answer = resolver.resolve(name, kind, search=False)
    except dns.resolver.NXDOMAIN:
        return [], "no such name (NXDOMAIN)", True
    except dns.resolver.NoAnswer:
        return [], f"no {kind} record", True
    except dns.resolver.NoNameservers as exc:
        return [], f"no name server answered ({exc})", False
    except dns.exception.Timeout:
        return [], f"no answer within {resolver.lifetime:g} s", False
    except dns.exception.DNSException as exc:
        return [], f"{type(exc).__name__}: {exc}", False
    return list(answer), None, True


def txt(resolver: dns.resolver.Resolver, name: str) -> Lookup:
    """TXT records at ``name``, each one string (its character-strings joined)."""
    answers, error, answered = _query(resolver, name, "TXT")
    records = tuple(
        b"".join(r.strings).decode("utf-8", "replace")  # type: ignore[attr-defined]
        for r in answers
    )
    return Lookup(name, records, error, answered)


def mx(resolver: dns.resolver.Resolver, name: str) -> Lookup:
    """MX records at ``name`` as ``"<preference> <host>"``, lowest preference first."""
    answers, error, answered = _query(resolver, name, "MX")
    found = sorted(
        (int(r.preference), str(r.exchange).rstrip("."))  # type: ignore[attr-defined]
        for r in answers
    )
    return Lookup(name, tuple(f"{pref} {host}" for pref, host in found), error, answered)


def organizational_domain(domain: str) -> str:
    """The registered domain, approximately: the last two labels (three under a two-letter
    country code's second level, such as example.co.uk). DMARC's alignment compares these."""
    labels = domain.lower().rstrip(".").split(".")
    if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in _SECOND_LEVEL:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


_SECOND_LEVEL = frozenset({"co", "com", "net", "org", "ac", "gov", "edu", "ne", "or", "gv"})


def tags(record: str) -> dict[str, str]:
    """``k=v; k=v`` tags (DMARC, DKIM) as a dict, keys lower-cased."""
    out: dict[str, str] = {}
    for part in record.split(";"):
        key, eq, value = part.partition("=")
        if eq:
            out[key.strip().lower()] = value.strip()
    return out


def aligned(domain: str, from_domain: str, mode: str) -> bool:
    """DMARC identifier alignment: ``s`` strict (the same domain), ``r`` relaxed (the same
    organizational domain)."""
    a, b = domain.lower().rstrip("."), from_domain.lower().rstrip(".")
    if mode == "s":
        return a == b
    return organizational_domain(a) == organizational_domain(b)
