"""Colours as `#rrggbb` and the WCAG 2.x contrast between two of them: pure arithmetic, no I/O.

    contrast("#b00020", "#ffffff")      # 7.33...
    towards("#b00020", "#ffffff", "#1e1e1e", 4.5)   # the red lightened until it reads on dark

The formulas are WCAG 2.2's definitions of "relative luminance" and "contrast ratio"
(https://www.w3.org/TR/WCAG22/#dfn-relative-luminance): sRGB channels linearised, weighted
0.2126/0.7152/0.0722, and (L1 + 0.05) / (L2 + 0.05) with L1 the lighter. Success criterion 1.4.3
asks 4.5:1 for text and 3:1 for large text (24px, or 18.66px bold); 1.4.11 asks 3:1 for the
parts of controls people must see (a button's edge against what is around it).
"""

from __future__ import annotations

import math
import re

HEX = re.compile(r"#[0-9a-fA-F]{6}")
TEXT = 4.5  # WCAG 2.x SC 1.4.3, normal text
LARGE = 3.0  # SC 1.4.3 for large text; SC 1.4.11 for the visible edge of a control


def is_colour(text: str) -> bool:
    return HEX.fullmatch(text) is not None


def channels(colour: str) -> tuple[int, int, int]:
    """The red, green and blue of `#rrggbb`, 0-255 each."""
    if not is_colour(colour):
        raise ValueError(f"not a #rrggbb colour: {colour!r}")
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def hex_colour(red: float, green: float, blue: float) -> str:
    return "#" + "".join(f"{max(0, min(255, round(c))):02x}" for c in (red, green, blue))


def _linear(channel: int) -> float:
    c = channel / 255
    # WCAG 2.2 uses sRGB's own threshold 0.04045 (WCAG 2.0's 0.03928 gives the same for 8 bits)
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def luminance(colour: str) -> float:
    """WCAG 2.x relative luminance: 0 for black, 1 for white."""
    red, green, blue = (_linear(c) for c in channels(colour))
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def contrast(first: str, second: str) -> float:
    """WCAG 2.x contrast ratio of two colours, from 1 (the same) to 21 (black on white)."""
    lighter, darker = sorted((luminance(first), luminance(second)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def ratio_words(ratio: float) -> str:
    """A ratio as people write it, rounded down so that a failing 4.49 never reads "4.5:1"."""
    return f"{math.floor(ratio * 10) / 10:g}:1"


def mix(colour: str, other: str, share: float) -> str:
    """COLOUR with SHARE (0-1) of OTHER mixed in, channel by channel."""
    mine, theirs = channels(colour), channels(other)
    return hex_colour(*(a + (b - a) * share for a, b in zip(mine, theirs, strict=True)))


def towards(colour: str, target: str, against: str, ratio: float) -> str:
    """COLOUR moved step by step towards TARGET until it has RATIO against AGAINST: a brand
    colour made light enough for a dark background, keeping as much of its hue as it can."""
    for step in range(21):
        candidate = mix(colour, target, step / 20)
        if contrast(candidate, against) >= ratio:
            return candidate
    return target


def best_on(background: str, *candidates: str) -> str:
    """The candidate that reads best on BACKGROUND (the first of equals)."""
    return max(candidates, key=lambda c: contrast(c, background))
