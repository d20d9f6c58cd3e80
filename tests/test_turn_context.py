"""The config's [context] section: policy options reach the window; the rolling summary is made, stored and sent."""
from __future__ import annotations

import pytest

from tether.errors import ConfigError


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


def test_rolling_summary_made_stored_and_sent(make_tether, fake_server):
    t = make_tether(context={"summary": True, "summary_every": 4, "summary_words": 20},
                    models={"mid": {"context_window": 1500}})
    sid = t.create_session(model="mid")
    for i in range(24):
        t.add_message(sid, "user" if i % 2 == 0 else "assistant", f"fact {i} " + "filler words here " * 30)
    fake_server.reset()
    fake_server.fixed["mid"] = "Facts 0-9 were filler."
    t.chat_once("first new question", session_id=sid)
    calls = fake_server.calls("mid")
    assert len(calls) == 2  # the answer, then the summary of what the window left out
    assert "Summarise the earlier part" in calls[1]["messages"][0]["content"]
    [event] = [e for e in t.load_session(sid).events if e.type == "summary"]
    meta = event.data
    assert meta["count"] >= 4 and meta["text"] == "Facts 0-9 were filler."
    assert meta["upto"] == t.load_session(sid).messages[meta["count"] - 1].id
    t.chat_once("second new question", session_id=sid)
    sent = fake_server.calls("mid")[2]["messages"]
    assert any(meta["text"] in (m.get("content") or "") for m in sent if m["role"] == "system")


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
    s = t.load_session(sid)
    assert any(e.type == "summary" for e in s.events)  # a summary was made this turn
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
