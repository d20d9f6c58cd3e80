"""Failures on the real HTTP path (local OpenAI-compatible server): retry, fall back, record."""
from __future__ import annotations

import pytest

from fakeserver import free_port
from tether import AllModelsFailed


def kinds(result_or_err):
    return [(a.model, a.kind) for a in result_or_err.attempts]


def test_plain_turn_records_model_usage_and_request(make_tether, fake_server):
    t = make_tether()
    r = t.chat_once("hello")
    assert r.model == "main" and r.pinned_model == "main" and r.fallback_from is None
    assert r.text == "main says: hello (1 messages)"
    assert r.usage["total_tokens"] > 0 and r.window_tokens > 0
    assert kinds(r) == [("main", "ok")]
    assert [c["model"] for c in fake_server.calls()] == ["main"]
    assert fake_server.calls()[0]["messages"][-1] == {"role": "user", "content": "hello"}


def test_429_retry_after_is_honoured_on_same_model(make_tether, fake_server):
    fake_server.fail("main", "429:0")  # within retry_after_cap: wait, then the same model
    r = make_tether(retry_after_cap=1).chat_once("hi")
    assert r.model == "main" and r.fallback_from is None
    assert kinds(r) == [("main", "rate_limit"), ("main", "ok")]
    assert r.attempts[0].status == 429


def test_a_retry_after_longer_than_the_cap_sends_the_turn_to_the_next_model_at_once(make_tether, fake_server):
    """Waiting the cap and asking again a model that asked for 30 s only delays the answer."""
    fake_server.fail("main", "429:30")
    r = make_tether().chat_once("hi")  # cap 0.05 s
    assert kinds(r) == [("main", "rate_limit"), ("backup", "ok")]
    assert r.turn_ms < 1000
    # with no other model to ask, the capped wait and a retry are all there is
    fake_server.fail("main", "429:30")
    r = make_tether(fallbacks=[]).chat_once("again")
    assert kinds(r) == [("main", "rate_limit"), ("main", "ok")]


@pytest.mark.parametrize("fault, kind", [("500", "server"), ("503", "server"), ("malformed", "malformed")])
def test_transient_errors_retry_then_fall_back(make_tether, fake_server, fault, kind):
    fake_server.fail("main", fault, fault)  # retries=1: both tries fail
    t = make_tether()
    r = t.chat_once("hi")
    assert r.model == "backup" and r.fallback_from == "main" and r.pinned_model == "main"
    assert kinds(r) == [("main", kind), ("main", kind), ("backup", "ok")]
    assert r.text.startswith("backup says")
    # latency_ms is the answering call; turn_ms the whole turn, failed tries and back-off included
    tries = sum(a.seconds for a in r.attempts) * 1000
    assert r.latency_ms == pytest.approx(r.attempts[-1].seconds * 1000)
    assert r.turn_ms >= tries > r.latency_ms


def test_timeout_retries_then_falls_back(make_tether, fake_server):
    fake_server.fail("main", "timeout")
    r = make_tether(retries=0).chat_once("hi")
    assert kinds(r) == [("main", "timeout"), ("backup", "ok")]


def test_connection_refused_falls_back(make_tether, fake_server):
    dead = {"model": "openai/dead", "api_base": f"http://127.0.0.1:{free_port()}/v1", "api_key": "x"}
    r = make_tether(default_model="dead", models={"dead": dead}).chat_once("hi")
    assert kinds(r) == [("dead", "connection"), ("dead", "connection"), ("backup", "ok")]


@pytest.mark.parametrize("fault, kind", [("401", "auth"), ("404", "not_found")])
def test_auth_and_not_found_go_straight_to_next(make_tether, fake_server, fault, kind):
    fake_server.always["main"] = fault
    r = make_tether(retries=3).chat_once("hi")
    assert kinds(r) == [("main", kind), ("backup", "ok")]
    assert len(fake_server.calls("main")) == 1


def _fill(t, n=12):
    sid = t.create_session("long")
    for i in range(n):
        t.add_message(sid, "user", f"question {i} " + "words " * 30)
        t.add_message(sid, "assistant", f"answer {i} " + "words " * 30)
    return sid


