"""Settings: defaults < config TOML < ``DIGEST_*`` environment < explicit overrides.

There is no global instance: the CLI builds one ``Settings`` and passes it down, so tests can
build their own without touching the process environment.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from digest.topics import topic_length_problem

#: Keys that may only come from the environment, never from a file that could be committed.
SECRET_KEYS = frozenset(
    {
        "secret_key",
        "smtp_password",
        "editor_password",
        "dkim_private_key",
        "imap_password",
        "mailgun_signing_key",
        "postmark_webhook_password",
        "metrics_token",
    }
)

#: Environment names that do not follow the plain ``DIGEST_<KEY>`` rule.
ENV_ALIASES = {"DIGEST_FROM": "from_address", "DIGEST_MAX_LATENESS": "max_lateness"}

#: Friendlier names accepted in files and the environment, with their converters.
KEY_ALIASES = {"max_lateness": "max_lateness_hours"}

#: ``DIGEST_*`` names that are not settings: the config file's path, and the test suite's and
#: tools' own switches. Any other unknown ``DIGEST_*`` variable is a typo and refused.
NOT_SETTINGS = frozenset(
    {"DIGEST_CONFIG", "DIGEST_REGENERATE_GOLDEN", "DIGEST_SCREENSHOTS", "DIGEST_DOIUSE_EMAIL"}
)
NOT_SETTINGS_PREFIX = "DIGEST_TEST_"

#: Tables of arrays the file may hold besides the settings: ``[[sources]]`` (the scheduler's).
TABLE_ARRAYS = frozenset({"sources"})

#: Database drivers the store runs on: the URL's scheme -> what to use instead, when refused.
SUPPORTED_DRIVERS = ("sqlite", "sqlite+pysqlite", "postgresql", "postgres",
                     "postgresql+psycopg", "postgresql+psycopg2")  # fmt: skip


def parse_hours(value: object) -> float:
    """A duration in hours: a number, or a string like "6h", "90m", "1d", "45s"."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip().lower()
    units = {"s": 1 / 3600, "m": 1 / 60, "h": 1.0, "d": 24.0}
    if text and text[-1] in units:
        return float(text[:-1]) * units[text[-1]]
    return float(text)


WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class SettingsError(ValueError):
    """A setting is missing, malformed or in the wrong place; the message names it."""


#: Settings that must be above zero: intervals, sizes, leases, timeouts, limits of work.
_POSITIVE = (
    "tick_seconds", "ingest_interval_minutes", "scheduler_lease_seconds", "lease_seconds",
    "poll_seconds", "smtp_timeout", "batch_size", "claim_size", "smtp_pool_size",
    "max_attempts", "retry_base_seconds", "max_import_bytes", "max_age_days",
    "preferences_link_days", "confirm_link_days", "editor_session_hours", "html_size_budget",
    "subscribe_rate_window_seconds", "pause_seconds", "inbound_max_bytes", "imap_port",
    "dns_port", "dns_timeout", "soft_bounce_limit", "soft_bounce_days", "complaint_window",
    "webhook_tolerance_seconds", "inbound_timeout_seconds", "bounce_rate_min_deliveries",
    "max_topics_per_member", "web_request_timeout_seconds", "view_link_days",
    "editor_lockout_minutes", "click_flush_seconds", "click_scanner_seconds",
    "click_scanner_links", "max_upload_bytes",
    "heartbeat_seconds",
)  # fmt: skip
#: Settings where zero means "no limit" or "off", but a negative value means nothing.
_NOT_NEGATIVE = (
    "rate_per_second", "rate_per_hour", "max_consecutive_errors", "max_lateness_hours",
    "subscribe_rate_limit", "complaint_rate_limit", "bounce_rate_limit", "bounce_poll_minutes",
    "inbound_rate_limit", "summary_words", "progress_log_seconds",
)  # fmt: skip


