"""Reading inputs: files, folders and feed URLs to one validated batch.

Everything is parsed and validated before anything is written, so the caller can refuse a
whole import when one record is bad. Reads are bounded by ``max_bytes`` (a file or response
larger than that is refused, never loaded), and URL fetches by a per-read timeout and a
deadline for the whole response.

Feed URLs come from operators' configs and command lines, but the servers behind them choose
where redirects lead, and DNS chooses where a name points. So a fetch follows redirects only
to http(s), at most ``MAX_REDIRECTS``, and connects only to public addresses, checked on the
address actually connected to, after resolution, on every hop (``address_refusal``), unless
``allow_private_feed_hosts`` is set. Errors never quote what the remote side sent.
"""

from __future__ import annotations

import http
import http.client
import ipaddress
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urljoin, urlsplit

from digest import __version__
from digest.ingest.parse_feed import parse_feed_bytes
from digest.ingest.parse_json import decode_text, parse_json_text
from digest.ingest.parse_markdown import parse_markdown_text
from digest.ingest.records import ArticleRecord, ParseResult, RecordError

JSON_EXTS = frozenset({".json"})
JSONL_EXTS = frozenset({".jsonl", ".ndjson"})
MARKDOWN_EXTS = frozenset({".md", ".markdown"})
FEED_EXTS = frozenset({".xml", ".rss", ".atom", ".rdf", ".feed"})
SUPPORTED_EXTS = JSON_EXTS | JSONL_EXTS | MARKDOWN_EXTS | FEED_EXTS
FETCH_TIMEOUT = 30.0  # per socket operation (connect, each read)
FETCH_DEADLINE = 120.0  # the whole response, headers and body
FETCH_CHUNK = 64 * 1024
MAX_REDIRECTS = 5
_URL = re.compile(r"^https?://", re.IGNORECASE)