def test_context_overflow_rebuilds_a_smaller_window_on_same_model(make_tether, fake_server):
    t = make_tether()
    sid = _fill(t)
    fake_server.fail("main", "context")
    r = t.chat_once("now", session_id=sid)
    assert r.model == "main" and kinds(r) == [("main", "context_overflow"), ("main", "ok")]
    first, second = fake_server.calls("main")
    assert len(second["messages"]) < len(first["messages"])
    assert r.attempts[1].window_tokens < r.attempts[0].window_tokens


def test_persistent_overflow_moves_to_a_model_with_a_larger_window(make_tether, fake_server):
    t = make_tether(default_model="small", fallbacks=["main"],
                    models={"main": {"context_window": 64000}, "small": {"context_window": 2000}})
    sid = _fill(t, 3)
    fake_server.always["small"] = "context"
    r = t.chat_once("now", session_id=sid)
    assert r.model == "main" and r.fallback_from == "small"
    # the whole window, a shrunk one, the question alone; then the larger model
    assert [a.kind for a in r.attempts] == ["context_overflow"] * 3 + ["ok"]
    sent = [[m["content"] for m in c["messages"]] for c in fake_server.calls("small")]
    assert len(sent[0]) > len(sent[1]) > len(sent[2])
    assert sent[2][-1] == "now" and not any("words" in m for m in sent[2])


def test_fallback_gets_a_window_sized_for_it(make_tether, fake_server):
    t = make_tether(fallbacks=["small"], retries=0)
    sid = _fill(t, 20)
    fake_server.always["main"] = "500"
    r = t.chat_once("what now?", session_id=sid)
    assert r.model == "small"
    big, small = fake_server.calls("main")[0]["messages"], fake_server.calls("small")[0]["messages"]
    assert len(big) == 41  # whole history (40) + query
    assert len(small) < len(big) and small[-1]["content"] == "what now?"
    assert r.window_tokens <= 400 and r.window_dropped > 0


def test_all_models_fail_keeps_message_unanswered_then_retry_answers_it_once(make_tether, fake_server):
    fake_server.always.update({"main": "500", "backup": "503"})
    t = make_tether(retries=0)
    seen = []
    t.on("error", seen.append)
    with pytest.raises(AllModelsFailed) as e:
        t.chat_once("please answer")
    assert kinds(e.value) == [("main", "server"), ("backup", "server")]
    sid = e.value.session_id
    assert seen and seen[0]["session_id"] == sid
    msgs = t.load_session(sid).messages
    assert [(m.role, m.status) for m in msgs] == [("user", "unanswered")]
    fake_server.always.clear()
    r = t.chat_once("please answer", session_id=sid)  # asking again answers the same message
    msgs = t.load_session(sid).messages
    assert [(m.role, m.content, m.status) for m in msgs] == [
        ("user", "please answer", "ok"), ("assistant", r.text, "ok")]
    assert r.user_message_id == msgs[0].id
    assert len(fake_server.calls("main")[-1]["messages"]) == 1  # sent once, not duplicated


def test_retry_method_answers_last_unanswered_without_duplicating(make_tether, fake_server):
    fake_server.always.update({"main": "401", "backup": "401"})
    t = make_tether()
    with pytest.raises(AllModelsFailed):
        t.chat_once("first question")
    sid = t.current_session_id
    fake_server.always.clear()
    r = t.retry(sid)
    assert r.text == "main says: first question (1 messages)"
    s = t.load_session(sid)
    assert [m.role for m in s.messages] == ["user", "assistant"] and s.totals.turns == 1
    with pytest.raises(ValueError, match="no unanswered"):
        t.retry(sid)


def test_circuit_breaker_skips_then_probes(make_tether, fake_server):
    t = make_tether(breaker_failures=2, breaker_cooldown=1000, retries=0)
    fake_server.always["main"] = "500"
    t.chat_once("one")
    sid = t.current_session_id
    t.chat_once("two", session_id=sid)
    assert len(fake_server.calls("main")) == 2
    r = t.chat_once("three", session_id=sid)  # open: main is skipped without a request
    assert len(fake_server.calls("main")) == 2
    assert kinds(r) == [("main", "circuit_open"), ("backup", "ok")]
    assert t.models()[0]["circuit"]["state"] == "open"
    breaker = t.turns.router.breaker
    now = breaker._clock()
    breaker._clock = lambda: now + 2000  # cool-down over: one probe goes through
    fake_server.always.clear()
    r = t.chat_once("four", session_id=sid)
    assert r.model == "main" and breaker.state("main")["state"] == "closed"


