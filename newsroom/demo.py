"""`make demo`: the whole flow on a throw-away site, each step the command a volunteer would type."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from rich.console import Console

ROOT = Path(__file__).resolve().parent.parent
DEMO = Path(os.environ.get("NEWSROOM_DEMO_DIR", ROOT / "demo-site")).resolve()
console = Console(highlight=False)


def newsroom(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `newsroom ARGS` in the demo site as a volunteer would, showing the command."""
    console.print(f"\n[bold cyan]$ newsroom {' '.join(args)}[/]")
    done = subprocess.run(
        [sys.executable, "-m", "newsroom", *args],
        cwd=DEMO if DEMO.exists() else ROOT,
        text=True,
        capture_output=True,
        env={
            k: v
            for k, v in os.environ.items()
            if not k.startswith("NEWSROOM_") or k == "NEWSROOM_DATABASE_URL"
        },
    )
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr)
    if check and done.returncode != 0:
        console.print(f"[bold red]demo step failed with exit status {done.returncode}[/]")
        sys.exit(done.returncode)
    return done


def main() -> None:
    console.rule("[bold]newsroom demo")
    shutil.rmtree(DEMO, ignore_errors=True)
    newsroom("init", str(DEMO), "--name", "Socialist Network Demo")
    newsroom("init", str(DEMO))  # a second run changes nothing
    newsroom("db", "upgrade")
    newsroom("settings")
    # Lists and subscribers (issue 4): members who already consented, then a segment of them.
    sample = str(ROOT / "subscribers" / "sample.csv")
    newsroom(
        "subscribers",
        "import",
        sample,
        "--list",
        "all-members",
        "--confirmed",
        "--consent",
        "Joined as a member; agreed to receive members' bulletins",
    )
    newsroom("lists")
    newsroom("segment", "all-members and not clp-secretaries")
    newsroom("segment", "disability-group or tag:access-needs")
    newsroom("subscribers", "show", "carys.jenkins@example.org")
    console.rule("[bold green]demo finished")
    console.print(f"The demo site is in {DEMO}")


if __name__ == "__main__":
    main()
