"""The return path of each delivery: a VERP address that names it, signed.

``bounces@bounce.example.org`` becomes ``bounces+<token>@bounce.example.org`` for one
delivery, where the token is the delivery id (base 36) and an 80-bit HMAC of the id and the
delivery's Message-ID, in lower-case hex (MTAs may fold the case of a local part). A
bounce then names its delivery even when the DSN body is mangled, and nobody can make a
token for a delivery: a forged one does not verify, so it changes nothing. The Message-ID in
the MAC ties a token to one row, so a store rebuilt with reused ids does not accept old ones.

Only the envelope sender changes: From, and so DKIM and DMARC alignment, stay as they were.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass

#: ``<id base 36>-<20 hex digits>``
TOKEN = re.compile(r"^([0-9a-z]{1,13})-([0-9a-f]{20})$")
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def _base36(number: int) -> str:
    if number < 0:
        raise ValueError("delivery ids are positive")
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = _DIGITS[rest] + out
        if not number:
            return out


@dataclass(frozen=True)
class VerpToken:
    """A token read from an address, not yet verified: the delivery it claims and its MAC."""

    delivery_id: int
    mac: str


class Verp:
    """Makes and reads the per-delivery return paths of one ``bounce_address``."""

    def __init__(self, bounce_address: str, secret_key: str) -> None:
        local, _, domain = bounce_address.rpartition("@")
        if not local or not domain:
            raise ValueError(f"bounce_address {bounce_address!r} is not an address")
        if not secret_key:
            raise ValueError("the VERP tokens are signed with DIGEST_SECRET_KEY, which is empty")
        self.local, self.domain = local, domain.lower()
        self.base = f"{local}@{self.domain}"
        # a key of its own, derived from the secret: a token is no link token and vice versa;
        # the keyed state is made once and copied (a token is made for every message sent)
        key = hmac.digest(secret_key.encode("utf-8"), b"digest.verp", "sha256")
        self._keyed = hmac.new(key, digestmod="sha256")

    def _mac(self, delivery_id: int, message_id: str) -> str:
        mac = self._keyed.copy()
        mac.update(f"{delivery_id}\n{message_id}".encode())
        return mac.digest()[:10].hex()

    def token(self, delivery_id: int, message_id: str) -> str:
        return f"{_base36(delivery_id)}-{self._mac(delivery_id, message_id)}"

    def address(self, delivery_id: int, message_id: str) -> str:
        """The envelope sender (MAIL FROM) of this delivery."""
        return f"{self.local}+{self.token(delivery_id, message_id)}@{self.domain}"

    def parse(self, address: str) -> VerpToken | None:
        """The token in ``address`` if it is one of our return paths (unverified), else None."""
        local, _, domain = address.strip().strip("<>").rpartition("@")
        if domain.lower() != self.domain:
            return None
        base, plus, token = local.partition("+")
        if not plus or base.lower() != self.local.lower():
            return None
        match = TOKEN.match(token.lower())
        if match is None:
            return None
        return VerpToken(int(match.group(1), 36), match.group(2))

    def is_base(self, address: str) -> bool:
        """``address`` is the bounce address itself (no token)."""
        local, _, domain = address.strip().strip("<>").rpartition("@")
        return domain.lower() == self.domain and local.lower() == self.local.lower()

    def verify(self, token: VerpToken, message_id: str) -> bool:
        """The token was made by us for the delivery with this Message-ID."""
        return hmac.compare_digest(token.mac, self._mac(token.delivery_id, message_id))


def verp_from_settings(bounce_address: str, secret_key: str) -> Verp | None:
    """The VERP maker for these settings, or None when no ``bounce_address`` is set."""
    return Verp(bounce_address, secret_key) if bounce_address else None
