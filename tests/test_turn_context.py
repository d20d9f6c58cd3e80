"""The config's [context] section: policy options reach the window; the rolling summary is made, stored and sent."""
from __future__ import annotations

import json

import pytest

from tether.errors import ConfigError

from conftest import join_summaries, wait_for


def test_context_options_validated_with_the_key_named(make_tether):
    for bad, match in (({"recency_sharez": 0.1}, "context.recency_sharez"), ({"k1": "high"}, "context.k1"),
                       ({"summary": "yes"}, "context.summary")):
        with pytest.raises(ConfigError, match=match):
            make_tether(context=bad).preview_window(make_tether().create_session(), "q")


@pytest.mark.parametrize("section,match", [
    ("nosuch = 1", "context.nosuch: unknown option"), ("recency_share = 5", "context.recency_share: must be between 0"),
    ("k1 = -3", "context.k1: must be a finite number, not negative"), ("term_rarity = nan", "context.term_rarity"),
    ("passage_weight = inf", "context.passage_weight"), ('unit = "turns"', "context.unit: must be 'pair' or 'message'"),
    ("summary_words = 0", "context.summary_every must be >= 1 and context.summary_words >= 10"),
    # values that only stall every turn (seconds per window) or overflow scores to NaN
    ("neighbour_reach = 100000", "context.neighbour_reach: must be at most 50"),
    ("passage_reach = 10000000", "context.passage_reach: must be at most 50"),
    ("k1 = 1e308", "context.k1: must be at most 100"), ("date_boost = 1e300", "context.date_boost: must be at most"),
])
def test_a_bad_context_section_is_a_config_error_naming_the_file(tether_home, section, match):
    """It used to pass `tether config` and then fail every turn, after the config was read."""
    from tether import Tether

    tether_home.mkdir(parents=True)
    path = tether_home / "config.toml"
    path.write_text(f"[context]\n{section}\n")
    t = Tether()
    rep = t.config_report()
    assert not rep.valid and match in rep.error and str(path) in rep.error
    sid = t.create_session()  # session management does not need the config
    with pytest.raises(ConfigError, match=match):
        t.chat_once("hi", session_id=sid)


def test_policy_ranges_checked_by_build_window_too():
    from tether.context import build_window

    history = [{"id": "a", "role": "user", "content": "hello"}]
    assert build_window(history, "hi", budget_tokens=100, recency_share=1.0, k1=0.0).messages
    for bad, match in (({"recency_share": 1.5}, "recency_share"), ({"passage_weight": -0.1}, "passage_weight"),
                       ({"candidates": 0}, "candidates"), ({"unit": "turn"}, "unit")):
        with pytest.raises(ValueError, match=match):
            build_window(history, "hi", budget_tokens=100, **bad)


def test_policy_option_changes_the_window(make_tether):
    t = make_tether()
    sid = t.create_session(model="small")  # a 400-token window: history must be chosen
    for i in range(12):
        t.add_message(sid, "user" if i % 2 == 0 else "assistant", f"turn {i} about apples and pears " * 3)
    default = t.preview_window(sid, "apples?")
    recency_only = make_tether(context={"relevance": False, "recency_share": 1.0}).preview_window(sid, "apples?")
    assert default.budget == recency_only.budget
    newest = [m["id"] if isinstance(m, dict) else m.id for m in recency_only.messages]
    assert newest and newest == [m.id for m in t.load_session(sid).messages[-len(newest):]]


def _due_for_a_summary(make_tether):  # type: ignore[no-untyped-def]
    """A client with summaries on, and a session whose next turn leaves out enough to summarise."""
    t = make_tether(context={"summary": True, "summary_every": 4, "summary_words": 20},
                    models={"mid": {"context_window": 1500}})
    sid = t.create_session(model="mid")
    for i in range(24):
        t.add_message(sid, "user" if i % 2 == 0 else "assistant", f"fact {i} " + "filler words here " * 30)
    return t, sid


def test_rolling_summary_made_stored_and_sent(make_tether, fake_server):
    t, sid = _due_for_a_summary(make_tether)
    fake_server.reset()
    fake_server.fixed["mid"] = "Facts 0-9 were filler."
    t.chat_once("first new question", session_id=sid)
    wait_for(lambda: any(e.type == "summary" for e in t.load_session(sid).events))  # made after the turn
    calls = fake_server.calls("mid")
    assert len(calls) == 2  # the answer, then the summary of what the window left out
    assert calls[1]["max_tokens"] == 20 * 2 + 64  # the summary's length is capped, not only asked for
    assert "Summarise the earlier part" in calls[1]["messages"][0]["content"]
    [event] = [e for e in t.load_session(sid).events if e.type == "summary"]
    meta = event.data
    assert meta["count"] >= 4 and meta["text"] == "Facts 0-9 were filler."
    assert meta["upto"] == t.load_session(sid).messages[meta["count"] - 1].id
    t.chat_once("second new question", session_id=sid)
    sent = fake_server.calls("mid")[2]["messages"]
    assert any(meta["text"] in (m.get("content") or "") for m in sent if m["role"] == "system")


