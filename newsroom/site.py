"""A newsroom site: its folder, settings and database, and `newsroom init` that makes one."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from sqlalchemy import Engine

from newsroom import database, settings
from newsroom.errors import NewsroomError

LISTS_TOML = """\
# The lists of this site, one table per list slug. `public` lists are offered on the subscribe
# page; `opt_in = "double"` sends a confirmation email before anyone is subscribed. A list may
# send as itself: sender = "Disability Group <disability@your-organisation.org>", and reply_to.
# Name segment expressions in subscribers/segments.toml ([north] expr = "tag:north") and use
# them as segment:north (see the README, "Saved segments").

[all-members]
name = "All members"
description = "Bulletins and news for every member"
public = true
opt_in = "double"

[disability-group]
name = "Disability Group"
description = "News and meetings of the Disability Group"
public = true
opt_in = "double"

[clp-secretaries]
name = "CLP secretaries"
description = "Statements and briefings for constituency party secretaries"
public = false
opt_in = "double"
"""

GITIGNORE = (
    ".env\nnewsroom.db\nnewsroom.db-*\nmaildir/\njournal/\ncache/\n*.pem\n"  # *.pem: DKIM keys
)


@dataclass
class Site:
    """One site folder: settings resolved, database opened on first use."""

    root: Path
    config: settings.Config = field(repr=False)

    @classmethod
    def open(cls, root: Path | str) -> Site:
        root = Path(root).resolve()
        return cls(root, settings.load(root))

    @cached_property
    def engine(self) -> Engine:
        return database.connect(self.config.database_url)

    def close(self) -> None:
        if "engine" in self.__dict__:
            self.engine.dispose()

    @property
    def issues_dir(self) -> Path:
        return self.root / "issues"

    @property
    def lists_file(self) -> Path:
        return self.root / "subscribers" / "lists.toml"

    @property
    def segments_file(self) -> Path:
        """Saved segments (people/savedsegments.py); optional."""
        return self.root / "subscribers" / "segments.toml"


@dataclass
class InitReport:
    created: list[str]
    migrations: list[str]

    @property
    def changed(self) -> bool:
        return bool(self.created or self.migrations)


def init(root: Path | str, name: str | None = None) -> InitReport:
    """Make a site in ROOT, or finish one half made; running it again changes nothing."""
    root = Path(root).resolve()
    config_path = root / settings.CONFIG_FILE
    if root.exists() and not root.is_dir():
        raise NewsroomError(f"{root} is a file, not a folder")
    if not config_path.exists() and root.is_dir() and _looks_like_other_site(root):
        raise NewsroomError(
            f"{root} already holds files of another site (issues/ or subscribers/) but no "
            f"{settings.CONFIG_FILE}: choose an empty folder, or add a {settings.CONFIG_FILE} by hand"
        )
    created: list[str] = []
    root.mkdir(parents=True, exist_ok=True)
    overrides = {"site.name": name} if name else {}
    _write_new(root, settings.CONFIG_FILE, settings.render_toml(overrides), created)
    existing = settings.load(root)  # an existing newsroom.toml must be valid before anything else
    if name and existing.text("site.name") != name:
        raise NewsroomError(
            f"{config_path}: this folder holds a different site ({existing.text('site.name')!r}, "
            f"not {name!r}): choose another folder"
        )
    _write_new(root, "subscribers/lists.toml", LISTS_TOML, created)
    if not (root / "issues").is_dir():
        (root / "issues").mkdir()
        created.append("issues/")
    _write_new(root, ".gitignore", GITIGNORE, created)
    env_path = root / settings.ENV_FILE
    if not env_path.exists():
        _write_secret_env(env_path)
        created.append(settings.ENV_FILE)
    site = Site.open(root)
    migrations = database.upgrade(site.engine)
    site.close()
    return InitReport(created, migrations)


def _looks_like_other_site(root: Path) -> bool:
    return (root / "subscribers" / "lists.toml").exists()


def _write_new(root: Path, relative: str, text: str, created: list[str]) -> None:
    path = root / relative
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    created.append(relative)


def _write_secret_env(path: Path) -> None:
    # 0600 from the first byte: the file is never readable by others, not even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("# Secrets of this site. Never commit this file (it is in .gitignore).\n")
        handle.write(f"NEWSROOM_SECRET_KEY={secrets.token_urlsafe(32)}\n")
        handle.write("# NEWSROOM_SMTP_PASSWORD=\n")
