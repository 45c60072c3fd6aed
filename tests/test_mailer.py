"""The transports: SMTP (the bytes as composed, pipelined hand-over, no resend on a lost
final reply, one connection for many messages) and the outbox."""

from __future__ import annotations

import asyncio
import threading
import time
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from digest.mailer import SMTPTransport
from digest.models import Delivery
from digest.plan import plan
from digest.settings import Settings
from tests.conftest import CLI, DATA, SMTPServer
from tests.smtp_faults import FaultHandler, fault_server
from tests.test_cli import DAY1, RUN1, deliveries, setup_basic, write_members
from tests.test_send import NOW, engine_settings, seed, smtp_sender


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "sendmail"])
def test_transport_delivers_exact_bytes_with_leading_dots(
    smtp_server: SMTPServer, pipelining: bool
) -> None:
    """Dot-stuffing in both send paths: the server stores exactly the bytes composed."""
    smtp_server.handler.pipelining = pipelining
    data = (
        b"Subject: dots\r\nMessage-ID: <d@x.org>\r\n\r\n.first\r\nmiddle\r\n..two\r\n.\r\n"
        b"last line without end"
    )
    transport = SMTPTransport(smtp_server.host, smtp_server.port)
    try:
        for _ in range(2):
            assert transport.send("digest@news.example.org", "ann@example.org", data).ok
    finally:
        transport.close()
    assert len(smtp_server.messages) == 2
    for received in smtp_server.messages:
        assert received.data == data + b"\r\n"  # the final line gets its CRLF
        assert received.rcpt_tos == ["ann@example.org"]
    assert smtp_server.handler.connections == 1  # one connection reused


@pytest.mark.parametrize(
    ("reply", "ok", "code"), [("250 OK queued", True, 250), ("554 5.7.1 no thanks", False, 554)]
)
def test_begin_hands_the_message_over_and_leaves_the_verdict_on_the_wire(
    reply: str, ok: bool, code: int
) -> None:
    """``begin`` returns once the server has the whole message, before it has answered it;
    the returned function reads and classifies that answer."""
    handler = _HeldHandler(reply)
    with fault_server(handler) as (host, port):
        transport = SMTPTransport(host, port, timeout=5.0)
        try:
            finish = transport.begin("digest@news.example.org", "ann@example.org", b"Hi\r\n")
            deadline = time.monotonic() + 5
            while handler.total == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert handler.total == 1  # the server holds the message, not yet answered
            handler.release.set()
            result = finish()
        finally:
            transport.close()
    assert (result.ok, result.code, result.permanent) == (ok, code, not ok)
    assert handler.total == 1


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "plain"])
@pytest.mark.parametrize("late", [0.0, 1.5], ids=["dropped", "late-reply"])
def test_no_reply_to_the_final_dot_is_not_resent_at_once(
    engine: Engine, settings: Settings, pipelining: bool, late: float
) -> None:
    """The server may have the message: a later attempt, with the reason, not a second copy now."""
    seed(engine, 3)
    handler = _TakesThenDrops(pipelining, late)
    with fault_server(handler) as (host, port):
        s = engine_settings(settings, host, port, smtp_pool_size=1)
        assert plan(engine, s, NOW).planned == 3
        report = smtp_sender(engine, s).run()
    assert handler.total == 3 and set(handler.received.values()) == {1}
    assert report.retry == 3 and report.sent == 0
    with Session(engine) as session:
        rows = session.exec(select(Delivery)).all()
    assert {d.status for d in rows} == {"retry"}
    assert all("no reply to the end of the message" in (d.error or "") for d in rows)
    assert all("may have it" in (d.error or "") for d in rows)


def test_outbox_transport_writes_the_messages(cli: CLI, tmp_path: Path) -> None:
    setup_basic(cli, tmp_path)
    cli.env["DIGEST_TRANSPORT"] = "outbox"
    assert cli("run", "--now", RUN1).exit_code == 0
    files = sorted((tmp_path / "outbox").glob("*.eml"))
    assert len(files) == 2
    rows = {r["message_id"]: r for r in deliveries(cli) if r["status"] == "sent"}
    for path in files:
        msg = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
        assert msg["Message-ID"] in rows
        assert msg["To"].endswith("@example.org>")


def test_one_smtp_connection_for_many_messages(
    cli: CLI, tmp_path: Path, smtp_server: SMTPServer
) -> None:
    assert (
        cli("articles", "import", str(DATA / "sample-article.json"), "--now", DAY1).exit_code == 0
    )
    rows = [f"m{i}@example.org,M{i},Stem Cells,daily,UTC,7" for i in range(30)]
    assert cli("subscribers", "import", str(write_members(tmp_path, rows))).exit_code == 0
    cli.env["DIGEST_SMTP_POOL_SIZE"] = "1"
    assert cli("run", "--now", RUN1).exit_code == 0
    assert len(smtp_server.messages) == 30
    assert smtp_server.handler.connections == 1


class _HeldHandler(FaultHandler):
    """Takes each message but withholds the reply to its final dot until ``release`` is set."""

    def __init__(self, reply: str = "250 OK queued") -> None:
        super().__init__()
        self.release = threading.Event()
        self.reply = reply

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        await super().handle_DATA(server, session, envelope)
        while not self.release.is_set():
            await asyncio.sleep(0.01)
        return self.reply


class _TakesThenDrops(FaultHandler):
    """Takes the message, then the connection drops (or the reply is late) before its 250."""

    def __init__(self, pipelining: bool, late: float = 0.0) -> None:
        super().__init__(pipelining=pipelining)
        self.late = late

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        reply = await super().handle_DATA(server, session, envelope)
        if self.late:
            await asyncio.sleep(self.late)
        else:
            server.transport.close()
        return reply