def test_closing_the_client_waits_for_a_summary_being_made(make_tether, fake_server):
    """An app shutting a client down (or `with Tether() as t`) gets the summary it paid for."""
    t, sid = _due_for_a_summary(make_tether)
    fake_server.reset()
    fake_server.fail("mid", "slow:0", "slow:0.4")  # the answer at once, the summary later
    with t:
        t.chat_once("first new question", session_id=sid)
        assert not any(e.type == "summary" for e in t.load_session(sid).events)  # the turn did not wait
    assert any(e.type == "summary" for e in t.load_session(sid).events)


async def test_async_client_closes_as_a_context_manager(make_tether, fake_server, tether_home):
    from tether import AsyncTether

    sync, sid = _due_for_a_summary(make_tether)
    fake_server.reset()
    fake_server.fail("mid", "slow:0", "slow:0.4")
    async with AsyncTether(home=tether_home, config=sync._config_source) as t:
        await t.chat_once("first new question", session_id=sid)
    assert any(e.type == "summary" for e in sync.load_session(sid).events)


def test_storing_a_summary_keeps_metadata_an_app_set_during_the_turn(make_tether, fake_server):
    t = make_tether(context={"summary": True, "summary_every": 1}, models={"mid": {"context_window": 1500}})
    sid = t.create_session(model="mid", metadata={"plan": "free"})
    for i in range(24):
        t.add_message(sid, "user" if i % 2 == 0 else "assistant", f"fact {i} " + "filler words here " * 30)

    def upgrade(e):  # the app changes the session while the model answers
        if e["message"].role == "user":
            t.update_session(sid, metadata={"plan": "pro"})

    t.on("message", upgrade)
    t.chat_once("one more turn", session_id=sid)
    wait_for(lambda: any(e.type == "summary" for e in t.load_session(sid).events))  # a summary was made
    s = t.load_session(sid)
    assert s.metadata == {"plan": "pro"}


def test_a_summary_kept_in_metadata_by_earlier_versions_is_still_used():
    from tether import Message, Session
    from tether.context.summary import cached_summary

    msgs = [Message(role="user", content=f"m{i}") for i in range(4)]
    s = Session(messages=msgs, metadata={"context_summary": {"count": 2, "upto": msgs[1].id, "text": "old"}})
    assert cached_summary(s) == "old"


def test_summary_off_by_default_makes_no_extra_call(make_tether, fake_server):
    t = make_tether()
    sid = t.create_session(model="small")
    for i in range(10):
        t.add_message(sid, "user" if i % 2 == 0 else "assistant", "filler words here " * 12)
    fake_server.reset()
    t.chat_once("question", session_id=sid)
    assert len(fake_server.calls("small")) == 1
    assert not any(e.type == "summary" for e in t.load_session(sid).events)


def _long_session(t, sid, n=24, words=30):
    for i in range(n):
        t.add_message(sid, "user" if i % 2 == 0 else "assistant", f"fact {i} " + "filler words here " * words)


def test_the_summary_request_fits_the_models_window(make_tether, fake_server):
    """It read up to 24,000 characters whatever the model: a 1,500-token model got a 4,000-token
    request, the provider refused it, and no summary was ever made."""
    from tether.context import count_tokens

    t = make_tether(context={"summary": True, "summary_every": 4, "summary_words": 40},
                    models={"mid": {"context_window": 1500}})
    sid = t.create_session(model="mid")
    _long_session(t, sid, n=60, words=30)
    fake_server.fixed["mid"] = "a summary"
    t.chat_once("next question", session_id=sid)
    wait_for(lambda: len(fake_server.calls("mid")) == 2)
    request = fake_server.calls("mid")[1]
    assert count_tokens(request["messages"], "openai/mid") + request["max_tokens"] <= 1500
    wait_for(lambda: any(e.type == "summary" for e in t.load_session(sid).events))


def test_editing_a_covered_message_retires_its_summary(make_tether, fake_server):
    """A redacted message kept being sent in its old words, inside the summary of it."""
    t = make_tether(context={"summary": True, "summary_every": 4}, models={"mid": {"context_window": 1500}})
    sid = t.create_session(model="mid")
    secret = t.add_message(sid, "user", "my API key is sk-LEAKED-0123")
    t.add_message(sid, "assistant", "noted")
    _long_session(t, sid)
    fake_server.fixed["mid"] = "The user's API key is sk-LEAKED-0123."
    t.chat_once("q", session_id=sid)
    wait_for(lambda: any(e.type == "summary" for e in t.load_session(sid).events))
    t.update_message(sid, secret.id, content="my API key is [redacted]")
    fake_server.fixed["mid"] = "nothing secret"
    t.chat_once("q2", session_id=sid)
    system = [m["content"] for m in fake_server.calls("mid")[2]["messages"] if m["role"] == "system"]
    assert "sk-LEAKED" not in json.dumps(system)  # the summary goes in the system message


