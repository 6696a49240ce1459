"""`newsroom preview --serve`: an issue as members will see it on a local page — each variant at
phone and desktop width in light and dark, its subject and preheader as an inbox line, its text
part — shown again whenever the issue, the settings or the site's templates change.

The issue is read and rendered again only when one of the files it depends on has changed
(their sizes and modification times, `Preview.version`); the page asks for that version once a
second and reloads when it moves. A problem with the issue or the settings is shown on the page
in `newsroom check`'s words (`issues/FILE.md:LINE: ...`), and the page keeps watching.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from dataclasses import dataclass, field, replace
from email.utils import parseaddr
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from newsroom.clock import Clock
from newsroom.compose import blocks, issues, personalise, preflight, rendering
from newsroom.compose.rendering import Rendered
from newsroom.delivery import outbox
from newsroom.errors import NewsroomError, ProblemsError
from newsroom.people import lists
from newsroom.settings import CONFIG_FILE, ENV_FILE
from newsroom.site import Site
from newsroom.web import frames, inbox
from newsroom.web.frames import DESKTOP, PHONE, SCHEMES

log = logging.getLogger(__name__)
MAX_TEMPLATES = 500  # files of a site's templates/ folder watched; a folder holds a few dozen
VARIANT = re.compile(r"public|email(?:\+[1-9])*")


@dataclass(frozen=True)
class Shown:
    """The issue as its files are now: rendered, or the problems that stop it."""

    version: str
    path: str  # as a volunteer knows it: issues/FILE.md
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    rendered: Rendered | None = None
    key: str = "email"  # the sample recipient's variant
    fields: dict[str, str] = field(default_factory=dict)
    web: str = ""  # the public web page
    sender: str = ""

    def labels(self) -> dict[str, str]:
        """Each variant's name on the page, in reading order."""
        if self.rendered is None:
            return {}
        expressions = self.rendered.only_expressions
        named = {"public": "Web page (public)"}
        for key in self.rendered.variants:
            if key != "public":
                chosen = [expressions[int(i) - 1] for i in key.split("+")[1:]]
                named[key] = "Email" + "".join(f" + only {e}" for e in chosen)
        return named

    def document(self, key: str) -> str | None:
        """KEY's HTML as the sample recipient gets it (the web page for "public")."""
        if self.rendered is None or key not in self.rendered.variants:
            return None
        if key == "public":
            return self.web
        return personalise.personalise(self.rendered.variants[key].html, self.fields, html=True)


def fingerprint(paths: list[Path]) -> str:
    """What changes when any of PATHS is written, made or removed (size and mtime in ns)."""
    digest = hashlib.sha256()
    for path in paths:
        try:
            found = path.stat()
            digest.update(f"{path}\0{found.st_mtime_ns}\0{found.st_size}\n".encode())
        except OSError:
            digest.update(f"{path}\0-\n".encode())
    return digest.hexdigest()[:16]


def templates_folder(root: Path) -> list[Path]:
    """A site's templates/ folder and what it holds (at most MAX_TEMPLATES files): the folders
    too, so that a new or removed file is a change."""
    folder = root / "templates"
    if not folder.is_dir():
        return [folder]
    found = [folder]
    for parent, names, files in os.walk(folder):
        names.sort()
        found += [Path(parent) / n for n in names]
        found += [Path(parent) / n for n in sorted(files)]
        if len(found) > MAX_TEMPLATES:
            return found[:MAX_TEMPLATES]
    return found


