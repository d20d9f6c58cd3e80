"""The chat's slash commands and their completion (see replkit.py)."""
from __future__ import annotations

import json
from pathlib import Path

from tether import Tether

from replkit import chat


# -- slash commands ------------------------------------------------------------------------------
def test_help_lists_every_command(tether_home):
    from tether.repl_commands import COMMANDS

    with chat(tether_home) as c:
        out = c.run("/help\r")
        for name in COMMANDS:
            assert name in out


def test_unknown_command_and_literal_slash(tether_home):
    with chat(tether_home) as c:
        # back in the prompt: Enter there sends it again (^U then clears the line so ^D can leave)
        out = c.run("/frobnicate the logs\r\r\x15")
        assert out.count("unknown command /frobnicate") == 2 and "start it with //" in out
        assert c.repl.session_id is None  # nothing sent, and nothing lost
        c.run("//frobnicate the logs\r")  # // sends /frobnicate as a message
        assert [m.content for m in c.messages() if m.role == "user"] == ["/frobnicate the logs"]


def test_text_starting_with_a_slash_is_a_message_unless_it_is_a_command_word(tether_home):
    """A path, a pasted C comment or a `//` note is a message sent as typed; only one line whose
    first word is / and letters is a command (in any case)."""
    with chat(tether_home) as c:
        out = c.run("/etc/hosts has a weird line, why?\r"
                    "\x1b[200~/* main.c */\nint main(void) { return 0; }\x1b[201~\r"
                    "// a note\r"
                    "\x1b[200~/help\nwhat does this do?\x1b[201~\r"
                    "/HELP\r")
        asked = [m.content for m in c.messages() if m.role == "user"]
        assert asked == ["/etc/hosts has a weird line, why?", "/* main.c */\nint main(void) { return 0; }",
                         "// a note", "/help\nwhat does this do?"]
        assert "unknown command" not in out and "commands:" in out


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


def test_sessions_fits_the_chats_terminal(tether_home):
    """/sessions printed rows of 118 columns whatever the terminal's width."""
    import io
    import re

    from tether.render import make_console

    with chat(tether_home) as c:
        c.run("/title Plan a two-week kayaking trip along the Norwegian fjords in June\rhello\r")
        out = io.StringIO()
        c.repl.console = make_console(file=out, force_terminal=True)
        for cols in (80, 100):
            c.repl.console.size = (cols, 30)
            c.run("/sessions\r")
            table = [line for line in re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue()).splitlines()
                     if c.repl.session_id in line and "Plan a" in line]
            assert table and all(len(line) <= cols for line in table)
            out.seek(0)
            out.truncate()


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
    cfg = {"models": {"tiny": {"model": "tether/echo", "context_window": 1500, "max_output_tokens": 100}}}
    with chat(tether_home, config=cfg) as c:
        assert "no messages yet" in c.run("/context\r")
        for i in range(6):
            # varied words: litellm aborts a stream that repeats one chunk 100 times (echo streams per word)
            c.run(f"message number {i} " + " ".join(f"w{i}x{j}" for j in range(80)) + "\r")
        out = c.run("/context\r")
        assert "window for tiny (tether/echo)" in out and "history budget" in out
        assert "ROLE" in out and "TOKENS" in out
        assert "dropped:" in out and "nothing" not in out.split("dropped:")[1].split("\n")[0]
        # a question too big for the window stays in the session, unanswered, and /context says it is not sent
        out = c.run(" ".join(f"big{j}" for j in range(1500)) + "\r")
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
        assert "removed your last question and 1 message after it" in out
        assert [m.content.split(" [")[0] for m in c.messages()] == ["keep", "echo: keep"]
        c.run("/undo\r edited\r")  # the prompt was pre-filled with "keep"
        assert [m.content for m in c.messages() if m.role == "user"] == ["keep edited"]


def _asked(c) -> list[str]:
    return [m.content for m in c.messages() if m.role == "user"]


def test_retry_and_undo_never_act_on_another_terminals_exchange(tether_home):
    """Two chats on one session: B's /retry and /undo regenerated or removed A's newer exchange
    (and put A's text in B's prompt). They act on B's own, and only while it is the session's last."""
    with chat(tether_home) as b, chat(tether_home) as a:
        b.run("B: my question\r")
        sid = b.repl.session_id
        a.repl.load(sid)
        a.run("A: secret plan\r")
        before = [m.id for m in b.messages()]
        out = b.run("/retry\r")
        assert "moved on since your question \u201cB: my question\u201d" in out
        assert "the last question now being \u201cA: secret plan\u201d" in out
        out = b.run("/undo\r\x15")  # (^U: a wrongly refilled prompt would keep ^D from leaving)
        assert "moved on since your question" in out and "removed" not in out
        assert [m.id for m in b.messages()] == before  # nothing regenerated, nothing removed
        assert b.repl.next_default == ""  # A's words are not put in B's prompt

        out = a.run("/undo\r\x15")  # A's own exchange is the last: A can take it back
        assert "removed your last question" in out and _asked(a) == ["B: my question"]
        b.run("/retry\r")  # and B's is the last again
        msgs = b.messages()
        assert [m.id for m in msgs][:1] == before[:1] and len(msgs) == 2 and msgs[1].id != before[1]

        a.run("A: again\r")
        assert "moved on" in b.run("/undo\r\x15")
        b.run(f"/switch {sid}\r")  # B has now been shown A's exchange: /undo takes it back
        out = b.run("/undo\r\x15")
        assert "removed your last question" in out and _asked(b) == ["B: my question"]


