"""DKIM signing of finished messages (dkimpy, relaxed/relaxed), and checking a key against DNS.

Signing is the last step of composing: the signature covers the exact bytes that go on the
wire, including List-Unsubscribe and List-Unsubscribe-Post, so a receiver can trust the
one-click unsubscribe (RFC 8058 requires them signed). ``dkimpy`` is imported lazily so the
rest of the project works without it when signing is off.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from pathlib import Path

from digest.settings import Settings, SettingsError

#: Headers covered by the signature. From is listed twice ("oversigned") so a second From
#: cannot be added in transit without breaking the signature.
SIGNED_HEADERS: tuple[str, ...] = (
    "From",
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Feedback-ID",
)

_TAG_RE = re.compile(r"\s*([a-zA-Z]+)\s*=\s*([^;]*)")


class DKIMError(ValueError):
    """The DKIM configuration cannot sign, or the key does not match its DNS record."""


@dataclass(frozen=True)
class Signer:
    """Signs message bytes for one selector and domain with one private key (PEM)."""

    selector: str
    domain: str
    private_key: bytes
    headers: tuple[str, ...] = SIGNED_HEADERS

    def signature(self, message: bytes) -> bytes:
        """The ``DKIM-Signature`` header field (folded, CRLF-terminated) for ``message``."""
        import dkim

        try:
            header = dkim.sign(
                message,
                self.selector.encode("ascii"),
                self.domain.encode("ascii"),
                self.private_key,
                canonicalize=(b"relaxed", b"relaxed"),
                include_headers=[h.encode("ascii") for h in self.headers],
                linesep=b"\r\n",
            )
        except (dkim.DKIMException, ValueError) as exc:
            raise DKIMError(f"DKIM signing failed: {exc}") from exc
        return bytes(header)

    def sign(self, message: bytes) -> bytes:
        """``message`` with its DKIM-Signature header prepended."""
        return self.signature(message) + message


def public_key_from_txt(txt: str) -> str:
    """The ``p=`` value (base64, whitespace removed) of a DKIM TXT record."""
    tags = {m.group(1).lower(): m.group(2).strip() for m in _TAG_RE.finditer(txt.replace('"', ""))}
    key = re.sub(r"\s+", "", tags.get("p", ""))
    if not key:
        raise DKIMError("the DKIM TXT record has no public key (p=)")
    try:
        base64.b64decode(key, validate=True)
    except ValueError:
        raise DKIMError("the DKIM TXT record's p= is not base64") from None
    return key


def verify(message: bytes, dns_txt: str) -> bool:
    """Verify ``message`` as a receiver would, with ``dns_txt`` standing in for the DNS lookup."""
    import dkim

    record = " ".join(dns_txt.replace('"', "").split()).encode("ascii")

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        return record

    try:
        return bool(dkim.verify(message, dnsfunc=dnsfunc, minkey=1024))
    except dkim.DKIMException:
        return False


def key_matches_txt(signer: Signer, dns_txt: str) -> bool:
    """Whether the private key signs what the published record verifies (any key type)."""
    public_key_from_txt(dns_txt)
    probe = (
        b"From: probe@" + signer.domain.encode("ascii") + b"\r\n"
        b"To: probe@example.org\r\nSubject: DKIM key check\r\n"
        b"Message-ID: <dkim-probe@" + signer.domain.encode("ascii") + b">\r\n\r\nprobe\r\n"
    )
    return verify(signer.sign(probe), dns_txt)


def load_private_key(settings: Settings) -> bytes:
    """The PEM from ``DIGEST_DKIM_PRIVATE_KEY`` or from ``dkim_private_key_path``."""
    if settings.dkim_private_key.strip():
        pem = settings.dkim_private_key.replace("\\n", "\n").encode("ascii")
    elif settings.dkim_private_key_path:
        try:
            pem = Path(settings.dkim_private_key_path).expanduser().read_bytes()
        except OSError as exc:
            raise SettingsError(
                f"dkim_private_key_path: cannot read {settings.dkim_private_key_path}: "
                f"{exc.strerror or exc}"
            ) from None
    else:
        raise SettingsError(
            "dkim_selector is set but there is no key: set DIGEST_DKIM_PRIVATE_KEY "
            "or dkim_private_key_path"
        )
    if b"PRIVATE KEY-----" not in pem:
        raise SettingsError("the DKIM private key is not a PEM private key")
    return pem


def signer_from_settings(settings: Settings) -> Signer | None:
    """The configured signer, or None when ``dkim_selector`` is empty (signing off)."""
    selector = settings.dkim_selector.strip()
    if not selector:
        return None
    domain = (settings.dkim_domain.strip() or settings.from_domain).lower()
    for what, value in (("dkim_selector", selector), ("dkim_domain", domain)):
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", value):
            raise SettingsError(f"{what} {value!r} is not a DNS label")
    return Signer(selector=selector, domain=domain, private_key=load_private_key(settings))
