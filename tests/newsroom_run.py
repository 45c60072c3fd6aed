"""A day's run for the newsroom tests: 200 members, 3 of them refused by the SMTP server
(550), sent through the CLI over real SMTP (aiosmtpd)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine

from digest.db import session_scope
from digest.members import MemberRecord, add_member
from tests.conftest import CLI, SMTPServer
from tests.test_web import NOW, seed

MEMBERS, REFUSED = 200, 3


def run_200_with_3_failures(cli: CLI, engine: Engine, smtp: SMTPServer) -> None:
    seed(engine)  # three articles; Ada and Bob
    with session_scope(engine) as session:
        for n in range(MEMBERS - 2):
            record = MemberRecord(f"reader{n:03d}@example.org", "", ("Space",))
            add_member(session, record, NOW - timedelta(days=2))
    for n in range(REFUSED):
        smtp.handler.faults[f"reader{n:03d}@example.org"] = "550 5.1.1 no such user"
    result = cli("run", "--now", NOW.isoformat())
    assert result.exit_code == 1, result.output  # some deliveries failed
    assert "sent 197" in result.output and "failed 3" in result.output, result.output
