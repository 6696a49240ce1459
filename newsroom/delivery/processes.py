"""Helper sender processes on this machine for one mailing (`sending.processes`).

One Python process is CPU-bound well below what a relay takes (bench/bench_send.py), so `newsroom send`
can start helpers. Each claims its own batches (SKIP LOCKED on PostgreSQL; on SQLite the claim is
one atomic UPDATE), under the parent's lock: helpers are named PARENT/N, so any sender can tell
their claims are alive while the parent is. A helper dies with its parent (PR_SET_PDEATHSIG) and
keeps a journal of its own, so after a crash at most one message per connection of each process
is uncertain.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import multiprocessing
import os
import signal
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from newsroom.delivery.senders import SenderLock
from newsroom.delivery.sending import Sender, SenderReport, drive
from newsroom.site import Site

PR_SET_PDEATHSIG = 1
MIN_PER_PROCESS = 2000  # fewer deliveries than this per process: not worth a start-up


def _die_with_parent(parent: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before we could ask
        os._exit(1)


def _helper(
    root: str,
    mailing_id: int,
    family: str,
    index: int,
    senders: int,
    parent: int,
    done: Any,
    out: Connection,
) -> None:
    _die_with_parent(parent)
    site = Site.open(root)
    lock = SenderLock.helper(site.engine, family, index).acquire()

    def counted(_result: object) -> None:
        with done.get_lock():
            done.value += 1

    async def go() -> SenderReport:
        sender = Sender(site, lock, on_result=counted)
        sender.share(senders)
        return await drive(sender, mailing_id)

    try:
        out.send(asyncio.run(go()))
    finally:
        lock.release()
        site.close()


class Helpers:
    """`count` helper processes sending MAILING_ID beside this one."""

    def __init__(self, site: Site, lock: SenderLock, mailing_id: int, count: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.done = context.Value("q", 0)
        self.processes: list[tuple[Any, Connection]] = []
        self.senders = count + 1  # the helpers and the sender that started them
        for index in range(1, count + 1):
            reader, writer = context.Pipe(duplex=False)
            process = context.Process(
                target=_helper,
                args=(
                    str(site.root), mailing_id, lock.name, index, self.senders, os.getpid(),
                    self.done, writer,
                ),
                daemon=True,
            )  # fmt: skip
            self.processes.append((process, reader))

    @staticmethod
    def wanted(site: Site, to_do: int) -> int:
        """How many helpers a mailing of TO_DO deliveries gets."""
        extra = site.config.integer("sending.processes") - 1
        return max(0, min(extra, to_do // MIN_PER_PROCESS - 1))

    def start(self) -> Helpers:
        for process, _reader in self.processes:
            process.start()
        return self

    def stop(self) -> None:
        for process, _reader in self.processes:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signal.SIGINT)

    def count(self) -> int:
        return int(self.done.value)

    def finish(
        self, report: SenderReport, waiting: Callable[[], None] = lambda: None
    ) -> SenderReport:
        """Wait for the helpers and add their reports to REPORT."""
        for process, reader in self.processes:
            while process.is_alive():
                process.join(0.1)
                waiting()
            if reader.poll():
                _merge(report, reader.recv())
            reader.close()
        return report


def _merge(report: SenderReport, other: SenderReport) -> None:
    report.sent += other.sent
    report.failed += other.failed
    report.deferred += other.deferred
    report.skipped += other.skipped
    report.uncertain += other.uncertain
    report.paused = report.paused or other.paused
    report.done = report.done or other.done
    if other.next_retry is not None:
        report.next_retry = min(filter(None, (report.next_retry, other.next_retry)))