_DAY = 24 * 3600
#: Upper bounds: far past any sensible value, and low enough that the date arithmetic built
#: on them (look-backs, leases, backoff, link lifetimes) stays within the calendar.
_AT_MOST: dict[str, tuple[float, str]] = {
    "max_age_days": (36525, "100 years"),
    "preferences_link_days": (36525, "100 years"),
    "confirm_link_days": (3660, "10 years"),
    "max_lateness_hours": (24 * 366, "a year"),
    "editor_session_hours": (24 * 366, "a year"),
    "tick_seconds": (_DAY, "a day"),
    "ingest_interval_minutes": (60 * 24 * 366, "a year"),
    "scheduler_lease_seconds": (_DAY, "a day"),
    "lease_seconds": (7 * _DAY, "a week"),
    "retry_base_seconds": (7 * _DAY, "a week"),
    "max_attempts": (100, "a hundred attempts"),
    "pause_seconds": (7 * _DAY, "a week"),
    "poll_seconds": (_DAY, "a day"),
    "smtp_timeout": (_DAY, "a day"),
    "subscribe_rate_window_seconds": (366 * _DAY, "a year"),
    "max_topics_per_member": (10_000, "ten thousand"),
    "web_request_timeout_seconds": (3600, "an hour"),
    "editor_lockout_minutes": (7 * 24 * 60, "a week"),
    "click_flush_seconds": (3600, "an hour"),
    "click_scanner_seconds": (3600, "an hour"),
    "max_upload_bytes": (100 * 1024 * 1024, "100 MB"),
    "heartbeat_seconds": (3600, "an hour"),
    "progress_log_seconds": (_DAY, "a day"),
}


