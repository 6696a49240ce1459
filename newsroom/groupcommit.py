"""Group commit: requests that arrive together share one database transaction.

Right after a mailing, mail providers POST one-click unsubscribes (RFC 8058) in bursts. Each
is a few small writes, and on SQLite the commit costs as much as the writes themselves; the
requests the event loop takes in one turn are gathered and carried out in one transaction,
each still getting its own answer. A request waits for nothing but the loop's next turn: a
lone request is committed at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from starlette.concurrency import run_in_threadpool

Request = TypeVar("Request")
Answer = TypeVar("Answer")


class GroupCommit(Generic[Request, Answer]):
    """Calls CARRY_OUT with every request submitted in the same turn of the event loop.

    CARRY_OUT takes a list of requests and returns one answer for each, in order; if it raises,
    every request of that group gets the exception. INLINE runs it in the event loop (SQLite,
    where writes take turns anyway and a thread hand-off costs more than the write); otherwise
    each group runs in a worker thread, and groups may overlap."""

    def __init__(
        self, carry_out: Callable[[list[Request]], Sequence[Answer]], *, inline: bool
    ) -> None:
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
        if not self.inline:
            task = asyncio.get_running_loop().create_task(self._in_thread(group, requests))
            self.running.add(task)
            task.add_done_callback(self.running.discard)
            return
        try:
            answers: Sequence[Answer] | Exception = self.carry_out(requests)
        except Exception as exc:  # handed to every request of the group
            answers = exc
        _settle(group, answers)

    async def _in_thread(
        self, group: list[tuple[Request, asyncio.Future[Answer]]], requests: list[Request]
    ) -> None:
        try:
            answers: Sequence[Answer] | Exception = await run_in_threadpool(
                self.carry_out, requests
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