def test_per_model_retries_override(make_tether, fake_server):
    fake_server.fail("main", "500", "500", "500")
    r = make_tether(models={"main": {"retries": 3}}).chat_once("hi")
    assert r.model == "main" and len(r.attempts) == 4


@pytest.mark.parametrize("streamed", [False, True])
def test_ctrl_c_during_a_probe_frees_the_breaker(make_tether, fake_server, monkeypatch, streamed):
    """Ctrl-C while the half-open breaker probes the pinned model must not lock that model out."""
    from tether.router._lite import litellm

    t = make_tether(breaker_failures=1, breaker_cooldown=1000, retries=0)
    fake_server.fail("main", "500")
    sid = t.chat_once("one").session_id  # main fails once: its circuit opens
    breaker = t.turns.router.breaker
    now = breaker._clock()
    breaker._clock = lambda: now + 2000  # cool-down over: the next turn probes main
    lm = litellm()
    real = lm.completion

    def interrupted(**kw):  # the user presses Ctrl-C while main is being probed
        if kw["model"] == "openai/main":
            raise KeyboardInterrupt
        return real(**kw)

    monkeypatch.setattr(lm, "completion", interrupted)
    with pytest.raises(KeyboardInterrupt):
        if streamed:
            list(t.stream("two", session_id=sid))
        else:
            t.chat_once("two", session_id=sid)
    monkeypatch.setattr(lm, "completion", real)
    r = t.chat_once("three", session_id=sid)
    assert r.model == "main" and kinds(r) == [("main", "ok")]
    assert breaker.state("main")["state"] == "closed"


@pytest.mark.parametrize("how", ["sync", "stream", "async"])
def test_cancelling_a_probe_during_its_back_off_frees_the_breaker(make_tether, fake_server, monkeypatch, how):
    """The back-off sleep between a probe's tries is part of the probe: cancelled there, the
    slot must be freed, or the model is skipped ("retry in 0.0s") until the process ends."""
    import asyncio
    import time

    from tether import AsyncTether
    from conftest import router_config

    t = make_tether(breaker_failures=1, breaker_cooldown=1000, retries=1, retry_after_cap=5)
    sid = t.chat_once("one").session_id
    breaker = t.turns.router.breaker
    breaker.failure("main")  # main's circuit opens
    now = breaker._clock()
    breaker._clock = lambda: now + 2000  # cool-down over: the next turn probes main
    fake_server.fail("main", "429:3")  # the probe is told to wait 3 s: the turn sleeps

    def interrupt(seconds):
        raise KeyboardInterrupt

    if how == "async":
        at = AsyncTether(home=t.home, config=router_config(fake_server, breaker_failures=1, breaker_cooldown=1000,
                                                             retries=1, retry_after_cap=5))
        at.sync.turns.router.breaker = breaker

        async def turn():
            task = asyncio.ensure_future(at.chat_once("two", session_id=sid))
            while not fake_server.requests:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)  # in the back-off now
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        fake_server.requests.clear()
        asyncio.run(turn())
    else:
        monkeypatch.setattr(time, "sleep", interrupt)
        with pytest.raises(KeyboardInterrupt):
            if how == "stream":
                list(t.stream("two", session_id=sid))
            else:
                t.chat_once("two", session_id=sid)
        monkeypatch.undo()
    assert breaker.state("main")["state"] == "half-open"
    r = t.chat_once("three", session_id=sid)
    assert r.model == "main" and kinds(r) == [("main", "ok")]


def test_a_bad_request_does_not_count_against_the_model(make_tether, fake_server):
    """A request the provider refuses for its content (one user's odd parameter or text) is the
    turn's fault: it must not open the circuit for every other session."""
    t = make_tether(breaker_failures=2, breaker_cooldown=1000, retries=0, fallbacks=[])
    for _ in range(3):
        fake_server.fail("main", "400")
        with pytest.raises(AllModelsFailed) as e:
            t.chat_once("odd request")
        assert "bad_request (400): fake 400" in str(e.value)  # what the provider said, not just the kind
    assert t.turns.router.breaker.state("main")["state"] == "closed"
    assert t.chat_once("fine").model == "main"


