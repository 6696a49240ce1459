"""What the web side's pages are rendered with, and a site's own templates checked before use
(issue #14, item 2): `newsroom check`, `newsroom serve` and `newsroom build` render every
template a site overrides — its issue templates with an issue holding every block, its pages
and its confirmation email with made-up values of the kinds the real ones have — so a mistake
is a `templates/FILE:LINE: message` before any reader or member meets it.

The samples below are the variables each page gets; docs/templates.md lists the same, and
tests/test_templates.py checks that every package template renders with them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import jinja2

from newsroom.compose import rendering, templating
from newsroom.errors import Problem, ProblemsError
from newsroom.models import MailingList
from newsroom.people import confirmation, consent
from newsroom.people.preferences import ListChoice
from newsroom.settings import Config
from newsroom.site import Site
from newsroom.web.archive import publish
from newsroom.web.security import CSP

NOT_TEMPLATES = {"web/site.css"}  # served as it is, never rendered
TEMPLATE_SUFFIXES = (".html", ".j2", ".mjml", ".txt", ".css")
EMAIL = "ann@example.org"


def base_context(config: Config) -> dict[str, Any]:
    """What every page gets (web/base.html and each page that extends it)."""
    return {
        "lang": config.text("site.lang"),
        "site_name": config.text("site.name"),
        "description": config.text("site.description"),
        "postal_address": config.text("site.postal_address"),
        "theme": config.theme.context(urlsplit(config.text("site.base_url")).path.rstrip("/")),
        "root": urlsplit(config.text("site.base_url")).path.rstrip("/"),
        "csp": CSP,
        "token_page": False,  # a page a link token opens: noindex, no referrer
    }


def form_context(config: Config, lists: list[MailingList], form_token: str) -> dict[str, Any]:
    """What the subscribe form (web/form.html) gets beyond every page's, before any input."""
    return {
        "lists": lists,
        "form_token": form_token,
        "consent_text": consent.site_consent_text(config),
        "error": "",
        "values": {"email": "", "name": "", "lists": []},
    }


def samples(site: Site, issues: list[Any]) -> dict[str, list[dict[str, Any]]]:
    """Each page's own variables (beyond base_context), in each case its handler renders."""
    config = site.config
    lists = [MailingList(slug="all-members", name="All members", description="News", public=True)]
    form = form_context(config, lists, "FORM-TOKEN")
    choice = ListChoice("all-members", "All members", "News", True, "confirmed")
    pending = ListChoice("disability-group", "Disability Group", "", True, "pending")
    names = ["All members"]
    return {
        "index": [{"issues": issues, "dynamic": True, **form}, {"issues": [], "dynamic": False}],
        "subscribe": [form, {**form, "error": "Choose at least one list.", "values": {
            "email": EMAIL, "name": "Ann", "lists": ["all-members"]}}],
        "message": [{"title": "Check your inbox", "text": "An email is on its way."}],
        "confirm": [{"token_page": True, "email": EMAIL, "lists": names}],
        "confirmed": [{"token_page": True, "email": EMAIL, "lists": names}],
        "expired": [{"token_page": True}],
        "unsubscribe": [{"token_page": True, "email": EMAIL, "lists": lists_or_none}
                        for lists_or_none in (names, [])],
        "unsubscribed": [{"token_page": True, "left": ["all-members"]}],
        "preferences": [{"token_page": True, "email": EMAIL, "choices": [choice, pending],
                         "notice": "Saved.", "error": "Unknown action."}],
        "erase": [{"token_page": True, "email": EMAIL}],
    }  # fmt: skip


@dataclass
class Checked:
    """What checking a site's templates found."""

    names: list[str]  # the site's templates
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    @property
    def report(self) -> dict[str, Any]:
        return {
            "path": f"{templating.FOLDER}/",
            "errors": [str(p) for p in self.errors],
            "warnings": [str(p) for p in self.warnings],
            "templates": self.names,
        }

    @property
    def ok(self) -> str:
        if not self.names or self.errors:
            return ""
        return f"{templating.FOLDER}/: ok — {len(self.names)} of newsroom's templates overridden"


def check_templates(site: Site, now: datetime) -> Checked:
    """Compile every template of the site's templates/ folder and render each group of them
    (issue, pages, confirmation) with its sample values; nothing when the site has none."""
    config = site.config
    names = templating.overrides(config)
    checked = Checked(names)
    if not names:
        return checked
    known = set(templating.package_templates())
    used = {other for _name, other in templating.referenced(config)}
    for name in names:
        if name not in known and name not in used:
            checked.warnings.append(Problem(templating.shown(name), 0, f"warning: {_unused(name)}"))
        elif name not in NOT_TEMPLATES and name.endswith(TEMPLATE_SUFFIXES):
            _collect(checked.errors, partial(_compile, config, name))
    for group, render in _groups(site, now):
        if any(n.startswith(group) for n in names):
            _collect(checked.errors, render)
    checked.errors.sort(key=lambda p: (p.path, p.line))
    return checked


def _unused(name: str) -> str:
    return (
        f"newsroom has no template {name} and none of the site's templates includes it, so it "
        "is never used: docs/templates.md lists the templates a site can override"
    )


def _compile(config: Config, name: str) -> None:
    env = templating.environment(config)
    try:
        env.get_template(name)
    except jinja2.TemplateError as exc:
        problem = templating.site_problem(exc, templating.folder(config))
        if problem is None:
            raise
        raise ProblemsError([problem]) from None


def _collect(errors: list[Problem], render: Callable[[], object]) -> None:
    try:
        render()
    except ProblemsError as exc:
        errors.extend(p for p in exc.problems if p not in errors)


def _groups(site: Site, now: datetime) -> Iterable[tuple[tuple[str, ...], Callable[[], object]]]:
    config = site.config

    def issue() -> None:
        rendering.render(templating.specimen(), config)
        rendering.web_page(templating.specimen(), config)

    def pages() -> None:
        base = base_context(config)
        for page, contexts in samples(site, [publish(templating.specimen(), site)]).items():
            for context in contexts:
                templating.render(config, f"web/{page}.html", **{**base, **context})

    def confirm() -> None:
        confirmation.render(config, confirmation.sample_context(config, now))

    yield ("email/", "web/content.html.j2", "web/page.html.j2"), issue
    yield ("web/",), pages
    yield ("confirm.",), confirm


def refuse_broken(site: Site, now: datetime) -> None:
    """Raise ProblemsError when one of the site's templates has a mistake (serve, build)."""
    checked = check_templates(site, now)
    if checked.errors:
        raise ProblemsError(checked.errors)
