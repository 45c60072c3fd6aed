"""Settings layers: defaults < TOML < DIGEST_* env < overrides; secrets only from env."""

from __future__ import annotations

from pathlib import Path

import pytest

from digest import resources
from digest.settings import SettingsError, load_settings


def test_layers_in_order(tmp_path: Path) -> None:
    config = tmp_path / "digest.toml"
    config.write_text(
        'site_name = "From file"\nmax_items = 7\n[smtp]\nhost = "mail.internal"\nport = 587\n'
    )
    s = load_settings(config, env={"DIGEST_MAX_ITEMS": "9", "DIGEST_FROM": "X <x@example.net>"})
    assert s.site_name == "From file"
    assert s.max_items == 9  # env beats file
    assert (s.smtp_host, s.smtp_port) == ("mail.internal", 587)
    assert s.from_address == "X <x@example.net>" and s.from_domain == "example.net"
    s = load_settings(config, env={"DIGEST_MAX_ITEMS": "9"}, overrides={"max_items": 3})
    assert s.max_items == 3


def test_config_path_from_env(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('base_url = "https://news.example.org"\n')
    assert load_settings(env={"DIGEST_CONFIG": str(config)}).base_url == "https://news.example.org"


def test_secret_in_file_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('secret_key = "oops"\n')
    with pytest.raises(SettingsError, match="DIGEST_SECRET_KEY"):
        load_settings(config, env={})
    config.write_text('[smtp]\npassword = "oops"\n')
    with pytest.raises(SettingsError, match="DIGEST_SMTP_PASSWORD"):
        load_settings(config, env={})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("max_items = 'many'", "max_items"),
        ("nonsense = 1", "unknown setting 'nonsense'"),
        ("[smtp]\nhots = 'x'", r"unknown setting 'hots' in \[smtp\]$"),
        ("[smtpx]\nhost = 'x'", r"unknown table \[smtpx\] \(holding 'host'\)$"),
        ("[smtp.tls]\nverify = 1", r"unknown table \[smtp\.tls\] \(holding 'verify'\)$"),
        ("[smtp]\nsecurity = 'ssl'", "smtp_security"),
        ("max_items = ", "invalid TOML"),
    ],
)
def test_bad_config_names_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text)
    with pytest.raises(SettingsError, match=message):
        load_settings(config, env={})


def test_shipped_config_loads_and_matches_defaults() -> None:
    shipped = load_settings(resources.path("config/digest.toml"), env={})
    defaults = load_settings(env={})
    assert shipped == defaults
    assert load_settings(resources.path("config/local.toml"), env={}).smtp_port == 8025


def test_templates_dir_must_be_a_folder(tmp_path: Path) -> None:
    assert load_settings(env={}).templates_dir == ""  # the built-in templates
    assert load_settings(env={"DIGEST_TEMPLATES_DIR": str(tmp_path)}).templates_dir == str(tmp_path)
    with pytest.raises(SettingsError, match=f"templates_dir: no such folder: {tmp_path}/nope"):
        load_settings(env={"DIGEST_TEMPLATES_DIR": str(tmp_path / "nope")})


def test_max_lateness_as_a_duration(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('max_lateness = "6h"\n')
    assert load_settings(config, env={}).max_lateness_hours == 6.0
    assert load_settings(env={"DIGEST_MAX_LATENESS": "90m"}).max_lateness_hours == 1.5
    config.write_text('max_lateness = "soon"\n')
    with pytest.raises(SettingsError, match="max_lateness"):
        load_settings(config, env={})


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("DIGEST_TICK_SECONDS", "-7", "tick_seconds must be above zero"),
        ("DIGEST_INGEST_INTERVAL_MINUTES", "0", "ingest_interval_minutes must be above zero"),
        ("DIGEST_CLAIM_SIZE", "0", "claim_size must be above zero"),
        ("DIGEST_LEASE_SECONDS", "-1", "lease_seconds must be above zero"),
        ("DIGEST_POLL_SECONDS", "nan", "poll_seconds must be above zero"),
        ("DIGEST_RATE_PER_SECOND", "-1", "rate_per_second must be zero or more"),
    ],
)
def test_intervals_and_sizes_must_be_above_zero(key: str, value: str, message: str) -> None:
    """A zero or negative tick made the scheduler spin and grow without bound."""
    with pytest.raises(SettingsError, match=message):
        load_settings(env={key: value})
    assert load_settings(env={"DIGEST_RATE_PER_SECOND": "0"}).rate_per_second == 0  # off


