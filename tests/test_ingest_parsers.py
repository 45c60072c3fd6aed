"""The pure half of ingestion: parsers and validation, no store involved."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

from digest.ingest.htmltext import html_to_paragraphs
from digest.ingest.parse_feed import parse_feed_bytes
from digest.ingest.parse_json import parse_json_text
from digest.ingest.parse_markdown import body_paragraphs, parse_markdown_text
from digest.ingest.records import build_record
from digest.topics import MAX_TOPIC_LENGTH, fit_topic, topic_length_problem, topic_slug

NOW = datetime(2025, 3, 25, tzinfo=UTC)


def test_markdown_body_paragraphs_skip_headings_and_join_lines() -> None:
    body = "# Heading\n\nFirst line\nwrapped here.\n\n## Sub\nSecond.\n\n\n"
    assert body_paragraphs(body) == ["First line wrapped here.", "Second."]


def test_markdown_front_matter_key_points_win_and_yaml_dates() -> None:
    text = (
        "---\nurl: https://m.example/a\ntitle: T\npublished_at: 2025-03-20\n"
        "key_points: [From front matter]\n---\nBody paragraph.\n"
    )
    result = parse_markdown_text(text, "a.md")
    (rec,) = result.records
    assert rec.key_points == ("From front matter",)
    assert rec.published_at == datetime(2025, 3, 20, tzinfo=UTC)


def test_markdown_bad_dates_name_the_field_and_good_ones_still_parse() -> None:
    def parse(published: str) -> tuple[list[datetime], list[str]]:
        text = f"---\nurl: https://m.example/a\ntitle: T\npublished_at: {published}\n---\nB.\n"
        result = parse_markdown_text(text, "a.md")
        return [r.published_at for r in result.records], [str(e) for e in result.errors]

    for bad in ("2026-13-01", "2026-03-20T10:00:00+25:00", "!!timestamp 2026-02-30"):
        value = bad.removeprefix("!!timestamp ")
        assert parse(bad) == (
            [],
            [f"a.md: record 1: field 'published_at': not an ISO 8601 date: {value!r}"],
        )
    assert parse("2025-03-20T10:00:00Z") == ([datetime(2025, 3, 20, 10, tzinfo=UTC)], [])
    assert parse("2025-03-20T12:00:00+02:00") == ([datetime(2025, 3, 20, 10, tzinfo=UTC)], [])
    assert parse("2025-03-20 10:00:00") == ([datetime(2025, 3, 20, 10, tzinfo=UTC)], [])


def test_markdown_without_front_matter_is_refused() -> None:
    result = parse_markdown_text("Just text\n", "plain.md")
    assert "plain.md: no YAML front matter" in str(result.errors[0])


def test_naive_and_offset_dates_are_utc() -> None:
    base = {"url": "https://d.example/", "title": "t", "key_points": ["k"]}
    rec, _ = build_record({**base, "published_at": "2025-03-20T10:00:00"})
    assert rec is not None and rec.published_at == datetime(2025, 3, 20, 10, tzinfo=UTC)
    rec, _ = build_record({**base, "published_at": "2025-03-20T12:00:00+02:00"})
    assert rec is not None and rec.published_at == datetime(2025, 3, 20, 10, tzinfo=UTC)
    rec, _ = build_record({**base, "published_at": date(2025, 3, 20)})
    assert rec is not None and rec.published_at == datetime(2025, 3, 20, tzinfo=UTC)
    rec, errors = build_record({**base, "published_at": 20250320})
    assert rec is None and errors[0].field == "published_at"


def test_control_characters_and_limits() -> None:
    raw = {
        "url": "https://d.example/",
        "title": "Line one\r\nBcc: x@example.org\x00",
        "published_at": "2025-03-20",
        "key_points": ["k"],
        "mentions": [{"name": "A\nB", "description": "d\x07"}],
    }
    rec, errors = build_record(raw)
    assert not errors and rec is not None
    assert rec.title == "Line one Bcc: x@example.org"
    assert rec.mentions == (("A B", "d", None, None),)
    _, errors = build_record({**raw, "title": "x" * 501})
    assert errors[0].field == "title" and "500" in errors[0].message
    _, errors = build_record({**raw, "key_points": ["k"] * 51})
    assert errors[0].field == "key_points"


def test_characters_no_document_can_carry_are_dropped_from_every_text() -> None:
    # a feed from anywhere can hold them: a lone surrogate cannot be stored as UTF-8, and
    # U+FFFE/U+FFFF or U+FDD0 are no XML characters, so one of them would break the Atom feed
    odd = "\ud800\ufffe\uffff\ufdd0\U0001fffe"
    raw = {
        "url": "https://d.example/",
        "title": f"Ti{odd}tle",
        "summary": f"Sum{odd}mary",
        "published_at": "2025-03-20",
        "key_points": [f"Key{odd} point"],
        "topics": [f"To{odd}pic"],
        "mentions": [{"name": f"Na{odd}me", "description": f"De{odd}sc"}],
    }
    rec, errors = build_record(raw)
    assert not errors and rec is not None
    assert (rec.title, rec.summary, rec.key_points) == ("Title", "Summary", ("Key point",))
    assert not set(odd) & set("".join(rec.topics))  # topic names keep letters only anyway
    assert rec.mentions == (("Name", "Desc", None, None),)


def test_json_nested_beyond_reason_is_an_error_not_a_crash() -> None:
    # a file, or a JSON Feed fetched from anywhere, can nest arrays a hundred thousand deep
    for text in ("[" * 100_000, '{"a":' * 100_000 + "1" + "}" * 100_000):
        for lines in (False, True):
            result = parse_json_text(text, "deep.json", NOW, jsonlines=lines)
            assert not result.records
            assert len(result.errors) == 1 and "nested too deeply" in str(result.errors[0])
    fine = parse_json_text('{"a": 1}\n' + "[" * 100_000 + "\n", "mixed.jsonl", NOW)
    assert [e.record for e in fine.errors][-1] == "line 2"


def test_jsonl_detected_by_extra_data_and_errors_by_line() -> None:
    good = (
        '{"url": "https://j.example/1", "title": "t", '
        '"published_at": "2025-03-20", "key_points": ["k"]}'
    )
    result = parse_json_text(f"{good}\n{{oops\n", "x.json", NOW)
    assert len(result.records) == 1
    assert str(result.errors[0]).startswith("x.json: line 2: invalid JSON")


def test_jsonl_splits_on_newline_only_so_unicode_separators_stay_in_strings() -> None:
    title = "Line\u2028sep \u2029para \u0085next"
    rows = [
        {"url": f"https://j.example/{n}", "title": title, "published_at": "2025-03-20"}
        | {"key_points": [f"Point\u2028{n}"]}
        for n in (1, 2)
    ]
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    assert "\u2028" in lines[0]  # written raw, as ensure_ascii=False does
    text = "\r\n".join([lines[0], lines[1], "{oops\u2028", "\u2029"]) + "\r\n"
    for name, jsonlines in (("x.jsonl", True), ("x.json", False)):  # .json falls back
        result = parse_json_text(text, name, NOW, jsonlines=jsonlines)
        assert [r.url for r in result.records] == ["https://j.example/1", "https://j.example/2"]
        assert result.records[0].title == "Line sep para next"
        assert result.records[1].key_points == ("Point\u20282",)
        assert [str(e).split(": invalid JSON")[0] for e in result.errors] == [
            f"{name}: line 3",
            f"{name}: line 4",
        ]


def test_html_to_paragraphs_plain_text_and_bounds() -> None:
    html = (
        "<p>One <b>bold</b>\n word</p><script>evil()</script><style>p{}</style>"
        "<ul><li>Item</li></ul>Tail<br><br>After break<!-- c -->"
    )
    assert html_to_paragraphs(html) == ["One bold word", "Item", "Tail", "After break"]
    many = "".join(f"<p>{i}</p>" for i in range(30))
    assert len(html_to_paragraphs(many)) == 10
    assert len(html_to_paragraphs("<p>" + "word " * 1000 + "</p>")[0]) <= 2000
    assert html_to_paragraphs("") == []


def test_feed_entry_without_date_uses_now_and_categories_become_topics() -> None:
    feed = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>F</title>
    <item><title>A &amp; B</title><link>https://f.example/1</link><guid>id-1</guid>
    <category>Space</category><category> space </category>
    <description>&lt;p&gt;Para one&lt;/p&gt;&lt;p&gt;Para two&lt;/p&gt;</description></item>
    <item><title>No link</title></item></channel></rss>"""
    result = parse_feed_bytes(feed, "f.xml", NOW)
    (rec,) = result.records
    assert (rec.title, rec.url, rec.guid, rec.source) == (
        "A & B",
        "https://f.example/1",
        "id-1",
        "F",
    )
    assert rec.published_at == NOW
    assert rec.topics == ("Space",)
    assert rec.key_points == ("Para one", "Para two")
    assert str(result.errors[0]) == "f.xml: entry 2: missing link"


