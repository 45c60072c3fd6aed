"""The section cache: reused sections give byte-for-byte the whole-page compile, for any member.

The renderer's fast path must never change a byte, so these tests compare it with
``render_digest(cache=False)`` (Jinja -> MJML -> premailer on the whole page) across a seeded
synthetic archive, hostile text, and operator templates the cache cannot reproduce.
"""

from __future__ import annotations

import contextlib
import random
import shutil
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from digest import resources
from digest.content import (
    ArticleView,
    DigestIssue,
    DigestLinks,
    MemberView,
    MentionView,
    Personal,
    Rendered,
)
from digest.render import Renderer, mjml_to_html
from digest.sections import SectionCache, Unsupported, abstract, split_body
from digest.selection import group_by_topic
from digest.topics import topic_slug

TEMPLATES = resources.path("templates")
NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
TOPICS = [f"Topic {i:02d}" for i in range(12)] + ["Stem Cells & <Genes>"]
WORDS = "probe orbit climate river forest energy vaccine protein galaxy é ü 東京 &amp; <b>x</b>"


def archive(n: int, rng: random.Random) -> list[ArticleView]:
    words = WORDS.split()
    out = []
    for i in range(n):
        at = NOW - timedelta(minutes=rng.randrange(7 * 24 * 60))
        topics = tuple(sorted(set(rng.sample(TOPICS, rng.randint(1, 2)))))
        mentions = tuple(
            MentionView(
                " ".join(rng.choices(words, k=2)),
                rng.choice(["", "A 'quoted' \"name\" & co"]),
                rng.choice([None, f"https://example.org/p/{i}?a=1&b=<{j}>"]),
            )
            for j in range(rng.choice([0, 0, 1, 3]))
        )
        out.append(
            ArticleView(
                id=i + 1,
                url=rng.choice([f"https://example.org/a/{i}?x=1&y=2", "javascript:alert(1)"]),
                title=" ".join(rng.choices(words, k=rng.randint(3, 9))),
                published_at=at,
                first_seen_at=at,
                key_points=tuple(
                    " ".join(rng.choices(words, k=rng.randint(5, 40)))
                    for _ in range(rng.randint(1, 4))
                ),
                topics=topics,
                topic_slugs=frozenset(topic_slug(t) for t in topics),
                mentions=mentions,
                summary=rng.choice([None, None, "A <i>summary</i> & more"]),
                source=rng.choice([None, "Nature"]),
            )
        )
    return out


def issue_for(i: int, articles: list[ArticleView], rng: random.Random) -> DigestIssue:
    topics = tuple(sorted(rng.sample(TOPICS, rng.randint(1, 5))))
    member = MemberView(
        id=i,
        email=f"m{i}@example.org",
        name=rng.choice(["", f"Mémber {i}", 'Eve <script>alert("x")</script> & Co', "O'Brien"]),
        status="active",
        frequency=rng.choice(["daily", "weekly"]),
        timezone="UTC",
        send_hour=7,
        topics=topics,
        topic_slugs=frozenset(topic_slug(t) for t in topics),
    )
    chosen = [a for a in articles if a.topic_slugs & member.topic_slugs][: rng.randint(1, 20)]
    token = f"tok{i}.sig-{i}_x"
    return DigestIssue(
        member=member,
        edition="daily:2026-11-24" if member.frequency == "daily" else "weekly:2026-W48",
        edition_label="Tuesday 24 November 2026" if i % 2 else "Week 48, 2026",
        groups=group_by_topic(member, chosen),
        links=DigestLinks(
            preferences_url=f"https://news.example.org/preferences/{token}?a=1&b=2",
            unsubscribe_url=f"https://news.example.org/unsubscribe/{token}",
            unsubscribe_mailto=f"mailto:unsubscribe@news.example.org?subject={token}",
            archive_url="https://news.example.org/archive" if i % 3 else "",
        ),
        site_name="Science Digest",
        base_url="https://news.example.org",
    )


