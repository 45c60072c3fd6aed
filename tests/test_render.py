"""Rendering: the sample article end to end, escaping, cached sections equal a fresh render."""

from __future__ import annotations

import html as htmlmod
import os
import re
import shutil
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import lxml.html
import pytest

from digest import resources
from digest.content import (
    ArticleView,
    DigestIssue,
    DigestLinks,
    MemberView,
    MentionView,
    TopicGroup,
)
from digest.render import Renderer, date_long, wrap72

TEMPLATES = resources.path("templates")

TITLE = "Paralysed man stands again after groundbreaking stem cell therapy"
SUBTITLE = (
    "Japanese trial using reprogrammed stem cells shows promising signs of spinal cord regeneration"
)
KEY_POINTS = (
    "Japanese researchers have made a significant breakthrough in spinal cord injury treatment "
    "using reprogrammed stem cells. In a pioneering clinical trial, a paralysed man can now "
    "stand on his own after receiving an injection of neural stem cells derived from induced "
    "pluripotent stem (iPS) cells. Another participant has regained movement in his arms and "
    "legs, though two others showed no significant improvement. The study, led by Hideyuki "
    "Okano at Keio University in Tokyo, marks an important step in regenerative medicine, "
    "though the results have yet to be peer-reviewed.",
    "iPS cells are created by reverting adult cells to an embryonic-like state, allowing them "
    "to develop into different cell types. In this trial, neural precursor cells derived from "
    "donor iPS cells were injected into the injury sites of four men. The surgeries took place "
    "between 2021 and 2023, with patients receiving immunosuppressants to prevent rejection. At "
    "a one-year follow-up, no severe side effects were observed. One patient improved to a "
    "classification of C on the American Spinal Injury Association Impairment Scale (AIS), "
    "while another reached level D and is now training to walk\u2014considered a dramatic "
    "recovery.",
    "While the findings are promising, scientists caution that larger trials are needed to "
    "confirm efficacy. Some individuals with spinal cord injuries experience natural recovery, "
    "so it remains uncertain whether the improvements resulted from the treatment. Previous "
    "studies suggest transplanted iPS cells may support neural regeneration by secreting "
    "beneficial substances and rebuilding damaged tissue. However, a major challenge is "
    "ensuring cell survival post-transplantation. Okano and his team observed signs that some "
    "transplanted cells did persist, offering hope for future research. His startup, K "
    "Pharma, now plans to seek approval for larger clinical trials to further investigate "
    "this potential breakthrough.",
)
MENTIONS = (
    MentionView("Hideyuki Okano", "Professor at Keio University School of Medicine."),
    MentionView(
        "Keio University", "Private university in Tokyo, Japan.", "https://www.keio.ac.jp/"
    ),
)
SAMPLE = ArticleView(
    id=1,
    url="https://example.org/articles/paralysed-man-stands-again",
    title=TITLE,
    published_at=datetime(2025, 3, 24, 9, 30, tzinfo=UTC),
    first_seen_at=datetime(2025, 3, 24, 10, 0, tzinfo=UTC),
    key_points=KEY_POINTS,
    topics=("Stem Cells", "Nervous System"),
    topic_slugs=frozenset({"stem-cells", "nervous-system"}),
    mentions=MENTIONS,
    summary=SUBTITLE,
)
HOSTILE = ArticleView(
    id=2,
    url="javascript:alert(1)",
    title="Evil <script>alert(1)</script> title",
    published_at=datetime(2025, 3, 23, tzinfo=UTC),
    first_seen_at=datetime(2025, 3, 23, tzinfo=UTC),
    key_points=("Point with <b>bold</b> & <img src=x onerror=alert(2)> markup",),
    topics=("Stem Cells",),
    mentions=(MentionView("<i>Mallory</i>", 'Says "hi" & <script>x</script>', "javascript:x"),),
)


def member(name: str = "Ann Example", email: str = "ann@example.org", mid: int = 1) -> MemberView:
    return MemberView(
        id=mid,
        email=email,
        name=name,
        status="active",
        frequency="daily",
        timezone="UTC",
        send_hour=8,
        topics=("Stem Cells", "Nervous System"),
    )


def links(token: str = "tok.en-1_x") -> DigestLinks:
    return DigestLinks(
        preferences_url=f"https://news.example.org/preferences/{token}",
        unsubscribe_url=f"https://news.example.org/unsubscribe/{token}",
        unsubscribe_mailto=f"mailto:unsubscribe@news.example.org?subject=unsubscribe%20{token}",
    )