def test_topic_names_and_slugs_both_fit_their_columns() -> None:
    assert topic_length_problem("ß" * 100) is None
    assert "once case-folded (201" in (topic_length_problem("ß" * 100 + "x") or "")
    assert "longer than 200 characters:" in (topic_length_problem("x" * 201) or "")
    for raw in ("ß" * 200, "ﬃ" * 150, "x" * 500, "a " * 150, "ß" * 99 + "ﬃ"):
        name = fit_topic(raw)
        assert name and topic_length_problem(name) is None
        assert len(topic_slug(name)) >= MAX_TOPIC_LENGTH - 2  # cut no shorter than it must
    built, errors = build_record(
        {
            "url": "https://n.example/1",
            "title": "T",
            "published_at": "2025-03-20",
            "key_points": ["P"],
            "topics": ["ok", "ß" * 150],
        }
    )
    assert built is None
    assert [e.field for e in errors] == ["topics"]
    assert "'ßßß" in errors[0].message  # the topic is named


def test_garbage_is_not_a_feed() -> None:
    for data in (b"", b"\x00\xff\xfe garbage", b"<html><p>x</p></html>", b"<<<>>>"):
        result = parse_feed_bytes(data, "g.xml", NOW)
        assert result.records == []
        assert "g.xml: not an RSS/Atom feed" in str(result.errors[0])


