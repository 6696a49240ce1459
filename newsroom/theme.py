"""The organisation's look (issue #14): the `[theme]` settings read into a Theme — logo, colours
for light and dark mode checked for WCAG AA contrast, font stack, footer lines and the links to
the group's other places with the icons newsroom ships — and the files it publishes.

    theme = config.theme                 # checked when the settings load (settings.load)
    theme.context(base_url)              # what the email and web templates get as `theme`
    theme.files()                        # {"theme/logo.png": b"...", "theme/icons/x.png": ...}
"""

from __future__ import annotations

import re
import struct
from dataclasses import asdict, dataclass, fields
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from newsroom import colours
from newsroom.errors import ConfigError

if TYPE_CHECKING:
    from newsroom.settings import Config

# Fonts the readers' own devices have: Segoe UI first, because Outlook on Windows takes the
# first family of a stack it knows and otherwise falls back to Times New Roman; then Apple's,
# Android's, and the classic sans-serifs everything else has.
DEFAULT_FONT = "'Segoe UI', -apple-system, BlinkMacSystemFont, Roboto, Helvetica, Arial, sans-serif"
FONT = re.compile(r"[A-Za-z0-9 ,'\-]+")
MAX_LOGO_BYTES = 256 * 1024  # fetched by every reader who opens an email: keep it small
MAX_LOGO_PIXELS = 4000
# The group's other places, in the order people usually list them; each has its icon in
# newsroom/static/icons/ (tests/make_icons.py draws them), never one from a third-party host.
LINK_KINDS = {
    "website": "Website",
    "mastodon": "Mastodon",
    "bluesky": "Bluesky",
    "facebook": "Facebook",
    "instagram": "Instagram",
    "x": "X (Twitter)",
    "youtube": "YouTube",
    "linkedin": "LinkedIn",
    "tiktok": "TikTok",
}
ICON_SIZE = 20  # CSS pixels; the files are drawn at twice that for sharp screens
CARD_SHARE = {"light": 0.06, "dark": 0.1}  # how much accent tints the meeting and action cards


@dataclass(frozen=True)
class Palette:
    """The colours of one mode (light or dark), all `#rrggbb`."""

    accent: str
    accent_text: str
    header: str
    header_text: str
    background: str
    text: str
    muted: str
    link: str
    surround: str

    @property
    def card(self) -> str:
        """The background of meeting and action cards: the background with a hint of accent."""
        share = CARD_SHARE["dark" if colours.luminance(self.background) < 0.2 else "light"]
        return colours.mix(self.background, self.accent, share)

    def as_dict(self) -> dict[str, str]:
        """The colours, and those made from them: the cards', table rules and header cells."""
        return {
            **asdict(self),
            "card": self.card,
            "rule": colours.mix(self.background, self.text, 0.3),
            "shade": colours.mix(self.background, self.text, 0.06),
        }


COLOUR_KEYS = tuple(f.name for f in fields(Palette))
# (foreground, background, ratio, what it is): every pair a reader must be able to tell apart.
# "card" is Palette.card. Button labels are 17px bold: normal text to WCAG, so 4.5:1.
PAIRS = (
    ("text", "background", colours.TEXT, "text"),
    ("link", "background", colours.TEXT, "links"),
    ("muted", "background", colours.TEXT, "dates and labels"),
    ("muted", "surround", colours.TEXT, "the email's footer"),
    ("header_text", "header", colours.LARGE, "the site's name in the header (large text)"),
    ("accent_text", "accent", colours.TEXT, "button labels"),
    ("accent", "background", colours.LARGE, "a button's edge against the background"),
    ("text", "card", colours.TEXT, "text on meeting and action cards"),
    ("link", "card", colours.TEXT, "links on meeting and action cards"),
    ("text", "shade", colours.TEXT, "the header row of tables"),
)

MADE = {  # the backgrounds made from two settings
    "card": "theme.{p}background with a hint of theme.{p}accent",
    "shade": "theme.{p}background with a hint of theme.{p}text",
}


@dataclass(frozen=True)
class Logo:
    path: Path
    kind: str  # png, jpeg or gif
    width: int  # of the file, in pixels
    height: int

    @property
    def published(self) -> str:
        return f"theme/logo.{'jpg' if self.kind == 'jpeg' else self.kind}"

    def shown(self, height: int, widest: int) -> tuple[int, int]:
        """Its width and height in CSS pixels at HEIGHT, no wider than WIDEST."""
        width = max(1, round(self.width * height / self.height))
        if width > widest:
            width, height = widest, max(1, round(self.height * widest / self.width))
        return width, height


@dataclass(frozen=True)
class Link:
    kind: str
    url: str

    @property
    def label(self) -> str:
        return LINK_KINDS[self.kind]

    @property
    def published(self) -> str:
        return f"theme/icons/{self.kind}.png"