def issue(
    m: MemberView | None = None,
    articles: tuple[ArticleView, ...] = (SAMPLE,),
    more: tuple[ArticleView, ...] = (),
    lk: DigestLinks | None = None,
) -> DigestIssue:
    return DigestIssue(
        member=m or member(),
        edition="daily:2025-03-25",
        edition_label="Tuesday 25 March 2025",
        groups=(TopicGroup("Stem Cells", articles),),
        links=lk or links(),
        site_name="Science Digest",
        base_url="https://news.example.org",
        more=more,
    )


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(TEMPLATES)


def norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def html_text(page: str) -> str:
    doc = lxml.html.document_fromstring(page)
    for bad in doc.xpath("//style|//title"):
        bad.drop_tree()
    return norm(doc.text_content())


def test_filters() -> None:
    assert date_long(datetime(2025, 3, 24, tzinfo=UTC)) == "24 March 2025"
    wrapped = wrap72("word " * 40 + "https://example.org/" + "x" * 100)
    assert all(len(line) <= 72 or "://" in line for line in wrapped.splitlines())


def test_sample_article_in_html_and_text() -> None:
    """``summary_words = 0``: every part of the seed article, in full, in both parts."""
    out = Renderer(TEMPLATES, summary_words=0).render_digest(issue())
    body = html_text(out.html)
    text = norm(out.text)
    expected = [
        TITLE,
        SUBTITLE,
        "24 March 2025",
        *KEY_POINTS,
        "Hideyuki Okano",
        "Professor at Keio University School of Medicine.",
        "Keio University",
        "Private university in Tokyo, Japan.",
        "Stem Cells, Nervous System",
        "Science Digest",
        "Tuesday 25 March 2025",
        "Hello Ann Example,",
        "Manage your preferences",
        "Unsubscribe",
    ]
    for part in expected:
        assert norm(part) in body, part
        assert norm(part) in text, part
    assert "Topics: Stem Cells, Nervous System" in text
    assert "- Hideyuki Okano: Professor at Keio University School of Medicine." in out.text
    assert "- Keio University: Private university in Tokyo, Japan." in out.text
    assert f"Read more: {SAMPLE.url}" in out.text
    doc = lxml.html.document_fromstring(out.html)
    (h3,) = doc.xpath("//h3")
    assert h3.xpath("string(.//a/@href)") == SAMPLE.url and norm(h3.text_content()) == TITLE
    assert doc.xpath("//a[@href=$u]", u=SAMPLE.url)[-1].text_content() == "Read more"
    assert doc.xpath("//a[@href='https://www.keio.ac.jp/']")[0].text_content() == "Keio University"
    assert out.subject == TITLE  # the From name says who sends it: not repeated


def test_key_point_summary_by_default(renderer: Renderer) -> None:
    """By default a card shows the key points cut to 40 words at a sentence, then Read more."""
    out = renderer.render_digest(issue())
    body, text = html_text(out.html), norm(out.text)
    first = "Japanese researchers have made a significant breakthrough in spinal cord injury " + (
        "treatment using reprogrammed stem cells."
    )
    for part in (first, SUBTITLE, "Hideyuki Okano", "Private university in Tokyo, Japan."):
        assert part in body and part in text
    for rest in (KEY_POINTS[0][len(first) :].strip()[:60], KEY_POINTS[1][:60], KEY_POINTS[2][:60]):
        assert rest not in body and rest not in text
    doc = lxml.html.document_fromstring(out.html)
    (read_more,) = doc.xpath("//a[normalize-space()='Read more']")
    assert read_more.get("href") == SAMPLE.url
    assert f"{first} Read more" in body  # it follows the summary
    assert f"Read more: {SAMPLE.url}" in out.text
    # the mentions on one line: name, then description; the name links where it has a URL
    (line,) = [p for p in doc.xpath("//p") if "Mentioned:" in p.text_content()]
    assert norm(line.text_content()) == (
        "Mentioned: Hideyuki Okano \u2013 Professor at Keio University School of Medicine. "
        "\u00b7 Keio University \u2013 Private university in Tokyo, Japan."
    )


