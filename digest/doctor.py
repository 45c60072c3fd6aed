"""``digest doctor``: check the configuration an operator is about to send with, before a send.

Each check answers ok, warning or error (``ok``/``warn``/``fail``) with a sentence saying what
to fix and, for DNS, the record it read. Nothing is sent: the SMTP check connects, says EHLO,
starts TLS where configured, logs in where configured, and quits. The DNS checks (SPF of the
envelope domain, the DKIM key's TXT record, DMARC and its alignment with From, the bounce
domain's MX) ask the resolver ``dns_nameserver`` names, or the system's.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import smtplib
import ssl
import subprocess
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

import jinja2

from digest import dnsrecords
from digest.content import (
    ArticleView,
    DigestIssue,
    DigestLinks,
    MemberView,
    MentionView,
    TopicGroup,
)
from digest.editions import Editions
from digest.ledger import new_message_id
from digest.members.rules import ACTIVE
from digest.render import GMAIL_CLIP_BYTES, Renderer, make_environment
from digest.resources import template_names
from digest.settings import Settings, SettingsError

if TYPE_CHECKING:
    from dns.resolver import Resolver

Status = Literal["ok", "warn", "fail"]
SPAM_OK = 0.5


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str


# ------------------------------------------------------------------ individual checks


def _is_local_host(host: str) -> bool:
    host = host.strip("[]").lower()
    if host in ("localhost", "") or host.endswith((".localhost", ".local", ".test", ".invalid")):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_from(settings: Settings) -> Check:
    name = "From address"
    addr = parseaddr(settings.from_address)[1]
    local_part, _, domain = addr.rpartition("@")
    if not local_part or not domain:
        return Check(name, "fail", f"{settings.from_address!r} has no usable address")
    if _is_local_host(domain) or "." not in domain:
        return Check(name, "warn", f"{addr}: domain {domain!r} is not a public domain")
    from email_validator import EmailNotValidError, validate_email

    try:
        validate_email(addr, check_deliverability=False)
    except EmailNotValidError as exc:
        return Check(name, "fail", f"{settings.from_address!r} is not a valid address: {exc}")
    return Check(name, "ok", f"{addr} (Message-IDs on {domain})")


def check_base_url(settings: Settings) -> Check:
    name = "Base URL"
    url = settings.base_url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return Check(name, "fail", f"{url!r} is not an http(s) URL; links would not work")
    if _is_local_host(parts.hostname):
        return Check(name, "warn", f"{url}: members cannot open links to a local address")
    if parts.scheme != "https":
        return Check(
            name,
            "fail",
            f"{url}: not https, so messages carry no one-click unsubscribe (RFC 8058; Gmail and "
            "Yahoo require it for bulk mail) and links travel in the clear; serve the web app "
            "behind TLS and set an https base_url",
        )
    return Check(name, "ok", url)


def check_secret(settings: Settings) -> Check:
    if not settings.secret_key:
        return Check("Signed links", "fail", "DIGEST_SECRET_KEY is not set: nothing can be sent")
    if len(settings.secret_key) < 16:
        return Check("Signed links", "warn", "DIGEST_SECRET_KEY is short; use 32 random bytes")
    return Check("Signed links", "ok", "DIGEST_SECRET_KEY is set")


def check_smtp(settings: Settings) -> Check:
    name = "SMTP server"
    if settings.transport == "outbox":
        return Check(name, "warn", f"transport is outbox: messages go to {settings.outbox_dir}")
    where = f"{settings.smtp_host}:{settings.smtp_port} ({settings.smtp_security})"
    context = ssl.create_default_context()
    conn: smtplib.SMTP | None = None
    try:
        if settings.smtp_security == "tls":
            conn = smtplib.SMTP_SSL(
                settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout,
                context=context,
            )  # fmt: skip
        else:
            conn = smtplib.SMTP(
                settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout
            )
        code, _ = conn.ehlo()
        if code != 250:
            return Check(name, "fail", f"{where}: EHLO answered {code}")
        if settings.smtp_security == "starttls":
            if not conn.has_extn("starttls"):
                return Check(name, "fail", f"{where}: the server does not offer STARTTLS")
            conn.starttls(context=context)
            conn.ehlo()
        if settings.smtp_username:
            if not settings.smtp_password:
                return Check(name, "fail", f"{where}: smtp username set but no password")
            conn.login(settings.smtp_username, settings.smtp_password)
        features = [f for f in ("smtputf8", "pipelining", "8bitmime") if conn.has_extn(f)]
        detail = f"{where}: EHLO ok" + (f"; offers {', '.join(features)}" if features else "")
    except smtplib.SMTPAuthenticationError as exc:
        return Check(name, "fail", f"{where}: login refused: {exc.smtp_code}")
    except (OSError, smtplib.SMTPException) as exc:
        return Check(name, "fail", f"{where}: {type(exc).__name__}: {exc}")
    finally:
        if conn is not None:
            try:
                conn.quit()
            except (OSError, smtplib.SMTPException):
                conn.close()
    if settings.smtp_security == "none" and not _is_local_host(settings.smtp_host):
        return Check(name, "warn", f"{detail}; mail goes unencrypted to a remote server")
    return Check(name, "ok", detail)


def check_dkim(settings: Settings, resolver: Resolver | None = None) -> Check:
    """The signing key against its TXT record: read from DNS when a resolver is given, else
    the ``dkim_dns_txt`` setting."""
    name = "DKIM"
    if not settings.dkim_selector.strip():
        return Check(name, "warn", "not signing: set dkim_selector and a key for bulk mail")
    try:
        from digest.dkim import DKIMError, key_matches_txt, signer_from_settings

        signer = signer_from_settings(settings)
    except ImportError:
        return Check(name, "fail", "dkimpy is not installed (pip install dkimpy)")
    except SettingsError as exc:
        return Check(name, "fail", str(exc))
    assert signer is not None
    record = f"{signer.selector}._domainkey.{signer.domain}"
    from_domain = settings.from_domain.lower()
    if not (from_domain == signer.domain or from_domain.endswith("." + signer.domain)):
        return Check(name, "warn", f"{record} does not align with the From domain {from_domain}")
    source = "dkim_dns_txt"
    published = settings.dkim_dns_txt.strip()
    found = _lookup(settings, resolver, record)
    if found is not None and not found.answered and not published:
        return Check(name, "warn", f"{record}: could not read DNS: {found.error}")
    if found is not None and found.answered:
        keys = [r for r in found.records if "p=" in r]
        if not keys:
            why = found.error or f"no DKIM key among its TXT records {list(found.records)}"
            return Check(name, "fail", f"{record}: {why}; publish the key's TXT record there")
        if len(keys) > 1:
            return Check(name, "fail", f"{record} has {len(keys)} DKIM keys: {keys}")
        published, source = keys[0], "DNS"
    if not published:
        return Check(name, "warn", f"key loaded for {record}; set dkim_dns_txt to check it")
    try:
        matches = key_matches_txt(signer, published)
    except DKIMError as exc:
        return Check(name, "fail", f"{record}: {exc} (read: {_short(published)})")
    if not matches:
        return Check(
            name,
            "fail",
            f"the private key does not match the TXT record of {record} ({source}): "
            f"{_short(published)}",
        )
    return Check(
        name,
        "ok",
        f"signing as {record}; the key matches its TXT record ({source}): {_short(published)}",
    )


def _short(record: str, keep: int = 90) -> str:
    return record if len(record) <= keep else record[:keep] + "..."


def _lookup(
    settings: Settings, resolver: Resolver | None, name: str, kind: str = "TXT"
) -> dnsrecords.Lookup | None:
    """The records at ``name``, or None when DNS is not to be asked: no resolver, or a
    reserved example domain with the system's resolver (``dns_nameserver`` set: always)."""
    if resolver is None:
        return None
    if dnsrecords.reserved(name) and not settings.dns_nameserver.strip():
        return None
    return dnsrecords.mx(resolver, name) if kind == "MX" else dnsrecords.txt(resolver, name)