def test_every_member_of_a_random_archive_gets_the_whole_page_compile() -> None:
    rng = random.Random(20261130)
    articles = archive(80, rng)
    renderer = Renderer(TEMPLATES, html_size_budget=35_000)
    issues = [issue_for(i, articles, rng) for i in range(60)]
    issues = [i for i in issues if i.groups]
    fast = [renderer.render_digest(i) for i in issues]
    for i, got in zip(issues, fast, strict=True):
        assert got == renderer.render_digest(i, cache=False), i.member
    assert renderer.section_cache.disabled is None
    # other members with the same articles: their names, emails and links go into the shapes
    # already compiled, so nothing is compiled again
    reused = renderer.compiles
    others = []
    for i, issue in enumerate(issues):
        other = replace(issue.member, name=f"Zoë {i} <b>", email=f"z{i}@example.org")
        others.append(replace(issue, member=other))
        got = renderer.render_digest(others[-1])
        assert f"Zoë {i} &lt;b&gt;" in got.html
    assert renderer.compiles == reused
    # their own sections (greeting, footer) came from the copies kept with their values out
    assert renderer.section_cache._prefilled
    for other_issue in others:
        assert renderer.render_digest(other_issue) == renderer.render_digest(
            other_issue, cache=False
        )
    assert any("More in this issue" in f.html for f in fast)  # the size budget was exercised


def test_content_cannot_forge_a_marker() -> None:
    renderer = Renderer(TEMPLATES)
    rng = random.Random(1)
    articles = archive(5, rng)
    cache = renderer.section_cache
    forged = cache._marker(0) + " " + cache._marker(3) + " " + cache._prefix + "7zz"
    articles[0] = replace(articles[0], title=forged, key_points=(forged,))
    issue = issue_for(1, articles, random.Random(2))
    issue = replace(issue, groups=group_by_topic(issue.member, articles[:1]))
    assert renderer.render_digest(issue) == renderer.render_digest(issue, cache=False)
    assert forged in renderer.render_digest(issue).text


def _templates_with(tmp_path: Path, name: str, old: str, new: str) -> Path:
    shutil.copytree(TEMPLATES, tmp_path / "templates")
    path = tmp_path / "templates" / "email" / name
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return tmp_path / "templates"


def test_sibling_css_turns_reuse_off_and_output_stays_exact(tmp_path: Path) -> None:
    folder = _templates_with(
        tmp_path,
        "layout.mjml.j2",
        ".dg-card { background-color: #ffffff; }",
        ".dg-card { background-color: #ffffff; }\n      .dg-card + .dg-card { color: #123456; }",
    )
    renderer = Renderer(folder)
    rng = random.Random(3)
    articles = archive(30, rng)
    for i in range(6):
        issue = issue_for(i, articles, rng)
        if issue.groups:
            assert renderer.render_digest(issue) == renderer.render_digest(issue, cache=False)
    assert "sibling selector '.dg-card + .dg-card'" in (renderer.section_cache.disabled or "")
    # whole pages are one member's: marked so that no cache downstream keeps them
    (page,) = renderer.render_digest(issue).html_parts
    assert isinstance(page, Personal)


def test_a_two_column_card_changes_the_head_and_output_stays_exact(tmp_path: Path) -> None:
    """An operator's card written as MJML sections, two columns when the article has a source:
    the sections that add a column width add head CSS, and the page is still exact."""
    shutil.copytree(TEMPLATES, tmp_path / "templates")
    folder = tmp_path / "templates"
    (folder / "email" / "_article.mjml.j2").write_text(
        '    <mj-section>{% if article.source %}<mj-column width="30%"><mj-text>'
        "{{ article.source }}</mj-text></mj-column>{% endif %}<mj-column><mj-text>"
        '<h3 id="dg-a{{ article.id }}">{{ article.title }}</h3>{% for p in article.key_points %}'
        "<p>{{ p }}</p>{% endfor %}</mj-text></mj-column></mj-section>\n"
    )
    renderer = Renderer(folder)
    rng = random.Random(4)
    articles = archive(40, rng)
    issues = [issue_for(i, articles, rng) for i in range(20)]
    for issue in issues:
        if issue.groups:
            assert renderer.render_digest(issue) == renderer.render_digest(issue, cache=False)
    assert renderer.section_cache.disabled is None
    assert "mj-column-per-30" in renderer.render_digest(issues[0]).html