def test_html_structure(renderer: Renderer) -> None:
    page = renderer.render_digest(issue()).html
    assert page.lower().startswith("<!doctype html>")
    assert '<html lang="en"' in page
    assert 'role="presentation"' in page
    assert "{{" not in page and "{%" not in page and "zzdg" not in page
    assert "fonts.googleapis" not in page  # nothing for a client (or premailer) to fetch
    assert 'name="color-scheme"' in page
    doc = lxml.html.document_fromstring(page)
    assert doc.xpath("//a[@href=$u]", u=links().preferences_url)[0].text_content() == (
        "Manage your preferences"
    )
    assert doc.xpath("//a[@href=$u]", u=links().unsubscribe_url)[0].text_content() == "Unsubscribe"
    styles = " ".join(s.text_content() for s in doc.xpath("//style"))
    dark = styles[styles.index("@media (prefers-color-scheme: dark)") :]
    assert "!important" in dark[: dark.index("}")]
    mobile = styles[styles.index("@media only screen and (max-width: 480px)") :]
    assert "!important" in mobile[: mobile.index("}")]
    assert "font-size:16px" in page.replace(" ", "")
    assert "max-width:600px" in page


def test_text_part_lines(renderer: Renderer) -> None:
    text = renderer.render_digest(issue(more=(HOSTILE,))).text
    assert "{{" not in text and "zzdg" not in text
    for line in text.splitlines():
        assert len(line) <= 78 or "://" in line or line.startswith("mailto:"), line
    assert links().preferences_url in text and links().unsubscribe_url in text


@pytest.mark.parametrize(
    ("topics", "resource_ids", "words"),
    [
        (("Stem Cells",), frozenset(), "on the topics you follow."),
        ((), frozenset({7}), "about the people and organisations you follow."),
        (("Stem Cells",), frozenset({7}), "on the topics, people and organisations you follow."),
        ((), frozenset(), "from the archive."),
    ],
)
def test_greeting_names_what_the_member_follows(
    renderer: Renderer, topics: tuple[str, ...], resource_ids: frozenset[int], words: str
) -> None:
    reader = replace(member(), topics=topics, resource_ids=resource_ids)
    for cache in (True, False):
        rendered = renderer.render_digest(issue(reader), cache=cache)
        assert f"here is 1 new article {words}" in norm(rendered.text)
        assert f"here is 1 new article {words}" in html_text(rendered.html)
    others = {"on the topics you follow", "people and organisations you follow", "from the archive"}
    assert sum(o in norm(rendered.text) for o in others) == 1


def test_hostile_content_is_escaped(renderer: Renderer) -> None:
    out = renderer.render_digest(issue(articles=(HOSTILE, SAMPLE)))
    assert "<script" not in out.html.lower()
    assert "<b>bold" not in out.html and "<img src=x" not in out.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in out.html
    assert "&lt;b&gt;bold&lt;/b&gt;" in out.html
    assert "javascript:" not in out.html
    body = html_text(out.html)
    assert "Evil <script>alert(1)</script> title" in body
    assert "Point with <b>bold</b> & <img src=x onerror=alert(2)> markup" in body
    assert "Evil <script>alert(1)</script> title" in out.text
    assert "Point with <b>bold</b> & <img src=x onerror=alert(2)> markup" in out.text
    assert '- <i>Mallory</i>: Says "hi" & <script>x</script>' in out.text
    assert out.subject == "Evil <script>alert(1)</script> title and 1 more"


MEMBERS = [
    member("Ann Example", "ann@example.org", 1),
    member('Eve <script>alert("x")</script> & Co', "eve+tag@example.org", 2),
    member('O\'Brien "Quoted" <b>', "obrien@example.org", 3),
    member("Zoë Ñúñez 東京 \u00a0nbsp", "zoe@example.org", 4),
    member("", "anonymous@example.org", 5),
    member("Tab\tand\r\nnewline\x00name", "ctl@example.org", 6),
]


@pytest.mark.parametrize("m", MEMBERS, ids=lambda m: str(m.id))
def test_cached_render_equals_fresh_render(m: MemberView) -> None:
    renderer = Renderer(TEMPLATES)
    lk = links(f"tok-{m.id}.sig_{m.id}")
    if m.id == 3:  # characters that need escaping inside an href as well
        lk = replace(lk, preferences_url='https://news.example.org/p?a=1&b="2"&c=<3> é')
    fresh = renderer.render_digest(issue(m, more=(HOSTILE,), lk=lk), cache=False)
    # the first render compiles the shapes, a second member reuses them
    renderer.render_digest(issue(member("Someone Else", "else@example.org", 99)))
    for _ in range(2):
        cached = renderer.render_digest(issue(m, more=(HOSTILE,), lk=lk))
        assert cached.html == fresh.html
        assert cached.text == fresh.text
        assert cached.subject == fresh.subject
    assert renderer.section_cache.disabled is None
    if m.name.strip():
        assert htmlmod.escape(m.name.split()[0], quote=False) in cached.html