def _unread(name: str, found: dnsrecords.Lookup | None, domain: str) -> Check | None:
    """A warning when DNS was not asked or did not answer: that says nothing either way."""
    if found is None:
        return Check(
            name,
            "warn",
            f"{domain} is a reserved example domain: not looked up (set dns_nameserver to "
            "ask a server of yours)",
        )
    if not found.answered:
        return Check(name, "warn", f"could not read {found.name}: {found.error}")
    return None


def envelope_domain(settings: Settings) -> str:
    """The MAIL FROM domain: the bounce domain when set (VERP), else the From domain."""
    if settings.bounce_address:
        return settings.bounce_address.rpartition("@")[2].lower()
    return settings.from_domain.lower()


def check_spf(settings: Settings, resolver: Resolver) -> Check:
    """An SPF record on the envelope (MAIL FROM) domain, which receivers check."""
    name = "SPF"
    domain = envelope_domain(settings)
    found = _lookup(settings, resolver, domain)
    unread = _unread(name, found, domain)
    if unread is not None or found is None:
        return unread or Check(name, "warn", "not checked")
    spf = [r for r in found.records if r.lower().split(" ", 1)[0] == "v=spf1"]
    if not spf:
        why = found.error or "no v=spf1 record among its TXT records"
        return Check(
            name,
            "fail",
            f'{domain} (envelope domain): {why}; publish e.g. "v=spf1 include:<your relay> -all"',
        )
    if len(spf) > 1:
        return Check(name, "fail", f"{domain} has {len(spf)} SPF records (a permerror): {spf}")
    record = spf[0]
    terms = record.lower().split()
    if "+all" in terms or "all" in terms:
        return Check(name, "warn", f"{domain}: {record} lets anyone send as you (+all)")
    if not any(t.endswith("all") for t in terms[1:]) and not any(
        t.startswith("redirect=") for t in terms
    ):
        return Check(name, "warn", f"{domain}: {record} ends without an -all or ~all")
    return Check(name, "ok", f"{domain}: {record}")


