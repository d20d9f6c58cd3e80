"""The chat when models fail, stall or are interrupted, over the local OpenAI-compatible server."""
from __future__ import annotations

import io
import time

import pytest

from tether import Tether
from tether.render import AnswerView, make_console

from replkit import chat


def test_ctrl_c_during_an_answer_keeps_the_partial_answer_and_the_session_usable(tether_home, monkeypatch):
    calls = {"n": 0}
    real_add = AnswerView.add

    def add(self, piece):  # SIGINT lands while the answer is being drawn
        calls["n"] += 1
        real_add(self, piece)
        if calls["n"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(AnswerView, "add", add)
    with chat(tether_home) as c:
        out = c.run("stop me\r")
        assert "interrupted" in out
        msgs = c.messages()
        assert msgs[-1].role == "assistant" and msgs[-1].status == "interrupted"
        assert msgs[-1].content and "echo: stop me".startswith(msgs[-1].content.strip())
        monkeypatch.setattr(AnswerView, "add", real_add)
        c.run("next question\r")
        last = c.messages()[-1]
        assert last.status == "ok" and last.content.startswith("echo: next question")


# -- fallbacks through the local OpenAI-compatible server -----------------------------------------
@pytest.fixture(scope="module")
def server():
    from fakeserver import FakeServer

    srv = FakeServer(timeout_sleep=0.5).start()
    yield srv
    srv.stop()


def server_config(srv) -> dict:
    def m(name: str) -> dict:
        return {"model": f"openai/{name}", "api_base": srv.base, "api_key": "sk-test"}

    return {"default_model": "main", "fallbacks": ["backup"], "retries": 0, "timeout": 5, "breaker_failures": 0,
            "models": {"main": m("main"), "backup": m("backup")}}


def test_fallback_before_any_text_names_both_models(tether_home, server):
    server.reset()
    server.fail("main", "500")
    with chat(tether_home, config=server_config(server)) as c:
        out = c.run("who answers?\r")
        assert "backup says: who answers?" in out
        assert "main failed (server 500); backup answered instead" in out
        assert c.messages()[-1].model == "backup"


def test_failure_mid_answer_restarts_on_the_next_model(tether_home, server):
    server.reset()
    server.fail("main", "cut")
    with chat(tether_home, config=server_config(server)) as c:
        out = c.run("a long enough question to cut\r")
        assert "main failed mid-answer" in out and "backup answers from the start" in out
        assert c.messages()[-1].content.startswith("backup says: a long enough question")


def test_every_model_failing_keeps_the_question_for_retry(tether_home, server):
    server.reset()
    server.always.update({"main": "500", "backup": "500"})
    with chat(tether_home, config=server_config(server)) as c:
        out = c.run("anyone?\r")
        assert "every model failed" in out and "/retry" in out
        assert c.messages()[-1].status == "unanswered"
        server.always.clear()
        c.run("/retry\r")
        msgs = c.messages()
        assert [m.role for m in msgs] == ["user", "assistant"] and msgs[0].status == "ok"


def test_retry_while_every_model_fails_keeps_the_answer_it_would_replace(tether_home, server):
    """/retry removed the old answer before asking: with the provider down, it was gone."""
    server.reset()
    with chat(tether_home, config=server_config(server)) as c:
        c.run("first question\r")
        before = c.messages()
        assert [m.role for m in before] == ["user", "assistant"]
        server.always.update({"main": "500", "backup": "500"})
        out = c.run("/retry\r")
        assert "every model failed" in out and "previous answer is kept" in out
        after = c.messages()
        assert [(m.id, m.role, m.status, m.content) for m in after] == [
            (m.id, m.role, "ok", m.content) for m in before]
        server.always.clear()
        c.run("/retry\r")  # and a retry that works still replaces it
        final = c.messages()
        assert len(final) == 2 and final[1].id != before[1].id and final[1].content.startswith("main says")


def test_ctrl_c_before_the_first_piece_leaves_the_question_unanswered_for_retry(tether_home, monkeypatch):
    def start(self):  # SIGINT while waiting for the model's first chunk
        raise KeyboardInterrupt

    with chat(tether_home) as c:
        with monkeypatch.context() as m:
            m.setattr(AnswerView, "start", start)
            out = c.run("slow model\r")
        assert "no answer yet; your message is saved" in out
        assert [(x.role, x.status) for x in c.messages()] == [("user", "unanswered")]
        assert "tether/echo" in c.repl.toolbar().value and "(default)" not in c.repl.toolbar().value
        c.run("/retry\r")
        assert [(x.role, x.status) for x in c.messages()] == [("user", "ok"), ("assistant", "ok")]


def test_while_nothing_has_arrived_the_chat_says_what_it_waits_for(tether_home, server):
    """A 429 with a long Retry-After, or a slow model, left the screen blank."""
    import re
    import threading

    server.reset()
    server.fail("main", "429:2")
    cfg = {**server_config(server), "retry_after_cap": 5, "retries": 1}
    client = Tether(home=tether_home, config=cfg)
    stream = client.stream("patience")
    out = io.StringIO()
    console = make_console(file=out, force_terminal=True)
    console.size = (100, 20)
    view = AnswerView(console, status=stream.waiting)
    seen: list[str] = []

    def watch() -> None:  # what the status says while the first try backs off
        while not view.text:
            seen.append(stream.waiting())
            time.sleep(0.05)

    view.start()
    threading.Thread(target=watch, daemon=True).start()
    for piece in stream:
        view.add(piece)
    view.finish()
    assert any(s.startswith("main: rate limit; trying again in ") for s in seen), seen[:5]
    drawn = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())
    assert "main: rate limit; trying again in" in drawn and "(Ctrl-C to stop)" not in drawn.split("main says")[-1]
    assert stream.result.text == "main says: patience (1 messages)"


def test_retry_stopped_by_ctrl_c_keeps_the_whole_old_answer_not_the_partial(tether_home, monkeypatch):
    with chat(tether_home) as c:
        c.run("tell me\r")
        before = c.messages()
        real_add = AnswerView.add
        calls = {"n": 0}

        def add(self, piece):  # Ctrl-C after the retry's second piece
            calls["n"] += 1
            real_add(self, piece)
            if calls["n"] == 2:
                raise KeyboardInterrupt

        monkeypatch.setattr(AnswerView, "add", add)
        out = c.run("/retry\r")
        monkeypatch.setattr(AnswerView, "add", real_add)
        assert "previous answer is kept" in out
        after = c.messages()  # one question, one answer: no partial beside it in later windows
        assert [(m.id, m.role, m.status, m.content) for m in after] == [
            (m.id, m.role, m.status, m.content) for m in before]
