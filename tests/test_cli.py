"""`digest` end to end: articles in, one email per member out over real SMTP, ledger rows.

Each test runs on a real SQLite file, and on PostgreSQL when DIGEST_TEST_POSTGRES_URL is set.
"""

from __future__ import annotations

import json
import re
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from lxml import html as lxml_html
from sqlalchemy import Engine, update
from sqlmodel import col

from digest.db import session_scope
from digest.models import Subscriber
from tests.conftest import CLI, DATA, SMTPServer

SAMPLE_URL_RE = re.compile(r"paralysed-man")
DAY1 = "2025-03-24T10:00:00Z"
RUN1 = "2025-03-25T08:00:00Z"


def write_members(tmp_path: Path, rows: list[str]) -> Path:
    path = tmp_path / "members.csv"
    path.write_text("email,name,topics,frequency,timezone,send_hour\n" + "\n".join(rows) + "\n")
    return path


def write_articles(tmp_path: Path, name: str, articles: list[dict[str, Any]]) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(articles))
    return path


def article(
    slug: str, title: str, topics: list[str], published: str = "2025-03-24T09:00:00Z"
) -> dict[str, Any]:
    return {
        "url": f"https://archive.example.org/{slug}",
        "title": title,
        "published_at": published,
        "key_points": [f"{title}: the first key point.", "A second paragraph."],
        "topics": topics,
        "mentions": [{"name": "Ada Lovelace", "description": "Mathematician."}],
    }


def deliveries(cli: CLI) -> list[dict[str, Any]]:
    result = cli("deliveries", "list", "--json")
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def setup_basic(cli: CLI, tmp_path: Path) -> None:
    assert (
        cli("articles", "import", str(DATA / "sample-article.json"), "--now", DAY1).exit_code == 0
    )
    members = write_members(
        tmp_path,
        [
            "ada@example.org,Ada,stem cells,daily,UTC,7",
            "bob@example.org,Bob,Space,daily,UTC,7",
            "kolkata@example.org,Kiran,Nervous System,daily,Asia/Kolkata,7",
        ],
    )
    result = cli("subscribers", "import", str(members), "--now", DAY1)
    assert result.exit_code == 0, result.output


def test_run_for_one_member_sends_only_theirs(
    cli: CLI, tmp_path: Path, smtp_server: SMTPServer
) -> None:
    """`digest run --email` plans and sends that member's edition: others' planned ones wait."""
    setup_basic(cli, tmp_path)
    assert cli("plan", "--now", RUN1).exit_code == 0  # ada and kolkata planned
    result = cli("run", "--now", RUN1, "--email", "kolkata@example.org")
    assert result.exit_code == 0, result.output
    assert [m.rcpt_tos[0] for m in smtp_server.messages] == ["kolkata@example.org"]
    rows = {r["email"]: r["status"] for r in deliveries(cli)}
    assert rows["kolkata@example.org"] == "sent" and rows["ada@example.org"] == "planned"
    nobody = cli("run", "--now", RUN1, "--email", "nobody@example.org")
    assert nobody.exit_code == 2 and "no such subscriber: nobody@example.org" in nobody.output
    assert cli("plan", "--now", RUN1, "--email", "nobody@example.org").exit_code == 2


