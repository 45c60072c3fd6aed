"""The files ``digest init`` writes for a new install: a commented ``digest.toml`` and a ``.env``.

``digest.toml`` is the shipped reference config (every key, its default and meaning) with the
store and data folders pointed into the install folder, so every command finds them whatever
its working folder. ``.env`` holds ``DIGEST_CONFIG`` and the secrets, generated here: the
signing key of the links in every email and the editor password. It is readable by its owner
alone (0600), and the secrets are never printed: they live in that one file.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from digest import resources
from digest.settings import SECRET_KEYS

CONFIG_NAME = "digest.toml"
ENV_NAME = ".env"

#: Secrets made here: name -> maker. The others are left for the operator, commented out.
GENERATED: Mapping[str, Callable[[], str]] = {
    "secret_key": lambda: secrets.token_urlsafe(32),
    "editor_password": lambda: secrets.token_urlsafe(18),
}

#: What each secret is for, written above it in ``.env``.
SECRET_HELP: Mapping[str, str] = {
    "secret_key": (
        "HMAC key of the signed links in every email (unsubscribe, preferences, confirmation).\n"
        "Changing it breaks the links already sent."
    ),
    "editor_password": (
        "Password of the editor pages (/editor/login); delete the line to disable them."
    ),
    "smtp_password": "SMTP AUTH password, if your server asks for one (with [smtp] username).",
    "dkim_private_key": (
        "DKIM private key (PEM); or dkim_private_key_path in digest.toml, simpler for a\n"
        "multi-line key."
    ),
    "imap_password": "Password of the bounce mailbox `digest bounces poll` reads ([imap]).",
    "mailgun_signing_key": "Mailgun's HTTP webhook signing key, for POST /webhooks/mailgun.",
    "postmark_webhook_password": (
        "Basic-auth password of Postmark's webhook (POST /webhooks/postmark), with\n"
        "postmark_webhook_user in digest.toml."
    ),
}


@dataclass(frozen=True)
class InitFiles:
    """What ``digest init`` writes, before it is written (pure, so tests can read it)."""

    folder: Path
    config_text: str
    env_text: str

    @property
    def config_path(self) -> Path:
        return self.folder / CONFIG_NAME

    @property
    def env_path(self) -> Path:
        return self.folder / ENV_NAME


def _toml_string(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string


def config_text(folder: Path, now: datetime, data: Path | None = None) -> str:
    """The shipped ``config/digest.toml``, its store and data folders made absolute: in
    ``data``, by default ``folder/data``."""
    data = data or folder / "data"
    places = {
        "database_url": f"sqlite:///{data / 'digest.db'}",
        "data_dir": str(data),
        "outbox_dir": str(data / "outbox"),
        "inbound_dir": str(data / "inbound"),
        "sns_certificate_dir": str(data / "sns-certificates"),
    }
    text = resources.read_text("config/digest.toml")
    first, _, rest = text.partition("\n")
    if "the value shown is the default" in first:  # no longer true of every value
        text = rest
    for key, value in places.items():
        text = re.sub(rf"^{key} = .*$", f"{key} = {_toml_string(value)}", text, count=1, flags=re.M)
    header = (
        f"# Written by `digest init` on {now:%Y-%m-%d} for {folder}.\n"
        f"# Every key is optional. The store and the data folders point into {data};\n"
        f"# every other value shown is the default. Secrets go in {folder / ENV_NAME}, not here.\n"
    )
    return header + text


def env_text(folder: Path, values: Mapping[str, str], now: datetime) -> str:
    """``.env``: ``DIGEST_CONFIG`` and every secret setting, generated ones filled in, the
    others commented out. Readable by systemd's ``EnvironmentFile=`` and by a shell."""
    lines = [
        f"# digest environment, written by `digest init` on {now:%Y-%m-%d}. Keep it private:",
        "# mode 0600, owned by the user that runs digest. Secrets are read only from the",
        "# environment. Load it with systemd's EnvironmentFile= or in a shell:",
        f"#   set -a; . {shlex.quote(str(folder / ENV_NAME))}; set +a",
        f"DIGEST_CONFIG={shlex.quote(str(folder / CONFIG_NAME))}",  # both read shell quoting
    ]
    for key in [*GENERATED, *sorted(SECRET_KEYS - set(GENERATED))]:
        lines.append("")
        help_text = SECRET_HELP.get(key, f"The secret setting {key}.")
        lines.extend(f"# {line}" for line in help_text.splitlines())
        name = f"DIGEST_{key.upper()}"
        lines.append(f"{name}={values[key]}" if key in values else f"# {name}=")
    return "\n".join(lines) + "\n"


def plan_files(folder: str | Path, now: datetime, data: str | Path | None = None) -> InitFiles:
    """The two files for ``folder`` with freshly generated secrets; the store and mail
    folders in ``data`` (default: ``folder/data``)."""
    where = Path(folder).expanduser().resolve()
    data_dir = Path(data).expanduser().resolve() if data else None
    for place in (where, data_dir):
        if place is not None and any(ord(c) < 32 or ord(c) == 127 for c in str(place)):
            raise ValueError(f"{str(place)!r}: a folder name with control characters")
    values = {key: make() for key, make in GENERATED.items()}
    return InitFiles(where, config_text(where, now, data_dir), env_text(where, values, now))


def write_files(files: InitFiles, overwrite: bool = False) -> None:
    """Write both files, or neither: an existing one is a ``FileExistsError`` unless
    ``overwrite``. ``.env`` is created 0600 before its secrets go in."""
    targets = [files.config_path, files.env_path]
    existing = [str(p) for p in targets if p.exists() or p.is_symlink()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{', '.join(existing)}: already there (--force replaces it, with new secrets)"
        )
    files.folder.mkdir(parents=True, exist_ok=True)
    staged: list[tuple[Path, Path]] = []
    try:
        for text, mode, final in (
            (files.config_text, 0o644, files.config_path),
            (files.env_text, 0o600, files.env_path),
        ):
            staged.append((_staged(files.folder, text, mode), final))
    except BaseException:
        for temporary, _final in staged:
            temporary.unlink(missing_ok=True)
        raise
    for temporary, final in staged:
        os.replace(temporary, final)


def _staged(folder: Path, text: str, mode: int) -> Path:
    """A temporary file in ``folder`` holding ``text`` with ``mode`` (set before writing)."""
    fd, name = tempfile.mkstemp(dir=folder, prefix=".digest-init-")  # mkstemp: 0600
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name)
