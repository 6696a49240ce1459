"""The public archive: which issues are published, their public pages, feeds and calendar files,
and `newsroom build`, which writes all of it as static files for any web host.

An issue is published once its publication instant has come (`Issue.published`: its date at
noon in the site's time zone, or the time its front matter gives): an issue dated later is a
draft and appears nowhere. Only the public variant is ever used (rendering.py leaves out
`private` and `only` blocks, join links and merge fields). A list's welcome issue (`welcome` in
lists.toml) is an email to someone who has just joined, never published: a feed's readers
have not just joined anything.

The images every correct issue names are published too, drafts' included: an email can go out
before its issue's publication instant, and its pictures must show then. Their addresses carry
a digest of their content (images.py), so nobody finds a draft's picture by guessing its name.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from sqlalchemy import select

from newsroom import segments
from newsroom.compose import blocks, calendar, images, markup, rendering
from newsroom.compose.issues import Issue, load_all, load_issue, shown_path, slug_problems
from newsroom.compose.markup import fill_public
from newsroom.compose.rendering import Audience
from newsroom.database import transaction
from newsroom.errors import NewsroomError
from newsroom.models import Mailing, MailingStatus
from newsroom.people import welcomes
from newsroom.site import Site

log = logging.getLogger(__name__)
MARKER = ".newsroom-build"  # in a folder `newsroom build` wrote, so it may write there again


@dataclass(frozen=True)
class Published:
    """One issue as the public sees it."""

    issue: Issue
    title: str
    summary: str
    date_words: str
    content_html: str  # the public variant's content (feeds)
    page_html: str  # the whole web page
    ics: dict[str, bytes]  # meeting-N.ics -> calendar file

    @property
    def slug(self) -> str:
        return self.issue.slug

    @property
    def date(self) -> date:
        return self.issue.date


def publish(issue: Issue, site: Site) -> Published:
    config = site.config
    with markup.reuse():  # the content and the page render the same variant
        content = rendering.render_variant(issue, config, Audience(False), "public").content_html
        page = rendering.web_page(issue, config)
    return Published(
        issue,
        fill_public(issue.title),
        fill_public(issue.summary),
        blocks.date_words(issue.date),
        content,
        page,
        calendar.ics_files(issue, config),
    )


class Archive:
    """The published issues of a site, rendered once and again only when issues/ changes."""

    def __init__(self, site: Site, clock: Callable[[], datetime]) -> None:
        self.site = site
        self.clock = clock
        self._signature: tuple[tuple[str, int, int], ...] | None = None
        self._all: list[Published] = []
        self._pictures: dict[str, images.Picture] = {}  # address -> picture, every issue's
        self.cache = site.root / images.CACHE

    def issues(self) -> list[Published]:
        """Published issues, newest first."""
        signature = self._files()
        if signature != self._signature:
            self._all = self._load()
            self._signature = signature
        now = self.clock()
        return [p for p in self._all if p.issue.published <= now]

    def get(self, slug: str) -> Published | None:
        return next((p for p in self.issues() if p.slug == slug), None)

    def sent_to(self, list_slug: str) -> list[Published]:
        """Published issues that a mailing sent to LIST_SLUG (named in its expression, not
        negated), newest first."""
        slugs = sent_to(self.site, list_slug)
        return [p for p in self.issues() if p.slug in slugs]

    def image(self, address: str) -> tuple[Path, str] | None:
        """The file to answer /ADDRESS with (made once, kept in the cache) and its media type,
        or None when no correct issue names such an image."""
        self.issues()  # brings the pictures up to date
        picture = self._pictures.get(address)
        if picture is None:
            return None
        try:
            return images.publish(picture, self.cache)[address], picture.media_type
        except NewsroomError as exc:  # changed since, or cannot be decoded: the rest is served
            log.warning("image not published: %s", exc)
            return None

    def image_files(self) -> dict[str, Path]:
        """Every picture's published copies (address -> file in the cache), made if need be."""
        self.issues()
        files: dict[str, Path] = {}
        for picture in dict.fromkeys(self._pictures.values()):
            files |= images.publish(picture, self.cache)
        return files

    def _files(self) -> tuple[tuple[str, int, int], ...]:
        """What the rendered archive depends on: each file in issues/ and each picture."""
        folder = self.site.issues_dir
        if not folder.is_dir():
            return ()
        found = []
        paths = [p for p in sorted(folder.iterdir()) if p.is_file()]
        paths.append(self.site.lists_file)  # lists.toml: which issues are welcomes
        for path in [*paths, *sorted({p.path for p in self._pictures.values()})]:
            try:
                info = path.stat()
            except OSError:  # a picture since deleted
                found.append((str(path), 0, -1))
                continue
            found.append((str(path), info.st_mtime_ns, info.st_size))
        return tuple(found)

    def _load(self) -> list[Published]:
        """Every correct issue rendered. One bad file never takes the archive down: an issue
        with mistakes is left out and logged, and so is every file of a slug two files share
        (which of them the address means is anybody's guess, so neither is served)."""
        config = self.site.config
        paths = sorted(self.site.issues_dir.glob("*.md"))
        clashes = slug_problems(paths, config)
        welcoming = welcomes.issue_paths(self.site)
        found = []
        for path in paths:
            if path.resolve() in welcoming:
                continue
            clash = clashes.get(path.resolve())
            if clash:
                log.error("not published: %s", clash[0])
                continue
            try:
                found.append(publish(load_issue(path, config), self.site))
            except NewsroomError as exc:  # a draft with mistakes, unreadable, or just deleted
                log.warning("not published: %s", str(exc).splitlines()[0])
            except Exception:  # a bug of ours: the rest of the archive is still served
                log.exception("not published: %s", shown_path(path, config))
        self._pictures = {
            copy.address: picture
            for published in found
            for picture in published.issue.images.values()
            for copy in picture.copies()
        }
        return sorted(found, key=lambda p: (p.issue.published, p.slug), reverse=True)


