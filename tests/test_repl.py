"""The chat loop driven through prompt-toolkit's pipe input with a dummy output.

Keys go in as the bytes a terminal sends (\r Enter, \x1b\r Esc-Enter, \x03 Ctrl-C,
\x04 Ctrl-D, \x1b[200~...\x1b[201~ a bracketed paste); answers come from the
offline model tether/echo or the local fake OpenAI server.
"""
from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from tether import Tether
from tether.render import AnswerView, make_console
from tether.repl import Loader, Repl


class Chat:
    """A Repl wired to a pipe: `run(keys)` types them and returns what was printed."""

    def __init__(self, repl: Repl, pipe, out: io.StringIO) -> None:
        self.repl, self.pipe, self.out = repl, pipe, out

    def run(self, keys: str) -> str:
        start = self.out.tell()
        self.pipe.send_text(keys if keys.endswith("\x04") or "/exit" in keys else keys + "\x04")
        assert self.repl.run() == 0
        self.repl.running = True
        return self.out.getvalue()[start:]

    @property
    def client(self) -> Tether:
        return self.repl.client

    def messages(self) -> list:
        assert self.repl.session_id
        return self.client.get_history(self.repl.session_id)


@contextmanager
def chat(home: Path, config=None, **kw) -> Iterator[Chat]:
    with create_pipe_input() as pipe:
        out = io.StringIO()
        client = Tether(home=home, config=config)
        repl = Repl(Loader(client=client, preload=False), make_console(file=out), input=pipe,
                    output=DummyOutput(), home=home, **kw)
        yield Chat(repl, pipe, out)


def test_a_turn_streams_saves_and_updates_the_toolbar(tether_home):
    with chat(tether_home) as c:
        out = c.run("hello there\r")
        assert "echo: hello there" in out
        msgs = c.messages()
        assert [(m.role, m.status) for m in msgs] == [("user", "ok"), ("assistant", "ok")]
        assert msgs[0].content == "hello there" and msgs[1].model == "tether/echo"
        assert c.client.load_session(c.repl.session_id).title == "hello there"  # titled by its first message
        bar = c.repl.toolbar().value
        assert "tether/echo" in bar and f"{msgs[1].usage.total_tokens} tokens" in bar and c.repl.session_id in bar


def test_ctrl_d_on_an_empty_line_leaves_without_creating_a_session(tether_home):
    with chat(tether_home) as c:
        c.run("\x04")
        assert c.repl.session_id is None
        assert c.client.list_sessions() == []


def test_esc_enter_inserts_a_newline_and_enter_sends(tether_home):
    with chat(tether_home) as c:
        c.run("first line\x1b\rsecond line\r")
        assert c.messages()[0].content == "first line\nsecond line"


def test_bracketed_paste_keeps_pasted_newlines(tether_home):
    with chat(tether_home) as c:
        c.run("\x1b[200~def f():\n    return 1\n\x1b[201~\r")
        assert c.messages()[0].content == "def f():\n    return 1\n"


def test_ctrl_c_at_the_prompt_clears_the_line_and_the_chat_goes_on(tether_home):
    with chat(tether_home) as c:
        c.run("never sent\x03\x03really sent\r")
        assert [m.content for m in c.messages() if m.role == "user"] == ["really sent"]


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


def test_history_is_saved_in_the_home_dir_and_loaded_by_the_next_chat(tether_home):
    with chat(tether_home) as c:
        c.run("remember me\r")
    assert "remember me" in (tether_home / "chat_history").read_text()
    with chat(tether_home) as c:
        assert "remember me" in list(c.repl.session.history.load_history_strings())
        c.run("\x1b[A\r")  # Up recalls the previous line
        assert c.messages()[0].content == "remember me"


def test_title_system_and_model_given_up_front_apply_to_the_new_session(tether_home):
    with chat(tether_home, title="Trip", system="Be brief.", model="tether/echo") as c:
        c.run("hi\r")
        s = c.client.load_session(c.repl.session_id)
        assert (s.title, s.system, s.pinned_model) == ("Trip", "Be brief.", "tether/echo")


def test_resume_shows_the_last_turns(tether_home):
    t = Tether(home=tether_home)
    r = t.chat_once("first question")
    for i in range(5):
        t.chat_once(f"question {i}", session_id=r.session_id)
    with chat(tether_home) as c:
        c.repl.load(r.session_id)
        out = c.out.getvalue()
        assert "question 4" in out and "echo: question 4" in out
        assert "> first question" not in out and "earlier messages not shown" in out


