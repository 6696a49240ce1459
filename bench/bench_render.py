"""Rendering benchmark: time to render each example issue (every variant), and the rate of the
per-recipient personalisation step, side by side with a full re-render per recipient (what it
replaces) in the same run. Run: .venv/bin/python bench/bench_render.py"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from newsroom.compose.issues import load_all
from newsroom.compose.personalise import compiled
from newsroom.compose.rendering import Audience, render, render_variant
from newsroom.site import Site

ROOT = Path(__file__).resolve().parent.parent


def median_seconds(function: object, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    site = Site.open(ROOT)
    issues = load_all(site)
    print(f"{'issue':45} {'variants':>8} {'render':>9} {'per variant':>12} {'HTML KB':>8}")
    for issue in issues:
        rendered = render(issue, site.config)
        seconds = median_seconds(lambda issue=issue: render(issue, site.config), 30)
        count = len(rendered.variants)
        size = len(rendered.variants["email"].html.encode()) / 1024
        print(
            f"{issue.slug:45} {count:8} {seconds * 1000:7.2f}ms {seconds / count * 1000:10.2f}ms {size:8.0f}"
        )

    issue = next(i for i in issues if i.slug == "sln-bulletin")
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


if __name__ == "__main__":
    main()
