"""The inbox of what `newsroom dev-smtp` received: its Maildir listed newest first (date, from,
to, subject), and each message shown — its HTML in a sandboxed frame that runs no script and
loads nothing, its text part, its headers — so a volunteer can read a `--test` copy without
opening raw files.

Only the one Maildir it is given is read: a message is named in a URL by its Maildir key, which
must look like one and must be a regular file listed in that Maildir's new/ or cur/ folder
(symlinks are skipped), so no request can name a path of its own. Messages are parsed with the
email package's `policy.default`; what is read is bounded (the newest MAX_LISTED of at most
MAX_SCANNED files, MAX_HEAD bytes of each for the list, MAX_MESSAGE bytes to show one).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser, BytesParser
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from newsroom.web import frames
from newsroom.web.frames import DESKTOP, PHONE, SCHEMES

MAX_SCANNED = 10_000  # directory entries looked at
MAX_LISTED = 200  # messages listed, newest first
MAX_HEAD = 64 * 1024  # bytes read of each listed message for its headers
MAX_MESSAGE = 8 * 1024 * 1024  # bytes of a message shown; dev-smtp takes up to 32 MB
# A Maildir key as Python's mailbox module and other writers make them (time.unique.host), and
# no more: no slash, no dot at the start, bounded.
KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._=+,-]{0,199}")


@dataclass(frozen=True)
class Listed:
    """One message in the list."""

    key: str
    path: Path
    size: int
    date: str = ""
    sender: str = ""
    to: str = ""
    subject: str = ""


@dataclass(frozen=True)
class Opened:
    """One message as its page shows it."""

    listed: Listed
    headers: tuple[tuple[str, str], ...] = ()
    text: str | None = None
    html: str | None = None
    parts: tuple[str, ...] = ()  # every part's content type, and file name if it has one
    problem: str = ""  # why it cannot be shown


def _header(message: Message, name: str) -> str:
    try:
        value: Any = message.get(name)
    except (ValueError, TypeError, IndexError):  # a header the parser could not make sense of
        return "(unreadable)"
    if value is None:
        return ""
    when = getattr(value, "datetime", None)
    return when.strftime("%d %b %Y %H:%M") if when is not None else " ".join(str(value).split())


class Inbox:
    """The Maildir at MAILDIR (it need not exist yet: dev-smtp makes it); a message over
    MAX_BYTES is listed but not shown."""

    def __init__(self, maildir: Path, max_bytes: int = MAX_MESSAGE) -> None:
        self.maildir = Path(maildir)
        self.max_bytes = max_bytes

    def _files(self) -> dict[str, tuple[Path, int, int]]:
        """Key → (path, mtime in ns, size) of every regular file in new/ and cur/."""
        found: dict[str, tuple[Path, int, int]] = {}
        scanned = 0
        for sub in ("new", "cur"):
            try:
                entries = os.scandir(self.maildir / sub)
            except OSError:
                continue
            with entries:
                for entry in entries:
                    scanned += 1
                    if scanned > MAX_SCANNED:
                        break
                    key = entry.name.split(":", 1)[0]  # cur/ names carry ":2,FLAGS" (info)
                    if not KEY.fullmatch(key) or not entry.is_file(follow_symlinks=False):
                        continue
                    about = entry.stat(follow_symlinks=False)
                    found[key] = (Path(entry.path), about.st_mtime_ns, about.st_size)
        return found

    def version(self) -> str:
        """What changes when a message arrives or goes (new/ and cur/ folders' mtimes)."""
        times = []
        for sub in ("new", "cur"):
            try:
                times.append(str((self.maildir / sub).stat().st_mtime_ns))
            except OSError:
                times.append("-")
        return ".".join(times)

    def listing(self) -> list[Listed]:
        files = self._files()
        newest = sorted(files.items(), key=lambda item: (item[1][1], item[0]), reverse=True)
        return [self._listed(key, path, size) for key, (path, _, size) in newest[:MAX_LISTED]]

    def _listed(self, key: str, path: Path, size: int) -> Listed:
        try:
            with path.open("rb") as handle:
                head = handle.read(MAX_HEAD)
        except OSError:
            return Listed(key, path, size, subject="(cannot be read)")
        message = BytesHeaderParser(policy=policy.default).parsebytes(head)
        return Listed(
            key,
            path,
            size,
            _header(message, "Date"),
            _header(message, "From"),
            _header(message, "To"),
            _header(message, "Subject") or "(no subject)",
        )

    def open(self, key: str) -> Opened | None:
        """The message KEY names, or None when this Maildir has no such message."""
        if not KEY.fullmatch(key):
            return None
        found = self._files().get(key)
        if found is None:
            return None
        path, _, size = found
        listed = self._listed(key, path, size)
        if size > self.max_bytes:
            too_large = f"is {size:,} bytes, more than the {self.max_bytes:,} shown here"
            return Opened(listed, problem=f"{too_large}: open {path} in a mail program")
        try:
            with path.open("rb") as handle:
                data = handle.read(self.max_bytes + 1)  # it may have grown since it was listed
        except OSError as exc:
            return Opened(listed, problem=f"cannot be read: {exc.strerror}")
        if len(data) > self.max_bytes:
            return Opened(listed, problem="grew too large to show here while it was read")
        message = BytesParser(policy=policy.default).parsebytes(data)
        assert isinstance(message, EmailMessage)  # what policy.default makes
        return Opened(
            listed,
            _headers(message),
            _body(message, "plain"),
            _body(message, "html"),
            tuple(_part(p) for p in message.walk() if not p.is_multipart()),
        )


def _headers(message: EmailMessage) -> tuple[tuple[str, str], ...]:
    """Every header in order, repeated ones (Received, X-Envelope-To) each time, decoded."""
    shown = []
    for name, raw in message.raw_items():
        try:
            value = str(message.policy.header_fetch_parse(name, raw))
        except (ValueError, TypeError, IndexError):  # shown as it came
            value = str(raw)
        shown.append((name, " ".join(value.split())))
    return tuple(shown)


def _body(message: EmailMessage, kind: str) -> str | None:
    part = message.get_body(preferencelist=(kind,))
    if part is None:
        return None
    try:
        return str(part.get_content()).replace("\r\n", "\n")  # as stored: the wire's CRLF
    except (LookupError, ValueError, TypeError) as exc:  # an unknown charset, a broken encoding
        return f"(this part cannot be decoded: {exc})"


def _part(part: Message) -> str:
    name = part.get_filename()
    return f"{part.get_content_type()} ({name})" if name else part.get_content_type()


class Pages:
    """The inbox's routes, under /inbox/."""

    def __init__(self, inbox: Inbox, has_preview: bool) -> None:
        self.inbox = inbox
        self.has_preview = has_preview

    def _page(self, name: str, status: int = 200, **context: Any) -> Response:
        return frames.page(name, status, here="inbox", has_preview=self.has_preview, **context)

    def index(self, request: Request) -> Response:
        return self._page(
            "inbox",
            maildir=str(self.inbox.maildir),
            messages=self.inbox.listing(),
            limit=MAX_LISTED,
            watch="/inbox/version",
            version=self.inbox.version(),
        )

    def message(self, request: Request) -> Response:
        opened = self.inbox.open(request.path_params["key"])
        if opened is None:
            what = "No such message in this inbox."
            return self._page("missing", status=404, what=what)
        scheme = request.query_params.get("scheme", "light")
        width = request.query_params.get("width", "desktop")
        scheme = scheme if scheme in SCHEMES else "light"
        width = width if width in ("phone", "desktop") else "desktop"
        return self._page(
            "message",
            opened=opened,
            scheme=scheme,
            width=width,
            pixels=PHONE if width == "phone" else DESKTOP,
            src=f"/inbox/{opened.listed.key}/html?scheme={scheme}",
        )

    def html(self, request: Request) -> Response:
        opened = self.inbox.open(request.path_params["key"])
        scheme = request.query_params.get("scheme", "light")
        if opened is None or opened.html is None or scheme not in SCHEMES:
            return self._page("missing", status=404, what="This message has no HTML part.")
        return frames.frame(frames.force_scheme(opened.html, scheme), frames.NO_REMOTE_IMAGES)

    def version(self, request: Request) -> Response:
        return frames.json({"version": self.inbox.version()})


def routes(inbox: Inbox, *, has_preview: bool) -> list[BaseRoute]:
    pages = Pages(inbox, has_preview)
    return [
        Route("/inbox/", pages.index),
        Route("/inbox/version", pages.version),
        Route("/inbox/{key}/", pages.message),
        Route("/inbox/{key}/html", pages.html),
    ]


def create_app(maildir: Path, host: str = "127.0.0.1") -> Starlette:
    """`newsroom inbox`: the inbox alone, at /inbox/ (/ leads there)."""
    return frames.local_app(
        [
            Route("/", lambda request: RedirectResponse("/inbox/")),
            Route("/inbox", lambda request: RedirectResponse("/inbox/")),
            *routes(Inbox(maildir), has_preview=False),
            *frames.asset_routes(),
        ],
        host,
    )
