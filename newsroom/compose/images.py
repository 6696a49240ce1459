"""Images beside an issue (`![alt](images/zoom-call.jpg)`): checked where the issue names them,
shown at absolute `site.base_url` addresses with width and height, and published as copies
without metadata — the email's scaled down once per image and kept in the site's cache folder.

    found = read("images/zoom-call.jpg", issue_folder, issues_root)   # a Picture, or a problem
    html = in_email(html, issue.images, base_url)   # scaled copy, width and height
    html = on_web(html, issue.images, base_url)     # full-size copy, width and height
    files = publish(picture, site_root / CACHE)     # address -> file, made once, then reused

A copy's address carries the first 16 hex digits of the sha256 of the file: a changed photo gets
a new address (caches may keep a copy for ever), and the photo of an issue not yet published
cannot be found by guessing its name. Pillow is imported only where an image is read.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
import unicodedata
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from html import escape, unescape
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from newsroom.compose import blocks
from newsroom.errors import NewsroomError

CACHE = Path("cache") / "images"  # below the site folder: copies newsroom made, safe to delete
VERSION = 1  # in the cache's file names: raise it when the way copies are made changes
# The email is 600 px wide and mj-text pads 24 px each side: pictures sit in a 552 px column.
# Their copy for email is twice that, sharp on the 2x screens of phones and most laptops, and
# the img tag says width="552" (Outlook's Word engine ignores max-width and needs it, and every
# client keeps the space before the picture arrives); a phone narrows it with max-width: 100%.
EMAIL_COLUMN = 552
EMAIL_PIXELS = 2 * EMAIL_COLUMN
JPEG_QUALITY = 82  # the email's copy: shown at half its width, where artefacts do not show
MAX_BYTES = 20 * 1024 * 1024  # read at most this much of a file
LARGE_BYTES = 1024 * 1024  # `newsroom check` warns above it: the web page loads the whole file
# Pillow decodes 3 or 4 bytes per pixel whatever the file's size: a 100 KB PNG can declare
# 40,000 × 40,000 pixels (a "decompression bomb", 6 GB decoded). 50 megapixels is past every
# phone's normal photo and stops that before any decoding.
MAX_PIXELS = 50_000_000
KINDS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}  # what every email client shows
PILLOW_FORMATS = {"JPEG": ("JPEG",), "PNG": ("PNG",)}  # a JPEG with extra frames (MPO) too
EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png"}
MEDIA_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png"}
ORIENTATION = 0x0112  # the EXIF tag saying how a phone was held
TURNED = (5, 6, 7, 8)  # orientations a quarter turn away: width and height swap


@dataclass(frozen=True)
class Copy:
    """One published file of a picture and how an img tag shows it."""

    address: str  # below site.base_url: images/0123456789abcdef/zoom-call.jpg
    width: int  # of the file
    height: int
    shown: tuple[int, int]  # the img tag's width and height
    cache_name: str  # its file in the cache folder
    scaled: bool = False  # smaller than the file it is made from


@dataclass(frozen=True)
class Picture:
    """An image file an issue names, checked: inside issues/, a JPEG or PNG, bounded."""

    path: Path  # resolved, inside the site's issues/ folder
    shown: str  # as a volunteer knows it: issues/images/zoom-call.jpg
    digest: str  # sha256 of the file's bytes
    kind: str  # JPEG or PNG
    width: int  # upright: the phone's orientation applied
    height: int
    size: int  # bytes

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.kind]

    @property
    def web(self) -> Copy:
        """The full-size copy, for the web page and the feeds (and the text part's link)."""
        size = (self.width, self.height)
        name = f"{self.digest}-web-v{VERSION}{EXTENSIONS[self.kind]}"
        return Copy(self._address(self._name()), *size, size, name)

    @property
    def email(self) -> Copy:
        """The copy an email shows: at most EMAIL_PIXELS wide, shown at most EMAIL_COLUMN."""
        shown = _fit(self.width, self.height, EMAIL_COLUMN)
        if self.width <= EMAIL_PIXELS:
            return Copy(self.web.address, self.width, self.height, shown, self.web.cache_name)
        width, height = _fit(self.width, self.height, EMAIL_PIXELS)
        stem, extension = os.path.splitext(self._name())
        name = f"{self.digest}-{width}w-v{VERSION}{extension}"
        address = self._address(f"{stem}-{width}w{extension}")
        return Copy(address, width, height, shown, name, scaled=True)

    def copies(self) -> tuple[Copy, ...]:
        web, email = self.web, self.email
        return (web,) if email.address == web.address else (web, email)

    def _address(self, name: str) -> str:
        return f"images/{self.digest[:16]}/{name}"

    def _name(self) -> str:
        """The file's name as an address may hold it: ASCII letters, digits, dot, dash."""
        plain = unicodedata.normalize("NFKD", self.path.stem).encode("ascii", "ignore").decode()
        stem = re.sub(r"[^A-Za-z0-9_-]+", "-", plain).strip("-")[:60] or "image"
        return stem + EXTENSIONS[self.kind]


def _fit(width: int, height: int, most: int) -> tuple[int, int]:
    """WIDTH × HEIGHT made at most MOST wide, never wider than it is."""
    if width <= most:
        return width, height
    return most, max(1, round(height * most / width))


# -- checking, where the issue names it ----------------------------------------------------------


class _Unreadable(Exception):
    """What is wrong with an image's content, in the words after its name."""


def read(url: str, base: Path, root: Path) -> Picture | str:
    """The image an issue in BASE names as URL (percent-encoded, as markdown-it gives it), or
    the problem with it. Like every file an issue names it must be inside ROOT (issues/)."""
    name = unquote(url)
    what = f'image "{name}"'
    path = blocks.inside(name, base, root)
    if path is None:
        return blocks.outside("image", name)
    kind = KINDS.get(path.suffix.lower())
    if kind is None:
        return (
            f"{what} is not a .jpg, .jpeg or .png file: save photos as JPEG and drawings as "
            "PNG (every email client shows those two)"
        )
    try:
        if not path.exists():
            shown = f"{root.name}/{path.relative_to(root.resolve()).as_posix()}"
            return f"{what} not found: put the file at {shown}"
        if not path.is_file():  # a folder, or a FIFO that reading would wait on for ever
            return f"{what} is not a file"
        data = _bounded(path)
    except OSError as exc:  # such as a name too long
        return f"{what} cannot be read: {exc.strerror}"
    if len(data) > MAX_BYTES:
        return (
            f"{what} is larger than {MAX_BYTES // 1024 // 1024} MB: make it smaller (a photo "
            "2,000 pixels wide is plenty for a web page)"
        )
    try:
        width, height = _measure(data, kind)
    except _Unreadable as exc:
        return f"{what} {exc}"
    shown = f"{root.name}/{path.relative_to(root.resolve()).as_posix()}"
    digest = hashlib.sha256(data).hexdigest()
    return Picture(path, shown, digest, kind, width, height, len(data))


def _bounded(path: Path) -> bytes:
    """The bytes of PATH, or MAX_BYTES + 1 of them when it has more. (read(MAX_BYTES + 1)
    alone would set aside 20 MB for every file, a third of the time it takes to read one.)"""
    with path.open("rb") as handle:
        return handle.read(min(os.fstat(handle.fileno()).st_size, MAX_BYTES) + 1)


@contextmanager
def _pillow(kind: str) -> Iterator[Any]:
    """Pillow, with its decompression-bomb warning an error and its errors in our words."""
    from PIL import Image, UnidentifiedImageError

    too_many = (
        f"has more than {MAX_PIXELS // 1_000_000} megapixels: scale it down first (2,000 "
        "pixels wide is plenty)"
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield Image
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _Unreadable(too_many) from None
    except UnidentifiedImageError:
        raise _Unreadable(
            f"is not a {kind} image inside (whatever its name says): open it and save it as "
            f"{kind} again (a phone's HEIC photo must be exported as JPEG)"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError) as exc:
        raise _Unreadable(f"is damaged ({exc}): save it again") from None


def _measure(data: bytes, kind: str) -> tuple[int, int]:
    """The upright width and height of DATA, a KIND image, read from its header and checked
    (Pillow's verify) without decoding its pixels."""
    with _pillow(kind) as image_module:
        image = image_module.open(io.BytesIO(data), formats=PILLOW_FORMATS[kind])
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise _Unreadable(
                f"is {width:,} × {height:,} pixels, more than {MAX_PIXELS // 1_000_000} "
                "megapixels: scale it down first (2,000 pixels wide is plenty)"
            )
        image.verify()  # it must come first, and leaves the image unusable: open it again
        image = image_module.open(io.BytesIO(data), formats=PILLOW_FORMATS[kind])
        turned = image.getexif().get(ORIENTATION, 1) in TURNED
    return (height, width) if turned else (width, height)


# -- img tags ------------------------------------------------------------------------------------

# An img tag as nh3 writes it: every attribute value in double quotes, `"` inside as &quot;
# (a `>` inside stays as it is, so the tag does not end at the first `>`).
IMG = re.compile(r'<img((?:\s+[A-Za-z-]+="[^"]*")*)\s*/?>')
ATTRIBUTE = re.compile(r'\s+([A-Za-z-]+)="([^"]*)"')


def in_email(html: str, pictures: Mapping[str, Picture], base: str) -> str:
    """HTML with each of PICTURES' img tags pointing at its email copy, with width and height."""
    return _tags(html, pictures, base, email=True)


def on_web(html: str, pictures: Mapping[str, Picture], base: str) -> str:
    """HTML with each of PICTURES' img tags pointing at its full-size copy, with its size."""
    return _tags(html, pictures, base, email=False)


def address(url: str, pictures: Mapping[str, Picture], base: str) -> str:
    """URL as a reader can open it: a picture's full-size copy under BASE, anything else as is."""
    picture = pictures.get(url)
    return f"{base}/{picture.web.address}" if picture else url


def _tags(html: str, pictures: Mapping[str, Picture], base: str, email: bool) -> str:
    if not pictures:
        return html

    def swap(match: re.Match[str]) -> str:
        attributes = dict(ATTRIBUTE.findall(match.group(1)))
        picture = pictures.get(unescape(attributes.get("src", "")))
        if picture is None:
            return match.group(0)
        copy = picture.email if email else picture.web
        attributes["src"] = escape(f"{base}/{copy.address}")
        attributes["width"], attributes["height"] = (str(n) for n in copy.shown)
        return "<img" + "".join(f' {k}="{v}"' for k, v in attributes.items()) + ">"

    return IMG.sub(swap, html)


# -- published copies ----------------------------------------------------------------------------


def publish(picture: Picture, cache: Path) -> dict[str, Path]:
    """PICTURE's copies (address -> file in CACHE), made now if CACHE lacks one: each image is
    decoded and scaled once, however many sends, builds and servers use it. Raises
    NewsroomError naming the file if it changed since it was read or cannot be decoded."""
    copies = picture.copies()
    missing = [copy for copy in copies if not (cache / copy.cache_name).is_file()]
    if missing:
        _make(picture, missing, cache)
    return {copy.address: cache / copy.cache_name for copy in copies}


def _make(picture: Picture, copies: list[Copy], cache: Path) -> None:
    try:
        data = _bounded(picture.path)
    except OSError as exc:
        raise NewsroomError(f"{picture.shown}: cannot be read: {exc.strerror}") from None
    if hashlib.sha256(data).hexdigest() != picture.digest:
        raise NewsroomError(f"{picture.shown}: the file changed while newsroom was reading it")
    try:
        with _pillow(picture.kind) as image_module:
            image = image_module.open(io.BytesIO(data), formats=PILLOW_FORMATS[picture.kind])
            image.load()
            made = {copy.cache_name: _encode(_Decoded(image), copy) for copy in copies}
    except _Unreadable as exc:
        raise NewsroomError(f"{picture.shown}: {exc}") from None
    try:
        cache.mkdir(parents=True, exist_ok=True)
        for name, encoded in made.items():
            _write(cache / name, encoded)
    except OSError as exc:
        raise NewsroomError(f"cannot write the image cache {cache}: {exc.strerror}") from None


class _Decoded:
    """A decoded image turned upright, and what of its metadata its copies keep: the colour
    profile and a PNG's transparent colour. Nothing else — no EXIF (a phone photo's GPS
    position, the phone, the time), no XMP, no comments or text chunks."""

    def __init__(self, original: Any) -> None:
        from PIL import ImageOps

        self.kind = "PNG" if original.format == "PNG" else "JPEG"
        self.icc = original.info.get("icc_profile")
        self.transparency = original.info.get("transparency")
        turned = original.getexif().get(ORIENTATION, 1) not in (1, None)
        self.original = original
        self.upright = ImageOps.exif_transpose(original) if turned else original


def _encode(decoded: _Decoded, copy: Copy) -> bytes:
    from PIL import Image

    image, icc, transparency = decoded.upright, decoded.icc, decoded.transparency
    if copy.scaled:
        if image.mode not in ("RGB", "RGBA", "L", "LA"):
            alpha = "A" in image.mode or transparency is not None
            image, transparency = image.convert("RGBA" if alpha else "RGB"), None
        image = image.resize((copy.width, copy.height), Image.Resampling.LANCZOS)
    options: dict[str, Any] = {}
    if decoded.kind == "JPEG":
        if image.mode not in ("RGB", "L"):  # CMYK: email clients show RGB reliably
            image, icc = image.convert("RGB"), None
        # The file's own quantisation, when it is the file's own pixels: the full-size copy
        # loses nothing more than its metadata.
        keep = image is decoded.original
        options = {"quality": "keep", "subsampling": "keep"} if keep else {"quality": JPEG_QUALITY}
    elif transparency is not None:
        options = {"transparency": transparency}
    saved = dict(image.info)
    image.info.clear()  # Pillow falls back on the source's comment when saving
    try:
        out = io.BytesIO()
        image.save(out, decoded.kind, icc_profile=icc, **options)
    finally:
        image.info.update(saved)
    return out.getvalue()


def _write(path: Path, data: bytes) -> None:
    """DATA as PATH, all at once: another sender or server reading the cache never sees half,
    and two making the same copy at once (two requests, a build beside a server) each write
    a file of their own before one replaces the other's."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.chmod(temporary, 0o644)  # mkstemp's 0600 would hide it from a web server's user
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
