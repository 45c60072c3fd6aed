"""DKIM: messages signed in compose verify with dkimpy's own verifier, as received over SMTP."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from digest.content import Rendered
from digest.dkim import (
    DKIMError,
    Signer,
    key_matches_txt,
    public_key_from_txt,
    signer_from_settings,
    verify,
)
from digest.mailer import SMTPTransport
from digest.settings import SettingsError, load_settings
from tests.conftest import SMTPServer
from tests.test_email_quality import compose

pytest.importorskip("dkim")

RENDERED = Rendered(
    "Science Digest: Grüße aus Köln",
    '<!doctype html><html lang="en"><body><p>Hello Zoë</p></body></html>',
    "Hello Zoë\n",
)


def make_key(folder: Path, name: str = "dkim") -> tuple[Path, str]:
    """A fresh 2048-bit RSA key and its DNS TXT record (openssl, as an operator would)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    key = folder / f"{name}.pem"
    subprocess.run(
        ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]
        + ["-out", str(key)],
        check=True,
        capture_output=True,
    )
    der = subprocess.run(
        ["openssl", "pkey", "-in", str(key), "-pubout", "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    return key, f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode('ascii')}"


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    return make_key(tmp_path_factory.mktemp("dkim"))


def send_through(smtp_server: SMTPServer, data: bytes) -> bytes:
    """``data`` sent with the SMTP transport: the bytes the server stored."""
    transport = SMTPTransport(smtp_server.host, smtp_server.port)
    try:
        assert transport.send("digest@news.example.org", "zoe@example.org", data, "").ok
    finally:
        transport.close()
    return smtp_server.messages[0].data


def test_signed_message_verifies_after_smtp(key: tuple[Path, str], smtp_server: SMTPServer) -> None:
    path, txt = key
    signer = Signer("s2025", "news.example.org", path.read_bytes())
    data = compose(RENDERED, signer=signer)
    received = send_through(smtp_server, data)
    assert verify(received, txt)

    msg = message_from_bytes(received, policy=policy.strict)
    tags = dict(
        (k.strip(), v.strip())
        for k, v in (t.split("=", 1) for t in "".join(msg["DKIM-Signature"].split()).split(";"))
        if k.strip()
    )
    assert tags["c"] == "relaxed/relaxed"
    assert tags["d"] == "news.example.org" and tags["s"] == "s2025"
    signed = tags["h"].lower().split(":")
    for header in ("from", "to", "subject", "date", "message-id", "list-id"):
        assert header in signed
    assert "list-unsubscribe" in signed and "list-unsubscribe-post" in signed
    assert max(len(line) for line in received.split(b"\r\n")) <= 998


def test_lines_starting_with_dots_arrive_exactly_as_signed(
    key: tuple[Path, str], smtp_server: SMTPServer
) -> None:
    """Composed messages skip SMTP dot-stuffing: a dot the server removed would break DKIM."""
    path, txt = key
    dotted = Rendered(".dots", "<style>\n.a { color: red; }\n</style>\n.\n", ".x\n..y\n.\n")
    data = compose(dotted, signer=Signer("s2025", "news.example.org", path.read_bytes()))
    received = send_through(smtp_server, data)
    assert received == data
    assert verify(received, txt)


def test_tampering_breaks_the_signature(key: tuple[Path, str]) -> None:
    path, txt = key
    data = compose(RENDERED, signer=Signer("s2025", "news.example.org", path.read_bytes()))
    assert verify(data, txt)
    evil = b"List-Unsubscribe: <https://evil.example/>"
    tampered = re.sub(rb"List-Unsubscribe: <https://[^>]+>", evil, data)
    assert tampered != data and not verify(tampered, txt)
    other_path, other_txt = make_key(path.parent, "other")
    assert not verify(data, other_txt)


def test_signer_from_settings(key: tuple[Path, str], tmp_path: Path) -> None:
    path, txt = key
    base = {"from_address": "Digest <digest@news.example.org>"}
    assert signer_from_settings(load_settings(env={}, overrides=base)) is None
    signer = signer_from_settings(
        load_settings(
            env={"DIGEST_DKIM_PRIVATE_KEY": path.read_text()},
            overrides={**base, "dkim_selector": "s2025"},
        )
    )
    assert signer is not None and signer.domain == "news.example.org"
    assert key_matches_txt(signer, txt)
    from_file = signer_from_settings(
        load_settings(
            env={},
            overrides={
                **base,
                "dkim_selector": "s2025",
                "dkim_domain": "example.org",
                "dkim_private_key_path": str(path),
            },
        )
    )
    assert from_file is not None and from_file.domain == "example.org"
    with pytest.raises(SettingsError, match="no key"):
        signer_from_settings(load_settings(env={}, overrides={**base, "dkim_selector": "s"}))
    missing = {**base, "dkim_selector": "s", "dkim_private_key_path": str(tmp_path / "nope.pem")}
    with pytest.raises(SettingsError, match="cannot read"):
        signer_from_settings(load_settings(env={}, overrides=missing))


def test_key_in_config_file_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('dkim_private_key = "-----BEGIN PRIVATE KEY-----"\n')
    with pytest.raises(SettingsError, match="DIGEST_DKIM_PRIVATE_KEY"):
        load_settings(config, env={})


def test_key_matches_txt(key: tuple[Path, str]) -> None:
    path, txt = key
    signer = Signer("s2025", "news.example.org", path.read_bytes())
    _, other = make_key(path.parent, "third")
    assert key_matches_txt(signer, txt)
    assert not key_matches_txt(signer, other)
    assert public_key_from_txt(f'"{txt[:40]}" "{txt[40:]}"') == txt.split("p=")[1]
    with pytest.raises(DKIMError):
        public_key_from_txt("v=DKIM1; k=rsa")
