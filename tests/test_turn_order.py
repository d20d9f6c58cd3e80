"""Turns of one client on one session take turns: a question sent while another is being
answered (a double submit, two tasks or threads) is stored after that answer, and the model
sees the answer. Over real HTTP: the fake server holds the first answer back."""
from __future__ import annotations

import asyncio
import threading
import time

import pytest

from tether import AsyncTether


def roles_and_words(t, sid: str) -> list[tuple[str, str]]:
    return [(m.role, m.content.split(" [")[0]) for m in t.get_history(sid)]


def test_threads_asking_in_one_session_are_answered_in_turn(make_tether, fake_server):
    t = make_tether()
    sid = t.chat_once("hello").session_id
    fake_server.fail("main", "slow:0.4")  # the first of the two is slow to answer
    first = threading.Thread(target=t.chat_once, args=("first Q", sid))
    first.start()
    time.sleep(0.1)  # the first turn is waiting for its answer now
    t.chat_once("second Q", session_id=sid)
    first.join()
    hist = t.get_history(sid)
    assert [m.role for m in hist] == ["user", "assistant"] * 3
    assert [m.content for m in hist if m.role == "user"] == ["hello", "first Q", "second Q"]
    second_call = fake_server.calls("main")[-1]["messages"]
    assert any(m["role"] == "assistant" and "first Q" in m["content"] for m in second_call)


def test_tasks_asking_in_one_session_are_answered_in_turn(fake_server, tether_home):
    from conftest import router_config

    async def go() -> None:
        t = AsyncTether(home=tether_home, config=router_config(fake_server))
        sid = (await t.chat_once("hello")).session_id
        fake_server.fail("main", "slow:0.4")
        a, b = await asyncio.gather(t.chat_once("first Q", session_id=sid), t.chat_once("second Q", session_id=sid))
        hist = await t.get_history(sid)
        assert [m.role for m in hist] == ["user", "assistant"] * 3
        assert [m.content for m in hist if m.role == "user"] == ["hello", "first Q", "second Q"]
        assert b.window_tokens > a.window_tokens  # the second window held the first answer
        # other sessions never wait for this one
        other = (await t.chat_once("elsewhere")).session_id
        fake_server.fail("main", "slow:0.5")
        slow = asyncio.create_task(t.chat_once("slow one", session_id=sid))
        await asyncio.sleep(0.1)
        t0 = time.perf_counter()
        await t.chat_once("quick one", session_id=other)
        assert time.perf_counter() - t0 < 0.4
        await slow

    asyncio.run(go())


def test_a_task_cancelled_while_waiting_for_its_turn_writes_nothing(fake_server, tether_home):
    from conftest import router_config

    async def go() -> None:
        t = AsyncTether(home=tether_home, config=router_config(fake_server))
        sid = (await t.chat_once("hello")).session_id
        fake_server.fail("main", "slow:0.4")
        first = asyncio.create_task(t.chat_once("first Q", session_id=sid))
        await asyncio.sleep(0.1)
        waiting = asyncio.create_task(t.chat_once("never mind", session_id=sid))
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await first
        assert [m.content for m in await t.get_history(sid) if m.role == "user"] == ["hello", "first Q"]
        assert not t.sync.turns.claims._aturn_locks  # nothing left behind

    asyncio.run(go())


def test_an_open_stream_is_superseded_not_waited_for(make_tether, fake_server):
    t = make_tether()
    sid = t.chat_once("hello").session_id
    st = t.stream("long answer please", session_id=sid)
    next(iter(st))  # one piece read, then the caller moves on without closing it
    r = t.chat_once("next question", session_id=sid)  # must not wait for the open stream
    assert st.done and r.text
    hist = t.get_history(sid)
    assert [m.status for m in hist if m.role == "assistant"] == ["ok", "interrupted", "ok"]
    assert not t.turns.claims._turn_locks
