"""Bulk messages as bytes: each variant encoded once, per-recipient values spliced in encoded.

Building an `EmailMessage` per recipient costs milliseconds (bench/bench_send.py); joining bytes prepared
once per variant costs microseconds. A template is cut at its merge fields; the literal pieces are
quoted-printable encoded once (RFC 2045), and each recipient's values are encoded on their own and
joined in between. Every encoded piece starts at column 0 and ends with a line break (a soft
`=` break when the text goes on), so pieces join without re-wrapping.

The bytes are ready for SMTP DATA as they are: CRLF line ends, no line longer than 78 characters
and no line starting with "." (encoded as `=2E`), so the sender needs no dot-stuffing pass.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime, formataddr, parseaddr
from functools import lru_cache
from html import escape

from email_validator import EmailNotValidError, validate_email

from newsroom.compose import personalise
from newsroom.errors import NewsroomError
from newsroom.mail.dkim import Signer

# The placeholders rendering.py leaves in each variant (see personalise.py): `{{name}}` or
# `{{name|fallback}}`, the fallback already escaped for the part it sits in.
FIELD = re.compile(r"\{\{([a-z_]+)(?:\|([^{}]*))?\}\}")
FIELDS = personalise.FIELDS
MAX_QP_LINE = 76  # RFC 2045 §6.7 (5): encoded lines at most 76 characters, soft break included


class HeaderError(NewsroomError):
    """A header value that would break the message (CR, LF or NUL in it)."""


def check_header(name: str, value: str) -> str:
    """VALUE if it is safe in a header; refuses CR, LF and NUL (header injection)."""
    if "\r" in value or "\n" in value or "\0" in value:
        raise HeaderError(f"the {name} header must not contain a line break or NUL: {value!r}")
    return value


# --- quoted-printable -------------------------------------------------------------------------

_SAFE = {b for b in range(33, 127) if b != ord("=")} | {ord(" "), ord("\t")}
_ENCODED = [chr(b) if b in _SAFE else f"={b:02X}" for b in range(256)]


def qp_encode(text: str) -> bytes:
    """TEXT as quoted-printable lines starting at column 0 and ending with CRLF or a soft break.

    Whitespace before a line break and a "." at the start of a line are encoded, so the result
    survives SMTP unchanged and joins with other pieces made by this function.
    """
    if not text:
        return b""
    if _PLAIN.fullmatch(text):
        return _qp_plain(text)
    out: list[str] = []
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    last = len(lines) - 1
    for index, line in enumerate(lines):
        hard = index < last
        if not hard and not line:
            break  # the text ended with a line break
        tokens = [_ENCODED[b] for b in line.encode("utf-8")]
        column = 0
        for token in tokens:
            # 73, not 75: a space before a soft break becomes "=20" and the line stays <= 76.
            if column + len(token) > MAX_QP_LINE - 3:
                out.append("=\r\n")
                column = 0
            if column == 0 and token == ".":
                token = "=2E"
            out.append(token)
            column += len(token)
        out.append("\r\n" if hard else "=\r\n")
    # RFC 2045 §6.7 (3): whitespace at the end of an encoded line (hard or soft) is encoded.
    encoded = "".join(out)
    for space, code in ((" ", "=20"), ("\t", "=09")):
        encoded = encoded.replace(space + "=\r\n", code + "=\r\n")
        encoded = encoded.replace(space + "\r\n", code + "\r\n")
    return encoded.encode("ascii")


_PLAIN = re.compile(r"[\x20-\x3c\x3e-\x7e]*")  # printable ASCII but "=", on one line
_WIDTH = MAX_QP_LINE - 5  # room for "=2E" at the start and "=20" at the end of a line


def _qp_plain(text: str) -> bytes:
    """The fast path of qp_encode for a short one-line ASCII value (a name, an address, a URL)."""
    lines = [text[i : i + _WIDTH] for i in range(0, len(text), _WIDTH)]
    for index, line in enumerate(lines):
        if line[0] == ".":
            line = "=2E" + line[1:]
        if line[-1] == " ":
            line = line[:-1] + "=20"
        lines[index] = line
    return ("=\r\n".join(lines) + "=\r\n").encode("ascii")


# --- headers ---------------------------------------------------------------------------------


def encode_header(name: str, value: str) -> bytes:
    """One header line: ASCII folded at spaces, anything else as RFC 2047 encoded words."""
    check_header(name, value)
    if value.isascii() and len(name) + len(value) < 77:
        return f"{name}: {value}\r\n".encode("ascii")
    if value.isascii():
        return f"{name}: {_fold(value, len(name) + 2)}\r\n".encode("ascii")
    return f"{name}: {encoded_words(value)}\r\n".encode("ascii")


def _fold(value: str, used: int) -> str:
    words = value.split(" ")
    lines = [words[0]]
    for word in words[1:]:
        if used + len(lines[-1]) + 1 + len(word) > 76:
            lines.append(word)
            used = 1
        else:
            lines[-1] += " " + word
    return "\r\n ".join(lines)


def encoded_words(value: str) -> str:
    """VALUE as RFC 2047 base64 encoded words, each at most 75 characters, never splitting a
    UTF-8 character."""
    import base64

    words: list[str] = []
    chunk = ""
    for char in value:
        if len((chunk + char).encode("utf-8")) > 45:  # 45 bytes -> 60 base64 chars, + 12
            words.append(chunk)
            chunk = ""
        chunk += char
    words.append(chunk)
    return "\r\n ".join(
        f"=?utf-8?b?{base64.b64encode(w.encode('utf-8')).decode('ascii')}?=" for w in words
    )


@lru_cache(maxsize=4096)
def ascii_domain(domain: str) -> str:
    """DOMAIN in its IDNA A-label form (RFC 5890/5891), as DNS and relays take it:
    `münchen.de` → `xn--mnchen-3ya.de`. Cached: a mailing meets the same few domains again
    and again."""
    try:
        return validate_email(f"x@{domain}", check_deliverability=False).ascii_domain
    except EmailNotValidError as exc:
        raise HeaderError(f"{domain!r} is not a mail domain: {exc}") from None


def wire_address(address: str) -> str:
    """ADDRESS as it goes into RCPT TO and the To header: the domain in A-label form. Addresses
    are stored in Unicode (subscribers.py); only a non-ASCII local part is left non-ASCII here,
    and a message to it needs SMTPUTF8 (RFC 6531)."""
    if address.isascii():
        return address
    local, at, domain = address.rpartition("@")
    if not at or not local:
        raise HeaderError(f"{address!r} is not an email address")
    return f"{local}@{ascii_domain(domain)}"


def address_header(name: str, display: str, address: str, *, utf8: bool = False) -> bytes:
    """`To:`/`From:` with a display name (encoded if need be) and the address in its wire form.
    A non-ASCII local part is refused unless UTF8; then the field is raw UTF-8, as RFC 6532
    §3.2 allows in a message that travels with SMTPUTF8 (smtp.py sees to that)."""
    check_header(name, display)
    check_header(name, address)
    if "@" not in address:
        raise HeaderError(f"the {name} address must be an email address: {address!r}")
    wire = wire_address(address)
    if wire.isascii():
        value = formataddr((display, wire), charset="utf-8") if display else wire
        return encode_header(name, value)
    if not utf8:
        raise HeaderError(f"the {name} address must be ASCII before the @: {address!r}")
    # formataddr() refuses a non-ASCII address: let it format the display name beside a stand-in.
    phrase = formataddr((display, "x@x"), charset="utf-8")[: -len(" <x@x>")] if display else ""
    value = f"{phrase} <{wire}>" if phrase else wire
    return f"{name}: {_fold(value, len(name) + 2)}\r\n".encode()


# --- templates -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Slot:
    """A merge field in a template: its name, fallback, and whether it lands in HTML."""

    name: str
    fallback: str
    html: bool


def _cut(template: str, html: bool, where: str) -> list[bytes | Slot]:
    pieces: list[bytes | Slot] = []
    position = 0
    for match in FIELD.finditer(template):
        name = match.group(1)
        if name not in FIELDS:
            raise NewsroomError(
                f"{where}: unknown merge field {{{{{name}}}}}; known: {', '.join(FIELDS)}"
            )
        pieces.append(qp_encode(template[position : match.start()]))
        pieces.append(Slot(name, match.group(2) or "", html))
        position = match.end()
    pieces.append(qp_encode(template[position:]))
    return [p for p in pieces if p != b""]


def fill(template: str, fields: Mapping[str, str]) -> str:
    """TEMPLATE (a subject) with its merge fields filled as plain text."""

    def value(match: re.Match[str]) -> str:
        return fields.get(match.group(1)) or match.group(2) or ""

    return FIELD.sub(value, template)


@dataclass(frozen=True)
class Recipient:
    """Who one message goes to, and the values of their merge fields."""

    email: str
    name: str = ""
    unsubscribe_url: str = ""
    preferences_url: str = ""
    unsubscribe_mailto: str = ""  # RFC 2369 mailto (without "mailto:"), e.g. the VERP address

    def fields(self) -> dict[str, str]:
        return personalise.values(self.email, self.name, self.unsubscribe_url, self.preferences_url)


@dataclass
class MessageTemplate:
    """One variant of a mailing, encoded once; `build()` makes one recipient's message."""

    subject: str
    text: str
    html: str
    sender: tuple[str, str]  # display name, address
    list_id: str
    reply_to: str = ""
    unsubscribe_mailto: str = ""  # RFC 2369 mailto without "mailto:", per recipient if "{token}"
    signer: Signer | None = None
    message_id_domain: str = "localhost"
    _head: bytes = field(init=False, repr=False)
    _body: list[bytes | int] = field(init=False, repr=False)  # int: an index in _slots
    _slots: list[Slot] = field(init=False, repr=False)
    _subject_fixed: bytes | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        check_header("Subject", self.subject)
        for piece in FIELD.findall(self.subject):
            if piece[0] not in FIELDS:
                raise NewsroomError(f"subject: unknown merge field {{{{{piece[0]}}}}}")
        self._subject_fixed = (
            None if FIELD.search(self.subject) else encode_header("Subject", self.subject)
        )
        boundary = f"==newsroom_{secrets.token_hex(12)}"
        head = [
            address_header("From", *self.sender),
            encode_header("Reply-To", self.reply_to) if self.reply_to else b"",
            b"MIME-Version: 1.0\r\n",
            encode_header("List-Id", self.list_id),
            b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",  # RFC 8058
            b"Precedence: bulk\r\n",
            f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"\r\n'.encode(),
        ]
        self._head = b"".join(head)
        part = "\r\n--{b}\r\nContent-Type: text/{kind}; charset=utf-8\r\n"
        part += "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        body = [
            b"\r\nThis is a multipart message in MIME format.",
            part.format(b=boundary, kind="plain").encode(),
            *_cut(self.text, False, "text part"),
            part.format(b=boundary, kind="html").encode(),
            *_cut(self.html, True, "HTML part"),
            f"\r\n--{boundary}--\r\n".encode(),
        ]
        self._slots = list(dict.fromkeys(p for p in body if isinstance(p, Slot)))
        index = {slot: i for i, slot in enumerate(self._slots)}
        self._body = [p if isinstance(p, bytes) else index[p] for p in body]

    def build(self, recipient: Recipient, message_id: str, date: str) -> bytes:
        """The whole message for RECIPIENT, ready for SMTP DATA (without the final ".")."""
        fields = recipient.fields()
        subject = self._subject_fixed or encode_header("Subject", fill(self.subject, fields))
        unsubscribe = f"<{check_header('List-Unsubscribe', recipient.unsubscribe_url)}>"
        mailto = recipient.unsubscribe_mailto or self.unsubscribe_mailto
        if mailto:
            unsubscribe += f", <mailto:{check_header('List-Unsubscribe', mailto)}>"
        parts = [
            address_header("To", recipient.name, recipient.email, utf8=True),
            subject,
            f"Date: {date}\r\nMessage-ID: {message_id}\r\n".encode("ascii"),
            encode_header("List-Unsubscribe", unsubscribe),
            self._head,
        ]
        values = []  # each distinct slot encoded once, then placed wherever it occurs
        for slot in self._slots:
            value = fields[slot.name]
            if value and slot.html:
                value = escape(value)
            values.append(qp_encode(value or slot.fallback))
        parts.extend(values[p] if isinstance(p, int) else p for p in self._body)
        message = b"".join(parts)
        if self.signer is not None:
            message = self.signer.sign(message) + message
        return message


def new_message_id(domain: str) -> str:
    return f"<{secrets.token_hex(12)}@{domain}>"


class DateHeader:
    """RFC 5322 Date values, formatted at most once a second. In UTC as `+0000`: RFC 5322
    section 3.3 makes "GMT" an obsolete form that must not be generated."""

    def __init__(self, now: Callable[[], float] = time.time) -> None:
        self._now = now
        self._second = -1
        self._text = ""

    def date(self) -> str:
        now = int(self._now())
        if now != self._second:
            self._second = now
            self._text = format_datetime(datetime.fromtimestamp(now, UTC))
        return self._text


def parse_sender(value: str) -> tuple[str, str]:
    """`Name <address>` → (name, address); refuses a value without an address."""
    check_header("From", value)
    name, address = parseaddr(value)
    if "@" not in address:
        raise NewsroomError(f"site.sender: {value!r} has no email address (write Name <a@b.org>)")
    return name, address


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower()