def test_an_overflow_on_a_guessed_window_tries_the_next_model_of_the_chain(make_tether, fake_server):
    """Unknown to litellm, both models get the same assumed window: that the first one's real
    window is smaller says nothing about the second's."""
    t = make_tether(retries=0)  # main and backup: unknown to litellm, no context_window configured
    fake_server.always["main"] = "context"
    r = t.chat_once("hello")
    assert r.model == "backup" and [a.kind for a in r.attempts] == ["context_overflow", "ok"]


def test_a_turn_too_large_for_every_model_names_its_size_and_leaves_the_circuits_closed(make_tether, fake_server):
    """Pasting too much is the turn's fault: a clear error with the sizes, and no model is
    locked out for the turns after it (the breaker counts only real model failures)."""
    from tether import ContextOverflow, PromptTooLarge

    tiny = {"context_window": 400}
    t = make_tether(default_model="small", breaker_failures=2, breaker_cooldown=1000,
                    models={"main": tiny, "backup": tiny})
    sid = t.create_session()
    for _ in range(3):
        with pytest.raises(PromptTooLarge) as err:
            t.chat_once("lorem ipsum " * 400, session_id=sid)
        assert isinstance(err.value, ContextOverflow) and isinstance(err.value, AllModelsFailed)
        assert "the new message needs" in str(err.value) and "400-token window" in str(err.value)
        assert [a.kind for a in err.value.attempts] == ["context_overflow"]  # no larger window to try
    assert fake_server.calls() == []
    assert all(m["circuit"]["state"] == "closed" for m in t.models())
    r = t.chat_once("short", session_id=sid)
    assert r.model == "small" and kinds(r) == [("small", "ok")]


def test_a_missing_api_key_is_an_auth_error_not_retried(make_tether, fake_server, monkeypatch):
    """The OpenAI SDK reports a missing key as a 500; retrying it only delays the fallback.
    (No api_base: one gets a placeholder key rather than the environment's.)"""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    nokey = {"model": "openai/main"}
    r = make_tether(default_model="nokey", retries=3, models={"nokey": nokey}).chat_once("hi")
    assert kinds(r) == [("nokey", "auth"), ("backup", "ok")]
    assert "Missing credentials" in r.attempts[0].error


