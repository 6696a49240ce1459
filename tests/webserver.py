"""A real `newsroom serve` (or another command that serves pages: `preview --serve`, `inbox`)
in a subprocess on a free loopback port, polled until it answers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[str]
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> str:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        return self.log()


def start(
    site_dir: Path,
    log_path: Path,
    port: int = 0,
    timeout: float = 20.0,
    command: tuple[str, ...] = ("serve",),
    ready: str = "/healthz",
) -> Server:
    """`newsroom --site SITE_DIR COMMAND --port PORT`, once READY answers 200."""
    port = port or free_port()
    handle = log_path.open("w", encoding="utf-8")
    process = subprocess.Popen(
        [sys.executable, "-m", "newsroom", "--site", str(site_dir), *command, "--port", str(port)],
        stdout=handle,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ),
    )
    handle.close()
    server = Server(process, f"http://127.0.0.1:{port}", log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"newsroom {command[0]} exited {process.returncode}:\n{server.log()}"
            )
        try:
            if httpx.get(f"{server.url}{ready}", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"newsroom {command[0]} did not answer within {timeout} s:\n{server.log()}")