@dataclass
class ImportBatch:
    """The outcome of reading inputs: valid records, every error, and warnings."""

    records: list[ArticleRecord] = field(default_factory=list)
    errors: list[RecordError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    files: int = 0
    origins: list[tuple[str, str]] = field(default_factory=list)  # (file, record) per record

    def extend(self, result: ParseResult) -> None:
        self.records.extend(result.records)
        self.origins.extend(result.origins)
        self.errors.extend(result.errors)
        self.warnings.extend(result.warnings)

    def reject_duplicates(self) -> None:
        """Keep the first record of each URL and GUID; each later one becomes an error.

        Two records for one article in one file are a mistake in the input (which one should
        win?), so they are refused like any invalid record, naming both places, rather than one
        silently replacing the other. Across the files or feeds of one import a repeat is
        common (overlapping feeds): the first is kept, with a warning. Across imports a repeat
        is an ordinary update.
        """
        first_url: dict[str, tuple[str, str]] = {}
        first_guid: dict[str, tuple[str, str]] = {}
        kept: list[ArticleRecord] = []
        kept_origins: list[tuple[str, str]] = []
        for rec, origin in zip(self.records, self.origins, strict=True):
            if rec.url in first_url:
                name, value, first = "url", rec.url, first_url[rec.url]
            elif rec.guid and rec.guid in first_guid:
                name, value, first = "guid", rec.guid, first_guid[rec.guid]
            else:
                first_url[rec.url] = origin
                if rec.guid:
                    first_guid[rec.guid] = origin
                kept.append(rec)
                kept_origins.append(origin)
                continue
            file, record = origin
            if first[0] != file:  # overlapping feeds (a blog's and its category's) are fine
                self.warnings.append(
                    f"{file}: {record}: {name} {value} is also in {first[0]}: {first[1]}; "
                    "the first is kept"
                )
                continue
            self.errors.append(
                RecordError(
                    f"{value} is a duplicate of {first[1]}", file=file, record=record, field=name
                )
            )
        self.records, self.origins = kept, kept_origins


@dataclass(frozen=True)
class Source:
    """One input to read: a local file (``explicit`` if named on the command line) or a URL."""

    location: str
    path: Path | None = None
    explicit: bool = True


def expand_paths(paths: Iterable[str | Path]) -> tuple[list[Source], list[RecordError]]:
    """Files and URLs to read; folders are walked (sorted, hidden entries skipped)."""
    sources: list[Source] = []
    errors: list[RecordError] = []
    for item in paths:
        text = str(item)
        if isinstance(item, str) and _URL.match(text):
            sources.append(Source(text))
            continue
        path = Path(item)
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                rel = child.relative_to(path).parts
                if any(p.startswith(".") for p in rel):
                    continue
                if child.is_file() and child.suffix.lower() in SUPPORTED_EXTS:
                    sources.append(Source(str(child), child, explicit=False))
        elif path.is_file():
            sources.append(Source(text, path))
        elif path.exists():
            errors.append(RecordError("not a regular file", file=text))
        else:
            errors.append(RecordError("no such file or folder", file=text))
    return sources, errors


def _sniff(data: bytes) -> str:
    head = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if head in (b"{", b"["):
        return "json"
    if head == b"-":
        return "markdown"
    if head == b"<":
        return "feed"
    return ""


def parse_bytes(
    data: bytes,
    name: str,
    now: datetime,
    kind: str,
    headers: dict[str, str] | None = None,
) -> ParseResult:
    """Parse one input of ``kind`` (json, jsonl, markdown, feed or "" to sniff)."""
    kind = kind or _sniff(data)
    if kind in ("json", "jsonl"):
        text = decode_text(data, name)
        if isinstance(text, ParseResult):
            return text
        return parse_json_text(text, name, now, jsonlines=kind == "jsonl")
    if kind == "markdown":
        text = decode_text(data, name)
        if isinstance(text, ParseResult):
            return text
        return parse_markdown_text(text, name, now)
    if kind == "feed":
        return parse_feed_bytes(data, name, now, headers)
    return ParseResult.failed(name, "unsupported file type (expected JSON, Markdown or a feed)")


def kind_for(path: Path) -> str:
    ext = path.suffix.lower()
    if ext in JSON_EXTS:
        return "json"
    if ext in JSONL_EXTS:
        return "jsonl"
    if ext in MARKDOWN_EXTS:
        return "markdown"
    if ext in FEED_EXTS:
        return "feed"
    return ""


def read_file(source: Source, now: datetime, max_bytes: int) -> ParseResult:
    """Parse one local file, refusing it whole if it is larger than ``max_bytes``."""
    assert source.path is not None
    name = source.location
    try:
        size = source.path.stat().st_size
        if size > max_bytes:
            return ParseResult.failed(name, f"file too large ({size} bytes; limit {max_bytes})")
        with source.path.open("rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        return ParseResult.failed(name, f"cannot read: {exc.strerror or exc}")
    if len(data) > max_bytes:
        return ParseResult.failed(name, f"file too large (over {max_bytes} bytes)")
    return parse_bytes(data, name, now, kind_for(source.path))


class _Deadline:
    """A time limit for a whole fetch: when it passes, the watched sockets are shut down.

    The socket timeout bounds each read only, so a server trickling a byte every few seconds
    would hold an import (and the scheduler's ingest job) forever. Shutting the socket down
    ends a read blocked anywhere in the status line, headers or body.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.ends = time.monotonic() + seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._timer.cancel()

    def passed(self) -> bool:
        return self.expired or time.monotonic() >= self.ends

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            expired = self.expired
        if expired:
            _shutdown(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shutdown(sock)


def _shutdown(sock: socket.socket) -> None:
    # The plain socket method, so an SSL socket's state is not touched from this thread.
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass  # already closed


class FetchRefused(OSError):
    """A fetch this installation will not make: where it leads is not allowed."""


#: Cloud providers' instance metadata services: credentials for the asking.
_METADATA = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT: someone's own network


def address_refusal(address: str) -> str | None:
    """Why a feed may not be fetched from the IP ``address`` (None: it may).

    Public (globally routable) unicast addresses only. IPv6 forms that carry an IPv4
    address (mapped, NAT64, 6to4) are judged by the IPv4 address they carry.
    """
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(
        address.split("%", 1)[0]  # an IPv6 scope (fe80::1%eth0) names a local link anyway
    )
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip in _NAT64:
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        elif ip.sixtofour is not None:
            ip = ip.sixtofour
    if ip in _METADATA:
        kind = "a cloud metadata address"
    elif ip.is_loopback:
        kind = "a loopback address"
    elif ip.is_link_local:
        kind = "a link-local address"
    elif ip.is_unspecified:
        kind = "the unspecified address"
    elif ip.is_multicast:
        kind = "a multicast address"
    elif ip.is_private or ip in _SHARED:
        kind = "a private address"
    elif not ip.is_global:
        kind = "a reserved address"
    else:
        return None
    return f"{address} is {kind}"


def _guarded_connection(
    address: tuple[str, int],
    timeout: float | object = socket._GLOBAL_DEFAULT_TIMEOUT,  # type: ignore[attr-defined]
    source_address: tuple[str, int] | None = None,
    *,
    allow_private: bool = False,
) -> socket.socket:
    """``socket.create_connection`` that connects only to addresses ``address_refusal``
    allows: checked on the resolved address that is then connected to, so a name that
    resolves differently a moment later (DNS rebinding) cannot slip through."""
    host, port = address
    refusals: list[str] = []
    failure: OSError | None = None
    for family, kind, proto, _name, sockaddr in socket.getaddrinfo(
        host, port, 0, socket.SOCK_STREAM
    ):
        refusal = None if allow_private else address_refusal(str(sockaddr[0]))
        if refusal is not None:
            refusals.append(refusal)
            continue
        sock = socket.socket(family, kind, proto)
        try:
            if timeout is not socket._GLOBAL_DEFAULT_TIMEOUT:  # type: ignore[attr-defined]
                sock.settimeout(timeout)  # type: ignore[arg-type]
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            failure = exc
            sock.close()
    if failure is not None:
        raise failure
    if refusals:
        raise FetchRefused(
            f"refused to connect to {host}: {refusals[0]}; feeds are fetched from public "
            "addresses only (set allow_private_feed_hosts = true to fetch from your own network)"
        )
    raise OSError(f"{host} has no address")


class _HTTPConnection(http.client.HTTPConnection):
    def __init__(
        self, *args: Any, deadline: _Deadline, allow_private: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.deadline = deadline
        self._create_connection = partial(_guarded_connection, allow_private=allow_private)

    def connect(self) -> None:
        super().connect()
        assert self.sock is not None
        self.deadline.watch(self.sock)


class _HTTPSConnection(http.client.HTTPSConnection):
    def __init__(
        self, *args: Any, deadline: _Deadline, allow_private: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.deadline = deadline
        self._create_connection = partial(_guarded_connection, allow_private=allow_private)

    def connect(self) -> None:
        super().connect()  # the TLS handshake is bounded by the per-read timeout only
        assert self.sock is not None
        self.deadline.watch(self.sock)


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, deadline: _Deadline, allow_private: bool) -> None:
        super().__init__()
        self.deadline, self.allow_private = deadline, allow_private

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        connection = partial(
            _HTTPConnection, deadline=self.deadline, allow_private=self.allow_private
        )
        return self.do_open(connection, req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, deadline: _Deadline, allow_private: bool) -> None:
        super().__init__()
        self.deadline, self.allow_private = deadline, allow_private

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        connection = partial(
            _HTTPSConnection, deadline=self.deadline, allow_private=self.allow_private
        )
        return self.do_open(connection, req, context=self._context)


class _RedirectHandler(urllib.request.HTTPRedirectHandler):
    """Follows redirects to http(s) only, at most ``MAX_REDIRECTS`` in all (urllib alone
    follows ftp:// too, and up to ten)."""

    max_repeats = max_redirections = MAX_REDIRECTS + 1  # ours below is met first

    def http_error_302(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any
    ) -> Any:
        target = headers.get("location") or headers.get("uri")
        if target:
            newurl = urljoin(req.full_url, target)
            if urlsplit(newurl).scheme.lower() not in ("http", "https"):
                fp.close()
                raise FetchRefused(
                    f"redirect to {newurl[:200]} refused: only http and https are followed"
                )
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        hops = sum(getattr(req, "redirect_dict", {}).values())
        if hops >= MAX_REDIRECTS:
            fp.close()
            raise FetchRefused(f"more than {MAX_REDIRECTS} redirects")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _opener(limit: _Deadline, allow_private: bool) -> urllib.request.OpenerDirector:
    """http(s) only, guarded connections, no proxy from the environment (a proxy would
    connect on our behalf, past the address check)."""
    opener = urllib.request.OpenerDirector()
    for handler in (
        _HTTPHandler(limit, allow_private),
        _HTTPSHandler(limit, allow_private),
        _RedirectHandler(),
        urllib.request.UnknownHandler(),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener


def _status_words(code: int) -> str:
    """Our own words for a status code: a server's reason phrase is its text, not ours."""
    try:
        return f"HTTP {code} {http.HTTPStatus(code).phrase}"
    except ValueError:
        return f"HTTP {code}"


def fetch_url(
    url: str,
    now: datetime,
    max_bytes: int,
    timeout: float = FETCH_TIMEOUT,
    deadline: float | None = None,
    allow_private_feed_hosts: bool = False,
) -> ParseResult:
    """Fetch a feed (RSS, Atom or JSON Feed) with a timeout, a deadline and a size bound.

    ``timeout`` bounds each socket operation; ``deadline`` (default ``FETCH_DEADLINE``) the
    whole response, so a server that trickles bytes cannot hold the import. Only public
    addresses are connected to, on every redirect hop, unless ``allow_private_feed_hosts``.
    """
    seconds = FETCH_DEADLINE if deadline is None else deadline
    request = urllib.request.Request(
        url,
        headers={
            "User-Agent": f"digest/{__version__} (+feed import)",
            "Accept": "application/atom+xml, application/rss+xml, application/feed+json, "
            "application/json;q=0.9, application/xml;q=0.9, text/xml;q=0.8, */*;q=0.5",
        },
    )
    too_slow = f"fetch failed: no complete response within {seconds:g} s"
    chunks: list[bytes] = []
    size = 0
    with _Deadline(seconds) as limit:
        opener = _opener(limit, allow_private_feed_hosts)
        try:
            with opener.open(request, timeout=timeout) as response:
                headers = {k.lower(): v for k, v in response.headers.items()}
                while size <= max_bytes and not limit.passed():
                    # read1: return what has arrived, so the deadline is checked as it trickles
                    chunk = response.read1(min(FETCH_CHUNK, max_bytes + 1 - size))
                    if not chunk:
                        break
                    chunks.append(chunk)
                    size += len(chunk)
        except urllib.error.HTTPError as exc:
            exc.close()
            return ParseResult.failed(url, f"fetch failed: {_status_words(exc.code)}")
        except http.client.HTTPException as exc:
            # its message quotes what the server sent (a status line, an SMTP greeting)
            if limit.passed():
                return ParseResult.failed(url, too_slow)
            return ParseResult.failed(
                url, f"fetch failed: not an HTTP response ({type(exc).__name__})"
            )
        except (urllib.error.URLError, OSError, ValueError) as exc:
            if limit.passed():
                return ParseResult.failed(url, too_slow)
            reason = getattr(exc, "reason", None) or exc
            if isinstance(reason, http.client.HTTPException):
                reason = f"not an HTTP response ({type(reason).__name__})"
            return ParseResult.failed(url, f"fetch failed: {reason}")
        if limit.passed():  # a shut-down socket reads as an early end: never parse a cut-off body
            return ParseResult.failed(url, too_slow)
    if size > max_bytes:
        return ParseResult.failed(url, f"response too large (over {max_bytes} bytes)")
    data = b"".join(chunks)
    ctype = headers.get("content-type", "").lower()
    kind = "json" if "json" in ctype or _sniff(data) == "json" else "feed"
    return parse_bytes(data, url, now, kind, headers=headers)


def load_sources(
    sources: Sequence[Source],
    now: datetime,
    max_bytes: int,
    progress: Callable[[int], object] | None = None,
    allow_private_feed_hosts: bool = False,
) -> ImportBatch:
    """Read and validate every source; never raises for bad input.

    A record repeating the URL or GUID of an earlier one is an error (see
    :meth:`ImportBatch.reject_duplicates`); the first stays in ``records``.
    """
    batch = ImportBatch()
    for source in sources:
        try:
            if source.path is None:
                result = fetch_url(
                    source.location,
                    now,
                    max_bytes,
                    allow_private_feed_hosts=allow_private_feed_hosts,
                )
            else:
                result = read_file(source, now, max_bytes)
        except Exception as exc:  # noqa: BLE001  (one bad input must not abort the others)
            result = ParseResult.failed(
                source.location, f"could not read: {type(exc).__name__}: {exc}"
            )
        batch.files += 1
        batch.extend(result)
        if progress is not None:
            progress(1)
    batch.reject_duplicates()
    return batch


def load_paths(
    paths: Iterable[str | Path],
    now: datetime,
    max_bytes: int,
    progress: Callable[[int], object] | None = None,
    allow_private_feed_hosts: bool = False,
) -> ImportBatch:
    """Read files, folders and feed URLs into one batch of records and errors."""
    sources, errors = expand_paths(paths)
    batch = load_sources(sources, now, max_bytes, progress, allow_private_feed_hosts)
    batch.errors[:0] = errors
    return batch
