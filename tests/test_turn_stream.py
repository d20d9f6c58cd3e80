"""Streaming turns: invisible fallback before text, documented restart mid-answer, interrupted partials."""
from __future__ import annotations

import asyncio

import pytest

from tether import AllModelsFailed, AsyncTether
from tether.router.streaming import Restart


def test_stream_yields_pieces_and_stores_the_answer_once(make_tether, fake_server):
    t = make_tether()
    st = t.stream("hello stream")
    pieces = list(st)
    assert len(pieces) > 3 and not any(isinstance(p, Restart) for p in pieces)
    assert "".join(pieces) == st.result.text == "main says: hello stream (1 messages)"
    assert st.result.usage["total_tokens"] > 0  # usage comes through stream_options include_usage
    assert fake_server.calls()[0]["stream_options"] == {"include_usage": True}
    msgs = t.load_session(st.session_id).messages
    assert [(m.role, m.status) for m in msgs] == [("user", "ok"), ("assistant", "ok")]
    assert msgs[1].content == st.result.text and msgs[1].usage.total_tokens == st.result.usage["total_tokens"]


def test_failure_before_first_piece_falls_back_invisibly(make_tether, fake_server):
    fake_server.fail("main", "500", "500")
    t = make_tether()
    st = t.stream("hi")
    pieces = list(st)
    assert not any(isinstance(p, Restart) for p in pieces)
    assert st.result.model == "backup" and st.result.fallback_from == "main" and st.result.restarts == 0
    assert "".join(pieces).startswith("backup says")


def test_mid_stream_cut_restarts_on_fallback_and_stores_only_complete_answer(make_tether, fake_server):
    fake_server.fail("main", "cut")
    t = make_tether(retries=0)
    fallbacks = []
    t.on("fallback", fallbacks.append)
    st = t.stream("tell me a long story")
    pieces = []
    for p in st:
        pieces.append(p)
        if isinstance(p, Restart):
            assert len(fallbacks) == 1  # announced when the fallback takes over, not after its answer
    assert len(fallbacks) == 1
    marks = [p for p in pieces if isinstance(p, Restart)]
    assert len(marks) == 1
    r = marks[0]
    assert (r.from_model, r.to_model) == ("main", "backup") and r.discarded == "main says: tell"
    shown_before = "".join(pieces[:pieces.index(r)])
    assert shown_before == r.discarded
    after = "".join(pieces[pieces.index(r) + 1:])
    assert after == st.result.text == "backup says: tell me a long story (1 messages)"
    assert st.result.restarts == 1 and st.result.model == "backup"
    assert [a.kind for a in st.result.attempts] == ["mid_stream", "ok"]
    assert fallbacks[0]["mid_stream"] is True and fallbacks[0]["to_model"] == "backup"
    assert [a["kind"] for a in fallbacks[0]["attempts"]] == ["mid_stream"]  # the failed attempt, as chat_once reports it
    msgs = t.load_session(st.session_id).messages
    assert [(m.role, m.content) for m in msgs] == [("user", "tell me a long story"), ("assistant", st.result.text)]


def test_close_stores_partial_answer_marked_interrupted(make_tether, fake_server):
    t = make_tether()
    st = t.stream("interrupt me")
    got = [next(st), next(st)]
    st.close()
    assert st.result is None
    msgs = t.load_session(st.session_id).messages
    assert [(m.role, m.status) for m in msgs] == [("user", "ok"), ("assistant", "interrupted")]
    assert msgs[1].content == "".join(got) and msgs[1].model == "main"
    st.close()  # idempotent
    assert len(t.load_session(st.session_id).messages) == 2


def test_abandoned_stream_is_recorded_as_interrupted(make_tether, fake_server):
    t = make_tether()

    def consume():
        st = t.stream("abandon me")
        for i, _ in enumerate(st):
            if i == 1:
                return st.session_id  # the stream object is dropped here

    sid = consume()
    msgs = t.load_session(sid).messages
    assert msgs[-1].status == "interrupted" and msgs[-1].content == "main says:"


def test_with_block_closes(make_tether, fake_server):
    t = make_tether()
    with t.stream("ctx") as st:
        next(st)
    assert t.load_session(st.session_id).messages[-1].status == "interrupted"


