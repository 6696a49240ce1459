"""An issue rendered once per variant: email HTML (Jinja2 → MJML → mjml-python → css-inline),
the plain-text part and the public web fragment.

    rendered = render(issue, config)
    key = rendered.variant_for(lambda expression: recipient_matches(expression))
    variant = rendered.variants[key]          # .subject, .html, .text, .content_html
    personalise(variant.html, fields, html=True)
    rendered.public                           # web and feeds: no private, no only, no join links

Variant keys: "public"; "email" for a recipient who matches no `only` block; "email+1+3" for one
who matches the 1st and 3rd expressions of `rendered.only_expressions`. Email variants keep merge
fields as placeholders (`{{first_name|friend}}`, `{{unsubscribe_url}}`, `{{preferences_url}}`)
for `personalise`; the public variant has them replaced by their fallbacks.
"""

from __future__ import annotations

import html as htmllib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from itertools import combinations
from typing import Any

import css_inline
import mjml

from newsroom.compose import blocks, images, markup, personalise, plaintext, templating
from newsroom.compose.issues import Block, Issue, Markdown, Node
from newsroom.compose.personalise import placeholder
from newsroom.compose.views import VIEWS, Audience, PrivateNote, Seen, walk
from newsroom.settings import Config

DARK_MODE_META = (
    '<meta name="color-scheme" content="light dark">'
    '<meta name="supported-color-schemes" content="light dark">'
)


@dataclass(frozen=True)
class Variant:
    key: str
    subject: str
    html: str  # the whole email document
    text: str  # the plain-text part
    content_html: str  # the issue's content alone (web page, feeds)


@dataclass(frozen=True)
class Rendered:
    issue: Issue
    variants: dict[str, Variant]
    only_expressions: tuple[str, ...]

    @property
    def public(self) -> Variant:
        return self.variants["public"]

    def variant_for(self, matches: Callable[[str], bool]) -> str:
        """The email variant key for a recipient; MATCHES says if they match an only expression."""
        chosen = [str(i) for i, e in enumerate(self.only_expressions, 1) if matches(e)]
        return "+".join(["email", *chosen])


@cache
def _inliner() -> css_inline.CSSInliner:
    # No remote stylesheets (nothing is fetched while rendering); keep @media (responsive, dark mode) and <link> tags.
    return css_inline.CSSInliner(
        load_remote_stylesheets=False, keep_at_rules=True, keep_link_tags=True
    )


def only_expressions(issue: Issue) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for block in issue.blocks:
        if isinstance(block.data, blocks.Only):
            seen.setdefault(block.data.expression)
    return tuple(seen)


def render(issue: Issue, config: Config, list_name: str = "") -> Rendered:
    """Every variant of ISSUE: the public one and one per combination of only blocks. The
    email footers say the reader subscribed to LIST_NAME (the mailing's first list, issue #16
    item 4) when one is given."""
    expressions = only_expressions(issue)  # at most issues.MAX_ONLY: load_issue checks
    css = email_css(config)  # the theme's, the same for every variant
    with markup.reuse():  # each text parsed once for all the variants
        variants = {"public": render_variant(issue, config, Audience(False), "public", css=css)}
        for size in range(len(expressions) + 1):
            for chosen in combinations(range(len(expressions)), size):
                key = "+".join(["email", *(str(i + 1) for i in chosen)])
                audience = Audience(True, frozenset(expressions[i] for i in chosen))
                variants[key] = render_variant(issue, config, audience, key, list_name, css)
    return Rendered(issue, variants, expressions)


def email_css(config: Config) -> str:
    """The email's stylesheet (email/style.css) in the site's theme colours."""
    theme = config.theme.context(config.text("site.base_url"))
    return templating.render(config, "email/style.css", theme=theme)


def render_variant(
    issue: Issue,
    config: Config,
    audience: Audience,
    key: str,
    list_name: str = "",
    css: str | None = None,
) -> Variant:
    """One variant; CSS is email_css(config), given when many variants share it."""
    fields = markup.FieldTable()
    unsubscribe = _reserve(fields, "unsubscribe_url")
    preferences = _reserve(fields, "preferences_url")
    context = page_context(issue, config, audience, fields)
    items = context["items"]
    subject = fields.protect(issue.title)
    document = templating.render(
        config,
        "email/issue.mjml.j2",
        **context,
        subject=subject,
        preheader=fields.protect(issue.summary),
        public=not audience.email,
        unsubscribe_url=unsubscribe,
        preferences_url=preferences,
        css=email_css(config) if css is None else css,
        list_name=list_name,
    )
    base = context["base_url"]
    html = email_html(images.in_email(document, issue.images, base), config)
    content = templating.render(config, "web/content.html.j2", items=items)
    content = images.on_web(content, issue.images, base)
    text = plaintext.render(issue, config, audience, fields, list_name)
    public = not audience.email
    return Variant(
        key,
        _finish(subject, fields, public, html=False),
        _finish(html, fields, public, html=True),
        _finish(text, fields, public, html=False),
        _finish(content, fields, public, html=True),
    )


