"""``digest doctor`` against the loopback SMTP server: ok/warn/fail lines, exit 1 on a failure."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from digest import resources
from digest.cli.common import App
from digest.cli.doctor import COMMANDS, doctor_command, templates_group
from digest.doctor import (
    Check,
    contrast_ratio,
    page_template_problems,
    run_checks,
    template_problems,
)
from digest.settings import Settings, load_settings
from tests.conftest import TEST_SECRET, SMTPServer, free_port
from tests.dns_server import Zone, dns_server
from tests.test_dkim import make_key

TEMPLATES = resources.path("templates")


def good_settings(smtp_server: SMTPServer, **overrides: Any) -> Settings:
    return load_settings(
        env={},
        overrides={
            "secret_key": TEST_SECRET,
            "base_url": "https://news.example.org",
            "from_address": "Science Digest <digest@news.example.org>",
            "site_name": "Science Digest",
            "smtp_host": smtp_server.host,
            "smtp_port": smtp_server.port,
            "postal_address": "Science Digest Ltd, 1 Example Street, Springfield",
            **overrides,
        },
    )


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def run_cli(settings: Settings, *args: str) -> Any:
    return CliRunner().invoke(doctor_command, list(args), obj=App(settings=settings))


def test_good_configuration_passes(smtp_server: SMTPServer, tmp_path: Path) -> None:
    pytest.importorskip("dkim")
    key, txt = make_key(tmp_path)
    settings = good_settings(
        smtp_server, dkim_selector="s1", dkim_private_key_path=str(key), dkim_dns_txt=txt
    )
    checks = by_name(run_checks(settings, dns=False))
    assert {c.status for c in checks.values()} <= {"ok", "warn"}, checks
    names = ("From address", "Base URL", "Signed links", "SMTP server", "DKIM", "Templates")
    for name in (*names, "Branding"):
        assert checks[name].status == "ok", checks[name]
    assert "EHLO ok" in checks["SMTP server"].detail
    assert "matches" in checks["DKIM"].detail
    assert checks["Sample digest size"].status == "ok"
    assert "KB for 20 long articles" in checks["Sample digest size"].detail
    if shutil.which("spamassassin"):
        assert checks["SpamAssassin"].status == "ok", checks["SpamAssassin"]
    assert smtp_server.messages == []  # nothing is sent

    result = run_cli(settings, "--no-spamassassin", "--no-dns")
    assert result.exit_code == 0, result.output
    assert "[ok]      SMTP server" in result.output
    assert COMMANDS == [doctor_command]


def test_problems_are_failures_with_reasons(smtp_server: SMTPServer, tmp_path: Path) -> None:
    pytest.importorskip("dkim")
    key, _ = make_key(tmp_path, "a")
    _, other_txt = make_key(tmp_path, "b")
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES, templates)
    (templates / "email/_article.mjml.j2").write_text("line one\n{% if %}\n")
    settings = good_settings(
        smtp_server,
        smtp_port=free_port(),  # nobody listens
        base_url="http://localhost:8000",
        dkim_selector="s1",
        dkim_private_key_path=str(key),
        dkim_dns_txt=other_txt,
        templates_dir=str(templates),
        brand_accent_color="#9fc5ff",
        from_address="Digest <digest@localhost>",
    )
    checks = by_name(run_checks(settings, spamassassin=False, dns=False))
    assert checks["SMTP server"].status == "fail"
    assert checks["Base URL"].status == "warn" and "local" in checks["Base URL"].detail
    assert checks["From address"].status == "warn"
    assert checks["DKIM"].status == "fail" and "does not match" in checks["DKIM"].detail
    assert checks["Templates"].status == "fail"
    assert "_article.mjml.j2:2" in checks["Templates"].detail
    assert checks["Branding"].status == "warn" and "contrast" in checks["Branding"].detail

    result = run_cli(settings, "--no-spamassassin", "--no-dns")
    assert result.exit_code == 1
    assert "[error]   SMTP server" in result.output and "[warning] Base URL" in result.output


def test_starttls_required_but_not_offered(smtp_server: SMTPServer) -> None:
    settings = good_settings(smtp_server, smtp_security="starttls")
    check = by_name(run_checks(settings, spamassassin=False, dns=False))["SMTP server"]
    assert check.status == "fail" and "STARTTLS" in check.detail


def test_missing_secret_and_dkim_key(smtp_server: SMTPServer) -> None:
    settings = good_settings(smtp_server, secret_key="", dkim_selector="s1")
    checks = by_name(run_checks(settings, smtp=False, spamassassin=False, dns=False))
    assert checks["Signed links"].status == "fail"
    assert "DIGEST_SECRET_KEY" in checks["Signed links"].detail
    assert checks["DKIM"].status == "fail" and "no key" in checks["DKIM"].detail
    assert "SMTP server" not in checks


def test_template_problems_name_file_and_line(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES, templates)
    assert template_problems(templates) == []
    path = templates / "email/digest.txt.j2"
    path.write_text(path.read_text() + "\n{{ no_such_variable }}\n")
    (problem,) = template_problems(templates)
    assert "digest.txt.j2:" in problem and "no_such_variable" in problem

    runner = CliRunner()
    settings = load_settings(env={}, overrides={"templates_dir": str(templates)})
    result = runner.invoke(templates_group, ["check"], obj=App(settings=settings))
    assert result.exit_code == 1 and "no_such_variable" in result.output


def test_templates_check_compiles_web_pages_too(tmp_path: Path) -> None:
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "subscribe.html").write_text("<p>\n{% if %}\n</p>\n")
    assert page_template_problems() == []
    (problem,) = page_template_problems(tmp_path)
    assert problem.startswith(f"{tmp_path / 'web' / 'subscribe.html'}:2: ")

    settings = load_settings(env={}, overrides={"templates_dir": str(tmp_path)})
    result = CliRunner().invoke(templates_group, ["check"], obj=App(settings=settings))
    assert result.exit_code == 1 and "subscribe.html:2" in result.output
    check = run_checks(settings, smtp=False, spamassassin=False)
    assert [c.status for c in check if c.name == "Templates"] == ["fail"]

    result = CliRunner().invoke(templates_group, ["check"], obj=App(settings=load_settings(env={})))
    assert result.exit_code == 0
    assert result.output == "built-in templates: every template compiles, emails render\n"


def test_templates_copy_starts_a_templates_dir(tmp_path: Path) -> None:
    runner = CliRunner()
    target = tmp_path / "mine"
    result = runner.invoke(templates_group, ["copy", str(target), "email/layout.mjml.j2"])
    assert result.exit_code == 0, result.output
    assert [p.name for p in target.rglob("*") if p.is_file()] == ["layout.mjml.j2"]
    assert f'templates_dir = "{target.resolve()}"' in result.output
    again = runner.invoke(templates_group, ["copy", str(target), "email/layout.mjml.j2"])
    assert again.exit_code == 2 and "already exists (--force replaces it)" in again.output
    unknown = runner.invoke(templates_group, ["copy", str(target), "email/nope.j2"])
    assert unknown.exit_code == 2 and "no built-in template email/nope.j2" in unknown.output
    forced = runner.invoke(templates_group, ["copy", "--force", str(target)])
    assert forced.exit_code == 0
    settings = load_settings(env={}, overrides={"templates_dir": str(target)})
    assert template_problems(settings.templates_dir) == []


def test_contrast_ratio() -> None:
    assert round(contrast_ratio("#000000", "#ffffff"), 1) == 21.0
    assert contrast_ratio("#0b57d0", "#ffffff") >= 4.5


# ------------------------------------------------------------------ DNS (a real server on loopback)


def dns_zone(txt_dkim: str) -> Zone:
    """What a careful operator publishes, except DMARC (the tests add it when they want it)."""
    return Zone(
        txt={
            "news.example.org": ["v=spf1 ip4:192.0.2.0/24 -all"],
            "bounce.news.example.org": ["v=spf1 ip4:192.0.2.0/24 ~all", "google-site-verif=x"],
            "s1._domainkey.news.example.org": [txt_dkim],
        },
        mx={"bounce.news.example.org": [(10, "mx1.news.example.org")]},
    )


def dns_settings(smtp_server: SMTPServer, key: Path, nameserver: str, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "dkim_selector": "s1",
        "dkim_private_key_path": str(key),
        "bounce_address": "bounces@bounce.news.example.org",
        "dns_nameserver": nameserver,
    }
    return good_settings(smtp_server, **{**values, **extra})


def test_dns_missing_dmarc_is_an_error_and_a_matching_key_ok(
    smtp_server: SMTPServer, tmp_path: Path
) -> None:
    pytest.importorskip("dkim")
    key, txt = make_key(tmp_path)
    zone = dns_zone(txt)
    with dns_server(zone) as nameserver:
        settings = dns_settings(smtp_server, key, nameserver)
        result = run_cli(settings, "--no-spamassassin", "--no-smtp")
        checks = by_name(run_checks(settings, smtp=False, spamassassin=False))
    assert result.exit_code == 1, result.output
    dmarc = next(line for line in result.output.splitlines() if "DMARC" in line)
    assert dmarc.startswith("[error]") and "_dmarc.news.example.org" in dmarc
    dkim = next(line for line in result.output.splitlines() if line.split()[1] == "DKIM")
    assert dkim.startswith("[ok]") and "matches its TXT record (DNS)" in dkim
    assert checks["SPF"].status == "ok"
    assert "bounce.news.example.org: v=spf1 ip4:192.0.2.0/24 ~all" in checks["SPF"].detail
    assert checks["Bounce domain MX"].status == "ok"
    assert "10 mx1.news.example.org" in checks["Bounce domain MX"].detail
    assert ("_dmarc.news.example.org", "TXT") in zone.queries  # asked the server, not a mock
    assert ("_dmarc.example.org", "TXT") in zone.queries  # and the organizational domain


def test_dns_dmarc_alignment_and_the_other_errors(smtp_server: SMTPServer, tmp_path: Path) -> None:
    pytest.importorskip("dkim")
    key, txt = make_key(tmp_path)
    _, other_txt = make_key(tmp_path, "other")
    zone = dns_zone(other_txt)  # a key that is not ours
    zone.txt["_dmarc.example.org"] = ["v=DMARC1; p=quarantine; adkim=s; aspf=s"]
    del zone.txt["bounce.news.example.org"]
    del zone.mx["bounce.news.example.org"]
    unsigned = {"dkim_selector": "", "dkim_private_key_path": ""}
    with dns_server(zone) as nameserver:
        checks = by_name(
            run_checks(dns_settings(smtp_server, key, nameserver), smtp=False, spamassassin=False)
        )
        strict = by_name(
            run_checks(
                dns_settings(smtp_server, key, nameserver, **unsigned),
                smtp=False,
                spamassassin=False,
            )
        )
        zone.txt["_dmarc.news.example.org"] = ["v=DMARC1; p=none; rua=mailto:d@example.org"]
        relaxed = by_name(
            run_checks(
                dns_settings(smtp_server, key, nameserver, **unsigned),
                smtp=False,
                spamassassin=False,
            )
        )
        signed = by_name(
            run_checks(dns_settings(smtp_server, key, nameserver), smtp=False, spamassassin=False)
        )
    assert checks["DKIM"].status == "fail" and "does not match" in checks["DKIM"].detail
    assert checks["SPF"].status == "fail" and "NXDOMAIN" in checks["SPF"].detail
    assert checks["Bounce domain MX"].status == "fail"
    # the organizational domain's record, found from the From domain's; under aspf=s the
    # envelope's bounce.news.example.org is not news.example.org, and nothing is signed
    assert strict["DMARC"].status == "fail" and "neither aligns" in strict["DMARC"].detail
    assert "_dmarc.example.org: v=DMARC1; p=quarantine" in strict["DMARC"].detail
    # relaxed (the default): the envelope's organizational domain is the From's
    assert relaxed["DMARC"].status == "ok", relaxed["DMARC"]
    assert "envelope bounce.news.example.org aligned" in relaxed["DMARC"].detail
    assert "DKIM d=news.example.org aligned" in signed["DMARC"].detail


def test_dns_json_words_and_a_bad_nameserver(smtp_server: SMTPServer) -> None:
    settings = good_settings(smtp_server, dns_nameserver="dns.example.org")
    result = run_cli(settings, "--no-spamassassin", "--no-smtp", "--json")
    assert result.exit_code == 1
    lines = [json.loads(line) for line in result.output.splitlines()]
    dns = next(line for line in lines if line["check"] == "DNS")
    assert dns["status"] == "error" and "use an IP address" in dns["detail"]
    assert {line["status"] for line in lines} <= {"ok", "warning", "error"}


def test_dns_says_nothing_it_could_not_read(smtp_server: SMTPServer) -> None:
    """Example domains are not looked up in public DNS, and a server that does not answer is
    a warning (it says nothing about the records), so neither turns a good setup into
    errors."""
    example = by_name(run_checks(good_settings(smtp_server), smtp=False, spamassassin=False))
    assert example["SPF"].status == "warn" and "reserved example domain" in example["SPF"].detail
    assert example["DMARC"].status == "warn"
    silent = good_settings(
        smtp_server,
        dns_nameserver=f"127.0.0.1:{free_port()}",
        dns_timeout=0.5,
        bounce_address="bounces@bounce.news.example.org",
    )
    checks = by_name(run_checks(silent, smtp=False, spamassassin=False))
    for name in ("SPF", "DMARC", "Bounce domain MX"):
        assert checks[name].status == "warn" and "could not read" in checks[name].detail


def test_an_http_base_url_on_a_public_host_fails(smtp_server: SMTPServer) -> None:
    """Without https there is no one-click unsubscribe (RFC 8058): an error, not a hint."""
    from digest.doctor import check_base_url

    check = check_base_url(good_settings(smtp_server, base_url="http://news.example.org"))
    assert check.status == "fail" and "one-click" in check.detail
    assert check_base_url(good_settings(smtp_server)).status == "ok"


def test_store_check(db_url: str, smtp_server: SMTPServer, tmp_path: Path) -> None:
    """Reachable with a current schema: ok; empty or missing: a warning; out of date or
    unreachable: an error saying what to do."""
    from sqlalchemy import text

    from digest.db import create_schema, make_engine
    from digest.doctor import check_store

    settings = good_settings(smtp_server, database_url=db_url)
    if db_url.startswith("sqlite"):
        assert check_store(settings).status == "warn"  # no file yet
    engine = make_engine(db_url)
    create_schema(engine)
    check = check_store(settings)
    assert check.status == "ok" and "schema current" in check.detail
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0001_initial'"))
    check = check_store(settings)
    assert check.status == "fail" and "digest db upgrade" in check.detail
    engine.dispose()
    down = f"postgresql://digest:hunter2@127.0.0.1:{free_port()}/digest"
    check = check_store(good_settings(smtp_server, database_url=down))
    assert check.status == "fail" and "not reachable" in check.detail
    assert "hunter2" not in check.detail
    assert by_name(run_checks(settings, smtp=False, spamassassin=False, dns=False))["Store"]