def check_dmarc(settings: Settings, resolver: Resolver) -> Check:
    """A DMARC record for the From domain, and DKIM or SPF aligned with From under it."""
    name = "DMARC"
    from_domain = settings.from_domain.lower()
    names = [f"_dmarc.{from_domain}"]
    org = dnsrecords.organizational_domain(from_domain)
    if org != from_domain:
        names.append(f"_dmarc.{org}")
    tried: list[str] = []
    found: dnsrecords.Lookup | None = None
    for where in names:
        lookup = _lookup(settings, resolver, where)
        unread = _unread(name, lookup, from_domain)
        if unread is not None or lookup is None:
            return unread or Check(name, "warn", "not checked")
        records = [r for r in lookup.records if r.replace(" ", "").lower().startswith("v=dmarc1")]
        if records:
            found = dnsrecords.Lookup(where, tuple(records))
            break
        tried.append(f"{where}: {lookup.error or 'no v=DMARC1 record'}")
    if found is None:
        return Check(
            name,
            "fail",
            "no DMARC record (" + "; ".join(tried) + "); Gmail and Yahoo require one for bulk "
            'mail: publish e.g. "v=DMARC1; p=none; rua=mailto:dmarc@' + org + '"',
        )
    if len(found.records) > 1:
        return Check(name, "fail", f"{found.name} has {len(found.records)} DMARC records")
    record = found.records[0]
    policy = dnsrecords.tags(record)
    adkim, aspf = policy.get("adkim", "r").lower()[:1], policy.get("aspf", "r").lower()[:1]
    envelope = envelope_domain(settings)
    spf_ok = dnsrecords.aligned(envelope, from_domain, aspf)
    dkim_domain = (settings.dkim_domain or from_domain).lower()
    signing = bool(settings.dkim_selector.strip())
    dkim_ok = signing and dnsrecords.aligned(dkim_domain, from_domain, adkim)
    said = (
        f"DKIM d={dkim_domain} {'aligned' if dkim_ok else 'not aligned' if signing else 'off'}, "
        f"envelope {envelope} {'aligned' if spf_ok else 'not aligned'} (adkim={adkim}, aspf={aspf})"
    )
    if not (dkim_ok or spf_ok):
        return Check(
            name, "fail", f"{found.name}: {record}; neither aligns with From {from_domain}: {said}"
        )
    return Check(name, "ok", f"{found.name}: {record}; {said}")