def test_quick_resume_replay_shows_what_the_full_load_shows(tether_home):
    from tether.cli_util import quick_resume

    t = Tether(home=tether_home)
    r = t.chat_once("first question")
    for i in range(4):
        t.chat_once(f"question {i}", session_id=r.session_id)
    t.remove_message(r.session_id, t.get_history(r.session_id)[-1].id)  # the replay applies removals
    other = t.chat_once("another session").session_id
    t.list_sessions()  # the index is current again
    assert quick_resume(tether_home, None, cont=True)[0] == other  # -c: the most recently used
    sid, replay = quick_resume(tether_home, r.session_id, cont=False)
    with chat(tether_home) as full, chat(tether_home) as quick:
        full.repl.load(sid)
        quick.repl.load_replay(sid, replay)
        assert quick.out.getvalue() == full.out.getvalue()
        for attr in ("session_id", "pinned", "title", "system", "tokens", "cost"):
            assert getattr(quick.repl, attr) == getattr(full.repl, attr), attr
        assert "question 3" in quick.out.getvalue() and "echo: question 3" not in quick.out.getvalue()
    # prefixes, unknown ids, hostile ids and a stale index all go the full way (None)
    assert quick_resume(tether_home, sid[:-2], cont=False) is None
    assert quick_resume(tether_home, "nope", cont=False) is None
    assert quick_resume(tether_home, "../x", cont=False) is None
    t.add_message(sid, "user", "index now stale")
    assert quick_resume(tether_home, None, cont=True) is None


# -- slash commands ------------------------------------------------------------------------------
def test_help_lists_every_command(tether_home):
    from tether.repl_commands import COMMANDS

    with chat(tether_home) as c:
        out = c.run("/help\r")
        for name in COMMANDS:
            assert name in out


def test_unknown_command_and_literal_slash(tether_home):
    with chat(tether_home) as c:
        out = c.run("/frobnicate\r//etc/hosts is a path\r")
        assert "unknown command /frobnicate" in out
        assert c.messages()[0].content == "/etc/hosts is a path"


def test_new_sessions_and_switch(tether_home):
    with chat(tether_home) as c:
        c.run("in the first\r")
        first = c.repl.session_id
        out = c.run("/new\rin the second\r/sessions\r")
        second = c.repl.session_id
        assert second != first and first in out and second in out
        out = c.run("/sessions 1\r")
        assert second in out and first not in out  # the most recently used one
        for bad in ("x", "-3", "0"):
            assert "a positive number" in c.run(f"/sessions {bad}\r")
        out = c.run(f"/switch {first[:-3]}\r")  # a unique prefix
        assert c.repl.session_id == first and "echo: in the first" in out
        out = c.run("/switch nosuchsession\r")
        assert "no session with id 'nosuchsession'" in out and c.repl.session_id == first


def test_model_shows_and_pins_models_lists(tether_home):
    with chat(tether_home) as c:
        assert "tether/echo (the default" in c.run("/model\r")
        c.run("hi\r")
        out = c.run("/model no-such-model\r")
        assert "unknown model 'no-such-model'" in out
        c.run("/model openai/gpt-4o-mini\r")
        s = c.client.load_session(c.repl.session_id)
        assert s.pinned_model == "openai/gpt-4o-mini" and c.repl.pinned == "openai/gpt-4o-mini"
        assert any(e.type == "pin_changed" and e.data["to"] == "openai/gpt-4o-mini" for e in s.events)
        out = c.run("/models\r")
        assert "tether/echo *" in out and "128,000" in out and "closed" in out


def test_title_and_system(tether_home):
    with chat(tether_home) as c:
        c.run("/title Before the session exists\rhello\r")
        sid = c.repl.session_id
        assert c.client.load_session(sid).title == "Before the session exists"
        c.run("/title Renamed\r/system You are terse.\r")
        s = c.client.load_session(sid)
        assert (s.title, s.system) == ("Renamed", "You are terse.")
        assert "You are terse." in c.run("/system\r")
        c.run("/system off\r")
        assert c.client.load_session(sid).system is None


def test_context_shows_the_window_and_what_was_dropped(tether_home):
    cfg = {"models": {"tiny": {"model": "tether/echo", "context_window": 6000, "max_output_tokens": 100}}}
    with chat(tether_home, config=cfg) as c:
        assert "no messages yet" in c.run("/context\r")
        for i in range(6):
            # varied words: litellm aborts a stream that repeats one chunk 100 times (echo streams per word)
            c.run(f"message number {i} " + " ".join(f"w{i}x{j}" for j in range(300)) + "\r")
        out = c.run("/context\r")
        assert "window for tiny (tether/echo)" in out and "history budget" in out
        assert "ROLE" in out and "TOKENS" in out
        assert "dropped:" in out and "nothing" not in out.split("dropped:")[1].split("\n")[0]
        # a question too big for the window stays in the session, unanswered, and /context says it is not sent
        out = c.run(" ".join(f"big{j}" for j in range(7000)) + "\r")
        assert c.messages()[-1].status == "unanswered"
        assert "not sent: 1 unanswered question" in c.run("/context\r")


