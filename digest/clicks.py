"""Clicks without surveillance: article links that count, in aggregate.

An article link in a digest's HTML part is ``<base_url>/c/<token>``; the token, signed
(``tokens.TokenSigner.make_click``), names the edition, the article, the link's place in
the message and the topic it was filed under, and the member only when
``track_member_clicks = true``. It depends on nothing else, so each link is made once per
edition, article and place (the renderer renders each card once) and reused for every
member: no per-message work.

A click adds one to an aggregate count (article x edition x topic) in memory; the counts
are written to the store in one transaction every ``click_flush_seconds`` (and before the
dashboard reads them), so a burst of clicks costs no write per click.

**Link scanners.** Mail security gateways open every link of a message within seconds of
its arrival. One client address opening ``click_scanner_links`` (3) different links of one
edition within ``click_scanner_seconds`` (10) is taken for a scanner: those clicks, and its
further clicks on that edition while it keeps clicking within the window, are counted as
``discounted``, not as clicks. Addresses are held in memory for that window only, never
stored. HEAD requests (scanners' favourite) are answered but never counted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, func, select

from digest.content import ArticleView
from digest.db import chunks, session_scope, store_unreachable, unreachable_reason
from digest.models import Article, ClickCount, MemberClick, Subscriber, Topic
from digest.tokens import ClickData, TokenSigner
from digest.topics import topic_slug

log = logging.getLogger(__name__)

#: Where a link sits in the message: the headline, "Read more", a contents or "More in this
#: issue" line, the plain-text part, or anywhere else a template puts one.
TITLE, READ_MORE, LIST, TEXT, LINK = "title", "more", "list", "text", "link"
POSITIONS = (TITLE, READ_MORE, LIST, TEXT, LINK)


@dataclass(frozen=True, eq=False)
class ClickScope:
    """What an article's click links name besides the article: the edition, the topic it is
    filed under, and the member only when members' clicks are tracked.

    Scopes are made only by their ``ClickLinks``, which keeps one per value, so they compare
    and hash by identity: cards are cached by scope, and that costs no hashing of fields.
    """

    edition: str
    topic: str = ""
    member_id: int | None = None
    links: ClickLinks | None = field(default=None, repr=False)

    def under(self, topic: str) -> ClickScope:
        """The same scope for links filed under ``topic`` (a display name)."""
        if self.links is None:
            return self
        return self.links.scope_under(self, topic)


class ClickLinks:
    """Makes click links: ``<base_url>/c/<token>``, each worked out once and kept."""

    def __init__(
        self,
        signer: TokenSigner,
        base_url: str,
        *,
        track_members: bool = False,
        track_text: bool = False,
    ) -> None:
        self.signer, self.base = signer, base_url.rstrip("/")
        self.track_members, self.track_text = track_members, track_text
        self._cache: dict[tuple[str, str, int | None, int, str], str] = {}
        self._scopes: dict[tuple[str, int | None, str | None], ClickScope] = {}
        self._lock = threading.Lock()

    def scope(self, edition: str, member_id: int | None) -> ClickScope:
        """A delivery's scope: the member is in it only when members' clicks are tracked."""
        member = member_id if self.track_members else None
        found = self._scopes.get((edition, member, None))
        if found is None:
            found = self._keep((edition, member, None), ClickScope(edition, "", member, self))
        return found

    def scope_under(self, scope: ClickScope, topic: str) -> ClickScope:
        key = (scope.edition, scope.member_id, topic)
        found = self._scopes.get(key)
        if found is None:
            slug = topic_slug(topic)[:200]
            found = self._keep(key, ClickScope(scope.edition, slug, scope.member_id, self))
        return found

    def _keep(self, key: tuple[str, int | None, str | None], scope: ClickScope) -> ClickScope:
        with self._lock:
            if len(self._scopes) >= 65536:
                self._scopes.clear()
            return self._scopes.setdefault(key, scope)

    def href(self, scope: ClickScope, article: ArticleView, position: str, url: str) -> str:
        """The click link for ``article`` at ``position``; ``url`` is where it leads (checked
        by the caller: only http(s) articles get a link)."""
        key = (scope.edition, scope.topic, scope.member_id, article.id, position)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        token = self.signer.make_click(
            ClickData(scope.edition, article.id, position, scope.topic, scope.member_id)
        )
        href = f"{self.base}/c/{token}"
        with self._lock:
            if len(self._cache) >= 65536:
                self._cache.clear()
            self._cache[key] = href
        return href


# ------------------------------------------------------------------ counting


def _existing(session: Session, column: Any, ids: set[int]) -> set[int]:
    found: set[int] = set()
    for part in chunks(sorted(ids)):
        found.update(session.exec(select(column).where(col(column).in_(part))).all())
    return found


_Key = tuple[int, str, str]  # article, edition, topic


@dataclass
class _Burst:
    """One client's recent clicks on one edition, for the scanner rule."""

    seen: deque[tuple[float, tuple[int, str], _Key, int | None, bool]] = field(
        default_factory=deque
    )
    scanner_until: float = 0.0


