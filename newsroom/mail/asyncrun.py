"""Running a coroutine from synchronous code without ever losing a Ctrl-C.

asyncio.run turns Ctrl-C into the cancellation of its main task, and a task can finish without
noticing (in Python 3.11 `asyncio.wait_for` swallows a cancellation that arrives as its answer
does): the interrupt is then lost. `newsroom send` checked the relay that way and went on to wait
at its question for ever. Here Ctrl-C raises KeyboardInterrupt where the program is, as outside
asyncio, and is raised again afterwards if anything inside swallowed it.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Coroutine
from types import FrameType
from typing import Any, TypeVar

T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T], runner: asyncio.Runner | None = None) -> T:
    """Run COROUTINE to the end (in RUNNER's loop, or a new one, as asyncio.run does)."""
    pressed = False

    def on_interrupt(signum: int, frame: FrameType | None) -> None:
        nonlocal pressed
        pressed = True
        raise KeyboardInterrupt

    ours = (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    )
    if ours:  # not where a caller handles SIGINT itself, or ignores it
        signal.signal(signal.SIGINT, on_interrupt)
    try:
        result = runner.run(coroutine) if runner is not None else asyncio.run(coroutine)
    finally:
        if ours:
            signal.signal(signal.SIGINT, signal.default_int_handler)
    if pressed:
        raise KeyboardInterrupt
    return result