def test_tokens_reports_the_session_totals(tether_home):
    with chat(tether_home) as c:
        c.run("count me\r")
        total = c.client.load_session(c.repl.session_id).totals.total_tokens
        assert f"= {total} tokens" in c.run("/tokens\r")


def test_retry_answers_the_last_question_again_in_place(tether_home):
    with chat(tether_home) as c:
        c.run("one\rtwo\r")
        c.run("/retry\r")
        msgs = c.messages()
        assert [m.content for m in msgs if m.role == "user"] == ["one", "two"]
        assert len(msgs) == 4 and msgs[-1].role == "assistant" and "echo: two" in msgs[-1].content


def test_undo_removes_the_last_exchange_and_puts_it_back_in_the_prompt(tether_home):
    with chat(tether_home) as c:
        c.run("keep\rdrop this\r")
        out = c.run("/undo\r\x03")  # Ctrl-C clears the pre-filled line so Ctrl-D can leave
        assert "removed the last exchange" in out
        assert [m.content.split(" [")[0] for m in c.messages()] == ["keep", "echo: keep"]
        c.run("/undo\r edited\r")  # the prompt was pre-filled with "keep"
        assert [m.content for m in c.messages() if m.role == "user"] == ["keep edited"]


def test_export_prints_or_writes(tether_home, tmp_path):
    with chat(tether_home) as c:
        c.run("export me\r")
        assert "## user" in c.run("/export\r")
        target = tmp_path / "s.json"
        c.run(f"/export json {target}\r")
        doc = json.loads(target.read_text())
        assert doc["id"] == c.repl.session_id and doc["messages"][0]["content"] == "export me"
        # a bad path is an error line, and the chat goes on
        out = c.run(f"/export md {tmp_path / 'missing' / 'x.md'}\rstill here\r")
        assert "error:" in out and "missing" in out
        assert c.messages()[-2].content == "still here"
        # the format follows the file's suffix; an unknown one, or an existing file, is refused
        c.run(f"/export {tmp_path / 'by_suffix.json'}\r")
        assert json.loads((tmp_path / "by_suffix.json").read_text())["id"] == c.repl.session_id
        assert oct((tmp_path / "by_suffix.json").stat().st_mode & 0o777) == oct(0o600)
        out = c.run("/export yaml\r")
        assert "cannot tell the format of 'yaml'" in out and not (Path.cwd() / "yaml").exists()
        out = c.run(f"/export md {target}\r")
        assert "exists" in out and json.loads(target.read_text())["id"] == c.repl.session_id


def test_clear_history_empties_the_session(tether_home):
    with chat(tether_home) as c:
        c.run("forget me\r/clear\r")
        assert len(c.messages()) == 2  # /clear alone only clears the screen
        c.run("/clear history\r")
        assert c.messages() == []


def test_exit_command_leaves(tether_home):
    with chat(tether_home) as c:
        c.pipe.send_text("/exit\r")
        assert c.repl.run() == 0 and c.repl.running is False


# -- completion ----------------------------------------------------------------------------------
def test_completion_of_commands_session_ids_and_models(tether_home):
    from prompt_toolkit.completion import CompleteEvent
    from prompt_toolkit.document import Document

    with chat(tether_home) as c:
        c.run("hi\r")
        sid = c.repl.session_id
        comp = c.repl.session.completer

        def complete(text: str) -> list[str]:
            return [x.text for x in comp.get_completions(Document(text), CompleteEvent())]

        assert complete("/sw") == ["/switch"]
        assert set(complete("/mo")) == {"/model", "/models"}
        assert complete(f"/switch {sid[:3]}") == [sid]
        assert complete("/model tether") == ["tether/echo"]
        assert complete("/export j") == ["json"]
        assert complete("plain text") == []


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


def _append_history(path: str, tag: str) -> None:
    from tether.repl_input import LockedFileHistory

    h = LockedFileHistory(path)
    for i in range(40):
        h.store_string(f"{tag} line {i}\nsecond part {i}")


