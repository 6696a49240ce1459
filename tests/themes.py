"""The example themes the tests render (issue #14): this project's own site (newsroom.toml and
theme/ at the root), the Disability Group's (tests/data/themes/disability-group/), and a site
with no [theme] at all (newsroom's own look)."""

from __future__ import annotations

import shutil
from pathlib import Path

from newsroom import site as sites
from newsroom.site import Site

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data" / "themes"
THEMES = {"newsroom": ROOT, "disability-group": DATA / "disability-group", "plain": None}
SURVEY = DATA / "2022-11-01-survey.md"  # a table, a quote, a motion and an action in one issue


def make_site(root: Path, name: str) -> Site:
    """A new site in ROOT with theme NAME, the example issues and the survey in its issues/.
    The caller's environment gives the database and the secret key (tests.conftest.site_dir)."""
    root.mkdir(parents=True)
    source = THEMES[name]
    if source is not None:
        shutil.copy(source / "newsroom.toml", root / "newsroom.toml")
        shutil.copytree(source / "theme", root / "theme")
    sites.init(root, None if source else "Plain Newsroom")
    for example in [*(ROOT / "issues").iterdir(), SURVEY]:
        shutil.copy(example, root / "issues" / example.name)
    return Site.open(root)
