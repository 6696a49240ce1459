"""Mailboxes that bounce reports are read from: an mbox file, a Maildir, or an IMAP folder.

Each source yields (key, raw bytes) and can then delete a message or move it to a folder, so
`newsroom bounces process` can clean up after itself when run from cron.
"""

from __future__ import annotations

import contextlib
import imaplib
import mailbox
import re
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from newsroom.errors import NewsroomError
from newsroom.settings import Config


class Source(Protocol):
    def messages(self) -> Iterator[tuple[str, bytes]]: ...
    def delete(self, key: str) -> None: ...
    def move(self, key: str, folder: str) -> None: ...
    def close(self) -> None: ...


class LocalSource:
    """An mbox file or a Maildir, through the standard library's mailbox module."""

    def __init__(self, box: mailbox.Mailbox[Any]) -> None:
        self.box = box
        self.box.lock()

    def messages(self) -> Iterator[tuple[str, bytes]]:
        for key in list(self.box.keys()):
            yield str(key), self.box.get_bytes(key)

    def delete(self, key: str) -> None:
        self.box.discard(self._key(key))

    def move(self, key: str, folder: str) -> None:
        target = open_local(Path(folder), create=True)
        target.box.add(self.box.get_bytes(self._key(key)))
        target.close()
        self.delete(key)

    def _key(self, key: str) -> Any:
        return int(key) if isinstance(self.box, mailbox.mbox) else key

    def close(self) -> None:
        self.box.flush()
        self.box.unlock()
        self.box.close()


def open_local(path: Path, create: bool = False) -> LocalSource:
    """A Maildir (a folder) or an mbox (a file); with CREATE, a new one (mbox if named *.mbox)."""
    if path.is_dir():
        if not create and not (path / "cur").is_dir():
            raise NewsroomError(f"{path} is a folder but not a Maildir (no cur/, new/, tmp/)")
        return LocalSource(mailbox.Maildir(path, factory=None, create=create))
    if path.is_file() or (create and path.suffix):
        return LocalSource(mailbox.mbox(path, factory=None, create=create))
    if create:
        return LocalSource(mailbox.Maildir(path, factory=None, create=True))
    raise NewsroomError(f"{path}: no such mbox file or Maildir")


class ImapSource:
    """An IMAP folder: imaps:// (TLS, certificate checked) or imap:// (local servers only)."""

    def __init__(self, url: str, password: str) -> None:
        parts = urlsplit(url)
        if not parts.hostname or not parts.username:
            raise NewsroomError(f"{url}: an IMAP source looks like imaps://user@host/INBOX")
        if not password:
            raise NewsroomError(
                "no IMAP password: set NEWSROOM_BOUNCES_IMAP_PASSWORD in the environment or .env"
            )
        self.folder = unquote(parts.path.strip("/")) or "INBOX"
        where = f"cannot open the IMAP mailbox {parts.hostname}"
        try:
            if parts.scheme == "imaps":
                client: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                    parts.hostname,
                    parts.port or 993,
                    ssl_context=ssl.create_default_context(),
                    timeout=30,
                )
            else:
                client = imaplib.IMAP4(parts.hostname, parts.port or 143, timeout=30)
        except (OSError, imaplib.IMAP4.error) as exc:
            raise NewsroomError(f"{where}: {exc}") from None
        try:  # connected: from here on a failure closes the connection before it says so
            client.login(unquote(parts.username), password)
            status, _ = client.select(_quote(self.folder))
        except (OSError, imaplib.IMAP4.error) as exc:
            client.shutdown()
            raise NewsroomError(f"{where}: {exc}") from None
        if status != "OK":
            with contextlib.suppress(OSError, imaplib.IMAP4.error):
                client.logout()
            raise NewsroomError(f"{url}: no IMAP folder {self.folder!r}")
        self.client = client

    def messages(self) -> Iterator[tuple[str, bytes]]:
        _, data = self.client.uid("SEARCH", "UNDELETED")
        for uid in (data[0] or b"").split():
            _, fetched = self.client.uid("FETCH", uid.decode(), "(BODY.PEEK[])")
            for item in fetched:
                if isinstance(item, tuple):
                    yield uid.decode(), bytes(item[1])

    def delete(self, key: str) -> None:
        self.client.uid("STORE", key, "+FLAGS", r"(\Deleted)")

    def move(self, key: str, folder: str) -> None:
        self.client.create(_quote(folder))  # an error here only means it exists already
        status, _ = self.client.uid("COPY", key, _quote(folder))
        if status != "OK":
            raise NewsroomError(f"cannot move a report to the IMAP folder {folder!r}")
        self.delete(key)

    def close(self) -> None:
        try:
            self.client.expunge()
            self.client.logout()
        except (OSError, imaplib.IMAP4.error):
            pass


def _quote(folder: str) -> str:
    return '"' + re.sub(r'(["\\])', r"\\\1", folder) + '"'


def open_source(config: Config, where: str) -> Source:
    """The source named by WHERE: a path to an mbox file or Maildir, or an imap(s):// URL."""
    if re.match(r"imaps?://", where):
        return ImapSource(where, config.text("bounces.imap_password"))
    return open_local(Path(where))