@dataclass(frozen=True)
class Settings:
    # store
    database_url: str = "sqlite:///data/digest.db"
    data_dir: str = "data"
    # content and links
    templates_dir: str = ""  # the operator's templates over the built-in ones; "": built-in
    site_name: str = "The Digest"
    base_url: str = "http://localhost:8000"
    from_address: str = "The Digest <digest@localhost>"
    reply_to: str = ""
    list_id: str = ""
    unsubscribe_mailto: str = ""
    secret_key: str = ""
    preferences_link_days: int = 90
    # topics: what the subscribe and preferences forms offer (empty: every topic that has an
    # article), and how many one member may follow
    topics: tuple[str, ...] = ()
    max_topics_per_member: int = 50
    view_link_days: int = 365  # how long a digest's "View in browser" link keeps working
    # selection and schedule
    max_items: int = 20
    max_age_days: int = 30
    weekly_day: str = "monday"
    max_lateness_hours: float = 0.0
    # sending
    transport: str = "smtp"  # "smtp" or "outbox"
    outbox_dir: str = "data/outbox"
    smtp_host: str = "localhost"
    smtp_port: int = 25
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_security: str = "none"  # none | starttls | tls
    smtp_timeout: float = 30.0
    batch_size: int = 500
    claim_size: int = 50
    smtp_pool_size: int = 3
    rate_per_second: float = 0.0
    rate_per_hour: int = 0
    max_consecutive_errors: int = 20
    pause_seconds: int = 60
    poll_seconds: float = 5.0
    # scheduler service
    tick_seconds: float = 60.0
    ingest_interval_minutes: float = 15.0
    scheduler_lease_seconds: float = 30.0
    lease_seconds: int = 300
    max_attempts: int = 5
    retry_base_seconds: int = 60
    # import limits
    max_import_bytes: int = 20 * 1024 * 1024
    allow_private_feed_hosts: bool = False  # feed URLs on loopback/private/link-local hosts
    editor_password: str = ""
    # deliverability: DKIM signing, HTML size budget, branding
    dkim_selector: str = ""  # empty: messages are not signed
    dkim_domain: str = ""  # empty: the From domain
    dkim_private_key_path: str = ""  # PEM file; or the PEM itself in DIGEST_DKIM_PRIVATE_KEY
    dkim_private_key: str = ""  # secret: environment only
    dkim_dns_txt: str = ""  # the selector's published TXT record, for `digest doctor`
    html_size_budget: int = 90_000  # HTML bytes; above it trailing articles become links
    summary_words: int = 40  # key points cut to this many words per article; 0 = in full
    brand_logo_url: str = ""
    brand_accent_color: str = "#0b57d0"
    postal_address: str = ""
    # web: `digest web`, subscribe rate limit, link and session lifetimes
    web_host: str = "127.0.0.1"
    web_port: int = 8000
    subscribe_rate_limit: int = 5  # subscribe requests per client address per window
    subscribe_rate_window_seconds: int = 3600
    confirm_link_days: int = 7
    editor_session_hours: int = 12
    editor_lockout_minutes: int = 15  # ten failed sign-ins a minute lock an account this long
    max_upload_bytes: int = 5 * 1024 * 1024  # article files uploaded on the newsroom pages
    # clicks: aggregate counts per article, edition and topic; never the reader unless asked
    track_member_clicks: bool = False  # true: click links name the member, who is stored
    track_text_links: bool = False  # true: the plain-text part's article links count too
    click_flush_seconds: float = 5.0  # clicks are counted in memory and written this often
    click_scanner_seconds: float = 10.0  # one address opening click_scanner_links different
    click_scanner_links: int = 3  # links of one edition within this window is a link scanner
    # what comes back: the return path, the receivers, the effects and the brake
    bounce_address: str = ""  # VERP base: bounces@bounce.example.org -> bounces+<token>@...
    complaint_address: str = ""  # where feedback loops send ARF reports; empty: bounce_address
    inbound_host: str = "127.0.0.1"  # `digest inbound` listens here (behind the MX)
    inbound_port: int = 2525
    inbound_max_bytes: int = 10 * 1024 * 1024  # larger messages are refused in the session
    inbound_rate_limit: int = 120  # messages per client address per minute; 0 = no limit
    inbound_timeout_seconds: float = 60.0  # an idle SMTP session is closed after this
    inbound_dir: str = "data/inbound"  # every message received is kept here as .eml
    soft_bounce_limit: int = 3  # soft bounces on this many editions ...
    soft_bounce_days: int = 30  # ... within this many days mark the member bounced
    complaint_window: int = 1000  # the brake looks at the last this many deliveries
    complaint_rate_limit: float = 0.003  # complaints per delivery above which sending pauses
    bounce_rate_limit: float = 0.05  # hard bounces per delivery above which sending pauses
    bounce_rate_min_deliveries: int = 100  # ... once the window holds at least this many
    imap_host: str = ""  # bounce mailbox read by `digest bounces poll`; empty: none
    imap_port: int = 993
    imap_security: str = "tls"  # tls (IMAPS) | starttls
    imap_username: str = ""
    imap_password: str = ""  # secret: environment only
    imap_folder: str = "INBOX"
    imap_processed_folder: str = "Processed"  # processed messages are moved here
    imap_ca_file: str = ""  # CA bundle to trust for the IMAP server; empty: the system's
    bounce_poll_minutes: float = 0.0  # the scheduler polls the mailbox this often; 0 = never
    webhook_tolerance_seconds: int = 300  # provider events signed longer ago are refused
    ses_topic_arn: str = ""  # the SNS topic whose SES events /webhooks/ses accepts
    sns_certificate_dir: str = "data/sns-certificates"  # fetched signing certificates, kept
    mailgun_signing_key: str = ""  # secret: environment only
    postmark_webhook_user: str = ""
    postmark_webhook_password: str = ""  # secret: environment only
    sendgrid_public_key: str = ""  # the Event Webhook's verification key (PEM or base64 DER)
    dns_nameserver: str = ""  # resolver(s) for `digest doctor`, "host" or "host:port"; empty:
    dns_port: int = 53  # the system's (/etc/resolv.conf)
    dns_timeout: float = 5.0
    # the web edge: which proxies' X-Forwarded-For/-Proto to believe (none by default), host
    # names served besides base_url's, how long a request's headers (then body) may take to
    # arrive, and where /metrics is served (a separate "host:port", or with a bearer token)
    forwarded_allow_ips: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    web_request_timeout_seconds: float = 15.0
    metrics_listen: str = ""
    metrics_token: str = ""  # secret: environment only (DIGEST_METRICS_TOKEN)
    # operators: log lines as text or one JSON object per line; how often a long send logs
    # its progress when stderr is not a terminal (0: never); how often each scheduler and
    # worker writes its heartbeat row (state, last error, what it sends now)
    log_format: str = "text"
    progress_log_seconds: float = 30.0
    heartbeat_seconds: float = 15.0
    # where the values came from: the layers, and each value set by one of them ->
    # "file <path>", "environment DIGEST_X" or "flag"; unset keys are defaults
    sources: tuple[str, ...] = field(default=(), compare=False)
    origins: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "weekly_day", self.weekly_day.strip().lower())
        database_url_problem(self.database_url)
        if self.log_format not in ("text", "json"):
            raise SettingsError(f"log_format must be text or json, not {self.log_format!r}")
        if self.smtp_security not in ("none", "starttls", "tls"):
            raise SettingsError(
                f"smtp_security must be none, starttls or tls, not {self.smtp_security!r}"
            )
        if self.transport not in ("smtp", "outbox"):
            raise SettingsError(f"transport must be smtp or outbox, not {self.transport!r}")
        if self.imap_security not in ("tls", "starttls"):
            raise SettingsError(
                f"imap_security must be tls or starttls, not {self.imap_security!r}"
            )
        for key in ("complaint_rate_limit", "bounce_rate_limit"):
            if getattr(self, key) > 1:
                raise SettingsError(f"{key} is a share of deliveries (0.003 or 0.3%), at most 1")
        for key in ("bounce_address", "complaint_address"):
            problem = _address_problem(getattr(self, key))
            if problem:
                raise SettingsError(f"{key}: {problem}")
        if self.weekly_day not in WEEKDAYS:
            raise SettingsError(f"weekly_day must be one of {', '.join(WEEKDAYS)}")
        if self.templates_dir.strip() and not Path(self.templates_dir).is_dir():
            raise SettingsError(f"templates_dir: no such folder: {self.templates_dir}")
        if self.max_items < 1:
            raise SettingsError("max_items must be at least 1")
        for key in _POSITIVE:
            value = getattr(self, key)
            if not (math.isfinite(value) and value > 0):  # a zero or negative tick spins
                raise SettingsError(f"{key} must be above zero, not {value!r}")
        for key in _NOT_NEGATIVE:
            value = getattr(self, key)
            if not (math.isfinite(value) and value >= 0):
                raise SettingsError(f"{key} must be zero or more, not {value!r}")
        for name in self.topics:
            problem = topic_length_problem(name)
            if problem:
                raise SettingsError(f"topics: {problem}")
        for pattern in self.allowed_hosts:
            if "*" in pattern[1:] or (pattern.startswith("*") and not pattern.startswith("*.")):
                raise SettingsError(
                    f"allowed_hosts: {pattern!r} is not a host name or a pattern like "
                    "'*.example.org'"
                )
        if self.metrics_listen:
            listen_address(self.metrics_listen)
        for key, (most, words) in _AT_MOST.items():
            value = getattr(self, key)
            if value > most:
                raise SettingsError(f"{key} must be at most {most:g} ({words}), not {value!r}")
        from digest.compose import UnmailableAddress, mailbox

        for key in ("from_address", "reply_to"):  # every message carries them: checked once
            value = getattr(self, key)
            if key == "reply_to" and not value.strip():
                continue
            if any(c in value for c in "\r\n"):
                raise SettingsError(f"{key} {value!r} has a line break in it")
            try:
                mailbox(value, key)
            except UnmailableAddress as exc:
                raise SettingsError(f"{exc} (give one address, or Name <address>)") from None

    @property
    def weekly_weekday(self) -> int:
        return WEEKDAYS.index(self.weekly_day)

    @functools.cached_property  # read for every message sent
    def from_domain(self) -> str:
        from email.utils import parseaddr

        addr = parseaddr(self.from_address)[1]
        return addr.rpartition("@")[2] or "localhost"

    @functools.cached_property  # read for every message sent
    def envelope_sender(self) -> str:
        """The SMTP envelope sender (MAIL FROM) of mail that is no delivery (notices, test
        copies): the bounce address when one is set, so their bounces reach the bounce domain
        too, else the From address. Digests get a VERP address of their own (``Sender``)."""
        from email.utils import parseaddr

        return self.bounce_address or parseaddr(self.from_address)[1]

    @functools.cached_property  # read for every message sent
    def effective_list_id(self) -> str:
        if self.list_id:
            return self.list_id
        return f"{self.site_name} <digest.{self.from_domain}>"

    @property
    def effective_complaint_address(self) -> str:
        """Where ARF complaints go: ``complaint_address``, else the bounce address."""
        return self.complaint_address or self.bounce_address

    @functools.cached_property  # read for every message sent
    def effective_unsubscribe_mailto(self) -> str:
        if self.unsubscribe_mailto:
            return self.unsubscribe_mailto
        return f"unsubscribe@{self.from_domain}"

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def _address_problem(value: str) -> str | None:
    """Why ``value`` cannot be an envelope address we receive at (None: it can, or is empty)."""
    if not value:
        return None
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain or "." not in domain:
        return f"{value!r} is not an address like bounces@bounce.example.org"
    if "+" in local or any(c.isspace() or c in '<>"(),;:[]\\' for c in value):
        return f"{value!r}: use a plain address (no '+', no display name)"
    return None