def test_sections_are_compiled_once_per_shape() -> None:
    renderer = Renderer(TEMPLATES)
    outs = [renderer.render_digest(issue(m, lk=links(f"t{m.id}"))) for m in MEMBERS if m.name]
    after_first = renderer.compiles
    assert 0 < after_first <= 3  # probe, frame, whole-page check: all on the first member
    assert len({o.html for o in outs}) == len(outs)
    assert 'Eve &lt;script&gt;alert("x")&lt;/script&gt; &amp; Co' in outs[1].html
    # an edited article has the same shape: new text, no new compile, no stale text
    edited = replace(SAMPLE, title="Corrected title", url="https://example.org/corrected")
    page = renderer.render_digest(issue(articles=(edited,))).html
    assert "Corrected title" in page and TITLE not in page
    assert 'href="https://example.org/corrected"' in page
    assert renderer.compiles == after_first
    # a card of another shape (no summary, one key point) is compiled once, then reused
    renderer.render_digest(issue(articles=(SAMPLE, HOSTILE)))
    assert renderer.compiles > after_first
    again = renderer.compiles
    renderer.render_digest(issue(member("Other"), articles=(SAMPLE, HOSTILE)))
    assert renderer.compiles == again
    assert renderer.section_cache.disabled is None


def test_template_change_invalidates_cache(tmp_path: Path) -> None:
    shutil.copytree(TEMPLATES, tmp_path / "templates")
    renderer = Renderer(tmp_path / "templates", check_seconds=0)
    first = renderer.render_digest(issue())
    path = tmp_path / "templates/email/subject.txt.j2"
    path.write_text("Changed: {{ site_name }}\n")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10_000_000_000))
    second = renderer.render_digest(issue())
    assert first.subject != second.subject == "Changed: Science Digest"


def test_confirmation(renderer: Renderer) -> None:
    url = "https://news.example.org/confirm/abc.def?x=1&y=2"
    out = renderer.render_notice(
        "confirm", {"site_name": "Science Digest", "confirm_url": url, "member": member("Zoë <b>")}
    )
    assert out.subject == "Confirm your subscription to Science Digest"
    assert out.html.lower().startswith("<!doctype html>")
    doc = lxml.html.document_fromstring(out.html)
    assert doc.xpath("//a[@href=$u]", u=url)
    # anyone can ask for any address: the confirmation greets nobody by a typed name
    assert "Hello," in html_text(out.html) and "Zoë" not in out.html
    assert "Hello," in out.text and "Zoë" not in out.text and url in out.text


def test_signin_mail_names_the_site_once_in_plain_words(renderer: Renderer) -> None:
    url = "https://news.example.org/signin/abc.def"
    out = renderer.render_notice(
        "signin", {"site_name": "The Digest", "signin_url": url, "minutes": 20}
    )
    for words in (norm(out.text), html_text(out.html)):
        assert "sign in to the archive of The Digest. It works once, for 20 minutes." in words
        assert "the The Digest" not in words
    assert url in out.text


def test_templates_dir_overrides_one_template_and_keeps_the_rest(tmp_path: Path) -> None:
    from digest.doctor import template_problems
    from digest.render import make_environment

    (tmp_path / "email").mkdir()
    (tmp_path / "email" / "subject.txt.j2").write_text("Custom subject for {{ site_name }}\n")
    env = make_environment(tmp_path)
    assert env.get_template("email/subject.txt.j2").render(site_name="X").strip() == (
        "Custom subject for X"
    )
    assert env.get_template("email/digest.mjml.j2") is not None  # from the built-in set
    assert template_problems(tmp_path) == []


def test_fill_words_wraps_exactly_as_textwrap() -> None:
    """The text part's wrapper against the standard library's, on random words and widths."""
    import random
    import textwrap

    from digest.render import fill_words

    rng = random.Random(72)
    for _ in range(3000):
        sizes = [1, 2, 5, 9, 30, 71, 72, 73, 90]
        words = ["x" * rng.choice(sizes) for _ in range(rng.randint(0, 30))]
        text = " ".join(words)
        width = rng.choice([10, 20, 72, 73])
        indent = rng.choice(["", "  ", "    "])
        expected = textwrap.fill(
            text,
            width=width,
            subsequent_indent=indent,
            break_long_words=False,
            break_on_hyphens=False,
        )
        assert fill_words(text, indent, width) == expected, (text, width, indent)