def _reserve(fields: markup.FieldTable, name: str) -> str:
    fields.fields.append((name, None))
    return f"\ue000{len(fields.fields) - 1}\ue001"


def email_html(mjml_source: str, config: Config | None = None, templates: str = "email/") -> str:
    """MJML to email HTML: compiled by mjml-python, CSS inlined, dark-mode meta tags added.
    MJML that does not compile is a problem of the site's own TEMPLATES (the names starting
    so) when it has some (CONFIG's), else a bug of ours."""
    try:
        # fonts={}: MJML links Google Fonts for a stack naming Roboto, Lato, Open Sans, Ubuntu
        # or Droid Sans; a reader's own font of that name needs no font host (issue #14)
        html = mjml.mjml2html(mjml_source, fonts={})
    except ValueError as exc:
        raise templating.mjml_problem(config, exc, templates) from None
    html = _inliner().inline(html)
    return html.replace("<head>", "<head>" + DARK_MODE_META, 1)


def _finish(text: str, fields: markup.FieldTable, public: bool, html: bool) -> str:
    """Sentinels become placeholders ({{first_name|friend}}), or their fallback when public."""
    if html:  # a literal "{{" (from an entity in the Markdown) must never become a placeholder
        text = text.replace("{{", "&#123;{")

    def swap(match: re.Match[str]) -> str:
        name, fallback = fields.fields[int(match.group(1))]
        if public:
            value = fallback if fallback is not None else personalise.AUTHOR_FIELDS.get(name, "")
            return htmllib.escape(value) if html else value
        if fallback is not None and html:
            fallback = htmllib.escape(fallback)
        return placeholder(name, fallback)

    return markup.SENTINEL.sub(swap, text)


def page_context(
    issue: Issue, config: Config, audience: Audience, fields: markup.FieldTable
) -> dict[str, Any]:
    base = config.text("site.base_url").rstrip("/")
    outline = markup.Outline()
    return {
        "lang": config.text("site.lang"),
        "site_name": config.text("site.name"),
        "postal_address": config.text("site.postal_address"),
        "base_url": base,
        "theme": config.theme.context(base),
        "web_url": web_url(issue, config),
        "title": fields.protect(issue.title),
        "date_words": blocks.date_words(issue.date),
        "items": list(_items(issue.body, issue, config, audience, fields, outline)),
    }


def web_url(issue: Issue, config: Config) -> str:
    return f"{config.text('site.base_url').rstrip('/')}/issues/{issue.slug}/"


def _items(
    nodes: Iterable[Node],
    issue: Issue,
    config: Config,
    audience: Audience,
    fields: markup.FieldTable,
    outline: markup.Outline,
) -> Iterable[dict[str, Any]]:
    seen = Seen(issue, config, audience, fields)
    for node in walk(nodes, audience):
        if isinstance(node, PrivateNote):
            yield {"kind": "private", "note": node.html}
        elif isinstance(node, Markdown):
            yield {"kind": "markdown", "html": markup.to_html(node.text, fields, outline)}
        elif isinstance(node, Block):
            yield _block_item(node, seen, outline)


def _block_item(block: Block, seen: Seen, outline: markup.Outline) -> dict[str, Any]:
    """What a block's email and web templates get: its own values (views.VIEWS) and these."""
    view = VIEWS[block.type]
    item: dict[str, Any] = {"kind": block.type, "title": seen.fields.protect(block.title)}
    item["level"] = outline.level(2, 2) if block.title else outline.last
    body = view.body(block)
    if body is not None:
        item["html"] = markup.to_html(body, seen.fields, outline, base=3) if body.strip() else ""
    return item | view.item(block, seen)


def web_page(issue: Issue, config: Config) -> str:
    """The public web page of an issue: the public variant in an accessible page of its own."""
    content = render_variant(issue, config, Audience(False), "public").content_html
    return templating.render(
        config,
        "web/page.html.j2",
        lang=config.text("site.lang"),
        site_name=config.text("site.name"),
        description=config.text("site.description"),
        base_url=config.text("site.base_url").rstrip("/"),
        postal_address=config.text("site.postal_address"),
        theme=config.theme.context(config.text("site.base_url")),
        title=public_text(issue.title),
        summary=public_text(issue.summary),
        date=issue.date,
        date_words=blocks.date_words(issue.date),
        content=content,
    )


def public_text(text: str) -> str:
    """TEXT with its merge fields replaced by their fallbacks, as the public variant shows it."""
    return markup.fill_public(text)
