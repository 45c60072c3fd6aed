"""Real parts for tests: SQLite files, a PostgreSQL database, an aiosmtpd server on loopback.

Every test that takes ``db_url`` (or ``engine``/``settings``) runs against SQLite, and again
against PostgreSQL when ``DIGEST_TEST_POSTGRES_URL`` is set. Each test session gets its own
PostgreSQL database, so parallel runs never see each other's rows.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from click.testing import CliRunner, Result
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from digest.db import create_schema, drop_schema, make_engine
from digest.settings import Settings, load_settings

DATA = Path(__file__).parent / "data"
PROJECT = Path(__file__).resolve().parent.parent
SHARED = PROJECT.parent / "shared"
TEST_SECRET = "test-secret-key-0123456789abcdef"

PG_URL = os.environ.get("DIGEST_TEST_POSTGRES_URL")


# ---------------------------------------------------------------- databases


@pytest.fixture(scope="session")
def pg_database_url() -> Iterator[str | None]:
    """A fresh PostgreSQL database for this test session, dropped afterwards."""
    if not PG_URL:
        yield None
        return
    base = make_url(PG_URL)
    if base.drivername in ("postgresql", "postgres"):
        base = base.set(drivername="postgresql+psycopg")
    name = f"digest_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield base.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path, pg_database_url: str | None) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'digest.db'}"
    if not pg_database_url:
        pytest.skip("DIGEST_TEST_POSTGRES_URL not set")
    engine = make_engine(pg_database_url)
    drop_schema(engine)
    engine.dispose()
    return pg_database_url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    create_schema(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'digest.db'}"


# ---------------------------------------------------------------- SMTP


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        return message_from_bytes(self.data, policy=policy.default)  # type: ignore[return-value]


def with_pipelining(responses: list[str]) -> list[str]:
    """EHLO reply lines with ``PIPELINING`` added (aiosmtpd handles pipelined commands)."""
    return [*responses[:-1], "250-PIPELINING", responses[-1]]


@dataclass
class RecordingHandler:
    """Keeps every message; ``faults`` maps a recipient to an SMTP reply to give instead."""

    messages: list[Received] = field(default_factory=list)
    faults: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    connections: int = 0  # EHLO/HELO greetings: one per SMTP session
    pipelining: bool = True  # advertise RFC 2920 PIPELINING, as most real servers do

    async def handle_EHLO(  # noqa: N802
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        with self.lock:
            self.connections += 1
        session.host_name = hostname
        return with_pipelining(responses) if self.pipelining else responses

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:  # noqa: E501,N802
        reply = self.faults.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        with self.lock:
            self.messages.append(
                Received(
                    envelope.mail_from,
                    list(envelope.rcpt_tos),
                    bytes(envelope.original_content or envelope.content),
                )
            )
        return "250 Message accepted"

    def to(self, address: str) -> list[Received]:
        return [m for m in self.messages if address.lower() in (r.lower() for r in m.rcpt_tos)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class SMTPServer:
    host: str
    port: int
    handler: RecordingHandler

    @property
    def messages(self) -> list[Received]:
        return self.handler.messages


@pytest.fixture
def smtp_server() -> Iterator[SMTPServer]:
    handler = RecordingHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, decode_data=False)
    controller.start()
    try:
        yield SMTPServer("127.0.0.1", port, handler)
    finally:
        controller.stop()


# ---------------------------------------------------------------- settings and CLI


@pytest.fixture
def settings(db_url: str, tmp_path: Path, smtp_server: SMTPServer) -> Settings:
    return load_settings(
        env={},
        overrides={
            "database_url": db_url,
            "data_dir": str(tmp_path / "data"),
            "outbox_dir": str(tmp_path / "outbox"),
            "secret_key": TEST_SECRET,
            "base_url": "https://news.example.org",
            "from_address": "Science Digest <digest@news.example.org>",
            "site_name": "Science Digest",
            "smtp_host": smtp_server.host,
            "smtp_port": smtp_server.port,
        },
    )


@pytest.fixture
def cli_env(db_url: str, tmp_path: Path, smtp_server: SMTPServer) -> dict[str, str]:
    """Environment for driving the CLI against this test's store and SMTP server."""
    return {
        "DIGEST_CONFIG": "",
        "DIGEST_DATABASE_URL": db_url,
        "DIGEST_DATA_DIR": str(tmp_path / "data"),
        "DIGEST_OUTBOX_DIR": str(tmp_path / "outbox"),
        "DIGEST_SECRET_KEY": TEST_SECRET,
        "DIGEST_BASE_URL": "https://news.example.org",
        "DIGEST_FROM": "Science Digest <digest@news.example.org>",
        "DIGEST_SITE_NAME": "Science Digest",
        "DIGEST_SMTP_HOST": smtp_server.host,
        "DIGEST_SMTP_PORT": str(smtp_server.port),
        "DIGEST_SMTP_SECURITY": "none",
    }


class CLI:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def __call__(self, *args: str, input: str | None = None) -> Result:
        from digest.cli import main

        clean = {k: None for k in os.environ if k.startswith("DIGEST_") and k not in self.env}
        runner = CliRunner()
        return runner.invoke(
            main, list(args), env={**clean, **self.env}, input=input, catch_exceptions=False
        )


@pytest.fixture
def cli(cli_env: dict[str, str]) -> CLI:
    return CLI(cli_env)


# ---------------------------------------------------------------- a live web app


@contextmanager
def serve_app(app: Any, port: int, start_seconds: float = 30) -> Iterator[None]:
    """``app`` under uvicorn on 127.0.0.1:``port`` in a thread, until the block ends."""
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_seconds
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=10)