def test_split_body_finds_top_level_sections() -> None:
    source = (
        '<mjml><mj-head><mj-attributes><mj-body width="500px" /></mj-attributes></mj-head>'
        '<mj-body css-class="b">\n  <mj-section><mj-column><mj-text>a</mj-text></mj-column>'
        "</mj-section>\n  <mj-spacer />\n  <mj-wrapper><mj-section><mj-column /></mj-section>"
        "</mj-wrapper>\n</mj-body></mjml>"
    )
    head, sections, tail = split_body(source)
    assert head.endswith('<mj-body css-class="b">')
    assert [s[:12] for s in sections] == ["<mj-section>", "<mj-spacer /", "<mj-wrapper>"]
    assert tail == "</mj-body></mjml>"
    with pytest.raises(Unsupported):
        split_body("<mjml><mj-body>stray text<mj-section></mj-section></mj-body></mjml>")
    with pytest.raises(Unsupported):
        split_body("<mjml><mj-body><mj-section></mj-body></mjml>")


def test_abstract_makes_text_and_links_slots_and_keeps_the_rest() -> None:
    section = (
        '<mj-section padding="1px"><mj-column><mj-text css-class="x">\n'
        '  <p style="margin: 0;">Hello &amp; <a href="https://a.example/?q=1&amp;r=2" '
        'class="k">Ann</a> </p>\n'
        "  <!-- a comment stays --><style>p { color: red; }</style>\n"
        "</mj-text></mj-column></mj-section>"
    )
    shape, slots = abstract(section, lambda i: f"@{i}@")
    assert [(s.kind, s.raw) for s in slots] == [
        ("text", "Hello &amp;"),
        ("attr", '"https://a.example/?q=1&amp;r=2"'),
        ("text", "Ann"),
    ]
    assert '<p style="margin: 0;">@0@ <a href="@1@" class="k">@2@</a> </p>' in shape
    assert "<!-- a comment stays --><style>p { color: red; }</style>" in shape
    assert 'padding="1px"' in shape
    with pytest.raises(Unsupported):
        abstract("<mj-section><mj-text>a < b</mj-text></mj-section>", str)


def test_unsupported_pages_are_compiled_whole() -> None:
    cache = SectionCache(mjml_to_html)
    source = "<mjml><mj-body>text outside any section</mj-body></mjml>"
    assert cache.html(source) == mjml_to_html(source)
    assert cache.disabled is None  # one odd page does not turn reuse off


def test_composed_message_bytes_are_the_same_either_way() -> None:
    """compose reuses the cached pieces' encoding; the message bytes must not change."""
    from digest.compose import compose_message

    def message(rendered: Rendered, issue: DigestIssue) -> bytes:
        return compose_message(
            rendered,
            from_address="Science Digest <digest@news.example.org>",
            to_email=issue.member.email,
            to_name=issue.member.name,
            message_id="<x1@news.example.org>",
            date=NOW,
            list_id="Science Digest <digest.news.example.org>",
            unsubscribe_url=issue.links.unsubscribe_url,
            unsubscribe_mailto_url=issue.links.unsubscribe_mailto,
        )

    rng = random.Random(5)
    articles = archive(40, rng)
    renderer = Renderer(TEMPLATES)
    checked = 0
    for i in range(25):
        issue = issue_for(i, articles, rng)
        if not issue.groups:
            continue
        fast, slow = renderer.render_digest(issue), renderer.render_digest(issue, cache=False)
        assert len(fast.html_parts) > 3 and slow.html_parts == ()
        assert message(fast, issue) == message(slow, issue)
        checked += 1
    assert checked > 10


def test_plain_text_and_url_shortcuts_match_lxml() -> None:
    from digest.sections import _attr_html, _text_html, attr_html, text_html

    rng = random.Random(9)
    chars = [chr(c) for c in range(32, 127) if chr(c) not in "<>"]
    chars += ["é", "\xa0", "&amp;", "東京", "\u200b", "\u2028", "😀", "\t", "&#39;", "Ñ"]
    for _ in range(3000):
        raw = "".join(rng.choices(chars, k=rng.randint(1, 40))).strip() or "x"
        with contextlib.suppress(Unsupported):  # e.g. "&#1;": lxml will not hold it
            assert text_html(raw) == _text_html(raw), raw
        value = '"' + raw.replace('"', "") + '"'
        for tag, name in (("a", "href"), ("img", "src"), ("img", "alt"), ("a", "title")):
            with contextlib.suppress(Unsupported):
                assert attr_html(tag, name, value) == _attr_html(tag, name, value), (name, value)