def test_service_flags_refuse_zero_and_negative_values() -> None:
    from click.testing import CliRunner

    from digest.cli import main

    for args in (["scheduler", "--tick", "-7"], ["worker", "--once", "--pool-size", "0"]):
        result = CliRunner().invoke(main, args, env={"DIGEST_SECRET_KEY": "x" * 32})
        assert result.exit_code == 2 and "is not in the range" in result.output


def test_an_unreachable_store_is_one_line_not_a_traceback() -> None:
    import subprocess
    import sys

    from tests.conftest import free_port

    env = {
        "PATH": "/usr/bin:/bin",
        "DIGEST_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/nothing",
        "DIGEST_SECRET_KEY": "x" * 32,
    }
    for args in (["status"], ["worker", "--once"], ["run", "--dry-run"]):
        done = subprocess.run(
            [sys.executable, "-m", "digest", *args], env=env, capture_output=True, text=True
        )
        assert done.returncode == 1, done.stderr
        assert "Error: the store is not reachable: " in done.stderr
        assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) <= 2


def test_feedback_settings(tmp_path: Path) -> None:
    s = load_settings(
        env={
            "DIGEST_BOUNCE_ADDRESS": "bounces@bounce.example.org",
            "DIGEST_COMPLAINT_RATE_LIMIT": "0.5%",
            "DIGEST_IMAP_PASSWORD": "from-env",
        }
    )
    assert s.complaint_rate_limit == pytest.approx(0.005)
    assert s.effective_complaint_address == "bounces@bounce.example.org"  # the default
    assert s.imap_password == "from-env"
    for text, message in (
        ('bounce_address = "Bounces <b@x.example.org>"', "plain address"),
        ('bounce_address = "bounces+x@x.example.org"', "plain address"),
        ('bounce_address = "nobody"', "not an address"),
        ("complaint_rate_limit = 3", "at most 1"),
        ("soft_bounce_limit = 0", "above zero"),
        ('[imap]\nsecurity = "none"', "imap_security"),
        ('[imap]\npassword = "oops"', "DIGEST_IMAP_PASSWORD"),
    ):
        config = tmp_path / "c.toml"
        config.write_text(text)
        with pytest.raises(SettingsError, match=message):
            load_settings(config, env={})
    for secret in ("DIGEST_MAILGUN_SIGNING_KEY", "DIGEST_POSTMARK_WEBHOOK_PASSWORD"):
        key = secret[len("DIGEST_") :].lower()
        config = tmp_path / "c.toml"
        config.write_text(f'{key} = "oops"')
        with pytest.raises(SettingsError, match=secret):
            load_settings(config, env={})


