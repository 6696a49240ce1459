"""Images beside an issue (issue #14, item 3): an image in issues/images/ is shown in the email,
the web page, the feeds and the text part at its absolute address with width and height;
`serve` and `build` publish its copies (the email's scaled once, every copy without EXIF or
GPS); every path or file that is not a real, bounded JPEG or PNG inside issues/ is an error at
its line; `check` warns about a file over 1 MB and an image loaded from another site."""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import feedparser
import pytest
from PIL import ExifTags, Image, ImageCms, PngImagePlugin
from starlette.testclient import TestClient

from newsroom.compose import images
from newsroom.compose.issues import load_issue
from newsroom.compose.rendering import render, web_page
from newsroom.site import Site
from newsroom.web.app import create_app
from tests.conftest import Run
from tests.smtpserver import TestSMTPServer

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
BASE = "http://localhost:8000"
ISSUE = """\
---
title: Our meeting
date: 2026-02-01
to: all-members
summary: The meeting in pictures.
---
More than 500 members joined the call.

![The Zoom call: forty faces in a grid](images/zoom-call.jpg)

::: private
![The committee's notes on a whiteboard](images/notes.png)
:::
"""


def photo(path: Path, size: tuple[int, int], orientation: int = 1) -> Path:
    """A phone photo as phones write them: EXIF with the phone's name and a GPS position, a
    comment, XMP and an sRGB colour profile."""
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "PhoneMakerCANARY"
    exif[ExifTags.Base.Orientation] = orientation
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (51.0, 30.0, 26.0)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (180, 40, 40)).save(
        path,
        "JPEG",
        exif=exif.tobytes(),
        comment=b"CommentCANARY",
        xmp=b"<x:xmpmeta>XmpCANARY</x:xmpmeta>",
        icc_profile=icc,
        quality=90,
    )
    return path


def drawing(path: Path, size: tuple[int, int] = (400, 300)) -> Path:
    text = PngImagePlugin.PngInfo()
    text.add_text("Location", "TextCANARY")
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (20, 20, 160)).save(path, "PNG", pnginfo=text)
    return path


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares WIDTH × HEIGHT pixels in a few dozen bytes: a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    head = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", head)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


@pytest.fixture
def pictured(site: Site) -> Site:
    photo(site.issues_dir / "images/zoom-call.jpg", (3000, 2000))
    drawing(site.issues_dir / "images/notes.png")
    (site.issues_dir / "2026-02-01-meeting.md").write_text(ISSUE, encoding="utf-8")
    return site


@pytest.fixture
def client(pictured: Site) -> Iterator[TestClient]:
    with TestClient(create_app(pictured, clock=lambda: NOW)) as test_client:
        yield test_client


def test_an_image_is_shown_at_its_absolute_address_with_width_and_height(pictured: Site) -> None:
    issue = load_issue(pictured.issues_dir / "2026-02-01-meeting.md", pictured.config)
    picture = issue.images["images/zoom-call.jpg"]
    folder = f"{BASE}/images/{picture.digest[:16]}"
    rendered = render(issue, pictured.config)
    email = rendered.variants["email"].html
    # 1104 px wide (the 552 px column at 2x), shown 552 wide: Outlook goes by the attributes
    assert f'src="{folder}/zoom-call-1104w.jpg"' in email
    assert 'width="552" height="368"' in email
    assert "max-width: 100%" in email  # a phone narrows it
    page = web_page(issue, pictured.config)
    assert f'src="{folder}/zoom-call.jpg"' in page and 'width="3000" height="2000"' in page
    assert "images/notes.png" not in page  # in a private block: email only
    text = rendered.variants["email"].text
    assert "[image: The Zoom call: forty faces in a grid] [1]" in text
    assert f"[1] {folder}/zoom-call.jpg" in text
    notes = issue.images["images/notes.png"]  # small: the email shows the file itself
    assert f'src="{BASE}/images/{notes.digest[:16]}/notes.png"' in email
    assert 'width="400" height="300"' in email


def test_a_phone_photo_turned_by_exif_is_shown_upright(site: Site) -> None:
    photo(site.issues_dir / "images/zoom-call.jpg", (3000, 2000), orientation=6)
    (site.issues_dir / "2026-02-01-meeting.md").write_text(ISSUE.split("::: private")[0])
    issue = load_issue(site.issues_dir / "2026-02-01-meeting.md", site.config)
    picture = issue.images["images/zoom-call.jpg"]
    assert (picture.width, picture.height) == (2000, 3000)
    assert 'width="552" height="828"' in render(issue, site.config).variants["email"].html
    files = images.publish(picture, site.root / images.CACHE)
    with Image.open(files[picture.web.address]) as web:
        assert web.size == (2000, 3000)
    with Image.open(files[picture.email.address]) as email:
        assert email.size == (1104, 1656)


