"""A session's model: chosen once, kept across fallbacks and process restarts, changed by the
user or (when enabled) after repeated failures."""
from __future__ import annotations

import pytest

from tether import UnknownModel


def test_pin_survives_fallback_and_process_restart(make_tether, fake_server, tether_home):
    t = make_tether(retries=0)
    fake_server.fail("main", "500")
    r = t.chat_once("one")
    assert r.model == "backup" and r.fallback_from == "main" and r.pinned_model == "main"
    sid = r.session_id
    s = t.load_session(sid)
    assert s.pinned_model == "main"
    assert [e.type for e in s.events] == ["pin_changed", "fallback"]
    assert s.events[1].data["from"] == "main" and s.events[1].data["to"] == "backup"
    t2 = make_tether()  # a new process, as far as tether is concerned
    fake_server.requests.clear()
    r2 = t2.chat_once("two", session_id=sid)
    assert r2.model == "main" and [c["model"] for c in fake_server.calls()] == ["main"]


def test_new_session_model_explicit_then_route_then_default(make_tether, fake_server):
    t = make_tether(routes=[{"when": {"min_prompt_tokens": 50}, "model": "backup"},
                            {"when": {"contains": "poem"}, "model": "small"}])
    assert t.chat_once("short").model == "main"
    long = t.chat_once("word " * 80)
    assert long.model == "backup" and t.load_session(long.session_id).pin_reason == "route 0"
    assert t.chat_once("write a Poem").pinned_model == "small"
    exp = t.chat_once("word " * 80, model="small")
    assert exp.pinned_model == "small" and t.load_session(exp.session_id).pin_reason == "explicit"
    raw = t.chat_once("raw", model="tether/echo")  # a raw litellm string works as a model name
    assert raw.model == raw.pinned_model == "tether/echo" and raw.text.startswith("echo: raw")


def test_pin_model_records_change_and_rejects_unknown(make_tether, fake_server):
    t = make_tether()
    changes = []
    t.on("pin_changed", changes.append)
    sid = t.chat_once("hi").session_id
    assert t.pin_model(sid, "backup") == "backup"
    s = t.load_session(sid)
    assert s.pinned_model == "backup" and s.pin_reason == "user"
    assert changes[-1] == {"session_id": sid, "from": "main", "to": "backup", "reason": "user", "configured": True}
    assert changes[0]["from"] is None and changes[0]["to"] == "main"  # the first pin is announced too
    other = t.create_session(model="backup")
    assert changes[-1] == {"session_id": other, "from": None, "to": "backup", "reason": "explicit", "configured": True}
    assert len(changes) == 3 == sum(e.type == "pin_changed" for x in (sid, other) for e in t.load_session(x).events)
    assert t.chat_once("next", session_id=sid).model == "backup"
    with pytest.raises(UnknownModel, match="nosuchthing"):
        t.pin_model(sid, "nosuchthing")
    assert t.load_session(sid).pinned_model == "backup"


def test_repin_after_consecutive_failed_turns(make_tether, fake_server):
    t = make_tether(retries=0, repin_after_failures=2)
    fake_server.always["main"] = "503"
    r1 = t.chat_once("a")
    sid = r1.session_id
    assert r1.pinned_model == "main"
    r2 = t.chat_once("b", session_id=sid)
    assert r2.pinned_model == "backup"
    s = t.load_session(sid)
    assert s.pinned_model == "backup" and s.pin_reason.startswith("auto")
    assert [e.type for e in s.events].count("pin_changed") == 2
    fake_server.requests.clear()
    assert t.chat_once("c", session_id=sid).model == "backup"
    assert fake_server.calls("main") == []
    # the model it moved away from stays in the chain, last: when backup fails, main answers
    fake_server.always.clear()
    fake_server.always["backup"] = "503"
    r = t.chat_once("d", session_id=sid)
    assert r.model == "main" and r.pinned_model == "backup" and r.fallback_from == "backup"


def test_the_failure_streak_survives_a_kept_partial_answer_and_an_app_note(make_tether, fake_server):
    """Every model cut mid-answer: the partial answer is kept after the question. The next
    turn's streak must still count the failure, or a streamed chat never re-pins."""
    from tether import AllModelsFailed

    t = make_tether(retries=0, repin_after_failures=2)
    fake_server.always.update(main="cut", backup="cut")
    with pytest.raises(AllModelsFailed) as e:
        with t.stream("first q") as st:
            list(st)
    sid = e.value.session_id
    assert t.get_history(sid)[-1].status == "interrupted"
    t.add_message(sid, "system", "a note from the app")
    del fake_server.always["backup"]
    with t.stream("second q", session_id=sid) as st:
        list(st)
    s = t.load_session(sid)
    assert s.pinned_model == "backup" and s.pin_reason.startswith("auto: main failed 2 turns")


def test_repin_is_off_by_default(make_tether, fake_server):
    t = make_tether(retries=0)
    fake_server.always["main"] = "503"
    sid = t.chat_once("a").session_id
    for p in "bcd":
        t.chat_once(p, session_id=sid)
    assert t.load_session(sid).pinned_model == "main"


def test_a_success_resets_the_failure_streak(make_tether, fake_server):
    t = make_tether(retries=0, repin_after_failures=2)
    fake_server.fail("main", "503")
    sid = t.chat_once("a").session_id
    t.chat_once("b", session_id=sid)  # main answers
    fake_server.fail("main", "503")
    assert t.chat_once("c", session_id=sid).pinned_model == "main"


def test_pin_and_history_survive_a_real_process_restart(make_tether, fake_server, tether_home):
    import json
    import subprocess
    import sys

    from conftest import router_config

    t = make_tether(retries=0)
    fake_server.fail("main", "500")
    r = t.chat_once("remember 42")
    assert r.model == "backup" and r.pinned_model == "main"
    code = ("import json, sys; from tether import Tether; "
            "t = Tether(home=sys.argv[1], config=json.loads(sys.argv[2])); "
            "r = t.chat_once('what number?', session_id=sys.argv[3]); print(r.model, r.pinned_model)")
    fake_server.requests.clear()
    out = subprocess.run([sys.executable, "-c", code, str(tether_home), json.dumps(router_config(fake_server)),
                          r.session_id], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["main", "main"]
    sent = fake_server.calls("main")[0]["messages"]
    assert [m["content"] for m in sent][0] == "remember 42" and sent[-1]["content"] == "what number?"


def test_a_routes_bare_named_model_is_used_on_an_unpinned_sessions_first_turn(tether_home, caplog):
    """create_session() without a model, then a first question a route matches: the pin event
    was written but not seen by the turn, which took the route's bare name for a removed entry."""
    from tether import Tether

    t = Tether(config={"default_model": "tether/echo", "routes": [{"model": "gpt-4o", "when": {"contains": "code"}}]})
    sid = t.create_session(title="x")
    with caplog.at_level("WARNING", logger="tether"):
        ts = t.turns.start("write code please", sid, None)
    t.turns.abandon(ts)  # not sent: only the chain is checked
    assert ts.chain[0] == "gpt-4o" and "no longer has" not in caplog.text
