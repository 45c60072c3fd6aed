"""An edition as a message: the shared headers (Reply-To, Feedback-ID, one-click only over
https), the "View in browser" link of a delivery, and the web copy with nobody in it."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes, policy

from digest.content import MemberView
from digest.editions import Editions
from digest.settings import load_settings
from digest.tokens import TokenSigner
from tests.conftest import TEST_SECRET
from tests.test_render import SAMPLE

NOW = datetime(2025, 3, 25, 8, tzinfo=UTC)
ANN = MemberView(
    id=7, email="ann@example.org", name="Ann", status="active", frequency="daily",
    timezone="UTC", send_hour=8, topics=("Stem Cells",), topic_slugs=frozenset({"stem-cells"}),
)  # fmt: skip


def editions(**overrides: object) -> Editions:
    settings = load_settings(
        env={},
        overrides={
            "secret_key": TEST_SECRET,
            "base_url": "https://news.example.org",
            "from_address": "Science Digest <digest@news.example.org>",
            "site_name": "Science Digest",
            **overrides,
        },
    )
    return Editions(settings)


def test_headers_of_a_digest() -> None:
    e = editions(reply_to="Editors <editors@news.example.org>")
    rendered, data = e.message_for(
        ANN, "daily:2025-03-25", [SAMPLE], "<m1@news.example.org>", NOW, 41
    )
    msg = message_from_bytes(data, policy=policy.default)
    assert msg["Reply-To"] == "Editors <editors@news.example.org>"
    assert msg["Feedback-ID"] == "daily-2025-03-25:digest.news.example.org:digest:news.example.org"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert not rendered.subject.startswith("Science Digest")
    view = rendered.text.split("View in browser: ")[1].split()[0]
    token = view.removeprefix("https://news.example.org/view/")
    assert TokenSigner(TEST_SECRET).verify_view(token, NOW) == 41


def test_an_http_base_url_means_no_one_click_and_no_view_link_without_a_delivery() -> None:
    e = editions(base_url="http://news.example.org")
    rendered, data = e.message_for(ANN, "daily:2025-03-25", [SAMPLE], "<m2@news.example.org>", NOW)
    msg = message_from_bytes(data, policy=policy.default)
    assert msg["List-Unsubscribe-Post"] is None
    assert msg["List-Unsubscribe"].startswith("<mailto:")
    assert "View in browser" not in rendered.html and "View in browser" not in rendered.text


def test_web_copy_names_nobody() -> None:
    page = editions().web_copy("daily:2025-03-25", [SAMPLE], {"stem-cells"})
    assert SAMPLE.title in page and "Tuesday 25 March 2025" in page
    assert "ann@example.org" not in page and "/unsubscribe/" not in page
    assert "https://news.example.org/subscribe" in page
