"""The Jinja2 templates of emails and pages: a site's own `templates/` folder over the package's
(issue #14, item 2), one environment per site, and an error in a site's template as FILE:LINE.

    html = render(config, "email/issue.mjml.j2", title=..., items=...)  # raises ProblemsError

A file `templates/web/base.html` in the site folder wins over `newsroom/templates/web/base.html`
wherever that name is used: rendering an issue, the web app, the confirmation email. The package's
own is always reachable as `newsroom/NAME`, so an override may `{% extends "newsroom/web/index.html"
%}` and change one block. docs/templates.md lists the templates and the variables each gets.

A site's template is the operator's own file, trusted as newsroom.toml is; still, the environment
escapes HTML everywhere but in `.txt` templates, an undefined variable is an error
(StrictUndefined) rather than an empty string, and a file is read with a size bound, as UTF-8.
"""

from __future__ import annotations

import os
import tempfile
import traceback
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta

from newsroom import textfiles
from newsroom.compose.issues import Issue, load_issue
from newsroom.compose.markup import wrap
from newsroom.errors import Problem, ProblemsError
from newsroom.settings import Config

FOLDER = "templates"  # in the site folder, beside issues/
PACKAGE = "newsroom/"  # `newsroom/web/base.html` is always the package's own
MAX_TEMPLATE_BYTES = 256 * 1024  # the largest package template is under 4 KB


def folder(config: Config) -> Path:
    """The site's templates folder (it need not exist)."""
    return config.site_dir / FOLDER


def overrides(config: Config) -> list[str]:
    """The names of the templates in the site's folder (`web/base.html`), sorted."""
    root = folder(config)
    if not root.is_dir():
        return []
    found = []
    for directory, _subfolders, files in os.walk(root):
        for name in files:
            relative = Path(directory, name).relative_to(root).as_posix()
            if not any(part.startswith(".") for part in relative.split("/")):  # .swp, .DS_Store
                found.append(relative)
    return sorted(found)


# The pages of `preview --serve` and `newsroom inbox` are the volunteer's tool, not the
# organisation's look: web/frames.py loads them from the package alone, and no site overrides them.
TOOL_PAGES = "preview/"


def package_templates() -> list[str]:
    """The names of every template newsroom ships, which a site may override."""
    return sorted(n for n in _package_loader().list_templates() if not n.startswith(TOOL_PAGES))


def shown(name: str) -> str:
    """A site template's name as errors show it: relative to the site folder."""
    return f"{FOLDER}/{name}"


class SiteLoader(jinja2.BaseLoader):
    """The site's file for a name if it has one, else the package's; `newsroom/NAME` always
    the package's. Each template knows where it came from, so adding or removing a site file
    takes effect at the next render (a long-running `newsroom serve` included)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.package = _package_loader()

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str | None, Callable[[], bool] | None]:
        if template.startswith(PACKAGE):
            return self.package.get_source(environment, template.removeprefix(PACKAGE))
        path = self.root.joinpath(*jinja2.loaders.split_template_path(template))
        if path.is_file():
            return self._site_source(path, template)
        source, filename, fresh = self.package.get_source(environment, template)
        return source, filename, lambda: not path.exists() and (fresh is None or fresh())

    def _site_source(self, path: Path, template: str) -> tuple[str, str, Callable[[], bool]]:
        stamp = _stamp(path)
        text = textfiles.read(path, shown(template), MAX_TEMPLATE_BYTES)
        return text, str(path), lambda: _stamp(path) == stamp

    def list_templates(self) -> list[str]:
        return sorted(set(self.package.list_templates()))


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_mtime_ns, info.st_size


@lru_cache(maxsize=1)
def _package_loader() -> jinja2.PackageLoader:
    return jinja2.PackageLoader("newsroom", "templates")


def _autoescape(name: str | None) -> bool:
    # HTML-escaped everywhere (MJML, HTML, the CSS included into them) but in a text part.
    return not (name or "").endswith(".txt")


@lru_cache(maxsize=32)
def _environment(site_dir: Path) -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=SiteLoader(site_dir / FOLDER),
        autoescape=_autoescape,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["wrap"] = wrap  # text parts: `{{ text|wrap("  * ", "    ") }}`, 72 columns
    return environment


def environment(config: Config) -> jinja2.Environment:
    """The one environment of CONFIG's site: made once, reused by every render."""
    return _environment(config.site_dir)


