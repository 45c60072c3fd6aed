"""One member's edition as a message: the issue, rendered, composed, signed.

``Editions.message_for`` is the one call sending, previews and test copies use, so what an
editor previews is what a member gets; ``Editions.compose`` writes every message the project
sends (digests and the outbound door's notices) with the same headers and DKIM signer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence
from datetime import datetime
from email.utils import parseaddr

from digest.clicks import ClickLinks
from digest.compose import compose_message, feedback_id
from digest.content import ArticleView, DigestIssue, DigestLinks, MemberView, Rendered
from digest.dkim import signer_from_settings
from digest.members.rules import ACTIVE
from digest.render import Renderer
from digest.schedule import edition_label
from digest.selection import group_by_topic
from digest.settings import Settings
from digest.tokens import TokenSigner, member_links


class Editions:
    """Turns (member, edition, articles) into the message: used by sending and by preview."""

    def __init__(self, settings: Settings, renderer: Renderer | None = None) -> None:
        self.settings = settings
        self.renderer = renderer or Renderer.from_settings(settings)
        self.signer = TokenSigner(settings.secret_key)
        self.click_links = ClickLinks(
            self.signer,
            settings.base_url,
            track_members=settings.track_member_clicks,
            track_text=settings.track_text_links,
        )
        self.dkim = signer_from_settings(settings)
        # Feedback-ID's list field: the List-Id's address part, the same for every message
        self._list = parseaddr(settings.effective_list_id)[1] or settings.effective_list_id

    def issue(
        self,
        member: MemberView,
        edition: str,
        articles: Sequence[ArticleView],
        now: datetime,
        delivery_id: int | None = None,
    ) -> DigestIssue:
        links = self.links(member, now, delivery_id)
        return DigestIssue(
            member=member,
            edition=edition,
            edition_label=edition_label(edition),
            groups=group_by_topic(member, articles),
            links=links,
            site_name=self.settings.site_name,
            base_url=self.settings.base_url,
            clicks=self.click_links.scope(edition, member.id),
        )

    def links(
        self, member: MemberView, now: datetime, delivery_id: int | None = None
    ) -> DigestLinks:
        """The member's own links: preferences, unsubscribe (https and mailto), and with a
        ``delivery_id`` that delivery's "View in browser" link."""
        return member_links(
            self.signer,
            self.settings.base_url,
            member,
            now,
            self.settings.effective_unsubscribe_mailto,
            delivery_id,
        )

    def web_copy(
        self,
        edition: str,
        articles: Sequence[ArticleView],
        topic_slugs: Collection[str] = (),
        resource_ids: Collection[int] = (),
    ) -> str:
        """An edition as a web page ("View in browser", archives): the email's content with no
        member in it, no personal link, nothing cut for size, and a "Subscribe" link.

        ``topic_slugs`` and ``resource_ids`` are what the reader's email grouped the articles
        under (its sections); without them each article is filed under its first topic.
        """
        reader = stand_in_reader(topic_slugs, resource_ids)
        base = self.settings.base_url.rstrip("/")
        issue = DigestIssue(
            member=reader,
            edition=edition,
            edition_label=edition_label(edition),
            groups=group_by_topic(reader, articles),
            links=DigestLinks("", "", "", subscribe_url=f"{base}/subscribe"),
            site_name=self.settings.site_name,
            base_url=self.settings.base_url,
            web=True,
            clicks=self.click_links.scope(edition, None),
        )
        return self.renderer.render_digest(issue).html

    def compose(
        self,
        rendered: Rendered,
        member: MemberView,
        message_id: str,
        now: datetime,
        links: DigestLinks | None = None,
        campaign: str = "notice",
    ) -> bytes:
        """The message bytes for ``member``: the shared headers, their links, DKIM-signed.

        ``campaign`` (the edition key, or the kind of notice) leads the Feedback-ID header.
        """
        links = links or self.links(member, now)
        return compose_message(
            rendered,
            from_address=self.settings.from_address,
            to_email=member.email,
            to_name=member.name,
            message_id=message_id,
            date=now,
            list_id=self.settings.effective_list_id,
            unsubscribe_url=links.unsubscribe_url,
            unsubscribe_mailto_url=links.unsubscribe_mailto,
            reply_to=self.settings.reply_to,
            feedback=feedback_id(campaign, self._list, self.settings.from_domain),
            signer=self.dkim,
        )

    def message_for(
        self,
        member: MemberView,
        edition: str,
        articles: Sequence[ArticleView],
        message_id: str,
        now: datetime,
        delivery_id: int | None = None,
        subject_prefix: str = "",
    ) -> tuple[Rendered, bytes]:
        """The member's edition as (parts, message bytes); ``delivery_id`` (the ledger row)
        gives it its "View in browser" link; ``subject_prefix`` marks a copy that is not the
        edition itself (a test copy)."""
        issue = self.issue(member, edition, articles, now, delivery_id)
        if subject_prefix:  # a test copy's clicks are nobody's: its links go straight there
            issue = dataclasses.replace(issue, clicks=None)
        rendered = self.renderer.render_digest(issue)
        campaign = edition
        if subject_prefix:
            rendered = dataclasses.replace(rendered, subject=subject_prefix + rendered.subject)
            campaign = f"test-{edition}"
        return rendered, self.compose(rendered, member, message_id, now, issue.links, campaign)


def stand_in_reader(
    topic_slugs: Collection[str] = (), resource_ids: Collection[int] = ()
) -> MemberView:
    """Nobody in particular: the reader of a web copy (id 0, no name, no address), who
    follows what the email's reader followed, so the copy is grouped as the email was."""
    return MemberView(
        id=0,
        email="",
        name="",
        status=ACTIVE,
        frequency="daily",
        timezone="UTC",
        send_hour=0,
        topic_slugs=frozenset(topic_slugs),
        resource_ids=frozenset(resource_ids),
    )
