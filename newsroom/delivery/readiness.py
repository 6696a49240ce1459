"""Whether a site's settings are fit for a real mailing: no placeholder addresses.

A site made by `newsroom init` sends from `newsroom@example.org`, takes bounces at
`bounces@example.org` and links to `http://localhost:8000`: right for the demo and
`newsroom dev-smtp`, wrong for real members (their bounces would be lost, their unsubscribe links
dead). `newsroom send`, `check --strict`, `send --dry-run` and `newsroom doctor` all ask here.

A real mailing (not a `--test` copy) is refused while any setting is a placeholder, unless it
goes to `newsroom dev-smtp` on this machine, which keeps every message and delivers none, or the
site says it is for local testing only (`site.local = true`: the test suite's sites, a training
copy). `send`, `send --resume` and a worker ask before a mailing is created or sent, and the
sender itself asks again before its first message (sending.Sender.run).

A list that sends as itself (`sender` in lists.toml, issue #16 item 4) is held to the same rules:
a mailing sent from it is refused while its domain is a placeholder, and `check` and `send` warn
about it at its line, and when its domain is not aligned with `dkim.domain` (DMARC, RFC 7489).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from email.utils import parseaddr
from urllib.parse import urlsplit

from newsroom import settings, textfiles
from newsroom.errors import NewsroomError, Problem
from newsroom.mail.devsmtp import DEV_SMTP_NAME
from newsroom.settings import Config

# RFC 2606 and RFC 6761 reserve these names for examples and tests, RFC 6762 .local for mDNS:
# none of them is anybody's real domain.
RESERVED_SUFFIXES = (".test", ".invalid", ".localhost", ".example", ".local", ".internal")
LIST_SENDER = "the list's sender (subscribers/lists.toml)"


class NotReady(NewsroomError):
    """A real mailing refused: the site's settings are placeholders (the words: `refusal`)."""


@dataclass(frozen=True)
class Unready:
    """One setting that keeps a real mailing from going out, and what to put there."""

    setting: str
    value: str
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"{self.setting} is {self.value!r}: {self.problem}; {self.fix}"


def is_loopback(host: str) -> bool:
    """Whether HOST names this machine without a network between (localhost, 127/8, ::1). Only
    what the name itself says: a public name that happens to resolve here does not count."""
    name = host.strip().strip("[]").lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):  # RFC 6761 §6.3
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def is_dev_smtp(config: Config, greeting: str) -> bool:
    """Whether the relay that answered with GREETING (its 220 greeting or its EHLO answer, whose
    first word is the server's name, RFC 5321 §4.2, §4.1.1.1) is `newsroom dev-smtp`. Believed
    only for a relay on this machine: one across a network delivers mail, whatever it calls
    itself."""
    name = greeting.split(None, 1)[0] if greeting.strip() else ""
    return name == DEV_SMTP_NAME and is_loopback(config.text("smtp.host"))


def placeholder_domain(domain: str) -> str | None:
    """Why DOMAIN is nobody's real mail or web domain, or None when it may be."""
    name = domain.strip().lower().rstrip(".")
    try:
        ipaddress.ip_address(name.strip("[]"))
        return "an IP address, not a domain name"
    except ValueError:
        pass
    if not name or name == "localhost" or name.endswith(RESERVED_SUFFIXES):
        return "a name reserved for tests and examples (RFC 2606, RFC 6761)"
    if "." not in name:
        return "not a public domain name (it has no dot)"
    if "example" in name.split("."):
        return "an example domain, not yours"
    return None


def problems(config: Config, sender: str = "") -> list[Unready]:
    """Every setting that is still a placeholder for a real mailing, and SENDER, the mailing's
    From when it is not the site's (a list's own); empty when none is."""
    found = []
    url = config.text("site.base_url")
    parts = urlsplit(url)
    host_problem = placeholder_domain(parts.hostname or "")
    if parts.scheme != "https" or host_problem:
        found.append(
            Unready(
                "site.base_url",
                url,
                host_problem or "not https:// (one-click unsubscribe needs https, RFC 8058)",
                "set it to the https:// address of your public web side, such as "
                "https://news.your-organisation.org (unsubscribe and preference links, and "
                "List-Id, are made from it)",
            )
        )
    named = [
        ("site.sender", config.text("site.sender"), "the From: address and the Message-ID domain"),
        (
            "sending.bounce_address",
            config.text("sending.bounce_address"),
            "the envelope sender that bounce reports come back to",
        ),
    ]
    if sender and sender != config.text("site.sender"):
        named.append((LIST_SENDER, sender, "the From: address of the list's mailings"))
    for setting, value, what in named:
        address = parseaddr(value)[1]
        domain = address.rpartition("@")[2] if "@" in address else ""
        problem = placeholder_domain(domain) if domain else "not an email address"
        if problem:
            found.append(
                Unready(
                    setting,
                    value,
                    f"its domain is {problem}",
                    f"set it to an address at your own domain ({what}), such as "
                    + (
                        '"Our Campaign <news@your-organisation.org>"'
                        if setting != "sending.bounce_address"
                        else "bounces@your-organisation.org (its mailbox must also take "
                        "bounces+anything@ — plus-addressing — see Going live)"
                    ),
                )
            )
    return found