def check_bounce_mx(settings: Settings, resolver: Resolver) -> Check:
    """An MX for the bounce domain, so DSNs reach ``digest inbound`` (or the bounce mailbox)."""
    name = "Bounce domain MX"
    if not settings.bounce_address:
        return Check(
            name, "warn", "bounce_address is not set: bounces go to the From address, unread"
        )
    domain = settings.bounce_address.rpartition("@")[2].lower()
    found = _lookup(settings, resolver, domain, "MX")
    unread = _unread(name, found, domain)
    if unread is not None or found is None:
        return unread or Check(name, "warn", "not checked")
    if not found.records:
        return Check(
            name,
            "fail",
            f"{domain}: {found.error or 'no MX record'}; point an MX at the host running "
            "digest inbound",
        )
    return Check(name, "ok", f"{domain} MX " + ", ".join(found.records))


def dns_checks(settings: Settings) -> list[Check]:
    """SPF, DMARC and the bounce MX (DKIM is checked against DNS by ``check_dkim``)."""
    try:
        resolver = dnsrecords.make_resolver(settings)
    except ValueError as exc:
        return [Check("DNS", "fail", str(exc))]
    return [
        check_spf(settings, resolver),
        check_dmarc(settings, resolver),
        check_bounce_mx(settings, resolver),
    ]


def template_problems(templates_dir: str | Path = "") -> list[str]:
    """``file:line: message`` for each email template that does not compile or render (the
    operator's ``templates_dir`` over the built-in set)."""
    env = make_environment(templates_dir)
    problems: list[str] = []
    for name in template_names(templates_dir, "email"):
        if not name.endswith(".j2"):
            continue
        try:
            env.get_template(name)
        except jinja2.TemplateSyntaxError as exc:
            problems.append(f"{exc.filename or name}:{exc.lineno}: {exc.message}")
    if problems:
        return problems
    renderer = Renderer(templates_dir)
    for what, call in (
        ("digest", lambda: renderer.render_digest(sample_issue(3), cache=False)),
        ("confirmation", lambda: renderer.render_notice("confirm", {
            "site_name": "Sample", "confirm_url": "https://example.org/confirm/x",
            "member": _member(),
        })),
        ("already subscribed", lambda: renderer.render_notice("manage", {
            "site_name": "Sample", "preferences_url": "https://example.org/preferences/x",
            "member": _member(),
        })),
    ):  # fmt: skip
        try:
            call()
        except Exception as exc:  # any template error, reported with its place
            problems.append(f"{_template_place(exc, what)}: {type(exc).__name__}: {exc}")
    return problems


def page_template_problems(templates_dir: str | Path = "") -> list[str]:
    """``file:line: message`` for each web page template that does not compile."""
    from digest.web.context import page_environment  # the pages' own Jinja settings

    env = page_environment(templates_dir)
    problems: list[str] = []
    for name in template_names(templates_dir, "web"):
        if not name.endswith(".html"):
            continue
        try:
            env.get_template(name.removeprefix("web/"))
        except jinja2.TemplateSyntaxError as exc:
            problems.append(f"{exc.filename or name}:{exc.lineno}: {exc.message}")
    return problems


def templates_in_use(templates_dir: str | Path = "") -> str:
    """Which templates a run uses, in words: the built-in set, or an override folder over it."""
    if str(templates_dir).strip():
        return f"{templates_dir} (over the built-in templates)"
    return "built-in templates"


def _template_place(exc: BaseException, fallback: str) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.endswith(".j2")]
    if frames:
        return f"{frames[-1].filename}:{frames[-1].lineno}"
    return fallback


def check_templates(settings: Settings) -> Check:
    problems = template_problems(settings.templates_dir)
    problems += page_template_problems(settings.templates_dir)
    if problems:
        return Check("Templates", "fail", "; ".join(problems))
    where = templates_in_use(settings.templates_dir)
    return Check("Templates", "ok", f"{where}: every template compiles, emails render")


def _member() -> MemberView:
    return MemberView(
        id=0,
        email="reader@example.org",
        name="Sample Reader",
        status=ACTIVE,
        frequency="daily",
        timezone="UTC",
        send_hour=8,
        topics=("Science", "Health"),
    )


_POINT = (
    "Researchers reported results from a two-year study across eleven sites, with independent "
    "replication of the main finding and a pre-registered analysis plan. The effect was smaller "
    "than in the pilot but consistent across groups, and the authors set out the limits of the "
    "design, their funding and the larger trial they plan next."
)