def database_url_problem(url: str) -> None:
    """SettingsError (one line naming the driver to use) unless ``url`` is a store URL we run
    on: SQLite, or PostgreSQL through psycopg 3 (``postgres://`` and ``postgresql+psycopg2://``
    mean the same server and are read as such)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise SettingsError(
            f"database_url is not a database URL: {mask_url(url)!r} "
            "(sqlite:///path/digest.db or postgresql://user@host/db)"
        ) from None
    if parsed.drivername not in SUPPORTED_DRIVERS:
        backend = parsed.get_backend_name()
        use = {"postgresql": "postgresql:// (psycopg 3)", "sqlite": "sqlite:///path"}.get(
            backend, "sqlite:/// or postgresql://"
        )
        raise SettingsError(
            f"database_url: the driver {parsed.drivername!r} is not supported; use {use}"
        )


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


def url_has_password(url: str) -> bool:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return bool(make_url(url).password)
    except (ArgumentError, ValueError):
        return False


def listen_address(value: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:9464`` for IPv6) as a pair; SettingsError if it is not one."""
    host, sep, port = value.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SettingsError(
            f"metrics_listen must be host:port, such as 127.0.0.1:9464, not {value!r}"
        )
    return host, int(port)


_FIELD_TYPES = {f.name: f.type for f in fields(Settings) if f.name not in ("sources", "origins")}
#: List settings, and what separates their items in an environment variable (or a string
#: in the file): topic names may hold commas, so they are separated as in the member CSV.
_LIST_SEPARATORS = {
    name: ";" if name == "topics" else ","
    for name, kind in _FIELD_TYPES.items()
    if kind == "tuple[str, ...]"
}


