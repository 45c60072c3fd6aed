"""Send benchmark: floor (smtplib, prebuilt bytes), baseline (the obvious pipeline), ours.

    python -m benchmarks.send [--members 10000] [--distinct] [--json out.json]
                              [--plan-members N] [--plan-follows 0.5] [--baseline-sample 200]

Everything is synthetic and seeded: 5,000 articles over 40 topics with Zipf-like popularity,
members with 1 to 6 topics, half daily and half weekly, over 20 time zones. ``--distinct``
gives every member a different topic set, so no two members share a rendered selection.
``--plan-follows F`` gives the planning stores people and organisations too: 300 resources
mentioned by the articles (0 to 3 each, Zipf-like), and a share F of members following 1 to
3 of them besides their topics (drawn from a second seeded generator, so the members'
topics are the same data with or without follows).
A minimal asyncio SMTP sink runs in a child process (so its CPU is not the sender's) and
counts messages per recipient; the run fails if any member got other than exactly one message
or the ledger does not say ``sent`` for every planned delivery.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing as mp
import os
import random
import re
import resource
import smtplib
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from itertools import accumulate
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, insert, text
from sqlmodel import Session, col, select

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
TOPICS = 40
ARTICLES = 5000
ZONES = (
    "UTC", "Europe/London", "Europe/Paris", "Europe/Berlin", "Europe/Helsinki",
    "Europe/Moscow", "Asia/Dubai", "Asia/Kolkata", "Asia/Bangkok", "Asia/Shanghai",
    "Asia/Tokyo", "Australia/Sydney", "Pacific/Auckland", "Pacific/Honolulu",
    "America/Anchorage", "America/Los_Angeles", "America/Denver", "America/Chicago",
    "America/New_York", "America/Sao_Paulo",
)  # fmt: skip
WORDS = (
    "probe orbit climate river forest energy market vaccine protein galaxy reactor ocean "
    "glacier policy budget election stadium museum novel cipher network quantum enzyme "
    "satellite harvest drought monsoon turbine battery lithium carbon archive ministry"
).split()
SECRET = "bench-secret-key-0123456789abcdef0123"


# ------------------------------------------------------------------ sink


#: Article links in a message body (quoted-printable soft breaks removed first).
ARTICLE_URL = re.compile(rb"archive\.example\.org/a/(\d+)")


def article_print(url_numbers: Any) -> int:
    """A short fingerprint of a set of article link numbers: what each member got."""
    return zlib.crc32(",".join(str(n) for n in sorted(set(url_numbers))).encode())


def _sink_main(port_out: Any, ready: Any) -> None:
    counts: Counter[str] = Counter()
    prints: dict[str, int] = {}  # recipient -> fingerprint of the articles linked
    totals = {"messages": 0, "bytes": 0}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 sink ESMTP\r\n")
        rcpts: list[str] = []
        while True:
            line = await reader.readline()
            if not line:
                break
            verb = line[:4].upper()
            if verb in (b"EHLO",):
                writer.write(b"250-sink\r\n250-8BITMIME\r\n250-PIPELINING\r\n250 SIZE 0\r\n")
            elif verb == b"HELO" or verb == b"NOOP" or verb == b"MAIL":
                writer.write(b"250 ok\r\n")
            elif verb == b"RSET":
                rcpts = []
                writer.write(b"250 ok\r\n")
            elif verb == b"RCPT":
                addr = line.split(b":", 1)[1].strip().split(b" ")[0].strip(b"<>")
                rcpts.append(addr.decode("utf-8", "replace").lower())
                writer.write(b"250 ok\r\n")
            elif verb == b"DATA":
                writer.write(b"354 go\r\n")
                await writer.drain()
                data = await reader.readuntil(b"\r\n.\r\n")
                totals["messages"] += 1
                totals["bytes"] += len(data)
                counts.update(rcpts)
                found = article_print(map(int, ARTICLE_URL.findall(data.replace(b"=\r\n", b""))))
                prints.update((r, found) for r in rcpts)
                rcpts = []
                writer.write(b"250 queued\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                break
            elif verb == b"XSTA":  # benchmark control: counts so far, as JSON
                body = json.dumps({**totals, "recipients": counts, "prints": prints}).encode()
                writer.write(b"250 " + body + b"\r\n")
            elif verb == b"XRES":
                counts.clear()
                prints.clear()
                totals.update(messages=0, bytes=0)
                writer.write(b"250 reset\r\n")
            else:
                writer.write(b"502 no\r\n")
            await writer.drain()
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, limit=64 * 1024 * 1024)
        port_out.value = server.sockets[0].getsockname()[1]
        ready.set()
        async with server:
            await server.serve_forever()

    asyncio.run(main())


class Sink:
    def __init__(self) -> None:
        ctx = mp.get_context("spawn")
        self._port = ctx.Value("i", 0)
        ready = ctx.Event()
        self.proc = ctx.Process(target=_sink_main, args=(self._port, ready), daemon=True)
        self.proc.start()
        ready.wait(30)
        self.port = self._port.value

    def _control(self, verb: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", self.port)) as s:
            f = s.makefile("rb")
            f.readline()
            s.sendall(verb + b"\r\n")
            reply = f.readline()
            s.sendall(b"QUIT\r\n")
        return reply[4:].strip()

    def stats(self) -> dict[str, Any]:
        return json.loads(self._control(b"XSTATS"))

    def reset(self) -> None:
        self._control(b"XRESET")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.join(5)


# ------------------------------------------------------------------ data


def _zipf_weights(n: int, s: float = 1.1) -> list[float]:
    return [1.0 / (k**s) for k in range(1, n + 1)]


def topic_names() -> list[str]:
    return [f"Topic {i:02d}" for i in range(TOPICS)]


def seed_articles(engine: Engine, rng: random.Random) -> None:
    from digest.models import Article, ArticleTopic, Topic
    from digest.topics import topic_slug

    names = topic_names()
    weights = _zipf_weights(TOPICS)
    with engine.begin() as conn:
        conn.execute(insert(Topic), [{"slug": topic_slug(n), "name": n} for n in names])
        ids = dict(conn.execute(text("SELECT name, id FROM topic")).all())
        rows, links = [], []
        for i in range(ARTICLES):
            published = NOW - timedelta(minutes=rng.randrange(14 * 24 * 60))
            title = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 9))).capitalize()
            points = [
                " ".join(rng.choice(WORDS) for _ in range(rng.randint(12, 30))).capitalize() + "."
                for _ in range(rng.randint(1, 3))
            ]
            rows.append(
                {
                    "id": i + 1,
                    "url": f"https://archive.example.org/a/{i}",
                    "title": title,
                    "published_at": published,
                    "first_seen_at": published,
                    "updated_at": published,
                    "key_points": points,
                    "summary": None,
                    "content_hash": f"{i:064d}",
                }
            )
            chosen = set(rng.choices(names, weights, k=rng.randint(1, 2)))
            links += [{"article_id": i + 1, "topic_id": ids[n]} for n in chosen]
        conn.execute(insert(Article), rows)
        conn.execute(insert(ArticleTopic), links)


def _topic_sets(rng: random.Random, members: int, distinct: bool) -> Iterator[tuple[str, ...]]:
    """Each member's topics in turn (generated as needed, so a million cost no memory)."""
    names = topic_names()
    cumulative = list(accumulate(_zipf_weights(TOPICS)))  # what choices() computes per call
    seen: set[tuple[str, ...]] = set()
    made = 0
    while made < members:
        k = rng.randint(1, 6)
        if distinct:
            pick = tuple(sorted(rng.sample(names, k)))
            if pick in seen:
                continue
            seen.add(pick)
        else:
            chosen: set[str] = set()
            while len(chosen) < k:
                chosen.add(rng.choices(names, cum_weights=cumulative)[0])
            pick = tuple(sorted(chosen))
        made += 1
        yield pick