def test_published_copies_carry_no_metadata_but_the_colour_profile(pictured: Site) -> None:
    issue = load_issue(pictured.issues_dir / "2026-02-01-meeting.md", pictured.config)
    for picture in issue.images.values():
        for address, path in images.publish(picture, pictured.root / images.CACHE).items():
            data = path.read_bytes()
            assert b"CANARY" not in data and b"Exif" not in data, address
            with Image.open(io.BytesIO(data)) as copy:
                assert not copy.getexif(), address
                assert not {"exif", "comment", "xmp", "Location"} & set(copy.info), address
                if picture.kind == "JPEG":
                    assert copy.info.get("icc_profile"), address  # colours stay right


def test_each_image_is_scaled_once_whatever_the_number_of_renders_builds_and_requests(
    pictured: Site, cli: Run, client: TestClient, tmp_path: Path
) -> None:
    cache = pictured.root / images.CACHE
    issue = load_issue(pictured.issues_dir / "2026-02-01-meeting.md", pictured.config)
    for _ in range(3):
        render(issue, pictured.config)
    assert not cache.exists()  # rendering (every send) reads no pixel
    picture = issue.images["images/zoom-call.jpg"]
    first = client.get(f"/{picture.email.address}")
    assert first.status_code == 200 and first.headers["content-type"] == "image/jpeg"
    assert "immutable" in first.headers["cache-control"]
    made = {path.name: path.stat().st_mtime_ns for path in cache.iterdir()}
    assert len(made) == 2  # both of the photo's copies, from one decoding
    assert client.get(f"/{picture.email.address}").content == first.content
    assert cli("build", "--out", str(tmp_path / "one"), now=NOW).exit_code == 0
    again = {path.name: path.stat().st_mtime_ns for path in cache.iterdir()}
    assert len(again) == 3 and made.items() < again.items()  # the drawing's one copy added
    assert cli("build", "--out", str(tmp_path / "two"), now=NOW).exit_code == 0
    assert {path.name: path.stat().st_mtime_ns for path in cache.iterdir()} == again
    built = tmp_path / "two" / picture.email.address
    assert built.read_bytes() == first.content


def test_serve_and_build_publish_the_images_of_every_issue_and_nothing_else(
    pictured: Site, client: TestClient, cli: Run, tmp_path: Path
) -> None:
    draft = ISSUE.replace("2026-02-01", "2026-12-01").replace("zoom-call.jpg", "draft.jpg")
    photo(pictured.issues_dir / "images/draft.jpg", (800, 600))
    (pictured.issues_dir / "2026-12-01-next.md").write_text(draft, encoding="utf-8")
    drawing(pictured.issues_dir / "images/unused.png", (10, 10))
    issue = load_issue(pictured.issues_dir / "2026-12-01-next.md", pictured.config)
    address = issue.images["images/draft.jpg"].web.address
    assert client.get("/issues/next/").status_code == 404  # a draft's page is not out yet...
    assert client.get(f"/{address}").status_code == 200  # ...but its email may be
    assert client.get("/images/0123456789abcdef/unused.png").status_code == 404
    assert client.get("/issues/images/unused.png").status_code == 404
    feed = feedparser.parse(client.get("/feed.xml").content)
    [entry] = feed.entries
    assert f'src="{BASE}/images/' in entry.content[0].value
    assert cli("build", "--out", str(tmp_path / "public"), now=NOW).exit_code == 0
    public = tmp_path / "public"
    built = sorted(p.relative_to(public).as_posix() for p in public.rglob("*.*g"))
    assert len(built) == 4 and address in built
    assert not any("unused" in name for name in built)


def test_an_email_arrives_with_the_images_addresses(
    pictured: Site, cli: Run, smtp_server: TestSMTPServer
) -> None:
    result = cli("send", "meeting", "--test", "me@example.org")
    assert result.exit_code == 0, result.output
    [copy] = smtp_server.messages
    html = copy.body("html")
    assert f'src="{BASE}/images/' in html and 'width="552"' in html
    assert f"{BASE}/images/" in copy.body()


