"""The local pages' frames: an email's own colour-scheme media queries decided for a light or a
dark frame (Chromium does not let an iframe element choose them), the text left alone; and the
Host headers a local page answers."""

from __future__ import annotations

from pathlib import Path

from newsroom.compose.issues import load_issue
from newsroom.compose.rendering import render
from newsroom.site import Site
from newsroom.web.frames import allowed_hosts, force_scheme, is_loopback

EMAIL = """<!doctype html><html><head>
<meta name="color-scheme" content="light dark">
<meta name="supported-color-schemes" content="light dark">
<style>body { color: #000; }
@media (prefers-color-scheme: dark) { body { color: #eee !important; } }
@media screen and (PREFERS-COLOR-SCHEME:light) { p { color: #111; } }
</style></head>
<body><p>Write (prefers-color-scheme: dark) in your CSS to do it.</p></body></html>"""


def test_a_dark_frame_has_the_dark_rules_on_and_the_light_ones_off() -> None:
    dark = force_scheme(EMAIL, "dark")
    assert "@media (color) { body { color: #eee !important; } }" in dark
    assert "@media screen and (monochrome) { p" in dark
    assert dark.count('<meta name="color-scheme" content="dark">') == 2
    assert 'content="light dark"' not in dark
    # the email's own words are never rewritten, only its style elements
    assert "<p>Write (prefers-color-scheme: dark) in your CSS to do it.</p>" in dark


def test_a_light_frame_has_the_dark_rules_off() -> None:
    light = force_scheme(EMAIL, "light")
    assert "@media (monochrome) { body" in light
    assert "@media screen and (color) { p" in light
    assert '<meta name="color-scheme" content="light">' in light


def test_every_dark_rule_of_a_rendered_email_is_decided(site: Site, examples: Path) -> None:
    issue = load_issue(examples / "2022-10-03-sln-bulletin.md", site.config)
    html = render(issue, site.config).variants["email"].html
    assert "prefers-color-scheme: dark" in html
    for scheme in ("light", "dark"):
        forced = force_scheme(html, scheme)
        assert "prefers-color-scheme" not in forced
        assert len(forced) - len(html) < 100  # nothing else changed


def test_a_local_page_answers_loopback_names_only() -> None:
    assert set(allowed_hosts("127.0.0.1")) == {"127.0.0.1", "localhost", "::1", "[::1]"}
    assert "192.168.1.5" in allowed_hosts("192.168.1.5")
    assert "evil.example" not in allowed_hosts("192.168.1.5")
    assert allowed_hosts("0.0.0.0") == ["*"]  # every address of the machine: asked for
    assert is_loopback("127.0.0.1") and is_loopback("::1") and not is_loopback("0.0.0.0")
