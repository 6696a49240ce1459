"""The [theme] (issue #14, item 1): its checks when the settings load (contrast in light and dark
mode naming the key and the ratio, colours, font, links, logo), what the email, the text part and
the web pages show with it, and the files `build` and `serve` publish for it."""

from __future__ import annotations

import io
import re
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PIL import Image
from starlette.testclient import TestClient

from newsroom import settings, theme
from newsroom.compose.issues import load_issue
from newsroom.compose.rendering import render, web_page
from newsroom.errors import ConfigError
from newsroom.people import confirmation, lists
from newsroom.site import Site
from newsroom.web.app import create_app, static_files
from tests.conftest import TEST_SECRET, Run
from tests.test_rendering import Tags
from tests.themes import ROOT, SURVEY, THEMES, make_site

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def load(tmp_path: Path, toml: str, environ: dict[str, str] | None = None) -> settings.Config:
    (tmp_path / "newsroom.toml").write_text(toml, encoding="utf-8")
    return settings.load(tmp_path, environ or {})


def problem(tmp_path: Path, toml: str, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, toml, environ)
    return str(info.value)


def png(size: tuple[int, int], kind: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (176, 0, 32)).save(out, kind)
    return out.getvalue()


@pytest.fixture(params=sorted(THEMES))
def themed(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Site]:
    """A site with each example theme, and the example issues."""
    monkeypatch.setenv("NEWSROOM_DATABASE_URL", database_url)
    monkeypatch.setenv("NEWSROOM_SECRET_KEY", TEST_SECRET)
    site = make_site(tmp_path / "site", request.param)
    yield site
    site.close()


# -- checks when the settings load ---------------------------------------------------------------


def test_newsrooms_own_colours_pass_in_light_and_dark(tmp_path: Path) -> None:
    config = load(tmp_path, "")
    assert config.theme.light.text == "#1a1a1a"
    dark = config.theme.dark
    assert dark.background == "#1e1e1e" and dark.surround == "#121212"
    assert dark.link != config.theme.light.link  # lightened for the dark background
    assert config.theme.logo is None and config.theme.links == ()


def test_a_pair_below_aa_names_the_key_the_colours_and_the_ratio(tmp_path: Path) -> None:
    message = problem(tmp_path, '[site]\nname = "X"\n\n[theme]\nlink = "#ffcc00"\n')
    assert message.splitlines() == [
        "newsroom.toml:5: theme.link #ffcc00 on #ffffff has contrast 1.5:1; WCAG AA needs "
        "4.5:1 for links (on theme.background)"
    ]


def test_buttons_need_3_to_1_against_the_background_and_4_5_for_their_label(
    tmp_path: Path,
) -> None:
    message = problem(tmp_path, '[theme]\naccent = "#ffcc00"\n')
    assert message.splitlines() == [
        "newsroom.toml:2: theme.accent_text #ffffff on #ffcc00 has contrast 1.5:1; WCAG AA "
        "needs 4.5:1 for button labels (on theme.accent)",
        "newsroom.toml:2: theme.accent #ffcc00 on #ffffff has contrast 1.5:1; WCAG AA needs "
        "3:1 for a button's edge against the background (on theme.background)",
    ]
    # a dark yellow button with black text is fine; large text (the header's name) needs 3:1
    load(tmp_path, '[theme]\naccent = "#8a6d00"\naccent_text = "#ffffff"\n')
    load(tmp_path, '[theme]\nheader = "#1a1a1a"\nheader_text = "#8f8f8f"\n')  # 5.2:1


def test_dark_mode_is_checked_too(tmp_path: Path) -> None:
    message = problem(tmp_path, '[theme]\ndark_text = "#555555"\n')
    assert message == (
        "newsroom.toml:2: theme.dark_text #555555 on #1e1e1e has contrast 2.2:1 in dark mode; "
        "WCAG AA needs 4.5:1 for text (on theme.dark_background)"
    )
    # a colour made for dark mode names the light setting it was made from: links lightened
    # towards white run out of room on a mid-grey "dark" background
    grey = '[theme]\ndark_background = "#777777"\ndark_surround = "#777777"\n'
    message = problem(tmp_path, grey + 'dark_text = "#000000"\ndark_muted = "#000000"\n')
    assert message.splitlines()[0] == (
        "newsroom.toml:2: theme.dark_link (made from theme.link) #ffffff on #777777 has contrast "
        "4.4:1 in dark mode; WCAG AA needs 4.5:1 for links (on theme.dark_background)"
    )