def test_the_summary_leaves_out_questions_no_model_answered(make_tether, fake_server):
    from tether import AllModelsFailed

    t = make_tether(retries=0, fallbacks=[], context={"summary": True, "summary_every": 4},
                    models={"mid": {"context_window": 1500}})
    sid = t.create_session(model="mid")
    fake_server.fail("mid", "500")
    with pytest.raises(AllModelsFailed):
        t.chat_once("UNANSWERED my password is hunter2", session_id=sid)
    _long_session(t, sid)
    t.chat_once("q", session_id=sid)
    wait_for(lambda: len(fake_server.calls("mid")) == 3)
    assert "hunter2" not in json.dumps(fake_server.calls("mid")[2]["messages"])


def test_a_slow_summary_does_not_hold_up_the_answer(make_tether, fake_server):
    t = make_tether(timeout=3, context={"summary": True, "summary_every": 4}, models={"mid": {"context_window": 1500}})
    t.chat_once("warm up: litellm is imported by the first turn", model="mid")
    sid = t.create_session(model="mid")
    _long_session(t, sid)
    fake_server.fail("mid", "slow:0", "slow:2")  # the answer at once, the summary after 2 s
    r = t.chat_once("q", session_id=sid)
    assert r.turn_ms < 1500
    wait_for(lambda: any(e.type == "summary" for e in t.load_session(sid).events))


_EXIT_SCRIPT = """
import json, sys, time
sys.path.insert(0, {tests!r})
import tether.turn.summaries as summaries
from conftest import router_config
from fakeserver import FakeServer
summaries.SUMMARY_EXIT_WAIT = {wait}
srv = FakeServer(timeout_sleep=60).start()
cfg = router_config(srv, timeout=60, context={{"summary": True, "summary_every": 4}},
                    models={{"mid": {{"context_window": 1500}}}})
from tether import Tether
t = Tether(config=cfg)
sid = t.create_session(model="mid")
for i in range(24):
    t.add_message(sid, "user" if i % 2 == 0 else "assistant", f"fact {{i}} " + "filler words here " * 30)
srv.fail("mid", "slow:0", {summary_fault!r})
t.chat_once("q", session_id=sid)
print(json.dumps({{"sid": sid, "answered": time.monotonic()}}), flush=True)
"""


@pytest.mark.parametrize("summary_fault, made", [("slow:0.5", True), ("hang", False)])
def test_a_process_exiting_waits_for_its_summary_but_not_for_long(tether_home, summary_fault, made):
    """`tether ask` ends right after its answer: the summary it asked for is made before the
    process exits, unless the call stalls, which must not hold the process for the model's timeout."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    from tether import Tether

    script = _EXIT_SCRIPT.format(tests=str(Path(__file__).parent), wait=2.0, summary_fault=summary_fault)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    done = json.loads(out.stdout.splitlines()[-1])
    exiting = time.monotonic() - done["answered"]  # a system-wide clock: from the answer to the exit
    assert any(e.type == "summary" for e in Tether().load_session(done["sid"]).events) is made
    assert exiting < 30, exiting  # the exit waits 2 s; the summary call's own timeout is 60 s


def test_a_session_deleted_or_cleared_while_its_summary_is_made(make_tether, fake_server, capfd):
    """The summary thread met a deleted session with a traceback on stderr, and after a clear
    it stored a summary of the cleared text."""
    t = make_tether(context={"summary": True, "summary_every": 4}, models={"mid": {"context_window": 1500}})
    for end in ("delete", "clear"):
        sid = t.create_session(model="mid")
        _long_session(t, sid)
        fake_server.fail("mid", "slow:0", "slow:0.5")  # the summary comes back after the session changed
        t.chat_once("q", session_id=sid)
        t.delete_session(sid) if end == "delete" else t.clear_history(sid)
        join_summaries(10)
        if end == "clear":
            assert not [e for e in t.load_session(sid).events if e.type == "summary"]
    assert "Traceback" not in capfd.readouterr().err


def test_a_failed_summary_logs_the_providers_text_without_the_key(make_tether, fake_server, monkeypatch, caplog):
    """The summary thread logged the raw exception at WARNING: with a provider that repeats the
    key, `tether ask` printed it on stderr."""
    key = "EnvKeyValue0a1b2c3d4e5f6a7b"  # no known key shape: hidden by value only
    monkeypatch.setenv("LOCAL_KEY", key)
    t = make_tether(context={"summary": True, "summary_every": 4},
                    models={"mid": {"model": "openai/mid", "api_base": fake_server.base, "api_key_env": "LOCAL_KEY",
                                    "context_window": 1500}})
    sid = t.create_session(model="mid")
    _long_session(t, sid)
    fake_server.fail("mid", "slow:0", "401key")  # the answer, then the summary's call is refused
    with caplog.at_level("DEBUG", logger="tether"):
        t.chat_once("q", session_id=sid)
        join_summaries(10)
    assert fake_server.keys[-1] == f"Bearer {key}"
    said = [r.getMessage() for r in caplog.records if r.name == "tether" and "summary" in r.getMessage()]
    assert said and all("has expired" in m for m in said)
    assert not [m for m in said if key in m]
