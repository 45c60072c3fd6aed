"""What the law asks of every message before it may leave: a postal address in the footer.

CAN-SPAM (and its cousins elsewhere) require a physical postal address in commercial and
list mail. Tests and demos send to reserved names that reach nobody (RFC 2606 and RFC 6761:
``example.com``/``.org``/``.net``, ``.example``, ``.test``, ``.invalid``, ``.localhost``) and
to loopback, so those are exempt; anything else needs ``postal_address``. This module is the
rule's one home: ``digest run``, ``worker`` and ``serve`` ask ``sending_problem`` before they
start, and the sender and the outbound door ask ``postal_address_problem`` for each message,
so a member who subscribes after a service started is covered too.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlmodel import Session

if TYPE_CHECKING:
    from digest.settings import Settings

#: Reserved second-level names (and every name under them) that deliver to nobody.
EXAMPLE_DOMAINS = ("example.com", "example.org", "example.net")
#: Reserved top-level names.
RESERVED_TLDS = ("test", "invalid", "localhost", "example")


@functools.lru_cache(maxsize=4096)
def is_exempt_domain(domain: str) -> bool:
    """Whether mail to ``domain`` reaches nobody real: reserved names and loopback (asked for
    every message sent without a postal address: remembered)."""
    host = domain.strip().rstrip(".").lower()
    if host.startswith("[") and host.endswith("]"):  # an address literal: [127.0.0.1]
        host = host[1:-1]
        if host.startswith("ipv6:"):
            host = host[5:]
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    if host == "localhost" or host.rpartition(".")[2] in RESERVED_TLDS:
        return True
    return any(host == d or host.endswith("." + d) for d in EXAMPLE_DOMAINS)


def is_exempt_address(address: str) -> bool:
    return is_exempt_domain(address.rpartition("@")[2])


def missing_address(domain: str) -> str:
    """The one line an operator reads when the address is missing."""
    return (
        f"postal_address is not set: mail to real recipients (such as at {domain}) must carry "
        "the sender's postal address (CAN-SPAM); set postal_address in the config file or "
        "DIGEST_POSTAL_ADDRESS"
    )


def postal_address_problem(settings: Settings, addresses: Iterable[str]) -> str | None:
    """Why these addresses may not be mailed with these settings, or None."""
    if settings.postal_address.strip():
        return None
    for address in addresses:
        if not is_exempt_address(address):
            return missing_address(address.rpartition("@")[2] or address)
    return None


def sending_problem(settings: Settings, engine: Engine) -> str | None:
    """Why a sending command must not start: the members it may mail need a postal address
    the settings do not have. None when the address is set or every member is exempt."""
    if settings.postal_address.strip():
        return None
    from digest.members.store import first_address_where

    suffixes = [f"@{d}" for d in EXAMPLE_DOMAINS] + [f".{d}" for d in EXAMPLE_DOMAINS]
    suffixes += [f".{t}" for t in RESERVED_TLDS] + ["@localhost"]
    with Session(engine) as session:
        found = first_address_where(session, lambda a: not is_exempt_address(a), suffixes)
    return postal_address_problem(settings, [found]) if found else None
