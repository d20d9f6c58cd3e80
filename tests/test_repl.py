"""The chat loop: keys, turns, input history, resuming, how answers are drawn (see replkit.py)."""
from __future__ import annotations

import io

import pytest

from tether import Tether
from tether.render import AnswerView, make_console

from replkit import chat


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


def test_code_blocks_copy_as_written_coloured_but_without_margin_or_padding():
    """Fenced code was drawn in a box: a one-space margin and each line padded to the width,
    so copying `def f():` out of the terminal gave ` def f():` and trailing blanks."""
    import re

    answer = "Run this:\n\n```python\ndef f():\n    return 1\n```\n\nand `pip install x`"
    out = io.StringIO()
    console = make_console(file=out, force_terminal=True)
    console.size = (60, 20)
    view = AnswerView(console)
    view.start()
    view.add(answer)
    view.finish()
    drawn = out.getvalue()
    final = drawn[drawn.rindex("Run this"):]  # the last drawing
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", final).splitlines()
    assert "def f():" in plain and "    return 1" in plain  # no margin, no trailing fill
    assert re.search(r"\x1b\[[0-9;]+mdef\x1b", final)  # still highlighted


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


def test_a_note_from_another_thread_is_said_even_when_the_chat_ends_with_ctrl_d(tether_home):
    with chat(tether_home) as c:
        c.repl.note_later("tether: the summary of session x came back empty")
        assert "came back empty" in c.run("\x04")


def test_the_terminal_stops_echoing_keys_only_while_an_answer_is_drawn(tether_home, monkeypatch):
    """Echo is off while a turn runs (keys typed then would land inside the live answer) and
    the terminal's own settings are back after it, also when the turn raised."""
    import os
    import sys
    import termios

    from tether.repl import Loader, Repl

    master, slave = os.openpty()
    tty = os.fdopen(slave, "r")
    try:
        monkeypatch.setattr(sys, "stdin", tty)
        before = termios.tcgetattr(slave)
        assert before[3] & termios.ECHO and before[3] & termios.ISIG
        seen: list[int] = []
        client = Tether(home=tether_home)
        client.on("message", lambda e: seen.append(termios.tcgetattr(slave)[3]))
        repl = Repl(Loader(client=client, preload=False), make_console(file=io.StringIO()), home=tether_home)
        repl.send("hello")
        assert len(seen) == 2 and all(not lflag & (termios.ECHO | termios.ECHOCTL) for lflag in seen)
        assert all(lflag & termios.ISIG and lflag & termios.ICANON for lflag in seen)  # Ctrl-C still stops it
        assert termios.tcgetattr(slave) == before
        with pytest.raises(ZeroDivisionError):  # a turn that fails before it starts
            repl.send("again", start=lambda: 1 / 0)
        assert termios.tcgetattr(slave) == before
    finally:
        tty.close()
        os.close(master)


def test_a_piped_answer_is_read_by_the_pipe_before_the_next_prompt(tether_home, monkeypatch):
    """`tether chat | tee log`: tee shows what went into the pipe, the prompt is drawn on the
    terminal directly; without waiting for the pipe to drain the prompt came first and the
    answer landed after (inside) it."""
    import os
    import sys
    import threading
    import time

    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    from tether.repl import Loader, Repl

    r, w = os.pipe()
    monkeypatch.setattr(sys, "stdout", os.fdopen(w, "w"))
    read_at: list[float] = []

    def slow_reader() -> None:
        time.sleep(0.03)
        os.read(r, 65536)
        read_at.append(time.monotonic())

    with create_pipe_input() as keys:
        repl = Repl(Loader(client=Tether(home=tether_home), preload=False), make_console(), input=keys,
                    output=DummyOutput(), home=tether_home)
        drawn: list[float] = []
        repl.session.app.before_render += lambda _app: drawn.append(time.monotonic())
        repl.console.print("the last answer")  # into the pipe
        reader = threading.Thread(target=slow_reader)
        reader.start()
        keys.send_text("\x04")
        assert repl.run() == 0
        reader.join()
    sys.stdout.close()
    os.close(r)
    assert drawn and read_at and drawn[0] >= read_at[0]


def test_a_message_typed_in_a_non_utf8_locale_is_saved_and_sent_with_its_bad_bytes_replaced(tether_home, fake_server):
    """A terminal whose locale is not UTF-8 hands Python lone surrogates for bytes it cannot
    decode; saved as they were, every model call failed to encode them (a fake "server (500)")."""
    from conftest import router_config

    with chat(tether_home, config=router_config(fake_server)) as c:
        c.repl.send("caf\udce9 cr\udce8me")
        msgs = c.messages()
        assert [(m.role, m.status) for m in msgs] == [("user", "ok"), ("assistant", "ok")]
        assert msgs[0].content == "caf\ufffd cr\ufffdme"
        assert msgs[1].content == "main says: caf\ufffd cr\ufffdme (1 messages)"
        assert c.client.load_session(c.repl.session_id).title == "caf\ufffd cr\ufffdme"
        c.repl.send("emoji from a JSON escape \ud83d\ude00")  # a surrogate pair is its character
        assert c.messages()[2].content == "emoji from a JSON escape \U0001f600"


def test_a_resumed_session_says_when_it_was_last_used(tether_home):
    """Resumed days later, the turns shown read as if just said; the heading says how old they are."""
    import re
    from datetime import datetime, timedelta

    from tether.cli_util import quick_resume

    t = Tether(home=tether_home)
    sid = t.chat_once("about kayaks").session_id
    path = tether_home / "sessions" / f"{sid}.jsonl"

    def three_days_earlier(m: re.Match) -> str:
        when = datetime.fromisoformat(m.group(1).replace("Z", "+00:00")) - timedelta(days=3)
        return '"' + when.strftime("%Y-%m-%dT%H:%M:%S.%fZ") + '"'

    path.write_text(re.sub(r'"(\d{4}-\d\d-\d\dT[\d:.]+(?:Z|\+00:00))"', three_days_earlier, path.read_text()))
    with chat(tether_home) as full, chat(tether_home) as quick:
        full.repl.load(sid)
        quick.repl.load_replay(*quick_resume(tether_home, sid, cont=False))
        for c in (full, quick):
            assert c.out.getvalue().splitlines()[0] == f"session {sid} · about kayaks · last used 3d ago"


def test_a_restart_mid_answer_is_announced_once(tether_home, fake_server):
    """One fallback printed two notices saying the same: "main failed mid-answer…; backup answers
    from the start" as it happened, then "main was cut off mid-answer; backup answered instead"."""
    from replkit import chat

    def m(name: str) -> dict:
        return {"model": f"openai/{name}", "api_base": fake_server.base, "api_key": "sk-test"}

    cfg = {"default_model": "main", "fallbacks": ["backup"], "retries": 0, "timeout": 5, "breaker_failures": 0,
           "models": {"main": m("main"), "backup": m("backup")}}
    fake_server.fail("main", "cut")
    with chat(tether_home, config=cfg) as c:
        out = c.run("a long enough question to cut\r")
        assert out.count("main failed mid-answer") == 1 and "backup answers from the start" in out
        assert "answered instead" not in out
        fake_server.fail("main", "500")  # a model failing before any text is still named after the turn
        assert "main failed (server 500); backup answered instead" in c.run("and again\r")
