"""The `newsroom` command's entry point: whatever moment Ctrl-C comes, even while the command is
still importing its libraries, and whoever reads its output, it ends with one line, not a
traceback.

It imports nothing heavy itself, so that the protection is in place before the imports start.
"""

from __future__ import annotations

import _thread
import contextlib
import os
import signal
import sys
import threading

INTERRUPTED = 128 + signal.SIGINT  # the status a shell reports for a command ended by Ctrl-C
_pressed = False
_interrupted = False  # said so: what the interpreter's shutdown might add is noise


def _on_interrupt(signum: int, frame: object) -> None:
    """Ctrl-C: raise KeyboardInterrupt where the program is, as Python does, and remember it.
    The exception alone can be lost: Python 3.11 turns it into a RuntimeError when it lands in
    a class's `__set_name__`, which library code may catch; the memory is not lost."""
    global _pressed
    _pressed = True
    raise KeyboardInterrupt


def _unraisable(unraisable: sys.UnraisableHookArgs) -> None:
    """Python drops an exception raised in a finaliser (a weakref callback, `__del__`) with
    "Exception ignored in …" and a traceback, and goes on. A Ctrl-C that lands there is not
    noise to show but an interrupt lost: deliver it again, from another thread, so that it
    lands where the program is once the finaliser is over."""
    if not isinstance(unraisable.exc_value, KeyboardInterrupt):
        _default_unraisable(unraisable)
        return
    try:
        _redeliver()
    except KeyboardInterrupt:  # the new one landed in here already: once more
        _redeliver()


def _redeliver() -> None:
    main = threading.main_thread().ident
    if main is None or _interrupted:
        return
    # The low-level start: threading.Thread.start() waits for the thread, and the signal it
    # sends would land in that wait, still inside this hook.
    with contextlib.suppress(RuntimeError):  # no new threads at interpreter shutdown
        _thread.start_new_thread(signal.pthread_kill, (main, signal.SIGINT))


_default_unraisable = sys.unraisablehook


def pressed() -> bool:
    return _pressed


def check() -> None:
    """Before waiting on a person (a question): stop if Ctrl-C was pressed but swallowed."""
    if _pressed:
        raise KeyboardInterrupt


def interrupted() -> None:
    """Say so in one line and exit with 130."""
    # CPython remembers a KeyboardInterrupt that escaped an exec() of a string (dataclasses and
    # namedtuples make their methods so, at import) and then, handled or not, ends the process
    # by SIGINT at exit: status -2, not ours. The next exec() of a string forgets it.
    exec("")
    print("Interrupted.", file=sys.stderr)
    global _interrupted
    _interrupted = True
    sys.exit(INTERRUPTED)


def main(args: list[str] | None = None) -> None:
    signal.signal(signal.SIGINT, _on_interrupt)
    sys.unraisablehook = _unraisable
    try:
        import click

        from newsroom.cli.common import OutputClosed
        from newsroom.cli.main import main as command

        check()  # a Ctrl-C during the imports that something swallowed

        try:
            # Not click's standalone mode: it would answer a Ctrl-C while it reads the
            # arguments with "Aborted!" and status 1, and one during the command with ours.
            code = command.main(args, prog_name="newsroom", standalone_mode=False)
            sys.stdout.flush()  # here, where a reader gone away is caught, not at exit
        except OutputClosed:
            _output_closed()
        except click.Abort as exc:
            if isinstance(exc.__cause__ or exc.__context__, KeyboardInterrupt):
                print(file=sys.stdout)  # a question was waiting: end its line
                interrupted()
            print("Aborted!", file=sys.stderr)
            sys.exit(1)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        sys.exit(code if isinstance(code, int) else 0)
    except KeyboardInterrupt:
        interrupted()
    except BrokenPipeError:
        _output_closed()
    except Exception:
        if _pressed:  # the interrupt, wrapped on its way (see _on_interrupt)
            interrupted()
        raise
    finally:
        _quiet_exit()


def _output_closed() -> None:
    """`newsroom … | head`: the reader has all it wanted. Point stdout at /dev/null, so that
    Python's own flush at exit does not fail again, and end as if the output had been read."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(0)


def _quiet_exit() -> None:
    """Once the command is over, a late Ctrl-C must not break the interpreter's shutdown
    (closing files and database connections) with a traceback of its own. After
    "Interrupted.", nothing more is said: an interrupt that landed while an event loop was
    being built leaves it half made, and its finaliser would add a traceback at exit."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if _interrupted:
        sys.stderr.flush()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stderr.fileno())