def test_the_place_is_the_variable_when_the_environment_set_it(tmp_path: Path) -> None:
    message = problem(tmp_path, "", {"NEWSROOM_THEME_TEXT": "#777777"})
    assert message.startswith(
        "NEWSROOM_THEME_TEXT: theme.text #777777 on #ffffff has contrast 4.4:1; WCAG AA needs 4.5:1"
    )


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('text = "red"', "theme.text must be a colour written #rrggbb, such as #b00020"),
        ('dark_link = "#abc"', "theme.dark_link must be a colour written #rrggbb"),
        ('font = "Lato, url(https://fonts.example.net/lato.woff)"', "a font from a font host"),
        ("font = \"@import 'x'\"", "a font from a font host"),
        ('font = "Arial; color: red"', "must be a list of font names separated by commas"),
        ('links = "myspace=https://myspace.example.net/x"', "a NAME newsroom has an icon for"),
        ('links = "website=example.org"', "website's address must start with https://"),
        ('links = "mastodon=https://x.example/<b>"', "mastodon's address must start with https://"),
        ('about = "Hello {{first_name}}"', "merge fields such as {{first_name}} are not filled"),
        ("logo_height = 0", "theme.logo_height must be greater than 0"),
    ],
)
def test_bad_single_values_are_refused_at_their_line(
    tmp_path: Path, line: str, expected: str
) -> None:
    message = problem(tmp_path, f"[theme]\n{line}\n")
    assert message.startswith("newsroom.toml:2: theme.")
    assert expected in message


def test_links_keep_their_order_and_labels(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        '[theme]\nlinks = "mastodon=https://social.example.net/@us, website=https://us.example.net,"\n',
    )
    assert [(link.label, link.url) for link in config.theme.links] == [
        ("Mastodon", "https://social.example.net/@us"),
        ("Website", "https://us.example.net"),
    ]