@pytest.mark.parametrize(
    "args",
    [
        ["run", "--now", "9999-12-31T23:59:59Z"],
        ["run", "--now", "0001-01-01T00:00:00Z"],
        ["plan", "--dry-run", "--now", "9999-12-31T23:59:59Z"],
        ["articles", "import", "nothing.json", "--now", "0001-01-01T00:00:00Z"],
        ["run", "--now", "not-a-time"],
    ],
)
def test_an_out_of_range_now_is_one_line_and_exit_2(args: list[str], tmp_path: Path) -> None:
    """Date arithmetic on year 1 or 9999 overflowed into a traceback (exit 1)."""
    from click.testing import CliRunner

    from digest.cli import main

    env = {"DIGEST_SECRET_KEY": "x" * 32, "DIGEST_DATABASE_URL": f"sqlite:///{tmp_path}/d.db"}
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and result.output.startswith("Error: ")
    assert "--now" in result.output


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("DIGEST_MAX_AGE_DAYS", "800000", "max_age_days must be at most 36525"),
        ("DIGEST_LEASE_SECONDS", "99999999999", "lease_seconds must be at most"),
        ("DIGEST_MAX_ATTEMPTS", "1000000", "max_attempts must be at most 100"),
        ("DIGEST_RETRY_BASE_SECONDS", "99999999999", "retry_base_seconds must be at most"),
        ("DIGEST_MAX_LATENESS_HOURS", "1e12", "max_lateness_hours must be at most"),
    ],
)
def test_settings_too_large_for_date_arithmetic_are_one_line_and_exit_2(
    key: str, value: str, message: str, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from digest.cli import main

    with pytest.raises(SettingsError, match=message):
        load_settings(env={key: value})
    env = {
        "DIGEST_SECRET_KEY": "x" * 32,
        "DIGEST_DATABASE_URL": f"sqlite:///{tmp_path}/d.db",
        key: value,
    }
    result = CliRunner().invoke(main, ["run"], env=env)
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and message in result.output
    assert load_settings(env={"DIGEST_MAX_AGE_DAYS": "36500"}).max_age_days == 36500  # README


def test_list_and_boolean_settings(tmp_path: Path) -> None:
    config = tmp_path / "digest.toml"
    config.write_text('topics = ["Space", "Mind, Brain"]\nallow_private_feed_hosts = true\n')
    settings = load_settings(config, env={})
    assert settings.topics == ("Space", "Mind, Brain")
    assert settings.allow_private_feed_hosts is True
    env = {"DIGEST_TOPICS": "Space; Mind, Brain ;", "DIGEST_ALLOW_PRIVATE_FEED_HOSTS": "no"}
    settings = load_settings(config, env=env)
    assert settings.topics == ("Space", "Mind, Brain")
    assert settings.allow_private_feed_hosts is False
    with pytest.raises(SettingsError, match="allow_private_feed_hosts must be true or false"):
        load_settings(env={"DIGEST_ALLOW_PRIVATE_FEED_HOSTS": "maybe"})
    config.write_text("topics = [1, 2]\n")
    with pytest.raises(SettingsError, match="topics must be a list of strings"):
        load_settings(config, env={})


def test_email_settings_summary_words_postal_address_reply_to() -> None:
    from digest.settings import SettingsError, load_settings

    defaults = load_settings(env={})
    assert defaults.summary_words == 40 and defaults.postal_address == ""
    assert defaults.reply_to == "" and defaults.view_link_days == 365
    env = {
        "DIGEST_SUMMARY_WORDS": "0",
        "DIGEST_POSTAL_ADDRESS": "1 Main Street, Springfield",
        "DIGEST_REPLY_TO": "Editors <editors@news.example.org>",
    }
    s = load_settings(env=env)
    assert (s.summary_words, s.postal_address) == (0, "1 Main Street, Springfield")
    assert s.reply_to == "Editors <editors@news.example.org>"
    with pytest.raises(SettingsError, match="summary_words"):
        load_settings(env={"DIGEST_SUMMARY_WORDS": "-1"})
    with pytest.raises(SettingsError, match="reply_to"):
        load_settings(env={"DIGEST_REPLY_TO": "not an address"})


@pytest.mark.parametrize(
    "value",
    ["@news.example.org", "a b@news.example.org", "ed@news.example.org, desk@news.example.org",
     "Desk <josé@news.example.org>", "ed@news.example.org\r\nBcc: x@y.z", "Desk <>"],
)  # fmt: skip
def test_a_reply_to_every_message_would_fail_on_is_refused_at_start(value: str) -> None:
    """Settings and the message composer ask the same question, so a reply_to (or a From
    address) the composer cannot write (which would fail every delivery) never gets past
    loading the settings."""
    from digest.compose import UnmailableAddress, mailbox
    from digest.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match="reply_to"):
        load_settings(env={"DIGEST_REPLY_TO": value})
    with pytest.raises(SettingsError, match="from_address"):
        load_settings(env={"DIGEST_FROM": value})
    with pytest.raises(UnmailableAddress):
        mailbox(value, "reply_to")


@pytest.mark.parametrize(
    "value",
    ["ed@news.example.org", "Editors <ed@news.example.org>", '"Smith, J" <j@news.example.org>'],
)
def test_a_reply_to_the_composer_can_write_is_taken(value: str) -> None:
    from digest.settings import load_settings

    assert load_settings(env={"DIGEST_REPLY_TO": value}).reply_to == value