@dataclass(frozen=True)
class Theme:
    light: Palette
    dark: Palette
    font: str
    logo: Logo | None
    logo_height: int
    show_name: bool
    about: str
    links: tuple[Link, ...]

    @classmethod
    def from_config(cls, config: Config) -> Theme:
        """The site's theme; a ConfigError naming the setting for a logo that is not fit to
        send, and for every pair of colours below WCAG AA, in light and in dark mode."""
        light = Palette(*(config.text(f"theme.{key}") for key in COLOUR_KEYS))
        dark, origins = _dark(config, light)
        _check_contrast(config, light, dark, origins)
        logo_setting = config.text("theme.logo")
        return cls(
            light,
            dark,
            config.text("theme.font"),
            read_logo(config, logo_setting) if logo_setting else None,
            config.integer("theme.logo_height"),
            bool(config["theme.show_name"]),
            config.text("theme.about"),
            tuple(Link(kind, url) for kind, url in parse_links(config.text("theme.links"))),
        )

    def context(self, base_url: str) -> dict[str, Any]:
        """What templates get as `theme`. Images are addresses under BASE_URL: email clients
        show no `data:` images (Gmail drops them) and attaching them to every message (cid:)
        would send each reader a copy and show up as attachments; from the site's own address
        they come from the organisation's host, never a third party's."""
        base = base_url.rstrip("/")
        logo = None
        if self.logo is not None:
            width, height = self.logo.shown(self.logo_height, 200 if self.show_name else 552)
            logo = {"url": f"{base}/{self.logo.published}", "width": width, "height": height}
        return {
            "light": self.light.as_dict(),
            "dark": self.dark.as_dict(),
            "font": self.font,
            "logo": logo,
            "show_name": self.show_name or logo is None,
            "about": self.about,
            "links": [
                {"label": link.label, "url": link.url, "icon": f"{base}/{link.published}"}
                for link in self.links
            ],
            "icon_size": ICON_SIZE,
        }

    def files(self) -> dict[str, bytes]:
        """The files `newsroom build` and `newsroom serve` publish for the theme."""
        out = {link.published: icon(link.kind) for link in self.links}
        if self.logo is not None:
            out[self.logo.published] = self.logo.path.read_bytes()
        return out


def icon(kind: str) -> bytes:
    return _icons().joinpath(f"{kind}.png").read_bytes()


@cache
def _icons() -> Any:
    return resources.files("newsroom").joinpath("static/icons")


# -- single values (the settings table's checks) -------------------------------------------------


def check_colour(value: Any) -> str | None:
    if colours.is_colour(str(value)):
        return None
    return "must be a colour written #rrggbb, such as #b00020"


def check_derived_colour(value: Any) -> str | None:
    return None if value == "" else check_colour(value)


def check_font(value: Any) -> str | None:
    text = str(value)
    if re.search(r"url\s*\(|@import|//", text, re.IGNORECASE):
        return (
            "must name fonts installed on readers' devices: a font from a font host (url(), "
            "@import) lets that host see who opens every email"
        )
    if not FONT.fullmatch(text) or not text.strip(" ,"):
        return (
            "must be a list of font names separated by commas, such as "
            "\"Verdana, Arial, sans-serif\" (names with spaces in 'single quotes')"
        )
    return None


def check_about(value: Any) -> str | None:
    text = str(value)
    if len(text) > 300 or "\n" in text:
        return "must be one sentence on one line (at most 300 characters)"
    if "{{" in text or "}}" in text:
        return "is the same in every email: merge fields such as {{first_name}} are not filled here"
    return None


def parse_links(text: str) -> list[tuple[str, str]]:
    """`website=https://…, mastodon=https://…` as (kind, url) pairs; ValueError says what is
    wrong."""
    found: list[tuple[str, str]] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        kind, equals, url = (s.strip() for s in part.partition("="))
        if not equals or kind.lower() not in LINK_KINDS:
            raise ValueError(
                f"{part!r} is not NAME=ADDRESS with a NAME newsroom has an icon for: "
                f"{', '.join(LINK_KINDS)}"
            )
        parts = urlsplit(url)
        if (
            parts.scheme not in ("https", "http")
            or not parts.netloc
            or re.search(r'[\s<>"{}]', url)
        ):
            raise ValueError(f"{kind}'s address must start with https://, not {url!r}")
        found.append((kind.lower(), url))
    return found


def check_links(value: Any) -> str | None:
    try:
        parse_links(str(value))
    except ValueError as exc:
        return f"lists the group's places as website=https://…, mastodon=https://…: {exc}"
    return None


# -- the whole theme ----------------------------------------------------------------------------


