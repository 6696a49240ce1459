"""RSS 2.0 and Atom feeds of the public archive (feedgen): full content of the public variant,
GUIDs that never change (the issue's web address, which its slug fixes), one feed per site and
one per public list.

Dates are the issues' publication instants (`Issue.published`: noon in the site's time zone for
a date alone, so the day is right for readers east and west), and the feed's own `updated` is
the newest of them, so the same issues always give the same bytes (static hosts and caches see
no false changes).
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from feedgen.feed import FeedGenerator

from newsroom.settings import Config
from newsroom.web.archive import Published

GENERATOR = "newsroom"
RSS = "application/rss+xml"


def _generator(
    config: Config, issues: Sequence[Published], path: str, title: str, kind: str
) -> FeedGenerator:
    base = config.text("site.base_url").rstrip("/")
    feed = FeedGenerator()
    feed.id(f"{base}{path}")
    feed.title(title)
    feed.subtitle(config.text("site.description") or title)  # RSS needs a description
    # feedgen makes RSS's channel <link> of the last link given: the site, not the feed itself
    # (RSS 2.0: "the URL to the HTML website corresponding to the channel").
    feed.link(href=f"{base}{path}", rel="self", type=kind)
    feed.link(href=f"{base}/", rel="alternate")
    # RFC 4287 4.1.1: an Atom feed names its author, unless every entry does.
    feed.author({"name": config.text("site.name"), "uri": f"{base}/"})
    feed.language(config.text("site.lang"))
    feed.generator(GENERATOR)
    newest = max((p.issue.published for p in issues), default=None)
    if newest is not None:
        feed.updated(newest)
    for published in issues:  # newest first, as given
        entry = feed.add_entry(order="append")
        url = f"{base}/issues/{published.issue.slug}/"
        entry.id(url)
        entry.guid(url, permalink=True)
        entry.title(published.title)
        entry.link(href=url, rel="alternate")
        entry.published(published.issue.published)
        entry.updated(published.issue.published)
        summary = published.summary or published.title  # plain text from the front matter
        # RSS readers show <description> as HTML (RSS 2.0 allows entity-encoded HTML there), so
        # the text is escaped to stay text; Atom's <summary> with no type is text already
        # (RFC 4287 section 3.1.1) and escaping it again would show the entities.
        entry.summary(html.escape(summary) if kind == RSS else summary)
        entry.content(published.content_html, type="html")
    return feed


def rss(
    config: Config, issues: Sequence[Published], path: str = "/feed.xml", name: str = ""
) -> bytes:
    """The RSS 2.0 feed of ISSUES (newest first), served at PATH."""
    title = _title(config, name)
    return bytes(_generator(config, issues, path, title, RSS).rss_str(pretty=True))


def atom(
    config: Config, issues: Sequence[Published], path: str = "/atom.xml", name: str = ""
) -> bytes:
    """The Atom feed of ISSUES (newest first), served at PATH."""
    title = _title(config, name)
    return bytes(
        _generator(config, issues, path, title, "application/atom+xml").atom_str(pretty=True)
    )


def _title(config: Config, list_name: str) -> str:
    site = config.text("site.name")
    return f"{site}: {list_name}" if list_name else site
