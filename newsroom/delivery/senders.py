"""Who is sending: a name for each sender process, and proof of life other senders can test.

A delivery claimed by a sender that has died may or may not have reached the relay: its journal
settles most (journal.py), and the rest are *uncertain*. To tell a live claimant from a dead one:

- SQLite: one sender at a time, enforced with an exclusive lock on a file beside the database
  (`newsroom.db.send-lock`); the operating system releases it when the process dies, even on
  SIGKILL. Whoever holds the lock knows every other claimant is dead.
- PostgreSQL: each sender holds a session advisory lock named after it for its whole life; a
  claimant whose lock can be taken is dead. Any number of senders on any number of machines.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import secrets
import socket
from pathlib import Path

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

from newsroom.errors import NewsroomError


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def _advisory_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class SenderLock:
    """This process as a sender: `acquire()` before claiming, `release()` when done."""

    def __init__(self, engine: Engine, name: str | None = None) -> None:
        self.engine = engine
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        # A sender's helper processes are named FAMILY/N and live and die with it (processes.py).
        self.family = self.name.split("/")[0]
        self.is_helper = "/" in self.name
        self._fd: int | None = None
        self._connection: Connection | None = None

    @classmethod
    def helper(cls, engine: Engine, family: str, index: int) -> SenderLock:
        """The lock of helper process INDEX of the sender FAMILY (which holds the real lock)."""
        return cls(engine, f"{family}/{index}")

    @property
    def lock_path(self) -> Path:
        database = self.engine.url.database or ""
        if not database or database == ":memory:":
            raise NewsroomError("sending needs a database file or PostgreSQL, not :memory:")
        return Path(database + ".send-lock")

    def acquire(self) -> SenderLock:
        if is_sqlite(self.engine):
            if not self.is_helper:
                self._lock_file()
        else:
            self._connection = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            if not self.is_helper:
                self._connection.execute(
                    text("SELECT pg_advisory_lock(:k)"), {"k": _advisory_key(self.name)}
                )
        return self

    def _lock_file(self) -> None:
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise NewsroomError(
                f"another sender ({holder}) is sending from this SQLite database; on SQLite one "
                "`newsroom send` or `newsroom worker` runs at a time: wait for it or stop it "
                "(several workers need PostgreSQL)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{self.name}\n".encode())
        self._fd = fd

    def alive(self, claimant: str) -> bool:
        """Whether the sender named CLAIMANT is still running."""
        if claimant.split("/")[0] == self.family:
            return True
        if self._connection is None:
            return False  # SQLite: we hold the only lock, so every other claimant is gone
        key = _advisory_key(claimant.split("/")[0])
        taken = self._connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key})
        if taken.scalar():
            self._connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            return False
        return True

    def reconnect(self) -> None:
        """After the database went away (PostgreSQL restarted): the lock went with its
        connection, so take it again on a new one; raises while the database is still away."""
        if self._connection is not None:
            with contextlib.suppress(SQLAlchemyError):  # it is dead: only let go of it
                self._connection.invalidate()
            self._connection = None
        self.acquire()

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def __enter__(self) -> SenderLock:
        return self.acquire()

    def __exit__(self, *_exc: object) -> None:
        self.release()
