"""The postal address rule: reserved test domains are exempt, real recipients need the address,
and the sending commands refuse to start (exit 2, one line naming postal_address) without it."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from digest.clock import fixed_clock
from digest.compliance import is_exempt_domain, postal_address_problem, sending_problem
from digest.editions import Editions
from digest.mailer import SMTPTransport
from digest.models import Delivery
from digest.plan import plan
from digest.send import Sender
from digest.settings import Settings
from tests.conftest import CLI, DATA, SMTPServer
from tests.test_cli import DAY1, RUN1, write_members


@pytest.mark.parametrize(
    "domain",
    ["example.com", "example.org", "example.net", "news.example.org", "Example.COM.",
     "a.test", "b.invalid", "localhost", "x.localhost", "shop.example", "[127.0.0.1]",
     "127.0.0.9", "[IPv6:::1]"],
)  # fmt: skip
def test_reserved_and_loopback_domains_are_exempt(domain: str) -> None:
    assert is_exempt_domain(domain)


@pytest.mark.parametrize(
    "domain",
    ["gmail.com", "example.co", "notexample.com", "example.com.evil.net", "10.0.0.1",
     "[192.168.1.1]", ""],
)  # fmt: skip
def test_real_domains_are_not(domain: str) -> None:
    assert not is_exempt_domain(domain)


def test_the_rule_names_the_key(settings: Settings) -> None:
    problem = postal_address_problem(settings, ["ann@example.org", "bo@gmail.com"])
    assert problem and problem.startswith("postal_address is not set") and "gmail.com" in problem
    assert "\n" not in problem
    assert postal_address_problem(settings, ["ann@example.org", "c@d.test"]) is None
    addressed = settings.replace(postal_address="1 Main Street, Springfield")
    assert postal_address_problem(addressed, ["bo@gmail.com"]) is None


def import_members(cli: CLI, tmp_path: Path, rows: list[str]) -> None:
    assert (
        cli("articles", "import", str(DATA / "sample-article.json"), "--now", DAY1).exit_code == 0
    )
    result = cli("subscribers", "import", str(write_members(tmp_path, rows)), "--now", DAY1)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    "command",
    [("run", "--now", RUN1), ("worker", "--once"), ("serve", "--port", "1"), ("scheduler",)],
)
def test_sending_commands_refuse_to_start_without_it(
    cli: CLI, tmp_path: Path, smtp_server: SMTPServer, command: tuple[str, ...]
) -> None:
    import_members(
        cli,
        tmp_path,
        [
            "ada@example.org,Ada,stem cells,daily,UTC,7",
            "real@gmail.com,Real,stem cells,daily,UTC,7",
        ],
    )
    result = cli(*command)
    assert result.exit_code == 2, result.output
    (line,) = [x for x in result.output.splitlines() if x.strip()]
    assert "postal_address" in line and "gmail.com" in line
    assert smtp_server.messages == []


def test_run_sends_with_the_address_and_to_exempt_members_without_it(
    cli: CLI, tmp_path: Path, smtp_server: SMTPServer
) -> None:
    import_members(cli, tmp_path, ["ada@example.org,Ada,stem cells,daily,UTC,7"])
    assert cli("run", "--dry-run", "--now", RUN1).exit_code == 0  # sends nothing: allowed
    assert cli("run", "--now", RUN1).exit_code == 0  # only a reserved test domain
    assert [m.rcpt_tos for m in smtp_server.messages] == [["ada@example.org"]]
    import_members(cli, tmp_path, ["real@gmail.com,Real,stem cells,daily,UTC,7"])
    cli.env = {**cli.env, "DIGEST_POSTAL_ADDRESS": "Science Digest Ltd, 1 Main Street"}
    assert cli("run", "--now", RUN1).exit_code == 0
    (last,) = [m for m in smtp_server.messages if m.rcpt_tos == ["real@gmail.com"]]
    assert b"1 Main Street" in last.data


def test_members_at_every_exempt_name_are_mailed_without_it(
    cli: CLI, tmp_path: Path, smtp_server: SMTPServer
) -> None:
    """Through the doors an operator uses: members at .test, .invalid, .localhost and
    localhost are added and sent to with no postal address set."""
    rows = [
        f"{who}@{domain},{who},stem cells,daily,UTC,7"
        for who, domain in [("ann", "mail.test"), ("bo", "x.invalid"), ("cy", "box.localhost")]
    ]
    import_members(cli, tmp_path, rows)
    added = cli("subscribers", "add", "dee@localhost", "--topic", "stem cells", "--now", DAY1)
    assert added.exit_code == 0, added.output
    result = cli("run", "--now", RUN1)
    assert result.exit_code == 0, result.output
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == [
        "ann@mail.test", "bo@x.invalid", "cy@box.localhost", "dee@localhost",
    ]  # fmt: skip


def test_a_member_who_arrives_after_the_start_is_not_mailed_without_it(
    engine: Engine, settings: Settings, smtp_server: SMTPServer, cli: CLI, tmp_path: Path
) -> None:
    """The per-message guard: the sender stops, gives the claim back, and says why."""
    import_members(cli, tmp_path, ["real@gmail.com,Real,stem cells,daily,UTC,7"])
    assert sending_problem(settings, engine) is not None
    from digest.clock import parse_instant

    now = parse_instant(RUN1)
    plan(engine, settings, now)
    sender = Sender(
        engine,
        settings,
        Editions(settings),
        lambda: SMTPTransport.from_settings(settings),
        fixed_clock(now),
    )
    report = sender.run()
    assert report.sent == 0 and report.released == 1
    assert report.paused_reason and "postal_address" in report.paused_reason
    assert smtp_server.messages == []
    with Session(engine) as session:
        assert session.exec(select(Delivery.status)).all() == ["planned"]  # kept, not lost