def _coerce(key: str, value: Any, origin: str) -> Any:
    kind = _FIELD_TYPES[key]
    try:
        if kind == "bool":
            if isinstance(value, bool):
                return value
            words = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
            if not isinstance(value, str) or value.strip().lower() not in words:
                raise ValueError
            return words[value.strip().lower()]
        if kind == "int":
            if isinstance(value, bool | float | list | dict):  # 2.5 is not silently 2
                raise ValueError
            return int(value)
        if kind == "float":
            if isinstance(value, bool | list | dict):
                raise ValueError
            if isinstance(value, str) and value.strip().endswith("%"):  # "0.3%" -> 0.003
                return float(value.strip()[:-1]) / 100
            return float(value)
        if kind == "str":
            if not isinstance(value, str):
                raise ValueError
            return value
        if kind == "tuple[str, ...]":
            if isinstance(value, str):
                value = value.split(_LIST_SEPARATORS[key])
            if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                raise ValueError
            return tuple(v.strip() for v in value if v.strip())
    except (TypeError, ValueError):
        words = {
            "tuple[str, ...]": "a list of strings",
            "bool": "true or false",
            "int": "a whole number",
            "float": "a number",
            "str": "a string",
        }.get(kind, kind)
        shown = "a list" if isinstance(value, list | tuple) else repr(value)
        raise SettingsError(f"{origin}: {key} must be {words}, got {shown}") from None
    return value


def _alias_value(key: str, value: object, origin: str) -> float:
    try:
        return parse_hours(value)
    except ValueError:
        raise SettingsError(f"{origin}: {key} must be a duration like 6h or 90m") from None