def test_the_logo_must_be_a_small_image_inside_the_site(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (tmp_path / "outside.png").write_bytes(png((10, 10)))
    (site / "logo.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"></svg>')
    (site / "logo.txt").write_text("not an image")
    (site / "huge.png").write_bytes(png((10, 10)) + b"\0" * theme.MAX_LOGO_BYTES)
    (site / "link.png").symlink_to(tmp_path / "outside.png")
    cases = {
        "missing.png": "theme.logo 'missing.png': no such file in the site folder",
        "../outside.png": "theme.logo must be a file inside the site folder, not '../outside.png'",
        "link.png": "theme.logo must be a file inside the site folder",
        "logo.svg": "must be a PNG, JPEG or GIF image (email clients do not show SVG reliably",
        "logo.txt": "theme.logo 'logo.txt' must be a PNG, JPEG or GIF image",
        "huge.png": "KB; at most 256 KB, since every reader's email client fetches it",
    }
    for logo, expected in cases.items():
        message = problem(site, f'[theme]\nlogo = "{logo}"\n')
        assert message.startswith("newsroom.toml:2: "), logo
        assert expected in message, logo


@pytest.mark.parametrize("kind", ["PNG", "JPEG", "GIF"])
def test_the_logo_size_is_read_from_the_file(tmp_path: Path, kind: str) -> None:
    (tmp_path / "logo.img").write_bytes(png((300, 100), kind))
    config = load(tmp_path, '[theme]\nlogo = "logo.img"\nlogo_height = 40\n')
    logo = config.theme.logo
    assert logo is not None and (logo.width, logo.height) == (300, 100)
    assert logo.shown(40, 200) == (120, 40)
    assert logo.shown(40, 90) == (90, 30)  # no wider than the room beside the name
    assert theme.image_size(png((7, 9), "JPEG"))[1:] == (7, 9)  # type: ignore[index]
    progressive = io.BytesIO()
    Image.new("RGB", (33, 44)).save(progressive, "JPEG", progressive=True)
    assert theme.image_size(progressive.getvalue()) == ("jpeg", 33, 44)


def test_every_link_kind_has_its_icon() -> None:
    for kind in theme.LINK_KINDS:
        image = Image.open(io.BytesIO(theme.icon(kind)))
        assert image.format == "PNG" and image.size == (theme.ICON_SIZE * 2,) * 2, kind


def test_the_projects_newsroom_toml_lists_every_setting() -> None:
    """newsroom.toml at the root is this project's example site; like one `newsroom init`
    writes, it names every setting, set or commented out."""
    text = (ROOT / "newsroom.toml").read_text(encoding="utf-8")
    tomllib.loads(text)
    for setting in settings.SETTINGS:
        if not setting.secret:
            section = text[text.index(f"[{setting.section}]") :].split("\n[")[0]
            assert re.search(rf"^(# )?{setting.key} = ", section, re.M), setting.name


def test_a_bad_theme_stops_a_command_with_one_line(cli: Run, site_dir: Path) -> None:
    toml = site_dir / "newsroom.toml"
    toml.write_text(toml.read_text().replace("[theme]\n", '[theme]\nmuted = "#aaaaaa"\n'))
    result = cli("check")
    assert result.exit_code == 1
    assert result.output.startswith("Error: newsroom.toml:")
    assert "theme.muted #aaaaaa on #ffffff has contrast 2.3:1" in result.output
    assert "Traceback" not in result.output


# -- what readers see ----------------------------------------------------------------------------


def test_every_example_renders_with_each_theme(themed: Site) -> None:
    config = themed.config
    base = config.text("site.base_url").rstrip("/")
    look = config.theme
    for path in sorted(themed.issues_dir.glob("*.md")):
        issue = load_issue(path, config)
        rendered = render(issue, config)
        email = rendered.variants["email"]
        tags = Tags(email.html)
        images = tags.named("img")
        # every image the email loads comes from the site itself: no third-party host
        assert all(str(img["src"]).startswith(base + "/") for img in images), path.name
        assert not tags.named("link") and "googleapis" not in email.html
        assert f"font-family:{look.font};" in email.html.replace("font-family: ", "font-family:")
        for colour in (look.light.text, look.dark.text, look.dark.surround, look.dark.link):
            assert colour in email.html
        for link in look.links:
            assert f'href="{link.url}"' in email.html and f"{link.label}: {link.url}" in email.text
        if look.about:
            assert look.about in email.html and look.about in " ".join(email.text.split())
        page = web_page(issue, config)
        assert '<meta name="color-scheme" content="light dark">' in page
        assert "@media (prefers-color-scheme: dark)" in page


def test_the_header_shows_the_logo_and_the_name(themed: Site) -> None:
    config = themed.config
    issue = load_issue(themed.issues_dir / SURVEY.name, config)
    html = render(issue, config).variants["email"].html
    page = web_page(issue, config)
    name = config.text("site.name")
    logo = config.theme.logo
    for document in (html, page):
        assert name in re.sub(r"<[^>]+>", "", document.split("<h1")[0])  # above the title
        logos = [img for img in Tags(document).named("img") if "/theme/logo." in str(img["src"])]
        if logo is None:
            assert logos == []
            continue
        width, height = logo.shown(config.integer("theme.logo_height"), 200)
        # beside the name that says it, the logo's alt is empty: read once, not twice
        assert logos == [logos[0] | {"width": str(width), "height": str(height), "alt": ""}], logos


def test_the_confirmation_email_wears_the_theme_too(themed: Site) -> None:
    """The first email a person gets from the group: its logo, name and colours."""
    config = themed.config
    html, _text = confirmation.render(config, confirmation.sample_context(config, NOW))
    logo, light = config.theme.logo, config.theme.light
    logos = [img for img in Tags(html).named("img") if "/theme/logo." in str(img["src"])]
    assert len(logos) == (0 if logo is None else 1)
    assert config.text("site.name") in re.sub(r"<[^>]+>", "", html.split("<h1")[0])
    assert light.accent in html and light.surround in html
    assert "fonts.googleapis" not in html


def test_a_logo_alone_carries_the_name_as_its_alt(tmp_path: Path) -> None:
    (tmp_path / "logo.png").write_bytes(png((400, 100)))
    config = load(
        tmp_path, '[site]\nname = "The Group"\n[theme]\nlogo = "logo.png"\nshow_name = false\n'
    )
    issue_dir = tmp_path / "issues"
    issue_dir.mkdir()
    path = issue_dir / "2020-01-01-hello.md"
    path.write_text("---\ntitle: Hello\ndate: 2020-01-01\n---\nHi.\n", encoding="utf-8")
    html = render(load_issue(path, config), config).variants["email"].html
    (logo,) = [img for img in Tags(html).named("img") if "/theme/logo.png" in str(img["src"])]
    assert (logo["alt"], logo["width"], logo["height"]) == ("The Group", "192", "48")
    assert 'class="nr-site"' not in html


def test_build_and_serve_publish_the_logo_and_icons(themed: Site, tmp_path: Path) -> None:
    expected = themed.config.theme.files()
    if not expected:
        return  # the plain theme: nothing to publish
    lists.sync(themed)
    files = static_files(themed, NOW)
    for name, data in expected.items():
        assert files[name] == data
    with TestClient(create_app(themed)) as client:
        for name, data in expected.items():
            answer = client.get(f"/{name}")
            assert answer.status_code == 200 and answer.content == data
            assert answer.headers["content-type"] == "image/png"
        assert client.get("/theme/icons/myspace.png").status_code == 404
        assert client.get("/theme/../newsroom.toml").status_code == 404
        style = client.get("/style.css").text
        assert themed.config.theme.dark.background in style