def test_mentions_may_carry_a_kind_and_a_url_and_a_bad_kind_names_its_field() -> None:
    base = {"url": "https://e.example/", "title": "T", "published_at": "2025-03-20"}
    rec, errors = build_record(
        {
            **base,
            "key_points": ["k"],
            "mentions": [
                {"name": "Keio", "kind": "Organization", "url": "https://www.keio.ac.jp/"},
                {"name": "Okano", "kind": "person"},
                {"name": "Plain"},
            ],
        }
    )
    assert not errors and rec is not None
    assert rec.mentions == (
        ("Keio", "", "https://www.keio.ac.jp/", "organisation"),
        ("Okano", "", None, "person"),
        ("Plain", "", None, None),
    )
    # a mention without a kind hashes as it always did: an unchanged file stays unchanged
    assert rec.canonical()["mentions"][2] == ["Plain", "", None]
    _, errors = build_record(
        {**base, "key_points": ["k"], "mentions": [{"name": "X", "kind": "robot"}]}
    )
    assert [str(e) for e in errors] == [
        "field 'mentions[1].kind': 'robot' is not one of person, organisation, other"
    ]


def test_feed_authors_become_person_mentions() -> None:
    feed = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>F</title><id>urn:f</id>
<updated>2025-03-20T00:00:00Z</updated>
<entry><title>Entry</title><link href="https://e.example/1"/><id>urn:1</id>
<updated>2025-03-20T00:00:00Z</updated><summary>Text.</summary>
<author><name>Mara Okafor</name><uri>https://e.example/people/mara</uri></author>
<author><name>Tomás Ibarra</name><uri>javascript:alert(1)</uri></author>
</entry></feed>""".encode()
    result = parse_feed_bytes(feed, "f.xml", NOW)
    assert not result.errors
    (rec,) = result.records
    assert rec.mentions == (
        ("Mara Okafor", "", "https://e.example/people/mara", "person"),
        ("Tomás Ibarra", "", None, "person"),
    )