@pytest.mark.parametrize(
    ("name", "old", "new"),
    [
        ("digest.txt.j2", "{{ article_texts(group.articles) }}",
         "{{ article_texts(group.articles) | upper }}"),
        ("digest.mjml.j2", "{{ article_cards(groups) }}",
         '{% set cards = article_cards(groups) %}{{ cards | replace("Topics:", "On:") }}'),
    ],
    ids=["text-filtered", "cards-set-and-filtered"],
)  # fmt: skip
def test_templates_that_transform_the_cards_still_render_exactly(
    tmp_path: Path, name: str, old: str, new: str
) -> None:
    from digest.render import prints_verbatim

    renderer = Renderer(_templates_with(tmp_path, name, old, new))
    default = Renderer(TEMPLATES)
    assert prints_verbatim(default.env, "article_cards")
    assert prints_verbatim(default.env, "article_texts")
    rng = random.Random(6)
    articles = archive(30, rng)
    for i in range(8):
        issue = issue_for(i, articles, rng)
        if issue.groups:
            fast = renderer.render_digest(issue)
            assert fast == renderer.render_digest(issue, cache=False)
            assert default.render_digest(issue).text_parts  # the default uses stand-ins
    assert ("On:" in fast.html) or (fast.text.isupper() or "TOPICS:" in fast.text)


def test_members_own_pieces_stay_out_of_the_caches() -> None:
    """Caches hold what members share; one member's pieces never accumulate in them."""
    from digest import compose
    from digest.content import Personal

    rng = random.Random(8)
    articles = archive(10, rng)
    renderer = Renderer(TEMPLATES)
    base = issue_for(1, articles, random.Random(1))
    sizes = []
    for i in range(30):
        member = replace(base.member, name=f"Reader {i}", email=f"r{i}@example.org")
        rendered = renderer.render_digest(replace(base, member=member))
        assert any(isinstance(p, Personal) for p in rendered.html_parts)
        assert any(isinstance(p, Personal) for p in rendered.text_parts)
        assert not any(f"r{i}@example.org" in p for p in rendered.html_parts
                       if not isinstance(p, Personal))  # fmt: skip
        compose.compose_message(
            rendered,
            from_address="D <d@news.example.org>",
            to_email=member.email,
            to_name=member.name,
            message_id=f"<m{i}@news.example.org>",
            date=NOW,
            list_id="D <digest.news.example.org>",
            unsubscribe_url=base.links.unsubscribe_url,
            unsubscribe_mailto_url=base.links.unsubscribe_mailto,
        )
        cache = renderer.section_cache
        assert not any(f"r{i}@example.org" in k for k in cache._prefilled)
        sizes.append((len(compose._QP_PIECES), len(cache._sections), len(cache._prefilled)))
    assert sizes[-1] == sizes[1]  # nothing grew after the first two members


def test_ids_are_slots_and_id_selectors_turn_reuse_off(tmp_path: Path) -> None:
    """Cards carry anchors (``id``) for the contents list: one shape for every card still."""
    section = (
        '<mj-section><mj-column><mj-text><h3 id="dg-a12"><a href="https://x.example/12">T</a>'
        "</h3></mj-text></mj-column></mj-section>"
    )
    shape, slots = abstract(section, lambda i: f"@{i}@")
    assert '<h3 id="@0@">' in shape and slots[0].raw == '"dg-a12"'
    folder = _templates_with(
        tmp_path,
        "layout.mjml.j2",
        ".dg-muted { color: #57606a; }",
        ".dg-muted { color: #57606a; }\n      #dg-a3 { color: #123456; }",
    )
    renderer = Renderer(folder)
    rng = random.Random(11)
    articles = archive(20, rng)
    for i in range(4):
        issue = issue_for(i, articles, rng)
        if issue.groups:
            assert renderer.render_digest(issue) == renderer.render_digest(issue, cache=False)
    assert "id selector '#dg-a3'" in (renderer.section_cache.disabled or "")