def sent_to(site: Site, list_slug: str) -> set[str]:
    """Slugs of the issues whose mailings were addressed to LIST_SLUG."""
    with transaction(site.engine) as session:
        rows = session.execute(
            select(Mailing.issue_slug, Mailing.expression).where(
                Mailing.status != MailingStatus.CANCELLED,
                Mailing.frozen_at.is_not(None),  # a scheduled mailing has not gone to it yet
            )
        ).all()
    return {slug for slug, expression in rows if list_slug in addressed(expression)}


def addressed(expression: str) -> set[str]:
    """The lists an expression sends to: named outside any `not`."""
    try:
        node = segments.parse(expression)
    except NewsroomError:
        return set()
    found: set[str] = set()

    def visit(part: segments.Node) -> None:
        if isinstance(part, segments.ListRef):
            found.add(part.slug)
        elif isinstance(part, segments.And | segments.Or):
            for operand in part.operands:
                visit(operand)

    visit(node)
    return found


# -- newsroom build ------------------------------------------------------------------------------


@dataclass
class BuildReport:
    out: Path
    issues: int
    files: int


def check_out_folder(out: Path) -> None:
    """Refuse to write into a file, or a non-empty folder that an earlier build did not make."""
    if out.exists() and not out.is_dir():
        raise NewsroomError(f"{out} is a file: give a folder for the static site")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise NewsroomError(
            f"{out} is not empty and was not written by `newsroom build`: choose an empty or "
            "new folder (nothing in it was changed)"
        )


def build(site: Site, out: Path, files: Mapping[str, bytes | Path]) -> BuildReport:
    """Write FILES (relative path -> bytes, or a file to copy) as the whole content of OUT,
    replacing the previous build there."""
    check_out_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    for child in out.iterdir():  # only a folder with our marker gets here
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    (out / MARKER).write_text("Written by `newsroom build`; it replaces everything here.\n")
    for relative, data in files.items():
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, Path):
            shutil.copyfile(data, path)  # an image copy: copied from the cache, never held
        else:
            path.write_bytes(data)
    issues = sum(1 for name in files if name.startswith("issues/") and name.endswith("index.html"))
    return BuildReport(out, issues, len(files))


def strict_issues(site: Site) -> None:
    """Every issue file must be correct before a build: all problems are reported at once."""
    load_all(site)