def test_stream_all_fail_raises_and_keeps_unanswered(make_tether, fake_server):
    fake_server.always.update({"main": "401", "backup": "cut"})
    t = make_tether(retries=0)
    st = t.stream("doomed")
    with pytest.raises(AllModelsFailed) as e:
        list(st)
    assert [a.kind for a in e.value.attempts] == ["auth", "mid_stream"]
    msgs = t.load_session(st.session_id).messages  # what the user saw of backup's answer is kept
    assert [(m.role, m.status, m.model) for m in msgs] == [("user", "unanswered", None), ("assistant", "interrupted", "backup")]


async def test_async_stream_mid_stream_fallback(fake_server, tether_home):
    from conftest import router_config

    at = AsyncTether(home=tether_home, config=router_config(fake_server, retries=0))
    fake_server.fail("main", "cut")
    st = await at.stream("async story")
    pieces = [p async for p in st]
    marks = [p for p in pieces if isinstance(p, Restart)]
    assert len(marks) == 1 and marks[0].to_model == "backup"
    assert "".join(pieces[pieces.index(marks[0]) + 1:]) == st.result.text == "backup says: async story (1 messages)"
    assert "".join(pieces) == marks[0].discarded + st.result.text
    msgs = (await at.load_session(st.session_id)).messages
    assert [m.content for m in msgs] == ["async story", st.result.text]


async def test_async_stream_cancelled_task_stores_partial(fake_server, tether_home):
    from conftest import router_config

    at = AsyncTether(home=tether_home, config=router_config(fake_server))
    first = asyncio.Event()
    box = {}

    async def consumer():
        st = await at.stream("cancel me")
        box["st"] = st
        async with st:
            async for _ in st:
                first.set()
                await asyncio.sleep(3600)  # the user walks away mid-answer

    task = asyncio.create_task(consumer())
    await first.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    msgs = (await at.load_session(box["st"].session_id)).messages
    assert [(m.role, m.status) for m in msgs] == [("user", "ok"), ("assistant", "interrupted")]
    assert msgs[1].content == "main"  # exactly the one piece that was shown


async def test_async_stream_abandoned_by_break_is_recorded(fake_server, tether_home):
    import gc

    from conftest import router_config

    at = AsyncTether(home=tether_home, config=router_config(fake_server))

    async def consume():
        st = await at.stream("walk away")
        async for piece in st:
            break
        return st.session_id

    sid = await consume()
    gc.collect()
    msgs = (await at.load_session(sid)).messages
    assert [(m.role, m.status, m.content) for m in msgs] == [
        ("user", "ok", "walk away"), ("assistant", "interrupted", "main")]


def test_a_new_turn_ends_a_stream_still_held_open_and_stores_it_first(make_tether, fake_server):
    """Breaking out of the loop but keeping the stream object: the next turn on the session
    stores the partial answer (interrupted) before its own question, and does not send the
    question that was left without an answer."""
    t = make_tether()
    st = t.stream("tell me a long story")
    for piece in st:
        break
    r = t.chat_once("next question", session_id=st.session_id)
    assert r.text == "main says: next question (3 messages)"  # question, partial answer, new question
    msgs = t.load_session(st.session_id).messages
    assert [(m.role, m.status) for m in msgs] == [
        ("user", "ok"), ("assistant", "interrupted"), ("user", "ok"), ("assistant", "ok")]
    assert msgs[1].content == piece
    assert list(st) == [] and st.done and st.result is None  # the old stream has ended
    del st
    import gc

    gc.collect()
    assert len(t.load_session(r.session_id).messages) == 4  # nothing stored again when it is collected


async def test_async_a_new_turn_ends_a_stream_still_held_open(fake_server, tether_home):
    from conftest import router_config

    at = AsyncTether(home=tether_home, config=router_config(fake_server))
    st = await at.stream("walk away")
    async for piece in st:
        break
    r = await at.chat_once("next question", session_id=st.session_id)
    assert r.text == "main says: next question (3 messages)"
    msgs = (await at.load_session(st.session_id)).messages
    assert [(m.role, m.status, m.content) for m in msgs][:2] == [
        ("user", "ok", "walk away"), ("assistant", "interrupted", piece)]
    assert [p async for p in st] == [] and st.result is None
    assert len((await at.load_session(st.session_id)).messages) == 4


def test_a_collected_stream_leaves_no_entry_behind(make_tether, fake_server):
    import gc

    t = make_tether()
    sid = t.stream("done soon").read().session_id
    gc.collect()
    assert sid not in t.turns.claims._streams


