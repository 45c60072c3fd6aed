"""Rendered parts -> RFC 5322 message bytes (CRLF), ready for SMTP or an .eml outbox.

The MIME body comes from ``email.message.EmailMessage``; the top-level headers are written
here, because the email package RFC 2047-encodes long unbroken words such as the
List-Unsubscribe URLs, which breaks them for mail clients. Everything personal that reaches a
header is reduced to one line first, so a name or subject can never inject a header.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import re
import unicodedata
from collections import OrderedDict
from collections.abc import Mapping
from datetime import datetime, timedelta
from email import base64mime, quoprimime
from email.header import Header
from email.utils import format_datetime, formataddr, getaddresses, parseaddr
from typing import Any, Protocol

from digest.content import DotFree, Personal, Rendered

CRLF = b"\r\n"
MAX_LINE = 998

#: Headers this module writes; ``extra_headers`` may not replace them.
OWN_HEADERS = frozenset(
    h.lower()
    for h in (
        "Date", "From", "To", "Cc", "Bcc", "Reply-To", "Subject", "Message-ID", "MIME-Version",
        "Content-Type", "Content-Transfer-Encoding", "List-Id", "List-Unsubscribe",
        "List-Unsubscribe-Post", "Feedback-ID",
    )
)  # fmt: skip

_HEADER_NAME_RE = re.compile(r"^[!-9;-~]+$")  # RFC 5322 ftext
_WS_RE = re.compile(r"\s+")
_ADDR_SPEC_RE = re.compile(r"^[^\s<>()\[\],;:\"@\\]+@[^\s<>()\[\],;:\"@\\]+$")


class MessageSigner(Protocol):
    """Adds a signature to finished message bytes (``digest.dkim.Signer``)."""

    def sign(self, message: bytes) -> bytes: ...


def one_line(value: str) -> str:
    """Drop CR, LF and every other control character; collapse whitespace.

    Printable text without doubled or outer spaces is already one line (``isprintable`` is
    false for every character this would replace), and that is nearly every value: return it.
    """
    if value.isprintable() and "  " not in value and value == value.strip():
        return value
    chars = (" " if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") else c for c in value)
    return _WS_RE.sub(" ", "".join(chars)).strip()


class UnmailableAddress(ValueError):
    """An address this module cannot write: not a plain addr-spec, or not ASCII.

    Headers are written in ASCII and mail goes out without SMTPUTF8, so a non-ASCII address
    (a row stored before addresses were checked for this) fails its message, clearly.
    """


def _check_addr_spec(addr: str, what: str) -> str:
    if not _ADDR_SPEC_RE.match(addr):
        raise UnmailableAddress(f"{what} {addr!r} is not a plain email address")
    if not addr.isascii():
        raise UnmailableAddress(
            f"{what} {addr!r} is not ASCII (a Unicode domain must be stored in its xn-- form; "
            "a non-ASCII local part needs SMTPUTF8, which is not supported)"
        )
    return addr


def mailbox(value: str, what: str) -> tuple[str, str]:
    """``value`` as one (display name, addr-spec) pair this module can write in a header.

    The one check for an address a setting gives (``reply_to``): the settings ask it when
    they are read, so a value every message would fail on is refused at start, not mailed.
    A list of addresses (``a@x.org, b@x.org``) is refused too: ``parseaddr`` would keep the
    first and drop the rest without a word.
    """
    line = one_line(value)
    if len(getaddresses([line])) != 1:
        raise UnmailableAddress(f"{what} {value!r} is not one email address")
    name, addr = _parseaddr(line)
    if not _ADDR_SPEC_RE.match(addr):
        raise UnmailableAddress(f"{what} {value!r} is not an email address")
    return one_line(name), _check_addr_spec(addr, what)


def _fold_ascii(name: str, value: str) -> bytes:
    """``Name: value`` folded at spaces under 78 columns (a single longer word keeps its line)."""
    lines: list[str] = []
    current = f"{name}:"
    for word in value.split(" ") if value else []:
        if len(current) + 1 + len(word) <= 78 or current == f"{name}:":
            current = f"{current} {word}"
        else:
            lines.append(current)
            current = f" {word}"
    lines.append(current)
    if any(len(line) > MAX_LINE for line in lines):
        raise ValueError(f"{name} has a word longer than {MAX_LINE} octets")
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


#: From, Reply-To and List-Id are the same for every message of a run.
_parseaddr = functools.lru_cache(maxsize=64)(parseaddr)


def _plain(value: str) -> bool:
    """Printable ASCII that no reader could take for an RFC 2047 encoded word."""
    return value.isascii() and value.isprintable() and "=?" not in value and "  " not in value


@functools.lru_cache(maxsize=4096)
def _text_header(name: str, value: str) -> bytes:
    """An unstructured header (Subject): plain ASCII as is, anything else as encoded words.

    ``email.header.Header`` keeps each space inside an encoded word, so it decodes back
    exactly; the newer header registry drops the space between two non-ASCII words. Cached:
    the same header is often written for every message of a run.
    """
    if _plain(value):
        return _fold_ascii(name, value)
    encoded = Header(value, "utf-8", header_name=name).encode(linesep="\r\n")
    return f"{name}: {encoded}\r\n".encode("ascii")


@functools.lru_cache(maxsize=4096)
def _address_header(name: str, display: str, addr: str) -> bytes:
    """``Name: Display <addr>`` (From, To, Reply-To, List-Id) with the display name quoted or
    encoded as it needs; the address itself always stays plain."""
    if not display:
        return _fold_ascii(name, f"<{addr}>" if name == "List-Id" else addr)
    if _plain(display):
        return _fold_ascii(name, formataddr((display, addr)))
    encoded = f"{name}: " + _encoded_words(name, display)
    last = encoded.rsplit("\r\n", 1)[-1]
    gap = " " if len(last) + 2 + len(addr) + 1 <= 78 else "\r\n "
    return f"{encoded}{gap}<{addr}>\r\n".encode("ascii")


def _encoded_words(name: str, value: str) -> str:
    """``Header(value, "utf-8", header_name=name).encode()``: RFC 2047 encoded words.

    A value that fits one encoded word on the header's first line is that word, in the
    encoding the email package picks (the shorter; Q on a tie), without its character-by-
    character line fitting: a member's name is encoded for every message.
    """
    raw = value.encode("utf-8")
    if base64mime.header_length(raw) < quoprimime.header_length(raw):
        word = base64mime.header_encode(raw, "utf-8")
    else:
        word = quoprimime.header_encode(raw, "utf-8")
    if len(word) <= 75 and len(name) + 2 + len(word) <= 76:
        return word
    return Header(value, "utf-8", header_name=name).encode(linesep="\r\n")


def _fold_list(name: str, items: list[str]) -> bytes:
    """``Name: a, b`` folded between items only, never inside one (URLs stay intact)."""
    lines: list[str] = []
    current = f"{name}:"
    for i, item in enumerate(items):
        piece = item + ("," if i < len(items) - 1 else "")
        if len(current) + 1 + len(piece) > 78 and current != f"{name}:":
            lines.append(current)
            current = f" {piece}"
        else:
            current = f"{current} {piece}"
    lines.append(current)
    for line in lines:
        if len(line) > MAX_LINE:
            raise ValueError(f"{name} item longer than {MAX_LINE} octets")
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def _ascii_token(value: str, what: str) -> str:
    value = one_line(value)
    if not value.isascii() or not value:
        raise ValueError(f"{what} must be non-empty ASCII, got {value!r}")
    return value


@functools.lru_cache(maxsize=8)
def _date(date: datetime, offset: timedelta | None) -> str:
    """RFC 5322 date (whole seconds): a send run stamps many messages within each second.

    ``offset`` is part of the key: equal instants in two zones compare equal but print apart.
    """
    return format_datetime(date)


_FEEDBACK_FIELD_RE = re.compile(r"[^A-Za-z0-9._-]+")


@functools.lru_cache(maxsize=1024)
def feedback_id(campaign: str, list_id: str, sender: str) -> str:
    """``Feedback-ID: campaign:list:mailing:sender`` for Gmail's feedback loop.

    Gmail reports complaint rates per field; the last is the sender's own, steady id. Each
    field is cut to plain characters (a colon separates fields, so an edition key's
    ``daily:2026-11-24`` becomes ``daily-2026-11-24``).
    """
    fields = (campaign, list_id, "digest", sender)
    cleaned = [_FEEDBACK_FIELD_RE.sub("-", one_line(f)).strip("-")[:60] or "none" for f in fields]
    return ":".join(cleaned)


def _boundary(seed: str) -> str:
    # "=_" never occurs in quoted-printable output, so the boundary cannot clash with content.
    return "==_dg_" + hashlib.sha256(seed.encode("utf-8")).hexdigest()[:24]


#: Encoded lines by source line. Quoted-printable is line-local (soft breaks restart at every
#: hard line break), and most lines of a digest (markup, article text) recur in every message.
_QP_LINES: dict[bytes, bytes] = {}
_QP_LINES_MAX = 16_384
#: The same, by text: the lines where two pieces meet, looked up without encoding them first.
_QP_JOINS: dict[str, bytes] = {}


def _qp(text: str) -> bytes:
    """Quoted-printable, CRLF line ends, soft breaks under 76 columns (RFC 2045 6.7).

    ``binascii.b2a_qp`` of the whole text (but for dots opening a line, see ``_qp_line``),
    encoded a line at a time through a bounded cache.
    """
    return _qp_lines(text.encode("utf-8").splitlines() or [b""])


def _qp_line(line: bytes) -> bytes:
    """One source line, quoted-printable, with no encoded line starting with a dot.

    ``binascii.b2a_qp``, except that a dot opening an encoded line (CSS rules in the HTML head
    do) is written ``=2E``: the message then needs no SMTP dot-stuffing, which would otherwise
    copy every message on its way out.
    """
    encoded = binascii.b2a_qp(line + CRLF, istext=True)
    # b2a_qp's last row can reach 77 columns when it ends in encoded white space
    last_row = len(encoded) - 3 - encoded.rfind(b"\n", 0, -2)
    if not (encoded.startswith(b".") or b"\n." in encoded or last_row > 76):
        return encoded
    return b"=\r\n".join(_rows_without_leading_dots(encoded[:-2].split(b"=\r\n"))) + CRLF


def _rows_without_leading_dots(rows: list[bytes]) -> list[bytes]:
    """b2a_qp's rows (soft breaks removed), with a dot opening a row written ``=2E``.

    Rows stay as b2a_qp made them but where a dot opened one: what the longer escape pushes
    past 75 columns (room for the soft break's "=") moves to a row of its own, never splitting
    an ``=XX`` escape (in encoded text every "=" starts one). Over-long rows are cut the same.
    """
    out: list[bytes] = []
    for row in rows:
        while True:
            if row.startswith(b"."):
                row = b"=2E" + row[1:]
            if len(row) <= 75:
                break
            cut = 75
            escape = row.rfind(b"=", cut - 2, cut)
            if escape >= 0:
                cut = escape
            out.append(row[:cut])
            row = row[cut:]
        out.append(row)
    return out


def _qp_lines(lines: list[bytes]) -> bytes:
    cache = _QP_LINES
    out: list[bytes] = []
    for line in lines:
        encoded = cache.get(line)
        if encoded is None:
            encoded = _qp_line(line)
            if len(cache) >= _QP_LINES_MAX:
                cache.clear()
            cache[line] = encoded
        out.append(encoded)
    return b"".join(out)


#: (text before its first newline, the encoding of the piece from its first newline on when it
#: opens a line: the head and the whole lines, where the whole lines start, text after the last)
_Piece = tuple[str, bytes, int, str]
_QP_PIECES: OrderedDict[str, _Piece | None] = OrderedDict()  # None: a piece holding a CR
_QP_PIECES_MAX = 2048
_NO_NEWLINE: Any = (None, b"", 0, "")


def _split_piece(piece: str) -> _Piece:
    """A piece cut at its first and last newline, its first line and the whole lines between
    encoded; ``(None, b"", 0, "")`` for a piece without one."""
    first, last = piece.find("\n"), piece.rfind("\n")
    if first < 0:
        return _NO_NEWLINE
    head = piece[:first]
    opening = _qp_lines([head.encode("utf-8")])
    inner = piece[first + 1 : last].encode("utf-8").split(b"\n") if last > first else []
    return head, opening + _qp_lines(inner), len(opening), piece[last + 1 :]


def _qp_piece(piece: str) -> _Piece | None:
    """``_split_piece`` of a shared piece (None if it holds a CR), remembered.

    Lock-free: each dictionary operation is atomic, and a lost race costs one encoding.
    """
    try:
        hit = _QP_PIECES[piece]
        _QP_PIECES.move_to_end(piece)
        return hit
    except KeyError:
        pass
    entry = None if "\r" in piece else _split_piece(piece)
    _QP_PIECES[piece] = entry
    while len(_QP_PIECES) > _QP_PIECES_MAX:
        try:
            _QP_PIECES.popitem(last=False)
        except KeyError:
            break
    return entry


def _qp_pieces(pieces: tuple[str, ...]) -> bytes:
    """``_qp("".join(pieces))``, reusing each piece's encoded whole lines.

    Quoted-printable is line-local, so only the lines that straddle two pieces are encoded per
    message; a reused section (an article card) brings its encoded lines with it. A member's
    own pieces (``Personal``) are never kept whole (their lines go through the line cache).
    """
    out: list[bytes] = []
    carry = ""
    joins = _QP_JOINS
    for piece in pieces:
        if not isinstance(piece, Personal):
            entry = _qp_piece(piece)
        elif "\r" not in piece:
            entry = _split_piece(piece)
        else:
            entry = None
        if entry is None:
            return _qp("".join(pieces))  # a lone CR is a line break too: the plain way
        head, encoded, cut, tail = entry
        if head is None:  # no newline in it
            carry += piece
            continue
        if not carry:  # the piece opens a line: its encoding as it is
            out.append(encoded)
            carry = tail
            continue
        # the line joining two pieces (mostly markup, or blank between two article texts)
        line = carry + head
        joined = joins.get(line)
        if joined is None:
            joined = _qp_line(line.encode("utf-8"))
            if len(joins) >= _QP_LINES_MAX:
                joins.clear()
            joins[line] = joined
        out.append(joined)
        if cut < len(encoded):
            out.append(encoded[cut:])
        carry = tail
    if carry or not out:
        out.append(_qp(carry))
    return b"".join(out)


def _body(rendered: Rendered, seed: str) -> bytes:
    """The MIME head and multipart/alternative body (text, then HTML), written directly.

    Assembling the bytes here costs a fraction of building an ``EmailMessage`` and flattening
    it; the output is the same structure: quoted-printable UTF-8 parts, CRLF throughout.
    """
    boundary = _boundary(seed).encode("ascii")
    dash = b"--" + boundary
    part = (
        b'Content-Type: text/%s; charset="utf-8"\r\n'
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    )
    return b"".join(
        (
            b"MIME-Version: 1.0\r\n",
            b'Content-Type: multipart/alternative; boundary="' + boundary + b'"\r\n',
            b"\r\n",
            dash + b"\r\n",
            part % b"plain",
            _qp_pieces(rendered.text_parts) if rendered.text_parts else _qp(rendered.text),
            b"\r\n",
            dash + b"\r\n",
            part % b"html",
            _qp_pieces(rendered.html_parts) if rendered.html_parts else _qp(rendered.html),
            b"\r\n",
            dash + b"--\r\n",
        )
    )


def compose_message(
    rendered: Rendered,
    *,
    from_address: str,
    to_email: str,
    to_name: str,
    message_id: str,
    date: datetime,
    list_id: str,
    unsubscribe_url: str,
    unsubscribe_mailto_url: str,
    reply_to: str = "",
    feedback: str = "",
    extra_headers: Mapping[str, str] | None = None,
    signer: MessageSigner | None = None,
) -> bytes:
    """One multipart/alternative message (text first, then HTML) as CRLF bytes.

    ``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` is written only when the
    unsubscribe URL is https (RFC 8058; Gmail and Yahoo ignore one-click over http): with an
    http URL, List-Unsubscribe carries the mailto alone. ``feedback`` is the Feedback-ID
    value (see ``feedback_id``). ``signer`` (DKIM) signs the finished bytes, so the signature
    covers exactly what is sent.
    """
    if date.tzinfo is None:
        raise ValueError("date must be timezone-aware")
    from_value = one_line(from_address)
    from_name, from_addr = _parseaddr(from_value)
    _check_addr_spec(from_addr, "from address")
    to_addr = _check_addr_spec(to_email, "to_email")
    message_id = _ascii_token(message_id, "message_id")
    if not (message_id.startswith("<") and message_id.endswith(">") and "@" in message_id):
        raise ValueError(f"message_id must look like <id@domain>, got {message_id!r}")
    web_unsubscribe = _ascii_token(unsubscribe_url, "unsubscribe_url")
    one_click = web_unsubscribe[:8].lower() == "https://"
    unsubscribe = [f"<{web_unsubscribe}>"] if one_click else []
    unsubscribe.append(f"<{_ascii_token(unsubscribe_mailto_url, 'unsubscribe_mailto_url')}>")
    subject = one_line(rendered.subject)

    head: list[bytes] = [
        _text_header("Date", _date(date.replace(microsecond=0), date.utcoffset())),
        _address_header("From", one_line(from_name), from_addr),
        _address_header("To", one_line(to_name), to_addr),
    ]
    if reply_to:
        reply_name, reply_addr = mailbox(reply_to, "reply_to")
        head.append(_address_header("Reply-To", reply_name, reply_addr))
    list_name, list_addr = _parseaddr(one_line(list_id))
    head += [
        _text_header("Subject", subject),
        _fold_list("Message-ID", [message_id]),
        _address_header("List-Id", one_line(list_name), _ascii_token(list_addr, "list id")),
        _fold_list("List-Unsubscribe", unsubscribe),
    ]
    if one_click:
        head.append(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n")
    if feedback:
        head.append(_fold_list("Feedback-ID", [_ascii_token(feedback, "feedback id")]))
    for name, value in (extra_headers or {}).items():
        if not _HEADER_NAME_RE.match(name) or name.lower() in OWN_HEADERS:
            raise ValueError(f"extra header {name!r} is not allowed")
        head.append(_text_header(name, one_line(value)))
    data = b"".join(head) + _body(rendered, message_id)
    # header lines start with a name or folding white space, body lines are quoted-printable
    # with no dot opening a line (see _qp_line), and a DKIM-Signature folds the same way
    return DotFree(signer.sign(data) if signer is not None else data)
