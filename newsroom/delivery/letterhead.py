"""Who a mailing comes from: its From and Reply-To, its List-Id and the list its footer names —
the site's, or its first list's own when lists.toml gives that list a sender (issue #16, item 4).

The first list of an expression is the first it names outside any `not`, in reading order, saved
segments expanded where they stand (`segments.addressed_lists`): `disability-group or
tag:access-needs` is the Disability Group's, `not clp-secretaries and all-members` all-members'.
An expression of tags alone names no list and sends as the site, with the List-Id `news.HOST`.

`send --from` chooses another of the configured senders — `site`, or a list with a sender of its
own, by slug or by address — and changes only From and Reply-To: the List-Id and the footer still
name the list the mailing goes to. The letterhead is chosen when the mailing is made and kept on
it, so a resumed mailing (or a worker taking it up) sends as it began, whatever lists.toml says
by then.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import formataddr, parseaddr
from urllib.parse import urlsplit

from newsroom import segments
from newsroom.delivery import readiness
from newsroom.errors import NewsroomError, Problem
from newsroom.models import Mailing
from newsroom.people.lists import ListSpec
from newsroom.settings import Config

SITE = "site"  # the --from choice of the site's own sender


@dataclass(frozen=True)
class Letterhead:
    sender: str  # the From: value, "Name <address>"
    reply_to: str  # the Reply-To: value; "" for none
    list_id: str  # RFC 2919 List-Id: "Name <slug.host>"
    list_name: str  # the list the footer names; "" when the mailing names none
    chosen: str = SITE  # whose sender it is: "site" or a list's slug

    @property
    def address(self) -> str:
        return parseaddr(self.sender)[1]


def senders(config: Config, specs: Mapping[str, ListSpec]) -> dict[str, tuple[str, str]]:
    """The configured senders, the site's first: choice → (From, Reply-To)."""
    found = {SITE: (config.text("site.sender"), config.text("site.reply_to"))}
    for slug, spec in specs.items():
        if spec.sender:
            found[slug] = (spec.sender, spec.reply_to)
    return found


def choose(
    config: Config,
    specs: Mapping[str, ListSpec],
    node: segments.Node | None,
    wanted: str | None = None,
) -> Letterhead:
    """The letterhead of a mailing to NODE (None: to nobody yet, as `preview`), its sender
    the first list's own, the site's, or WANTED's (`--from`: a choice or an address)."""
    first = next((s for s in segments.addressed_lists(node) if s in specs), None) if node else None
    spec = specs[first] if first else None
    ident = list_id(config, first, spec.name if spec else "")
    if wanted is not None:
        chosen = pick(config, specs, wanted)
    elif spec is not None and spec.sender:
        chosen = first or SITE
    else:
        chosen = SITE
    if chosen == SITE and spec is not None and spec.reply_to and not spec.sender:
        # A list may want replies elsewhere while it sends as the site.
        return Letterhead(config.text("site.sender"), spec.reply_to, ident, spec.name, SITE)
    sender, reply_to = senders(config, specs).get(chosen, (config.text("site.sender"), ""))
    return Letterhead(sender, reply_to, ident, spec.name if spec else "", chosen)


def warnings(config: Config, specs: Mapping[str, ListSpec]) -> list[Problem]:
    """`check`'s and `send`'s warnings about the lists that send as themselves (readiness.py)."""
    return readiness.list_sender_warnings(
        config, [readiness.ListSender(s.slug, s.sender, s.line) for s in specs.values() if s.sender]
    )


def pick(config: Config, specs: Mapping[str, ListSpec], wanted: str) -> str:
    """The configured sender `--from WANTED` names: `site`, a list's slug, or an address one of
    them sends from; anything else is an error listing the choices."""
    choices = senders(config, specs)
    if wanted in choices:
        return wanted
    address = parseaddr(wanted)[1].lower()
    by_address = [
        key for key, (sender, _) in choices.items() if parseaddr(sender)[1].lower() == address
    ]
    if address and len(by_address) == 1:
        return by_address[0]
    listed = "; ".join(f"{key} ({sender})" for key, (sender, _) in choices.items())
    why = "is the address of more than one" if len(by_address) > 1 else "is not one"
    raise NewsroomError(
        f"--from {wanted!r} {why} of the configured senders: give one of {listed} "
        '(a list sends as itself with sender = "..." in subscribers/lists.toml)'
    )


def list_id(config: Config, slug: str | None, name: str) -> str:
    """RFC 2919 List-Id: the list's name and `<slug.site-host>`; the site's name and
    `<news.site-host>` for a mailing that names no list."""
    host = urlsplit(config.text("site.base_url")).hostname or "localhost"
    if slug is None:
        return formataddr((config.text("site.name"), f"news.{host}"))
    return formataddr((name or config.text("site.name"), f"{slug}.{host}"))


def of_site(config: Config, expression: str) -> Letterhead:
    """The site's letterhead for EXPRESSION, the List-Id naming its first list: a mailing made
    before mailings kept their own (migration 0003), and whoever has no lists.toml at hand."""
    slugs = segments.addressed_lists(segments.parse(expression))
    return Letterhead(
        config.text("site.sender"),
        config.text("site.reply_to"),
        list_id(config, slugs[0] if slugs else None, config.text("site.name")),
        "",
    )


def of_mailing(config: Config, mailing: Mailing) -> Letterhead:
    """The letterhead MAILING was made with."""
    if not mailing.sender:
        return of_site(config, mailing.expression)
    return Letterhead(mailing.sender, mailing.reply_to, mailing.list_id, "", "")