def refusal(config: Config, sender: str = "") -> str:
    """The words of a refused real mailing: every placeholder setting, each on its line."""
    lines = [
        "a real mailing cannot go out with placeholder settings (a --test copy, or a send to "
        "`newsroom dev-smtp`, can):"
    ]
    lines += [f"  {unready}" for unready in problems(config, sender)]
    lines.append(
        "Set them in newsroom.toml (or NEWSROOM_* variables); `newsroom doctor` checks the rest."
    )
    return "\n".join(lines)


def blocking(config: Config, sender: str = "") -> list[Unready]:
    """The placeholder settings (and SENDER, a mailing's own From) that refuse a real mailing
    on this site: none on a site that says it is for local testing only (`site.local`)."""
    return [] if config["site.local"] else problems(config, sender)


def check_relay(config: Config, greeting: str, sender: str = "") -> None:
    """Raise NotReady unless a real mailing from SENDER (default: the site's) may go to the
    relay that answered with GREETING: settings with no placeholder, the relay `newsroom
    dev-smtp`, or a local test site."""
    if blocking(config, sender) and not is_dev_smtp(config, greeting):
        raise NotReady(refusal(config, sender))


def warnings(config: Config) -> list[Problem]:
    """The placeholder settings as warnings for `check` and `send --dry-run` (which do not ask
    the relay), each at the place it was set: `newsroom.toml:LINE`, the environment variable,
    or `newsroom.toml` for a default."""
    return [
        Problem(
            *_where(config, u.setting), f"warning: a mailing through a real relay is refused: {u}"
        )
        for u in blocking(config)
    ]


def _where(config: Config, name: str) -> tuple[str, int]:
    source = config.sources.get(name, "default")
    if source == settings.CONFIG_FILE:
        path = config.site_dir / settings.CONFIG_FILE
        text = textfiles.read(path, settings.CONFIG_FILE, settings.MAX_FILE_BYTES)
        section, _, key = name.partition(".")
        return settings.CONFIG_FILE, settings.toml_line(text, section, key)
    if source == "default":
        return settings.CONFIG_FILE, 0
    return settings.BY_NAME[name].env, 0  # from .env or the environment: the variable to change


def aligned(dkim_domain: str, from_domain: str) -> bool:
    """DMARC relaxed alignment (RFC 7489 §3.1.1), as far as it can be told without the Public
    Suffix List: the two domains are equal, or one is a parent of the other."""
    a, b = dkim_domain.lower().rstrip("."), from_domain.lower().rstrip(".")
    return a == b or a.endswith("." + b) or b.endswith("." + a)


@dataclass(frozen=True)
class ListSender:
    """A list's own sender as lists.toml gives it, and where (lists.ListSpec, unimported here)."""

    slug: str
    sender: str
    line: int


def list_sender_warnings(config: Config, senders: Iterable[ListSender]) -> list[Problem]:
    """Warnings at `subscribers/lists.toml:LINE` for each list sender a real mailing would
    refuse (a placeholder domain), and each whose domain DMARC would not count the site's DKIM
    signature for (`dkim.domain` neither it nor a parent or subdomain: RFC 7489 §3.1.1)."""
    found = []
    where = "subscribers/lists.toml"
    dkim_domain = config.text("dkim.domain")
    for entry in senders:
        address = parseaddr(entry.sender)[1]
        domain = address.rpartition("@")[2]
        problem = placeholder_domain(domain)
        if problem and not config["site.local"]:
            found.append(
                Problem(
                    where,
                    entry.line,
                    f"warning: [{entry.slug}] sender {entry.sender!r}: its domain is {problem}; "
                    "a mailing from it through a real relay is refused",
                )
            )
        if dkim_domain and not aligned(dkim_domain, domain):
            found.append(
                Problem(
                    where,
                    entry.line,
                    f"warning: [{entry.slug}] sender {entry.sender!r} is not at dkim.domain "
                    f"{dkim_domain} (nor a parent or subdomain of it): DMARC does not count the "
                    "signature (RFC 7489 §3.1.1) and receivers may reject or junk its mailings; "
                    f"send from an address at {dkim_domain}, or sign for {domain}",
                )
            )
    return found