class Preview:
    """One issue file of the site in ROOT, rendered for ADDRESS (None: nobody in particular)."""

    def __init__(self, root: Path, path: Path, address: str | None, clock: Clock) -> None:
        self.root, self.path, self.address, self.clock = root, path.resolve(), address, clock
        self._lock = threading.Lock()
        self._named: list[Path] = []  # the files read last time: supporters, images, logo
        self._shown: Shown | None = None

    def _watched(self) -> list[Path]:
        root = self.root
        return [
            self.path,
            self.path.parent,  # an issue file added or removed may share this one's slug
            root / CONFIG_FILE,  # the theme, the site's name and sender
            root / ENV_FILE,
            root / "subscribers" / "lists.toml",  # the lists `to:` and `only` may name
            *templates_folder(root),
        ]

    def version(self) -> str:
        return fingerprint(self._watched()) + fingerprint(self._named)

    def shown(self) -> Shown:
        """The issue as it is now, read again only when a file it depends on has changed."""
        with self._lock:
            before = fingerprint(self._watched())
            current = self._shown
            if current is not None and current.version == before + fingerprint(self._named):
                return current
            shown = self._load()
            # The files the issue names are known once it is read; if anything else moved
            # meanwhile, the version stays stale and the page reloads once more.
            after = fingerprint(self._watched())
            version = (before if after == before else "stale") + fingerprint(self._named)
            self._shown = replace(shown, version=version)
            return self._shown

    def _load(self) -> Shown:
        shown = self.path.as_posix()
        if self.path.is_relative_to(self.root):
            shown = self.path.relative_to(self.root).as_posix()  # until the settings are read
        try:
            site = Site.open(self.root)  # newsroom.toml again: the theme may have changed
            try:
                shown = issues.shown_path(self.path, site.config)
                return self._render(site, shown)
            finally:
                site.close()
        except ProblemsError as exc:
            return Shown("", shown, problems=tuple(str(p) for p in exc.problems))
        except NewsroomError as exc:
            return Shown("", shown, problems=(str(exc),))
        except Exception as exc:  # a bug of ours: on the page, and the page keeps watching
            log.exception("preview of %s", shown)
            return Shown("", shown, problems=(f"unexpected {type(exc).__name__}: {exc}",))

    def _render(self, site: Site, shown: str) -> Shown:
        config = site.config
        clash = issues.slug_problems([self.path], config).get(self.path, [])
        try:
            issue = issues.load_issue(self.path, config)
        except ProblemsError as exc:
            raise ProblemsError([*exc.problems, *clash]) from None
        logo = config.theme.logo
        self._named = [
            *(
                self.path.parent / b.data.source
                for b in issue.blocks
                if isinstance(b.data, blocks.Supporters) and b.data.source
            ),
            *(picture.path for picture in issue.images.values()),  # issues/images/…
            *([logo.path] if logo is not None else []),  # the theme's logo file
        ]
        known = lists.read_lists(site.lists_file)
        wrong = [*preflight.unknown_lists(issue, shown, known), *clash]
        if wrong:
            raise ProblemsError(wrong)
        rendered = rendering.render(issue, config)
        key, fields = outbox.preview_for(site, rendered, self.address, self.clock())
        return Shown(
            "",
            shown,
            warnings=tuple(str(w) for w in preflight.warnings(issue, rendered, shown)),
            rendered=rendered,
            key=key,
            fields=fields,
            web=rendering.web_page(issue, config),
            sender=parseaddr(config.text("site.sender"))[0] or config.text("site.name"),
        )


class Pages:
    """The preview's routes."""

    def __init__(self, preview: Preview) -> None:
        self.preview = preview

    def index(self, request: Request) -> Response:
        shown = self.preview.shown()
        labels = shown.labels()
        asked = request.query_params.get("variant", "")
        key = asked if asked in labels else shown.key
        context: dict[str, Any] = {"shown": shown, "labels": labels, "key": key, "asked": asked}
        context |= {"frames": [], "inbox_line": None, "text": ""}
        if shown.rendered is not None:
            context |= self._variant(shown, shown.rendered, key)
        return frames.page(
            "issue", watch="/version", version=shown.version, here="preview", **context
        )

    @staticmethod
    def _variant(shown: Shown, rendered: Rendered, key: str) -> dict[str, Any]:
        """What the page shows of variant KEY: its four frames, and for an email the inbox
        line and text part as the sample recipient gets them."""
        if key == "public":
            return {"frames": _frames(key)}
        variant, fill, fields = rendered.variants[key], personalise.personalise, shown.fields
        line = {
            "sender": shown.sender,
            "subject": fill(variant.subject, fields, html=False),
            "preheader": fill(rendered.issue.summary, fields, html=False),
            "date": blocks.date_words(rendered.issue.date),
        }
        text = fill(variant.text, fields, html=False)
        return {"frames": _frames(key), "inbox_line": line, "text": text}

    def frame(self, request: Request) -> Response:
        key, scheme = request.path_params["key"], request.path_params["scheme"]
        document = self.preview.shown().document(key) if VARIANT.fullmatch(key) else None
        if document is None or scheme not in SCHEMES:
            return frames.page("missing", status=404, what="No such variant of this issue.")
        return frames.frame(frames.force_scheme(document, scheme), frames.PREVIEW_IMAGES)

    def version(self, request: Request) -> Response:
        return frames.json({"version": self.preview.version()})


def _frames(key: str) -> list[dict[str, object]]:
    return [
        {
            "label": f"{where} ({width} px), {scheme}",
            "width": width,
            "height": 740 if width == PHONE else 900,
            "scheme": scheme,
            "src": f"/frame/{key}/{scheme}",
        }
        for scheme in SCHEMES
        for where, width in (("Phone", PHONE), ("Desktop", DESKTOP))
    ]


def create_app(
    root: Path,
    path: Path,
    *,
    address: str | None,
    clock: Clock,
    maildir: Path,
    host: str = "127.0.0.1",
) -> tuple[Starlette, Preview]:
    """The preview of PATH (an issue of the site in ROOT), with the inbox of MAILDIR at /inbox/."""
    preview = Preview(root, path, address, clock)
    pages = Pages(preview)
    routes: list[BaseRoute] = [
        Route("/", pages.index),
        Route("/frame/{key}/{scheme}", pages.frame),
        Route("/version", pages.version),
        *frames.asset_routes(),
        *inbox.routes(inbox.Inbox(maildir), has_preview=True),
        Route("/inbox", lambda request: RedirectResponse("/inbox/")),
    ]
    return frames.local_app(routes, host), preview