# ------------------------------------------------------------------ the digest's layout


def numbered(n: int, topic: str = "Stem Cells", title: str = "") -> ArticleView:
    return replace(
        SAMPLE,
        id=100 + n,
        url=f"https://example.org/articles/{n}",
        title=title or f"Headline number {n} about {topic.lower()}",
        topics=(topic,),
        topic_slugs=frozenset({topic.lower().replace(" ", "-")}),
    )


def test_subject_is_at_most_70_characters_cut_at_a_word(renderer: Renderer) -> None:
    long_title = "A remarkably long headline about " + "stem cell research " * 8
    for count in (1, 2, 12, 140):
        articles = tuple(numbered(i, title=long_title if i == 0 else "") for i in range(count))
        subject = renderer.render_digest(issue(articles=articles)).subject
        assert len(subject) <= 70, subject
        assert subject.startswith("A remarkably long headline about stem cell")
        assert "Science Digest" not in subject  # the From name is not repeated
        if count > 1:
            assert subject.endswith(f"\u2026 and {count - 1} more"), subject
            assert subject[: subject.index("\u2026")] in long_title  # cut at a word
    short = renderer.render_digest(issue(articles=(numbered(1, title="Short one"),))).subject
    assert short == "Short one"


def test_preheader_teases_the_next_headlines_hidden_and_padded(renderer: Renderer) -> None:
    articles = tuple(numbered(i) for i in range(5))
    out = renderer.render_digest(issue(articles=articles))
    doc = lxml.html.document_fromstring(out.html)
    (pre,) = doc.xpath("//div[contains(@class, 'dg-preheader')]")
    style = pre.get("style").replace(" ", "")
    assert "display:none" in style and "color" not in style and "font-size" not in style
    text = pre.text_content()
    assert text.startswith("Also: Headline number 1 about stem cells; Headline number 2")
    assert "and 2 more" in text and "Tuesday 25 March 2025" in text
    assert "Headline number 0" not in text  # the subject names the first one
    assert text.count("\u200c") >= 40  # zero-width padding after the words
    # it comes before any visible text of the body
    body_text = doc.xpath("string(//body)")
    assert body_text.strip().startswith("Also:")


def test_contents_link_every_headline_to_its_card_and_headings_are_in_order(
    renderer: Renderer,
) -> None:
    articles = (numbered(1), numbered(2, "Space"), numbered(3))
    group_issue = replace(
        issue(articles=articles),
        groups=(
            TopicGroup("Stem Cells", (articles[0], articles[2])),
            TopicGroup("Space", (articles[1],)),
        ),
    )
    doc = lxml.html.document_fromstring(renderer.render_digest(group_issue).html)
    levels = [int(h.tag[1]) for h in doc.xpath("//h1|//h2|//h3|//h4|//h5|//h6")]
    assert levels[0] == 1 and levels.count(1) == 1
    assert all(b - a <= 1 for a, b in zip(levels, levels[1:], strict=False))  # no level skipped
    assert norm(doc.xpath("string(//h1)")) == "Tuesday 25 March 2025"
    h2s = [norm(h.text_content()) for h in doc.xpath("//h2")]
    assert h2s == ["In this issue", "Stem Cells", "Space"]
    h3s = doc.xpath("//h3")
    assert [norm(h.text_content()) for h in h3s] == [a.title for a in group_issue.articles]
    for h3, article in zip(h3s, group_issue.articles, strict=True):
        assert h3.xpath(".//a/@href") == [article.url]  # the title is a link
        (entry,) = doc.xpath("//a[@href=$h]", h=f"#{h3.get('id')}")  # and the contents lead to it
        assert norm(entry.text_content()) == article.title
    # the two topics are named in the contents, and each card says its topics
    contents = [norm(t.text_content()) for t in doc.xpath("//table[contains(@class,'dg-entry')]")]
    assert contents == [
        f"Stem Cells {articles[0].title}",
        articles[2].title,
        f"Space {articles[1].title}",
    ]
    assert "Topics: Space" in html_text(lxml.html.tostring(doc, encoding="unicode"))