def test_an_auth_failure_says_which_variable_to_set(make_tether, fake_server, monkeypatch):
    """"every model failed: x: auth (401)" left users guessing; the message names the variable
    (the model's api_key_env, else the one litellm expects), never a key."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("LOCAL_KEY", raising=False)
    fake_server.always.update({"main": "401"})
    models = {"envkey": {"model": "openai/main", "api_base": fake_server.base, "api_key_env": "LOCAL_KEY"},
              "nokey": {"model": "openai/main", "api_base": fake_server.base},
              "given": {"model": "openai/main", "api_base": fake_server.base, "api_key": "sk-abcdefghijklmnop"}}
    t = make_tether(default_model="envkey", fallbacks=["nokey", "given"], models=models)
    with pytest.raises(AllModelsFailed) as e:
        t.chat_once("hi")
    msg = str(e.value)
    assert "envkey: auth: LOCAL_KEY is not set" in msg  # not called at all: no 401
    assert "nokey: auth (401): its api_base gets no key from the environment: set api_key_env" in msg
    assert fake_server.keys[0] == "Bearer no-key"  # nokey's call; envkey was not called
    assert "given: auth (401): the configured key was refused" in msg and "abcdefgh" not in msg


def test_a_mistyped_model_name_never_becomes_a_pin(make_tether, fake_server):
    """create_session(model=...) checks the name as chat_once(model=...) does (without
    importing litellm: it is a session operation)."""
    from tether import UnknownModel

    t = make_tether()
    with pytest.raises(UnknownModel, match="'mian'"):
        t.create_session(model="mian")
    assert t.list_sessions() == []
    assert t.load_session(t.create_session(model="backup")).pinned_model == "backup"


def test_a_session_pinned_to_a_config_entry_that_was_removed_uses_the_default(fake_server, tether_home, caplog):
    """The removed name was sent to litellm as a raw model string: every turn failed first
    (or a bare 'gpt-4o-mini' that pointed at a private api_base went to OpenAI itself)."""
    from conftest import router_config

    from tether import Tether

    old = Tether(home=tether_home, config=router_config(fake_server, default_model="small"))
    sid = old.chat_once("first").session_id
    assert old.load_session(sid).pinned_model == "small"
    cfg = router_config(fake_server, fallbacks=[])
    del cfg["models"]["small"]
    new = Tether(home=tether_home, config=cfg)
    with caplog.at_level("WARNING", logger="tether"):
        r1 = new.chat_once("second", session_id=sid)
        r2 = new.chat_once("third", session_id=sid)
    assert r1.model == r2.model == "main" and [a.model for a in r1.attempts] == ["main"]
    assert sum("no longer has" in rec.getMessage() for rec in caplog.records) == 1
    assert new.load_session(sid).pinned_model == "small"  # kept: the entry may come back
    assert new.preview_window(sid, "next").model == "openai/main"
    raw = new.create_session(model="openai/backup")  # a raw string the user chose is still used
    assert new.turns.pins.chain_for(new.load_session(raw))[0] == "openai/backup"


def test_a_raw_model_string_from_a_route_or_the_default_is_a_pin_like_any_other(fake_server, tether_home, caplog):
    """Only a name that WAS a config entry can go stale: a route's or the default's raw litellm
    string is the session's model (it was taken for the config's own and replaced by the default)."""
    from conftest import router_config

    from tether import Tether

    route = {"when": {"contains": "code"}, "model": "openai/coder"}
    t = Tether(home=tether_home, config=router_config(fake_server, fallbacks=[], routes=[route]))
    with caplog.at_level("WARNING", logger="tether"):
        r = t.chat_once("write code", api_base=fake_server.base, api_key="sk-x")
        r2 = t.chat_once("more", session_id=r.session_id, api_base=fake_server.base, api_key="sk-x")
    assert r.model == r2.model == r.pinned_model == "openai/coder"
    assert fake_server.calls()[-1]["model"] == "coder"
    echo = Tether(home=tether_home, config={"default_model": "tether/echo"})
    with caplog.at_level("WARNING", logger="tether"):
        e1 = echo.chat_once("hi")
        echo.chat_once("again", session_id=e1.session_id)
    assert not [rec for rec in caplog.records if "no longer has" in rec.getMessage()]


def test_a_removed_config_entry_named_like_a_model_is_not_sent_to_the_public_provider(fake_server, tether_home):
    """[models."gpt-4o-mini"] on a private api_base, pinned by the user, then removed: the raw
    "gpt-4o-mini" would go to OpenAI itself with the environment's key."""
    from conftest import router_config

    from tether import Tether

    cfg = router_config(fake_server)
    cfg["models"]["gpt-4o-mini"] = dict(cfg["models"]["backup"])
    old = Tether(home=tether_home, config=cfg)
    sid = old.chat_once("hi").session_id
    old.pin_model(sid, "gpt-4o-mini")
    r = Tether(home=tether_home, config=router_config(fake_server)).chat_once("q", session_id=sid)
    assert [a.litellm_model for a in r.attempts] == ["openai/main"]


def test_an_older_sessions_pin_to_a_removed_bare_named_entry_is_not_sent_raw(fake_server, tether_home):
    """Sessions written before pins recorded `configured`: a default or route pin to a bare name
    was a config entry, and must not go to the public provider once the entry is gone. Asked
    for by name again, it is meant raw: the user's explicit choice is honoured."""
    from conftest import router_config

    from tether import Session, SessionEvent, Tether

    t = Tether(home=tether_home, config=router_config(fake_server))
    old_style = Session(pinned_model="gpt-4o-mini", pin_reason="default (config)",
                        events=[SessionEvent(type="pin_changed",
                                             data={"from": None, "to": "gpt-4o-mini", "reason": "default (config)"})])
    t.store.create(old_style)
    assert t.turns.pins.chain_for(t.load_session(old_style.id))[0] == "main"
    echo = Session(pinned_model="tether/echo", pin_reason="default (config)",
                   events=[SessionEvent(type="pin_changed", data={"from": None, "to": "tether/echo",
                                                                   "reason": "default (config)"})])
    t.store.create(echo)
    assert t.turns.pins.chain_for(t.load_session(echo.id))[0] == "tether/echo"  # provider/model: raw
    t.pin_model(old_style.id, "gpt-4o-mini")
    assert t.turns.pins.chain_for(t.load_session(old_style.id))[0] == "gpt-4o-mini"