def test_undo_when_the_other_terminals_answer_came_in_between(tether_home):
    """Interleaved: B asked, then A asked, then B's answer was stored. /undo in B deleted A's
    question and answer and B's answer too; now both are refused: neither is the last exchange
    alone (a message of the other's follows each question), and nothing is removed."""
    with chat(tether_home) as b, chat(tether_home) as a:
        b.run("B: first\r")
        sid = b.repl.session_id
        a.repl.load(sid)
        a.run("A: second\r")
        # B asked a question that the session answered after A's: put B's answer last
        b_q, b_ans, a_q, a_ans = b.messages()
        b.client.remove_message(sid, b_ans.id)
        b.client.store.append_message(sid, b_ans)
        assert [m.id for m in b.messages()] == [b_q.id, a_q.id, a_ans.id, b_ans.id]
        assert "moved on" in b.run("/undo\r\x15")
        assert "moved on" in a.run("/undo\r\x15")  # B's answer came after A's question
        assert len(b.messages()) == 4


def test_clear_takes_history_or_nothing_and_asks_before_deleting(tether_home):
    with chat(tether_home) as c:
        c.run("one\rtwo\r")
        out = c.run("/clear hist\rn\r")  # a prefix, as commands take; then "no" to the y/N question
        assert "(kept)" in out and len(c.messages()) == 4
        out = c.run("/clear bogus\r")
        assert "/clear takes nothing (clear the screen) or history" in out and len(c.messages()) == 4
        c.run("/CLEAR HISTORY\ry\r")
        assert c.messages() == []


def test_clear_history_from_a_pipe_has_no_one_to_ask(tether_home):
    from tether.render import make_console
    from tether.repl import Loader, Repl

    import io

    out = io.StringIO()
    r = Repl(Loader(client=Tether(home=tether_home), preload=False), make_console(file=out), home=tether_home)
    assert r.run_lines(["one\n", "/clear history\n"]) == 0
    assert r.client.get_history(r.session_id) == []


def test_commands_without_arguments_refuse_them(tether_home):
    """`/tokens x`, `/models x`... did the command and silently dropped x."""
    with chat(tether_home) as c:
        c.run("hi\r")
        for cmd in ("/tokens x", "/models all", "/help me", "/retry now", "/undo 2"):
            out = c.run(cmd + "\r")
            assert f"takes no arguments, not {cmd.split(' ', 1)[1]!r}" in out, out
        assert len(c.messages()) == 2  # nothing retried or undone
        out = c.run("/exit now\r\x04")
        assert "takes no arguments" in out and c.repl.running


def test_a_closed_session_keeps_the_message_and_names_the_shell_command(tether_home):
    with chat(tether_home) as c:
        c.run("first\r")
        sid = c.repl.session_id
        c.client.update_session(sid, status="closed")
        c.repl.load(sid)
        out = c.run("one more thing\r\x15")
        assert f"tether sessions reopen {sid}" in out and "update_session" not in out
        assert c.repl.next_default == "" and len(c.messages()) == 2  # nothing sent...
        assert "your message is back in the prompt" in out  # ...and nothing lost
        out = c.run("/retry\r")
        assert f"tether sessions reopen {sid}" in out and "update_session" not in out


def test_a_session_closed_by_another_process_mid_chat_names_the_shell_command(tether_home):
    with chat(tether_home) as c:
        c.run("first\r")
        sid = c.repl.session_id
        Tether(home=tether_home).update_session(sid, status="closed")  # the chat does not know
        out = c.run("one more thing\r")
        assert f"tether sessions reopen {sid}" in out and "update_session" not in out
        assert len(c.messages()) == 2


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
        c.run("/clear history\ry\r")  # y to the question it asks first
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


def test_new_after_switch_does_not_inherit_the_switched_sessions_system_prompt(tether_home):
    french = Tether(home=tether_home).create_session(title="fr", system="Reply only in French.")
    with chat(tether_home, system="Be brief.") as c:
        c.run(f"/switch {french}\r")
        c.run("/new\rwhat is 2+2\r")
        s = c.client.load_session(c.repl.session_id)
        assert s.id != french and s.system == "Be brief."  # the chat's own -s, not the French one


def test_context_shows_the_summary_it_sends(tether_home, fake_server):
    from conftest import router_config, wait_for

    cfg = router_config(fake_server, context={"summary": True, "summary_every": 4},
                        models={"mid": {"context_window": 1500}})
    t = Tether(home=tether_home, config=cfg)
    sid = t.create_session(model="mid")
    for i in range(24):
        t.add_message(sid, "user" if i % 2 == 0 else "assistant", f"fact {i} " + "filler words here " * 30)
    fake_server.fixed["mid"] = "Facts 0-9 were filler about the garden."
    t.chat_once("q", session_id=sid)
    wait_for(lambda: any(e.type == "summary" for e in t.load_session(sid).events))
    with chat(tether_home, config=cfg) as c:
        c.repl.load(sid)
        out = c.run("/context\r")
    assert "summary sent (" in out and "Facts 0-9 were filler about the garden." in out