def render(config: Config, name: str, /, **context: Any) -> str:
    """Template NAME rendered; a mistake in one of the site's templates is a ProblemsError
    `templates/FILE:LINE: message`. One in the package's own is a bug, raised as it is."""
    try:
        return environment(config).get_template(name).render(context)
    except ProblemsError:
        raise
    except Exception as exc:
        problem = site_problem(exc, folder(config))
        if problem is None:
            raise
        raise ProblemsError([problem]) from None


def site_problem(exc: BaseException, root: Path) -> Problem | None:
    """EXC as a problem of the site's template it happened in, or None if it came from none:
    a syntax error names its file and line; an error while rendering (an undefined variable, a
    missing include) is found in the traceback, whose frames Jinja2 gives template lines."""
    where = str(root) + os.sep
    if isinstance(exc, jinja2.TemplateSyntaxError) and (exc.filename or "").startswith(where):
        name = Path(exc.filename or "").relative_to(root).as_posix()
        return Problem(shown(name), exc.lineno, _words(exc))
    found = [
        (frame.f_code.co_filename, line)
        for frame, line in traceback.walk_tb(exc.__traceback__)
        if frame.f_code.co_filename.startswith(where)
    ]
    if not found:
        return None
    filename, line = found[-1]  # the innermost: an include's own line, not the includer's
    name = Path(filename).relative_to(root).as_posix()
    return Problem(shown(name), line, _words(exc))


def _words(exc: BaseException) -> str:
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return f"template syntax: {exc.message}"
    if isinstance(exc, jinja2.UndefinedError):
        return f"{exc.message}: docs/templates.md lists the variables each template gets"
    if isinstance(exc, jinja2.TemplateNotFound):
        return f"no template {exc.name!r} to include (docs/templates.md lists them)"
    if isinstance(exc, jinja2.TemplateError):
        return exc.message or type(exc).__name__
    return f"{type(exc).__name__}: {exc}"


def referenced(config: Config) -> Iterator[tuple[str, str]]:
    """(site template, name it extends, includes or imports) for each literal reference."""
    env = environment(config)
    for name in overrides(config):
        try:
            source = env.loader.get_source(env, name)[0]  # type: ignore[union-attr]
            tree = env.parse(source)
        except (jinja2.TemplateError, ProblemsError):
            continue  # reported when it is compiled
        for other in jinja2.meta.find_referenced_templates(tree):
            if other is not None:
                yield name, other


def mjml_problem(config: Config | None, exc: ValueError, prefix: str = "email/") -> Exception:
    """What to raise when MJML made from the templates named PREFIX... does not compile: a
    problem naming the site's templates when it overrides some (MJML errors carry no line of
    ours), else EXC, for the package's own templates always compile."""
    mine = [shown(n) for n in overrides(config) if n.startswith(prefix)] if config else []
    if not mine:
        return exc
    return ProblemsError(
        [Problem(", ".join(mine), 0, f"the MJML these templates make does not compile: {exc}")]
    )


# An issue with every block type and every key, rendered by `newsroom check` with a site's own
# issue templates, so a mistake in one shows before an issue using that block is sent.
SPECIMEN = """\
---
title: Specimen issue for {{first_name|friend}}
date: 2000-01-01
to: all-members
summary: Every block newsroom knows, to check a site's templates with.
---
Dear {{first_name|friend}}, a paragraph with [a link](https://example.org/) and *emphasis*.

## A heading

::: statement A statement
by: A. Person MP
role: Chair
date: 2000-01-01

“A quote.”
:::

::: statement
by: Another Person

An untitled statement.
:::

::: meeting A meeting
when: 2000-01-05 18:30
until: 20:00
where: Online
register: https://example.org/register
join: https://example.org/join

Why it matters.
:::

::: supporters Supporters
- One organisation
- Another organisation
:::

::: motion A motion
by: All members meeting
passed: 2000-01-01

1. A point.
a) A lettered point.
:::

::: action Take part
url: https://example.org/act
button: Sign the petition

Why it matters.
:::

::: private
For subscribers only.
:::

::: only all-members
For some subscribers only.
:::
"""


def specimen() -> Issue:
    """SPECIMEN as an Issue, read from a file as every issue is."""
    with tempfile.TemporaryDirectory() as temporary:
        path = Path(temporary, "2000-01-01-specimen.md")
        path.write_text(SPECIMEN, encoding="utf-8")
        return load_issue(path, None, shown="specimen")


def source(config: Config, name: str) -> str:
    """NAME's text as it stands, not rendered (`web/site.css`): the site's file or ours."""
    env = environment(config)
    assert env.loader is not None
    return env.loader.get_source(env, name)[0]
