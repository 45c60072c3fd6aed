"""SMTP servers for engine tests: fault injection by recipient or by count, and a counting sink.

Faults are injected before the message is accepted (at RCPT, or by dropping the connection in
the middle of DATA before replying), so a fault never leaves a message both accepted by the
server and failed in the ledger.
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller

from tests.conftest import free_port, with_pipelining

MESSAGE_ID = re.compile(rb"^Message-ID:\s*(<[^>]+>)", re.IGNORECASE | re.MULTILINE)


@dataclass
class FaultRule:
    """What to do to a recipient's first ``times`` attempts: a reply, "drop" or "stall"."""

    action: str
    times: int = 1_000_000
    seen: int = 0


@dataclass
class FaultHandler:
    rules: dict[str, FaultRule] = field(default_factory=dict)
    fail_first: int = 0  # answer the first N RCPTs (any recipient) with 451
    stall_seconds: float = 3.0
    received: Counter[str] = field(default_factory=Counter)  # Message-ID -> copies
    by_rcpt: Counter[str] = field(default_factory=Counter)
    attempts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    pipelining: bool = True  # advertise PIPELINING; False exercises plain sendmail()

    async def handle_EHLO(  # noqa: N802
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        return with_pipelining(responses) if self.pipelining else responses

    def _rule(self, address: str) -> FaultRule | None:
        with self.lock:
            rule = self.rules.get(address.lower())
            if rule is None or rule.seen >= rule.times:
                return None
            rule.seen += 1
            return rule

    async def handle_RCPT(  # noqa: N802
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        with self.lock:
            self.attempts += 1
            count_fault = self.attempts <= self.fail_first
        if count_fault:
            return "451 4.3.2 please slow down"
        rule = self.rules.get(address.lower())
        if rule is not None and rule.action in ("drop",):
            envelope.rcpt_tos.append(address)  # decided at DATA
            return "250 OK"
        rule = self._rule(address)
        if rule is not None:
            if rule.action == "stall":
                await asyncio.sleep(self.stall_seconds)
                return "451 4.4.2 timed out"
            return rule.action
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        for rcpt in envelope.rcpt_tos:
            rule = self.rules.get(rcpt.lower())
            if rule is not None and rule.action == "drop" and self._rule(rcpt) is not None:
                server.transport.close()  # connection dropped before any reply to DATA
                return "421 closing"
        data: bytes = envelope.original_content or envelope.content
        match = MESSAGE_ID.search(data)
        with self.lock:
            self.received[match.group(1).decode() if match else "?"] += 1
            for rcpt in envelope.rcpt_tos:
                self.by_rcpt[rcpt.lower()] += 1
        return "250 OK queued"

    @property
    def total(self) -> int:
        return sum(self.received.values())


@contextmanager
def fault_server(handler: FaultHandler, port: int | None = None) -> Iterator[tuple[str, int]]:
    """``handler`` served on ``port`` (a free one when None) until the block ends: a server
    taken down and brought back on the same port is two blocks with the same handler."""
    port = port or free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, decode_data=False)
    controller.start()
    try:
        yield "127.0.0.1", port
    finally:
        controller.stop()


@dataclass
class Refuser:
    """How many sessions a greeting refuser turned away."""

    greeted: int = 0


@contextmanager
def greeting_refuser(
    port: int, reply: bytes = b"421 4.3.2 Service not available"
) -> Iterator[Refuser]:
    """A server that answers every connection on ``port`` with ``reply`` as its greeting and
    hangs up: an SMTP server under maintenance."""
    refuser = Refuser()
    server = socket.create_server(("127.0.0.1", port), reuse_port=False)
    server.settimeout(0.2)
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                try:
                    conn.sendall(reply + b"\r\n")
                except OSError:
                    pass
            refuser.greeted += 1

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield refuser
    finally:
        done.set()
        thread.join()
        server.close()
