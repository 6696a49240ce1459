"""Fuzzing the way in: no issue file, however mangled, makes reading, rendering, preflight, the
web page, the .ics files or the feeds fail with anything but our own errors (ProblemsError,
NewsroomError), or take more than CPU_SECONDS.

Two sources of cases: the committed corpus in tests/data/fuzz/ (mutants of the example issues
and hostile files made by hand; `python -m tests.make_fuzz_corpus` writes it), and Hypothesis
mutating the example issues from a fixed seed, so every run tries the same cases.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from newsroom import settings as site_settings
from newsroom.compose import preflight, rendering
from newsroom.compose.issues import load_issue
from newsroom.errors import NewsroomError
from newsroom.site import Site
from newsroom.web import archive, feeds
from tests.make_fuzz_corpus import PIECES

ROOT = Path(__file__).resolve().parent.parent
CORPUS = sorted((Path(__file__).parent / "data" / "fuzz").glob("*.issue"))
EXAMPLES = [p.read_text(encoding="utf-8") for p in sorted((ROOT / "issues").glob("*.md"))]
CPU_SECONDS = 5.0  # per case: generous on a loaded 2-core machine (they take ~50 ms)
HYPOTHESIS_CASES = 1500


class TooSlow(Exception):
    pass


def _too_slow(_signal: int, _frame: FrameType | None) -> None:
    raise TooSlow(f"more than {CPU_SECONDS} s of CPU time")


@pytest.fixture(scope="module")
def fuzz_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A site folder without a database (nothing here needs one), with the example supporters
    file its issues name; a CPU-time alarm (ITIMER_PROF) for slow cases."""
    root = tmp_path_factory.mktemp("fuzz")
    (root / "newsroom.toml").write_text(site_settings.render_toml(), encoding="utf-8")
    (root / "issues").mkdir()
    for names in (ROOT / "issues").glob("*.txt"):
        (root / "issues" / names.name).write_bytes(names.read_bytes())
    previous = signal.signal(signal.SIGPROF, _too_slow)
    yield Site(root, site_settings.load(root, {}))
    signal.signal(signal.SIGPROF, previous)


def run_case(site: Site, data: bytes) -> None:
    """Everything a file goes through on its way to readers; our errors are fine, nothing
    else is, and neither is taking more than CPU_SECONDS."""
    path = site.issues_dir / "2021-01-01-fuzz.md"
    path.write_bytes(data)
    signal.setitimer(signal.ITIMER_PROF, CPU_SECONDS)
    try:
        issue = load_issue(path, site.config)
        rendered = rendering.render(issue, site.config)
        preflight.warnings(issue, rendered, "issues/2021-01-01-fuzz.md")
        published = archive.publish(issue, site)  # the web page and every .ics
        feeds.rss(site.config, [published])
        feeds.atom(site.config, [published])
    except NewsroomError:  # ProblemsError included: the file was refused, as it should be
        pass
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)


@pytest.mark.parametrize("case", CORPUS, ids=[p.name for p in CORPUS])
def test_corpus(fuzz_site: Site, case: Path) -> None:
    run_case(fuzz_site, case.read_bytes())


def test_corpus_is_there() -> None:
    assert len(CORPUS) >= 100, "run: python -m tests.make_fuzz_corpus"


EDIT = st.tuples(
    st.sampled_from(["insert", "insert", "text", "delete", "repeat", "bytes"]),
    st.floats(0, 1),
    st.integers(1, 300),
    st.sampled_from(PIECES) | st.text(max_size=20),
)


def mutate(text: str, edits: list[tuple[str, float, int, str]]) -> bytes:
    data = text.encode()
    for kind, where, length, piece in edits:
        at = int(where * len(data))
        end = min(len(data), at + length)
        if kind in ("insert", "text"):
            data = data[:at] + piece.encode("utf-8", "surrogatepass") + data[at:]
        elif kind == "delete":
            data = data[:at] + data[end:]
        elif kind == "repeat":
            data = data[:end] + data[at:end] * (length % 20 + 2) + data[end:]
        else:  # a byte that is not UTF-8
            data = data[:at] + bytes([0x80 + length % 128]) + data[at:]
    return data


@seed(20260301)
@settings(
    max_examples=HYPOTHESIS_CASES,
    deadline=None,  # wall-clock deadlines flake on a loaded machine: run_case bounds CPU time
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.sampled_from(EXAMPLES), st.lists(EDIT, min_size=1, max_size=6))
def test_mutated_examples(
    fuzz_site: Site, text: str, edits: list[tuple[str, float, int, str]]
) -> None:
    run_case(fuzz_site, mutate(text, edits))