def test_topics_line_only_when_the_digest_spans_several_topics(renderer: Renderer) -> None:
    one = renderer.render_digest(issue(articles=(numbered(1), numbered(2))))
    assert "Topics:" not in one.html and "Topics:" not in one.text
    two = renderer.render_digest(issue(articles=(numbered(1), numbered(2, "Space"))))
    assert "Topics: Stem Cells" in html_text(two.html) and "Topics: Space" in two.text


def test_more_in_this_issue_only_past_the_budget_and_announced_in_the_contents() -> None:
    articles = tuple(numbered(i) for i in range(30))
    roomy = Renderer(TEMPLATES).render_digest(issue(articles=articles[:20]))
    assert "More in this issue" not in roomy.html
    tight = Renderer(TEMPLATES, html_size_budget=60_000)
    out = tight.render_digest(issue(articles=articles))
    assert len(out.html.encode()) <= 60_000 and "More in this issue" in out.html
    doc = lxml.html.document_fromstring(out.html)
    cards = {h.get("id") for h in doc.xpath("//h3")}
    entries = doc.xpath("//table[contains(@class,'dg-entry')]//a")[: len(articles)]
    assert [norm(a.text_content()) for a in entries] == [a.title for a in articles]
    for a, article in zip(entries, articles, strict=True):
        anchor = a.get("href")
        assert anchor == f"#dg-a{article.id}" if anchor[1:] in cards else anchor == article.url
    moved = len(articles) - len(cards)
    assert 0 < moved < len(articles)
    assert f"The last {moved} headlines are links" in html_text(out.html)
    # the text part is never cut: every article with its summary
    for article in articles:
        assert f"Read more: {article.url}" in out.text


def test_text_part_has_every_article_and_a_contents_list() -> None:
    articles = tuple(numbered(i) for i in range(40))
    out = Renderer(TEMPLATES, html_size_budget=30_000).render_digest(issue(articles=articles))
    head = out.text.split("=" * 78)[0]
    assert "In this issue:" in head
    for article in articles:
        assert f"- {article.title}" in head
        assert out.text.count(f"{article.url}\n") == 1
    for line in out.text.splitlines():
        assert len(line) <= 78 or "://" in line, line


def test_web_copy_has_no_member_and_a_subscribe_link() -> None:
    renderer = Renderer(TEMPLATES)
    member_issue = issue(
        m=member("Ann Secret", "ann.secret@example.org"),
        lk=replace(links(), view_url="https://news.example.org/view/v1ew.t0k", subscribe_url="x"),
    )
    web = replace(
        member_issue,
        member=replace(member_issue.member, name="", email=""),
        links=DigestLinks("", "", "", subscribe_url="https://news.example.org/subscribe"),
        web=True,
    )
    out = renderer.render_digest(web)
    assert "Ann Secret" not in out.html and "ann.secret" not in out.html
    assert "tok.en" not in out.html and "View in browser" not in out.html
    doc = lxml.html.document_fromstring(out.html)
    (subscribe,) = doc.xpath("//a[normalize-space()='Subscribe']")
    assert subscribe.get("href") == "https://news.example.org/subscribe"
    assert [norm(h.text_content()) for h in doc.xpath("//h3")] == [TITLE]
    emailed = renderer.render_digest(member_issue)
    doc = lxml.html.document_fromstring(emailed.html)
    (view,) = doc.xpath("//a[normalize-space()='View in browser']")
    assert view.get("href") == "https://news.example.org/view/v1ew.t0k"
    assert "View in browser: https://news.example.org/view/v1ew.t0k" in emailed.text


def test_logo_keeps_its_pixel_width_and_outlook_rules_have_their_own_style_block() -> None:
    from digest.render import Brand

    branded = Renderer(
        TEMPLATES, brand=Brand(logo_url="https://news.example.org/logo.png", postal_address="x")
    )
    page = branded.render_digest(issue()).html
    doc = lxml.html.document_fromstring(page)
    (logo,) = doc.xpath("//img[@src='https://news.example.org/logo.png']")
    assert logo.get("width") == "180"  # not premailer's width="100%"
    blocks = [s.text_content() for s in doc.xpath("//style")]
    ogsc = [b for b in blocks if "[data-ogsc]" in b]
    assert len(ogsc) == 1 and all(
        "[data-ogsc]" in rule for rule in re.findall(r"[^{}]+(?=\{)", ogsc[0]) if rule.strip()
    )