BAD = """\
---
title: Bad images
date: 2026-02-01
---
![outside](../secret.jpg)
![absolute](/etc/secret.jpg)
![encoded](images/%2e%2e/%2e%2e/secret.jpg)
![a link out](images/link.jpg)
![not an image](images/notes.txt)
![a text file named .jpg](images/fake.jpg)
![missing](images/nowhere.jpg)
![a folder](images/folder.png)
![](images/ok.png)
![a bomb](images/bomb.png)
![a bigger bomb](images/huge.png)
![damaged](images/broken.png)
![too large](images/large.jpg)
"""


def test_every_image_that_is_not_a_bounded_jpeg_or_png_inside_issues_is_an_error(
    site: Site, cli: Run
) -> None:
    folder = site.issues_dir / "images"
    photo(site.root / "secret.jpg", (10, 10))
    folder.mkdir()
    (folder / "link.jpg").symlink_to(site.root / "secret.jpg")
    (folder / "notes.txt").write_text("notes")
    (folder / "fake.jpg").write_text("not a picture")
    (folder / "folder.png").mkdir()
    drawing(folder / "ok.png")
    (folder / "bomb.png").write_bytes(png_header(8000, 8000))
    (folder / "huge.png").write_bytes(png_header(20000, 20000))
    broken = bytearray(drawing(folder / "broken.png").read_bytes())
    broken[-20] ^= 0xFF  # inside the IDAT chunk: its checksum no longer matches
    (folder / "broken.png").write_bytes(bytes(broken))
    with (folder / "large.jpg").open("wb") as handle:
        handle.truncate(images.MAX_BYTES + 1)
    (site.issues_dir / "2026-02-01-bad.md").write_text(BAD, encoding="utf-8")
    result = cli("check", str(site.issues_dir / "2026-02-01-bad.md"))
    assert result.exit_code == 1 and "Traceback" not in result.output
    out = "is outside the issues/ folder: an issue may only name files in issues/ (the file is published with it)"
    huge = "has more than 50 megapixels: scale it down first (2,000 pixels wide is plenty)"
    errors = [
        line.split(": ", 1) for line in result.stderr.splitlines() if ": warning:" not in line
    ]
    assert errors == [
        ["issues/2026-02-01-bad.md:5", f'image "../secret.jpg" {out}'],
        ["issues/2026-02-01-bad.md:6", f'image "/etc/secret.jpg" {out}'],
        ["issues/2026-02-01-bad.md:7", f'image "images/../../secret.jpg" {out}'],
        ["issues/2026-02-01-bad.md:8", f'image "images/link.jpg" {out}'],
        ["issues/2026-02-01-bad.md:9", 'image "images/notes.txt" is not a .jpg, .jpeg or .png file: save photos as JPEG and drawings as PNG (every email client shows those two)'],
        ["issues/2026-02-01-bad.md:10", 'image "images/fake.jpg" is not a JPEG image inside (whatever its name says): open it and save it as JPEG again (a phone\'s HEIC photo must be exported as JPEG)'],
        ["issues/2026-02-01-bad.md:11", 'image "images/nowhere.jpg" not found: put the file at issues/images/nowhere.jpg'],
        ["issues/2026-02-01-bad.md:12", 'image "images/folder.png" is not a file'],
        ["issues/2026-02-01-bad.md:13", 'image "images/ok.png" has no alt text: write ![what the image shows](images/ok.png)'],
        ["issues/2026-02-01-bad.md:14", 'image "images/bomb.png" is 8,000 × 8,000 pixels, more than 50 megapixels: scale it down first (2,000 pixels wide is plenty)'],
        ["issues/2026-02-01-bad.md:15", f'image "images/huge.png" {huge}'],
        ["issues/2026-02-01-bad.md:16", "image \"images/broken.png\" is damaged (broken PNG file (bad header checksum in b'IDAT')): save it again"],
        ["issues/2026-02-01-bad.md:17", 'image "images/large.jpg" is larger than 20 MB: make it smaller (a photo 2,000 pixels wide is plenty for a web page)'],
    ]  # fmt: skip


def test_an_image_that_cannot_be_decoded_stops_the_build_with_its_name(
    pictured: Site, cli: Run, tmp_path: Path
) -> None:
    path = pictured.issues_dir / "images/zoom-call.jpg"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # the header is intact
    result = cli("build", "--out", str(tmp_path / "public"), now=NOW)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.startswith("Error: issues/images/zoom-call.jpg: is damaged (")
    assert not (tmp_path / "public").exists()


