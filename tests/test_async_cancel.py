"""AsyncTether under cancellation: whatever moment a task is cancelled at, the session is
left settled (answer stored, or question unanswered and free to retry) when the cancel
reaches the caller."""
from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tether import AsyncTether
from tether.errors import UnknownModel


def _busy_executor(loop: asyncio.AbstractEventLoop, seconds: float) -> asyncio.Future:
    """One worker, kept busy: the next thread job a turn needs waits in its queue, as it does
    when litellm's own calls fill the default executor."""
    loop.set_default_executor(ThreadPoolExecutor(1))
    return loop.run_in_executor(None, time.sleep, seconds)


async def _cancel_soon(aw, after: float = 0.05):
    task = asyncio.ensure_future(aw)
    await asyncio.sleep(after)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def _tail(at: AsyncTether, sid: str) -> list[tuple[str, str, str]]:
    return [(m.role, m.status, m.content) for m in at.sync.load_session(sid).messages]


async def test_a_stream_cancelled_after_its_whole_answer_arrived_still_stores_it():
    at = AsyncTether(config={"default_model": "tether/echo"})
    sid = await at.create_session()
    st = await at.stream("the question", session_id=sid)
    async for _ in st:
        if st.text.endswith("tokens]"):  # echo's answer is complete: the next step stores it
            break
    blocker = _busy_executor(asyncio.get_running_loop(), 0.3)
    await _cancel_soon(st.__anext__())  # what `async for` does next, under a wait_for timeout
    # settled when the cancel arrives: not after the blocker, not never
    assert _tail(at, sid) == [("user", "ok", "the question"), ("assistant", "ok", st.text)]
    assert not at.sync.turns.claims._answering
    with pytest.raises(ValueError, match="no unanswered message"):
        await at.retry(sid)
    await blocker


async def test_a_failed_turn_cancelled_before_its_failure_is_recorded_is_still_marked(
        fake_server, tether_home, monkeypatch):
    from conftest import router_config

    monkeypatch.setenv("TETHER_FSYNC", "1")  # the durable store: every write goes to a thread
    at = AsyncTether(home=tether_home, config=router_config(fake_server, retries=0, fallbacks=[]))
    sid = await at.create_session(model="main")
    fake_server.fail("main", "timeout")  # the server stalls; the turn gives up after 0.6 s
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(at.chat_once("doomed", session_id=sid))
    while not fake_server.calls("main"):
        await asyncio.sleep(0.005)
    blocker = _busy_executor(loop, 1.0)  # the failure's bookkeeping will wait in the queue...
    await asyncio.sleep(0.8)
    task.cancel()  # ...and the caller cancels meanwhile
    with pytest.raises((asyncio.CancelledError, Exception)):
        await task
    assert _tail(at, sid) == [("user", "unanswered", "doomed")]
    assert not at.sync.turns.claims._answering
    assert (await at.retry(sid)).text == "main says: doomed (1 messages)"
    await blocker


@pytest.mark.parametrize("how", ["chat_once", "stream", "new session"])
async def test_a_cancel_while_the_question_is_saved_leaves_it_unanswered_and_retryable(how, monkeypatch):
    monkeypatch.setenv("TETHER_FSYNC", "1")  # the prompt is saved in a thread
    at = AsyncTether(config={"default_model": "tether/echo"})
    sid = None if how == "new session" else await at.create_session()
    blocker = _busy_executor(asyncio.get_running_loop(), 0.2)
    opening = at.stream("saved?", session_id=sid) if how == "stream" else at.chat_once("saved?", session_id=sid)
    await _cancel_soon(opening)
    sid = sid or at.current_session_id  # a new session is still made current: the app can find it
    assert sid is not None
    assert _tail(at, sid) == [("user", "unanswered", "saved?")]
    r = await at.retry(sid)
    assert r.text.startswith("echo: saved?") and len(_tail(at, sid)) == 2
    await blocker


async def test_closing_a_stream_while_it_waits_to_retry_a_cut_answer_keeps_the_shown_text(fake_server, tether_home):
    from conftest import router_config

    at = AsyncTether(home=tether_home, config=router_config(fake_server, backoff=5.0, retry_after_cap=5.0, fallbacks=[]))
    fake_server.fail("main", "cut")
    st = await at.stream("story")
    shown: list[str] = []

    async def consume() -> None:
        async for piece in st:
            shown.append(piece)

    task = asyncio.ensure_future(consume())
    while not st._state.dropped:  # cut after some pieces were shown: backing off for 5 s now
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    msgs = _tail(at, st.session_id)
    assert msgs[0] == ("user", "ok", "story")
    assert msgs[1] == ("assistant", "interrupted", "".join(shown)) and shown