def sample_issue(count: int = 20, base_url: str = "https://example.org") -> DigestIssue:
    """A realistic worst case: ``count`` long articles with mentions, in two topics."""
    now = datetime(2025, 3, 25, 8, tzinfo=UTC)
    articles = [
        ArticleView(
            id=i + 1,
            url=f"https://example.org/articles/{i + 1}",
            title=f"Sample article {i + 1}: what a two-year study found, and what it did not",
            published_at=now - timedelta(hours=i + 1),
            first_seen_at=now,
            key_points=(_POINT, _POINT, _POINT),
            topics=("Science" if i % 2 else "Health",),
            mentions=(MentionView("Example University", "A university.", "https://example.org/"),),
            summary="A careful look at a long study.",
        )
        for i in range(count)
    ]
    groups = [
        TopicGroup(t, tuple(a for a in articles if a.topics[0] == t)) for t in ("Health", "Science")
    ]
    base = base_url.rstrip("/")
    return DigestIssue(
        member=_member(),
        edition="daily:2025-03-25",
        edition_label="Tuesday 25 March 2025",
        groups=tuple(g for g in groups if g.articles),
        links=DigestLinks(
            preferences_url=f"{base}/preferences/sample-token",
            unsubscribe_url=f"{base}/unsubscribe/sample-token",
            unsubscribe_mailto="mailto:unsubscribe@example.org?subject=unsubscribe",
        ),
        site_name="Sample",
        base_url=base,
    )


def spamassassin_score(data: bytes, timeout: float = 120) -> tuple[float, list[str]] | None:
    """SpamAssassin's score and rules for ``data``, offline; None if it is not installed."""
    if shutil.which("spamassassin") is None:
        return None
    proc = subprocess.run(
        ["spamassassin", "-t", "-L", "--cf=dns_available no", "--cf=use_bayes 0"],
        input=data,
        capture_output=True,
        timeout=timeout,
    )
    status = re.search(rb"^X-Spam-Status: .*?(?=^\S)", proc.stdout, re.MULTILINE | re.DOTALL)
    if not status:
        raise RuntimeError(proc.stderr.decode("utf-8", "replace")[-500:] or "no X-Spam-Status")
    text = " ".join(status.group(0).decode("ascii", "replace").split())
    score = re.search(r"score=(-?[\d.]+)", text)
    tests = re.search(r"tests=(\S*)", text)
    return (float(score.group(1)) if score else 0.0), (tests.group(1).split(",") if tests else [])


def check_sample(settings: Settings, spamassassin: bool = True) -> list[Check]:
    """Render 20 long articles with the operator's templates: size, then spam score."""
    try:
        renderer = Renderer.from_settings(settings)
        issue = sample_issue(20, settings.base_url)
        issue = replace(issue, site_name=settings.site_name)
        rendered = renderer.render_digest(issue)
    except Exception as exc:
        return [Check("Sample digest", "fail", f"rendering failed: {type(exc).__name__}: {exc}")]
    size = len(rendered.html.encode("utf-8"))
    detail = f"HTML {size / 1024:.1f} KB for 20 long articles (budget {settings.html_size_budget})"
    checks = [
        Check(
            "Sample digest size",
            "ok" if size < GMAIL_CLIP_BYTES else "fail",
            detail + ("" if size < GMAIL_CLIP_BYTES else "; Gmail clips over 102 KB"),
        )
    ]
    if not spamassassin:
        return checks
    try:
        # composed as every message is (headers, links, DKIM), with a stand-in key if none is
        # set: the secret's own check reports that
        editions = Editions(settings.replace(secret_key=settings.secret_key or "doctor-sample"))
        now = datetime.now(UTC)
        message_id = new_message_id("doctor.sample", settings.from_domain)
        data = editions.compose(rendered, issue.member, message_id, now)
        result = spamassassin_score(data)
    except Exception as exc:
        return [*checks, Check("SpamAssassin", "fail", f"{type(exc).__name__}: {exc}")]
    if result is None:
        return [*checks, Check("SpamAssassin", "warn", "not installed; score not checked")]
    score, rules = result
    listed = ", ".join(r for r in rules if r) or "no rules"
    status: Status = "ok" if score <= SPAM_OK else ("warn" if score < 5 else "fail")
    return [*checks, Check("SpamAssassin", status, f"score {score} (offline): {listed}")]


