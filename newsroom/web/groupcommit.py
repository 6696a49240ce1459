"""Group commit: requests that arrive together share one database transaction.

Right after a mailing, mail providers POST one-click unsubscribes (RFC 8058) in bursts. Each
is a few small writes, and on SQLite the commit costs as much as the writes themselves; the
requests the event loop takes in one turn are gathered and carried out in one transaction,
each still getting its own answer. A request waits for nothing but the loop's next turn: a
lone request is committed at once.

On SQLite a group is carried out in the event loop itself (a thread hand-off costs more than
the write), but only if the write lock is free at once: when another process is writing (a
mailing being frozen, say), the group goes to a worker thread to wait there, and the loop
goes on serving everyone else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from starlette.concurrency import run_in_threadpool

from newsroom.database import Busy

Request = TypeVar("Request")
Answer = TypeVar("Answer")


class GroupCommit(Generic[Request, Answer]):
    """Calls CARRY_OUT with every request submitted in the same turn of the event loop.

    CARRY_OUT(requests, wait=...) returns one answer for each request, in order; if it raises,
    every request of that group gets the exception. INLINE first tries it in the event loop
    with wait=False, where it raises Busy rather than wait for a lock; a busy group, and every
    group when not INLINE, runs in a worker thread with wait=True. Groups may overlap."""

    def __init__(self, carry_out: Callable[..., Sequence[Answer]], *, inline: bool) -> None:
        self.carry_out = carry_out
        self.inline = inline
        self.waiting: list[tuple[Request, asyncio.Future[Answer]]] = []
        self.running: set[asyncio.Task[None]] = set()  # the loop keeps only weak references

    async def submit(self, request: Request) -> Answer:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Answer] = loop.create_future()
        self.waiting.append((request, future))
        if len(self.waiting) == 1:
            # Runs after the handlers already ready in this turn, so they join the group.
            loop.call_soon(self._start)
        return await future

    def _start(self) -> None:
        group, self.waiting = self.waiting, []
        requests = [request for request, _ in group]
        if self.inline:
            try:
                answers: Sequence[Answer] | Exception = self.carry_out(requests, wait=False)
            except Busy:
                pass  # another writer has the lock: wait for it in a thread, not in the loop
            except Exception as exc:  # handed to every request of the group
                _settle(group, exc)
                return
            else:
                _settle(group, answers)
                return
        task = asyncio.get_running_loop().create_task(self._in_thread(group, requests))
        self.running.add(task)
        task.add_done_callback(self.running.discard)

    async def _in_thread(
        self, group: list[tuple[Request, asyncio.Future[Answer]]], requests: list[Request]
    ) -> None:
        try:
            answers: Sequence[Answer] | Exception = await run_in_threadpool(
                self.carry_out, requests, wait=True
            )
        except Exception as exc:  # handed to every request of the group
            answers = exc
        _settle(group, answers)


def _settle(
    group: list[tuple[Request, asyncio.Future[Answer]]], answers: Sequence[Answer] | Exception
) -> None:
    for index, (_, future) in enumerate(group):
        if future.done():  # the client went away and its handler was cancelled
            continue
        if isinstance(answers, Exception):
            future.set_exception(answers)
        else:
            future.set_result(answers[index])