class ClickCounter:
    """Counts clicks in memory, applies the scanner rule, and writes the sums in batches."""

    def __init__(
        self,
        engine: Engine,
        *,
        scanner_seconds: float = 10.0,
        scanner_links: int = 3,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        max_clients: int = 100_000,
        track_members: bool = False,
    ) -> None:
        self.engine = engine
        self.track_members = track_members
        self.window, self.links = scanner_seconds, max(2, scanner_links)
        self.clock, self.wall_clock = clock, wall_clock
        self.max_clients = max_clients
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._counts: dict[_Key, list[int]] = defaultdict(lambda: [0, 0])
        self._members: dict[tuple[int, int, str], int] = defaultdict(int)
        self._bursts: OrderedDict[tuple[str, str], _Burst] = OrderedDict()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def record(self, click: ClickData, client: str) -> bool:
        """Count one click; False when the scanner rule discounted it."""
        now = self.clock()
        key: _Key = (click.article_id, click.edition, click.topic)
        link = (click.article_id, click.position)
        with self._lock:
            burst = self._bursts.pop((client, click.edition), None) or _Burst()
            self._bursts[(client, click.edition)] = burst
            while len(self._bursts) > self.max_clients:
                self._bursts.popitem(last=False)
            seen = burst.seen
            while seen and seen[0][0] <= now - self.window:
                seen.popleft()
            scanner = burst.scanner_until > now
            seen.append((now, link, key, click.member_id, not scanner))
            if not scanner and len({s[1] for s in seen}) >= self.links:
                scanner = True
                for i, (at, lnk, k, member, counted) in enumerate(seen):
                    if counted and lnk is not link:  # earlier clicks of the burst: taken back
                        self._counts[k][0] -= 1
                        self._counts[k][1] += 1
                        if member is not None and self.track_members:
                            self._members[(member, k[0], k[1])] -= 1
                        seen[i] = (at, lnk, k, member, False)
                seen[-1] = (now, link, key, click.member_id, False)
            if scanner:
                burst.scanner_until = now + self.window
                self._counts[key][1] += 1
                return False
            self._counts[key][0] += 1
            if click.member_id is not None and self.track_members:
                self._members[(click.member_id, click.article_id, click.edition)] += 1
            return True

    def pending(self) -> int:
        with self._lock:
            return sum(abs(c) + abs(d) for c, d in self._counts.values())

    def flush(self) -> int:
        """Write the counts gathered since the last flush, in one transaction; how many
        counter rows it touched. Counts a failed write leaves in memory for the next try."""
        with self._flush_lock:
            with self._lock:
                counts, self._counts = self._counts, defaultdict(lambda: [0, 0])
                members, self._members = self._members, defaultdict(int)
            rows = [(k, c, d) for k, (c, d) in counts.items() if c or d]
            member_rows = [(k, n) for k, n in members.items() if n]
            if not rows and not member_rows:
                return 0
            try:
                self._write(rows, member_rows)
            except Exception as exc:
                if store_unreachable(exc):  # an outage: said in a line, no traceback
                    log.warning(
                        "click counts not written (the store is not reachable: %s); kept "
                        "for the next flush",
                        unreachable_reason(exc),
                    )
                else:
                    log.exception("click counts not written; kept for the next flush")
                with self._lock:
                    for k, c, d in rows:
                        self._counts[k][0] += c
                        self._counts[k][1] += d
                    for mk, n in member_rows:
                        self._members[mk] += n
                raise
            return len(rows) + len(member_rows)

    def _write(
        self,
        rows: list[tuple[_Key, int, int]],
        member_rows: list[tuple[tuple[int, int, str], int]],
    ) -> None:
        now = self.wall_clock()
        with session_scope(self.engine) as session:
            # an article or member deleted since the mail went out: its clicks go nowhere
            articles = _existing(
                session, Article.id, {k[0] for k, _, _ in rows} | {k[1] for k, _ in member_rows}
            )
            members = _existing(session, Subscriber.id, {k[0] for k, _ in member_rows})
            rows = [r for r in rows if r[0][0] in articles]
            member_rows = [r for r in member_rows if r[0][0] in members and r[0][1] in articles]
            dialect = session.get_bind().dialect.name
            insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
            if rows:
                table = ClickCount.__table__  # type: ignore[attr-defined]
                stmt = insert(table)
                stmt = stmt.on_conflict_do_update(
                    index_elements=["article_id", "edition", "topic"],
                    set_={
                        "clicks": table.c.clicks + stmt.excluded.clicks,
                        "discounted": table.c.discounted + stmt.excluded.discounted,
                        "last_click_at": stmt.excluded.last_click_at,
                    },
                )
                session.execute(
                    stmt,
                    [
                        {
                            "article_id": a,
                            "edition": e,
                            "topic": t,
                            "clicks": c,
                            "discounted": d,
                            "last_click_at": now,
                        }
                        for (a, e, t), c, d in rows
                    ],
                )
            if member_rows:
                table = MemberClick.__table__  # type: ignore[attr-defined]
                stmt = insert(table)
                stmt = stmt.on_conflict_do_update(
                    index_elements=["subscriber_id", "article_id", "edition"],
                    set_={
                        "clicks": table.c.clicks + stmt.excluded.clicks,
                        "last_click_at": stmt.excluded.last_click_at,
                    },
                )
                session.execute(
                    stmt,
                    [
                        {
                            "subscriber_id": m,
                            "article_id": a,
                            "edition": e,
                            "clicks": n,
                            "last_click_at": now,
                        }
                        for (m, a, e), n in member_rows
                    ],
                )

    # -- the background flusher of a web process

    def start(self, every: float) -> None:
        if self._thread is not None:
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(every):
                try:
                    self.flush()
                except Exception:  # noqa: BLE001 - logged in flush; tried again next time
                    pass

        self._thread = threading.Thread(target=loop, name="click-flush", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the flusher and write what is left."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        try:
            self.flush()
        except Exception:  # noqa: BLE001 - logged in flush
            pass


# ------------------------------------------------------------------ reading the counts


def clicks_by_edition(session: Session) -> dict[str, tuple[int, int]]:
    """Clicks and discounted clicks per edition."""
    rows = session.exec(
        select(
            ClickCount.edition, func.sum(ClickCount.clicks), func.sum(ClickCount.discounted)
        ).group_by(col(ClickCount.edition))
    ).all()
    return {e: (int(c or 0), int(d or 0)) for e, c, d in rows}


@dataclass(frozen=True)
class ArticleClicks:
    article_id: int
    title: str
    url: str
    clicks: int
    discounted: int


@dataclass(frozen=True)
class TopicClicks:
    name: str
    clicks: int


def top_articles(session: Session, editions: Sequence[str], limit: int = 10) -> list[ArticleClicks]:
    """The most clicked articles in ``editions``."""
    if not editions:
        return []
    total = func.sum(ClickCount.clicks)
    rows = session.exec(
        select(Article.id, Article.title, Article.url, total, func.sum(ClickCount.discounted))
        .join(ClickCount, col(ClickCount.article_id) == col(Article.id))
        .where(col(ClickCount.edition).in_(list(editions)))
        .group_by(col(Article.id), col(Article.title), col(Article.url))
        .order_by(total.desc(), col(Article.id))
        .limit(limit)
    ).all()
    return [ArticleClicks(int(i), t, u, int(c or 0), int(d or 0)) for i, t, u, c, d in rows]


def top_topics(session: Session, editions: Sequence[str], limit: int = 10) -> list[TopicClicks]:
    """The topics whose articles were clicked most in ``editions`` (by the topic the
    article was filed under in the digest)."""
    if not editions:
        return []
    total = func.sum(ClickCount.clicks)
    rows = session.exec(
        select(ClickCount.topic, total)
        .where(col(ClickCount.edition).in_(list(editions)))
        .group_by(col(ClickCount.topic))
        .order_by(total.desc(), col(ClickCount.topic))
        .limit(limit)
    ).all()
    names = {
        t.slug: t.name
        for t in session.exec(select(Topic).where(col(Topic.slug).in_([r[0] for r in rows])))
    }
    return [TopicClicks(names.get(slug, slug or "(none)"), int(c or 0)) for slug, c in rows]
