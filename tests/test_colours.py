"""Colour arithmetic (colours.py): WCAG 2.x relative luminance and contrast, mixing, and the
lightening that makes a brand colour read on a dark background."""

from __future__ import annotations

import pytest

from newsroom import colours


def test_luminance_and_contrast_match_wcag_examples() -> None:
    assert colours.luminance("#000000") == 0
    assert colours.luminance("#ffffff") == pytest.approx(1)
    assert colours.contrast("#000000", "#ffffff") == pytest.approx(21)
    assert colours.contrast("#ffffff", "#000000") == colours.contrast("#000000", "#ffffff")
    # the well-known boundary: #767676 is the lightest grey with 4.5:1 on white, #777777 fails
    assert colours.contrast("#767676", "#ffffff") >= 4.5 > colours.contrast("#777777", "#ffffff")
    assert colours.contrast("#b00020", "#ffffff") == pytest.approx(7.33, abs=0.01)
    assert colours.contrast("#ABCDEF", "#abcdef") == 1


def test_ratio_words_never_round_a_failure_up() -> None:
    assert colours.ratio_words(4.49) == "4.4:1"
    assert colours.ratio_words(4.5) == "4.5:1"
    assert colours.ratio_words(21.0) == "21:1"
    assert colours.ratio_words(1.0) == "1:1"


@pytest.mark.parametrize("text", ["red", "#fff", "#12345g", "#1234567", " #123456", ""])
def test_only_six_digit_hex_is_a_colour(text: str) -> None:
    assert not colours.is_colour(text)
    with pytest.raises(ValueError, match="not a #rrggbb colour"):
        colours.luminance(text)


def test_mix_and_towards() -> None:
    assert colours.mix("#000000", "#ffffff", 0.5) == "#808080"
    assert colours.mix("#b00020", "#ffffff", 0) == "#b00020"
    assert colours.mix("#b00020", "#ffffff", 1) == "#ffffff"
    lighter = colours.towards("#b00020", "#ffffff", "#1e1e1e", 4.5)
    assert colours.contrast(lighter, "#1e1e1e") >= 4.5
    assert lighter != "#ffffff"  # it keeps some of its red
    assert colours.towards("#eeeeee", "#ffffff", "#1e1e1e", 4.5) == "#eeeeee"  # already reads
    assert colours.towards("#777777", "#ffffff", "#ffffff", 4.5) == "#ffffff"  # cannot: gives up
    assert colours.best_on("#ffcc00", "#ffffff", "#000000") == "#000000"