@pytest.mark.parametrize("fault", ["short", "malformed"])
def test_a_stream_that_ends_without_the_providers_finish_is_not_a_complete_answer(make_tether, fake_server, fault):
    """litellm closes every stream that runs out with a finish_reason "stop" of its own: a body
    that ends mid-answer (or is not a stream at all) must not be stored as the answer."""
    fake_server.fail("main", fault, fault)  # both tries on main
    t = make_tether()
    st = t.stream("tell me a long story")
    "".join(st)
    assert st.result.model == "backup" and st.result.text == "backup says: tell me a long story (1 messages)"
    kinds = [a.kind for a in st.result.attempts]
    assert kinds[-1] == "ok" and kinds[0] in ("mid_stream", "malformed", "connection")
    msgs = t.load_session(st.session_id).messages
    assert [(m.role, m.content) for m in msgs] == [("user", "tell me a long story"), ("assistant", st.result.text)]


async def test_async_stream_that_ends_early_falls_back(fake_server, tether_home):
    from conftest import router_config

    at = AsyncTether(home=tether_home, config=router_config(fake_server, retries=0))
    fake_server.fail("main", "short")
    st = await at.stream("async story")
    pieces = [p async for p in st]
    assert st.result.model == "backup" and any(isinstance(p, Restart) for p in pieces)


def test_a_stream_cut_mid_answer_is_retried_on_the_same_model(make_tether, fake_server):
    """A dropped connection is retried in chat_once; a dropped stream is too (a pinned session
    with no fallback used to fail on the first cut)."""
    fake_server.fail("main", "cut")
    t = make_tether(fallbacks=[])  # retries=1
    st = t.stream("tell me a long story")
    pieces = list(st)
    [mark] = [p for p in pieces if isinstance(p, Restart)]
    assert (mark.from_model, mark.to_model, mark.discarded) == ("main", "main", "main says: tell")
    assert [a.kind for a in st.result.attempts] == ["mid_stream", "ok"] and st.result.model == "main"
    assert t.load_session(st.session_id).messages[-1].content == "main says: tell me a long story (1 messages)"


@pytest.mark.parametrize("streamed_async", [False, True])
def test_the_text_shown_before_a_final_failure_is_kept_marked_interrupted(make_tether, fake_server, streamed_async):
    fake_server.always["main"] = "cut"
    t = make_tether(fallbacks=[], retries=0)
    if streamed_async:
        async def run():
            from conftest import router_config

            a = AsyncTether(home=t.home, config=router_config(fake_server, fallbacks=[], retries=0))
            st = await a.stream("tell me a long story")
            with pytest.raises(AllModelsFailed):
                async for _ in st:
                    pass
            return st.session_id

        sid = asyncio.run(run())
    else:
        st = t.stream("tell me a long story")
        with pytest.raises(AllModelsFailed):
            list(st)
        sid = st.session_id
    msgs = t.load_session(sid).messages
    assert [(m.role, m.status, m.content) for m in msgs] == [
        ("user", "unanswered", "tell me a long story"), ("assistant", "interrupted", "main says: tell")]
    assert msgs[1].model == "main"
    fake_server.always.clear()
    r = t.retry(sid)  # the question is answered again, in place
    assert r.text == "main says: tell me a long story (1 messages)"


def test_regenerating_an_answer_replaces_it_only_once_the_new_one_is_stored(make_tether, fake_server, tether_home):
    """retry(replace=True): at every moment the session holds the old answer, the new, or both,
    so a process killed mid-regeneration, or a failed or stopped one, leaves the old answer."""
    from tether import Tether

    t = make_tether()
    first = t.chat_once("question")
    sid, old_id = first.session_id, first.message_id
    st = t.retry_stream(sid, replace=True)
    next(iter(st))  # the new answer has begun...
    crashed = Tether(home=tether_home)  # ...when another process looks (or this one dies)
    assert [(m.id, m.status) for m in crashed.load_session(sid).messages][1] == (old_id, "ok")
    st.close()  # stopped: the whole old answer stands, no partial beside it
    msgs = t.load_session(sid).messages
    assert [(m.role, m.status) for m in msgs] == [("user", "ok"), ("assistant", "ok")] and msgs[1].id == old_id
    fake_server.always.update({"main": "500", "backup": "500"})
    with pytest.raises(AllModelsFailed):
        t.retry(sid, replace=True)
    msgs = t.load_session(sid).messages  # failed: still answered, by the old answer
    assert [(m.role, m.status, m.id) for m in msgs] == [("user", "ok", msgs[0].id), ("assistant", "ok", old_id)]
    fake_server.always.clear()
    new = t.retry(sid, replace=True)
    msgs = t.load_session(sid).messages
    assert [m.id for m in msgs] == [msgs[0].id, new.message_id] and new.text == "main says: question (1 messages)"
    with pytest.raises(ValueError, match="no unanswered message"):
        t.retry(sid)  # without replace, an answered question is not asked again