def test_two_processes_asking_a_failed_question_again_do_not_share_it(make_tether, fake_server):
    """Another process answering the same unanswered question: its claim is now on disk (a
    flock), so the second asker stores its own question instead of a second answer to the first."""
    a, b = make_tether(), make_tether()  # two clients: two processes' worth of in-memory state
    fake_server.always.update({"main": "500", "backup": "500"})
    with pytest.raises(AllModelsFailed) as failed:
        a.chat_once("the question")
    sid = failed.value.session_id
    fake_server.always.clear()
    ts = a.turns.start("the question", sid, None)  # process A is answering it again now
    assert ts.reused
    with pytest.raises(ValueError, match="being answered already"):
        b.retry(sid)
    rb = b.chat_once("the question", session_id=sid)  # B's own question, answered
    ra = a.turns.run(ts, {})
    msgs = a.load_session(sid).messages
    assert [m.role for m in msgs].count("user") == 2 and [m.role for m in msgs].count("assistant") == 2
    assert rb.user_message_id != ra.user_message_id == ts.user.id
    assert all(m.status == "ok" for m in msgs)
    fake_server.always.update({"main": "500", "backup": "500"})
    with pytest.raises(AllModelsFailed):
        a.chat_once("again", session_id=sid)
    fake_server.always.clear()
    assert b.retry(sid).text.startswith("main says: again")  # A's claim was released


def test_a_stored_lone_surrogate_is_sent_as_a_replacement_character(make_tether, fake_server):
    """A message stored with a lone surrogate (an older tether, a non-UTF-8 pipe) failed every
    later turn whose window held it: UTF-8 cannot carry it, and litellm called that a 500."""
    from tether.sessions import Message

    t = make_tether()
    sid = t.create_session()
    t.store.append_message(sid, Message(role="user", content="caf\udce9"))
    fake_server.reset()
    t.chat_once("translate the above", session_id=sid)
    assert any(m["content"] == "caf\ufffd" for m in fake_server.calls()[0]["messages"])
    assert t.load_session(sid).messages[0].content == "caf\udce9"  # stored as it came


def test_text_utf8_cannot_carry_is_a_bad_request_naming_the_cause(fake_server):
    """Should such text reach litellm, it fails before any request, reported as a 500: it is
    the turn's fault (no retry, no strike) and the error says what was wrong."""
    from tether.router._lite import litellm
    from tether.router.errors import classify

    with pytest.raises(Exception) as e:
        litellm().completion(model="openai/main", api_base=fake_server.base, api_key="k", max_retries=0,
                             messages=[{"role": "user", "content": "caf\udce9"}])
    c = classify(e.value)
    assert (c.kind, c.status) == ("bad_request", None) and "surrogates not allowed" in c.message


@pytest.mark.parametrize("where", ["system", "context", "retried question"])
def test_a_lone_surrogate_outside_the_history_is_sent_repaired_too(make_tether, fake_server, where):
    t = make_tether()
    fake_server.reset()
    if where == "system":
        sid = t.create_session(system="r\udce9ponds")
        t.chat_once("hello", session_id=sid)
    elif where == "context":
        sid = t.create_session(context={"city": "Montr\udce9al"})
        t.chat_once("hello", session_id=sid)
    else:
        sid = t.create_session()
        t.add_message(sid, "user", "caf\udce9?")
        t.retry(sid)  # answers the stored question
    sent = " ".join(m["content"] for m in fake_server.calls()[0]["messages"])
    assert "\ufffd" in sent and "\udce9" not in sent
