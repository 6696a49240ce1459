"""A sender's journal: which messages it handed to the relay, and what the relay answered.

Deliveries are claimed and their outcomes committed in batches (mailings.py), because a commit
per message costs too much on PostgreSQL (bench/bench_send.py). Alone, that would leave a whole batch
uncertain after a crash. So each sender also appends to a file of its own, per mailing, one line
right before a message's end-of-data dot goes out (`h ID`: from then on the relay may have it —
RFC 5321 §4.1.1.4, it takes responsibility when it answers the dot) and one right after the
answer (`a ID CODE`). The lines are `os.write`s on an O_APPEND descriptor, never fsynced: a
process killed even by SIGKILL leaves them in the kernel's page cache, so the file is exactly as
complete as the process left it. After a power cut it may not be, so the journal is stamped with
the machine's boot id and one from another boot is not trusted.

When a sender finds another dead (senders.py), `mailings.reconcile` reads the dead one's journal:
answered 2xx → sent; answered otherwise, or never handed → back to pending (the relay does not
have it); handed without an answer → left `sending`, *uncertain* — at most one per connection.
Without a journal it can trust (from another boot, or none on this machine: a PostgreSQL sender
elsewhere) every claim of that sender stays uncertain, as it would without journals.

A writer holds an flock on its journal while it lives, so a reader never settles the claims of
a sender that is still running. Once a batch's outcomes are committed its lines are truncated
away, so a journal holds at most one batch. It names deliveries by id only: no addresses.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
MAGIC = "newsroom-journal 1"
MAX_BYTES = 16 << 20  # a journal holds one batch (~25 bytes a message): anything longer is not ours
# Never through a symbolic link planted in the site folder.
OPEN = os.O_CLOEXEC | os.O_NOFOLLOW


def boot_id() -> str:
    """This boot of the machine (Linux), or "" where there is no telling: then no journal is
    trusted, and a crash leaves its whole batch uncertain."""
    try:
        return BOOT_ID.read_text().strip()
    except OSError:
        return ""


def folder(site_root: Path) -> Path:
    return site_root / "journal"


def path(where: Path, sender: str, mailing_id: int) -> Path:
    # Sender names hold a host name and a "/" (helpers): a digest makes a safe file name.
    digest = hashlib.sha256(sender.encode()).hexdigest()[:24]
    return where / f"{digest}-{mailing_id}"


class Journal:
    """The journal one sender writes while it sends one mailing."""

    def __init__(self, where: Path, sender: str, mailing_id: int, boot: str | None = None) -> None:
        where.mkdir(mode=0o700, exist_ok=True)
        self.path = path(where, sender, mailing_id)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | OPEN
        self.fd = os.open(self.path, flags, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)  # held until this process closes it or dies
        self.header = f"{MAGIC} {boot_id() if boot is None else boot} {sender}\n".encode()
        os.write(self.fd, self.header)

    def handed(self, key: int) -> None:
        os.write(self.fd, b"h %d\n" % key)

    def answered(self, key: int, code: int) -> None:
        os.write(self.fd, b"a %d %d\n" % (key, code))

    def settled(self) -> None:
        """The batch's outcomes are committed: its lines say nothing the database does not."""
        os.ftruncate(self.fd, len(self.header))

    def close(self, discard: bool = True) -> None:
        """Stop writing; DISCARD when every claim is settled in the database (else the file
        stays for whoever takes the claims over)."""
        if discard:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        os.close(self.fd)


class Off:
    """No journal (`sending.journal = false`): a crash leaves its whole batch uncertain."""

    def handed(self, key: int) -> None:
        pass

    def answered(self, key: int, code: int) -> None:
        pass

    def settled(self) -> None:
        pass

    def close(self, discard: bool = True) -> None:
        pass


@dataclass
class Said:
    """What a dead sender's journal says: the last line about each delivery."""

    handed: set[int] = field(default_factory=set)  # handed over, no answer: uncertain
    answered: dict[int, int] = field(default_factory=dict)  # delivery id → SMTP code


def read(where: Path, sender: str, mailing_id: int) -> Said | None:
    """The journal SENDER left for MAILING_ID, or None when it cannot be trusted: missing,
    of another boot, not a journal, or still held by a live writer."""
    try:
        fd = os.open(path(where, sender, mailing_id), os.O_RDONLY | OPEN)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return None  # its writer is alive after all
        data = os.read(fd, MAX_BYTES + 1)
    finally:
        os.close(fd)
    return parse(data, sender, boot_id())


def parse(data: bytes, sender: str, boot: str) -> Said | None:
    lines = data.split(b"\n")
    if len(data) > MAX_BYTES or lines[0].decode(errors="replace") != f"{MAGIC} {boot} {sender}":
        return None
    if not boot:
        return None
    said = Said()
    for line in lines[1:-1]:  # the last piece has no newline: empty, or a line cut short
        kind, _, rest = line.partition(b" ")
        numbers = rest.split(b" ")
        if not all(n.isdigit() for n in numbers):
            return None
        key = int(numbers[0])
        if kind == b"h" and len(numbers) == 1:
            said.handed.add(key)
            said.answered.pop(key, None)
        elif kind == b"a" and len(numbers) == 2:
            said.handed.discard(key)
            said.answered[key] = int(numbers[1])
        else:
            return None
    return said


def discard(where: Path, sender: str, mailing_id: int) -> None:
    """The dead SENDER's journal is settled: what is left `sending` stays uncertain for good."""
    with contextlib.suppress(FileNotFoundError):
        path(where, sender, mailing_id).unlink()
