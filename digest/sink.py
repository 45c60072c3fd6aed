"""A local SMTP sink (aiosmtpd on loopback) that saves every message as an ``.eml`` file.

For the demo and for development: point the SMTP settings at it and read what members would get.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


@dataclass
class SavingHandler:
    folder: Path
    saved: list[Path] = field(default_factory=list)
    _counter: itertools.count = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        data: bytes = envelope.original_content or envelope.content
        with self._lock:
            number = next(self._counter)
            rcpt = envelope.rcpt_tos[0] if envelope.rcpt_tos else "unknown"
            safe = "".join(c if c.isalnum() or c in "@._-" else "_" for c in rcpt)
            path = self.folder / f"{number:05d}-{safe}.eml"
            path.write_bytes(data)
            self.saved.append(path)
        return "250 Message accepted for delivery"


class SinkServer:
    """Start with ``start()``, stop with ``stop()``; ``port=0`` picks a free port."""

    def __init__(self, folder: str | Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.handler = SavingHandler(self.folder)
        self.host = host
        self.port = port or _free_port(host)
        self._controller = Controller(
            self.handler, hostname=host, port=self.port, decode_data=False, enable_SMTPUTF8=True
        )

    def start(self) -> SinkServer:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> SinkServer:
        if self._controller.server is None:  # not started yet
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _free_port(host: str) -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
