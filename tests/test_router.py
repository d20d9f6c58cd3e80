"""Router pieces at litellm's seams: the offline model, the CustomLLM error path, the breaker, no SDK retries."""
from __future__ import annotations

import asyncio

import pytest

from tether.router._lite import litellm
from tether.router.breaker import CircuitBreaker
from tether.router.config import parse_config
from tether.router.engine import Prepared, Router
from tether.router.echo import answer


def test_echo_through_litellm_sync_async_stream():
    lm = litellm()
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "ping"}]
    reply, pt, ct = answer(msgs)
    assert reply.startswith("echo: ping [2 messages,") and pt > 0 and ct > 0
    r = lm.completion(model="tether/echo", messages=msgs)
    assert r.choices[0].message.content == reply and r.usage.prompt_tokens == pt
    ar = asyncio.run(lm.acompletion(model="tether/echo", messages=msgs))
    assert ar.choices[0].message.content == reply
    chunks = list(lm.completion(model="tether/echo", messages=msgs, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == reply
    assert lm.stream_chunk_builder(chunks, messages=msgs).usage.completion_tokens == ct
    assert lm.get_model_info("tether/echo")["max_input_tokens"] == 128_000


class Flaky:
    """A CustomLLM seam: raises the queued litellm errors, then answers."""

    def __init__(self, errors):
        from litellm import CustomLLM

        outer = self
        self.errors = list(errors)
        self.calls = 0

        class H(CustomLLM):
            def completion(self, model, messages, *a, **kw):
                outer.calls += 1
                if outer.errors:
                    raise outer.errors.pop(0)
                return litellm().completion(model="tether/echo", messages=messages)

            async def acompletion(self, model, messages, *a, **kw):
                return self.completion(model, messages)

        self.handler = H()


@pytest.fixture
def flaky():
    lm = litellm()
    saved = list(lm.custom_provider_map)

    def make(errors):
        from litellm.llms.custom_llm import CustomLLMError
        from litellm.utils import custom_llm_setup

        f = Flaky([c if isinstance(c, BaseException) else CustomLLMError(status_code=c, message=f"fake {c}")
                   for c in errors])
        lm.custom_provider_map = saved + [{"provider": "flaky", "custom_handler": f.handler}]
        custom_llm_setup()
        return f

    yield make
    lm.custom_provider_map = saved


def _router(**over):
    cfg = {"default_model": "f", "fallbacks": ["tether/echo"], "retries": 2, "backoff": 0.001,
           "retry_after_cap": 0.01, "breaker_failures": 0, "models": {"f": {"model": "flaky/x"}}}
    cfg.update(over)
    return Router(parse_config(cfg))


def build(info, budget):
    return Prepared([{"role": "user", "content": "hi"}], 5, None, 0)


def test_custom_llm_429_is_retried_then_answers(flaky):
    f = flaky([429, 503])
    out = _router().complete(["f", "tether/echo"], build)
    assert out.model == "f" and f.calls == 3
    assert [a.kind for a in out.attempts] == ["rate_limit", "server", "ok"]


def test_custom_llm_401_goes_to_fallback_without_retry(flaky):
    f = flaky([401, 401, 401])
    out = _router().complete(["f", "tether/echo"], build)
    assert out.model == "tether/echo" and f.calls == 1 and out.failed_models == ["f"]


async def test_async_engine_same_policy(flaky):
    f = flaky([500, 500, 500])
    out = await _router().acomplete(["f", "tether/echo"], build)
    assert out.model == "tether/echo" and f.calls == 3
    assert [a.kind for a in out.attempts] == ["server", "server", "server", "ok"]


def test_openai_sdk_does_not_retry_behind_our_back(make_tether, fake_server):
    fake_server.always.update({"main": "500"})
    r = make_tether(retries=0).chat_once("hi")
    assert r.model == "backup" and len(fake_server.calls("main")) == 1  # max_retries=0 reached the SDK


def test_breaker_states_with_a_fake_clock():
    now = [0.0]
    b = CircuitBreaker(failures=2, cooldown=10, clock=lambda: now[0])
    assert b.allow("m") and b.state("m")["state"] == "closed"
    b.failure("m")
    assert b.allow("m")  # one failure is not enough
    b.failure("m")
    assert not b.allow("m") and b.state("m") == {"state": "open", "failures": 2, "retry_in": 10.0}
    now[0] = 10.5
    assert b.state("m")["state"] == "half-open"
    assert b.allow("m")  # the probe
    assert not b.allow("m")  # only one probe at a time
    b.failure("m")  # probe failed: open again for a full cool-down
    assert not b.allow("m") and b.state("m")["retry_in"] == 10.0
    now[0] = 21
    assert b.allow("m")
    b.success("m")
    assert b.state("m") == {"state": "closed", "failures": 0, "retry_in": None} and b.allow("m")


def test_breaker_disabled_with_zero():
    b = CircuitBreaker(failures=0)
    for _ in range(10):
        b.failure("m")
    assert b.allow("m")


def test_session_cache_sees_writes_made_outside_the_turn(make_tether, fake_server):
    t = make_tether()
    sid = t.chat_once("one").session_id
    t.add_message(sid, "user", "a note added by the app")
    t.add_message(sid, "assistant", "noted")
    make_tether().add_message(sid, "user", "from another client")
    t.chat_once("two", session_id=sid)
    sent = [m["content"] for m in fake_server.calls("main")[-1]["messages"]]
    assert sent[-4:] == ["a note added by the app", "noted", "from another client", "two"]
    assert len(t.load_session(sid).messages) == 7


def test_no_config_turn_logs_one_line_notice(tether_home, caplog):
    from tether import Tether

    t = Tether()
    with caplog.at_level("WARNING", logger="tether"):
        t.chat_once("a")
        t.execute("b")
    notes = [r for r in caplog.records if "tether/echo" in r.getMessage()]
    assert len(notes) == 1 and "config.toml" in notes[0].getMessage()


def test_ctrl_c_mid_call_keeps_question_unanswered_and_retry_answers_it(flaky):
    from tether import Tether

    flaky([KeyboardInterrupt()])
    t = Tether(config={"default_model": "f", "models": {"f": {"model": "flaky/x"}}})
    with pytest.raises(KeyboardInterrupt):
        t.chat_once("are you there?")
    sid = t.current_session_id
    assert [(m.role, m.status) for m in t.load_session(sid).messages] == [("user", "unanswered")]
    r = t.retry()
    assert r.text.startswith("echo: are you there? [1 messages")
    assert [(m.role, m.status) for m in t.load_session(sid).messages] == [("user", "ok"), ("assistant", "ok")]


def test_session_cache_bounds_sessions_and_messages(tmp_path):
    from tether.turn.cache import SessionCache
    from tether.sessions import Message, Session
    from tether.sessions.jsonl import JsonlStore

    store = JsonlStore(tmp_path / "s")
    ids = []
    for n in (3, 3, 5):
        s = Session(messages=[Message(role="user", content=str(i)) for i in range(n)])
        store.create(s)
        ids.append(s.id)
    c = SessionCache(store, size=2, max_messages=7)
    a = c.load(ids[0])
    assert c.load(ids[0]) is a  # unchanged file: served from memory
    c.load(ids[1])
    c.load(ids[2])  # 3 sessions > size 2, and 3 + 5 > 7 messages: the oldest go
    assert list(c._items) == [ids[2]] and c._total == 5
    b = c.load(ids[2])
    c.append_message(b, Message(role="assistant", content="x"))
    assert c.load(ids[2]) is b and len(b.messages) == 6 == len(store.load(ids[2]).messages)
    store.append_message(ids[2], Message(role="user", content="outside"))
    fresh = c.load(ids[2])
    assert fresh is not b and fresh.messages[-1].content == "outside"


def test_session_cache_concurrent_appends_to_one_session_lose_nothing(tmp_path):
    import threading

    from tether.turn.cache import SessionCache
    from tether.sessions import Message, Session
    from tether.sessions.jsonl import JsonlStore

    store = JsonlStore(tmp_path / "s")
    s = Session()
    store.create(s)
    c = SessionCache(store)

    def writer(k):
        for i in range(15):
            c.append_message(c.load(s.id), Message(role="user", content=f"{k}-{i}"))

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [m.id for m in c.load(s.id).messages] == [m.id for m in store.load(s.id).messages]
    assert len(store.load(s.id).messages) == 60


def test_echo_streams_a_repetitive_prompt_whole(tether_home):
    """litellm aborts streams that repeat one chunk 100 times; the echo model must not trip it."""
    from tether import Tether

    prompt = " ".join(["ha"] * 300)
    st = Tether().stream(prompt)
    text = "".join(st)
    assert st.error is None and text == st.result.text and prompt in text


def test_error_texts_hide_key_shapes_from_several_providers():
    from tether.router.errors import _scrub

    keys = ["gsk_ABCDEFGHIJKLMNOPQRSTUV1234", "AIzaSyD-abcdefghijklmnopqrstuvwx", "sk-proj-abcdefghijklmnopqrstuvwxyz",
            "eyJhbGciOiJIUzI1NiJ9.abc.def", "sk-ant-api03-ABCDEFGHIJKLMNOPQ"]
    texts = [f"Incorrect API key provided: {keys[0]}.", f"GET /v1/m:generate?key={keys[1]}&alt=sse failed",
             f"api_key='{keys[2]}'", f"Authorization: Bearer {keys[3]}", f"x-api-key: {keys[4]}"]
    for key, text in zip(keys, texts):
        assert key not in _scrub(text) and key[6:14] not in _scrub(text), text
    plain = "rate limited, retry in 3s (model gpt-4o-mini)"
    assert _scrub(plain) == plain


def test_error_texts_keep_words_that_merely_equal_a_short_env_value(monkeypatch):
    from tether.router.errors import _scrub

    monkeypatch.setenv("LOCAL_API_KEY", "not-needed")  # a placeholder many local servers take
    monkeypatch.setenv("BUILD_TOKEN", "1234567890")
    monkeypatch.setenv("MY_API_KEY", "zz_live_0123456789abcdef")
    text = "maximum context length is 1234567890 tokens for model openai/not-needed-model"
    assert _scrub(text) == text
    assert "0123456789abcdef" not in _scrub("bad key zz_live_0123456789abcdef given")


def test_a_session_begun_offline_moves_to_the_model_configured_later(tether_home, make_tether, fake_server):
    """Day one, no key: the session runs on the offline echo, which nobody chose. Day two, a
    provider is configured: the session's next turn goes to it, and says so in a pin event."""
    from tether import Tether

    day_one = Tether(home=tether_home)
    sid = day_one.chat_once("hello").session_id
    chosen = day_one.create_session(model="tether/echo")  # an explicit choice stays
    day_one.chat_once("hi", session_id=chosen)
    s = day_one.load_session(sid)
    assert (s.pinned_model, s.pin_reason) == ("tether/echo", "default (offline)")

    day_two = make_tether()
    assert day_two.preview_window(sid, "again").budget > 0
    r = day_two.chat_once("again", session_id=sid)
    assert r.model == "main" and r.pinned_model == "main" and r.fallback_from is None
    s = day_two.load_session(sid)
    assert (s.pinned_model, s.pin_reason) == ("main", "default (config)")
    assert [(e.data["from"], e.data["to"]) for e in s.events if e.type == "pin_changed"][-1] == ("tether/echo", "main")
    assert day_two.chat_once("still echo?", session_id=chosen).model == "tether/echo"
