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


def test_sample_article_in_html_and_text(renderer: Renderer) -> None:
    out = renderer.render_digest(issue())
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
    assert SAMPLE.url in out.text
    doc = lxml.html.document_fromstring(out.html)
    assert doc.xpath("//a[@href=$u]", u=SAMPLE.url)[0].text_content() == TITLE
    assert doc.xpath("//a[@href='https://www.keio.ac.jp/']")[0].text_content() == "Keio University"
    assert out.subject == f"Science Digest: {TITLE}"


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
        assert len(line) <= 72 or "://" in line or line.startswith("mailto:"), line
    assert links().preferences_url in text and links().unsubscribe_url in text


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
    assert out.subject == "Science Digest: Evil <script>alert(1)</script> title and 1 more"


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