SEED_CHUNK = 50_000
_SUBSCRIBER_INSERT = (
    "INSERT INTO subscriber (id, email, name, status, frequency, timezone, send_hour, "
    "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_LINK_INSERT = "INSERT INTO subscriber_topic (subscriber_id, topic_id) VALUES (?, ?)"


def seed_members(engine: Engine, rng: random.Random, members: int, distinct: bool) -> None:
    """Members through sqlite3's executemany, a chunk per transaction: fast and memory-bounded.

    The rows are those the store itself would write (timestamps through the column's own
    converter), and the same for a given seed as any earlier version of this benchmark.
    """
    from digest.models import Subscriber

    dialect = engine.dialect
    column: Any = Subscriber.__table__.c.created_at
    created = column.type.dialect_impl(dialect).bind_processor(dialect)(NOW - timedelta(days=30))
    sets = _topic_sets(rng, members, distinct)
    db = sqlite3.connect(str(engine.url.database), isolation_level=None)
    try:
        db.execute("PRAGMA synchronous=OFF")
        ids = dict(db.execute("SELECT name, id FROM topic").fetchall())
        for start in range(0, members, SEED_CHUNK):
            rows, links = [], []
            for i in range(start, min(members, start + SEED_CHUNK)):
                rows.append(
                    (i + 1, f"m{i:07d}@example.org", f"Mémber {i}" if i % 3 else "", "active",
                     "daily" if i % 2 else "weekly", ZONES[i % len(ZONES)], 7, created, created)
                )  # fmt: skip
                links += [(i + 1, ids[n]) for n in next(sets)]
            db.execute("BEGIN")
            db.executemany(_SUBSCRIBER_INSERT, rows)
            db.executemany(_LINK_INSERT, links)
            db.execute("COMMIT")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()


RESOURCES = 300
_FOLLOW_INSERT = "INSERT INTO subscriber_resource (subscriber_id, resource_id) VALUES (?, ?)"


def seed_resources(engine: Engine, rng: random.Random) -> None:
    """``RESOURCES`` people and organisations, each article mentioning 0 to 3 of them."""
    from digest.archive.names import name_key

    weights = list(accumulate(_zipf_weights(RESOURCES)))
    db = sqlite3.connect(str(engine.url.database), isolation_level=None)
    try:
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO resource (id, slug, name, kind, description, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [(i + 1, f"resource-{i:03d}", f"Resource {i:03d}", "person" if i % 2 else
              "organisation", f"Resource number {i}.", NOW.replace(tzinfo=None))
             for i in range(RESOURCES)],
        )  # fmt: skip
        db.executemany(
            "INSERT INTO resource_alias (kind, value, resource_id) VALUES ('name', ?, ?)",
            [(name_key(f"Resource {i:03d}"), i + 1) for i in range(RESOURCES)],
        )
        mentions = []
        for article in range(1, ARTICLES + 1):
            chosen = {rng.choices(range(RESOURCES), cum_weights=weights)[0]
                      for _ in range(rng.randint(0, 3))}  # fmt: skip
            for position, r in enumerate(sorted(chosen)):
                mentions.append((article, position, f"Resource {r:03d}", "", r + 1))
        db.executemany(
            "INSERT INTO mention (article_id, position, name, description, resource_id)"
            " VALUES (?, ?, ?, ?, ?)",
            mentions,
        )
        db.execute("COMMIT")
    finally:
        db.close()


def seed_follows(engine: Engine, rng: random.Random, members: int, share: float) -> None:
    """A ``share`` of members follow 1 to 3 resources (Zipf-like), a chunk per transaction."""
    weights = list(accumulate(_zipf_weights(RESOURCES)))
    db = sqlite3.connect(str(engine.url.database), isolation_level=None)
    try:
        db.execute("PRAGMA synchronous=OFF")
        for start in range(0, members, SEED_CHUNK):
            rows = []
            for member in range(start + 1, min(members, start + SEED_CHUNK) + 1):
                if rng.random() >= share:
                    continue
                chosen = {rng.choices(range(RESOURCES), cum_weights=weights)[0]
                          for _ in range(rng.randint(1, 3))}  # fmt: skip
                rows += [(member, r + 1) for r in sorted(chosen)]
            db.execute("BEGIN")
            db.executemany(_FOLLOW_INSERT, rows)
            db.execute("COMMIT")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()


def make_store(path: Path, members: int, distinct: bool, follows: float = 0.0) -> Engine:
    """The synthetic store; with ``follows`` > 0 also resources, mentions and follows."""
    from digest.db import create_schema, make_engine

    engine = make_engine(f"sqlite:///{path}")
    create_schema(engine)
    rng = random.Random(20261124)
    seed_articles(engine, rng)
    seed_members(engine, rng, members, distinct)
    if follows > 0:
        people = random.Random(20261206)
        seed_resources(engine, people)
        seed_follows(engine, people, members, follows)
    return engine


def bench_settings(path: Path, port: int, **extra: Any) -> Any:
    from digest.settings import load_settings

    return load_settings(
        env={},
        overrides={
            "database_url": f"sqlite:///{path}",
            "data_dir": str(path.parent),
            "secret_key": SECRET,
            "base_url": "https://news.example.org",
            "from_address": "Science Digest <digest@news.example.org>",
            "site_name": "Science Digest",
            "smtp_host": "127.0.0.1",
            "smtp_port": port,
            "max_consecutive_errors": 0,
            **extra,
        },
    )


# ------------------------------------------------------------------ measurements


def _cpu() -> float:
    return time.process_time()


def rss_mib() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 1024 / 1024


def measure_floor(port: int, count: int, size: int) -> dict[str, Any]:
    """smtplib, one connection, prebuilt bytes: what the SMTP client alone manages."""
    body = b"X-Bench: floor\r\nSubject: floor\r\n\r\n" + (b"x" * 76 + b"\r\n") * max(1, size // 78)
    conn = smtplib.SMTP("127.0.0.1", port)
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn.ehlo()
    wall, cpu = time.perf_counter(), _cpu()
    for i in range(count):
        conn.sendmail("digest@news.example.org", [f"floor{i}@example.org"], body)
    wall, cpu = time.perf_counter() - wall, _cpu() - cpu
    conn.quit()
    return {"messages": count, "seconds": wall, "msgs_per_s": count / wall,
            "cpu_us_per_msg": cpu / count * 1e6, "bytes_per_msg": len(body)}  # fmt: skip


def measure_baseline(engine: Engine, settings: Any, port: int, sample: int) -> dict[str, Any]:
    """The obvious pipeline, per member: compile, inline, EmailMessage, connect, commit."""
    from mjml import mjml2html
    from premailer import Premailer

    from digest import catalog
    from digest.editions import Editions
    from digest.models import Delivery, Subscriber
    from digest.render import personal_values

    editions = Editions(settings)
    renderer = editions.renderer
    with Session(engine) as session:
        deliveries = session.exec(
            select(Delivery).where(Delivery.status == "planned").order_by(col(Delivery.id))
        ).all()[:sample]
        subs = session.exec(
            select(Subscriber).where(col(Subscriber.id).in_([d.subscriber_id for d in deliveries]))
        ).all()
        members = {m.id: m for m in catalog.member_views(session, subs)}
        articles = catalog.articles_by_id(session, {i for d in deliveries for i in d.article_ids})
    tmp = tempfile.NamedTemporaryFile(suffix=".db", delete=False)
    db = sqlite3.connect(tmp.name, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE sent (id INTEGER PRIMARY KEY, email TEXT, message_id TEXT, at TEXT)")
    sizes = []
    wall, cpu = time.perf_counter(), _cpu()
    for d in deliveries:
        member = members[d.subscriber_id]
        issue = editions.issue(member, d.edition, [articles[i] for i in d.article_ids], NOW)
        context = renderer.context(issue, personal_values(issue))
        get = renderer.env.get_template
        subject = get("email/subject.txt.j2").render(context).strip()
        page = mjml2html(get("email/digest.mjml.j2").render(context), fonts={})
        page = Premailer(page, keep_style_tags=True, allow_network=False,
                         cssutils_logging_level=logging.CRITICAL).transform()  # fmt: skip
        msg = EmailMessage()
        msg["From"] = settings.from_address
        msg["To"] = f"{member.name} <{member.email}>" if member.name else member.email
        msg["Subject"] = subject
        msg["Date"] = format_datetime(NOW)
        msg["Message-ID"] = d.message_id
        msg["List-Unsubscribe"] = f"<{issue.links.unsubscribe_url}>"
        msg.set_content(get("email/digest.txt.j2").render(context))
        msg.add_alternative(page, subtype="html")
        data = msg.as_bytes()
        sizes.append(len(data))
        smtp = smtplib.SMTP("127.0.0.1", port)
        smtp.sendmail("digest@news.example.org", [member.email], data)
        smtp.quit()
        db.execute("BEGIN")
        db.execute("INSERT INTO sent (email, message_id, at) VALUES (?, ?, ?)",
                   (member.email, d.message_id, NOW.isoformat()))  # fmt: skip
        db.execute("COMMIT")
    wall, cpu = time.perf_counter() - wall, _cpu() - cpu
    db.close()
    Path(tmp.name).unlink(missing_ok=True)
    n = len(deliveries)
    return {"messages": n, "seconds": wall, "msgs_per_s": n / wall,
            "cpu_us_per_msg": cpu / n * 1e6, "bytes_per_msg": sum(sizes) // max(n, 1)}  # fmt: skip


def bench_env(settings: Any) -> dict[str, str]:
    """The environment that gives ``digest`` the benchmark's settings (no config file)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    keys = ("database_url", "data_dir", "secret_key", "base_url", "from_address", "site_name",
            "smtp_host", "smtp_port", "smtp_pool_size", "max_consecutive_errors")  # fmt: skip
    env.update({f"DIGEST_{k.upper()}": str(getattr(settings, k)) for k in keys})
    env["DIGEST_TRANSPORT"] = "smtp"
    return env


class PeakRSS:
    """Samples a running process's peak resident set (``VmHWM``) until stopped."""

    def __init__(self, pid: int) -> None:
        self.pid, self.mib = pid, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                with open(f"/proc/{self.pid}/status") as status:
                    for line in status:
                        if line.startswith("VmHWM:"):
                            self.mib = max(self.mib, int(line.split()[1]) / 1024)
            except (OSError, ValueError):
                pass
            self._stop.wait(0.1)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def measure_ours(settings: Any) -> dict[str, Any]:
    """``digest run`` end to end, as an operator runs it: its own process, planning, rendering,
    sending over the real SMTP transport, and the ledger written once per message.

    CPU is the ``digest run`` process's own (``wait4``); its peak RSS is read from
    ``/proc/<pid>/status`` (``VmHWM``) while it runs, because the kernel's ``ru_maxrss`` for a
    child counts the parent's memory it was forked from.
    """
    command = [sys.executable, "-m", "digest", "-q", "run", "--force",
               "--now", NOW.isoformat()]  # fmt: skip
    with tempfile.TemporaryFile() as err:
        wall = time.perf_counter()
        proc = subprocess.Popen(command, env=bench_env(settings), stdout=err, stderr=err)
        peak = PeakRSS(proc.pid)
        _, status, usage = os.wait4(proc.pid, 0)  # this process's own CPU time
        wall = time.perf_counter() - wall
        peak.stop()
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"digest run exited {proc.returncode}: {err.read()[-2000:]!r}")
    cpu = usage.ru_utime + usage.ru_stime
    from digest.db import make_engine
    from digest.models import Delivery

    engine = make_engine(settings.database_url)
    with Session(engine) as session:
        sent = session.exec(select(func.count()).where(Delivery.status == "sent")).one()
    engine.dispose()
    n = max(sent, 1)
    return {
        "messages": sent,
        "seconds": wall,
        "msgs_per_s": sent / wall,
        "cpu_us_per_msg": cpu / n * 1e6,
        "peak_rss_mib": peak.mib,
    }


def check(engine: Engine, stats: dict[str, Any], expected: int) -> list[str]:
    """Every planned member got exactly one message, linking exactly their articles."""
    from digest.models import Delivery, Subscriber

    problems = []
    with Session(engine) as session:
        by_status = dict(
            session.exec(select(Delivery.status, func.count()).group_by(Delivery.status)).all()
        )
        sent = session.exec(
            select(Subscriber.email, Delivery.article_ids)
            .join(Delivery, col(Delivery.subscriber_id) == col(Subscriber.id))
            .where(col(Delivery.status) != "skipped")
        ).all()
    planned = {email for email, _ in sent}
    if by_status.get("sent", 0) != expected or set(by_status) - {"sent", "skipped"}:
        problems.append(f"ledger statuses {by_status}, expected {expected} sent")
    got = stats["recipients"]
    if set(got) != planned:
        problems.append(f"{len(set(planned) - set(got))} members got nothing, "
                        f"{len(set(got) - set(planned))} unexpected recipients")  # fmt: skip
    repeated = {r: n for r, n in got.items() if n != 1}
    if repeated:
        problems.append(f"{len(repeated)} members got more than one message")
    # article id i+1 is linked as /a/i (see seed_articles)
    wrong = [
        email
        for email, ids in sent
        if stats["prints"].get(email) != article_print(i - 1 for i in ids)
    ]
    if wrong:
        problems.append(f"{len(wrong)} members' messages link other articles than planned")
    return problems


def measure_planning(
    sizes: Sequence[int], distinct: bool, tmp: Path, port: int, follows: float = 0.0
) -> list[dict[str, Any]]:
    """``plan()`` alone at each size: a fresh store each, planned in a fresh process.

    The child process does nothing but plan, so its peak RSS is planning's (plus the
    interpreter), comparable across sizes: bounded memory shows as a flat column.
    """
    ctx = mp.get_context("spawn")
    results = []
    for members in sizes:
        path = tmp / f"plan-{members}.db"
        t = time.perf_counter()
        make_store(path, members, distinct, follows).dispose()
        seeded = time.perf_counter() - t
        with ctx.Pool(1) as pool:
            result = pool.apply(_plan_store, (str(path), members, port))
        results.append({**result, "seed_seconds": seeded, "follows": follows})
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    return results


def _plan_store(path: str, members: int, port: int) -> dict[str, Any]:
    from digest.db import make_engine
    from digest.plan import plan

    engine = make_engine(f"sqlite:///{path}")
    settings = bench_settings(Path(path), port)
    rss_before = rss_mib()
    wall, cpu = time.perf_counter(), _cpu()
    report = plan(engine, settings, NOW, force=True)
    wall, cpu = time.perf_counter() - wall, _cpu() - cpu
    engine.dispose()
    return {"members": members, "seconds": wall, "members_per_s": members / wall,
            "cpu_seconds": cpu, "us_per_member": wall / members * 1e6,
            "planned": report.planned, "skipped_empty": report.skipped_empty,
            "batch_size": settings.batch_size,
            "rss_before_mib": rss_before, "peak_rss_mib": rss_mib()}  # fmt: skip


def plan_sizes(text: str) -> list[int]:
    """``100000`` or ``10000,100000,1000000`` (underscores allowed)."""
    sizes = [int(part) for part in text.split(",") if part.strip()]
    if any(n < 1 for n in sizes):
        raise argparse.ArgumentTypeError("member counts must be positive")
    return sizes


def print_planning(results: Sequence[dict[str, Any]]) -> None:
    head = ("members", "seconds", "members/s", "us/member", "CPU s", "peak RSS MiB", "seed s")
    follows = results[0].get("follows", 0.0)
    print(f"\nplanning alone: plan(force=True), batch_size {results[0]['batch_size']}, "
          "a fresh store and process per size"
          + (f", {follows:.0%} of members following people too" if follows else ""))  # fmt: skip
    print("".join(f"{h:>13}" for h in head))
    for p in results:
        cells = (p["members"], f"{p['seconds']:.1f}", f"{p['members_per_s']:.0f}",
                 f"{p['us_per_member']:.1f}", f"{p['cpu_seconds']:.1f}",
                 f"{p['peak_rss_mib']:.0f}", f"{p['seed_seconds']:.1f}")  # fmt: skip
        print("".join(f"{c:>13}" for c in cells))
    if len(results) > 1:
        first, last = results[0], results[-1]
        print(f"growth {first['members']} -> {last['members']} members: time x"
              f"{last['seconds'] / first['seconds']:.1f}, time per member x"
              f"{last['us_per_member'] / first['us_per_member']:.2f}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.send", description=__doc__)
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--distinct", action="store_true", help="every selection different")
    parser.add_argument("--baseline-sample", type=int, default=200)
    parser.add_argument(
        "--plan-members",
        type=plan_sizes,
        default=[],
        help="also time planning alone at these sizes, e.g. 10000,100000,1000000",
    )
    parser.add_argument(
        "--plan-follows",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="with --plan-members: this share of members also follows people (e.g. 0.5)",
    )
    parser.add_argument(
        "--pool", type=int, help="SMTP lanes (smtp_pool_size; default: the project's default)"
    )
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    sink = Sink()
    results: dict[str, Any] = {"members": args.members, "distinct": args.distinct,
                               "articles": ARTICLES, "topics": TOPICS}  # fmt: skip
    try:
        with tempfile.TemporaryDirectory(prefix="digest-bench-") as tmpdir:
            tmp = Path(tmpdir)
            t = time.perf_counter()
            path = tmp / "store.db"
            engine = make_store(path, args.members, args.distinct)
            results["seed_seconds"] = time.perf_counter() - t
            lanes = {} if args.pool is None else {"smtp_pool_size": args.pool}
            settings = bench_settings(path, sink.port, **lanes)
            print(f"store: {args.members} members, {ARTICLES} articles "
                  f"({results['seed_seconds']:.1f}s to generate)", file=sys.stderr)  # fmt: skip

            # baseline on a sample: plan a throwaway copy so the real store stays fresh
            base_path = tmp / "baseline.db"
            with sqlite3.connect(path) as src, sqlite3.connect(base_path) as dst:
                src.backup(dst)
            base_engine = bench_settings(base_path, sink.port)
            from digest.db import make_engine
            from digest.plan import plan

            be = make_engine(base_engine.database_url)
            plan(be, base_engine, NOW, force=True)
            sink.reset()
            results["baseline"] = measure_baseline(be, base_engine, sink.port, args.baseline_sample)
            be.dispose()
            print(f"baseline: {results['baseline']['msgs_per_s']:.1f} msg/s", file=sys.stderr)

            sink.reset()
            engine.dispose()
            results["ours"] = measure_ours(settings)
            stats = sink.stats()
            results["ours"]["sink_bytes_per_msg"] = stats["bytes"] // max(stats["messages"], 1)
            engine = make_engine(settings.database_url)
            results["problems"] = check(engine, stats, results["ours"]["messages"])
            results["peak_rss_mib"] = results["ours"]["peak_rss_mib"]
            engine.dispose()
            print(f"ours: {results['ours']['msgs_per_s']:.1f} msg/s", file=sys.stderr)

            sink.reset()
            size = results["ours"]["sink_bytes_per_msg"]
            results["floor"] = measure_floor(sink.port, results["ours"]["messages"], size)
            if sink.stats()["messages"] != results["ours"]["messages"]:
                results["problems"].append("floor: sink count mismatch")

            if args.plan_members:
                results["planning"] = measure_planning(
                    args.plan_members, args.distinct, tmp, sink.port, args.plan_follows
                )
                for p in results["planning"]:
                    if p["planned"] + p["skipped_empty"] != p["members"]:
                        results["problems"].append(f"planning {p['members']}: not all planned")
    finally:
        sink.stop()

    floor, base, ours = results["floor"], results["baseline"], results["ours"]
    results["ours_over_floor"] = ours["msgs_per_s"] / floor["msgs_per_s"]
    results["ours_over_baseline"] = ours["msgs_per_s"] / base["msgs_per_s"]
    print(f"\n{'':10} {'messages':>9} {'msgs/s':>9} {'CPU us/msg':>11} {'bytes/msg':>10}")
    for name, r in (("floor", floor), ("baseline", base), ("ours", ours)):
        size = r.get("bytes_per_msg", r.get("sink_bytes_per_msg", 0))
        print(f"{name:10} {r['messages']:>9} {r['msgs_per_s']:>9.1f} "
              f"{r['cpu_us_per_msg']:>11.0f} {size:>10}")  # fmt: skip
    print(f"ours: `digest run --force` in its own process, {ours['seconds']:.1f}s end to end "
          "(start-up, planning, rendering, sending, ledger)")  # fmt: skip
    print(f"ours/floor {results['ours_over_floor']:.2f}   "
          f"ours/baseline {results['ours_over_baseline']:.1f}   "
          f"peak RSS {results['peak_rss_mib']:.0f} MiB")  # fmt: skip
    if "planning" in results:
        print_planning(results["planning"])
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if results["problems"]:
        print("PROBLEMS: " + "; ".join(results["problems"]), file=sys.stderr)
        return 1
    print("check: every planned member got exactly one message; ledger says sent for all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