def test_run_sends_one_digest_per_due_member_and_records_it(
    cli: CLI, tmp_path: Path, smtp_server: SMTPServer
) -> None:
    setup_basic(cli, tmp_path)
    result = cli("run", "--now", RUN1)
    assert result.exit_code == 0, result.output
    assert "sent 2" in result.stdout and "skipped empty 1" in result.stdout

    received = {m.rcpt_tos[0]: m for m in smtp_server.messages}
    assert set(received) == {"ada@example.org", "kolkata@example.org"}
    msg = BytesParser(policy=policy.default).parsebytes(received["ada@example.org"].data)
    assert msg["To"] == "Ada <ada@example.org>"
    assert msg["From"] == "Science Digest <digest@news.example.org>"
    assert msg["Message-ID"].endswith("@news.example.org>")
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "https://news.example.org/unsubscribe/" in msg["List-Unsubscribe"]
    assert "mailto:" in msg["List-Unsubscribe"]
    assert msg["List-Id"]
    assert msg.get_content_type() == "multipart/alternative"
    parts = [p.get_content_type() for p in msg.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    text = msg.get_body(("plain",)).get_content()
    assert "Paralysed man stands again" in text

    rows = {r["email"]: r for r in deliveries(cli)}
    assert rows["ada@example.org"]["status"] == "sent"
    assert rows["ada@example.org"]["edition"] == "daily:2025-03-25"
    assert rows["ada@example.org"]["message_id"] == msg["Message-ID"]
    assert len(rows["ada@example.org"]["articles"]) == 1
    assert SAMPLE_URL_RE.search(rows["ada@example.org"]["articles"][0])
    assert rows["bob@example.org"]["status"] == "skipped"
    assert rows["bob@example.org"]["articles"] == []

    # The same run again: nothing new is planned or sent.
    again = cli("run", "--now", RUN1)
    assert again.exit_code == 0
    assert "sent 0" in again.stdout
    assert len(smtp_server.messages) == 2
    assert len(deliveries(cli)) == 3


def test_not_due_before_send_hour_in_member_zone(
    cli: CLI, tmp_path: Path, smtp_server: SMTPServer
) -> None:
    setup_basic(cli, tmp_path)
    # 06:30 UTC is 12:00 in Kolkata (due) but before 07:00 for the UTC members.
    result = cli("run", "--now", "2025-03-25T06:30:00Z")
    assert result.exit_code == 0, result.output
    assert [m.rcpt_tos for m in smtp_server.messages] == [["kolkata@example.org"]]
    result = cli("run", "--now", "2025-03-25T07:00:01Z")
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == [
        "ada@example.org",
        "kolkata@example.org",
    ]


def test_dry_run_writes_and_sends_nothing(
    cli: CLI, tmp_path: Path, smtp_server: SMTPServer
) -> None:
    setup_basic(cli, tmp_path)
    result = cli("run", "--now", RUN1, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "ada@example.org" in result.stdout and "Paralysed man stands again" in result.stdout
    assert smtp_server.messages == []
    assert deliveries(cli) == []


def test_next_edition_has_only_new_articles(
    cli: CLI, tmp_path: Path, smtp_server: SMTPServer
) -> None:
    setup_basic(cli, tmp_path)
    assert cli("run", "--now", RUN1).exit_code == 0
    new = write_articles(
        tmp_path,
        "day2.json",
        [article("new-cells", "New cells found", ["Stem Cells"], "2025-03-25T12:00:00Z")],
    )
    assert cli("articles", "import", str(new), "--now", "2025-03-25T13:00:00Z").exit_code == 0
    # Re-importing the sample article on day 2 must not make it new again.
    assert (
        cli(
            "articles", "import", str(DATA / "sample-article.json"), "--now", "2025-03-25T13:00:00Z"
        ).exit_code
        == 0
    )
    assert cli("run", "--now", "2025-03-26T08:00:00Z").exit_code == 0
    ada = [r for r in deliveries(cli) if r["email"] == "ada@example.org"]
    by_edition = {r["edition"]: r["articles"] for r in ada}
    assert by_edition["daily:2025-03-26"] == ["https://archive.example.org/new-cells"]
    assert len(by_edition["daily:2025-03-25"]) == 1
    # Across all editions, no article reached Ada twice.
    urls = [u for r in ada for u in r["articles"]]
    assert len(urls) == len(set(urls)) == 2


def test_permanent_failure_keeps_articles_for_next_edition(
    cli: CLI, tmp_path: Path, smtp_server: SMTPServer
) -> None:
    setup_basic(cli, tmp_path)
    smtp_server.handler.faults["ada@example.org"] = "554 5.7.1 policy rejection"
    result = cli("run", "--now", RUN1)
    assert result.exit_code == 1
    row = next(r for r in deliveries(cli) if r["email"] == "ada@example.org")
    assert row["status"] == "failed" and "554" in row["error"]
    smtp_server.handler.faults.clear()
    assert cli("run", "--now", "2025-03-26T08:00:00Z").exit_code == 0
    sent = [r for r in deliveries(cli) if r["email"] == "ada@example.org" and r["status"] == "sent"]
    assert len(sent) == 1 and SAMPLE_URL_RE.search(sent[0]["articles"][0])


def test_hard_bounce_suppresses_member(cli: CLI, tmp_path: Path, smtp_server: SMTPServer) -> None:
    setup_basic(cli, tmp_path)
    smtp_server.handler.faults["ada@example.org"] = "550 5.1.1 no such user"
    assert cli("run", "--now", RUN1).exit_code == 1
    members = cli("subscribers", "list", "--json")
    status = {json.loads(x)["email"]: json.loads(x)["status"] for x in members.stdout.splitlines()}
    assert status["ada@example.org"] == "bounced"
    smtp_server.handler.faults.clear()
    # A bounced member is never planned again, and an import does not bring them back.
    members_csv = write_members(tmp_path, ["ada@example.org,Ada,stem cells,daily,UTC,7"])
    assert cli("subscribers", "import", str(members_csv)).exit_code == 0
    assert cli("run", "--now", "2025-03-26T08:00:00Z").exit_code == 0
    assert not [m for m in smtp_server.messages if m.rcpt_tos == ["ada@example.org"]]


def test_temporary_failure_is_retried_later(
    cli: CLI, tmp_path: Path, smtp_server: SMTPServer
) -> None:
    setup_basic(cli, tmp_path)
    smtp_server.handler.faults["ada@example.org"] = "451 4.3.0 try again later"
    result = cli("run", "--now", RUN1)
    assert result.exit_code == 1
    row = next(r for r in deliveries(cli) if r["email"] == "ada@example.org")
    assert row["status"] == "retry" and "451" in row["error"]
    smtp_server.handler.faults.clear()
    assert cli("run", "--now", "2025-03-25T09:00:00Z").exit_code == 0
    row = next(r for r in deliveries(cli) if r["email"] == "ada@example.org")
    assert row["status"] == "sent"
    assert len([m for m in smtp_server.messages if m.rcpt_tos == ["ada@example.org"]]) == 1


def test_old_articles_are_never_sent(cli: CLI, tmp_path: Path, smtp_server: SMTPServer) -> None:
    old = write_articles(
        tmp_path, "old.json", [article("old", "Old news", ["Space"], "2024-01-01T00:00:00Z")]
    )
    assert cli("articles", "import", str(old), "--now", DAY1).exit_code == 0
    members = write_members(tmp_path, ["bob@example.org,Bob,Space,daily,UTC,7"])
    assert cli("subscribers", "import", str(members)).exit_code == 0
    result = cli("run", "--now", RUN1)
    assert result.exit_code == 0 and "skipped empty 1" in result.stdout
    assert smtp_server.messages == []


def test_hostile_article_and_name_are_escaped(
    cli: CLI, tmp_path: Path, smtp_server: SMTPServer
) -> None:
    hostile = article("x", "<script>alert('x')</script> <b>bold</b>", ["Space"])
    hostile["key_points"] = ["<img src=x onerror=alert(1)> point"]
    path = write_articles(tmp_path, "hostile.json", [hostile])
    assert cli("articles", "import", str(path), "--now", DAY1).exit_code == 0
    assert (
        cli(
            "subscribers",
            "add",
            "eve@example.org",
            "--name",
            "Eve\r\nBcc: victim@example.org",
            "--topic",
            "Space",
            "--timezone",
            "UTC",
            "--send-hour",
            "7",
            "--now",
            DAY1,
        ).exit_code
        == 0
    )
    assert cli("run", "--now", RUN1).exit_code == 0
    (received,) = smtp_server.messages
    assert received.rcpt_tos == ["eve@example.org"]
    msg = BytesParser(policy=policy.default).parsebytes(received.data)
    assert msg["Bcc"] is None
    assert "victim" not in (msg["To"] or "").split("<")[-1]
    html_part = msg.get_body(("html",)).get_content()
    assert "<script>" not in html_part
    assert "&lt;script&gt;" in html_part
    tree = lxml_html.fromstring(html_part)
    assert not tree.xpath("//script") and not tree.xpath("//img[@onerror]")
    text = msg.get_body(("plain",)).get_content()
    assert "<script>alert('x')</script>" in text


def test_preview_is_what_the_member_gets(cli: CLI, tmp_path: Path, smtp_server: SMTPServer) -> None:
    setup_basic(cli, tmp_path)
    assert cli("plan", "--now", RUN1).exit_code == 0
    out = tmp_path / "preview.txt"
    result = cli(
        "preview",
        "--email",
        "ada@example.org",
        "--format",
        "text",
        "--out",
        str(out),
        "--now",
        RUN1,
    )
    assert result.exit_code == 0, result.output
    assert deliveries(cli)[0]["status"] in ("planned", "skipped")
    assert cli("run", "--now", RUN1).exit_code == 0
    (sent,) = [m for m in smtp_server.messages if m.rcpt_tos == ["ada@example.org"]]
    msg = BytesParser(policy=policy.default).parsebytes(sent.data)
    sent_text = msg.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert out.read_text(encoding="utf-8").strip() == sent_text.strip()
    html = cli(
        "preview", "--email", "ada@example.org", "--edition", "daily:2025-03-25", "--now", RUN1
    )
    assert html.exit_code == 0
    sent_html = msg.get_body(("html",)).get_content().replace("\r\n", "\n")
    assert html.stdout.strip() == sent_html.strip()


def test_preview_unknown_member_is_bad_input(cli: CLI) -> None:
    result = cli("preview", "--email", "nobody@example.org")
    assert result.exit_code == 2
    assert "nobody@example.org" in result.output


def test_unmailable_old_address_fails_its_delivery_not_the_run(
    cli: CLI, tmp_path: Path, smtp_server: SMTPServer, engine: Engine
) -> None:
    """A row stored before addresses were checked (Unicode domain): a clear failure each."""
    setup_basic(cli, tmp_path)
    with session_scope(engine) as session:
        session.execute(
            update(Subscriber)
            .where(col(Subscriber.email) == "ada@example.org")
            .values(email="ada@exämple.org")
        )
    result = cli("preview", "--email", "Ada@Exämple.org", "--now", RUN1)
    assert result.exit_code == 1
    assert "cannot compose a message for Ada@Exämple.org" in result.output
    assert "'ada@exämple.org' is not ASCII" in result.output
    # a real domain: the run needs a postal address before it sends anything
    refused = cli("run", "--now", RUN1)
    assert refused.exit_code == 2 and "postal_address" in refused.output
    assert smtp_server.messages == []
    cli.env = {**cli.env, "DIGEST_POSTAL_ADDRESS": "1 Example Street, Springfield"}
    result = cli("run", "--now", RUN1)
    assert result.exit_code == 1
    assert "sent 1" in result.stdout
    assert [m.rcpt_tos for m in smtp_server.messages] == [["kolkata@example.org"]]
    rows = {r["email"]: r for r in deliveries(cli)}
    assert rows["ada@exämple.org"]["status"] == "failed"
    assert rows["ada@exämple.org"]["error"].startswith("address not mailable: to_email")


def test_stats_counts(cli: CLI, tmp_path: Path, smtp_server: SMTPServer) -> None:
    setup_basic(cli, tmp_path)
    assert cli("run", "--now", RUN1).exit_code == 0
    result = cli("deliveries", "stats", "--json", "--now", RUN1)
    stats = json.loads(result.stdout)
    assert stats["by_status"]["sent"] == 2 and stats["by_status"]["skipped"] == 1
    assert stats["by_edition"]["daily:2025-03-25"] == {"sent": 2, "skipped": 1}


SEED_PARTS = [
    "Paralysed man stands again after groundbreaking stem cell therapy",
    "24 March 2025",
    "Japanese researchers have made a significant breakthrough in spinal cord injury treatment",
    "iPS cells are created by reverting adult cells to an embryonic-like state",
    "While the findings are promising, scientists caution that larger trials are needed",
    "His startup, K Pharma, now plans to seek approval for larger clinical trials",
    "Hideyuki Okano",
    "Professor at Keio University School of Medicine.",
    "Keio University",
    "Private university in Tokyo, Japan.",
    "Stem Cells",
    "Nervous System",
]


def _flat(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("name", ["sample-article.json", "sample-article.md"])
def test_every_part_of_the_sample_page_reaches_the_member(
    cli: CLI, tmp_path: Path, smtp_server: SMTPServer, name: str
) -> None:
    """With ``summary_words = 0`` every key point is in the digest in full, HTML and text."""
    assert cli("articles", "import", str(DATA / name), "--now", DAY1).exit_code == 0
    members = write_members(tmp_path, ["ada@example.org,Ada,Nervous System,daily,UTC,7"])
    assert cli("subscribers", "import", str(members)).exit_code == 0
    cli.env = {**cli.env, "DIGEST_SUMMARY_WORDS": "0"}
    assert cli("run", "--now", RUN1).exit_code == 0
    (received,) = smtp_server.messages
    msg = BytesParser(policy=policy.default).parsebytes(received.data)
    html_text = _flat(lxml_html.fromstring(msg.get_body(("html",)).get_content()).text_content())
    plain = _flat(msg.get_body(("plain",)).get_content())
    for part in SEED_PARTS:
        assert _flat(part) in html_text, f"HTML lacks {part!r}"
        assert _flat(part) in plain, f"text lacks {part!r}"
    # The title links to the article, through its click link.
    tree = lxml_html.fromstring(msg.get_body(("html",)).get_content())
    hrefs = [
        a.get("href")
        for a in tree.xpath("//a")
        if "Paralysed man" in (a.text_content() or "") and not a.get("href", "").startswith("#")
    ]
    assert hrefs and all(h.startswith("https://news.example.org/c/") for h in hrefs)
    from digest.tokens import TokenSigner
    from tests.conftest import TEST_SECRET

    click = TokenSigner(TEST_SECRET).verify_click(hrefs[0].rsplit("/", 1)[1])
    assert (click.edition, click.position) == ("daily:2025-03-25", "title")
    listed = json.loads(cli("articles", "list", "--json").stdout.splitlines()[0])
    assert "paralysed-man" in listed["url"]
    assert listed["url"] in msg.get_body(("plain",)).get_content()  # the text part: plain


def test_deliveries_retry_requeues_failed_ones(
    cli: CLI, tmp_path: Path, smtp_server: SMTPServer
) -> None:
    setup_basic(cli, tmp_path)
    smtp_server.handler.faults["ada@example.org"] = "554 5.7.1 policy rejection"
    assert cli("run", "--now", RUN1).exit_code == 1
    failed = cli("deliveries", "list", "--status", "failed", "--json")
    (row,) = [json.loads(line) for line in failed.stdout.splitlines()]
    assert row["email"] == "ada@example.org" and "554" in row["error"]
    assert cli("deliveries", "retry").exit_code == 2  # says which
    smtp_server.handler.faults.clear()
    result = cli("deliveries", "retry", "--edition", "daily:2025-03-25", "--now", RUN1)
    assert result.exit_code == 0 and "re-queued 1" in result.stdout
    assert cli("run", "--now", "2025-03-25T08:30:00Z").exit_code == 0
    ada = [r for r in deliveries(cli) if r["email"] == "ada@example.org"]
    assert [r["status"] for r in ada] == ["sent"]
    assert len([m for m in smtp_server.messages if m.rcpt_tos == ["ada@example.org"]]) == 1


def test_run_refuses_a_broken_template(cli: CLI, tmp_path: Path) -> None:
    import shutil

    from digest import resources

    templates = tmp_path / "templates"
    shutil.copytree(resources.path("templates"), templates)
    article_partial = templates / "email" / "_article.mjml.j2"
    article_partial.write_text(article_partial.read_text() + "\n{{ no_such_variable.x }}\n{% if %}")
    cli.env["DIGEST_TEMPLATES_DIR"] = str(templates)
    result = cli("run", "--now", RUN1)
    assert result.exit_code == 2
    assert "_article.mjml.j2" in result.output


def test_demo_on_a_fresh_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from click.testing import CliRunner

    from digest.cli import main

    monkeypatch.chdir(tmp_path)
    clean = {k: None for k in os.environ if k.startswith("DIGEST_")}
    result = CliRunner().invoke(main, ["demo"], env=clean, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "data" / "digest.db").exists()
    saved = sorted((tmp_path / "data" / "demo-mail").glob("*.eml"))
    assert len(saved) == 6 and "received 6 messages" in result.output
    assert "digest preview --email" in result.output
    texts = [
        BytesParser(policy=policy.default).parsebytes(p.read_bytes()).get_body(("plain",))
        for p in saved
    ]
    assert any("Paralysed man stands again" in t.get_content() for t in texts)


def test_sink_on_a_taken_port_is_one_line_and_exit_1(cli: CLI, tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("sink", "--port", str(port), "--dir", str(tmp_path / "mail"))
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "Traceback" not in result.output
    assert f"cannot listen on 127.0.0.1:{port}" in result.output


def test_returned_mail_shows_in_the_ledger(
    cli: CLI, tmp_path: Path, smtp_server: SMTPServer
) -> None:
    """A DSN recorded with `digest bounces process`: the member is bounced, the delivery
    carries the event (list --json, show), and the rates count it."""
    from tests.returned_mail import BOUNCE_ADDRESS, Original, dsn

    cli.env.update(
        {"DIGEST_BOUNCE_ADDRESS": BOUNCE_ADDRESS, "DIGEST_INBOUND_DIR": str(tmp_path / "in")}
    )
    setup_basic(cli, tmp_path)
    assert cli("run", "--now", RUN1).exit_code == 0
    (received,) = smtp_server.handler.to("ada@example.org")
    assert received.mail_from.startswith("bounces+")
    bounce = tmp_path / "bounce.eml"
    bounce.write_bytes(dsn(Original.of(received)))
    result = cli("bounces", "process", str(bounce))
    assert result.exit_code == 0 and "hard_bounce: member bounced" in result.output
    again = cli("bounces", "process", str(bounce))
    assert "recorded before" in again.output  # the same message twice is one event
    members = cli("subscribers", "list", "--json")
    status = {json.loads(x)["email"]: json.loads(x)["status"] for x in members.stdout.splitlines()}
    assert status == {
        "ada@example.org": "bounced",
        "bob@example.org": "active",
        "kolkata@example.org": "active",
    }
    ada = next(d for d in deliveries(cli) if d["email"] == "ada@example.org")
    (event,) = ada["events"]
    assert event["kind"] == "hard_bounce" and event["status_code"] == "5.1.1"
    assert event["effect"] == "member bounced" and Path(event["raw_ref"]).exists()
    assert all(not d["events"] for d in deliveries(cli) if d["email"] != "ada@example.org")
    shown = cli("deliveries", "show", str(ada["id"]))
    assert shown.exit_code == 0
    assert "hard_bounce via file 5.1.1: member bounced" in shown.output
    assert "Recipient rejected" in shown.output and "kept as" in shown.output
    assert cli("deliveries", "show", "999999").exit_code == 2
    stats = json.loads(cli("deliveries", "stats", "--json", "--now", RUN1).stdout)
    edition = stats["rates_by_edition"]["daily:2025-03-25"]
    assert edition["attempted"] == 2 and edition["hard_bounces"] == 1
    assert edition["bounce_rate"] == 0.5 and stats["events"]["hard_bounce"] == 1
    text = cli("deliveries", "stats", "--now", RUN1).output
    assert "daily:2025-03-25" in text and "hard bounces 1 (50.00%)" in text


# ---------------------------------------------------------------- editors


def test_editors_add_list_remove(cli: CLI, engine: Engine) -> None:
    from sqlmodel import Session

    from digest import editors
    from digest.editors import audit

    added = cli(
        "editors", "add", "Ann@News.Example.org", "--name", "Ann", "--password-stdin",
        input="a long enough passphrase\n",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    prompted = cli(
        "editors", "add", "ben@news.example.org",
        input="another long passphrase\nanother long passphrase\n",
    )  # fmt: skip
    assert prompted.exit_code == 0, prompted.output
    assert "Repeat the password" in prompted.output
    mismatch = cli(
        "editors", "add", "cy@news.example.org", input="one long passphrase\nanother one\n" * 2
    )
    assert mismatch.exit_code != 0
    listed = cli("editors", "list", "--json")
    rows = [json.loads(line) for line in listed.output.splitlines()]
    assert [(r["email"], r["name"]) for r in rows] == [
        ("ann@news.example.org", "Ann"),
        ("ben@news.example.org", ""),
    ]
    assert all("password" not in json.dumps(r) for r in rows)
    with Session(engine) as session:
        ann = editors.get_editor(session, "ann@news.example.org")
        assert ann is not None and ann.password_hash.startswith("$argon2id$")
        assert "a long enough passphrase" not in ann.password_hash
    again = cli("editors", "add", "ann@news.example.org", "--password-stdin", input="x" * 20)
    assert again.exit_code == 2 and "already an editor" in again.output
    short = cli("editors", "add", "dee@news.example.org", "--password-stdin", input="short\n")
    assert short.exit_code == 2 and "password: at least 12 characters" in short.output
    bad = cli("editors", "add", "not-an-address", "--password-stdin", input="x" * 20)
    assert bad.exit_code == 2 and "email:" in bad.output
    removed = cli("editors", "remove", "ben@news.example.org")
    assert removed.exit_code == 0 and "0 sessions ended" in removed.output
    assert cli("editors", "remove", "ben@news.example.org").exit_code == 2
    with Session(engine) as session:
        actions = [(e.action, e.target) for e in audit.recent(session)]
    assert ("editor-add", "ann@news.example.org") in actions
    assert ("editor-remove", "ben@news.example.org") in actions


# ---------------------------------------------------------------- configuration and logs


def test_config_show_names_each_values_source(cli: CLI, tmp_path: Path) -> None:
    config = tmp_path / "digest.toml"
    config.write_text('site_name = "Weekly Science"\nweekly_day = "Friday"\n')
    del cli.env["DIGEST_SITE_NAME"]
    cli.env.update(
        {"DIGEST_CONFIG": str(config), "DIGEST_SMTP_PASSWORD": "hunter2", "DIGEST_MAX_ITEMS": "9"}
    )
    result = cli("--database-url", cli.env["DIGEST_DATABASE_URL"], "config", "show")
    assert result.exit_code == 0, result.output
    lines = {line.split("=")[0].strip(): line for line in result.stdout.splitlines()}
    assert lines["site_name"].endswith(f'"Weekly Science"  # file {config}')
    assert lines["weekly_day"].endswith(f'"friday"  # file {config}')
    assert lines["max_items"].endswith("= 9  # environment DIGEST_MAX_ITEMS")
    assert lines["database_url"].endswith("# flag")
    assert lines["smtp_password"].endswith('"********"  # environment DIGEST_SMTP_PASSWORD')
    assert lines["tick_seconds"].endswith("= 60.0  # default")
    assert "hunter2" not in result.output
    as_json = cli("config", "show", "--json")
    rows = {r["key"]: r for r in map(json.loads, as_json.stdout.splitlines())}
    assert rows["max_items"] == {
        "key": "max_items",
        "value": 9,
        "source": "environment DIGEST_MAX_ITEMS",
    }


@pytest.mark.parametrize(
    ("file_text", "env", "line"),
    [
        ("[[source]]\nurl = 'https://example.org/feed'\n", {}, "unknown table [[source]]"),
        ("max_items = [3]\n", {}, "max_items must be a whole number, got a list"),
        ("lease_seconds = 30.5\n", {}, "lease_seconds must be a whole number, got 30.5"),
        ("database_url = 'postgresql://u:pw@db/x'\n", {}, "database_url holds a password"),
        ("", {"DIGEST_MAX_ITEM": "3"}, "DIGEST_MAX_ITEM: unknown setting 'max_item'"),
        ("", {"DIGEST_DATABASE_URL": "postgresql+asyncpg://db/x"}, "DIGEST_DATABASE_URL: "),
    ],
)
def test_config_mistakes_exit_2_with_one_line(
    cli: CLI, tmp_path: Path, file_text: str, env: dict[str, str], line: str
) -> None:
    config = tmp_path / "digest.toml"
    config.write_text(file_text)
    cli.env.update({"DIGEST_CONFIG": str(config), **env})
    if "DIGEST_DATABASE_URL" not in env and "database_url" in file_text:
        del cli.env["DIGEST_DATABASE_URL"]
    result = cli("status")
    assert result.exit_code == 2
    errors = [x for x in result.output.splitlines() if x.strip()]
    assert len(errors) == 1 and line in errors[0], result.output
    assert "Traceback" not in result.output
    if file_text:
        assert str(config) in errors[0]


def test_psycopg2_and_postgres_urls_reach_the_same_server(cli: CLI, db_url: str) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("PostgreSQL URLs")
    rest = db_url.split("://", 1)[1]
    for scheme in ("postgres", "postgresql+psycopg2"):
        cli.env["DIGEST_DATABASE_URL"] = f"{scheme}://{rest}"
        result = cli("status", "--json")
        assert result.exit_code == 0, result.output


def test_json_log_format_prints_only_json_lines(cli: CLI, tmp_path: Path) -> None:
    import subprocess
    import sys

    setup_basic(cli, tmp_path)
    assert cli("plan", "--now", RUN1).exit_code == 0
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("DIGEST_")}
    env.update(cli.env, DIGEST_LOG_FORMAT="json")
    done = subprocess.run(
        [sys.executable, "-m", "digest", "-vv", "worker", "--once"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = [x for x in (done.stdout + done.stderr).splitlines() if x.strip()]
    parsed = [json.loads(x) for x in lines]  # every line is one JSON object
    sent = [p for p in parsed if p.get("message", "").startswith("delivery ")]
    assert sent and all({"delivery_id", "edition", "member_id"} <= p.keys() for p in sent)
    assert json.loads(done.stdout.splitlines()[-1])["sent"] == 2
    # a mistake is a JSON line too, and still exit 2
    env["DIGEST_MAX_ITEMS"] = "2.5"
    bad = subprocess.run(
        [sys.executable, "-m", "digest", "worker", "--once"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2
    line = json.loads(bad.stderr.strip())
    assert line["level"] == "ERROR" and "DIGEST_MAX_ITEMS: max_items" in line["message"]


# ---------------------------------------------------------------- seeing outages


def test_status_names_the_last_error_of_a_worker_that_met_an_outage(
    cli: CLI, tmp_path: Path
) -> None:
    """A worker finds the SMTP server away: it gives its deliveries back (no attempt spent),
    and its heartbeat row names the outage, which `digest status` shows, text and JSON."""
    from tests.conftest import free_port

    setup_basic(cli, tmp_path)
    assert cli("plan", "--now", RUN1).exit_code == 0
    cli.env["DIGEST_SMTP_PORT"] = str(free_port())  # nothing listens there
    worker = cli("worker", "--once", "--worker-id", "mailer-1")
    assert worker.exit_code == 1 and "the SMTP server is unavailable" in worker.output
    info = json.loads(cli("status", "--json").stdout)
    (proc,) = [p for p in info["processes"] if p["id"] == "mailer-1"]
    assert proc["kind"] == "worker" and proc["state"] == "stopped"
    assert proc["last_error"].startswith("the SMTP server: ConnectionRefusedError")
    assert proc["counters"]["smtp_errors"] == {"connection": 1}
    assert info["last_error"] == proc["last_error"]
    text = cli("status").stdout
    assert "worker    mailer-1  stopped" in text
    assert "last error" in text and "the SMTP server: ConnectionRefusedError" in text
    assert "planned" in {d["status"] for d in deliveries(cli)}
    assert all(d["attempts"] == 0 for d in deliveries(cli))