def check_brand(settings: Settings) -> Check:
    name = "Branding"
    if not re.fullmatch(r"#[0-9A-Fa-f]{6}", settings.brand_accent_color):
        accent = settings.brand_accent_color
        return Check(name, "fail", f"brand_accent_color {accent!r}: use the form #rrggbb")
    ratio = contrast_ratio(settings.brand_accent_color, "#ffffff")
    if ratio < 4.5:
        return Check(name, "warn", f"accent colour contrast {ratio:.1f}:1 on white (needs 4.5)")
    if not settings.postal_address.strip():
        return Check(
            name,
            "warn",
            "postal_address is empty: anti-spam laws require one, and run, worker and serve "
            "refuse to send to real recipients without it",
        )
    return Check(name, "ok", f"accent {settings.brand_accent_color} ({ratio:.1f}:1)")


def contrast_ratio(a: str, b: str) -> float:
    """WCAG 2 contrast ratio of two ``#rrggbb`` colours."""

    def lum(color: str) -> float:
        channels = [int(color[i : i + 2], 16) / 255 for i in (1, 3, 5)]
        r, g, b_ = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
        return 0.2126 * r + 0.7152 * g + 0.0722 * b_

    hi, lo = sorted((lum(a), lum(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def check_store(settings: Settings) -> Check:
    """The store answers and its schema is the one this version needs."""
    from sqlalchemy.engine import make_url

    from digest.db import (
        current_revision,
        head_revision,
        make_engine,
        store_unreachable,
        unreachable_reason,
    )
    from digest.settings import mask_url

    name = "Store"
    where = mask_url(settings.database_url)
    parsed = make_url(settings.database_url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        if not Path(parsed.database).expanduser().exists():
            return Check(name, "warn", f"{where}: no store yet; the first command creates it")
    engine = make_engine(settings.database_url)
    try:
        current, head = current_revision(engine), head_revision(engine)
    except Exception as exc:
        if not store_unreachable(exc):
            raise
        return Check(name, "fail", f"{where}: not reachable: {unreachable_reason(exc)}")
    finally:
        engine.dispose()
    if current is None:
        return Check(name, "warn", f"{where}: reachable, empty (the first command creates it)")
    if current != head:
        return Check(
            name,
            "fail",
            f"{where}: schema at {current}, this version needs {head}: run `digest db upgrade`",
        )
    return Check(name, "ok", f"{where}: reachable, schema current ({head})")


# ------------------------------------------------------------------ all of it


def run_checks(
    settings: Settings, *, smtp: bool = True, spamassassin: bool = True, dns: bool = True
) -> list[Check]:
    """Every check in checklist order; a crashing check is a failed check, not a traceback."""
    steps: list[Callable[[], Check | list[Check]]] = [
        lambda: check_from(settings),
        lambda: check_base_url(settings),
        lambda: check_secret(settings),
        lambda: check_store(settings),
    ]
    if smtp:
        steps.append(lambda: check_smtp(settings))
    resolver: Resolver | None = None
    if dns:
        try:
            resolver = dnsrecords.make_resolver(settings)
        except ValueError:
            resolver = None  # dns_checks reports the setting
        steps.append(lambda: dns_checks(settings))
    steps += [
        lambda: (
            check_dkim(settings, resolver)
            if resolver is not None or not dns
            else Check("DKIM", "fail", "no resolver to read the key's TXT record with")
        ),
        lambda: check_templates(settings),
        lambda: check_brand(settings),
        lambda: check_sample(settings, spamassassin),
    ]
    checks: list[Check] = []
    for step in steps:
        try:
            result = step()
        except Exception as exc:
            result = Check("Check", "fail", f"{type(exc).__name__}: {exc}")
        checks.extend(result if isinstance(result, list) else [result])
    return checks


#: How each status is worded where people read it.
WORDS = {"ok": "ok", "warn": "warning", "fail": "error"}


def format_checklist(checks: list[Check]) -> str:
    width = max((len(c.name) for c in checks), default=0)
    return "\n".join(
        f"{'[' + WORDS[c.status] + ']':<9} {c.name:<{width}}  {c.detail}" for c in checks
    )


def failed(checks: list[Check]) -> bool:
    return any(c.status == "fail" for c in checks)