# ---------------------------------------------------------------- mistakes, named with their source


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ('[[source]]\nurl = "https://example.org/feed"', "unknown table [[source]]"),
        ("max_items = [1, 2]", "max_items must be a whole number, got a list"),
        ("max_items = 2.5", "max_items must be a whole number, got 2.5"),
        ('[smtp]\nhost = ["a", "b"]', "smtp_host must be a string, got a list"),
        ('weekly_day = "someday"', "weekly_day must be one of monday"),
        (
            'database_url = "postgresql://digest:hunter2@db.internal/digest"',
            "database_url holds a password",
        ),
        ('database_url = "mysql://db.internal/digest"', "the driver 'mysql' is not supported"),
        ('database_url = "postgresql+asyncpg://db/x"', "use postgresql:// (psycopg 3)"),
    ],
)
def test_file_mistakes_name_the_key_and_the_file(tmp_path: Path, text: str, line: str) -> None:
    config = tmp_path / "digest.toml"
    config.write_text(text + "\n")
    with pytest.raises(SettingsError) as caught:
        load_settings(config, env={})
    message = str(caught.value)
    assert message.startswith(f"{config}: ") and line in message
    assert "\n" not in message and "hunter2" not in message


@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({"DIGEST_MAX_ITEM": "3"}, "DIGEST_MAX_ITEM: unknown setting 'max_item'"),
        ({"DIGEST_MAX_ITEMS": "2.5"}, "DIGEST_MAX_ITEMS: max_items must be a whole number"),
        ({"DIGEST_WEEKLY_DAY": "Fri"}, "DIGEST_WEEKLY_DAY: weekly_day must be one of"),
        ({"DIGEST_LOG_FORMAT": "xml"}, "DIGEST_LOG_FORMAT: log_format must be text or json"),
        ({"DIGEST_DATABASE_URL": "oracle://x/y"}, "DIGEST_DATABASE_URL: database_url: the driver"),
    ],
)
def test_environment_mistakes_name_the_variable(env: dict[str, str], line: str) -> None:
    with pytest.raises(SettingsError, match=line.replace("(", r"\(")):
        load_settings(env=env)


def test_weekly_day_in_any_case_and_the_drivers_that_work(tmp_path: Path) -> None:
    config = tmp_path / "digest.toml"
    config.write_text('weekly_day = "FRIDAY"\n')
    assert load_settings(config, env={}).weekly_day == "friday"
    assert load_settings(env={"DIGEST_WEEKLY_DAY": " Sunday "}).weekly_weekday == 6
    for url in ("postgres://db/x", "postgresql+psycopg2://db/x", "postgresql+psycopg://db/x"):
        assert load_settings(env={"DIGEST_DATABASE_URL": url}).database_url == url
    # the password of a URL from the environment is fine there
    url = "postgresql://digest:hunter2@db/x"
    assert load_settings(env={"DIGEST_DATABASE_URL": url}).database_url == url


def test_the_suites_own_variables_are_not_settings() -> None:
    env = {"DIGEST_TEST_POSTGRES_URL": "postgresql://x/y", "DIGEST_REGENERATE_GOLDEN": "1"}
    assert load_settings(env=env) == load_settings(env={})


def test_origins_and_shown_values(tmp_path: Path) -> None:
    from digest.settings import origin, setting_names, shown_value

    config = tmp_path / "digest.toml"
    config.write_text('site_name = "Weekly Science"\nmax_items = 7\n')
    env = {
        "DIGEST_MAX_ITEMS": "9",
        "DIGEST_SMTP_PASSWORD": "hunter2",
        "DIGEST_DATABASE_URL": "postgresql://digest:hunter2@db/x",
    }
    s = load_settings(config, env=env, overrides={"base_url": "https://x.example.org"})
    assert origin(s, "site_name") == f"file {config}"
    assert origin(s, "max_items") == "environment DIGEST_MAX_ITEMS"
    assert origin(s, "base_url") == "flag"
    assert origin(s, "tick_seconds") == "default"
    assert shown_value(s, "smtp_password") == "********"
    assert shown_value(s, "secret_key") == ""
    assert shown_value(s, "database_url") == "postgresql://digest:***@db/x"
    assert "sources" not in setting_names() and "origins" not in setting_names()
