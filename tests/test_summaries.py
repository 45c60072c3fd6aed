"""Key-point summaries: whole sentences up to a number of words, never empty, 0 = in full."""

from __future__ import annotations

from digest.summaries import ELLIPSIS, key_point_summary, sentences


def test_sentences_split_at_real_ends_only() -> None:
    text = 'It grew 3.5 mm, e.g. in mice. "Quoted end." (Aside.) Next one! Why? 2025 was dry.'
    assert sentences(text) == [
        "It grew 3.5 mm, e.g. in mice.",
        '"Quoted end."',
        "(Aside.)",
        "Next one!",
        "Why?",
        "2025 was dry.",
    ]
    assert sentences("  \n ") == []
    assert sentences("No end at all") == ["No end at all"]


def test_summary_takes_whole_sentences_up_to_the_limit_across_points() -> None:
    points = ("One two three. Four five six seven.", "Eight nine. Ten eleven twelve thirteen.")
    assert key_point_summary(points, 3).paragraphs == ("One two three.",)
    assert key_point_summary(points, 8).paragraphs == ("One two three. Four five six seven.",)
    s = key_point_summary(points, 10)
    assert s.paragraphs == ("One two three. Four five six seven. Eight nine.",) and s.cut
    whole = key_point_summary(points, 100)
    assert whole.paragraphs == (" ".join(points),) and not whole.cut
    for limit in (3, 5, 9, 10, 13):
        (text,) = key_point_summary(points, limit).paragraphs
        assert len(text.split()) <= limit


def test_a_first_sentence_over_the_limit_is_cut_at_a_word_with_an_ellipsis() -> None:
    s = key_point_summary(("word " * 70 + "end.",), 40)
    (text,) = s.paragraphs
    assert s.cut and text.endswith(ELLIPSIS) and len(text.split()) == 40


def test_zero_words_means_every_key_point_in_full() -> None:
    points = ("First  point,\nwrapped.", "Second point.")
    s = key_point_summary(points, 0)
    assert s.paragraphs == ("First point, wrapped.", "Second point.") and not s.cut
