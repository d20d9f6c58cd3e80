"""The turn: pinning, persistence across processes, events, totals, async, the offline model."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tether import AsyncTether, Tether


def test_offline_echo_answers_from_what_it_received(tether_home):
    t = Tether()
    assert t.config.default_model == "tether/echo" and t.config.notice
    r = t.chat_once("hello there")
    assert r.text == "echo: hello there [1 messages, 9 tokens]"
    assert r.model == "tether/echo" and r.usage == {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21}
    r2 = t.execute("and again")  # same session: the echo sees the history
    assert r2.session_id == r.session_id and "[3 messages," in r2.text
    s = t.load_session(r.session_id)
    assert s.pinned_model == "tether/echo" and s.pin_reason.startswith("default")
    assert s.title == "hello there" and t.current_session_id == s.id
    assert [(m.role, m.model) for m in s.messages] == [
        ("user", None), ("assistant", "tether/echo"), ("user", None), ("assistant", "tether/echo")]
    assert s.totals.turns == 2 and s.totals.total_tokens == r.usage["total_tokens"] + r2.usage["total_tokens"]


async def test_async_turns_stay_on_the_event_loop_only_when_they_are_one_append(monkeypatch):
    """A turn on a pinned, small or cached session is an append: done inline (a thread hop
    costs more). A turn that must pin the session rewrites its header (an fsync): a thread."""
    import functools

    hops: list[str] = []
    loop = asyncio.get_running_loop()
    real = loop.run_in_executor

    def run_in_executor(executor, fn, *args):  # what asyncio.to_thread and tether's settled() use
        inner = fn.args[0] if isinstance(fn, functools.partial) and fn.args else fn  # ctx.run(f, ...)
        if getattr(inner, "__module__", "").startswith("tether."):  # not litellm's own hops
            hops.append(inner.__name__)
        return real(executor, fn, *args)

    monkeypatch.setattr(loop, "run_in_executor", run_in_executor)
    t = AsyncTether()
    sid = t.sync.create_session()  # no model yet: the first turn pins it
    assert t.sync.load_session(sid).pinned_model is None
    await t.chat_once("first", session_id=sid)
    assert "start" in hops and t.sync.load_session(sid).pinned_model == "tether/echo"
    hops.clear()
    r = await t.chat_once("second", session_id=sid)
    assert hops == [] and r.text.startswith("echo: second")
    fresh = AsyncTether()  # another client: nothing cached, but the file is small
    await fresh.chat_once("third", session_id=sid)
    assert hops == []
    assert [m.content for m in fresh.sync.load_session(sid).messages if m.role == "user"] == ["first", "second", "third"]


async def test_echo_async_and_stream():
    t = AsyncTether()
    r = await t.chat_once("async hi")
    assert r.text == "echo: async hi [1 messages, 9 tokens]"
    st = await t.stream("streamed", session_id=r.session_id)
    pieces = [p async for p in st]
    assert len(pieces) > 2 and "".join(pieces) == st.result.text
    assert st.result.text.startswith("echo: streamed [3 messages")
    assert st.result.usage["completion_tokens"] > 0


def test_answer_stores_model_tokens_cost_latency(make_tether, fake_server):
    t = make_tether(models={"main": {"input_cost_per_token": 0.001, "output_cost_per_token": 0.002}})
    r = t.chat_once("price me")
    u = r.usage
    assert r.cost_usd == pytest.approx(u["prompt_tokens"] * 0.001 + u["completion_tokens"] * 0.002)
    m = t.load_session(r.session_id).messages[-1]
    assert m.model == "main" and m.usage.total_tokens == u["total_tokens"]
    assert m.cost_usd == pytest.approx(r.cost_usd) and m.latency_ms > 0
    assert t.load_session(r.session_id).totals.cost_usd == pytest.approx(r.cost_usd)


def test_litellm_cost_for_a_known_model(make_tether, fake_server):
    t = make_tether(models={"priced": {"model": "openai/gpt-4o-mini", "api_base": fake_server.base, "api_key": "k"}})
    r = t.chat_once("hi", model="priced")
    assert r.cost_usd and r.cost_usd > 0  # from litellm's bundled price map


def test_history_reaches_the_model_on_a_resumed_session(make_tether, fake_server):
    t = make_tether()
    sid = t.chat_once("my name is Ada").session_id
    fake_server.requests.clear()
    make_tether().chat_once("what is my name?", session_id=sid)
    sent = fake_server.calls("main")[0]["messages"]
    assert [m["content"] for m in sent] == ["my name is Ada", "main says: my name is Ada (1 messages)", "what is my name?"]


def test_events_message_and_fallback(make_tether, fake_server):
    t = make_tether(retries=0)
    got: dict[str, list] = {"message": [], "fallback": []}
    t.on("message", got["message"].append)
    t.on("fallback", got["fallback"].append)
    t.on("error", lambda p: 1 / 0)  # a broken callback never breaks a turn
    fake_server.fail("main", "500")
    r = t.chat_once("hi")
    assert [p["message"].role for p in got["message"]] == ["user", "assistant"]
    fb = got["fallback"][0]
    assert (fb["from_model"], fb["to_model"], fb["session_id"]) == ("main", "backup", r.session_id)
    with pytest.raises(ValueError):
        t.on("nonsense", print)


def test_preview_window_and_models(make_tether, fake_server):
    t = make_tether()
    sid = t.chat_once("first").session_id
    w = t.preview_window(sid, "next?")
    assert len(w.messages) == 2 and w.tokens > 0
    ws = t.preview_window(sid, "next?", model="small")
    assert ws.parts["window"] == 400
    rows = {m["name"]: m for m in t.models()}
    assert rows["small"]["context_window"] == 400 and rows["main"]["default"]
    assert rows["main"]["circuit"]["state"] == "closed" and "api_key" not in rows["main"]


def test_system_and_context_reach_the_model(make_tether, fake_server):
    t = make_tether()
    sid = t.create_session("s", system="Be terse.", context={"project": "tether"})
    t.chat_once("hi", session_id=sid)
    sent = fake_server.calls("main")[0]["messages"]
    assert sent[0]["role"] == "system" and "Be terse." in sent[0]["content"] and "tether" in sent[0]["content"]


async def test_async_concurrent_turns_over_many_sessions(fake_server, tether_home):
    from conftest import router_config

    at = AsyncTether(home=tether_home, config=router_config(fake_server))
    sids = [await at.create_session(f"s{i}") for i in range(20)]
    results = await asyncio.gather(*(at.chat_once(f"q{i}", session_id=s) for i, s in enumerate(sids)))
    assert [r.text for r in results] == [f"main says: q{i} (1 messages)" for i in range(20)]
    for s, r in zip(sids, results):
        msgs = (await at.load_session(s)).messages
        assert [m.content for m in msgs] == [f"q{sids.index(s)}", r.text]


async def test_a_burst_of_turns_saves_every_prompt_before_litellm_prepares_a_call(tether_home):
    """litellm prepares each call in its executor's threads, and a prompt saved while they
    run hands them the GIL at every file syscall: turns started together save first."""
    from litellm import CustomLLM
    from litellm.utils import custom_llm_setup

    from tether.router._lite import litellm

    lm = litellm()
    at = AsyncTether(home=tether_home, config={
        "default_model": "probe", "models": {"probe": {"model": "probe/x", "context_window": 8000}}})
    n = 200
    sids = [at.sync.create_session(model="probe") for _ in range(n)]
    # pinned and small: each turn saves its prompt on the event loop (no thread of its own)
    assert all(at.sync.turns.cheap_start(s, None) is not None for s in sids)
    saved: list[str] = []  # prompts on disk: the event fires once the append is done
    at.on("message", lambda e: saved.append(e["message"].content) if e["message"].role == "user" else None)
    seen: list[int] = []

    class Probe(CustomLLM):
        def acompletion(self, model, messages, *args, **kwargs):  # type: ignore[override]
            # not a coroutine function: this runs where litellm prepares the call (its
            # executor thread), and reads how many prompts are saved at that instant
            seen.append(len(saved))

            async def answer():  # type: ignore[no-untyped-def]
                return await lm.acompletion(model="tether/echo", messages=messages)
            return answer()

    before = list(lm.custom_provider_map)
    lm.custom_provider_map = before + [{"provider": "probe", "custom_handler": Probe()}]
    custom_llm_setup()
    try:
        results = await asyncio.gather(*(at.chat_once(f"burst {i}", session_id=s) for i, s in enumerate(sids)))
    finally:
        lm.custom_provider_map = before
        custom_llm_setup()
    assert [r.text.split(" [")[0] for r in results] == [f"echo: burst {i}" for i in range(n)]
    assert len(seen) == n and min(seen) == n
    for i, s in enumerate(sids):  # and each really is on disk
        assert f"burst {i}" in Path(at.sync.store.file(s)).read_text()


async def test_async_failure_marks_unanswered(fake_server, tether_home):
    from conftest import router_config

    at = AsyncTether(home=tether_home, config=router_config(fake_server, retries=0))
    fake_server.always.update({"main": "500", "backup": "500"})
    from tether import AllModelsFailed

    with pytest.raises(AllModelsFailed) as e:
        await at.chat_once("x")
    assert (await at.load_session(e.value.session_id)).messages[0].status == "unanswered"
    fake_server.always.clear()
    r = await at.retry(e.value.session_id)
    assert r.model == "main" and len((await at.load_session(r.session_id)).messages) == 2


def test_an_abandoned_question_is_kept_but_not_sent_with_later_turns(make_tether, fake_server):
    from tether import AllModelsFailed

    t = make_tether()
    sid = t.chat_once("hello").session_id
    fake_server.fail("main", "500", "500")
    fake_server.fail("backup", "500", "500")
    with pytest.raises(AllModelsFailed):
        t.chat_once("the failed question", session_id=sid)
    fake_server.reset()
    t.chat_once("a different question", session_id=sid)
    sent = [m["content"] for m in fake_server.calls()[-1]["messages"]]
    assert "the failed question" not in sent and sent[-1] == "a different question"
    assert [m.status for m in t.get_history(sid)].count("unanswered") == 1  # still in the session
    preview = t.preview_window(sid, "next")
    assert "the failed question" not in [m["content"] if isinstance(m, dict) else m.content for m in preview.messages]


def test_token_counts_are_stored_with_each_message_so_a_resumed_session_is_not_retokenized(tether_home, monkeypatch):
    import tether.context.items as items
    import tether.context.tokens as tok
    from tether.context import build_window

    enc = tok.encoding_for("tether/echo")
    tok._ENCODINGS.clear()  # as in a new process: no tokenizer read, nothing counted
    tok._text_tokens.cache_clear()
    t = Tether()
    r = t.chat_once("hello there")  # saved before the tokenizer is read: no count stored
    t.chat_once("and again", session_id=r.session_id)
    # as a new process would find it: nothing counted in memory, the session read from its file
    tok._by_id.clear()
    items._CACHE.clear()
    s = Tether().load_session(r.session_id)
    assert s.messages[0].content == "hello there"
    for m in s.messages:  # the first, saved uncounted, got its count from the second turn
        assert m.tokens == {f"{enc}:{m.content_hash()}": tok.count_tokens(m.content, encoding=enc)}
    tok._by_id.clear()
    real = tok._text_tokens
    seen: list[str] = []

    def spy(text: str, enc_name: str) -> int:
        seen.append(text)
        return real(text, enc_name)

    monkeypatch.setattr(tok, "_text_tokens", spy)
    w = build_window(s.messages, "a third question", budget_tokens=10_000, model="tether/echo")
    assert len(w.messages) == 4
    assert set(seen) & {m.content for m in s.messages} == set()  # nothing counted again


def test_async_client_has_every_public_method_of_the_sync_one() -> None:
    """The README promises the same methods; a method added to one client only fails here."""
    public = lambda cls: {n for n in dir(cls) if not n.startswith("_")}  # noqa: E731
    assert public(Tether) - public(AsyncTether) == {"turns"}  # internals: AsyncTether.sync.turns


def test_add_message_stores_its_token_count_once_the_tokenizer_is_loaded(tether_home):
    import tether.context.tokens as tok

    enc = tok.encoding_for("tether/echo")
    t = Tether()
    sid = t.create_session()
    t.preview_window(sid, "load the tokenizer")
    assert tok.encoding_loaded(enc)
    t.add_message(sid, "user", "an imported question")
    m = Tether().load_session(sid).messages[-1]
    assert m.tokens == {f"{enc}:{m.content_hash()}": tok.count_tokens(m.content, encoding=enc)}


def test_add_message_saves_the_message_even_with_a_broken_config(tether_home):
    tether_home.mkdir(parents=True, exist_ok=True)
    (tether_home / "config.toml").write_text("this is = = not toml")
    t = Tether()
    sid = t.create_session(title="x")
    t.add_message(sid, "user", "hello")
    assert [m.content for m in t.get_history(sid)] == ["hello"]


async def test_the_same_words_asked_twice_at_once_are_two_questions(tether_home):
    """A double submit (or two users typing "yes") must not merge into one question answered
    twice: only a question no model answered is answered again in place."""
    t = AsyncTether()
    sid = await t.create_session()
    await t.chat_once("warm up", session_id=sid)
    r1, r2 = await asyncio.gather(t.chat_once("Yes", session_id=sid), t.chat_once("Yes", session_id=sid))
    assert r1.user_message_id != r2.user_message_id
    msgs = (await t.load_session(sid)).messages
    assert sorted(m.role for m in msgs) == ["assistant"] * 3 + ["user"] * 3
    assert all(m.status == "ok" for m in msgs)


def test_threads_sending_the_same_words_each_keep_their_question(tether_home):
    from concurrent.futures import ThreadPoolExecutor

    t = Tether()
    sid = t.create_session()
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: t.chat_once("same", session_id=sid), range(8)))
    msgs = t.load_session(sid).messages
    assert len({r.user_message_id for r in results}) == 8
    assert sum(m.role == "user" for m in msgs) == 8 and sum(m.role == "assistant" for m in msgs) == 8


def test_a_question_being_answered_is_not_retried_alongside(make_tether, fake_server):
    """`retry` while another thread's turn answers the same question would answer it twice:
    it waits for that turn (turns on a session take turns), then finds nothing to answer."""
    import threading
    import time

    t = make_tether(retries=0)
    sid = t.create_session(model="main")
    fake_server.fail("main", "timeout")  # main sits on the request until the client gives up
    results = []
    th = threading.Thread(target=lambda: results.append(t.chat_once("slow one", session_id=sid)))
    th.start()
    try:
        for _ in range(100):  # until the turn is in flight
            if fake_server.requests:
                break
            time.sleep(0.01)
        with pytest.raises(ValueError, match="no unanswered message to retry"):
            t.retry(sid)
        assert results and results[0].text  # retry returned only once the turn had ended
    finally:
        th.join()
    assert results[0].model == "backup"  # the turn itself went on to the fallback
    assert [m.role for m in t.load_session(sid).messages] == ["user", "assistant"]


async def test_an_async_callback_is_refused_rather_than_never_run(tether_home, caplog):
    t = AsyncTether()

    async def cb(payload):
        pass

    with pytest.raises(TypeError, match="must not be async def"):
        t.on("message", cb)
    seen = []
    t.on("message", lambda p: seen.append(p) or cb(p))  # a lambda handing back a coroutine
    await t.chat_once("hello")
    assert len(seen) == 2 and "returned a coroutine, which never runs" in caplog.text


@pytest.mark.parametrize("key", ["stream", "messages", "fallbacks", "system", "user_id", "title", "context"])
def test_parameters_the_turn_decides_are_refused_before_anything_is_saved(tether_home, key):
    """Passed through, a session field (chat_once(user_id=...)) would reach the provider, fail
    every model with a 400 and leave the session without it."""
    t = Tether()
    with pytest.raises(TypeError, match=f"{key}= cannot be passed"):
        t.chat_once("hello", **{key: True})
    with pytest.raises(TypeError, match=f"{key}= cannot be passed"):
        asyncio.run(AsyncTether().chat_once("hello", **{key: True}))
    assert t.list_sessions() == []


def test_history_stored_without_token_counts_is_counted_once_and_saved(tether_home):
    """An imported session (or one written before the tokenizer was read) was re-tokenized
    in full by every new process: 1.8 s per first turn on 20,000 messages."""
    from tether import Tether
    from tether.sessions import Message

    t = Tether()
    sid = t.create_session()
    for i in range(50):
        t.store.append_message(sid, Message(role="user" if i % 2 == 0 else "assistant", content=f"old line {i}"))
    assert all(not m.tokens for m in Tether().load_session(sid).messages)
    t.chat_once("new question", session_id=sid)
    t.chat_once("another", session_id=sid)  # the client's cached copy stayed current
    later = Tether(home=tether_home).load_session(sid)  # a new process, days later
    assert all(m.tokens for m in later.messages), [m.content for m in later.messages if not m.tokens]
    old = later.messages[:50]
    assert all(any(k.startswith("o200k_base:") or k.startswith("cl100k_base:") for k in m.tokens) for m in old)