def test_two_terminals_appending_history_do_not_corrupt_it(tmp_path):
    import multiprocessing

    from tether.repl_input import LockedFileHistory

    path = str(tmp_path / "chat_history")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_history, args=(path, tag)) for tag in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    items = list(LockedFileHistory(path).load_history_strings())
    assert len(items) == 80
    assert sorted(items) == sorted(f"{t} line {i}\nsecond part {i}" for t in "ab" for i in range(40))


def test_answer_view_on_a_terminal_streams_a_tail_then_draws_the_whole_markdown():
    out = io.StringIO()
    console = make_console(file=out, force_terminal=True)
    console.size = (80, 10)
    view = AnswerView(console)
    view.start()
    for i in range(30):
        view.add(f"- **item {i}**\n")
    view.finish()
    text = out.getvalue()
    final = text[text.rindex("item 0"):]  # the last drawing starts with the first item
    assert all(f"item {i}" in final for i in range(30)) and "**" not in final  # rendered, not raw
    assert view.text.count("item") == 30


def test_typed_history_is_private_even_in_a_shared_folder(tmp_path):
    import os
    import stat

    from tether.repl_input import LockedFileHistory

    old = os.umask(0)
    try:
        fresh = tmp_path / "fresh_history"
        LockedFileHistory(fresh).store_string("my secret question")
        loose = tmp_path / "loose_history"
        loose.write_text("")
        loose.chmod(0o644)
        LockedFileHistory(loose).store_string("another")
    finally:
        os.umask(old)
    for p in (fresh, loose):
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    assert "my secret question" in fresh.read_text()


def test_answer_view_wraps_long_lines_instead_of_cropping_them():
    """A paragraph wider than the terminal was cut at the edge, while streaming and after."""
    import re

    out = io.StringIO()
    console = make_console(file=out, force_terminal=True)
    console.size = (40, 20)
    view = AnswerView(console)
    view.start()
    words = [f"w{i:02d}" for i in range(60)]  # one 240-character paragraph
    for w in words:
        view.add(w + " ")
    view.finish()
    final = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())
    last = final[final.rindex("w00"):]  # the final drawing
    assert all(w in last for w in words)
    assert max(len(line.rstrip()) for line in last.splitlines()) <= 40


def test_single_line_breaks_in_an_answer_are_kept():
    out = io.StringIO()
    console = make_console(file=out, force_terminal=True, )
    console.size = (80, 20)
    from tether.render import markdown

    console.print(markdown("Roses are red,\nViolets are blue,\n\n- a\n- b\n\n```\ncode line 1\ncode line 2\n```"))
    import re

    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    assert "Roses are red," in lines and "Violets are blue," in lines
    assert any(line.endswith("code line 1") for line in lines) and any(line.endswith("code line 2") for line in lines)


def test_new_after_switch_does_not_inherit_the_switched_sessions_system_prompt(tether_home):
    french = Tether(home=tether_home).create_session(title="fr", system="Reply only in French.")
    with chat(tether_home, system="Be brief.") as c:
        c.run(f"/switch {french}\r")
        c.run("/new\rwhat is 2+2\r")
        s = c.client.load_session(c.repl.session_id)
        assert s.id != french and s.system == "Be brief."  # the chat's own -s, not the French one


def test_an_unwritable_input_history_is_one_note_not_a_traceback(tether_home, monkeypatch):
    from tether.repl_input import LockedFileHistory

    def full_disk(self, string):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(LockedFileHistory.__mro__[1], "store_string", full_disk)  # prompt_toolkit's FileHistory
    with chat(tether_home) as c:
        out = c.run("one\rtwo\r")
        assert "echo: one" in out and "echo: two" in out
        assert out.count("could not save the input history") == 1 and "No space left" in out
        assert [m.content for m in c.messages() if m.role == "user"] == ["one", "two"]


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


def test_a_session_deleted_under_the_chat_does_not_swallow_the_next_message(tether_home):
    with chat(tether_home) as c:
        c.run("first\r")
        gone = c.repl.session_id
        Tether(home=tether_home).delete_session(gone)  # another terminal: sessions delete
        out = c.run("second\r")
        assert "no longer exists" in out and "echo: second" in out
        assert c.repl.session_id != gone
        assert [m.content for m in c.messages() if m.role == "user"] == ["second"]


def test_resuming_shows_a_huge_paste_as_its_head_and_tail(tether_home):
    t = Tether(home=tether_home)
    sid = t.create_session(title="paste")
    t.add_message(sid, "user", "HEAD " + "x" * 500_000 + " TAIL")
    with chat(tether_home) as c:
        c.repl.load(sid)
        out = c.out.getvalue()
        assert "HEAD" in out and "TAIL" in out and "characters not shown" in out and len(out) < 10_000
