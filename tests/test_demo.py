"""`make demo` runs end to end on a fresh folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path: Path, database_url: str) -> None:
    env = {
        **os.environ,
        "NEWSROOM_DEMO_DIR": str(tmp_path / "demo"),
        "NEWSROOM_DATABASE_URL": database_url,
    }
    done = subprocess.run(
        [sys.executable, "-m", "newsroom.cli.demo"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "demo finished" in done.stdout
    assert "Traceback" not in done.stderr
    out = " ".join(done.stdout.split())  # rich wraps long lines
    assert "200 subscribe: Check your inbox" in out
    assert "200 confirm: Subscribed" in out
    assert "200 unsubscribe: Unsubscribed." in out
    assert "unsubscribed all-members web one-click" in out