def test_check_warns_about_a_large_image_and_an_image_from_another_site(
    site: Site, cli: Run
) -> None:
    noise = Image.frombytes("RGB", (700, 700), os.urandom(700 * 700 * 3))
    (site.issues_dir / "images").mkdir()
    noise.save(site.issues_dir / "images/noise.png")
    size = (site.issues_dir / "images/noise.png").stat().st_size
    (site.issues_dir / "2026-02-01-warned.md").write_text(
        "---\ntitle: Warned\ndate: 2026-02-01\nsummary: S.\n---\n"
        "![Noise](images/noise.png)\n\n![A tracker](https://example.org/pixel.png)\n",
        encoding="utf-8",
    )
    result = cli("check", str(site.issues_dir / "2026-02-01-warned.md"), "--strict")
    assert result.exit_code == 1
    warnings = [line for line in result.stderr.splitlines() if line.startswith("issues/")]
    assert warnings == [
        f"issues/2026-02-01-warned.md:6: warning: image issues/images/noise.png is "
        f"{size / 1024 / 1024:.1f} MB: the web page loads all of it (the email a smaller "
        "copy); save it smaller, such as 2,000 pixels wide at JPEG quality 80",
        'issues/2026-02-01-warned.md:8: warning: image "https://example.org/pixel.png" is '
        "loaded from another site: whoever runs it learns who opened the email, when and "
        "where; put the file beside the issue (issues/images/) and write ![what it "
        "shows](images/NAME.jpg)",
    ]


@pytest.mark.browser
@pytest.mark.parametrize("width", [375, 600])
def test_the_email_shows_its_picture_within_the_screen(
    browser: Any, pictured: Site, width: int
) -> None:
    issue = load_issue(pictured.issues_dir / "2026-02-01-meeting.md", pictured.config)
    files: dict[str, Path] = {}
    for picture in issue.images.values():
        files |= images.publish(picture, pictured.root / images.CACHE)
    html = render(issue, pictured.config).variants["email"].html

    def answer(route: Any) -> None:  # the site's images from the cache; nothing else loads
        address = route.request.url.removeprefix(f"{BASE}/")
        if address in files:
            route.fulfill(body=files[address].read_bytes(), content_type="image/jpeg")
        else:
            route.abort()

    page = browser.new_page(viewport={"width": width, "height": 800})
    try:
        page.route("**/*", answer)
        page.set_content(html, wait_until="load")
        shown = page.evaluate(
            "[...document.images].map(i => [i.naturalWidth, i.getBoundingClientRect().left,"
            " i.getBoundingClientRect().right])"
        )
        photo = shown[0]
        assert photo[0] == images.EMAIL_PIXELS  # the email's copy arrived, decoded
        assert photo[1] >= 0 and photo[2] <= width  # within the screen
        # 552 px at 600, and the 375 px screen less the text's 24 px padding each side on a phone
        assert photo[2] - photo[1] == (images.EMAIL_COLUMN if width == 600 else width - 48)
        assert page.evaluate("document.documentElement.scrollWidth") <= width
    finally:
        page.close()


def test_cmyk_photos_and_transparent_drawings_are_published_too(site: Site) -> None:
    folder = site.issues_dir / "images"
    folder.mkdir()
    Image.new("CMYK", (2400, 1200), (0, 80, 80, 10)).save(folder / "print.jpg", quality=90)
    palette = Image.new("P", (2400, 1200), 1)
    palette.putpalette([255, 255, 255, 200, 0, 0] + [0] * 762)
    palette.save(folder / "logo.png", transparency=0)
    (site.issues_dir / "2026-02-01-kinds.md").write_text(
        "---\ntitle: Kinds\ndate: 2026-02-01\n---\n![A print](images/print.jpg)\n\n"
        "![Our logo](images/logo.png)\n",
        encoding="utf-8",
    )
    issue = load_issue(site.issues_dir / "2026-02-01-kinds.md", site.config)
    for picture in issue.images.values():
        files = images.publish(picture, site.root / images.CACHE)
        with Image.open(files[picture.email.address]) as email:
            assert email.size == (1104, 552)
            assert email.mode in ("RGB", "RGBA")  # what every email client shows
        with Image.open(files[picture.web.address]) as web:
            assert web.size == (2400, 1200)
