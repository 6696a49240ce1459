"""Draw the icons newsroom ships for the links in a footer (newsroom/static/icons/), and the
logos of the two example themes (theme/logo.png of this project's site, and the Disability
Group's in tests/data/themes/): simple shapes in Pillow, no font, nothing from elsewhere.

    .venv/bin/python -m tests.make_icons      # rewrites the files; commit the result

Email clients do not show SVG reliably (Gmail and Outlook drop it), so the icons are PNG, drawn
at four times their size and scaled down for smooth edges: 40×40 pixels, shown at 20×20 CSS
pixels (sharp on phones). Each is a disc in the network's own colour with a white sign on it; a
ring keeps the black discs visible on a dark background.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
ICONS = ROOT / "newsroom" / "static" / "icons"
BIG = 160  # drawing size; the files are a quarter of it
WHITE = (255, 255, 255, 255)
Draw = ImageDraw.ImageDraw


def ring(draw: Draw, colour: tuple[int, int, int]) -> None:
    edge = (150, 150, 150) if colour == (0, 0, 0) else colour  # a black disc on a dark page
    draw.ellipse((2, 2, BIG - 2, BIG - 2), fill=(*colour, 255), outline=(*edge, 255), width=6)


def website(draw: Draw) -> None:
    draw.ellipse((36, 36, 124, 124), outline=WHITE, width=9)
    draw.ellipse((62, 36, 98, 124), outline=WHITE, width=8)
    draw.line((36, 80, 124, 80), fill=WHITE, width=8)
    draw.line((44, 58, 116, 58), fill=WHITE, width=7)
    draw.line((44, 102, 116, 102), fill=WHITE, width=7)


def mastodon(draw: Draw) -> None:
    draw.rounded_rectangle((38, 36, 122, 112), radius=22, fill=WHITE)
    draw.polygon(((52, 104), (48, 128), (74, 110)), fill=WHITE)
    purple = (99, 100, 255, 255)
    for left in (56, 80):  # the m: two arches on three legs
        draw.arc((left, 56, left + 24, 84), 180, 360, fill=purple, width=9)
    for x in (60, 84, 100):
        draw.line((x, 70, x, 96), fill=purple, width=9)


def bluesky(draw: Draw) -> None:
    def wing(cx: float, cy: float, rx: float, ry: float, tilt: float) -> list[tuple[float, float]]:
        points = []
        for step in range(48):
            a = 2 * math.pi * step / 48
            x, y = rx * math.cos(a), ry * math.sin(a)
            points.append(
                (
                    cx + x * math.cos(tilt) - y * math.sin(tilt),
                    cy + x * math.sin(tilt) + y * math.cos(tilt),
                )
            )
        return points

    for side in (-1, 1):
        draw.polygon(wing(80 + side * 28, 68, 27, 18, -side * 0.55), fill=WHITE)
        draw.polygon(wing(80 + side * 20, 100, 17, 12, side * 0.7), fill=WHITE)


def facebook(draw: Draw) -> None:
    draw.line((88, 64, 88, 132), fill=WHITE, width=16)
    draw.arc((88 - 8, 36, 88 + 40, 84), 180, 280, fill=WHITE, width=16)
    draw.line((66, 80, 110, 80), fill=WHITE, width=14)


def instagram(draw: Draw) -> None:
    draw.rounded_rectangle((42, 42, 118, 118), radius=22, outline=WHITE, width=10)
    draw.ellipse((60, 60, 100, 100), outline=WHITE, width=10)
    draw.ellipse((98, 52, 110, 64), fill=WHITE)


def x(draw: Draw) -> None:
    draw.line((52, 48, 108, 112), fill=WHITE, width=14)
    draw.line((108, 48, 52, 112), fill=WHITE, width=8)


def youtube(draw: Draw) -> None:
    draw.rounded_rectangle((34, 50, 126, 110), radius=18, fill=WHITE)
    draw.polygon(((70, 64), (70, 96), (98, 80)), fill=(255, 0, 0, 255))


def linkedin(draw: Draw) -> None:
    draw.ellipse((44, 40, 62, 58), fill=WHITE)
    draw.line((53, 70, 53, 118), fill=WHITE, width=16)
    draw.line((78, 70, 78, 118), fill=WHITE, width=15)
    draw.arc((78, 68, 116, 106), 180, 360, fill=WHITE, width=15)
    draw.line((109, 86, 109, 118), fill=WHITE, width=15)


def tiktok(draw: Draw) -> None:
    draw.ellipse((46, 86, 84, 124), outline=WHITE, width=13)
    draw.line((78, 40, 78, 106), fill=WHITE, width=13)
    draw.arc((78, 14, 124, 60), 90, 180, fill=WHITE, width=13)


# the colour each network uses for itself; the website's is a neutral grey
DRAWN: dict[str, tuple[tuple[int, int, int], Callable[[Draw], None]]] = {
    "website": ((85, 85, 85), website),
    "mastodon": ((99, 100, 255), mastodon),
    "bluesky": ((17, 133, 254), bluesky),
    "facebook": ((8, 102, 255), facebook),
    "instagram": ((225, 48, 108), instagram),
    "x": ((0, 0, 0), x),
    "youtube": ((255, 0, 0), youtube),
    "linkedin": ((10, 102, 194), linkedin),
    "tiktok": ((0, 0, 0), tiktok),
}


def draw_icon(colour: tuple[int, int, int], sign: Callable[[Draw], None]) -> Image.Image:
    image = Image.new("RGBA", (BIG, BIG), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    ring(draw, colour)
    sign(draw)
    return image.resize((BIG // 4, BIG // 4), Image.Resampling.LANCZOS)


def star(cx: float, cy: float, outer: float, inner: float) -> list[tuple[float, float]]:
    points = []
    for step in range(10):
        radius = outer if step % 2 == 0 else inner
        angle = -math.pi / 2 + step * math.pi / 5
        points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
    return points


def project_logo() -> Image.Image:
    """Socialist Network News: a white star on a red square, 96×96 (shown at 48)."""
    image = Image.new("RGBA", (384, 384), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((0, 0, 383, 383), radius=64, fill=(176, 0, 32, 255))
    draw.polygon(star(192, 204, 150, 60), fill=WHITE)
    return image.resize((96, 96), Image.Resampling.LANCZOS)


def disability_group_logo() -> Image.Image:
    """The Disability Group: three people holding hands under an arch, white on purple, 2:1."""
    image = Image.new("RGBA", (768, 384), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((0, 0, 767, 383), radius=64, fill=(74, 35, 120, 255))
    draw.arc((144, 40, 624, 520), 200, 340, fill=(255, 214, 10, 255), width=28)
    for cx in (264, 384, 504):
        draw.ellipse((cx - 30, 150, cx + 30, 210), fill=WHITE)
        draw.rounded_rectangle((cx - 34, 222, cx + 34, 330), radius=30, fill=WHITE)
    draw.line((264, 250, 504, 250), fill=WHITE, width=22)
    return image.resize((192, 96), Image.Resampling.LANCZOS)


def main() -> None:
    ICONS.mkdir(parents=True, exist_ok=True)
    for name, (colour, sign) in DRAWN.items():
        draw_icon(colour, sign).save(ICONS / f"{name}.png", optimize=True)
    (ROOT / "theme").mkdir(exist_ok=True)
    project_logo().save(ROOT / "theme" / "logo.png", optimize=True)
    group = ROOT / "tests" / "data" / "themes" / "disability-group" / "theme"
    group.mkdir(parents=True, exist_ok=True)
    disability_group_logo().save(group / "logo.png", optimize=True)


if __name__ == "__main__":
    main()
