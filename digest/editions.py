"""One member's edition as a message: the issue, rendered, composed, signed.

``Editions.message_for`` is the one call sending, previews and test copies use, so what an
editor previews is what a member gets; ``Editions.compose`` writes every message the project
sends (digests and the outbound door's notices) with the same headers and DKIM signer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime

from digest.compose import compose_message
from digest.content import ArticleView, DigestIssue, DigestLinks, MemberView, Rendered
from digest.dkim import signer_from_settings
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
        self.dkim = signer_from_settings(settings)

    def issue(
        self, member: MemberView, edition: str, articles: Sequence[ArticleView], now: datetime
    ) -> DigestIssue:
        links = self.links(member, now)
        return DigestIssue(
            member=member,
            edition=edition,
            edition_label=edition_label(edition),
            groups=group_by_topic(member, articles),
            links=links,
            site_name=self.settings.site_name,
            base_url=self.settings.base_url,
        )

    def links(self, member: MemberView, now: datetime) -> DigestLinks:
        """The member's own links: preferences, unsubscribe (https and mailto)."""
        return member_links(
            self.signer,
            self.settings.base_url,
            member,
            now,
            self.settings.effective_unsubscribe_mailto,
        )

    def compose(
        self,
        rendered: Rendered,
        member: MemberView,
        message_id: str,
        now: datetime,
        links: DigestLinks | None = None,
    ) -> bytes:
        """The message bytes for ``member``: the shared headers, their links, DKIM-signed."""
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
            signer=self.dkim,
        )

    def message_for(
        self,
        member: MemberView,
        edition: str,
        articles: Sequence[ArticleView],
        message_id: str,
        now: datetime,
        subject_prefix: str = "",
    ) -> tuple[Rendered, bytes]:
        """The member's edition as (parts, message bytes); ``subject_prefix`` marks a copy
        that is not the edition itself (a test copy)."""
        issue = self.issue(member, edition, articles, now)
        rendered = self.renderer.render_digest(issue)
        if subject_prefix:
            rendered = dataclasses.replace(rendered, subject=subject_prefix + rendered.subject)
        return rendered, self.compose(rendered, member, message_id, now, issue.links)