async def test_a_stream_superseded_by_a_new_turn_is_closed_not_left_reading(fake_server, tether_home):
    from conftest import router_config

    at = AsyncTether(home=tether_home, config=router_config(fake_server))
    st = await at.stream("first")
    async for _ in st:
        break  # the app moves on without closing it
    await at.chat_once("second", session_id=st.session_id)
    for _ in range(20):
        await asyncio.sleep(0.01)
        if st._agen.ag_frame is None:
            break
    assert st._agen.ag_frame is None  # its generator (and with it the HTTP response) was closed
    assert [m[:2] for m in _tail(at, st.session_id)] == [
        ("user", "ok"), ("assistant", "interrupted"), ("user", "ok"), ("assistant", "ok")]


async def test_stream_works_straight_in_async_with_and_async_for():
    at = AsyncTether(config={"default_model": "tether/echo"})
    async with at.stream("in a with") as st:
        text = "".join([p async for p in st])
    assert st.result is not None and text == st.result.text and text.startswith("echo: in a with")
    pieces = [p async for p in at.stream("in a for", session_id=st.session_id)]
    assert "".join(pieces).startswith("echo: in a for")


async def test_an_empty_model_name_is_refused_not_ignored():
    at = AsyncTether(config={"default_model": "tether/echo"})
    with pytest.raises(UnknownModel, match="invalid model name ''"):
        await at.create_session(model="")
    with pytest.raises(UnknownModel, match="invalid model name ''"):
        await at.chat_once("hi", model="")
    sid = await at.create_session(title="kept")
    with pytest.raises(UnknownModel):
        await at.chat_once("hi", session_id=sid, model="")


_FIRST_TURN = r"""
import asyncio, threading
import tiktoken
from tether.router import _lite
from tether import AsyncTether

where = []
real_lite, real_enc = _lite.litellm, tiktoken.get_encoding

def lite():
    if not _lite.loaded():
        where.append(("litellm", threading.current_thread() is threading.main_thread()))
    return real_lite()

def enc(name):
    where.append(("tokenizer", threading.current_thread() is threading.main_thread()))
    return real_enc(name)

_lite.litellm, tiktoken.get_encoding = lite, enc

async def main():
    at = AsyncTether(config={"default_model": "tether/echo"})
    r = await at.chat_once("first")
    st = await at.stream("second", session_id=r.session_id)
    await st.read()
asyncio.run(main())
print(sorted(set(where)))
"""


def test_the_first_async_turn_imports_litellm_and_reads_the_tokenizer_off_the_event_loop(tether_home):
    out = subprocess.run([sys.executable, "-c", _FIRST_TURN], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    # (name, on the loop's thread): both loaded, neither on the thread running the loop
    assert out.stdout.strip() == "[('litellm', False), ('tokenizer', False)]"


async def test_stream_opening_is_a_coroutine_and_remembers_its_outcome():
    from tether.errors import SessionNotFound

    at = AsyncTether(config={"default_model": "tether/echo"})
    st = await asyncio.create_task(at.stream("via a task"))  # create_task needs a coroutine
    assert (await st.read()).text.startswith("echo: via a task")
    opening = at.stream("twice", session_id=st.session_id)
    assert await opening is await opening
    missing = at.stream("x", session_id="nosuch")
    for _ in range(2):  # the real error each time, not "cannot reuse already awaited coroutine"
        with pytest.raises(SessionNotFound):
            await missing


async def test_async_regeneration_cancelled_leaves_the_old_answer():
    at = AsyncTether(config={"default_model": "tether/echo"})
    first = await at.chat_once("question")
    blocker = _busy_executor(asyncio.get_running_loop(), 0.2)
    await _cancel_soon(at.retry(first.session_id, replace=True))
    assert _tail(at, first.session_id) == [("user", "ok", "question"), ("assistant", "ok", first.text)]
    await blocker
    st = await at.retry_stream(first.session_id, replace=True)
    text = "".join([p async for p in st])
    msgs = at.sync.load_session(first.session_id).messages
    assert [m.content for m in msgs] == ["question", text] and msgs[1].id != first.message_id
