"""Write tests/data/fuzz/: mutants of the example issues, and hostile issues made by hand, that
`tests/test_fuzz.py` runs through reading, rendering, preflight, the web page, .ics and feeds.

    .venv/bin/python -m tests.make_fuzz_corpus     # rewrites the folder; commit the result

Mutants come from a fixed seed, so running it again writes the same files. Each mutant is one
example with a few edits: a span deleted, repeated or moved, lines swapped, the file cut short,
bytes flipped (not UTF-8 any more), or a hostile piece inserted (control characters, merge
fields, block markers, YAML anchors, unclosed brackets, long runs, far-off years).
"""

from __future__ import annotations

import random
import shutil
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).resolve().parent / "data" / "fuzz"
SEED = 20260301
MUTANTS = 96
PIECES = [
    "\x00", "\x02", "\x0b", "\x0c", "\x1b[31m", "\x7f", "\x85", "\u2028", "\ufeff", "\ufffe",
    "\ue000", "\ue001", "\r", "\r\n", "\t", "{{", "}}", "{{email}}", "{{unsubscribe_url}}",
    "{{first_name|}}", "{{ name | a|b }}", "{{nmae}}", ":::", "::: private\n", "\n:::\n",
    "::: only not (all-members or tag:x)\n", "::: poll\n", "::: meeting M\nwhen: 9999-12-31 23:30\n"
    "until: 00:30\n\n", "::: meeting M\nwhen: 1900-01-01 00:00\ntimezone: Etc/GMT-14\n\n",
    "::: supporters S\nsource: ../newsroom.toml\n\n", "::: action A\nurl: javascript:alert(1)\n\n",
    "&a ", "*a ", "<<: *a\n", "[", "](", "![](", "](https://e.org/", "<img ", '<img alt="">',
    "<script>alert(1)</script>", "<!--", "`", "```", "*", "_", "~~", "#######", "|", "| - |",
    "> ", "- ", "1. ", "a) ", "\\", "&amp;", "&#0;", "---\n", "title: [", "date: 0001-01-01\n",
    " " * 3000, "[" * 2000, "*a " * 1000, "> " * 500, "{{" * 1000, "<img " * 1000,
]  # fmt: skip
HOSTILE = {
    "alias-bomb.issue": "---\ntitle: T\ndate: 2021-01-01\na: &a [x, x, x, x, x, x, x, x, x]\n"
    + "".join(f"{b}: &{b} [{', '.join(['*' + a] * 9)}]\n" for a, b in pairwise("abcdefghi"))
    + "summary: *i\n---\nx\n",
    "deep-blocks.issue": "---\ntitle: T\ndate: 2021-01-01\n---\n"
    + "::: private\n" * 1000
    + "x\n"
    + ":::\n" * 1000,
    "deep-quotes-and-lists.issue": "---\ntitle: T\ndate: 2021-01-01\n---\n"
    + "> " * 1000
    + "x\n\n"
    + "".join("  " * i + "- x\n" for i in range(150)),
    "deep-yaml.issue": "---\ntitle: T\ndate: 2021-01-01\nsummary: "
    + "[" * 1000
    + "]" * 1000
    + "\n---\n",
    "far-years.issue": "---\ntitle: T\ndate: 9999-12-31\n---\n::: meeting A\nwhen: 9999-12-31 23:30\n"
    "until: 00:30\n:::\n\n::: meeting B\nwhen: 0001-01-01 00:10\ntimezone: Asia/Tokyo\n:::\n",
    "many-variants.issue": "---\ntitle: T\ndate: 2021-01-01\n---\n"  # 65 variants of 20 KB
    + "".join(
        f"::: only tag:t{n}\nFor {{{{name}}}} [group {n}](https://e.org/{n}).\n:::\n\n"
        for n in range(6)
    )
    + ("[" * 2000 + "\n\n") * 10,
    "long-lines.issue": "---\ntitle: T\ndate: 2021-01-01\n---\n::: private x"
    + " " * 20000
    + "y\n:::\n\n{{"
    + " " * 20000
    + "x\n\n"
    + "<img " * 4000
    + "\n",
}


def mutate(text: str, rng: random.Random) -> bytes:
    for _ in range(rng.randint(1, 6)):
        text = _edit(text, rng)
    data = text.encode("utf-8", "surrogatepass")
    if rng.random() < 0.1:  # a byte that is not UTF-8, as Latin-1 files have
        at = rng.randrange(len(data) + 1)
        data = data[:at] + bytes([rng.choice([0xE9, 0xA3, 0xFF, 0x80])]) + data[at:]
    return data


def _edit(text: str, rng: random.Random) -> str:
    at = rng.randrange(len(text) + 1)
    end = min(len(text), at + rng.randint(1, 400))
    kind = rng.choice(["insert", "insert", "insert", "delete", "repeat", "move", "swap", "cut"])
    if kind == "insert":
        return text[:at] + rng.choice(PIECES) + text[at:]
    if kind == "delete":
        return text[:at] + text[end:]
    if kind == "repeat":
        return text[:end] + text[at:end] * rng.randint(2, 20) + text[end:]
    if kind == "move":
        span, rest = text[at:end], text[:at] + text[end:]
        to = rng.randrange(len(rest) + 1)
        return rest[:to] + span + rest[to:]
    if kind == "swap":
        lines = text.split("\n")
        i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
        return "\n".join(lines)
    return text[:at]


def main() -> None:
    examples = sorted((ROOT / "issues").glob("*.md"))
    texts = [path.read_text(encoding="utf-8") for path in examples]
    rng = random.Random(SEED)
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    for number in range(MUTANTS):
        index = rng.randrange(len(texts))
        (OUT / f"{number:03d}-{examples[index].stem[11:]}.issue").write_bytes(
            mutate(texts[index], rng)
        )
    for name, text in HOSTILE.items():
        (OUT / name).write_text(text, encoding="utf-8")
    (OUT / ".gitattributes").write_text(
        "# Kept byte for byte: some are not UTF-8, or hold CRs and control characters.\n"
        "* -text -diff\n"
    )
    print(f"wrote {MUTANTS + len(HOSTILE)} issues to {OUT}")


if __name__ == "__main__":
    main()