def _dark(config: Config, light: Palette) -> tuple[Palette, dict[str, str]]:
    """The dark palette, and for each colour the setting that decides it: each dark_* setting,
    or for an empty one a colour made from another — brand colours lightened until they read on
    the dark background, a coloured header kept as it is (it carries its own text colour), a
    plain one made dark like the card."""
    given = {key: config.text(f"theme.dark_{key}") for key in COLOUR_KEYS}
    origins = {key: f"theme.dark_{key}" for key in COLOUR_KEYS}
    background = given["background"]
    made = dict(given)
    plain_header = light.header == light.background
    if not made["accent"]:
        made["accent"] = colours.towards(light.accent, "#ffffff", background, colours.LARGE + 0.1)
        origins["accent"] = "theme.accent"
    if not made["accent_text"]:
        made["accent_text"] = colours.best_on(
            made["accent"], light.accent_text, "#ffffff", "#000000"
        )
        origins["accent_text"] = origins["accent"]
    card = colours.mix(background, made["accent"], CARD_SHARE["dark"])
    if not made["link"]:  # links must read on the card too, a little lighter than the background
        lighter = max(background, card, key=colours.luminance)
        made["link"] = colours.towards(light.link, "#ffffff", lighter, colours.TEXT + 0.1)
        origins["link"] = "theme.link"
    if not made["header"]:
        made["header"] = background if plain_header else light.header
        origins["header"] = "theme.dark_background" if plain_header else "theme.header"
    if not made["header_text"]:
        made["header_text"] = given["text"] if plain_header else light.header_text
        origins["header_text"] = "theme.dark_text" if plain_header else "theme.header_text"
    return Palette(**made), origins


def _check_contrast(config: Config, light: Palette, dark: Palette, origins: dict[str, str]) -> None:
    """Every pair of PAIRS in both modes; one line per setting to change (a text colour that
    fails on the background fails on the cards too: it is said once)."""
    problems: dict[str, str] = {}
    for mode, palette in (("light", light), ("dark", dark)):
        values = palette.as_dict()
        for fore, back, ratio, what in PAIRS:
            measured = colours.contrast(values[fore], values[back])
            if measured >= ratio:
                continue
            prefix = "dark_" if mode == "dark" else ""
            decides = origins[fore] if mode == "dark" else f"theme.{fore}"
            shown = f"theme.{prefix}{fore}"
            if shown != decides:
                shown += f" (made from {decides})"
            back_name = MADE.get(back, "theme.{p}" + back).format(p=prefix)
            where = _blame(config, decides, "" if back in MADE else f"theme.{prefix}{back}")
            dark_words = " in dark mode" if mode == "dark" else ""
            problems.setdefault(
                decides,
                f"{where}: {shown} {values[fore]} on {values[back]} has contrast "
                f"{colours.ratio_words(measured)}{dark_words}; WCAG AA needs {ratio:g}:1 for "
                f"{what} (on {back_name})",
            )
    if problems:
        raise ConfigError("\n".join(problems.values()))


def _blame(config: Config, fore: str, back: str) -> str:
    """Where to look: the foreground's setting if it was set, else the background's."""
    for name in (fore, back):
        if name and config.sources.get(name, "default") != "default":
            return config.where(name)
    return config.where(fore)


def read_logo(config: Config, setting: str) -> Logo:
    """theme.logo's file: inside the site folder, a PNG, JPEG or GIF of bounded size."""
    where = config.where("theme.logo")
    site = config.site_dir.resolve()
    path = (site / setting).resolve()
    if not path.is_relative_to(site):
        raise ConfigError(
            f"{where}: theme.logo must be a file inside the site folder, not {setting!r}"
        )
    if not path.is_file():
        raise ConfigError(f"{where}: theme.logo {setting!r}: no such file in the site folder")
    size = path.stat().st_size
    if size > MAX_LOGO_BYTES:
        raise ConfigError(
            f"{where}: theme.logo {setting!r} is {size // 1024} KB; at most "
            f"{MAX_LOGO_BYTES // 1024} KB, since every reader's email client fetches it"
        )
    with path.open("rb") as handle:
        head = handle.read(64 * 1024)
    found = image_size(head)
    if found is None:
        svg = b"<svg" in head[:2048].lower()
        hint = " (email clients do not show SVG reliably: export it as PNG)" if svg else ""
        raise ConfigError(f"{where}: theme.logo {setting!r} must be a PNG, JPEG or GIF image{hint}")
    kind, width, height = found
    if not (0 < width <= MAX_LOGO_PIXELS and 0 < height <= MAX_LOGO_PIXELS):
        raise ConfigError(
            f"{where}: theme.logo {setting!r} is {width}×{height} pixels; at most "
            f"{MAX_LOGO_PIXELS} each way"
        )
    return Logo(path, kind, width, height)


def image_size(head: bytes) -> tuple[str, int, int] | None:
    """The kind, width and height of a PNG, GIF or JPEG from its first bytes; None for anything
    else. Read by hand so that loading the settings never imports an image library."""
    if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
        width, height = struct.unpack(">II", head[16:24])
        return "png", width, height
    if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        width, height = struct.unpack("<HH", head[6:10])
        return "gif", width, height
    if head.startswith(b"\xff\xd8"):
        return _jpeg_size(head)
    return None


def _jpeg_size(data: bytes) -> tuple[str, int, int] | None:
    """Walk the JPEG's segments to its frame header (SOF0-SOF15 but DHT, JPG and DAC)."""
    at = 2
    while at + 9 < len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill bytes before a marker
            at += 1
            continue
        length = struct.unpack(">H", data[at + 2 : at + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[at + 5 : at + 9])
            return "jpeg", width, height
        at += 2 + length
    return None
