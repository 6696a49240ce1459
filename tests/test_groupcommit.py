"""Group commit: requests submitted in one turn of the loop are carried out together."""

from __future__ import annotations

import asyncio
import threading

import pytest

from newsroom.database import Busy
from newsroom.web.groupcommit import GroupCommit


class Recorder:
    def __init__(self, fail_on: str = "", busy: bool = False) -> None:
        self.groups: list[list[str]] = []
        self.calls: list[tuple[bool, bool]] = []  # (wait, in the test's own thread)
        self.fail_on = fail_on
        self.busy = busy

    def __call__(self, requests: list[str], *, wait: bool) -> list[str]:
        self.calls.append((wait, threading.get_ident() == MAIN))
        if self.busy and not wait:
            raise Busy("another writer holds the database")
        self.groups.append(list(requests))
        if self.fail_on in requests:
            raise RuntimeError(f"disk full at {self.fail_on}")
        return [r.upper() for r in requests]


MAIN = threading.get_ident()


@pytest.mark.parametrize("inline", [True, False])
def test_requests_of_one_turn_share_a_group_and_each_gets_its_answer(inline: bool) -> None:
    carry_out = Recorder()

    async def run() -> list[str]:
        group: GroupCommit[str, str] = GroupCommit(carry_out, inline=inline)
        first = await asyncio.gather(*(group.submit(r) for r in ("a", "b", "c")))
        later = await group.submit("d")  # alone: carried out at once, not kept waiting
        return [*first, later]

    assert asyncio.run(run()) == ["A", "B", "C", "D"]
    assert carry_out.groups == [["a", "b", "c"], ["d"]]
    assert carry_out.calls == ([(False, True)] * 2 if inline else [(True, False)] * 2)


def test_a_busy_database_sends_the_group_to_a_thread_to_wait() -> None:
    carry_out = Recorder(busy=True)

    async def run() -> list[str]:
        group: GroupCommit[str, str] = GroupCommit(carry_out, inline=True)
        return await asyncio.gather(*(group.submit(r) for r in "ab"))

    assert asyncio.run(run()) == ["A", "B"]
    assert carry_out.calls == [(False, True), (True, False)]  # tried in the loop, then waited


@pytest.mark.parametrize("inline", [True, False])
def test_a_failure_reaches_every_request_of_its_group_and_no_other(inline: bool) -> None:
    carry_out = Recorder(fail_on="b")

    async def run() -> tuple[list[str | BaseException], str]:
        group: GroupCommit[str, str] = GroupCommit(carry_out, inline=inline)
        answers = await asyncio.gather(*(group.submit(r) for r in "ab"), return_exceptions=True)
        return answers, await group.submit("c")

    answers, after = asyncio.run(run())
    assert [str(a) for a in answers] == ["disk full at b"] * 2
    assert after == "C"


def test_a_request_whose_client_went_away_does_not_disturb_the_others() -> None:
    carry_out = Recorder()

    async def run() -> list[str]:
        group: GroupCommit[str, str] = GroupCommit(carry_out, inline=True)
        gone = asyncio.ensure_future(group.submit("a"))
        stays = asyncio.ensure_future(group.submit("b"))
        await asyncio.sleep(0)  # both are waiting for their answers
        gone.cancel()
        return [await stays]

    assert asyncio.run(run()) == ["B"]
    assert carry_out.groups == [["a", "b"]]  # its write still happened, as a commit would
