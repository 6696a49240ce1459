"""Rendering benchmark: time to render each example issue (every variant); the render time of
one issue on a site as it is today beside the same issue on sites with more of the
organisation's look (three phone photos beside it), side by side in one run with the ratio
(issue #14: at most 1.2 ×); that each image is scaled once, not per render or send; and the
rate of the per-recipient personalisation step beside a full re-render per recipient.
Run: .venv/bin/python bench/bench_render.py [--before TREE]

--before TREE adds "today" as the issue means it: the plain case rendered by the code of TREE (a
checkout from before issue #14, e.g. `git worktree add /tmp/before 4ac6932`) in a child process
of its own, interleaved round by round with the cases here."""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from PIL import Image

from newsroom.compose import images
from newsroom.compose.issues import Issue, load_all, load_issue
from newsroom.compose.personalise import compiled
from newsroom.compose.rendering import Audience, render, render_variant
from newsroom.site import Site, init

ROOT = Path(__file__).resolve().parent.parent
ISSUE = "2022-10-03-sln-bulletin.md"  # the example with every kind of block and an only block
PHOTO = (4032, 3024)  # a 12-megapixel phone photo
TARGET = 1.2


def median_seconds(function: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# -- sites: one function per case; each makes a site in FOLDER and returns its issue's path ------


def plain_site(folder: Path) -> Path:
    """The site as it is today: the example issue, no images."""
    init(folder, "Bench Newsroom")
    for example in (ROOT / "issues").iterdir():
        if example.is_file():
            shutil.copy(example, folder / "issues" / example.name)
    return folder / "issues" / ISSUE


def pictured_site(folder: Path) -> Path:
    """Today's site with three phone photos in the issue, one at the top and one in each of
    the first two paragraphs after it."""
    path = plain_site(folder)
    (folder / "issues/images").mkdir()
    for number in range(3):
        photo(folder / f"issues/images/photo-{number}.jpg", sigma=10 + number)
    lines = path.read_text(encoding="utf-8").split("\n")
    body = lines.index("---", 1) + 1
    pictures = [f"![Photo {n} of the meeting](images/photo-{n}.jpg)\n" for n in range(3)]
    path.write_text("\n".join([*lines[:body], *pictures, *lines[body:]]), encoding="utf-8")
    return path


def photo(path: Path, sigma: int) -> None:
    """A PHOTO-sized JPEG about the size a phone writes (3 MB): gradients and some noise."""
    noise = Image.effect_noise(PHOTO, sigma)
    ramp, disc = Image.linear_gradient("L").resize(PHOTO), Image.radial_gradient("L").resize(PHOTO)
    channels = (ramp, Image.blend(noise, ramp, 0.5), disc)
    Image.merge("RGB", [Image.blend(c, noise, 0.3) for c in channels]).save(path, quality=90)


THEME = """
logo = "theme/logo.png"
about = "Bench Newsroom is written by volunteers for the members of the network."
links = "website=https://news.example.org, mastodon=https://social.example.org/@news, bluesky=https://bsky.app/profile/news.example.org"
header = "#1a1a1a"
header_text = "#ffffff"
"""


def branded_site(folder: Path) -> Path:
    """The three photos on a site with the organisation's look: the project's own logo, a
    dark header band, a sentence about the group and three links with icons (issue #14)."""
    path = pictured_site(folder)
    (folder / "theme").mkdir()
    shutil.copy(ROOT / "theme/logo.png", folder / "theme/logo.png")
    settings = folder / "newsroom.toml"  # its [theme] section lists every key commented out
    text = settings.read_text(encoding="utf-8")
    settings.write_text(text.replace("[theme]\n", "[theme]" + THEME, 1), encoding="utf-8")
    return path


CASES: list[tuple[str, Callable[[Path], Path]]] = [
    ("no images, no theme", plain_site),
    ("three images", pictured_site),
    ("theme, logo and three images", branded_site),
]


# The child process that renders with the code of another tree: one line in ("render"), one
# line out (the median seconds of three renders).
BEFORE = """
import sys, time, statistics, shutil
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from newsroom.compose.issues import load_issue
from newsroom.compose.rendering import render
from newsroom.site import Site, init
folder = Path(sys.argv[2])
init(folder, "Bench Newsroom")
for example in Path(sys.argv[3]).iterdir():
    if example.is_file():
        shutil.copy(example, folder / "issues" / example.name)
site = Site.open(folder)
issue = load_issue(folder / "issues" / sys.argv[4], site.config)
print("ready", flush=True)
for line in sys.stdin:
    times = []
    for _ in range(3):
        start = time.perf_counter(); render(issue, site.config)
        times.append(time.perf_counter() - start)
    print(statistics.median(times), flush=True)
"""


class Before:
    """The plain case rendered by the code of TREE, in a child process."""

    def __init__(self, tree: Path, folder: Path) -> None:
        self.child = subprocess.Popen(
            [sys.executable, "-c", BEFORE, str(tree), str(folder), str(ROOT / "issues"), ISSUE],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=tree,
        )  # fmt: skip
        assert self.child.stdout is not None and self.child.stdout.readline().strip() == "ready"

    def __call__(self) -> float:
        assert self.child.stdin is not None and self.child.stdout is not None
        self.child.stdin.write("render\n")
        self.child.stdin.flush()
        return float(self.child.stdout.readline())

    def close(self) -> None:
        assert self.child.stdin is not None
        self.child.stdin.close()
        self.child.wait()


def compare_cases(workspace: Path, before_tree: Path | None = None) -> None:
    before = Before(before_tree, workspace / "before") if before_tree else None
    earlier: list[float] = []
    loaded: list[tuple[str, Site, Issue]] = []
    for index, (name, make) in enumerate(CASES):
        path = make(workspace / f"case-{index}")
        site = Site.open(path.parent.parent)
        loaded.append((name, site, load_issue(path, site.config)))
    renders: dict[str, list[float]] = {name: [] for name, _, _ in loaded}
    loads: dict[str, list[float]] = {name: [] for name, _, _ in loaded}
    for _ in range(15):  # interleaved rounds: drift on a shared machine hits every case alike
        if before is not None:
            earlier.append(before())
        for name, site, issue in loaded:
            renders[name].append(median_seconds(partial(render, issue, site.config), 3))
            loads[name].append(median_seconds(partial(load_issue, issue.path, site.config), 1))
    if before is not None:
        before.close()
    base = statistics.median(renders[loaded[0][0]])
    print(f"\n{'case':30} {'read issue':>11} {'render':>9} {'ratio':>7}")
    for name, _, _ in loaded:
        render_s, load_s = statistics.median(renders[name]), statistics.median(loads[name])
        ratio = render_s / base
        print(f"{name:30} {load_s * 1000:9.2f}ms {render_s * 1000:7.2f}ms {ratio:6.2f}×")
    worst = max(statistics.median(renders[name]) for name, _, _ in loaded[1:])
    if before is not None:
        today = statistics.median(earlier)
        print(
            f"{'before issue #14 (--before)':30} {'':>11} {today * 1000:7.2f}ms {today / base:6.2f}×"
        )
        verdict = "met" if worst / today <= TARGET else "NOT MET"
        print(
            f"target: every case renders within {TARGET} × of the code before issue #14: "
            f"{worst / today:.2f} ×, {verdict}"
        )
    print(f"the look's own cost, against this code's plain case: {worst / base:.2f} ×")
    scaled_once(*loaded[-1][1:])


def scaled_once(site: Site, issue: Issue) -> None:
    """Renders (one per send) make no copy; the first publication makes each image's copies,
    and every later one (another send, build or request) finds them in the cache."""
    cache = site.root / images.CACHE
    for _ in range(10):
        render(issue, site.config)
    pictures = list(issue.images.values())
    sizes = ", ".join(f"{p.size / 1e6:.1f} MB" for p in pictures)
    print(
        f"\n{len(pictures)} images ({sizes}); after 10 renders the cache holds {_count(cache)} files"
    )
    first = median_seconds(lambda: [images.publish(p, cache) for p in pictures], 1)
    made = {path: path.stat().st_mtime_ns for path in cache.iterdir()}
    again = median_seconds(lambda: [images.publish(p, cache) for p in pictures], 20)
    for _ in range(10):
        render(issue, site.config)
        [images.publish(p, cache) for p in pictures]
    unchanged = {path: path.stat().st_mtime_ns for path in cache.iterdir()} == made
    print(
        f"first publication (decode, strip, scale, encode): {first * 1000:.0f} ms for "
        f"{len(made)} copies; each later one: {again * 1000:.2f} ms (cache hit)"
    )
    print(f"10 more renders and publications rewrote no copy: {unchanged}")


def _count(folder: Path) -> int:
    return sum(1 for _ in folder.iterdir()) if folder.is_dir() else 0


# -- the examples and personalisation ------------------------------------------------------------


def examples() -> None:
    site = Site.open(ROOT)
    issues = load_all(site)
    print(f"{'issue':45} {'variants':>8} {'render':>9} {'per variant':>12} {'HTML KB':>8}")
    for issue in issues:
        rendered = render(issue, site.config)
        seconds = median_seconds(partial(render, issue, site.config), 30)
        count = len(rendered.variants)
        size = len(rendered.variants["email"].html.encode()) / 1024
        print(
            f"{issue.slug:45} {count:8} {seconds * 1000:7.2f}ms {seconds / count * 1000:10.2f}ms {size:8.0f}"
        )


def personalisation() -> None:
    site = Site.open(ROOT)
    issue = next(i for i in load_all(site) if i.slug == "sln-bulletin")
    variant = render(issue, site.config).variants["email"]
    html, text, subject = (
        compiled(variant.html, True),
        compiled(variant.text, False),
        compiled(variant.subject, False),
    )
    people = [
        {
            "first_name": f"Ann{n}",
            "name": f"Ann{n} <Smith> & co",
            "email": f"ann{n}@example.org",
            "unsubscribe_url": f"https://news.example.org/unsubscribe/{n:032d}",
            "preferences_url": f"https://news.example.org/preferences/{n:032d}",
        }
        for n in range(20_000)
    ]

    def personalise_all() -> None:
        for fields in people:
            html.fill(fields)
            text.fill(fields)
            subject.fill(fields)

    fill = median_seconds(personalise_all, 5) / len(people)

    def rerender_some() -> None:
        for _ in range(50):
            render_variant(issue, site.config, Audience(True), "email")

    rerender = median_seconds(rerender_some, 3) / 50
    print()
    print(
        f"personalise (HTML + text + subject): {fill * 1e6:.2f} µs/message = {1 / fill:,.0f} messages/s on one core"
    )
    print(
        f"reference, full re-render per recipient: {rerender * 1e3:.2f} ms/message = {1 / rerender:,.0f} messages/s"
    )
    print(f"ratio: personalising is {rerender / fill:,.0f}× faster than re-rendering")
    print("target: at least 50,000 messages/s:", "met" if 1 / fill >= 50_000 else "NOT MET")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", type=Path, help="a checkout of the code before issue #14")
    arguments = parser.parse_args()
    examples()
    with tempfile.TemporaryDirectory() as workspace:
        compare_cases(Path(workspace), arguments.before)
    personalisation()


if __name__ == "__main__":
    main()