PRICED = {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}


def test_an_answer_cut_mid_stream_is_paid_for_and_counted_in_the_turns_cost(make_tether, fake_server):
    """The provider bills the window and the text it sent before the cut; the usage never
    arrives, so the turn used to report only the answer that replaced it."""
    from tether.context import count_tokens

    t = make_tether(retries=0, models={"main": PRICED, "backup": PRICED})
    fake_server.fail("main", "cut")
    st = t.stream("tell me something long")
    shown = []
    for piece in st:
        shown.append(piece)
    cut = st.restarts[0].discarded
    r = st.result
    first = r.attempts[0]
    assert first.model == "main" and first.completion_tokens == count_tokens(cut, "openai/main") > 0
    assert first.cost_usd == pytest.approx(first.window_tokens * 1e-6 + first.completion_tokens * 2e-6)
    answer = r.usage["prompt_tokens"] * 1e-6 + r.usage["completion_tokens"] * 2e-6
    assert r.cost_usd == pytest.approx(answer + first.cost_usd)
    stored = t.get_history(r.session_id)[-1]
    assert stored.cost_usd == pytest.approx(r.cost_usd) and stored.metadata["cut_cost_usd"] == pytest.approx(first.cost_usd)
    assert t.load_session(r.session_id).totals.cost_usd == pytest.approx(r.cost_usd)


def test_a_stream_stopped_by_the_caller_keeps_what_it_cost(make_tether, fake_server):
    t = make_tether(models={"main": PRICED})
    st = t.stream("tell me something long")
    it = iter(st)
    text = next(it) + next(it)
    st.close()
    kept = t.get_history(st.session_id)[-1]
    assert kept.status == "interrupted" and kept.content == text
    assert kept.usage.prompt_tokens > 0 and kept.usage.completion_tokens > 0 and kept.metadata["estimated_usage"]
    assert kept.cost_usd == pytest.approx(kept.usage.prompt_tokens * 1e-6 + kept.usage.completion_tokens * 2e-6)
    assert t.load_session(st.session_id).totals.cost_usd == pytest.approx(kept.cost_usd)


def test_when_every_model_is_cut_the_kept_partial_carries_every_cut_answers_cost(make_tether, fake_server):
    from tether import AllModelsFailed

    t = make_tether(retries=0, models={"main": PRICED, "backup": PRICED})
    fake_server.always.update(main="cut", backup="cut")
    with pytest.raises(AllModelsFailed) as e:
        with t.stream("tell me something long") as st:
            list(st)
    paid = [a.cost_usd for a in e.value.attempts]
    assert len(paid) == 2 and all(c and c > 0 for c in paid)
    # what happened, not litellm's made-up status: the server sent 200 and then dropped the stream
    assert "main: cut off mid-answer; backup: cut off mid-answer" in str(e.value) and "500" not in str(e.value)
    kept = t.get_history(e.value.session_id)[-1]
    assert kept.status == "interrupted" and kept.cost_usd == pytest.approx(sum(paid))


def test_cut_answers_are_priced_as_whole_answers_are(make_tether, fake_server):
    """litellm's own prices when the config has none; a turn whose answer cannot be priced
    reports no cost (None), though the cut answer's cost is kept beside it."""
    from tether.router._lite import litellm

    price = litellm().model_cost["gpt-4o-mini"]
    mini = {"model": "openai/gpt-4o-mini", "api_base": fake_server.base, "api_key": "sk-test"}
    unpriced = {"model": "openai/no-such-price", "api_base": fake_server.base, "api_key": "sk-test"}
    t = make_tether(retries=0, default_model="mini", fallbacks=["free"], models={"mini": mini, "free": unpriced})
    fake_server.fail("gpt-4o-mini", "cut")
    with t.stream("tell me something long") as st:
        list(st)
    first = st.result.attempts[0]
    assert first.cost_usd == pytest.approx(first.window_tokens * price["input_cost_per_token"]
                                           + first.completion_tokens * price["output_cost_per_token"])
    assert st.result.model == "free" and st.result.cost_usd is None
    stored = t.get_history(st.session_id)[-1]
    assert stored.cost_usd is None and stored.metadata["cut_cost_usd"] == pytest.approx(first.cost_usd)