def _flatten(table: Mapping[str, Any], origin: str, prefix: str = "") -> dict[str, Any]:
    """``[smtp] host`` -> ``smtp_host``; ``[[sources]]`` is left to the scheduler; any other
    array of tables (``[[source]]``) is refused, as is a table inside an array."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, origin, prefix=f"{name}_"))
        elif not prefix and key in TABLE_ARRAYS:
            continue  # [[sources]] is read by the scheduler, not a scalar setting
        elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            known = ", ".join(f"[[{t}]]" for t in sorted(TABLE_ARRAYS))
            raise SettingsError(f"{origin}: unknown table [[{name}]] (the file may hold {known})")
        else:
            out[name] = value  # a list for a scalar setting is refused by _coerce
    return out


def _trail(table: Mapping[str, Any], flat: str) -> list[str]:
    """The keys of ``table`` that ``_flatten`` joined into ``flat`` (``[smtp] host`` ->
    ``["smtp", "host"]``), so an error can name the key as the file wrote it."""
    for key, value in table.items():
        if key == flat:
            return [key]
        if isinstance(value, Mapping) and flat.startswith(f"{key}_"):
            inner = _trail(value, flat[len(key) + 1 :])
            if inner:
                return [key, *inner]
    return [flat]


def _unknown_in_file(table: Mapping[str, Any], flat: str, origin: str) -> SettingsError:
    """An unknown key, named as written: ``unknown setting 'hots' in [smtp]`` rather than
    the joined ``smtp_hots`` the file never says, and a table no setting lives in as such."""
    *tables, key = _trail(table, flat)
    if not tables:
        return SettingsError(f"{origin}: unknown setting {key!r}")
    where = ".".join(tables)
    if not any(name.startswith(f"{'_'.join(tables)}_") for name in _FIELD_TYPES):
        return SettingsError(f"{origin}: unknown table [{where}] (holding {key!r})")
    return SettingsError(f"{origin}: unknown setting {key!r} in [{where}]")


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise SettingsError(f"{path}: config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: invalid TOML: {exc}") from None


def load_settings(
    config_path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build settings from the layers; the config file is ``config_path`` or ``$DIGEST_CONFIG``."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    sources: list[str] = ["defaults"]
    path = config_path or env.get("DIGEST_CONFIG")
    if path:
        path = Path(path)
        document = read_toml(path)
        raw = _flatten(document, str(path))
        for key, value in raw.items():
            if key in KEY_ALIASES:
                key, value = KEY_ALIASES[key], _alias_value(key, value, str(path))
            if key not in _FIELD_TYPES:
                raise _unknown_in_file(document, key, str(path))
            if key in SECRET_KEYS and value:
                raise SettingsError(
                    f"{path}: {key} is a secret; set DIGEST_{key.upper()} in the environment"
                )
            if key == "database_url" and isinstance(value, str) and url_has_password(value):
                raise SettingsError(
                    f"{path}: database_url holds a password, a secret; set "
                    "DIGEST_DATABASE_URL in the environment (or use ~/.pgpass)"
                )
            values[key] = _coerce(key, value, str(path))
            origins[key] = f"file {path}"
        sources.append(str(path))
    for name, value in sorted(env.items()):
        if not name.startswith("DIGEST_") or name in NOT_SETTINGS:
            continue
        if name.startswith(NOT_SETTINGS_PREFIX):
            continue
        key = ENV_ALIASES.get(name, name[len("DIGEST_") :].lower())
        if key in KEY_ALIASES:
            key, value = KEY_ALIASES[key], _alias_value(key, value, name)
        if key not in _FIELD_TYPES:
            raise SettingsError(f"{name}: unknown setting {key!r} in the environment")
        values[key] = _coerce(key, value, name)
        origins[key] = f"environment {name}"
        sources.append(name)
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key not in _FIELD_TYPES:
            raise SettingsError(f"unknown setting {key!r}")
        values[key] = value
        origins[key] = "flag"
    try:
        return Settings(**values, sources=tuple(sources), origins=origins)
    except SettingsError as exc:
        raise SettingsError(_with_origin(str(exc), origins)) from None


def _with_origin(message: str, origins: Mapping[str, str]) -> str:
    """A validation message about a key, prefixed with where that key's value came from."""
    key = message.split(" ", 1)[0].rstrip(":")
    where = origins.get(key)
    if where is None:
        return message
    return f"{where.split(' ', 1)[-1] if where != 'flag' else 'flag'}: {message}"


def origin(settings: Settings, key: str) -> str:
    """Where ``key``'s value came from: default, file <path>, environment <NAME> or flag."""
    return settings.origins.get(key, "default")


def shown_value(settings: Settings, key: str) -> Any:
    """``key``'s value as ``digest config show`` prints it: secrets masked (set or not)."""
    value = getattr(settings, key)
    if key in SECRET_KEYS:
        return "********" if value else ""
    if key == "database_url":
        return mask_url(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def setting_names() -> list[str]:
    """Every setting's name, in the order the dataclass declares them."""
    return list(_FIELD_TYPES)


def config_sources(config_path: str | Path | None) -> list[dict[str, Any]]:
    """The ``[[sources]]`` tables of the config file (feeds or folders to ingest)."""
    if not config_path:
        return []
    return list(read_toml(Path(config_path)).get("sources", []))
