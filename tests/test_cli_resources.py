"""`digest resources` and following people and organisations, end to end over real SMTP."""

from __future__ import annotations

import json
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from tests.conftest import CLI, DATA, SMTPServer

DAY1 = "2025-03-24T10:00:00Z"
DAY2 = "2025-03-25T10:00:00Z"
RUN1 = "2025-03-25T08:00:00Z"
RUN2 = "2025-03-26T08:00:00Z"


def article(n: int, mentions: list[str], topics: list[str], day: str = "24") -> dict[str, Any]:
    return {
        "url": f"https://archive.example.org/a{n}",
        "title": f"Story number {n}",
        "published_at": f"2025-03-{day}T0{n % 9}:00:00Z",
        "key_points": [f"Story {n}: the first key point.", "A second paragraph."],
        "topics": topics,
        "mentions": [{"name": m, "description": f"About {m}."} for m in mentions],
    }


def import_articles(cli: CLI, tmp_path: Path, name: str, rows: list[dict[str, Any]], now: str):
    path = tmp_path / name
    path.write_text(json.dumps(rows))
    result = cli("articles", "import", str(path), "--now", now)
    assert result.exit_code == 0, result.output


def sent_to(smtp: SMTPServer, address: str) -> list[Any]:
    return [BytesParser(policy=policy.default).parsebytes(m.data) for m in smtp.handler.to(address)]


def test_resources_list_json_show_and_errors(cli: CLI) -> None:
    assert cli("articles", "import", str(DATA / "sample-article.json")).exit_code == 0
    result = cli("resources", "list", "--json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["slug"], r["name"], r["kind"], r["articles"]) for r in rows] == [
        ("hideyuki-okano", "Hideyuki Okano", "other", 1),
        ("keio-university", "Keio University", "other", 1),
    ]
    assert rows[1]["description"] == "Private university in Tokyo, Japan."
    assert {"slug", "name", "kind", "description", "articles"} <= set(rows[0])
    shown = cli("resources", "show", "Keio University", "--json")
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.stdout)
    assert data["followers"] == 0 and data["article_urls"][0].endswith("stem-cell-therapy")
    missing = cli("resources", "show", "nobody")
    assert missing.exit_code == 2 and "'nobody'" in missing.output
    assert cli("resources", "merge", "keio-university", "KEIO UNIVERSITY").exit_code == 2
    clash = cli("resources", "rename", "keio-university", "hideyuki okano")
    assert clash.exit_code == 2 and "merge" in clash.output
    renamed = cli("resources", "rename", "keio-university", "Keio University (Tokyo)")
    assert renamed.exit_code == 0, renamed.output
    again = json.loads(cli("resources", "show", "keio university", "--json").stdout)
    assert again["name"] == "Keio University (Tokyo)" and again["slug"] == "keio-university"
    assert cli("resources", "--help").exit_code == 0


def test_subscribers_follow_by_name_or_slug_in_add_csv_and_list(cli: CLI, tmp_path: Path) -> None:
    assert cli("articles", "import", str(DATA / "sample-article.json")).exit_code == 0
    added = cli(
        "subscribers", "add", "ann@example.org", "--follow", "keio-university",
        "--follow", "Hideyuki  Okano",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    unknown = cli("subscribers", "add", "bob@example.org", "--follow", "Nobody")
    assert unknown.exit_code == 2 and "follows" in unknown.output and "'Nobody'" in unknown.output
    csv_file = tmp_path / "members.csv"
    csv_file.write_text(
        "email,topics,follows\n"
        "cat@example.org,,Keio University\n"
        "dan@example.org,Space,keio-university; hideyuki-okano\n"
    )
    result = cli("subscribers", "import", str(csv_file))
    assert result.exit_code == 0, result.output
    listed = cli("subscribers", "list", "--json")
    follows = {row["email"]: row["follows"] for row in map(json.loads, listed.stdout.splitlines())}
    assert follows == {
        "ann@example.org": ["Hideyuki Okano", "Keio University"],
        "cat@example.org": ["Keio University"],
        "dan@example.org": ["Hideyuki Okano", "Keio University"],
    }
    bad = tmp_path / "bad.csv"
    bad.write_text("email,follows\neve@example.org,Keio University\nfay@example.org,Ghost\n")
    rejected = cli("subscribers", "import", str(bad))
    assert rejected.exit_code == 2
    assert "bad.csv: line 3: field 'follows'" in rejected.output
    listing = cli("subscribers", "list", "--json").stdout.splitlines()
    emails = [json.loads(r)["email"] for r in listing]
    assert "eve@example.org" not in emails  # nothing partial
    exported = cli("subscribers", "export").stdout
    assert exported.splitlines()[0].endswith(",follows,status")
    assert "cat@example.org,,,daily,UTC,7,Keio University,active" in exported


def test_a_member_following_a_resource_gets_its_articles_under_it_once_even_after_a_merge(
    cli: CLI, tmp_path: Path, smtp_server: SMTPServer
) -> None:
    import_articles(
        cli,
        tmp_path,
        "day1.json",
        [
            article(1, ["Keio University", "Hideyuki Okano"], ["Stem Cells"]),
            article(2, ["Hideyuki Okano"], ["Stem Cells"]),
            article(3, ["Keio Univ."], ["Space"]),
            article(4, [], ["Space"]),
        ],
        DAY1,
    )
    assert (
        cli("subscribers", "add", "keio@example.org", "--follow", "Keio University").exit_code == 0
    )
    assert (
        cli(
            "subscribers", "add", "both@example.org", "--topic", "Stem Cells",
            "--follow", "Keio University", "--follow", "Keio Univ.",
        ).exit_code
        == 0
    )  # fmt: skip
    result = cli("run", "--now", RUN1, "--force")
    assert result.exit_code == 0, result.output
    (keio,) = sent_to(smtp_server, "keio@example.org")
    text = keio.get_body(preferencelist=("plain",)).get_content()
    assert "Because you follow Keio University" in text.replace("\n", " ") or (
        "BECAUSE YOU FOLLOW KEIO UNIVERSITY" in text.replace("\n", " ")
    )
    assert "Story number 1" in text and "Story number 2" not in text
    assert "Story number 3" not in text and "Story number 4" not in text
    html = keio.get_body(preferencelist=("html",)).get_content()
    assert "Because you follow Keio University" in html
    (both,) = sent_to(smtp_server, "both@example.org")
    body = both.get_body(preferencelist=("plain",)).get_content()
    for n in (1, 2, 3):
        assert body.count(f"Story number {n}\n") <= 1 and f"Story number {n}" in body
    assert "Story number 4" not in body
    # the two Keio resources are one: the member who followed both follows it once, and the
    # next digest repeats nothing
    merged = cli("resources", "merge", "Keio Univ.", "keio-university")
    assert merged.exit_code == 0, merged.output
    assert "1 articles, 1 followers moved" in merged.output
    listed = {
        row["email"]: row["follows"]
        for row in map(json.loads, cli("subscribers", "list", "--json").stdout.splitlines())
    }
    assert listed["both@example.org"] == ["Keio University"]
    import_articles(
        cli, tmp_path, "day2.json", [article(5, ["Keio Univ."], ["Space"], day="25")], DAY2
    )
    smtp_server.handler.messages.clear()
    result = cli("run", "--now", RUN2, "--force")
    assert result.exit_code == 0, result.output
    for address in ("keio@example.org", "both@example.org"):
        (second,) = sent_to(smtp_server, address)
        text = second.get_body(preferencelist=("plain",)).get_content()
        assert "Story number 5" in text
        assert not any(f"Story number {n}" in text for n in (1, 2, 3, 4))
